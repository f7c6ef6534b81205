"""Signed A/B updates of the appliance root file system, boot-slot state and the health check (mark good).

A bundle (`*.cmbundle`) is an uncompressed tar holding
  manifest.json    {"format": 1, "device_type": "chargemanager-amd64", "version": "1.1.0",
                    "rootfs": {"file": "rootfs.squashfs", "size": <bytes>, "sha256": "<hex>"}}
  manifest.sig     the raw 64-byte Ed25519 signature of the exact manifest.json bytes
  rootfs.squashfs  the new read-only root
Nothing is written before the signature, the device type, the version (newer than the running one unless forced)
and the size and SHA-256 of the root image have been checked. The image then goes to the inactive slot, is read
back and compared, and only then does the boot state switch to it, on trial (UPDATE_TRIES boots). The
health check confirms the slot ("mark good") once the app answers; a slot on trial that does not get healthy
in time reboots, and the initramfs (rootfs/etc/initramfs-tools/scripts/local-top/abslot) falls back.

The boot state is a small KEY=value file on the boot partition, shared with that initramfs script:
  BOOT_ORDER="A B"  A_LEFT=3  B_LEFT=3  TRIAL=<slot>  TRIAL_VERSION=<version>  LAST_FAILED=<slot>
  LAST_FAILED_VERSION=<version>   (empty when none; LAST_FAILED* name the last slot that was rolled back)
A version that was rolled back is not installed again unless forced, so a stick left in the box cannot loop.
Every path (slots, boot state, keys, release file) is a parameter, so tests run against plain files.
"""

import argparse
import glob
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import tarfile
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

BUNDLE_SUFFIX = ".cmbundle"
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
ROOTFS_NAME = "rootfs.squashfs"
MANIFEST_MAX_BYTES = 64 * 1024
CHUNK_BYTES = 1024 * 1024
SLOTS = ("A", "B")

# where things are on the appliance (see firmware/image.conf, rootfs/etc/fstab)
APPLIANCE = {
    "slots": {"A": "/dev/disk/by-partlabel/rootA", "B": "/dev/disk/by-partlabel/rootB"},
    "bootstate": "/boot/bootstate",
    "booted_slot_file": "/run/chargemanager/boot-slot",
    "release": "/usr/lib/chargemanager/release.json",
    "public_key": "/usr/share/chargemanager/update-pub.pem",
    "settings": "/usr/lib/chargemanager/update.json",
    "usb_mount": "/run/chargemanager/usb",
    "led_base": "/sys/class/leds",
    "spool": "/data/update",
}
DEFAULT_SETTINGS = {"good_tries": 3, "update_tries": 1, "health_timeout_s": 300}


class UpdateError(Exception):
    """A refused or failed update; the message says why, for the log, the console and the config page."""


def parse_version(text):
    """"1.10.2" -> (1, 10, 2); only dotted non-negative integers, so the order is unambiguous."""
    parts = str(text).split(".")
    if not text or not all(p.isdigit() for p in parts):
        raise UpdateError("version %r is not dotted numbers like 1.2.3" % (text,))
    return tuple(int(p) for p in parts)


# ---- making bundles (tools/make-bundle.py) -----------------------------------------------------------------

