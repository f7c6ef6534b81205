"""Signed update bundles: made with tools/make-bundle.py, verified and installed into slot files standing in for
the root partitions. Keys are real Ed25519 keys made by openssl, as build/dev-key.sh makes them."""
import hashlib
import os
import subprocess
import sys
import tarfile

import pytest

from chargemanager.adapters import updater
from chargemanager.adapters.updater import BootState, UpdateError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEVICE = "chargemanager-amd64"
SLOT_BYTES = 4 * 1024 * 1024


def openssl_key(folder, name):
    private = folder / (name + ".pem")
    public = folder / (name + "-pub.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(private)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True)
    return private, public


@pytest.fixture
def device(tmp_path):
    """Two slot files, a boot state (running slot A, confirmed), a release key pair and a foreign key."""
    keys = tmp_path / "keys"
    keys.mkdir()
    release_key, release_pub = openssl_key(keys, "release")
    other_key, _ = openssl_key(keys, "other")
    slots = {}
    for slot in "AB":
        path = tmp_path / ("root" + slot)
        path.write_bytes(b"\x00" * SLOT_BYTES)
        slots[slot] = str(path)
    bootstate = tmp_path / "bootstate"
    BootState(["A", "B"], {"A": 3, "B": 3}).save(str(bootstate))
    rootfs = tmp_path / "rootfs.squashfs"
    rootfs.write_bytes(os.urandom(1024 * 1024 + 123))
    return {"tmp": tmp_path, "key": release_key, "pub": release_pub.read_bytes(), "other_key": other_key,
            "slots": slots, "bootstate": str(bootstate), "rootfs": rootfs}


def make_bundle_cli(device, version, key=None, device_type=DEVICE, rootfs=None):
    bundle = device["tmp"] / ("update-%s.cmbundle" % version)
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make-bundle.py"), "--rootfs",
                    str(rootfs or device["rootfs"]), "--version", version, "--key", str(key or device["key"]),
                    "--device-type", device_type, str(bundle)], check=True, capture_output=True)
    return bundle


def install(device, bundle, force=False):
    return updater.install(str(bundle), public_key_pem=device["pub"], device_type=DEVICE, current_version="1.0.0",
                           booted_slot="A", slots=device["slots"], bootstate_path=device["bootstate"],
                           update_tries=1, force=force, log=lambda message: None)


def snapshot(device):
    return {path: hashlib.sha256(open(path, "rb").read()).hexdigest()
            for path in list(device["slots"].values()) + [device["bootstate"]]}


def test_good_bundle_goes_to_the_inactive_slot_on_trial(device):
    bundle = make_bundle_cli(device, "1.1.0")
    manifest = install(device, bundle)
    assert manifest["version"] == "1.1.0"
    payload = device["rootfs"].read_bytes()
    with open(device["slots"]["B"], "rb") as f:
        assert f.read(len(payload)) == payload
    assert open(device["slots"]["A"], "rb").read() == b"\x00" * SLOT_BYTES
    state = BootState.load(device["bootstate"])
    assert (state.order, state.left, state.trial) == (["B", "A"], {"A": 3, "B": 1}, "B")


def test_mark_good_confirms_the_trial_slot(device):
    install(device, make_bundle_cli(device, "1.1.0"))
    state = updater.mark_good(device["bootstate"], "B", good_tries=3)
    assert (state.order, state.left["B"], state.trial) == (["B", "A"], 3, "")
    assert BootState.load(device["bootstate"]).dumps() == state.dumps()


def tamper(bundle, member_name, delta_offset=100):
    with tarfile.open(bundle) as tar:
        offset = tar.getmember(member_name).offset_data
    with open(bundle, "r+b") as f:
        f.seek(offset + delta_offset)
        byte = f.read(1)
        f.seek(offset + delta_offset)
        f.write(bytes([byte[0] ^ 0x01]))


