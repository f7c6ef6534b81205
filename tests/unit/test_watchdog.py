"""sd_notify client against a real AF_UNIX datagram socket standing in for systemd's."""
import os
import socket

import pytest

from chargemanager.adapters.watchdog import Notifier


@pytest.fixture
def systemd_socket(tmp_path):
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def received(sock):
    return sock.recv(4096).decode()


def test_ready_and_status(systemd_socket):
    path, sock = systemd_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.ready("running") is True
    assert received(sock) == "READY=1\nSTATUS=running"
    assert notifier.status("running") is False  # unchanged: nothing sent
    assert notifier.status("2 wallboxes charging") is True
    assert received(sock) == "STATUS=2 wallboxes charging"
    notifier.close()


def test_watchdog_pings_at_half_the_interval(systemd_socket):
    path, sock = systemd_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())})
    assert notifier.watchdog_interval_ms == 30000
    assert notifier.ping(1000) is True
    assert received(sock) == "WATCHDOG=1"
    assert notifier.ping(15999) is False
    assert notifier.ping(16000) is True
    assert received(sock) == "WATCHDOG=1"
    notifier.close()


def test_watchdog_meant_for_another_process_is_ignored(systemd_socket):
    path, _ = systemd_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"})
    assert notifier.watchdog_interval_ms == 0
    assert notifier.ping(1000) is False


def test_abstract_socket_address():
    name = "cm-test-%d" % os.getpid()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.stopping() is True
        assert received(sock) == "STOPPING=1"
        notifier.close()
    finally:
        sock.close()


def test_without_notify_socket_everything_is_a_no_op():
    notifier = Notifier({})
    assert notifier.enabled is False
    assert notifier.ready("x") is False
    assert notifier.ping(0) is False
    assert notifier.status("y") is False


def test_vanished_systemd_does_not_raise(tmp_path):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.ready() is False
