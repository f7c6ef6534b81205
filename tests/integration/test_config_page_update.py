"""Update upload on the config page (headless chromium, the manager built in-process with its HTTP server): a
bundle signed with the device's release key (openssl Ed25519, tools/make-bundle.py) goes through the page with a
progress bar to the upload spool, and the root installer (its own process, started when the spool is not empty as
chargemanager-update.path does) puts it into the inactive slot; one signed with another key is refused and changes
nothing. Slots, boot state and release file are plain files standing in for the partitions."""

import hashlib
import os

import pytest

from test_config_page_browser import browser, inproc_manager, login, page, shot  # noqa: F401 (fixtures)

updater = pytest.importorskip("chargemanager.adapters.updater")
expect = pytest.importorskip("playwright.sync_api").expect
from update_device import InstallerWatch, make_bundle, make_device  # noqa: E402


@pytest.fixture
def device(tmp_path):
    return make_device(str(tmp_path))


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_upload_a_bundle_with_progress_and_see_its_verification(inproc_manager, page, device):
    rt = inproc_manager
    with InstallerWatch(rt.store.folder, device["paths"]):
        upload_forged_good_and_older(rt, page, device)


def upload_forged_good_and_older(rt, page, device):
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
    assert os.listdir(rt.store.path("update/incoming")) == []
    assert rt.web.spool.result()["state"] == "installed"
    shot(page, "actions-update", full_page=False)
    older = make_bundle(device["folder"], device["rootfs"], "0.9.0", device["key"])
    form.locator('[name="bundle"]').set_input_files(older)  # a downgrade: refused unless forced
    form.locator("button").click()
    expect(page.locator("#update-result.err")).to_contain_text("not newer")
