"""Builds the appliance image and the update bundles the system tests install (once per session).

REUSE_ROOTFS=1 keeps an existing Debian root folder in build/out (only the app and the images are rebuilt);
CI builds everything from scratch.
"""

import os
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "build", "out", "amd64")
sys.path.insert(0, os.path.join(ROOT, "tests", "system"))

from vm import make_stick  # noqa: E402

# an image that boots but never gets healthy: the service never reports READY=1, so it never becomes active
NEVER_HEALTHY = """etc/systemd/system/chargemanager.service.d d 755 0 0
etc/systemd/system/chargemanager.service.d/50-never-healthy.conf f 644 0 0 printf '[Service]\\nExecStart=\\nExecStart=/bin/sleep infinity\\n'
"""


def run(args, env=None):
    result = subprocess.run(args, cwd=ROOT, env=dict(os.environ, **(env or {})), capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" % (" ".join(args), result.returncode, result.stdout[-3000:],
                                                         result.stderr[-3000:]))
    return result.stdout


def bundle(rootfs, version, out, key=None):
    run([sys.executable, "tools/make-bundle.py", "--rootfs", rootfs, "--version", version, "--key",
         key or os.path.join(OUT, "keys", "update-key.pem"), out])
    return out


def kernel_cmdline(out):
    """The command line the image's boot partition has (build/make-disk.sh), for qemu's direct kernel boot."""
    with open(os.path.join(out, "cmdline.txt")) as f:
        return f.read().strip()


@pytest.fixture(scope="session")
def image_arm64():
    """The arm64 image (binfmt + qemu-user for the Debian root's maintainer scripts); only the factory image."""
    if os.geteuid() != 0:
        pytest.fail("the image build needs root (mmdebstrap --mode=root, chroot)")
    run(["bash", "build/build-image.sh"], env={"IMAGE_VERSION": "1.0.0", "ARCH": "arm64"})
    out = os.path.join(ROOT, "build", "out", "arm64")
    return {"out": out, "cmdline": kernel_cmdline(out)}


@pytest.fixture(scope="session")
def image(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the image build needs root (mmdebstrap --mode=root, chroot)")
    tmp = tmp_path_factory.mktemp("bundles")
    run(["bash", "build/build-image.sh"], env={"IMAGE_VERSION": "1.0.0"})
    run(["bash", "build/pack-root.sh", "1.1.0", os.path.join(OUT, "root-1.1.0.squashfs")])
    pseudo = tmp / "never-healthy.pseudo"
    pseudo.write_text(NEVER_HEALTHY)
    # the variant gives up sooner, so the test waits one minute rather than three
    run(["bash", "build/pack-root.sh", "1.2.0", os.path.join(OUT, "root-1.2.0.squashfs"), str(pseudo)],
        env={"HEALTH_TIMEOUT_S": "60"})
    good = bundle(os.path.join(OUT, "root-1.1.0.squashfs"), "1.1.0", str(tmp / "update-1.1.0.cmbundle"))
    broken = bundle(os.path.join(OUT, "root-1.2.0.squashfs"), "1.2.0", str(tmp / "update-1.2.0.cmbundle"))
    older = bundle(os.path.join(OUT, "root-1.0.0.squashfs"), "0.9.0", str(tmp / "c-older-0.9.0.cmbundle"))
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(tmp / "foreign.pem")], check=True)
    badsig = bundle(os.path.join(OUT, "root-1.1.0.squashfs"), "1.1.0", str(tmp / "a-badsig-1.1.0.cmbundle"),
                    key=str(tmp / "foreign.pem"))
    changed = str(tmp / "b-changed-1.1.0.cmbundle")
    shutil.copy(good, changed)
    with tarfile.open(changed) as tar:
        offset = tar.getmember("rootfs.squashfs").offset_data
    with open(changed, "r+b") as f:
        f.seek(offset + 12345678)
        byte = f.read(1)
        f.seek(offset + 12345678)
        f.write(bytes([byte[0] ^ 0x40]))
    return {
        "out": OUT,
        "cmdline": kernel_cmdline(OUT),
        "bad_stick": make_stick(str(tmp / "bad-stick.img"), [badsig, changed, older]),
        "good_bundle": good,        # uploaded through the config page
        "badsig_bundle": badsig,
        "broken_stick": make_stick(str(tmp / "broken-stick.img"), [broken]),
    }
