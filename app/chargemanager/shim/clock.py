"""The only clock of the application. The core never reads it; it receives `now_ms`."""

import time


def monotonic_ms():
    """Milliseconds from an arbitrary start; never goes backwards (use for timeouts and ages)."""
    return time.monotonic_ns() // 1_000_000


def wall_time_s():
    """Seconds since the epoch, UTC (use for timestamps shown to people and sent over OCPP)."""
    return time.time()
