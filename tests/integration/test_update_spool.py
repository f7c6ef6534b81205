"""The config page's update hand-off between the unprivileged app and the root installer (adapters/update_spool.py,
updater.process_spool): the app side runs as its own process under an unprivileged user (`nobody` when the tests
run as root, as on the appliance), the installer as its own process with the real updater, on slot files standing
in for the partitions. Besides a good and a refused bundle, the app side plays the hostile part: links, a FIFO, a
huge sparse file, a hard link, stray files and a result file replaced by a link must not make root do anything but
"verify and install this regular file"."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from update_device import make_bundle, make_device, run_installer

NOBODY = 65534
AS_NOBODY = os.geteuid() == 0
APP = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "app")

APP_SIDE = """import json, os, sys
from chargemanager.adapters.update_spool import UpdateSpool
spool = UpdateSpool(sys.argv[1])
with open(sys.argv[2], "rb") as f:
    bundle_id, received = spool.receive(f, os.path.getsize(sys.argv[2]), force=sys.argv[3] == "1")
print(json.dumps({"id": bundle_id, "received": received, "uid": os.geteuid(), "waiting": spool.waiting(bundle_id)}))
"""

APP_READS_RESULT = """import json, sys
from chargemanager.adapters.update_spool import UpdateSpool
print(json.dumps(UpdateSpool(sys.argv[1]).wait_result(sys.argv[2], 30)))
"""


def as_app(args):
    """A process of the app's user: `nobody` (no write access to anything of root's) when we are root, with the
    system's python3 (the test runner's interpreter may live in root's home) and the app's source tree; the
    spool side needs nothing beyond the standard library, as on the appliance."""
    if AS_NOBODY:
        command = ["/usr/bin/python3", "-c"]
        kwargs = {"user": NOBODY, "group": NOBODY, "extra_groups": [], "cwd": "/",
                  "env": {"PYTHONPATH": APP, "PATH": "/usr/bin:/bin"}}
    else:
        command, kwargs = [sys.executable, "-c"], {}
    result = subprocess.run(command + args, capture_output=True, text=True, timeout=60, **kwargs)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def box():
    # not pytest's tmp_path: its parent folders are root-only, and `nobody` must reach the data folder
    top = tempfile.mkdtemp(prefix="cm-spool-")
    try:
        os.chmod(top, 0o755)
        os.mkdir(os.path.join(top, "device"), 0o700)  # slots, boot state, keys: root's
        device = make_device(os.path.join(top, "device"))
        data = os.path.join(top, "data")
        os.mkdir(data, 0o750)
        if AS_NOBODY:
            os.chown(data, NOBODY, NOBODY)
        device["data"] = data
        device["top"] = top
        yield device
    finally:
        shutil.rmtree(top)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def fingerprint(box):
    paths = box["paths"]
    return digest(paths["slots"]["A"]), digest(paths["slots"]["B"]), digest(paths["bootstate"])


def spool_as_app(box, bundle, force=False):
    os.chmod(bundle, 0o644)
    return json.loads(as_app([APP_SIDE, box["data"], bundle, "1" if force else "0"]))


def incoming(box):
    return os.path.join(box["data"], "update", "incoming")


def test_an_unprivileged_upload_is_installed_by_root_and_the_app_reads_the_result(box):
    good = make_bundle(box["top"], box["rootfs"], "1.1.0", box["key"])
    spooled = spool_as_app(box, good)
    assert spooled["received"] == os.path.getsize(good) and spooled["waiting"]
    assert spooled["uid"] == (NOBODY if AS_NOBODY else os.geteuid())
    lines = run_installer(box["data"], box["paths"])
    assert "update: installed version 1.1.0 from config page upload %s" % spooled["id"] in lines
    result = json.loads(as_app([APP_READS_RESULT, box["data"], spooled["id"]]))
    assert result["state"] == "installed" and result["version"] == "1.1.0"
    assert any("writing slot B" in line for line in result["log"])
    with open(box["rootfs"], "rb") as f:
        payload = f.read()
    with open(box["paths"]["slots"]["B"], "rb") as f:
        assert f.read(len(payload)) == payload
    assert os.listdir(incoming(box)) == []
    with open(box["paths"]["bootstate"]) as f:
        assert "TRIAL=B" in f.read()


def test_a_refused_upload_writes_nothing_and_says_why(box):
    before = fingerprint(box)
    forged = make_bundle(box["top"], box["rootfs"], "1.1.0", box["other_key"])
    spooled = spool_as_app(box, forged)
    run_installer(box["data"], box["paths"])
    result = json.loads(as_app([APP_READS_RESULT, box["data"], spooled["id"]]))
    assert result["state"] == "refused" and "bad signature" in result["message"]
    assert fingerprint(box) == before
    older = make_bundle(box["top"], box["rootfs"], "0.9.0", box["key"])
    spooled = spool_as_app(box, older)
    run_installer(box["data"], box["paths"])
    assert "not newer" in json.loads(as_app([APP_READS_RESULT, box["data"], spooled["id"]]))["message"]
    spooled = spool_as_app(box, older, force=True)  # the admin's downgrade: the name says "force"
    run_installer(box["data"], box["paths"])
    assert json.loads(as_app([APP_READS_RESULT, box["data"], spooled["id"]]))["state"] == "installed"


HOSTILE = """import os, sys
data, good, victim = sys.argv[1:4]
from chargemanager.adapters.update_spool import UpdateSpool
spool = UpdateSpool(data)
inc = spool.incoming
os.symlink(good, os.path.join(inc, "a1.cmbundle"))              # a signed bundle, but only through a link
os.symlink(victim, os.path.join(inc, "a2.force.cmbundle"))      # a file only root may read
os.mkfifo(os.path.join(inc, "a3.cmbundle"))                     # would block a careless reader
with open(os.path.join(inc, "a4.cmbundle"), "wb") as f:          # 2 GiB, sparse
    f.truncate(2 * 1024 * 1024 * 1024)
