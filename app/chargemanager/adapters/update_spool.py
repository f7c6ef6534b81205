"""The hand-off of an uploaded update bundle from the unprivileged app to the root installer.

The app (user `chargemanager`) cannot write the root slots. It stores an uploaded bundle here and a root service
(`chargemanager-update.path` -> `chargemanager-update.service`, running `updater spool`) installs it with the same
`install_on_appliance` as the USB stick and the command line, then writes a result file the app reads.

Layout under the data folder (all on the data partition, so a rename is atomic):
  update/.upload-<id>.tmp                    being received (never looked at by root; removed at the next start)
  update/incoming/<id>.cmbundle              complete, waiting for root ("<id>.force.cmbundle": allow a downgrade)
  update/result.json                         written by root: {"id", "state", "version", "message", "log", "time_s"}
                                             state: "installed" (the box restarts into it), "refused" or "failed"
The id is a random token; the name is all the app can say to root: "verify and install this file (forced or not)".
Root opens the file itself without following links, takes only a single-link regular file of bounded size,
checks the signature before writing anything and removes the spooled file (see updater.process_spool).
"""

import json
import os
import re
import secrets
import time

from chargemanager.adapters.store import _fsync_dir, remove_stale_temp_files

SPOOL_FOLDER = "update"
INCOMING = "incoming"
RESULT_FILE = "result.json"
BUNDLE_SUFFIX = ".cmbundle"
NAME_RE = re.compile(r"^([0-9A-Za-z_-]{1,64})(\.force)?\.cmbundle$")
MAX_BUNDLE_BYTES = 1024 * 1024 * 1024   # a compressed root file system; a slot is 512 MiB
CHUNK_BYTES = 1024 * 1024
POLL_S = 0.2


def spooled_name(bundle_id, force):
    return bundle_id + (".force" if force else "") + BUNDLE_SUFFIX


class UpdateSpool:
    """The app's side: store a bundle for the root installer and read what became of it."""

    def __init__(self, data_folder):
        self.folder = os.path.join(os.path.abspath(data_folder), SPOOL_FOLDER)
        self.incoming = os.path.join(self.folder, INCOMING)
        os.makedirs(self.incoming, mode=0o750, exist_ok=True)
        for name in os.listdir(self.folder):  # an upload cut short by a restart or a power cut
            if name.startswith(".upload-") and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(self.folder, name))
                except OSError:
                    pass
        remove_stale_temp_files(self.folder)

    def receive(self, stream, length, force=False):
        """Copy `length` bytes from `stream` and hand them to the installer. Returns (bundle id, bytes received);
        the id is None when the stream ended early (then nothing was handed over)."""
        bundle_id = secrets.token_hex(8)
        tmp = os.path.join(self.folder, ".upload-%s.tmp" % bundle_id)
        received = 0
        try:
            with open(tmp, "wb") as f:
                while received < length:
                    chunk = stream.read(min(CHUNK_BYTES, length - received))
                    if not chunk:
                        break
                    f.write(chunk)
                    received += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            if received != length:
                return None, received
            os.chmod(tmp, 0o640)
            os.replace(tmp, os.path.join(self.incoming, spooled_name(bundle_id, force)))
            _fsync_dir(self.incoming)
            return bundle_id, received
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def discard_waiting(self):
        """Withdraw bundles the installer has not taken (it removes a name as soon as it takes the file); returns
        their ids. A new upload replaces them rather than queueing behind them."""
        ids = []
        for name in os.listdir(self.incoming):
            match = NAME_RE.match(name)
            if match:
                try:
                    os.unlink(os.path.join(self.incoming, name))
                    ids.append(match.group(1))
                except OSError:
                    pass
        return ids

    def waiting(self, bundle_id=None):
        """True while a bundle (this one, or any) is spooled and the installer has not taken it."""
        try:
            names = os.listdir(self.incoming)
        except OSError:
            return False
        if bundle_id is None:
            return any(NAME_RE.match(n) for n in names)
        return spooled_name(bundle_id, False) in names or spooled_name(bundle_id, True) in names

    def result(self):
        """The installer's last result (a dict), or None."""
        try:
            with open(os.path.join(self.folder, RESULT_FILE), "rb") as f:
                value = json.loads(f.read(256 * 1024).decode("utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return value if isinstance(value, dict) else None

    def wait_result(self, bundle_id, timeout_s, sleep=time.sleep, clock=time.monotonic):
        """The result for `bundle_id` once the installer wrote it, or None after `timeout_s`."""
        deadline = clock() + timeout_s
        while True:
            result = self.result()
            if result is not None and result.get("id") == bundle_id:
                return result
            if clock() >= deadline:
                return None
            sleep(POLL_S)

    def status(self):
        return {"waiting": self.waiting(), "last": self.result()}

