"""The config page in headless Debian chromium (Playwright for Python, system browser, no download) against a real
manager process: first run, login, setup with field errors, adding an EVSE, variables. Screenshots go to
test-output/config-page/ for a human to look at."""

import os
import sys

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
    shot(page, "setup-top", full_page=False)
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
    # A charging rule (an ordered list inside the EVSE): pause while TARIF is 1 at night.
    page.click("#item-evses_0_ summary")
    page.click('[data-add="evses[0].rules"]')
    page.fill('[data-path="evses[0].rules[0].condition"]', "TARIF == == 1")
    page.select_option('[data-path="evses[0].rules[0].action"]', "pause")
    page.check('[data-path="evses[0].rules[0].time"]')
    page.fill('[data-path="evses[0].rules[0].time.from"]', "22:00")
    page.fill('[data-path="evses[0].rules[0].time.to"]', "06:00")
    page.click("#save")
    page.wait_for_selector('[data-err="evses[0].rules[0]"] div')
    assert "condition" in page.inner_text('[data-err="evses[0].rules[0]"]')
    assert call(manager.url + "/cnf?cmd=get_config")[2]["config"]["evses"][0]["rules"] == []
    page.fill('[data-path="evses[0].rules[0].condition"]', "TARIF == 1")
    page.click("#save")
    page.wait_for_selector("#save-msg.ok")
    rules = call(manager.url + "/cnf?cmd=get_config")[2]["config"]["evses"][0]["rules"]
    assert [(r["condition"], r["action"], r["time"]["from"], r["time"]["to"]) for r in rules] == [
        ("TARIF == 1", "pause", "22:00", "06:00")]
    page.click("#item-evses_0_ summary")
    shot(page, "setup-rules")
    page.set_viewport_size({"width": 390, "height": 800})
    shot(page, "setup-phone", full_page=False)
    page.set_viewport_size({"width": 1200, "height": 900})
    # Unsaved changes are not lost by a stray click: leaving Setup asks first.
    page.fill('[data-path="site.reserve_w"]', "700")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#nav-dash")
    assert page.url.endswith("#setup") and page.input_value('[data-path="site.reserve_w"]') == "700"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#nav-dash")
    page.wait_for_selector("#evse-E1")
    assert "Garage" in page.inner_text("#evse-E1")
    assert call(manager.url + "/cnf?cmd=get_config")[2]["config"]["site"]["reserve_w"] == 0


@pytest.fixture
def abb_meter():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from modbus_sim import SimDevice, SimServer

    meter = SimDevice("abb_b23", 1, {"voltage_l1_mv": 230000, "voltage_l2_mv": 230000, "voltage_l3_mv": 230000,
                                     "current_l1_ma": 12000, "current_l2_ma": 8000, "current_l3_ma": 4000,
                                     "power_w": 5520, "import_wh": 1234000})
    server = SimServer("tcp", [meter]).start()
    yield server
    server.stop()


def test_dashboard_shows_variables_and_sets_avail(manager, page, abb_meter):
    doc = call(manager.url + "/cnf?cmd=get_config")[2]["config"]
    doc["site"]["max_power_w"] = "55000 * AVAIL / 100"
    doc["site"]["max_current_ma"] = 35000
    doc["evses"] = [{"dev_id": "E1", "name": "Garage", "type": "ocpp16", "address": "WALLBOX-1"},
                    {"dev_id": "E2", "name": "Carport", "type": "ocpp16", "address": "WALLBOX-2", "id": 2}]
    doc["meters"] = [{"dev_id": "M1", "name": "House", "type": "abb_b23", "role": "grid",
                      "address": "127.0.0.1:%d" % abb_meter.port, "id": 1, "poll_interval_ms": 200}]
    assert call(manager.url + "/cnf?cmd=set_config", method="POST", body={"config": doc})[0] == 200
    call(manager.url + "/cnf?cmd=set_cm_vars&name=AVAIL&val=100")
    login(page, manager)
    # The grid meter: a real Modbus TCP peer (pymodbus simulating an ABB B23), read by the manager.
    expect(page.locator('[data-meter="M1"]')).to_contain_text("5.52 kW")
    expect(page.locator('[data-meter="M1"]')).to_contain_text("12.0 A / 8.0 A / 4.0 A")
    page.wait_for_selector('#vars tr[data-var="AVAIL"]')
    assert "100" in page.inner_text('#vars tr[data-var="AVAIL"]')
    expect(page.locator(".limit-power b")).to_have_text("55.00 kW = 55000 * AVAIL / 100")
    expect(page.locator(".site-limit b")).to_have_text("3 × 35.0 A")  # the fuse binds
    expect(page.locator(".site-reason b")).to_have_text("fuse (fixed current)")
    page.fill('[name="var-name"]', "AVAIL")
    page.fill('[name="var-val"]', "40")
    page.click('#var-form button')
    page.wait_for_selector('#var-form .msg.ok')
    expect(page.locator('#vars tr[data-var="AVAIL"] td').nth(2)).to_have_text("40")
    assert call(manager.url + "/cnf?cmd=get_cm_vars")[2]["vars"][0]["val"] == 40
    expect(page.locator(".limit-power b")).to_have_text("22.00 kW = 55000 * AVAIL / 100")
    expect(page.locator(".site-limit b")).to_have_text("3 × 31.9 A")  # 22000 W / 3 / 230 V
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


