"""adapters/txqueue.py: CRC-framed append-only log, torn tails, SIGKILL of a writer, atomic compaction."""
import os
import random
import signal
import subprocess
import sys
import textwrap

from chargemanager.adapters.txqueue import HEADER, TxQueue, read_valid

WRITER = textwrap.dedent("""
    import random, sys
    from chargemanager.adapters.txqueue import TxQueue
    q = TxQueue(sys.argv[1])
    n = len(q.open())
    print("open", n, flush=True)
    rnd = random.Random(n)
    while True:
        # sizes up to 200 kB so that a kill lands inside a write now and then
        q.append([{"n": n, "pad": "x" * rnd.randrange(0, 200000)}])
        print(n, flush=True)
        n += 1
""")


def test_roundtrip_and_reopen(tmp_path):
    path = str(tmp_path / "q" / "E1.log")
    q = TxQueue(path)
    assert q.open() == []
    recs = [{"k": "msg", "seq": i, "payload": "{\"v\":\"\u00e9%d\"}" % i} for i in range(5)]
    q.append(recs[:2])
    q.append(recs[2:])
    q.close()
    q2 = TxQueue(path)
    assert q2.open() == recs
    q2.close()


def test_torn_tail_cut_at_every_byte(tmp_path):
    path = str(tmp_path / "E1.log")
    q = TxQueue(path)
    q.open()
    q.append([{"i": 1}, {"i": 2, "s": "OCMF|{}|{\"SD\":\"30\"}"}])
    q.close()
    full = open(path, "rb").read()
    first_len = HEADER.size + HEADER.unpack_from(full, 0)[0]
    for cut in range(first_len, len(full)):
        with open(path, "wb") as f:
            f.write(full[:cut])
        q = TxQueue(path)
        assert q.open() == [{"i": 1}]
        q.close()
        assert os.path.getsize(path) == first_len
    # a flipped bit in the last record: CRC mismatch, the record is dropped, the earlier one kept
    bad = bytearray(full)
    bad[-3] ^= 0x01
    with open(path, "wb") as f:
        f.write(bytes(bad))
    assert read_valid(path)[0] == [{"i": 1}]
    # garbage after valid records (power cut on a file system that extended the file with junk)
    with open(path, "wb") as f:
        f.write(full + b"\xff\xff\xff\x7f" + os.urandom(100))
    q = TxQueue(path)
    assert q.open() == [{"i": 1}, {"i": 2, "s": "OCMF|{}|{\"SD\":\"30\"}"}]
    q.append([{"i": 3}])
    q.close()
    assert [r["i"] for r in read_valid(path)[0]] == [1, 2, 3]


def test_compact_replaces_atomically(tmp_path):
    path = str(tmp_path / "E1.log")
    q = TxQueue(path)
    q.open()
    q.append([{"i": i} for i in range(100)])
    q.compact([{"i": 99}])
    q.append([{"i": 100}])
    q.close()
    assert read_valid(path)[0] == [{"i": 99}, {"i": 100}]
    assert not os.path.exists(path + ".tmp")


def test_sigkill_writer_many_times_every_reload_valid(tmp_path):
    path = str(tmp_path / "E1.log")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    rnd = random.Random(4)
    confirmed = 0
    for round_no in range(25):
        p = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE, env=env, text=True)
        opened = p.stdout.readline().split()
        assert opened[0] == "open"
        # everything a previous writer confirmed as fsynced is still there after its SIGKILL
        assert int(opened[1]) >= confirmed
        wanted = rnd.randrange(1, 40)
        last = None
        for _ in range(wanted):
            last = int(p.stdout.readline())
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        p.stdout.close()
        confirmed = last + 1
        records, valid = read_valid(path)
        assert [r["n"] for r in records] == list(range(len(records)))
        assert len(records) >= confirmed
