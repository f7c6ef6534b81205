"""The seed's curl commands (seed 000), run exactly as written; only host:port differ."""

import json
import shlex
import subprocess

SEED_COMMANDS = [
    "curl -i -X GET --user admin:1234abcd 'http://localhost/cnf?cmd=set_cm_vars&name=var3&val=123'",
    "curl -i -X POST -d '{ \"vars\": [{ \"name\": \"tarif\", \"expr\": 1 }, { \"name\": \"PWR\", \"expr\": 70 }] }' "
    "--user admin:1234abcd 'http://localhost/cnf?cmd=set_cm_vars'",
    "curl -i -X GET --user admin:1234abcd 'http://localhost/cnf?cmd=get_cm_vars'",
]
# The seed's multi-variable example body, stray `]` included.
SEED_BROKEN_BODY = '{"vars": [{ "name": "var1", "expr": 1.5 }], { "name": "var2", "expr": 2 }] }'


def run_curl(command, manager):
    argv = [arg.replace("http://localhost/", manager.url + "/") for arg in shlex.split(command)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    status = int(head.split("\n")[0].split()[1])
    return status, json.loads(body)


def test_seed_curl_commands_work_as_written(manager):
    status, body = run_curl(SEED_COMMANDS[0], manager)
    assert status == 200 and body["set"] == ["var3"]
    status, body = run_curl(SEED_COMMANDS[1], manager)
    assert status == 200 and body["set"] == ["tarif", "PWR"]
    status, body = run_curl(SEED_COMMANDS[2], manager)
    assert status == 200
    assert body == {"vars": [{"name": "PWR", "expr": 70, "val": 70}, {"name": "tarif", "expr": 1, "val": 1},
                             {"name": "var3", "expr": 123, "val": 123}]}


def test_seed_post_with_stray_bracket_is_refused_and_changes_nothing(manager):
    run_curl(SEED_COMMANDS[0], manager)
    command = "curl -i -X POST -d %s --user admin:1234abcd 'http://localhost/cnf?cmd=set_cm_vars&clear=1'" % (
        shlex.quote(SEED_BROKEN_BODY))
    status, body = run_curl(command, manager)
    assert status == 400
    assert "malformed JSON at line 1, column 45" in body["error"] and body["position"] == 44
    status, body = run_curl(SEED_COMMANDS[2], manager)
    assert [v["name"] for v in body["vars"]] == ["var3"]  # clear=1 of the failed request cleared nothing