own = os.path.join(spool.folder, "mine.cmbundle")
with open(good, "rb") as src, open(own, "wb") as dst:
    dst.write(src.read())
os.link(own, os.path.join(inc, "a5.cmbundle"))                  # a second name of a file the app keeps writing
with open(os.path.join(inc, "notes.txt"), "w") as f:
    f.write("not a bundle")
os.mkdir(os.path.join(inc, "a6.cmbundle"))
os.symlink(victim, os.path.join(spool.folder, "result.json"))   # root's result must not go through this
"""


def test_links_fifos_huge_files_and_strays_in_the_spool_do_not_hurt(box):
    good = make_bundle(box["top"], box["rootfs"], "1.1.0", box["key"])
    victim = os.path.join(box["top"], "victim")
    with open(victim, "w") as f:
        f.write("root's own file\n")
    os.chmod(victim, 0o600)
    before = fingerprint(box)
    as_app([HOSTILE, box["data"], good, victim])
    lines = run_installer(box["data"], box["paths"])
    text = "\n".join(lines)
    assert "refused upload a1: the uploaded file cannot be opened" in text        # the link was not followed
    assert "refused upload a2: the uploaded file cannot be opened" in text
    assert "refused upload a3: the uploaded file is not a regular file" in text
    assert "refused upload a4: the uploaded file is 2147483648 bytes, more than the limit" in text
    assert "refused upload a5: the uploaded file has other names (hard links)" in text
    assert "removed 'notes.txt' from the upload spool" in text
    assert "installer: done, installed None" in text
    assert fingerprint(box) == before                                              # nothing written
    assert os.listdir(incoming(box)) == []                                         # the path unit is quiet again
    with open(victim) as f:
        assert f.read() == "root's own file\n"
    result_path = os.path.join(box["data"], "update", "result.json")
    assert not os.path.islink(result_path)                                         # replaced, not followed
    with open(result_path) as f:
        last = json.load(f)
    assert (last["id"], last["state"], last["message"]) == ("a6", "refused", "the uploaded file is not a regular file")


def test_a_spool_folder_replaced_by_a_link_is_not_followed(box):
    good = make_bundle(box["top"], box["rootfs"], "1.1.0", box["key"])
    elsewhere = os.path.join(box["top"], "elsewhere")
    os.makedirs(os.path.join(elsewhere, "incoming"))
    shutil.copy(good, os.path.join(elsewhere, "incoming", "b1.cmbundle"))
    as_app(["import os, sys\n"
            "from chargemanager.adapters.update_spool import UpdateSpool\n"
            "spool = UpdateSpool(sys.argv[1])\n"
            "os.rmdir(spool.incoming)\n"
            "os.symlink(sys.argv[2], spool.incoming)\n", box["data"], os.path.join(elsewhere, "incoming")])
    before = fingerprint(box)
    lines = run_installer(box["data"], box["paths"])
    assert any("is not a folder" in line for line in lines)
    assert fingerprint(box) == before
    assert os.listdir(os.path.join(elsewhere, "incoming")) == ["b1.cmbundle"]


REPLACE = """import json, os, sys
from chargemanager.adapters.update_spool import UpdateSpool
spool = UpdateSpool(sys.argv[1])
ids = []
for bundle in sys.argv[2:]:
    withdrawn = spool.discard_waiting()   # what the upload handler does before it spools a new bundle
    with open(bundle, "rb") as f:
        ids.append((spool.receive(f, os.path.getsize(bundle))[0], withdrawn))
