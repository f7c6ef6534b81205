"""Update upload on the config page (headless chromium, the manager built in-process with its HTTP server): a
bundle signed with the device's release key (openssl Ed25519, tools/make-bundle.py) goes through the page with a
progress bar into the inactive slot; one signed with another key is refused and changes nothing. Slots, boot state
and release file are plain files standing in for the partitions."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from test_config_page_browser import browser, inproc_manager, login, page, shot  # noqa: F401 (fixtures)

updater = pytest.importorskip("chargemanager.adapters.updater")
expect = pytest.importorskip("playwright.sync_api").expect

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEVICE = "chargemanager-amd64"


def openssl_key(folder, name):
    private, public = os.path.join(folder, name + ".pem"), os.path.join(folder, name + "-pub.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", private], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", private, "-pubout", "-out", public], check=True, capture_output=True)
    return private, public


def make_bundle(folder, rootfs, version, key):
    bundle = os.path.join(folder, "update-%s.cmbundle" % version)
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make-bundle.py"), "--rootfs", rootfs, "--version",
                    version, "--key", key, "--device-type", DEVICE, bundle], check=True, capture_output=True)
    return bundle


@pytest.fixture
def device(tmp_path):
    folder = str(tmp_path)
    key, pub = openssl_key(folder, "release")
    other_key, _ = openssl_key(folder, "other")
    slots = {}
    for slot in "AB":
        slots[slot] = os.path.join(folder, "root" + slot)
        with open(slots[slot], "wb") as f:
            f.write(b"\0" * (4 * 1024 * 1024))
    bootstate = os.path.join(folder, "bootstate")
    updater.BootState(["A", "B"], {"A": 3, "B": 3}).save(bootstate)
    with open(os.path.join(folder, "release.json"), "w") as f:
        json.dump({"device_type": DEVICE, "version": "1.0.0"}, f)
    with open(os.path.join(folder, "boot-slot"), "w") as f:
        f.write("A\n")
    rootfs = os.path.join(folder, "rootfs.squashfs")
    with open(rootfs, "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024 + 17))
    paths = dict(updater.APPLIANCE, slots=slots, bootstate=bootstate, release=os.path.join(folder, "release.json"),
                 public_key=pub, booted_slot_file=os.path.join(folder, "boot-slot"),
                 settings=os.path.join(folder, "update.json"), led_base=os.path.join(folder, "leds"))
    return {"folder": folder, "key": key, "other_key": other_key, "rootfs": rootfs, "paths": paths}


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_upload_a_bundle_with_progress_and_see_its_verification(inproc_manager, page, device):
    rt = inproc_manager
    rt.web.update_paths = device["paths"]
    slots = device["paths"]["slots"]
    forged = make_bundle(device["folder"], device["rootfs"], "1.1.0", device["other_key"])
    before = (digest(slots["A"]), digest(slots["B"]), digest(device["paths"]["bootstate"]))
    login(page, rt)
    page.click("#nav-actions")
    form = page.locator("#update-form")
    form.locator('[name="bundle"]').set_input_files(forged)
    form.locator("button").click()
    expect(page.locator("#update-result.err")).to_contain_text("bad signature")
    expect(page.locator("#update-result")).to_contain_text("nothing was installed")
    assert (digest(slots["A"]), digest(slots["B"]), digest(device["paths"]["bootstate"])) == before

    good = make_bundle(device["folder"], device["rootfs"], "1.1.0", device["key"])
    form.locator('[name="bundle"]').set_input_files(good)
    form.locator("button").click()
    expect(page.locator("#update-result.ok")).to_contain_text("Installed version 1.1.0", timeout=30000)
    assert page.locator("#update-progress").get_attribute("value") == "100"
    with open(device["rootfs"], "rb") as f:
        payload = f.read()
    with open(slots["B"], "rb") as f:
        assert f.read(len(payload)) == payload       # the inactive slot got the image
    assert digest(slots["A"]) == before[0]           # the running slot was not touched
    state = updater.BootState.load(device["paths"]["bootstate"])
    assert state.trial == "B"
    assert not os.path.exists(rt.store.path(".update-upload.tmp"))
    shot(page, "actions-update", full_page=False)
    older = make_bundle(device["folder"], device["rootfs"], "0.9.0", device["key"])
    form.locator('[name="bundle"]').set_input_files(older)  # a downgrade: refused unless forced
    form.locator("button").click()
    expect(page.locator("#update-result.err")).to_contain_text("not newer")
