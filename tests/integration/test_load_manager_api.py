"""get_dev_info / override_device / reset_overdraft against a real manager (SPEC §10 command names)."""

from httpclient import call


def cnf(manager, query, **kw):
    return call(manager.url + "/cnf?" + query, **kw)


def configure_two_boxes(manager):
    config = cnf(manager, "cmd=get_config")[2]["config"]
    config["evses"] = [{"dev_id": "E1", "address": "BOX-1", "phases": 3, "prio": 2},
                       {"dev_id": "E2", "address": "BOX-2", "phases": 1, "l1_phase": 2}]
    assert cnf(manager, "cmd=set_config", method="POST", body=config)[0] == 200


def test_get_dev_info_lists_every_evse_with_its_reason(manager):
    configure_two_boxes(manager)
    status, _, info = cnf(manager, "cmd=get_dev_info")
    assert status == 200
    devices = dict((d["dev_id"], d) for d in info["devices"])
    assert devices["E1"]["phases"] == 7 and devices["E2"]["phases"] == 2  # bitmask: L2 only for E2
    assert devices["E1"]["min_charging_cur"] == 6000 and devices["E1"]["prio"] == 2
    assert devices["E1"]["reason"] == "offline"  # no box connected yet: nothing can be sent
    # default site: 11000 W over 3 phases at 230 V binds before the 16 A fuse
    assert info["params"]["limit_ma"] == [15942] * 3 and info["params"]["limit_reason"] == "site_power"


def test_override_device(manager):
    configure_two_boxes(manager)
    status, _, body = cnf(manager, "cmd=override_device&dev_id=E1&mamps=8000&flags=C")
    assert status == 200 and body["override"] == {"current_ma": 8000, "charging": False, "rules": True}
    devices = dict((d["dev_id"], d) for d in cnf(manager, "cmd=get_dev_info")[2]["devices"])
    assert devices["E1"]["override"]["charging"] is False
    status, _, body = cnf(manager, "cmd=override_device&dev_id=E1&mamps=&flags=c")
    assert status == 200 and body["override"] == {"current_ma": None, "charging": True, "rules": True}
    assert cnf(manager, "cmd=override_device&dev_id=E9&flags=C")[0] == 404
    status, _, body = cnf(manager, "cmd=override_device&dev_id=E1&mamps=lots")
    assert status == 400 and "mA" in body["error"]
    assert cnf(manager, "cmd=override_device&dev_id=E1&flags=Z")[0] == 400
    assert cnf(manager, "cmd=reset_overdraft")[0] == 200
