"""The config page with a real wallbox: an installer adds an OCPP EVSE in headless chromium, a wallbox built on the
Python `ocpp` package connects to the manager process, and its tile follows (offline -> Available -> charging with
the granted limit); the grid operator's AVAIL changes the limit on the tile and in the box's charging profile;
the charging profiles are cleared from the Actions page."""

import asyncio
import threading

import pytest
from ocpp.v16 import call as ocall

from httpclient import call
from ocpp_pybox import close_box, open_box
from test_config_page_browser import browser, login, page, shot  # noqa: F401 (fixtures)

pytest.importorskip("chargemanager.adapters.ocpp_service", reason="the OCPP server is not wired into the runtime yet")
from test_ocpp_runtime import next_limit, ocpp_port  # noqa: E402

expect = pytest.importorskip("playwright.sync_api").expect


class WallboxThread:
    """An asyncio loop in a thread running one `ocpp` charge point; steps are run from the test thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.box = self.ws = self.task = None

    def run(self, coro, timeout_s=20):
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout_s), self.loop).result()

    def connect(self, port, cbid):
        self.box, self.ws, self.task = self.run(open_box(port, cbid))

    def send(self, request):
        return self.run(self.box.call(request))

    def close(self):
        if self.ws is not None:
            self.run(close_box(self.ws, self.task))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@pytest.fixture
def wallbox():
    w = WallboxThread()
    yield w
    w.close()


def test_add_an_ocpp_evse_and_watch_a_wallbox_connect_and_charge(manager, page, wallbox):
    call(manager.url + "/cnf?cmd=set_cm_vars&name=AVAIL&val=100")
    login(page, manager)
    page.click("#nav-setup")
    page.wait_for_selector("#setup")
    page.fill('[data-path="site.max_current_ma"]', "32000 * AVAIL / 100")
    page.fill('[data-path="site.max_power_w"]', "100000")
    page.click('[data-add="evses"]')
    page.fill('[data-path="evses[0].name"]', "Garage")
    page.fill('[data-path="evses[0].address"]', "GARAGE-BOX")
    page.click("#save")
    page.wait_for_selector("#save-msg.ok")
    page.click("#nav-dash")
    tile = page.locator("#evse-E1")
    expect(tile.locator(".state b")).to_have_text("offline")
    port = ocpp_port(manager)

    wallbox.connect(port, "GARAGE-BOX")
    assert wallbox.run(wallbox.box.boot()).status == "Accepted"
    wallbox.send(ocall.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
    expect(tile.locator(".state b")).to_have_text("Available")
    expect(tile.locator(".car b")).to_have_text("none")
    expect(page.locator(".ocpp-connected b")).to_have_text("GARAGE-BOX")

    wallbox.send(ocall.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
    expect(tile).to_have_class("tile connected")
    wallbox.send(ocall.StartTransaction(connector_id=1, id_tag="CARD1", meter_start=10000,
                                        timestamp="2026-11-22T03:00:00Z"))
    wallbox.send(ocall.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
    wallbox.run(next_limit(wallbox.box, 16.0))
    wallbox.send(ocall.MeterValues(connector_id=1, meter_value=[{
        "timestamp": "2026-11-22T03:01:00Z", "sampled_value": [
            {"value": "10500", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            {"value": "11000", "measurand": "Power.Active.Import", "unit": "W"},
            {"value": "15.9", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
            {"value": "15.9", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
            {"value": "15.9", "measurand": "Current.Import", "phase": "L3", "unit": "A"}]}]))
    expect(tile).to_have_class("tile charging")
    expect(tile.locator(".limit b")).to_have_text("16.0 A · EVSE maximum")
    expect(tile.locator(".car b")).to_have_text("charging")
    expect(tile).to_contain_text("0.50 kWh (session)")
    expect(tile).to_contain_text("3 × 15.9 A")
    shot(page, "dashboard-wallbox-charging")

    # The grid operator cuts the connection to a quarter: 8 A; the tile and the box's profile follow.
    page.fill('[name="var-name"]', "AVAIL")
    page.fill('[name="var-val"]', "25")
    page.click("#var-form button")
    expect(tile.locator(".limit b")).to_have_text("8.0 A · grid operator (formula)")
    wallbox.run(next_limit(wallbox.box, 8.0))
    expect(page.locator(".site-limit b")).to_have_text("3 × 8.0 A")

    # A second box that is not configured knocks: the dashboard offers to add it, Setup has it filled in.
    stranger = WallboxThread()
    try:
        with pytest.raises(Exception):
            stranger.connect(port, "CARPORT-BOX")
    finally:
        stranger.close()
    page.locator("#ocpp-seen button").click()
    page.wait_for_selector('[data-path="evses[1].address"]')
    assert page.input_value('[data-path="evses[1].address"]') == "CARPORT-BOX"
    assert page.input_value('[data-path="evses[1].dev_id"]') == "E2"
    page.click("#save")
    page.wait_for_selector("#save-msg.ok")
    assert [e["address"] for e in call(manager.url + "/cnf?cmd=get_config")[2]["config"]["evses"]] == [
        "GARAGE-BOX", "CARPORT-BOX"]

    # Clear the box's charging profiles from the Actions page.
    page.click("#nav-actions")
    clear = page.locator("section", has=page.locator("h2", has_text="Clear charging profiles"))
    clear.locator("button").click()
    expect(clear.locator(".msg")).to_have_text("done")
    cleared = wallbox.run(wallbox.box.clears.get())
    assert cleared == {} or "connector_id" not in cleared or cleared.get("connector_id") in (None, 0, 1)


def test_actions_pause_an_evse_set_a_current_and_reset_the_overdraft(manager, page, wallbox):
    doc = call(manager.url + "/cnf?cmd=get_config")[2]["config"]
    doc["site"].update({"max_current_ma": 32000, "max_power_w": 100000})
    doc["evses"] = [{"dev_id": "E1", "name": "Garage", "type": "ocpp16", "address": "GARAGE-BOX"}]
    assert call(manager.url + "/cnf?cmd=set_config", method="POST", body={"config": doc})[0] == 200
    wallbox.connect(ocpp_port(manager), "GARAGE-BOX")
    assert wallbox.run(wallbox.box.boot()).status == "Accepted"
    wallbox.send(ocall.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
    wallbox.run(next_limit(wallbox.box, 16.0))
    login(page, manager)
    page.click("#nav-actions")
    page.wait_for_selector("#diag")
    override = page.locator("form", has=page.locator('select[name="flags"]'))
    override.locator('select[name="flags"]').select_option("C")
    override.locator("button").click()
    expect(override.locator(".msg")).to_have_text("done")
    wallbox.run(next_limit(wallbox.box, 0.0))  # paused: the box is told 0 A
    evse = call(manager.url + "/cnf?cmd=get_status")[2]["evses"][0]
    assert evse["override"]["charging"] is False and evse["decision"]["reason"] == "override"
    override.locator('select[name="flags"]').select_option("c")
    override.locator('input[name="mamps"]').fill("8000")
    override.locator("button").click()
    expect(override.locator(".msg")).to_have_text("done")
    wallbox.run(next_limit(wallbox.box, 8.0))  # allowed again, capped at 8 A
    evse = call(manager.url + "/cnf?cmd=get_status")[2]["evses"][0]
    assert evse["override"] == {"current_ma": 8000, "charging": True, "rules": True}
    override.locator('input[name="mamps"]').fill("lots")
    override.locator("button").click()
    expect(override.locator(".msg")).to_contain_text("mamps must be a whole number")
    reset = page.locator("section", has=page.locator("h2", has_text="Reset the overdraft"))
    reset.locator("button").click()
    expect(reset.locator(".msg")).to_have_text("done")
    shot(page, "actions")
    page.click("#nav-dash")
    expect(page.locator("#evse-E1 .override b")).to_contain_text("8.0 A")
    expect(page.locator("#evse-E1 .limit b")).to_have_text("8.0 A · manual override")
    with page.expect_download() as download:
        page.goto(manager.url + "/#actions")
        page.click("#diag")
    assert download.value.suggested_filename.startswith("chargemanager-diagnostics-")


def test_gateway_settings_on_setup_and_the_backend_link_on_the_tile(manager, page, wallbox):
    """The OCPP gateway of an EVSE set up on the page; a billing backend built on the Python `ocpp` package sees
    the box under its client ID, and the tile shows the backend link, also when the backend goes away."""
    from gateway_peers import Backend

    backend = Backend(password="backend-secret-0123456789")
    wallbox.run(backend.start())
    running = True
    try:
        login(page, manager)
        page.click("#nav-setup")
        page.wait_for_selector("#setup")
        page.click('[data-add="evses"]')
        page.fill('[data-path="evses[0].address"]', "GW-BOX")
        page.fill('[data-path="evses[0].gateway.url"]', "ws://127.0.0.1:%d/cs/" % backend.port)
        page.fill('[data-path="evses[0].gateway.password"]', "backend-secret-0123456789")
        page.fill('[data-path="evses[0].gateway.client_id"]', "backend-gw")
        page.click("#save")
        page.wait_for_selector("#save-msg.ok")
        gateway = call(manager.url + "/cnf?cmd=get_config")[2]["config"]["evses"][0]["gateway"]
        assert gateway["password"] == "********" and gateway["client_id"] == "backend-gw"
        assert page.input_value('[data-path="evses[0].gateway.password"]') == "********"  # never the secret
        page.click("#nav-dash")
        tile = page.locator("#evse-E1")
        expect(tile.locator(".backend b")).to_contain_text("connected")
        wallbox.connect(ocpp_port(manager), "GW-BOX")
        assert wallbox.run(wallbox.box.boot()).status == "Accepted"
        expect(tile.locator(".backend b")).to_have_text("connected")
        assert "backend-gw" in backend.stations
        shot(page, "dashboard-gateway", full_page=False)
        wallbox.run(backend.stop())
        running = False
        expect(tile.locator(".backend b")).to_contain_text("unreachable")
    finally:
        if running:
            wallbox.run(backend.stop())
