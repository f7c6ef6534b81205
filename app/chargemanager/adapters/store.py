"""The data folder (`--data DIR`; `/data` on the appliance): configuration document, variables, admin credentials.

Every write is atomic and durable: write a temp file in the same folder, fsync it, rename it over the target,
fsync the folder. A power cut at any moment leaves either the old or the new file, never a broken one. The previous
version of each file is kept as `<name>.prev` (a hard link made before the rename), and a reader falls back to it if
the current file cannot be parsed (e.g. after media corruption).
"""

import json
import logging
import os
import threading

from chargemanager.core.config import default_config, validate_config

log = logging.getLogger("store")

CONFIG_FILE = "config.json"
VARIABLES_FILE = "variables.json"
AUTH_FILE = "auth.json"


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path, data, mode=0o644, keep_previous=True):
    """Replace `path` with `data` atomically and durably (temp + fsync + rename + fsync of the folder)."""
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    tmp = os.path.join(folder, ".%s.%d.%d.tmp" % (base, os.getpid(), threading.get_ident()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)  # os.open's mode is filtered by the umask; the caller's mode is what counts
    if keep_previous and os.path.exists(path):
        prev_tmp = tmp + ".prev"
        try:
            if os.path.exists(prev_tmp):
                os.unlink(prev_tmp)
            os.link(path, prev_tmp)
            os.replace(prev_tmp, path + ".prev")
        except OSError as exc:  # a file system without hard links still gets the atomic write
            log.warning("could not keep previous copy of %s: %s", path, exc)
    os.replace(tmp, path)
    _fsync_dir(folder)


def atomic_write_json(path, obj, mode=0o644):
    data = (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    atomic_write_bytes(path, data, mode=mode)


def read_json_file(path):
    """(value, problem): the parsed file, or None and why not (None, None if it does not exist)."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8")), None
    except FileNotFoundError:
        return None, None
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        return None, "cannot read %s: %s" % (os.path.basename(path), exc)


def read_json(path):
    """The parsed file, or its `.prev` copy if the file is unreadable; None if neither exists or parses."""
    for candidate in (path, path + ".prev"):
        value, problem = read_json_file(candidate)
        if problem:
            log.error("%s", problem)
        if value is None:
            continue
        if candidate != path:
            log.warning("using previous copy %s", candidate)
        return value
    return None


def remove_stale_temp_files(folder):
    """Temp files left by a writer that died mid-write; they are never read, only cleaned up."""
    for name in os.listdir(folder):
        if name.startswith(".") and (name.endswith(".tmp") or name.endswith(".tmp.prev")):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass


class DataStore:
    """The files of one data folder."""

    def __init__(self, folder):
        self.folder = os.path.abspath(folder)
        os.makedirs(self.folder, exist_ok=True)
        remove_stale_temp_files(self.folder)

    def path(self, name):
        return os.path.join(self.folder, name)

    # Configuration document
    def load_config(self):
        """(clean config, list of problems). Falls back to the previous copy, then to defaults, if invalid."""
        problems = []
        for candidate in (self.path(CONFIG_FILE), self.path(CONFIG_FILE + ".prev")):
            doc, problem = read_json_file(candidate)
            if problem:
                problems.append(problem)
            if doc is None:
                continue
            clean, errors = validate_config(doc)
            if not errors:
                if candidate.endswith(".prev"):
                    problems.append("using the previous copy %s" % os.path.basename(candidate))
                return clean, problems
            problems.append("%s is invalid: %s" % (
                os.path.basename(candidate), "; ".join("%s %s" % (e["field"], e["error"]) for e in errors)))
        return default_config(), problems

    def save_config(self, clean):
        atomic_write_json(self.path(CONFIG_FILE), clean, mode=0o600)

    # Variables
    def load_variables(self):
        doc = read_json(self.path(VARIABLES_FILE))
        if not isinstance(doc, dict) or not isinstance(doc.get("vars"), list):
            return []
        return doc["vars"]

    def save_variables(self, entries):
        atomic_write_json(self.path(VARIABLES_FILE), {"vars": entries})

    # Admin credentials (owner-only)
    def load_auth(self):
        doc = read_json(self.path(AUTH_FILE))
        return doc if isinstance(doc, dict) else {}

    def save_auth(self, doc):
        atomic_write_json(self.path(AUTH_FILE), doc, mode=0o600)
