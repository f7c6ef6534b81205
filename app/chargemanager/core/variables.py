"""Charging-manager variables: name -> expression -> value (SPEC §2, seed 000).

Invariants:
- A name is identifier-like (a letter or `_`, then letters, digits, `_`), at most MAX_NAME_LENGTH characters, and
  not a function name. Names are **case-insensitive**: `tarif` and `TARIF` are the same variable (a grid operator
  and a user rule must not silently miss each other); the spelling of the latest write is kept for display.
- An expression is a JSON number or a string; a string that is a plain number is stored as that number, anything
  else is compiled as a formula. A batch is validated completely before anything changes: all or nothing.
- Two layers: the live table (what formulas see) and the stored table (what goes to the data partition). A write with
  `persist=False` (the API's `tmp=1`) changes only the live table.
- `evaluate()` computes every variable in dependency order. A cycle, an unknown name, a division by zero or any other
  evaluation error gives that variable (and those that read it) an error message instead of a value; it never
  raises, so a tick cannot crash on a variable.
- `generation` increases with every change, so callers can tell that something changed.
This module never reads the clock, a file or the network.
"""

from chargemanager.core.formula import (
    FormulaError, UnknownName, compile_formula, constant_formula, is_function_name,
)

MAX_NAME_LENGTH = 32
MAX_VARIABLES = 4096


class VariableError(Exception):
    """A rejected write. `index` is the batch entry (0-based) or None, `position` the formula column or None."""

    def __init__(self, message, name=None, index=None, position=None):
        super().__init__(message)
        self.message = message
        self.name = name
        self.index = index
        self.position = position

    def __str__(self):
        return self.message


def _is_name_start(ch):
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ch == "_"


def _is_name_char(ch):
    return _is_name_start(ch) or ("0" <= ch <= "9")


def name_key(name):
    """The case-insensitive key of a variable name."""
    return name.upper()


def validate_name(name):
    """Return the name if valid, else raise VariableError saying why."""
    if not isinstance(name, str):
        raise VariableError("variable name must be a string", name=None)
    if not name:
        raise VariableError("variable name is empty", name=name)
    if len(name) > MAX_NAME_LENGTH:
        raise VariableError("variable name longer than %d characters" % MAX_NAME_LENGTH, name=name)
    if not _is_name_start(name[0]):
        raise VariableError("variable name '%s' must start with a letter or '_'" % name, name=name)
    for ch in name:
        if not _is_name_char(ch):
            raise VariableError("variable name '%s' may only contain letters, digits and '_'" % name, name=name)
    if is_function_name(name):
        raise VariableError("variable name '%s' is a function name" % name, name=name)
    return name


def _plain_number(text):
    """The number a string spells (e.g. '123', '-1.5'), or None if it is not a plain number."""
    stripped = text.strip()
    if not stripped:
        return None
    body = stripped[1:] if stripped[0] in "+-" else stripped
    if not body:
        return None
    for ch in body:
        if not (("0" <= ch <= "9") or ch in ".eE+-"):
            return None
    try:
        if "." in body or "e" in body or "E" in body:
            value = float(stripped)
        else:
            value = int(stripped)
    except ValueError:
        return None
    return value


def compile_expression(expr):
    """(stored expression, Formula) for a JSON number or a string; raises VariableError."""
    if isinstance(expr, bool) or expr is None:
        raise VariableError("expression must be a number or a formula string")
    if isinstance(expr, (int, float)):
        try:
            return expr, constant_formula(expr)
        except FormulaError as exc:
            raise VariableError("expression: %s" % exc.message)
    if not isinstance(expr, str):
        raise VariableError("expression must be a number or a formula string")
    number = _plain_number(expr)
    if number is not None:
        try:
            return number, constant_formula(number)
        except FormulaError as exc:
            raise VariableError("expression: %s" % exc.message)
    try:
        return expr, compile_formula(expr)
    except FormulaError as exc:
        raise VariableError("formula error %s" % exc, position=exc.position)


class Variable:
    """One live variable; `value` is a number, or None with `error` set."""

    def __init__(self, name, expr, formula):
        self.name = name
        self.expr = expr
        self.formula = formula
        self.value = None
        self.error = "not evaluated yet"

    def to_dict(self):
        entry = {"name": self.name, "expr": self.expr, "val": self.value}
        if self.error is not None:
            entry["error"] = self.error
        return entry