@pytest.mark.parametrize("case,message", [
    ("foreign key", "bad signature"),
    ("changed root byte", "root image hash does not match"),
    ("changed manifest byte", "bad signature"),
    ("lower version", "0.9.0 is not newer than the running version 1.0.0"),
    ("same version", "1.0.0 is not newer"),
    ("other device type", "device type 'chargemanager-arm64'"),
    ("truncated", "bundle is damaged"),
    ("not a bundle", "not an update bundle"),
])
def test_refused_bundles_write_nothing(device, case, message):
    if case == "foreign key":
        bundle = make_bundle_cli(device, "1.1.0", key=device["other_key"])
    elif case == "changed root byte":
        bundle = make_bundle_cli(device, "1.1.0")
        tamper(bundle, updater.ROOTFS_NAME, 500000)
    elif case == "changed manifest byte":
        bundle = make_bundle_cli(device, "1.1.0")
        tamper(bundle, updater.MANIFEST_NAME, 20)
    elif case == "lower version":
        bundle = make_bundle_cli(device, "0.9.0")
    elif case == "same version":
        bundle = make_bundle_cli(device, "1.0.0")
    elif case == "other device type":
        bundle = make_bundle_cli(device, "1.1.0", device_type="chargemanager-arm64")
    elif case == "truncated":
        bundle = make_bundle_cli(device, "1.1.0")
        with open(bundle, "r+b") as f:
            f.truncate(os.path.getsize(bundle) - 300000)
    else:
        bundle = device["tmp"] / "junk.cmbundle"
        bundle.write_bytes(b"this is not a tar file" * 100)
    before = snapshot(device)
    with pytest.raises(UpdateError, match=message):
        install(device, bundle)
    assert snapshot(device) == before


def test_rolled_back_version_is_not_installed_again_unless_forced(device):
    state = BootState.load(device["bootstate"])
    state.last_failed, state.last_failed_version = "B", "1.1.0"
    state.save(device["bootstate"])
    bundle = make_bundle_cli(device, "1.1.0")
    before = snapshot(device)
    with pytest.raises(UpdateError, match="1.1.0 was rolled back on this device before"):
        install(device, bundle)
    assert snapshot(device) == before
    assert install(device, bundle, force=True)["version"] == "1.1.0"
    assert BootState.load(device["bootstate"]).trial_version == "1.1.0"


def test_admin_can_force_an_older_version(device):
    bundle = make_bundle_cli(device, "0.9.0")
    assert install(device, bundle, force=True)["version"] == "0.9.0"
    assert BootState.load(device["bootstate"]).trial == "B"


def test_force_never_allows_another_device_type(device):
    bundle = make_bundle_cli(device, "1.1.0", device_type="chargemanager-arm64")
    with pytest.raises(UpdateError, match="device type"):
        install(device, bundle, force=True)


def test_image_larger_than_the_slot_is_refused_before_writing(device):
    big = device["tmp"] / "big.squashfs"
    big.write_bytes(os.urandom(SLOT_BYTES + 1))
    bundle = make_bundle_cli(device, "1.1.0", rootfs=big)
    before = snapshot(device)
    with pytest.raises(UpdateError, match="does not fit slot B"):
        install(device, bundle)
    assert snapshot(device) == before


@pytest.mark.parametrize("text", ["", "1.x", "1..2", "-1.0", "v1.2"])
def test_versions_must_be_dotted_numbers(text):
    with pytest.raises(UpdateError, match="dotted numbers"):
        updater.parse_version(text)


def test_version_order_is_numeric():
    assert updater.parse_version("1.10.0") > updater.parse_version("1.9.9")


def test_boot_state_reads_what_the_initramfs_writes(tmp_path):
    path = tmp_path / "bootstate"
    # the exact printf format of rootfs/etc/initramfs-tools/scripts/local-top/abslot
    path.write_text('BOOT_ORDER="B A"\nA_LEFT=2\nB_LEFT=0\nTRIAL=\nTRIAL_VERSION=\nLAST_FAILED=B\n'
                    'LAST_FAILED_VERSION=1.2.0\n')
    state = BootState.load(str(path))
    assert (state.order, state.left, state.trial, state.last_failed, state.last_failed_version) == (
        ["B", "A"], {"A": 2, "B": 0}, "", "B", "1.2.0")
    assert state.dumps() == path.read_text()


def test_command_line_outside_the_appliance_says_so(tmp_path):
    result = subprocess.run([sys.executable, "-m", "chargemanager", "update", str(tmp_path / "x.cmbundle")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "not running on the appliance image" in result.stderr