print(json.dumps(ids))
"""


def test_a_new_upload_replaces_one_the_installer_never_took(box):
    first = make_bundle(box["top"], box["rootfs"], "1.1.0", box["key"])
    second = make_bundle(box["top"], box["rootfs"], "1.2.0", box["key"])
    (first_id, none), (second_id, withdrawn) = json.loads(as_app([REPLACE, box["data"], first, second]))
    assert none == [] and withdrawn == [first_id]
    lines = run_installer(box["data"], box["paths"])
    assert "update: installed version 1.2.0 from config page upload %s" % second_id in lines
    assert not any(first_id in line for line in lines)


def test_the_running_manager_hands_an_upload_to_the_installer_and_reports_the_result(manager, tmp_path):
    """The manager as its own process (`python -m chargemanager run`), the upload over HTTP as the config page
    sends it, the installer as a third process started when the spool fills: the answer carries its result, and
    get_update / get_status show it afterwards."""
    from httpclient import Browserless, call
    from update_device import InstallerWatch

    device_folder = str(tmp_path / "device")
    os.mkdir(device_folder)
    device = make_device(device_folder)
    good = make_bundle(device_folder, device["rootfs"], "1.1.0", device["key"])
    client = Browserless(manager.url)
    assert client.login(manager.password)[0] == 303
    token = client.page_token()
    with open(good, "rb") as f:
        data = f.read()
    with InstallerWatch(manager.data_dir, device["paths"]) as watch:
        status, _, raw = client.request("/ui/update", data, {"X-CSRF-Token": token,
                                                            "Content-Type": "application/octet-stream"}, "POST")
    answer = json.loads(raw)
    assert status == 200 and answer["ok"] and answer["version"] == "1.1.0", answer
    assert any("writing slot B" in line for line in answer["log"])
    assert any(line.startswith("update: installed version 1.1.0 from config page upload") for line in watch.output)
    status, _, body = call(manager.url + "/cnf?cmd=get_update", password=manager.password)
    assert status == 200 and body["last"]["state"] == "installed" and body["waiting"] is False
    status, _, body = call(manager.url + "/cnf?cmd=get_status", password=manager.password)
    assert body["update"]["last"]["version"] == "1.1.0"