class VariableTable:
    def __init__(self):
        self._live = {}      # key -> Variable
        self._stored = {}    # key -> (name, expr): what the data partition holds
        self._order = None   # evaluation order (list of keys), None when it must be recomputed
        self._cycle_errors = {}
        self._key_of = {}
        self.generation = 0

    # --- writes -------------------------------------------------------------------------------------------------
    def prepare(self, entries):
        """Validate and compile [(name, expr), ...]; returns compiled entries or raises VariableError (with index)."""
        prepared = []
        seen = {}
        for index, entry in enumerate(entries):
            name, expr = entry
            try:
                validate_name(name)
                stored_expr, formula = compile_expression(expr)
            except VariableError as exc:
                exc.index = index
                if exc.name is None and isinstance(name, str):
                    exc.name = name
                raise exc
            key = name_key(name)
            if key in seen:
                prepared[seen[key]] = (name, stored_expr, formula)
            else:
                seen[key] = len(prepared)
                prepared.append((name, stored_expr, formula))
        return prepared

    def check_capacity(self, prepared, clear=False):
        """Raise VariableError if applying `prepared` would exceed MAX_VARIABLES."""
        base = {} if clear else self._live
        new_keys = 0
        for name, _, _ in prepared:
            if name_key(name) not in base:
                new_keys += 1
        if len(base) + new_keys > MAX_VARIABLES:
            raise VariableError("too many variables (at most %d)" % MAX_VARIABLES)

    def stored_entries_after(self, prepared, clear=False):
        """What stored_entries() will be after a persistent apply(prepared, clear), without changing anything."""
        stored = {} if clear else dict(self._stored)
        for name, expr, _ in prepared:
            stored[name_key(name)] = (name, expr)
        return [{"name": stored[key][0], "expr": stored[key][1]} for key in sorted(stored)]

    def apply(self, prepared, clear=False, persist=True):
        """Apply entries from prepare(); checks the size bound first so that a refused batch changes nothing."""
        self.check_capacity(prepared, clear)
        if clear:
            self._live = {}
            if persist:
                self._stored = {}
        for name, expr, formula in prepared:
            key = name_key(name)
            self._live[key] = Variable(name, expr, formula)
            if persist:
                self._stored[key] = (name, expr)
        self._order = None
        self.generation += 1

    def set_batch(self, entries, clear=False, persist=True):
        """Set several variables at once, all or nothing (`clear` deletes all others first)."""
        self.apply(self.prepare(entries), clear=clear, persist=persist)

    def set(self, name, expr, persist=True):
        self.set_batch([(name, expr)], persist=persist)

    def clear(self, persist=True):
        self.apply([], clear=True, persist=persist)

    def load_stored(self, entries):
        """Load the stored layer (from the data partition). Invalid entries are skipped and returned as messages."""
        problems = []
        good = []
        for entry in entries:
            try:
                good.extend(self.prepare([(entry.get("name"), entry.get("expr"))]))
            except (VariableError, AttributeError) as exc:
                problems.append("skipped stored variable %r: %s" % (entry, exc))
        self.apply(good, clear=True, persist=True)
        return problems

    def stored_entries(self):
        """What to write to the data partition: [{"name", "expr"}] in a stable order."""
        return [{"name": name, "expr": expr} for name, expr in
                (self._stored[key] for key in sorted(self._stored))]

    # --- reads --------------------------------------------------------------------------------------------------
    def __len__(self):
        return len(self._live)

    def get(self, name):
        return self._live.get(name_key(name))

    def variables(self):
        """Live variables in a stable (sorted by key) order."""
        return [self._live[key] for key in sorted(self._live)]

    def values(self):
        """{NAME_KEY: value} of every variable without an error."""
        result = {}
        for key in self._live:
            var = self._live[key]
            if var.error is None:
                result[key] = var.value
        return result

    # --- evaluation ---------------------------------------------------------------------------------------------
    def _compute_order(self):
        """Depth-first topological order; variables on a cycle get an error naming the cycle."""
        live = self._live
        order = []
        state = {}  # key -> 1 visiting, 2 done
        cycle_errors = {}
        for root in sorted(live):
            if state.get(root) == 2:
                continue
            # Iterative DFS: stack of (key, iterator over dependency keys).
            stack = [(root, iter(self._dependencies(root)))]
            path = [root]
            state[root] = 1
            while stack:
                key, deps = stack[-1]
                advanced = False
                for dep in deps:
                    dep_state = state.get(dep)
                    if dep_state is None:
                        state[dep] = 1
                        stack.append((dep, iter(self._dependencies(dep))))
                        path.append(dep)
                        advanced = True
                        break
                    if dep_state == 1:
                        start = path.index(dep)
                        cycle = path[start:] + [dep]
                        text = "cycle: " + " -> ".join(live[k].name for k in cycle)
                        for member in path[start:]:
                            cycle_errors.setdefault(member, text)
                if not advanced:
                    stack.pop()
                    path.pop()
                    state[key] = 2
                    order.append(key)
        self._order = order
        self._cycle_errors = cycle_errors
        # Names as written in formulas -> variable key, so evaluation needs no case folding.
        key_of = {}
        for key in live:
            for name in live[key].formula.names:
                if name_key(name) in live:
                    key_of[name] = name_key(name)
        self._key_of = key_of

    def _dependencies(self, key):
        var = self._live[key]
        deps = []
        for name in var.formula.names:
            dep = name_key(name)
            if dep in self._live and dep not in deps:
                deps.append(dep)
        return deps

    def evaluate(self, external_lookup=None):
        """Evaluate every variable in dependency order; `external_lookup(name)` resolves device values, inputs and
        time names and raises UnknownName/FormulaError. Never raises."""
        if self._order is None:
            self._compute_order()
        live = self._live
        key_of = self._key_of
        values = {}  # key -> value of the variables evaluated so far without error

        def lookup(name):
            key = key_of.get(name)
            if key is not None:
                if key in values:
                    return values[key]
                var = live[key]
                raise FormulaError("'%s' has an error (%s)" % (var.name, var.error))
            if external_lookup is None:
                raise UnknownName(name)
            return external_lookup(name)

        cycle_errors = self._cycle_errors
        for key in self._order:
            var = live[key]
            cycle = cycle_errors.get(key)
            if cycle is not None:
                var.value = None
                var.error = cycle
                continue
            try:
                value = var.formula.evaluate(lookup)
            except FormulaError as exc:
                var.value = None
                var.error = str(exc)
                continue
            var.value = value
            var.error = None
            values[key] = value