@pytest.fixture
def inproc_manager(tmp_path):
    """The manager built in this process (real HTTP server, real load management), with the control loop driven
    by the test: it publishes readings as the meter and wallbox adapters do and runs ticks, so hours of chart data
    take a second."""
    import logging

    from chargemanager.runtime import Runtime

    runtime = Runtime(str(tmp_path / "data"), http_port=0, ocpp_port=0, host="127.0.0.1")
    runtime.auth.set_password("1234abcd")
    runtime.start()
    runtime.url = "http://127.0.0.1:%d" % runtime.http_port
    yield runtime
    runtime.shutdown()
    logging.getLogger().removeHandler(runtime.web.logs)


def wait_for_driver_publish(rt, dev_ids, timeout_s=20):
    """The OCPP driver publishes each configured box's state (offline) once after a configuration change; a replay
    of readings starts after that (a bounded wait, not a timing assertion)."""
    import time

    deadline = time.monotonic() + timeout_s
    while not all(rt.readings.get(d) for d in dev_ids):
        assert time.monotonic() < deadline, "the OCPP driver never published %s" % dev_ids
        time.sleep(0.02)


def test_dashboard_chart_tiles_and_meters_from_live_readings(inproc_manager, page):
    import math

    from chargemanager.shim.clock import monotonic_ms

    rt = inproc_manager
    doc = call(rt.url + "/cnf?cmd=get_config")[2]["config"]
    doc["site"].update({"max_power_w": 22000, "max_current_ma": 32000, "reserve_w": 500})
    # Monitor mode: the manager only observes these boxes (they run under another load manager), so the replayed
    # readings below are all there is; an active box would get limits from the OCPP driver, which then publishes
    # the real (offline) state of a box that never connected.
    doc["evses"] = [{"dev_id": "E1", "name": "Garage", "type": "ocpp16", "address": "WALLBOX-1", "mode": "monitor"},
                    {"dev_id": "E2", "name": "Carport", "type": "ocpp16", "address": "WALLBOX-2", "mode": "monitor"}]
    # A pushed meter (no bus, like the product's set_ajax_meter): its readings come from outside, here the replay.
    doc["meters"] = [{"dev_id": "M1", "name": "House", "type": "ajax", "role": "grid"}]
    assert call(rt.url + "/cnf?cmd=set_config", method="POST", body={"config": doc})[0] == 200
    wait_for_driver_publish(rt, ["E1", "E2"])
    start_s = 1_800_000_000
    clock = [start_s]
    rt.web.wall_s = lambda: clock[0]
    for step in range(2 * 360):  # two hours, one reading every 10 s
        clock[0] = start_s + step * 10
        house_w = int(1500 + 800 * math.sin(step / 40.0))
        ev_w = 11000 if 120 <= step < 600 else 0
        per_phase_ma = (house_w + ev_w) * 1000 // (3 * 230)
        now = monotonic_ms()
        rt.readings.publish("M1", {"power_w": house_w + ev_w, "current_l1_ma": per_phase_ma,
                                   "current_l2_ma": per_phase_ma, "current_l3_ma": per_phase_ma}, now)
        ev_ma = ev_w * 1000 // (3 * 230)
        rt.readings.publish("E1", {"online": True, "wants": True, "power_w": ev_w, "energy_wh": 1000 + step * 3,
                                   "current_l1_ma": ev_ma, "current_l2_ma": ev_ma, "current_l3_ma": ev_ma}, now)
        rt.readings.publish("E2", {"online": True, "wants": False, "power_w": 0}, now)
        rt.tick(now)
    status, _, hist = call(rt.url + "/cnf?cmd=get_history")
    assert status == 200 and len(hist["points"]) == 720
    assert hist["points"][200][2] == 11000 and hist["points"][10][2] == 0
    login(page, rt)
    page.wait_for_selector("svg.chart path.site")
    assert page.get_attribute("svg.chart path.site", "d").count("L") == 719
    assert page.get_attribute("svg.chart path.ev", "d").count("L") == 719
    assert page.get_attribute("#evse-E2", "class") == "tile idle"
    assert "monitor mode" in page.inner_text("#evse-E2")
    assert "none" in page.inner_text("#evse-E2 .car")
    rt.readings.publish("IN1", {"value": 1}, monotonic_ms())  # a ripple control contact, as the inputs publish it
    expect(page.locator('[data-reading="IN1"]')).to_contain_text("value 1")
    meter = page.inner_text('[data-meter="M1"]')
    assert "House" in meter and "kW" in meter
    # The car stops charging: the tile follows.
    rt.readings.publish("E1", {"online": True, "wants": True, "power_w": 0, "energy_wh": 3000,
                               "current_l1_ma": 0, "current_l2_ma": 0, "current_l3_ma": 0}, monotonic_ms())
    rt.tick()
    expect(page.locator("#evse-E1")).to_have_class("tile connected")
    rt.readings.publish("E1", {"online": True, "wants": True, "power_w": 7000, "energy_wh": 3000,
                               "current_l1_ma": 10000, "current_l2_ma": 10000, "current_l3_ma": 10000},
                        monotonic_ms())
    rt.tick()
    expect(page.locator("#evse-E1")).to_have_class("tile charging")
    expect(page.locator("#evse-E1 .limit b")).to_contain_text("monitor mode")
    shot(page, "dashboard-live")
