"""The certificate store fed with files made by the seed's openssl recipe (SPEC §6): accepted where they should be,
refused with a clear message where not."""

import json
import os
import stat
import subprocess
import time

import pytest

from chargemanager.adapters import certs
from chargemanager.adapters.certs import CertError, CertStore

from .tls_helpers import load_tool, read

DAY_S = 86400


def test_first_start_generates_rsa_and_ec_self_signed_with_sans(tmp_path):
    store = CertStore(str(tmp_path), names=["wallbox-manager", "localhost"], addresses=["192.0.2.7", "::1"])
    entries = {e["id"]: e for e in store.list()}
    assert set(entries) == {"self-rsa", "self-ec"}
    rsa, ec = entries["self-rsa"], entries["self-ec"]
    assert (rsa["key_type"], rsa["key_bits"]) == ("rsa", 2048)
    assert (ec["key_type"], ec["key_bits"]) == ("ec", 256)
    for e in (rsa, ec):
        assert e["use"] == "server" and e["has_key"] and e["self_signed"] and e["valid_now"]
        assert e["subject_alt_names"] == ["wallbox-manager", "localhost", "192.0.2.7", "::1"]
        assert "CN=wallbox-manager" in e["subject"]
    # openssl, an independent parser, reads the same names.
    out = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", store.cert_path("self-ec")],
                         capture_output=True, text=True, check=True).stdout
    assert "DNS:wallbox-manager" in out and "IP Address:192.0.2.7" in out
    # A second start keeps the same pair.
    again = CertStore(str(tmp_path))
    assert {e["id"]: e["fingerprint_sha256"] for e in again.list()} == \
        {i: entries[i]["fingerprint_sha256"] for i in entries}


def test_private_keys_are_owner_only_and_never_listed(tmp_path, seed_pki):
    d = seed_pki["dir"]
    store = CertStore(str(tmp_path))
    entry = store.import_cert("client", read(d + "/client.crt"), read(d + "/client.key"))[0]
    for cid in ("self-rsa", "self-ec", entry["id"]):
        assert stat.S_IMODE(os.stat(store.key_path(cid)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.folder).st_mode) == 0o700
    listing = json.dumps(store.list())
    assert "PRIVATE KEY" not in listing
    key_body = read(d + "/client.key").splitlines()[1]
    assert key_body not in listing
    assert "PRIVATE" not in store.certificate_pem(entry["id"])


def test_seed_root_ca_and_client_certificate_accepted_with_umlauts(tmp_path, seed_pki):
    d = seed_pki["dir"]
    store = CertStore(str(tmp_path))
    ca = store.import_cert("ca", read(d + "/rootCA.crt"), name="Tiefgarage Köln")[0]
    assert ca["subject"].startswith("C=DE,L=Köln,OU=Abteilung 13,O=Tiefgarage Köln GmbH,")
    assert "CN=Unsere Tiefgarage Root-CA" in ca["subject"]
    assert "emailAddress=info@tiefgarage-koeln.de" in ca["subject"]
    assert ca["name"] == "Tiefgarage Köln"
    cl = store.import_cert("client", read(d + "/client.crt"), read(d + "/client.key"))[0]
    assert "CN=Wallbox Köln 0815" in cl["subject"]
    assert cl["issuer"] == ca["subject"]
    # Fingerprint as openssl computes it.
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", d + "/client.crt"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip().split("=", 1)[1] == cl["fingerprint_sha256"]
    # The same certificate as an own server certificate (cert + key in one upload) is accepted too.
    srv = store.import_cert("server", read(d + "/client.crt") + read(d + "/client.key"))[0]
    assert srv["use"] == "server" and srv["has_key"]
    # An imported RSA server certificate takes the RSA slot; the self-signed EC one stays.
    assert sorted(store.server_pairs()) == sorted([(store.cert_path("self-ec"), store.key_path("self-ec")),
                                                   (store.cert_path(srv["id"]), store.key_path(srv["id"]))])
    # Survives a restart.
    assert {e["id"] for e in CertStore(str(tmp_path)).list()} == {e["id"] for e in store.list()}


def test_encrypted_seed_ca_key_needs_its_passphrase(tmp_path, seed_pki):
    d = seed_pki["dir"]
    store = CertStore(str(tmp_path))
    with pytest.raises(CertError, match="encrypted: give its passphrase"):
        store.import_cert("server", read(d + "/rootCA.crt"), read(d + "/rootCA.key"))
    with pytest.raises(CertError, match="wrong passphrase"):
        store.import_cert("server", read(d + "/rootCA.crt"), read(d + "/rootCA.key"), passphrase="nope")
    e = store.import_cert("server", read(d + "/rootCA.crt"), read(d + "/rootCA.key"), passphrase="wallbox-ca-pass")[0]
    # Stored decrypted (the box must start unattended) but owner-only.
    assert stat.S_IMODE(os.stat(store.key_path(e["id"])).st_mode) == 0o600


