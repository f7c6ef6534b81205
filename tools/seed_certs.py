#!/usr/bin/env python3
"""Certificate helper that follows the seed's openssl recipe (seed 004, "certificati"), without prompts.

The seed's commands, run as written except that the CA key's passphrase is passed on the command line
(``-passout``/``-passin``) because ``genrsa -des3`` would otherwise ask for it on the terminal:

    openssl genrsa -des3 -out rootCA.key 4096
    openssl req -x509 -new -nodes -key rootCA.key -sha256 -days 365 -out rootCA.crt -config rootCA.cnf -utf8
    openssl genrsa -out client.key 2048
    openssl req -new -key client.key -out client.csr -config client.cnf -utf8
    openssl x509 -req -in client.csr -CA rootCA.crt -CAkey rootCA.key -CAcreateserial -out client.crt -days 365 -sha256

The configuration files have the seed's format (UTF-8, umlauts allowed). Usage:

    tools/seed_certs.py DIR [--ca-cn NAME] [--client-cn NAME] [--days N] [--passphrase PW]

writes rootCA.cnf, rootCA.key, rootCA.crt, client.cnf, client.key, client.csr, client.crt into DIR.

What the recipe gives with OpenSSL 3.0 (measured): both certificates are X.509 version 1 without extensions (the
seed's config names ``req_extensions`` only, which ``req -x509`` and ``x509 -req`` ignore); OpenSSL accepts a
self-signed v1 certificate as a CA. The CA and the client MUST get different subjects (CN): with the seed's file
used unchanged for both, the client certificate names itself as its issuer and no verifier accepts it.
"""

import argparse
import os
import subprocess
import sys

SEED_CNF = """[req]
prompt = no
distinguished_name = dn
req_extensions = ext
[dn]
CN = {cn}
emailAddress = info@tiefgarage-koeln.de
O = Tiefgarage Köln GmbH
OU = Abteilung 13
L = Köln
C = DE
[ext]
subjectAltName = {san}
"""

def run(args, cwd):
    proc = subprocess.run(["openssl"] + args, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), proc.stderr.strip()))
    return proc.stdout


def write_cnf(path, cn, san="DNS:tiefgarage-koeln.de,DNS:*.tiefgarage-koeln.de"):
    text = SEED_CNF.format(cn=cn, san=san)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def make_root_ca(folder, cn="Unsere Tiefgarage Root-CA", passphrase="wallbox-ca-pass", days=365, prefix="rootCA"):
    """The seed's root CA: des3-encrypted 4096-bit key and a self-signed certificate. Returns (crt, key) paths."""
    os.makedirs(folder, exist_ok=True)
    write_cnf(os.path.join(folder, prefix + ".cnf"), cn)
    run(["genrsa", "-des3", "-out", prefix + ".key", "-passout", "pass:" + passphrase, "4096"], folder)
    run(["req", "-x509", "-new", "-nodes", "-key", prefix + ".key", "-passin", "pass:" + passphrase, "-sha256",
         "-days", str(days), "-out", prefix + ".crt", "-config", prefix + ".cnf", "-utf8"], folder)
    return os.path.join(folder, prefix + ".crt"), os.path.join(folder, prefix + ".key")


def make_signed(folder, ca_prefix="rootCA", cn="Unsere Tiefgarage", prefix="client", passphrase="wallbox-ca-pass",
                days=365, san="DNS:tiefgarage-koeln.de,DNS:*.tiefgarage-koeln.de", bits=2048):
    """The seed's client key, CSR and certificate signed by the root CA. Returns (crt, key) paths."""
    write_cnf(os.path.join(folder, prefix + ".cnf"), cn, san=san)
    run(["genrsa", "-out", prefix + ".key", str(bits)], folder)
    run(["req", "-new", "-key", prefix + ".key", "-out", prefix + ".csr", "-config", prefix + ".cnf", "-utf8"],
        folder)
    run(["x509", "-req", "-in", prefix + ".csr", "-CA", ca_prefix + ".crt", "-CAkey", ca_prefix + ".key",
         "-passin", "pass:" + passphrase, "-CAcreateserial", "-out", prefix + ".crt", "-days", str(days), "-sha256"],
        folder)
    return os.path.join(folder, prefix + ".crt"), os.path.join(folder, prefix + ".key")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--ca-cn", default="Unsere Tiefgarage Root-CA")
    ap.add_argument("--client-cn", default="Unsere Tiefgarage")
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--passphrase", default="wallbox-ca-pass")
    a = ap.parse_args(argv)
    make_root_ca(a.folder, a.ca_cn, a.passphrase, a.days)
    crt, key = make_signed(a.folder, cn=a.client_cn, passphrase=a.passphrase, days=a.days)
    print("root CA: %s\nclient:  %s + %s" % (os.path.join(a.folder, "rootCA.crt"), crt, key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
