"""The live variable table shared by the HTTP threads and the control loop, with persistence.

One lock guards the whole table (not a lock per field): writers validate, persist, then apply under it; the loop
evaluates under it. A write validates the whole batch first, then writes the stored layer to the data partition,
then applies it in memory, so a failed batch or a failed disk write changes nothing. Every applied change sets the
`changed` event, which wakes the control loop at once (a grid operator's command must not wait for the next tick).
"""

import logging
import threading

from chargemanager.core.variables import VariableError, VariableTable

log = logging.getLogger("variables")


def json_number(value):
    """Integral floats as int for JSON output (27500.0 -> 27500)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
        return int(value)
    return value


class VariableService:
    def __init__(self, store, wake_event=None):
        self._store = store
        self._lock = threading.Lock()
        self._table = VariableTable()
        self.changed = wake_event if wake_event is not None else threading.Event()
        self._write_listeners = []
        self.external_lookup = None  # set by the runtime: resolves device values, inputs and time names
        problems = self._table.load_stored(store.load_variables())
        for problem in problems:
            log.error("%s", problem)
        self._table.evaluate()

    def add_write_listener(self, listener):
        """`listener(names, source)` after every applied write (audit log, failsafe bookkeeping)."""
        self._write_listeners.append(listener)

    def set_batch(self, entries, clear=False, persist=True, source="api"):
        """Validate, persist, apply and evaluate; raises VariableError (nothing changed) or OSError (nothing changed)."""
        with self._lock:
            prepared = self._table.prepare(entries)
            self._table.check_capacity(prepared, clear)
            if persist:
                self._store.save_variables(self._table.stored_entries_after(prepared, clear))
            self._table.apply(prepared, clear=clear, persist=persist)
            self._table.evaluate(self.external_lookup)
            names = [name for name, _, _ in prepared]
        for listener in self._write_listeners:
            listener(names, source)
        self.changed.set()
        return names

    def evaluate(self):
        """Evaluate all variables; returns {NAME_KEY: value} of those without an error."""
        with self._lock:
            self._table.evaluate(self.external_lookup)
            return self._table.values()

    def listing(self):
        """[{"name", "expr", "val"[, "error"]}] for get_cm_vars."""
        with self._lock:
            result = []
            for var in self._table.variables():
                entry = var.to_dict()
                entry["expr"] = json_number(entry["expr"])
                entry["val"] = json_number(entry["val"])
                result.append(entry)
            return result

    def get(self, name):
        """A snapshot (name, expr, value, error) of one variable, or None."""
        with self._lock:
            var = self._table.get(name)
            if var is None:
                return None
            return _VariableView(var.name, var.expr, var.value, var.error)

    @property
    def generation(self):
        return self._table.generation


class _VariableView:
    def __init__(self, name, expr, value, error):
        self.name = name
        self.expr = expr
        self.value = value
        self.error = error


__all__ = ["VariableService", "VariableError", "json_number"]
