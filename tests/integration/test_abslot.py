"""The initramfs slot chooser (rootfs/etc/initramfs-tools/abslot-choose, POSIX sh) together with the Python side
of the boot state (installer, mark good): a device's boot sequence played through both halves of the format."""
import os
import subprocess

import pytest

from chargemanager.adapters.updater import BootState, mark_good

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHOOSER = os.path.join(ROOT, "rootfs", "etc", "initramfs-tools", "abslot-choose")


def boot(path):
    """What the initramfs does at power-on: run the chooser on the file, write the new state; returns the slot."""
    text = open(path).read() if os.path.exists(path) else ""
    result = subprocess.run(["sh", CHOOSER], input=text, capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("CHOSEN=")
    with open(path, "w") as f:
        f.write("\n".join(lines[:-1]) + "\n")
    return lines[-1].split("=", 1)[1]


@pytest.fixture
def state_file(tmp_path):
    path = str(tmp_path / "bootstate")
    BootState(["A", "B"], {"A": 3, "B": 3}).save(path)
    return path


def put_on_trial(path, slot, version):
    """What a successful install leaves behind (updater.install's last step)."""
    state = BootState.load(path)
    other = "B" if slot == "A" else "A"
    state.order, state.left[slot], state.trial, state.trial_version = [slot, other], 1, slot, version
    state.save(path)


def test_confirmed_slot_keeps_booting(state_file):
    for _ in range(5):
        assert boot(state_file) == "A"
        mark_good(state_file, "A", 3)
    assert BootState.load(state_file).left == {"A": 3, "B": 3}


def test_healthy_update_is_confirmed(state_file):
    put_on_trial(state_file, "B", "1.1.0")
    assert boot(state_file) == "B"
    state = mark_good(state_file, "B", 3)
    assert (state.order, state.left["B"], state.trial, state.last_failed) == (["B", "A"], 3, "", "")
    assert boot(state_file) == "B"


def test_never_healthy_update_falls_back_and_is_remembered(state_file):
    put_on_trial(state_file, "B", "1.2.0")
    assert boot(state_file) == "B"          # the trial boot; the health check never confirms it and reboots
    assert boot(state_file) == "A"          # B has no tries left: back to A
    state = BootState.load(state_file)
    assert (state.trial, state.last_failed, state.last_failed_version) == ("", "B", "1.2.0")
    state = mark_good(state_file, "A", 3)
    assert (state.order, state.left) == (["A", "B"], {"A": 3, "B": 0})
    assert boot(state_file) == "A"


def test_confirmed_slot_falls_to_the_other_after_its_tries(state_file):
    # A crashes before its health check three times (e.g. broken flash): B, the previous good slot, takes over
    assert [boot(state_file) for _ in range(4)] == ["A", "A", "A", "B"]


def test_no_tries_left_anywhere_resets_instead_of_locking_up(state_file):
    with open(state_file, "w") as f:
        f.write('BOOT_ORDER="B A"\nA_LEFT=0\nB_LEFT=0\n')
    assert boot(state_file) == "B"
    assert BootState.load(state_file).left == {"A": 3, "B": 2}


@pytest.mark.parametrize("content", ["", "garbage\n\0\0\0", 'BOOT_ORDER="C D"\nA_LEFT=x\nB_LEFT=-1\n'])
def test_missing_or_damaged_state_still_boots(tmp_path, content):
    path = str(tmp_path / "bootstate")
    with open(path, "w") as f:
        f.write(content)
    assert boot(path) in ("A", "B")
    state = BootState.load(path)
    assert state.order in (["A", "B"], ["B", "A"])
