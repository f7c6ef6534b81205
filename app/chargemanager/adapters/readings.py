"""The mailbox through which adapter threads hand their latest readings to the control loop.

Each device publishes a dict of quantities (integer units: `power_w`, `current_l1_ma`, ...) with the monotonic time
it was taken. Readers get values together with their age: a stale reading is an input for the core to decide on,
never silently used as fresh. One lock guards the board; a publish replaces a device's whole reading at once.
"""

import threading


class ReadingBoard:
    def __init__(self):
        self._lock = threading.Lock()
        self._readings = {}  # dev_id -> (quantities dict, taken_ms, max_age_ms)

    def publish(self, dev_id, quantities, taken_ms, max_age_ms=15000):
        with self._lock:
            self._readings[dev_id] = (dict(quantities), taken_ms, max_age_ms)

    def forget(self, dev_id):
        with self._lock:
            self._readings.pop(dev_id, None)

    def snapshot(self):
        """{dev_id: (quantities, taken_ms, max_age_ms)}: a consistent copy for one tick."""
        with self._lock:
            return dict(self._readings)

    def get(self, dev_id):
        with self._lock:
            return self._readings.get(dev_id)