@pytest.mark.parametrize("case,expect", [
    ("key_mismatch", "private key does not match"),
    ("broken_pem", "broken PEM"),
    ("truncated", "BEGIN line without a matching END"),
    ("not_pem", "not PEM text"),
    ("csr", "certificate signing request"),
    ("no_key", "private key is missing"),
    ("expired", "has expired"),
    ("not_yet_valid", "not yet valid"),
    ("same_subject", "names itself as its issuer"),
])
def test_refused_with_a_clear_message(tmp_path, seed_pki, case, expect):
    d, other = seed_pki["dir"], seed_pki["other"]
    now = time.time()
    clock = {"now": now}
    store = CertStore(str(tmp_path), now_fn=lambda: clock["now"])
    crt, key = read(d + "/client.crt"), read(d + "/client.key")
    if case == "key_mismatch":
        args = (crt, read(other + "/client.key"))
    elif case == "broken_pem":
        lines = crt.splitlines()
        lines[3] = lines[3][:10] + "!!!!" + lines[3][14:]
        args = ("\n".join(lines) + "\n", key)
    elif case == "truncated":
        args = (crt[: len(crt) // 2], key)
    elif case == "not_pem":
        with open(d + "/client.crt", "rb") as f:
            der = subprocess.run(["openssl", "x509", "-outform", "DER"], input=f.read(), capture_output=True,
                                 check=True).stdout
        args = (der.hex(), key)
    elif case == "csr":
        args = (read(d + "/client.csr"), key)
    elif case == "no_key":
        args = (crt, None)
    elif case == "expired":
        clock["now"] = now + 400 * DAY_S  # the seed's certificates are valid for 365 days
        args = (crt, key)
    elif case == "not_yet_valid":
        clock["now"] = now - 2 * DAY_S
        args = (crt, key)
    elif case == "same_subject":
        # The seed's config file used unchanged for the CA and the client: same subject on both.
        tool = load_tool("seed_certs")
        folder = str(tmp_path / "same")
        tool.make_root_ca(folder, cn="Unsere Tiefgarage")
        c, k = tool.make_signed(folder, cn="Unsere Tiefgarage")
        clock["now"] = time.time()
        args = (read(c), read(k))
    before = sorted(os.listdir(store.folder))
    with pytest.raises(CertError, match=expect):
        store.import_cert("client", *args)
    # Nothing half-applied.
    assert sorted(os.listdir(store.folder)) == before


def test_ca_import_refuses_a_private_key_and_expired_ca(tmp_path, seed_pki):
    d = seed_pki["dir"]
    store = CertStore(str(tmp_path), now_fn=lambda: time.time() + 400 * DAY_S)
    with pytest.raises(CertError, match="without a private key"):
        store.import_cert("ca", read(d + "/rootCA.crt") + read(d + "/client.key"))
    with pytest.raises(CertError, match="CA certificate .*has expired"):
        store.import_cert("ca", read(d + "/rootCA.crt"))


def test_weak_key_refused(tmp_path):
    folder = str(tmp_path / "weak")
    os.makedirs(folder)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:1024", "-nodes", "-keyout", "k.pem", "-out", "c.pem",
                    "-subj", "/CN=weak", "-days", "30"], cwd=folder, capture_output=True, check=True)
    store = CertStore(str(tmp_path / "data"))
    with pytest.raises(CertError, match="1024 bits is too weak"):
        store.import_cert("server", read(folder + "/c.pem"), read(folder + "/k.pem"))


def test_chain_must_link_up(tmp_path, seed_pki):
    d, other = seed_pki["dir"], seed_pki["other"]
    store = CertStore(str(tmp_path))
    ok = store.import_cert("server", read(d + "/client.crt") + read(d + "/rootCA.crt"), read(d + "/client.key"))[0]
    assert store.certificate_pem(ok["id"]).count("BEGIN CERTIFICATE") == 2
    with pytest.raises(CertError, match="chain does not link up"):
        store.import_cert("server", read(d + "/client.crt") + read(other + "/rootCA.crt"), read(d + "/client.key"))


def test_delete(tmp_path, seed_pki):
    d = seed_pki["dir"]
    store = CertStore(str(tmp_path))
    e = store.import_cert("client", read(d + "/client.crt"), read(d + "/client.key"))[0]
    store.delete(e["id"])
    assert e["id"] not in {x["id"] for x in store.list()}
    assert not os.path.exists(store.key_path(e["id"]))
    with pytest.raises(KeyError):
        store.delete(e["id"])
    with pytest.raises(CertError, match="cannot be deleted"):
        store.delete("self-rsa")


def test_orphan_files_from_an_interrupted_import_are_removed(tmp_path, seed_pki):
    store = CertStore(str(tmp_path))
    # A crash after the key was written but before the index: the key file is not named by the index.
    orphan = os.path.join(store.folder, "client-0123456789abcdef.key")
    with open(orphan, "w") as f:
        f.write(read(seed_pki["dir"] + "/client.key"))
    CertStore(str(tmp_path))
    assert not os.path.exists(orphan)


def test_split_pem_accepts_crlf():
    pem = certs.make_self_signed("ec", time.time(), ["x"], [])[0]
    from cryptography.hazmat.primitives import serialization
    text = pem.public_bytes(serialization.Encoding.PEM).decode().replace("\n", "\r\n")
    assert len(certs.split_pem(text)[0]) == 1