def make_bundle(rootfs_path, bundle_path, private_key_pem, device_type, version):
    """Write a signed bundle for `rootfs_path`; returns the manifest dict."""
    parse_version(version)
    digest = hashlib.sha256()
    size = 0
    with open(rootfs_path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
            size += len(chunk)
    manifest = {"format": 1, "device_type": device_type, "version": version,
                "rootfs": {"file": ROOTFS_NAME, "size": size, "sha256": digest.hexdigest()}}
    manifest_bytes = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise UpdateError("the signing key is not an Ed25519 private key")
    signature = key.sign(manifest_bytes)
    tmp = bundle_path + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((MANIFEST_NAME, manifest_bytes), (SIGNATURE_NAME, signature)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = int(time.time())
            tar.addfile(info, _BytesReader(data))
        tar.add(rootfs_path, arcname=ROOTFS_NAME, recursive=False)
    os.replace(tmp, bundle_path)
    return manifest


class _BytesReader:
    def __init__(self, data):
        self._data = data
        self._pos = 0

    def read(self, n=-1):
        end = len(self._data) if n < 0 else self._pos + n
        chunk = self._data[self._pos:end]
        self._pos += len(chunk)
        return chunk


# ---- verifying bundles -------------------------------------------------------------------------------------

def _load_public_key(public_key_pem):
    key = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(key, Ed25519PublicKey):
        raise UpdateError("the update public key is not an Ed25519 key")
    return key


def _sha256_range(f, offset, size):
    f.seek(offset)
    digest = hashlib.sha256()
    left = size
    while left > 0:
        chunk = f.read(min(CHUNK_BYTES, left))
        if not chunk:
            raise UpdateError("bundle is truncated")
        digest.update(chunk)
        left -= len(chunk)
    return digest.hexdigest()


def verify_bundle(bundle_path, public_key_pem, device_type, current_version, force=False, label=None):
    """Check everything that can be checked without writing; returns (manifest, rootfs offset in the file).

    Order: signature, then the signed fields (device type, version), then the root image's size and hash.
    `force` allows the same or an older version (an admin's downgrade); never another device type.
    `label` names the bundle in messages (default: its file name)."""
    try:
        tar = tarfile.open(bundle_path, "r:")
    except (OSError, tarfile.TarError) as e:
        raise UpdateError("%s is not an update bundle (%s)" % (label or os.path.basename(bundle_path), e))
    with tar:
        members = {}
        try:
            for member in tar:
                members[member.name] = member
        except tarfile.TarError as e:
            raise UpdateError("bundle is damaged (%s)" % e)
        for name in (MANIFEST_NAME, SIGNATURE_NAME, ROOTFS_NAME):
            if name not in members or not members[name].isfile():
                raise UpdateError("bundle has no %s" % name)
        if members[MANIFEST_NAME].size > MANIFEST_MAX_BYTES:
            raise UpdateError("bundle manifest is too large")
        manifest_bytes = tar.extractfile(members[MANIFEST_NAME]).read()
        signature = tar.extractfile(members[SIGNATURE_NAME]).read()
        rootfs_member = members[ROOTFS_NAME]
    try:
        _load_public_key(public_key_pem).verify(signature, manifest_bytes)
    except InvalidSignature:
        raise UpdateError("bad signature: the bundle was not signed with this device's release key")
    try:
        manifest = json.loads(manifest_bytes)
        bundle_type = manifest["device_type"]
        bundle_version = manifest["version"]
        expected_size = int(manifest["rootfs"]["size"])
        expected_sha256 = str(manifest["rootfs"]["sha256"])
    except (ValueError, KeyError, TypeError) as e:
        raise UpdateError("bundle manifest is malformed (%s)" % e)
    if manifest.get("format") != 1:
        raise UpdateError("bundle format %r is not supported (1 is)" % manifest.get("format"))
    if bundle_type != device_type:
        raise UpdateError("bundle is for device type %r, this device is %r" % (bundle_type, device_type))
    if not force and parse_version(bundle_version) <= parse_version(current_version):
        raise UpdateError("bundle version %s is not newer than the running version %s (an admin can force it)"
                          % (bundle_version, current_version))
    parse_version(bundle_version)
    if rootfs_member.size != expected_size:
        raise UpdateError("root image is %d bytes, the manifest says %d" % (rootfs_member.size, expected_size))
    with open(bundle_path, "rb") as f:
        actual = _sha256_range(f, rootfs_member.offset_data, expected_size)
    if actual != expected_sha256:
        raise UpdateError("root image hash does not match the signed manifest (the bundle was changed or damaged)")
    return manifest, rootfs_member.offset_data


# ---- boot state --------------------------------------------------------------------------------------------

class BootState:
    """The slot state file the initramfs reads at every boot (format in the module docstring)."""

    def __init__(self, order=("A", "B"), left=None, trial="", last_failed="", trial_version="",
                 last_failed_version=""):
        self.order = list(order)
        self.left = dict(left or {"A": 3, "B": 3})
        self.trial = trial
        self.trial_version = trial_version
        self.last_failed = last_failed
        self.last_failed_version = last_failed_version

    @classmethod
    def load(cls, path):
        values = {}
        with open(path) as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep:
                    values[key] = value.strip().strip('"')
        order = [s for s in values.get("BOOT_ORDER", "A B").split() if s in SLOTS] or ["A", "B"]
        left = {}
        for slot in SLOTS:
            text = values.get(slot + "_LEFT", "0")
            left[slot] = int(text) if text.isdigit() else 0
        return cls(order, left, values.get("TRIAL", ""), values.get("LAST_FAILED", ""),
                   values.get("TRIAL_VERSION", ""), values.get("LAST_FAILED_VERSION", ""))

    def dumps(self):
        return ('BOOT_ORDER="%s"\nA_LEFT=%d\nB_LEFT=%d\nTRIAL=%s\nTRIAL_VERSION=%s\nLAST_FAILED=%s\n'
                'LAST_FAILED_VERSION=%s\n') % (" ".join(self.order), self.left["A"], self.left["B"], self.trial,
                                               self.trial_version, self.last_failed, self.last_failed_version)

    def save(self, path):
        atomic_write(path, self.dumps().encode())


def atomic_write(path, data):
    """temp file + fsync + rename + fsync of the folder: after a power cut the old or the new file, never half."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def other_slot(slot):
    if slot not in SLOTS:
        raise UpdateError("unknown booted slot %r" % (slot,))
    return "B" if slot == "A" else "A"


def mark_good(bootstate_path, booted_slot, good_tries):
    """Confirm the running slot: full tries, first in the boot order, no longer on trial."""
    state = BootState.load(bootstate_path)
    state.left[booted_slot] = good_tries
    state.order = [booted_slot, other_slot(booted_slot)]
    if state.trial == booted_slot:
        state.trial = ""
        state.trial_version = ""
    state.save(bootstate_path)
    return state


# ---- installing --------------------------------------------------------------------------------------------

def _device_size(path):
    with open(path, "rb") as f:
        return f.seek(0, os.SEEK_END)


def install(bundle_path, *, public_key_pem, device_type, current_version, booted_slot, slots, bootstate_path,
            update_tries=1, force=False, log=print, label=None):
    """Verify, write the inactive slot, read it back, switch the boot state to it (on trial). Returns the
    manifest. Raises UpdateError with the reason; when verification fails nothing has been written."""
    manifest, offset = verify_bundle(bundle_path, public_key_pem, device_type, current_version, force, label)
    state = BootState.load(bootstate_path)
    if not force and state.last_failed_version and manifest["version"] == state.last_failed_version:
        raise UpdateError("version %s was rolled back on this device before (it never became healthy); an admin "
                          "can force it" % manifest["version"])
    target = other_slot(booted_slot)
    device = slots[target]
    size = int(manifest["rootfs"]["size"])
    capacity = _device_size(device)
    if size > capacity:
        raise UpdateError("root image (%d bytes) does not fit slot %s (%d bytes)" % (size, target, capacity))
    log("update: bundle %s verified (version %s); writing slot %s" % (
        label or os.path.basename(bundle_path), manifest["version"], target))
    # the slot must no longer be bootable while it is half written
    state.left[target] = 0
    state.order = [booted_slot, target]
    if state.trial == target:
        state.trial = ""
        state.trial_version = ""
    state.save(bootstate_path)
    digest = hashlib.sha256()
    with open(bundle_path, "rb") as src, open(device, "r+b") as dst:
        src.seek(offset)
        left = size
        while left > 0:
            chunk = src.read(min(CHUNK_BYTES, left))
            if not chunk:
                raise UpdateError("bundle is truncated")
            digest.update(chunk)
            dst.write(chunk)
            left -= len(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    # the stick may have changed between the check and the copy, or the flash may be bad: compare what is there
    if digest.hexdigest() != manifest["rootfs"]["sha256"]:
        raise UpdateError("the bundle changed while it was being written; slot %s left unbootable" % target)
    with open(device, "rb") as f:
        if _sha256_range(f, 0, size) != manifest["rootfs"]["sha256"]:
            raise UpdateError("slot %s reads back differently (bad storage?); it stays unbootable" % target)
    state.order = [target, booted_slot]
    state.left[target] = update_tries
    state.trial = target
    state.trial_version = manifest["version"]
    state.save(bootstate_path)
    log("update: slot %s holds version %s; it boots next, on trial" % (target, manifest["version"]))
    return manifest


# ---- the appliance side: configuration, CLI --------------------------------------------------------------

def _read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        if default is None:
            raise
        return default


def appliance_settings(paths=APPLIANCE):
    settings = dict(DEFAULT_SETTINGS)
    settings.update(_read_json(paths["settings"], {}))
    return settings


def booted_slot(paths=APPLIANCE):
    try:
        with open(paths["booted_slot_file"]) as f:
            slot = f.read().strip()
    except OSError:
        slot = ""
    if slot not in SLOTS:
        raise UpdateError("cannot tell which root slot is running (%s)" % paths["booted_slot_file"])
    return slot


def install_on_appliance(bundle_path, force=False, paths=APPLIANCE, log=print, label=None):
    """The one install path for the USB stick, the command line and the config page (through process_spool)."""
    if not os.path.exists(paths["release"]):
        raise UpdateError("not running on the appliance image (no %s)" % paths["release"])
    release = _read_json(paths["release"])
    with open(paths["public_key"], "rb") as f:
        public_key_pem = f.read()
    led = _update_led(paths)
    try:
        return install(bundle_path, public_key_pem=public_key_pem, device_type=release["device_type"],
                       current_version=release["version"], booted_slot=booted_slot(paths), slots=paths["slots"],
                       bootstate_path=paths["bootstate"], update_tries=appliance_settings(paths)["update_tries"],
                       force=force, log=log, label=label)
    finally:
        if led is not None:
            led.set("running")


def _update_led(paths):
    from chargemanager.adapters.led import StatusLed
    led = StatusLed(os.environ.get("CHARGEMANAGER_LED", "status"), paths["led_base"])
    if not led.available:
        return None
    led.set("update")
    return led


def _port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _service_active(unit):
    return subprocess.run(["systemctl", "is-active", "--quiet", unit]).returncode == 0


def _root_read_only():
    return bool(os.statvfs("/").f_flag & os.ST_RDONLY)


def health(ports, timeout_s, paths=APPLIANCE, unit="chargemanager.service", log=print):
    """Wait until the app's service is active and its ports accept; then mark the slot good. A slot on trial
    that is not healthy by `timeout_s` reboots, so the initramfs falls back. Returns True when healthy."""
    settings = appliance_settings(paths)
    slot = booted_slot(paths)
    release = _read_json(paths["release"], {"version": "?"})
    deadline = time.monotonic() + timeout_s
    healthy = False
    while time.monotonic() < deadline:
        if _service_active(unit) and all(_port_open(p) for p in ports):
            healthy = True
            break
        time.sleep(2)
    state = BootState.load(paths["bootstate"])
    report = "CM-HEALTH slot=%s version=%s root=%s" % (slot, release.get("version"),
                                                      "ro" if _root_read_only() else "rw")
    if healthy:
        state = mark_good(paths["bootstate"], slot, settings["good_tries"])
        failed = (state.last_failed + " " + state.last_failed_version).strip() or "-"
        log("%s state=good last_failed=%s" % (report, failed))
        return True
    if state.trial == slot:
        log("%s state=unhealthy: not confirmed after %d s, rebooting to fall back" % (report, timeout_s))
        subprocess.run(["systemctl", "reboot"])
    else:
        log("%s state=unhealthy (confirmed slot: staying)" % report)
    return False


def usb(device, reboot, force=False, paths=APPLIANCE, log=print):
    """Mount a USB stick read-only, install the newest valid bundle on it. True when one was installed."""
    mount_point = paths["usb_mount"] + "-" + os.path.basename(device)
    os.makedirs(mount_point, exist_ok=True)
    result = subprocess.run(["mount", "-o", "ro,nosuid,nodev,noexec", device, mount_point],
                            capture_output=True, text=True)
    if result.returncode != 0:
        log("update: cannot mount %s: %s" % (device, result.stderr.strip()))
        return False
    installed = False
    try:
        bundles = sorted(glob.glob(os.path.join(mount_point, "*" + BUNDLE_SUFFIX)))
        if not bundles:
            log("update: no *%s file on %s" % (BUNDLE_SUFFIX, device))
        for bundle in reversed(bundles):
            try:
                manifest = install_on_appliance(bundle, force=force, paths=paths, log=log)
            except UpdateError as e:
                log("update: refused %s: %s" % (os.path.basename(bundle), e))
                continue
            installed = True
            log("update: installed version %s from %s" % (manifest["version"], os.path.basename(bundle)))
            break
    finally:
        subprocess.run(["umount", mount_point])
    if installed and reboot:
        subprocess.run(["systemctl", "reboot"])
    return installed


# ---- the config page's uploads (root side of adapters/update_spool.py) -------------------------------------

REBOOT_DELAY_S = 3  # after an installed upload: time for the app to pass the result on before it is stopped
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def process_spool(spool_dir=None, paths=APPLIANCE, log=print):
    """Install the bundles the app spooled in `spool_dir`/incoming, one result file each; returns the version
    installed, or None. Runs as root on files the unprivileged app controls, so: every name is resolved relative
    to folders opened without following links, a spooled file is opened without following links and is taken only
    as a single-link regular file of bounded size, its name is removed before it is looked at (from then on only
    the open file counts), and the only thing done with it is install_on_appliance (signature checked before
    anything is written). Whatever else is in the folder is removed, so the path unit does not fire again."""
    from chargemanager.adapters import update_spool as spool
    spool_dir = spool_dir or paths["spool"]
    try:
        top = os.open(spool_dir, _DIR_FLAGS)
    except OSError as e:
        log("update: spool folder %s: %s" % (spool_dir, e.strerror))
        return None
    try:
        try:
            incoming = os.open(spool.INCOMING, _DIR_FLAGS, dir_fd=top)
        except OSError as e:
            log("update: spool folder %s/%s is not a folder (%s)" % (spool_dir, spool.INCOMING, e.strerror))
            return None
        try:
            installed = None
            for name in sorted(os.listdir(incoming)):
                match = spool.NAME_RE.match(name)
                if match is None or installed is not None:
                    log("update: removed %r from the upload spool (%s)"
                        % (name, "not a spooled bundle" if match is None else "another bundle was installed"))
                    _remove_entry(incoming, name)
                    continue
                result = _install_spooled(incoming, name, match.group(1), bool(match.group(2)), paths, log,
                                          spool.MAX_BUNDLE_BYTES)
                try:
                    _write_result(top, spool.RESULT_FILE, result)
                except OSError as e:
                    log("update: cannot write the upload result: %s" % e)
                if result["state"] == "installed":
                    installed = result["version"]
            return installed
        finally:
            os.close(incoming)
    finally:
        os.close(top)


def _remove_entry(dir_fd, name):
    try:
        if stat.S_ISDIR(os.lstat(name, dir_fd=dir_fd).st_mode):
            os.rmdir(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def _install_spooled(dir_fd, name, bundle_id, force, paths, log, max_bytes):
    result = {"id": bundle_id, "state": "refused", "version": None, "message": "", "log": [],
              "time_s": int(time.time())}

    def both(line):
        result["log"].append(line)
        log(line)

    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        _remove_entry(dir_fd, name)
        result["message"] = "the uploaded file cannot be opened (%s; links are not followed)" % e.strerror
        log("update: refused upload %s: %s" % (bundle_id, result["message"]))
        return result
    try:
        st = os.fstat(fd)
        _remove_entry(dir_fd, name)
        if not stat.S_ISREG(st.st_mode):
            result["message"] = "the uploaded file is not a regular file"
        elif st.st_nlink != 1:
            result["message"] = "the uploaded file has other names (hard links)"
        elif st.st_size > max_bytes:
            result["message"] = "the uploaded file is %d bytes, more than the limit of %d" % (st.st_size, max_bytes)
        else:
            # the open file itself, whatever the app does with names in the folder meanwhile
            manifest = install_on_appliance("/proc/self/fd/%d" % fd, force=force, paths=paths, log=both,
                                            label="upload " + bundle_id)
            result.update(state="installed", version=manifest["version"],
                          message="version %s installed to the inactive slot; the appliance restarts into it"
                                  % manifest["version"])
    except UpdateError as e:
        result["message"] = str(e)
    except OSError as e:
        result.update(state="failed", message="%s (%s)" % (e.strerror or e, getattr(e, "filename", "") or ""))
    finally:
        os.close(fd)
    if result["state"] == "installed":
        log("update: installed version %s from config page upload %s" % (result["version"], bundle_id))
    else:
        log("update: %s upload %s: %s" % (result["state"], bundle_id, result["message"]))
    return result


def _write_result(dir_fd, name, result):
    """Atomic and durable, in a folder the app owns: a fresh temp name created exclusively (never through a link
    the app placed), then renamed over the result."""
    data = (json.dumps(result, indent=1, sort_keys=True) + "\n").encode()
    tmp = ".%s.%d.tmp" % (name, os.getpid())
    try:
        os.unlink(tmp, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    try:
        os.fchmod(fd, 0o644)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.fsync(dir_fd)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m chargemanager.adapters.updater",
                                     description="signed A/B updates of the appliance")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help="install a bundle file")
    p.add_argument("bundle")
    p.add_argument("--force", action="store_true", help="allow the same or an older version")
    p.add_argument("--reboot", action="store_true")
    p = sub.add_parser("usb", help="install from a USB stick (udev/systemd)")
    p.add_argument("device")
    p.add_argument("--reboot", action="store_true")
    p = sub.add_parser("health", help="mark the running slot good once the app is healthy")
    p.add_argument("--port", type=int, action="append", default=[])
    p.add_argument("--timeout-s", type=int, default=None)
    p = sub.add_parser("spool", help="install bundles uploaded through the config page (chargemanager-update.service)")
    p.add_argument("--folder", default=APPLIANCE["spool"])
    p.add_argument("--reboot", action="store_true")
    sub.add_parser("mark-good", help="confirm the running slot now")
    sub.add_parser("status", help="print the boot state")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            install_on_appliance(args.bundle, force=args.force)
            if args.reboot:
                subprocess.run(["systemctl", "reboot"])
            return 0
        if args.command == "usb":
            return 0 if usb(args.device, args.reboot) else 1
        if args.command == "spool":
            version = process_spool(args.folder)
            if version and args.reboot:
                time.sleep(REBOOT_DELAY_S)
                subprocess.run(["systemctl", "reboot"])
            return 0
        if args.command == "health":
            timeout_s = args.timeout_s or appliance_settings()["health_timeout_s"]
            return 0 if health(args.port, timeout_s) else 1
        if args.command == "mark-good":
            mark_good(APPLIANCE["bootstate"], booted_slot(), appliance_settings()["good_tries"])
            return 0
        sys.stdout.write("booted slot: %s\n%s" % (booted_slot(), BootState.load(APPLIANCE["bootstate"]).dumps()))
        return 0
    except (UpdateError, OSError) as e:
        print("update: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
