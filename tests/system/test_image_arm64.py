"""The arm64 image (the SBC's architecture) in qemu-system-aarch64 on the generic "virt" board, fully emulated: one
first boot from slot A to the app answering HTTP on a read-only root and the health check confirming the slot.
Not part of `make test-system` (CI): `make test-system-arm64`. Updates and rollback are tested on amd64 with the
same code; a real board's bootloader, LED and watchdog are not tested here (docs/image.md)."""

import pytest

from test_image import record
from vm import VM

pytestmark = [pytest.mark.system, pytest.mark.arm64]

BOOT_S = 1800  # every instruction emulated, on a shared 2-core machine


def test_arm64_first_boot_serves_http_from_a_read_only_root(image_arm64, tmp_path):
    vm = VM(tmp_path, image_arm64["out"], image_arm64["cmdline"], arch="arm64")
    vm.start()
    try:
        seconds, status, body = vm.wait_http(BOOT_S)
        record("arm64 first boot (data partition formatted): power-on to HTTP answering %.1f s" % seconds)
        assert status == 403 and "set-password" in body["error"]  # the app itself, first run
        health = vm.wait_console(r"CM-HEALTH slot=(\w) version=([\d.]+) root=(\w+) state=(\w+)", BOOT_S)
        assert health.groups() == ("A", "1.0.0", "ro", "good")
    finally:
        vm.stop()
        print("\nconsole log: %s" % vm.console_path)
