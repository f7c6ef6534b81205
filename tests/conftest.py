"""Shared fixtures: a real charging manager process on ephemeral ports with its own data folder."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import settings

# CI runs the property tests with a fixed derivation of examples, so a landing never depends on luck; local runs
# keep exploring new examples (and store failures in .hypothesis/).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))


class ManagerProcess:
    """`python -m chargemanager run` in a subprocess; the HTTP port is read from its log."""

    def __init__(self, data_dir, extra_args=(), password="1234abcd"):
        self.data_dir = str(data_dir)
        self.password = password
        self.extra_args = list(extra_args)
        self.proc = None
        self.http_port = None
        self.log_lines = []

    def set_password(self):
        subprocess.run([sys.executable, "-m", "chargemanager", "set-password", "--data", self.data_dir,
                        "--password-stdin"], input=self.password + "\n", text=True, check=True,
                       capture_output=True)

    def start(self, timeout_s=20):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chargemanager", "run", "--data", self.data_dir, "--host", "127.0.0.1",
             "--http-port", "0", "--ocpp-port", "0"] + self.extra_args,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.log_lines.append(line)
            match = re.search(r"http listening on port (\d+)", line)
            if match:
                self.http_port = int(match.group(1))
                return self
        self.stop()
        raise RuntimeError("manager did not start:\n" + "".join(self.log_lines))

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.http_port

    def stop(self, timeout_s=10):
        """SIGTERM, wait for a clean exit; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rest, _ = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rest, _ = self.proc.communicate()
        self.log_lines.append(rest or "")
        return self.proc.returncode

    @property
    def log(self):
        return "".join(self.log_lines)


@pytest.fixture
def manager(tmp_path):
    """A running manager with admin password 1234abcd (the seed's example)."""
    proc = ManagerProcess(tmp_path / "data")
    os.makedirs(proc.data_dir, exist_ok=True)
    proc.set_password()
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def fresh_manager(tmp_path):
    """A running manager without an admin password (first run)."""
    proc = ManagerProcess(tmp_path / "data")
    proc.start()
    yield proc
    proc.stop()
