"""The manager process under a stand-in for systemd: READY=1 after start-up, WATCHDOG=1 from the control-loop tick,
STOPPING=1 on SIGTERM, and the status LED (a folder standing in for /sys/class/leds) showing "running"."""
import os
import signal
import socket
import subprocess
import sys

import pytest


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    yield path, sock
    sock.close()


def test_manager_notifies_systemd_and_drives_the_led(tmp_path, notify_socket):
    path, sock = notify_socket
    leds = tmp_path / "leds" / "status"
    leds.mkdir(parents=True)
    for name, value in (("trigger", "none"), ("brightness", "0"), ("max_brightness", "255")):
        (leds / name).write_text(value)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="2000000", CHARGEMANAGER_LED="status",
               CHARGEMANAGER_LED_BASE=str(tmp_path / "leds"))
    proc = subprocess.Popen([sys.executable, "-m", "chargemanager", "run", "--data", str(tmp_path / "data"),
                             "--host", "127.0.0.1", "--http-port", "0", "--ocpp-port", "0"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        messages = []
        while messages.count("WATCHDOG=1") < 2:
            messages.append(sock.recv(4096).decode())
        ready = [m for m in messages if m.startswith("READY=1")]
        assert len(ready) == 1 and "STATUS=running: HTTP port" in ready[0]
        assert messages.index(ready[0]) < len(messages) - 1
        assert (leds / "trigger").read_text() == "none"
        assert (leds / "brightness").read_text() == "255"
        proc.send_signal(signal.SIGTERM)
        while True:
            message = sock.recv(4096).decode()
            if message == "STOPPING=1":
                break
            assert message == "WATCHDOG=1"
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
