"""Status LED through the Linux LED class, against a folder standing in for /sys/class/leds."""
import os

import pytest

from chargemanager.adapters.led import PATTERNS, StatusLed, choose_pattern


def make_led_folder(base, name="status", max_brightness="255"):
    folder = base / name
    folder.mkdir()
    (folder / "trigger").write_text("none")
    (folder / "brightness").write_text("0")
    (folder / "max_brightness").write_text(max_brightness)
    return folder


def read(folder, attribute):
    return (folder / attribute).read_text()


@pytest.mark.parametrize("pattern,on_ms,off_ms", [
    ("booting", "250", "250"),
    ("comm_error", "1000", "1000"),
    ("limited", "1900", "100"),
    ("update", "50", "50"),
    ("fault", "100", "1900"),
])
def test_blinking_patterns_use_the_kernel_timer_trigger(tmp_path, pattern, on_ms, off_ms):
    folder = make_led_folder(tmp_path)
    led = StatusLed("status", base=str(tmp_path))
    assert led.set(pattern) is True
    assert read(folder, "trigger") == "timer"
    assert (read(folder, "delay_on"), read(folder, "delay_off")) == (on_ms, off_ms)


def test_running_is_steady_on_at_max_brightness(tmp_path):
    folder = make_led_folder(tmp_path, max_brightness="1")
    led = StatusLed("status", base=str(tmp_path))
    led.set("fault")
    assert led.set("running") is True
    assert read(folder, "trigger") == "none"
    assert read(folder, "brightness") == "1"


def test_every_pattern_is_distinct():
    assert len(set(PATTERNS.values())) == len(PATTERNS)


def test_same_pattern_is_written_once(tmp_path):
    folder = make_led_folder(tmp_path)
    led = StatusLed("status", base=str(tmp_path))
    assert led.set("comm_error") is True
    (folder / "delay_on").write_text("changed by someone else")
    assert led.set("comm_error") is False
    assert read(folder, "delay_on") == "changed by someone else"


def test_missing_led_is_a_no_op(tmp_path):
    led = StatusLed("status", base=str(tmp_path))
    assert led.available is False
    assert led.set("running") is False
    assert led.off() is False
    assert os.listdir(tmp_path) == []


def test_unknown_pattern_is_refused(tmp_path):
    make_led_folder(tmp_path)
    with pytest.raises(ValueError, match="unknown LED pattern 'disco'"):
        StatusLed("status", base=str(tmp_path)).set("disco")


def test_off(tmp_path):
    folder = make_led_folder(tmp_path)
    led = StatusLed("status", base=str(tmp_path))
    led.set("update")
    assert led.off() is True
    assert (read(folder, "trigger"), read(folder, "brightness")) == ("none", "0")


@pytest.mark.parametrize("state,expected", [
    (dict(started=False), "booting"),
    (dict(started=True), "running"),
    (dict(started=True, limited=True), "limited"),
    (dict(started=True, comm_error=True, limited=True), "comm_error"),  # a dead device outranks a limit
    (dict(started=True, fault=True, comm_error=True), "fault"),
    (dict(started=False, fault=True), "fault"),  # a start-up fault must not look like booting forever
    (dict(started=True, fault=True, updating=True), "update"),  # never hide "do not power off"
])
def test_choose_pattern_priority(state, expected):
    assert choose_pattern(**state) == expected
