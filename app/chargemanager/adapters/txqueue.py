"""Persistent, append-only record log for the OCPP gateway's store-and-forward queue (one file per EVSE).

File format: a sequence of records, each `struct("<II")` = (payload length, CRC-32 of the payload) followed by the
payload, a compact JSON object. A record is written with one `write` and `fsync`ed before `append` returns, so the
caller may answer the wallbox only after the record is on the disk. On open the file is read up to the last record
whose length and CRC are intact and truncated there: a record torn by a power cut or a kill is dropped whole, never
half-read. Records are never rewritten in place; delivery is recorded by appending an `ack` record, and `compact`
replaces the file atomically (temp file, fsync, rename, fsync of the folder) with the caller's live state.

What the records mean (messages, acks, transaction id maps) is decided by `core.ocpp_gateway`; this module only
keeps them safe.
"""

import json
import os
import struct
import zlib

from chargemanager.adapters.store import atomic_write_bytes

HEADER = struct.Struct("<II")
MAX_RECORD_BYTES = 1 << 20


class QueueError(Exception):
    pass


def _fsync_dir(path):
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def encode(record):
    data = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(data) > MAX_RECORD_BYTES:
        raise QueueError("record of %d bytes is larger than %d" % (len(data), MAX_RECORD_BYTES))
    return HEADER.pack(len(data), zlib.crc32(data)) + data


def read_valid(path):
    """(records, length of the valid prefix in bytes) of a log file; a missing file is empty."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        return [], 0
    records = []
    pos = 0
    while pos + HEADER.size <= len(blob):
        size, crc = HEADER.unpack_from(blob, pos)
        end = pos + HEADER.size + size
        if size > MAX_RECORD_BYTES or end > len(blob):
            break
        data = blob[pos + HEADER.size:end]
        if zlib.crc32(data) != crc:
            break
        try:
            records.append(json.loads(data.decode("utf-8")))
        except ValueError:
            break
        pos = end
    return records, pos


class TxQueue:
    """One append-only log file. Not thread-safe: one owner (the OCPP thread) uses it."""

    def __init__(self, path, fsync=True):
        self.path = path
        self.fsync = fsync
        self.fd = None
        self.size_bytes = 0
        self.truncated_bytes = 0

    def open(self):
        """Read the valid records, cut off a torn tail, and open for appending; returns the records."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        records, valid = read_valid(self.path)
        existed = os.path.exists(self.path)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        total = os.fstat(self.fd).st_size
        if total > valid:
            self.truncated_bytes = total - valid
            os.ftruncate(self.fd, valid)
            os.fsync(self.fd)
        if not existed:
            _fsync_dir(self.path)
        self.size_bytes = valid
        return records

    def append(self, records, sync=True):
        """Append records (a list) with one write, and one fsync unless `sync` is False (then they become durable
        with the next synced append)."""
        if not records:
            return
        blob = b"".join(encode(r) for r in records)
        try:
            n = os.write(self.fd, blob)
        except OSError as e:
            n = -1
            err = e
        if n != len(blob):
            # A failed or short write (full disk): cut it off so the file stays a valid prefix, then report it.
            os.ftruncate(self.fd, self.size_bytes)
            raise QueueError("cannot write %s: %s" % (self.path, err if n < 0 else "short write"))
        if self.fsync and sync:
            os.fsync(self.fd)
        self.size_bytes += len(blob)

    def sync(self):
        """fsync what was appended with `sync=False` (may run in a worker thread; one owner at a time)."""
        if self.fsync:
            os.fsync(self.fd)

    def compact(self, records):
        """Replace the file with exactly `records`, atomically (the store's temp + fsync + rename + fsync dir)."""
        blob = b"".join(encode(r) for r in records)
        atomic_write_bytes(self.path, blob, mode=0o600, keep_previous=False)
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.size_bytes = len(blob)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
