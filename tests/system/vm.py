"""The appliance image in qemu (software emulation only: accel=tcg; KVM guests hang on these machines).

Direct kernel boot (-kernel/-initrd from build/out, the same files the image's boot partition holds), the disk
image behind a qcow2 overlay so every VM starts from the factory image and the base file never changes, user-mode
networking with the HTTP and OCPP ports forwarded to ephemeral ports on 127.0.0.1, the serial console in a file,
the HMP monitor on a unix socket (power-cut reset, USB stick hot-plug), an xHCI controller for the sticks.
"""

import json
import os
import re
import socket
import subprocess
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# software-emulated machines per image architecture (q35 for amd64; the generic ARM "virt" board for arm64)
MACHINES = {
    "amd64": ["qemu-system-x86_64", "-machine", "q35,accel=tcg"],
    "arm64": ["qemu-system-aarch64", "-machine", "virt,accel=tcg", "-cpu", "cortex-a72"],
}


class VM:
    def __init__(self, workdir, out_dir, cmdline, memory_mib=1024, arch="amd64"):
        self.arch = arch
        self.workdir = str(workdir)
        self.out_dir = str(out_dir)
        self.cmdline = cmdline
        self.memory_mib = memory_mib
        self.overlay = os.path.join(self.workdir, "disk.qcow2")
        self.console_path = os.path.join(self.workdir, "console.log")
        self.monitor_path = os.path.join(self.workdir, "monitor.sock")
        self.proc = None
        self.http_port = None
        self.ocpp_port = None
        self.started_at = None
        self._sticks = 0

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        if not os.path.exists(self.overlay):
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b",
                            os.path.join(self.out_dir, "disk.img"), "-F", "raw", self.overlay], check=True)
        self.http_port, self.ocpp_port = free_port(), free_port()
        # keep earlier boots' console output: one file per VM, appended
        console = open(self.console_path, "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            MACHINES[self.arch] + ["-smp", "2", "-m", str(self.memory_mib),
             "-display", "none", "-serial", "stdio", "-monitor", "unix:%s,server,nowait" % self.monitor_path,
             "-kernel", os.path.join(self.out_dir, "vmlinuz"), "-initrd", os.path.join(self.out_dir, "initrd.img"),
             "-append", self.cmdline,
             "-drive", "file=%s,if=virtio,format=qcow2" % self.overlay,
             "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:%d-:80,hostfwd=tcp:127.0.0.1:%d-:19520"
             % (self.http_port, self.ocpp_port),
             "-device", "virtio-net-pci,netdev=n0", "-device", "qemu-xhci,id=xhci"],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT)
        console.close()
        self._wait_monitor()
        return self

    def _wait_monitor(self, timeout_s=30):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if os.path.exists(self.monitor_path):
                return
            time.sleep(0.1)
        raise RuntimeError("qemu monitor socket did not appear")

    def monitor(self, command):
        """One HMP command; returns its output."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.monitor_path)
            s.settimeout(30)
            self._read_until_prompt(s)
            s.sendall(command.encode() + b"\n")
            return self._read_until_prompt(s)

    @staticmethod
    def _read_until_prompt(s):
        data = b""
        while not data.endswith(b"(qemu) "):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace")

    def console(self):
        with open(self.console_path, "rb") as f:
            return f.read().decode("latin-1")  # one character per byte, so byte offsets index it

    def console_size(self):
        return os.path.getsize(self.console_path)

    def wait_console(self, pattern, timeout_s, since=0):
        """Wait for a regex in the console output after byte offset `since`; returns the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = regex.search(self.console()[since:])
            if match:
                return match
            if self.proc.poll() is not None:
                break
            time.sleep(1)
        raise AssertionError("console never showed %r within %d s; last output:\n%s"
                             % (pattern, timeout_s, self.console()[since:][-4000:]))

    def wait_http(self, timeout_s, path="/cnf?cmd=get_cm_vars"):
        """Wait until the app itself answers HTTP (slirp accepts forwarded connections even with nothing behind
        them, so only a real response counts); returns seconds since power-on."""
        from httpclient import call
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            try:
                status, _, body = call("http://127.0.0.1:%d%s" % (self.http_port, path), password=None, timeout=5)
                return time.monotonic() - self.started_at, status, body
            except (OSError, ValueError) as e:
                last = e
            time.sleep(1)
        raise AssertionError("HTTP never answered within %d s (%s); console:\n%s"
                             % (timeout_s, last, self.console()[-4000:]))

    def attach_stick(self, image_path):
        """Hot-plug a USB stick (a raw disk image, read-only to the guest)."""
        self._sticks += 1
        name = "stick%d" % self._sticks
        self.monitor("drive_add 0 if=none,id=%s,file=%s,format=raw,readonly=on" % (name, image_path))
        self.monitor("device_add usb-storage,id=%sdev,drive=%s,bus=xhci.0" % (name, name))
        return name

    def detach_stick(self, name):
        self.monitor("device_del %sdev" % name)

    def power_cut(self):
        """Hard reset (like pulling the power): no shutdown, no sync."""
        self.started_at = time.monotonic()
        self.monitor("system_reset")

    def stop(self, timeout_s=30):
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.monitor("quit")
            self.proc.wait(timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()

    def written_ranges(self):
        """Byte ranges of the disk the guest has written (allocated in the qcow2 overlay); works while running."""
        result = subprocess.run(["qemu-img", "map", "-U", "--output=json", self.overlay], check=True,
                                capture_output=True, text=True)
        return [(e["start"], e["start"] + e["length"]) for e in json.loads(result.stdout)
                if e["depth"] == 0 and (e.get("data") or e.get("zero"))]


def partition_ranges(disk_image):
    """{"boot": (start, end), "rootA": ..., ...} in bytes, from the image's GPT (sfdisk --json)."""
    result = subprocess.run(["sfdisk", "--json", disk_image], check=True, capture_output=True, text=True)
    table = json.loads(result.stdout)["partitiontable"]
    sector = table.get("sectorsize", 512)
    return {p["name"]: (p["start"] * sector, (p["start"] + p["size"]) * sector) for p in table["partitions"]}


def make_stick(path, files, size_mib=None):
    """A FAT-formatted USB stick image holding `files` (paths) at its top level, made without mounting."""
    total = sum(os.path.getsize(f) for f in files)
    size_mib = size_mib or total // (1024 * 1024) + 32
    if os.path.exists(path):
        os.unlink(path)
    subprocess.run(["mkfs.vfat", "-C", "-n", "UPDATE", path, str(size_mib * 1024)], check=True,
                   capture_output=True)
    for f in files:
        subprocess.run(["mcopy", "-i", path, f, "::" + os.path.basename(f)], check=True)
    return path
