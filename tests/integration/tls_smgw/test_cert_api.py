"""Certificate commands over HTTP against a real manager process: upload the seed's files, list, fetch, delete."""

import os
import stat
import subprocess

from httpclient import call

from .tls_helpers import read


def _cnf(manager, query):
    return manager.url + "/cnf?" + query


def test_certificate_commands_end_to_end(manager, seed_pki):
    d, other = seed_pki["dir"], seed_pki["other"]
    # The manager generated its own pair at first start.
    status, _, doc = call(_cnf(manager, "cmd=get_certs"))
    assert status == 200
    assert {c["id"] for c in doc["certs"]} == {"self-rsa", "self-ec"}

    status, _, doc = call(_cnf(manager, "cmd=upload_cert"), "POST",
                          {"use": "ca", "cert": read(d + "/rootCA.crt"), "name": "Tiefgarage Köln Root"})
    assert status == 200, doc
    ca = doc["added"][0]
    assert "O=Tiefgarage Köln GmbH" in ca["subject"] and ca["name"] == "Tiefgarage Köln Root"

    status, _, doc = call(_cnf(manager, "cmd=upload_cert"), "POST",
                          {"use": "client", "cert": read(d + "/client.crt"), "key": read(other + "/client.key")})
    assert status == 400 and "private key does not match" in doc["error"]

    status, _, doc = call(_cnf(manager, "cmd=upload_cert"), "POST",
                          {"use": "client", "cert": read(d + "/client.crt"), "key": read(d + "/client.key")})
    assert status == 200, doc
    client = doc["added"][0]
    assert client["has_key"] and "CN=Wallbox Köln 0815" in client["subject"]
    key_path = os.path.join(manager.data_dir, "certs", client["id"] + ".key")
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600

    status, _, doc = call(_cnf(manager, "cmd=get_certs"))
    assert [c["use"] for c in sorted(doc["certs"], key=lambda c: c["id"])] == ["ca", "client", "server", "server"]
    assert "PRIVATE" not in str(doc)

    # The manager's own certificate, to hand to the SMGW administrator: openssl reads it.
    status, _, doc = call(_cnf(manager, "cmd=get_cert_pem&id=self-rsa"))
    assert status == 200 and "PRIVATE" not in doc["pem"]
    out = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=doc["pem"], capture_output=True,
                         text=True, check=True).stdout
    assert "O = Charging Manager" in out

    assert call(_cnf(manager, "cmd=delete_cert&id=" + client["id"]))[0] == 200
    assert not os.path.exists(key_path)
    status, _, doc = call(_cnf(manager, "cmd=delete_cert&id=" + client["id"]))
    assert status == 404
    status, _, doc = call(_cnf(manager, "cmd=delete_cert&id=self-rsa"))
    assert status == 400 and "cannot be deleted" in doc["error"]

    # Bad bodies get a clear 400; no credentials a 401.
    status, _, doc = call(_cnf(manager, "cmd=upload_cert"), "POST", {"use": "server", "cert": "hello"})
    assert status == 400 and "not PEM" in doc["error"]
    status, _, doc = call(_cnf(manager, "cmd=upload_cert"), "POST", {"use": "owner", "cert": "x"})
    assert status == 400 and "'use' must be one of" in doc["error"]
    assert call(_cnf(manager, "cmd=get_certs"), password=None)[0] == 401

    # Still there after a restart.
    manager.stop()
    manager.start()
    status, _, doc = call(_cnf(manager, "cmd=get_certs"))
    assert {c["id"] for c in doc["certs"]} == {"self-rsa", "self-ec", ca["id"]}
