#!/usr/bin/env python3
"""Make a signed update bundle from a root slot image (squashfs).

usage: tools/make-bundle.py --rootfs build/out/amd64/root-1.1.0.squashfs --version 1.1.0 \
           --key build/out/amd64/keys/update-key.pem [--device-type chargemanager-amd64] OUT.cmbundle
The key is an Ed25519 private key in PEM (build/dev-key.sh makes a development one; keep a release key offline).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "app"))
from chargemanager.adapters.updater import UpdateError, make_bundle  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description="make a signed update bundle")
    parser.add_argument("--rootfs", required=True, help="root slot image (squashfs)")
    parser.add_argument("--version", required=True, help="dotted numbers, e.g. 1.1.0; must be newer than the device's")
    parser.add_argument("--key", required=True, help="Ed25519 private key (PEM)")
    parser.add_argument("--device-type", default="chargemanager-amd64")
    parser.add_argument("bundle", help="output file, conventionally *.cmbundle")
    args = parser.parse_args()
    with open(args.key, "rb") as f:
        key_pem = f.read()
    try:
        manifest = make_bundle(args.rootfs, args.bundle, key_pem, args.device_type, args.version)
    except UpdateError as e:
        print("make-bundle: %s" % e, file=sys.stderr)
        return 1
    print("bundle %s: %s %s, root image %d bytes sha256 %s" % (
        args.bundle, manifest["device_type"], manifest["version"], manifest["rootfs"]["size"],
        manifest["rootfs"]["sha256"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
