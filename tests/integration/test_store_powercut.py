"""Atomic writes survive a writer killed at any moment: SIGKILL a writer hundreds of times mid-write and prove
that every reload finds a complete, valid file (old or new, never broken)."""

import hashlib
import json
import os
import random
import signal
import time

from chargemanager.adapters.store import DataStore, atomic_write_json, read_json

KILLS = 300


def document(seq):
    payload = "x" * random.randint(0, 200000)  # large enough that a write takes a while
    digest = hashlib.sha256(("%d:%s" % (seq, payload)).encode()).hexdigest()
    return {"seq": seq, "payload": payload, "sha256": digest}


def writer(path, seq):
    while True:
        seq += 1
        atomic_write_json(path, document(seq))


def valid(path):
    with open(path, "rb") as f:  # the file itself, not the .prev fallback
        doc = json.loads(f.read().decode("utf-8"))
    expected = hashlib.sha256(("%d:%s" % (doc["seq"], doc["payload"])).encode()).hexdigest()
    return doc["sha256"] == expected, doc["seq"]


def test_sigkill_mid_write_never_leaves_a_broken_file(tmp_path):
    path = str(tmp_path / "variables.json")
    atomic_write_json(path, document(0))
    rng = random.Random(1234)
    seq = 0
    advanced = 0
    kills = 0
    # At least KILLS kills, and enough of them after a completed write that they land at many different points;
    # on a loaded machine a write takes longer, so keep going (bounded) until that is true.
    while kills < KILLS or (advanced < KILLS // 4 and kills < 6 * KILLS):
        kills += 1
        pid = os.fork()
        if pid == 0:  # child: write until killed
            try:
                writer(path, seq)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0, 0.02 + 0.01 * (kills - advanced) / KILLS))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        ok, new_seq = valid(path)
        assert ok, "broken file after a kill"
        assert read_json(path)["seq"] == new_seq
        advanced += new_seq > seq
        seq = new_seq
    # The kills landed at many different points, not always before the first write completed.
    assert advanced >= KILLS // 4, (advanced, kills)
    leftovers = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    DataStore(str(tmp_path))  # opening the folder cleans up temp files of dead writers
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")], leftovers


def test_unreadable_file_falls_back_to_previous_copy(tmp_path):
    path = str(tmp_path / "config.json")
    atomic_write_json(path, {"site": {"reserve_w": 100}})
    atomic_write_json(path, {"site": {"reserve_w": 200}})
    with open(path, "wb") as f:
        f.write(b'{"site": {"reser')  # media corruption
    assert read_json(path) == {"site": {"reserve_w": 100}}
    store = DataStore(str(tmp_path))
    config, problems = store.load_config()
    assert config["site"]["reserve_w"] == 100 and problems


def test_invalid_config_on_disk_falls_back_and_says_why(tmp_path):
    store = DataStore(str(tmp_path))
    atomic_write_json(store.path("config.json"), {"site": {"mode": "turbo"}})
    config, problems = store.load_config()
    assert config["site"]["mode"] == "active" and "site.mode" in problems[0]


def test_secrets_are_owner_only(tmp_path):
    store = DataStore(str(tmp_path))
    store.save_auth({"admin": {"scheme": "scrypt"}})
    store.save_config({"version": 1})
    assert os.stat(store.path("auth.json")).st_mode & 0o077 == 0
    assert os.stat(store.path("config.json")).st_mode & 0o077 == 0
