"""systemd service notifications (sd_notify) over $NOTIFY_SOCKET, with the standard library only.

READY=1 when the app has started, WATCHDOG=1 from the control-loop tick (so a hung loop stops the pings and
systemd restarts the service, WatchdogSec= in the unit), STATUS=<text> for `systemctl status`. Without
$NOTIFY_SOCKET (development, tests, a plain terminal) every call is a no-op. A failed send never raises: the
control loop must not die because systemd went away.
"""

import os
import socket


class Notifier:
    """sd_notify client; `environ` is injectable for tests (defaults to os.environ)."""

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or ""
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract socket namespace
        self._address = address or None
        self.watchdog_interval_ms = 0
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if self._address and usec.isdigit() and (not pid or pid == str(os.getpid())):
            self.watchdog_interval_ms = int(usec) // 1000
        self._sock = None
        self._last_ping_ms = None
        self._status = None

    @property
    def enabled(self):
        return self._address is not None

    def notify(self, message):
        """Send one notification (e.g. "READY=1"); True when it was sent."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.sendto(message.encode(), self._address)
            return True
        except OSError:
            return False

    def ready(self, status=None):
        message = "READY=1"
        if status is not None:
            self._status = status
            message += "\nSTATUS=" + status
        return self.notify(message)

    def ping(self, now_ms):
        """WATCHDOG=1, sent at most every half watchdog interval (sd_watchdog_enabled(3)); call it every tick."""
        if self.watchdog_interval_ms <= 0:
            return False
        if self._last_ping_ms is not None and now_ms - self._last_ping_ms < self.watchdog_interval_ms // 2:
            return False
        self._last_ping_ms = now_ms
        return self.notify("WATCHDOG=1")

    def status(self, text):
        """STATUS=<text>, only when it changed."""
        if text == self._status:
            return False
        self._status = text
        return self.notify("STATUS=" + text)

    def stopping(self):
        return self.notify("STOPPING=1")

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
