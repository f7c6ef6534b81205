"""The config page's in-memory parts: power history slots, log ring, browser sessions, schema description."""

import logging

from chargemanager.adapters.web import Sessions
from chargemanager.adapters.web.formdesc import form_description
from chargemanager.adapters.web.history import LogRing, PowerHistory
from chargemanager.core.config import CONFIG_SCHEMA


def test_history_averages_samples_per_slot_and_keeps_gaps():
    h = PowerHistory(interval_s=10, slots=100)
    h.add(1000.0, 100, None)
    h.add(1005.0, 300, None)      # same slot: averaged
    h.add(1010.0, None, 50)       # next slot: the site has no reading (a gap, not 0 W)
    assert h.points() == [[1000, 200, None], [1010, None, 50]]
    assert h.points(since_s=1010) == [[1010, None, 50]]


def test_history_is_bounded():
    h = PowerHistory(interval_s=10, slots=3)
    for i in range(10):
        h.add(i * 10, i, i)
    points = h.points()
    assert [p[0] for p in points] == [60, 70, 80, 90]  # three closed slots and the running one
    assert points[-1] == [90, 9, 9]


def test_log_ring_keeps_the_last_lines():
    ring = LogRing(max_lines=2)
    ring.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test.ring")
    logger.addHandler(ring)
    logger.setLevel(logging.INFO)
    try:
        for i in range(3):
            logger.info("line %d", i)
    finally:
        logger.removeHandler(ring)
    assert ring.lines() == ["line 1", "line 2"]


def test_sessions_expire_when_idle_and_are_bounded():
    now = [0]
    sessions = Sessions(idle_s=60, max_sessions=2, clock_ms=lambda: now[0])
    a = sessions.create()
    assert len(a.sid) >= 40 and a.csrf != a.sid
    now[0] = 59000
    assert sessions.get(a.sid) is a          # a request refreshes the idle timer
    now[0] = 118000
    assert sessions.get(a.sid) is a
    now[0] = 179000
    assert sessions.get(a.sid) is None       # idle for more than 60 s
    b, c = sessions.create(), sessions.create()
    now[0] += 1
    sessions.get(c.sid)
    d = sessions.create()                    # the least recently used goes
    assert sessions.get(b.sid) is None and sessions.get(c.sid) is c and sessions.get(d.sid) is d
    sessions.drop_others(d.sid)
    assert sessions.get(c.sid) is None and sessions.get(d.sid) is d
    assert sessions.get("") is None and sessions.get(None) is None


def test_form_description_covers_every_schema_field():
    desc = form_description(CONFIG_SCHEMA)
    keys = [f["key"] for f in desc["fields"]]
    assert keys == [f.key for f in CONFIG_SCHEMA.fields]
    site = [f for f in desc["fields"] if f["key"] == "site"][0]["type"]
    power = [f for f in site["fields"] if f["key"] == "max_power_w"][0]
    assert power["type"]["t"] == "formula" and power["default"] == 11000
    mode = [f for f in site["fields"] if f["key"] == "mode"][0]
    assert mode["type"] == {"t": "enum", "choices": ["active", "monitor"]}
    evses = [f for f in desc["fields"] if f["key"] == "evses"][0]["type"]
    assert evses["t"] == "list" and evses["unique"] == "dev_id"
    evse_fields = dict((f["key"], f) for f in evses["item"]["fields"])
    assert evse_fields["dev_id"]["required"] is True
    assert evse_fields["max_power_w"]["type"]["t"] == "nullable"
    assert evse_fields["type"]["type"]["suggest"][0] == "ocpp16"  # plus the Modbus charger models in the build
    gateway = dict((f["key"], f) for f in evse_fields["gateway"]["type"]["fields"])
    assert gateway["password"].get("secret") is True
