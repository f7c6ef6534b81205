"""A stand-in appliance for update tests: slot files, boot state, release file, openssl Ed25519 keys, bundles made
by tools/make-bundle.py, and the root installer of config page uploads run as its own process the way
chargemanager-update.path starts it (when the spool folder is not empty)."""

import json
import os
import subprocess
import sys
import threading

from chargemanager.adapters import updater
from chargemanager.adapters.update_spool import INCOMING, SPOOL_FOLDER

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEVICE = "chargemanager-amd64"
SLOT_BYTES = 4 * 1024 * 1024


def openssl_key(folder, name):
    private, public = os.path.join(folder, name + ".pem"), os.path.join(folder, name + "-pub.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", private], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", private, "-pubout", "-out", public], check=True, capture_output=True)
    return private, public


def make_bundle(folder, rootfs, version, key, name=None):
    bundle = os.path.join(folder, name or "update-%s.cmbundle" % version)
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make-bundle.py"), "--rootfs", rootfs, "--version",
                    version, "--key", key, "--device-type", DEVICE, bundle], check=True, capture_output=True)
    os.chmod(bundle, 0o644)
    return bundle


def make_device(folder):
    """Slots (running A, confirmed), release 1.0.0, a release key pair and a foreign key, a root image."""
    key, pub = openssl_key(folder, "release")
    other_key, _ = openssl_key(folder, "other")
    slots = {}
    for slot in "AB":
        slots[slot] = os.path.join(folder, "root" + slot)
        with open(slots[slot], "wb") as f:
            f.write(b"\0" * SLOT_BYTES)
    bootstate = os.path.join(folder, "bootstate")
    updater.BootState(["A", "B"], {"A": 3, "B": 3}).save(bootstate)
    with open(os.path.join(folder, "release.json"), "w") as f:
        json.dump({"device_type": DEVICE, "version": "1.0.0"}, f)
    with open(os.path.join(folder, "boot-slot"), "w") as f:
        f.write("A\n")
    rootfs = os.path.join(folder, "rootfs.squashfs")
    with open(rootfs, "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024 + 17))
    paths = dict(updater.APPLIANCE, slots=slots, bootstate=bootstate, release=os.path.join(folder, "release.json"),
                 public_key=pub, booted_slot_file=os.path.join(folder, "boot-slot"),
                 settings=os.path.join(folder, "update.json"), led_base=os.path.join(folder, "leds"))
    return {"folder": folder, "key": key, "other_key": other_key, "rootfs": rootfs, "paths": paths}


INSTALLER = ("import json, sys\n"
             "from chargemanager.adapters import updater\n"
             "version = updater.process_spool(sys.argv[1], paths=json.loads(sys.argv[2]))\n"
             "print('installer: done, installed %s' % version)\n")


def run_installer(data_folder, paths, timeout_s=120):
    """One run of the root installer on `data_folder`/update (what chargemanager-update.service runs, without the
    reboot); returns its output lines."""
    result = subprocess.run([sys.executable, "-c", INSTALLER, os.path.join(data_folder, SPOOL_FOLDER),
                             json.dumps(paths)], capture_output=True, text=True, timeout=timeout_s)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


class InstallerWatch:
    """Starts the installer whenever the spool's incoming folder is not empty, as the path unit does."""

    def __init__(self, data_folder, paths):
        self.data_folder = data_folder
        self.paths = paths
        self.output = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        incoming = os.path.join(self.data_folder, SPOOL_FOLDER, INCOMING)
        while not self._stop.wait(0.1):
            if os.path.isdir(incoming) and os.listdir(incoming):
                self.output += run_installer(self.data_folder, self.paths)
