"""The /cnf API against a real manager process over loopback (SPEC §3)."""

import json

from httpclient import call


def cnf(manager, query, **kw):
    return call(manager.url + "/cnf?" + query, **kw)


def test_first_run_needs_a_password_before_anything_else(fresh_manager):
    status, _, body = cnf(fresh_manager, "cmd=get_cm_vars", password=None)
    assert status == 403 and "set-password" in body["error"]
    status, _, body = cnf(fresh_manager, "cmd=get_cm_vars", password="anything")
    assert status == 403
    status, _, body = cnf(fresh_manager, "cmd=set_password", method="POST", body={"password": "short"}, password=None)
    assert status == 400 and "at least 8" in body["error"]
    status, _, body = cnf(fresh_manager, "cmd=set_password", method="POST", body={"password": "1234abcd"},
                          password=None)
    assert status == 200
    # Once set, nobody can set it again without the password.
    status, _, _ = cnf(fresh_manager, "cmd=set_password", method="POST", body={"password": "hijacked!"},
                       password=None)
    assert status == 401
    status, _, body = cnf(fresh_manager, "cmd=get_cm_vars")
    assert status == 200 and body == {"vars": []}


def test_auth_errors_and_slow_down(manager):
    status, headers, body = cnf(manager, "cmd=get_cm_vars", password=None)
    assert status == 401 and headers["www-authenticate"].startswith("Basic")
    status, _, _ = cnf(manager, "cmd=get_cm_vars", user="root", password="1234abcd")
    assert status == 401
    statuses = [cnf(manager, "cmd=get_cm_vars", password="wrong%d" % i)[0] for i in range(4)]
    assert statuses[:2] == [401, 401]
    status, headers, body = cnf(manager, "cmd=get_cm_vars")  # even the right password waits now
    assert status == 429 and int(headers["retry-after"]) >= 1 and "try again" in body["error"]


def test_errors_are_json_with_fitting_status(manager):
    status, _, body = cnf(manager, "cmd=nope")
    assert status == 404 and "unknown command 'nope'" in body["error"]
    status, _, body = cnf(manager, "")
    assert status == 400 and "cmd" in body["error"]
    status, _, body = cnf(manager, "cmd=set_cm_vars&name=A")
    assert status == 400 and "val" in body["error"]
    status, _, body = cnf(manager, "cmd=set_cm_vars&name=9A&val=1")
    assert status == 400 and "must start with a letter" in body["error"]
    status, _, body = cnf(manager, "cmd=set_cm_vars&name=A&val=55000%20*%20(AVAIL")
    assert status == 400 and body["position"] == 15 and "position 15" in body["error"]
    status, _, body = cnf(manager, "cmd=set_cm_vars", method="POST", body=b"x" * 70000)
    assert status == 413 and "limit" in body["error"]
    status, _, body = cnf(manager, "cmd=set_cm_vars", method="POST", body=b"[" * 60000)
    assert status == 400 and "JSON" in body["error"]
    status, _, body = cnf(manager, "cmd=set_cm_vars", method="POST", body=b'{"vars": 5}')
    assert status == 400
    status, _, body = cnf(manager, "cmd=set_cm_vars", method="POST", body=b'{"vars": [{"name": "A", "expr": NaN}]}')
    assert status == 400 and "NaN" in body["error"]
    status, _, body = cnf(manager, "cmd=set_cm_vars", method="POST", body=b"\xff\xfe")
    assert status == 400 and "UTF-8" in body["error"]
    status, _, body = cnf(manager, "cmd=get_cm_vars", method="DELETE")
    assert status == 405
    status, _, body = call(manager.url + "/nowhere")
    assert status == 404 and "no such path" in body["error"]


def test_failed_batch_changes_nothing(manager):
    cnf(manager, "cmd=set_cm_vars&name=KEEP&val=1")
    body = {"vars": [{"name": "A", "expr": 1}, {"name": "B", "expr": "2 +"}, {"name": "C", "expr": 3}]}
    status, _, result = cnf(manager, "cmd=set_cm_vars&clear=1", method="POST", body=body)
    assert status == 400 and result["index"] == 1 and result["name"] == "B" and result["position"] == 4
    _, _, listing = cnf(manager, "cmd=get_cm_vars")
    assert [v["name"] for v in listing["vars"]] == ["KEEP"]


