"""The config page in headless Debian chromium (Playwright for Python, system browser, no download) against a real
manager process: first run, login, setup with field errors, adding an EVSE, variables. Screenshots go to
test-output/config-page/ for a human to look at."""

import os

import pytest

from httpclient import call

playwright_api = pytest.importorskip("playwright.sync_api")

expect = playwright_api.expect
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHOTS = os.path.join(ROOT, "test-output", "config-page")
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    assert os.path.exists(CHROMIUM), "Debian chromium missing: make system-deps (tools/system-packages.txt)"
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    external = []
    pg.on("request", lambda r: external.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:")) else None)
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield pg
    context.close()
    assert external == [], "the page must not load anything from outside the appliance"
    assert [e for e in errors if "401" not in e and "400" not in e] == [], errors


def shot(pg, name, full_page=True):
    os.makedirs(SHOTS, exist_ok=True)
    pg.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=full_page)


def login(pg, manager, password="1234abcd"):
    pg.goto(manager.url + "/")
    pg.fill("#password", password)
    pg.click("button[type=submit]")
    pg.wait_for_selector("#dash")


def test_first_run_asks_for_a_password_before_anything_else(fresh_manager, page):
    page.goto(fresh_manager.url + "/")
    assert page.url.endswith("/first-run")
    shot(page, "first-run", full_page=False)
    page.fill("#password", "abc")
    page.fill("#password2", "abc")
    page.click("button[type=submit]")
    assert "at least 8 characters" in page.inner_text("#form-error")
    page.fill("#password", "my new password")
    page.fill("#password2", "my new password")
    page.click("button[type=submit]")
    page.wait_for_selector("#dash")
    assert call(fresh_manager.url + "/cnf?cmd=get_status", password="my new password")[0] == 200


def test_login_setup_field_errors_and_add_an_ocpp_evse(manager, page):
    page.goto(manager.url + "/")
    assert page.url.endswith("/login")
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    assert "Wrong password" in page.inner_text("#form-error")
    login(page, manager)
    page.click("#nav-setup")
    page.wait_for_selector("#setup")
    # Bad input: an EVSE without ChargeBox ID, a word where a number belongs, a broken formula.
    page.click('[data-add="evses"]')
    page.fill('[data-path="evses[0].min_current_ma"]', "six amps")
    page.fill('[data-path="site.max_power_w"]', "55000 * (AVAIL / 100")
    page.click("#save")
    page.wait_for_selector('[data-err="site.max_power_w"] div')
    assert "formula error" in page.inner_text('[data-err="site.max_power_w"]')
    assert "integer" in page.inner_text('[data-err="evses[0].min_current_ma"]')
    assert "nothing was changed" in page.inner_text("#save-msg")
    shot(page, "setup-field-errors")
    status, _, body = call(manager.url + "/cnf?cmd=get_config")
    assert body["config"]["evses"] == [] and body["config"]["site"]["max_power_w"] == 11000  # nothing saved
    # The formula and the number fixed, but the ChargeBox ID still missing: a whole-document rule.
    page.fill('[data-path="site.max_power_w"]', "55000 * AVAIL / 100")
    page.fill('[data-path="evses[0].min_current_ma"]', "6000")
    page.click("#save")
    page.wait_for_selector('[data-err="evses[0].address"] div')
    assert "ChargeBox ID" in page.inner_text('[data-err="evses[0].address"]')
    page.fill('[data-path="evses[0].address"]', "WALLBOX-1")
    page.fill('[data-path="evses[0].name"]', "Garage")
    page.select_option('[data-path="evses[0].phases"]', "3") if page.query_selector(
        'select[data-path="evses[0].phases"]') else page.fill('[data-path="evses[0].phases"]', "3")
    page.click("#save")
    page.wait_for_selector("#save-msg.ok")
    status, _, body = call(manager.url + "/cnf?cmd=get_config")
    evses = body["config"]["evses"]
    assert [(e["dev_id"], e["type"], e["address"], e["id"], e["name"]) for e in evses] == [
        ("E1", "ocpp16", "WALLBOX-1", 1, "Garage")]
    assert body["config"]["site"]["max_power_w"] == "55000 * AVAIL / 100"
    shot(page, "setup")
    page.click("#nav-dash")
    page.wait_for_selector("#evse-E1")
    assert "Garage" in page.inner_text("#evse-E1")


def test_dashboard_shows_variables_and_sets_avail(manager, page):
    doc = call(manager.url + "/cnf?cmd=get_config")[2]["config"]
    doc["site"]["max_power_w"] = "55000 * AVAIL / 100"
    doc["site"]["max_current_ma"] = 35000
    doc["evses"] = [{"dev_id": "E1", "name": "Garage", "type": "ocpp16", "address": "WALLBOX-1"},
                    {"dev_id": "E2", "name": "Carport", "type": "ocpp16", "address": "WALLBOX-2", "id": 2}]
    doc["meters"] = [{"dev_id": "M1", "type": "eastron_sdm630", "role": "grid"}]
    assert call(manager.url + "/cnf?cmd=set_config", method="POST", body={"config": doc})[0] == 200
    call(manager.url + "/cnf?cmd=set_cm_vars&name=AVAIL&val=100")
    login(page, manager)
    page.wait_for_selector('#vars tr[data-var="AVAIL"]')
    assert "100" in page.inner_text('#vars tr[data-var="AVAIL"]')
    expect(page.locator(".limit-power b")).to_have_text("55.00 kW = 55000 * AVAIL / 100")
    expect(page.locator(".site-limit b")).to_have_text("35.0 A / 35.0 A / 35.0 A")  # the fuse binds
    expect(page.locator(".site-reason b")).to_have_text("fuse (fixed current)")
    page.fill('[name="var-name"]', "AVAIL")
    page.fill('[name="var-val"]', "40")
    page.click('#var-form button')
    page.wait_for_selector('#var-form .msg.ok')
    expect(page.locator('#vars tr[data-var="AVAIL"] td').nth(2)).to_have_text("40")
    assert call(manager.url + "/cnf?cmd=get_cm_vars")[2]["vars"][0]["val"] == 40
    expect(page.locator(".limit-power b")).to_have_text("22.00 kW = 55000 * AVAIL / 100")
    expect(page.locator(".site-limit b")).to_have_text("31.9 A / 31.9 A / 31.9 A")  # 22000 W / 3 / 230 V
    expect(page.locator(".site-reason b")).to_have_text("grid operator (formula)")
    page.fill('[name="var-name"]', "AVAIL")
    page.fill('[name="var-val"]', "40 +")
    page.click('#var-form button')
    page.wait_for_selector('#var-form .msg.err')
    assert "position" in page.inner_text('#var-form .msg.err') or "syntax" in page.inner_text('#var-form .msg.err')
    shot(page, "dashboard")
    # The same page on a phone.
    page.set_viewport_size({"width": 390, "height": 800})
    shot(page, "dashboard-phone")