def test_formulas_values_and_errors(manager):
    body = {"vars": [{"name": "AVAIL", "expr": 50}, {"name": "P", "expr": "55000 * AVAIL / 100"},
                     {"name": "BAD", "expr": "1 / (AVAIL - 50)"}, {"name": "UNK", "expr": "NOPE * 2"}]}
    assert cnf(manager, "cmd=set_cm_vars", method="POST", body=body)[0] == 200
    _, _, listing = cnf(manager, "cmd=get_cm_vars")
    by_name = dict((v["name"], v) for v in listing["vars"])
    assert by_name["P"] == {"name": "P", "expr": "55000 * AVAIL / 100", "val": 27500}
    assert by_name["BAD"]["val"] is None and by_name["BAD"]["error"] == "division by zero"
    assert "unknown name 'NOPE'" in by_name["UNK"]["error"]


def test_variables_survive_restart_but_tmp_does_not(manager):
    cnf(manager, "cmd=set_cm_vars&name=AVAIL&val=100")
    cnf(manager, "cmd=set_cm_vars&name=AVAIL&val=0&tmp=1")
    cnf(manager, "cmd=set_cm_vars&name=T&val=5&tmp=1")
    _, _, listing = cnf(manager, "cmd=get_cm_vars")
    assert [(v["name"], v["val"]) for v in listing["vars"]] == [("AVAIL", 0), ("T", 5)]
    assert manager.stop() == 0
    manager.start()
    _, _, listing = cnf(manager, "cmd=get_cm_vars")
    assert [(v["name"], v["val"]) for v in listing["vars"]] == [("AVAIL", 100)]


def test_config_round_trip_with_field_errors_and_secrets_hidden(manager):
    status, _, body = cnf(manager, "cmd=get_config")
    config = body["config"]
    config["ocpp"]["server"]["password"] = "box-secret-0123456789"
    config["site"]["max_power_w"] = "55000 * AVAIL / 100"
    status, _, body = cnf(manager, "cmd=set_config", method="POST", body=config)
    assert status == 200 and body["config"]["ocpp"]["server"]["password"] == "********"
    bad = json.loads(json.dumps(body["config"]))
    bad["site"]["mode"] = "turbo"
    bad["evses"] = [{"dev_id": "E1", "address": "", "min_current_ma": -5}]
    status, _, body = cnf(manager, "cmd=set_config", method="POST", body=bad)
    assert status == 400
    assert sorted(e["field"] for e in body["fields"]) == ["evses[0].min_current_ma", "site.mode"]
    status, _, body = cnf(manager, "cmd=get_config")
    assert body["config"]["site"]["mode"] == "active" and body["config"]["evses"] == []
    assert body["config"]["ocpp"]["server"]["password"] == "********"
    with open(manager.data_dir + "/config.json") as f:
        stored = json.load(f)
    assert stored["ocpp"]["server"]["password"] == "box-secret-0123456789"  # the marker kept the secret


def test_sigterm_stops_cleanly(manager):
    assert manager.stop() == 0
    assert "stopped" in manager.log


def test_variable_write_wakes_the_loop_and_limits_follow(manager):
    """With a 60 s tick, only the wake-up on a write can make the loop run again; the site limit follows
    `55000 * AVAIL / 100` (W, over 3 phases at 230 V) at once."""
    import time as _time
    from chargemanager.core.limits import limit_power_to_current_ma
    config = cnf(manager, "cmd=get_config")[2]["config"]
    config["site"]["tick_ms"] = 60000
    config["site"]["max_power_w"] = "55000 * AVAIL / 100"
    config["site"]["max_current_ma"] = 100000
    assert cnf(manager, "cmd=set_config", method="POST", body=config)[0] == 200
    for avail in (50, 0, 100):
        expected = limit_power_to_current_ma(55000 * avail // 100, 230, 3)
        cnf(manager, "cmd=set_cm_vars&name=AVAIL&val=%d" % avail)
        deadline = _time.monotonic() + 10
        while _time.monotonic() < deadline:
            site = cnf(manager, "cmd=get_dev_info")[2]["params"]
            if site.get("limit_ma") == [expected] * 3:
                break
            _time.sleep(0.02)
        assert site["limit_ma"] == [expected] * 3 and site["limit_reason"] == "grid_operator", site
