"""A small validation engine for the configuration document (and API bodies): one schema validates, fills
defaults and describes itself for the generated configuration reference.

Invariants:
- `validate(schema, value)` never raises on bad input: it returns `(clean, errors)`, where `errors` is a list of
  `{"field": "evses[0].min_current_ma", "error": "..."}`, one per bad field, and `clean` is only meaningful when
  `errors` is empty. Callers apply nothing when there is an error (never half-applied).
- Unknown keys in an object are kept unchanged (after a rollback, older code may meet a newer document).
- Formula fields are compiled to check their syntax, and stay strings in the clean document.
This module is pure (MicroPython-compatible): no clock, no I/O.
"""

from chargemanager.core.formula import FormulaError, compile_formula


class Type:
    doc_type = "value"

    def check(self, value, path, errors):
        return value


def _error(errors, path, message):
    errors.append({"field": path or "(document)", "error": message})


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Number(Type):
    def __init__(self, minimum=None, maximum=None, integer=False):
        self.minimum = minimum
        self.maximum = maximum
        self.integer = integer
        self.doc_type = "integer" if integer else "number"

    def check(self, value, path, errors):
        if not _is_number(value):
            _error(errors, path, "must be a %s" % self.doc_type)
            return value
        if value != value or value in (float("inf"), float("-inf")):
            _error(errors, path, "must be a finite number")
            return value
        if self.integer and value != int(value):
            _error(errors, path, "must be a whole number")
            return value
        if self.integer:
            value = int(value)
        if self.minimum is not None and value < self.minimum:
            _error(errors, path, "must be at least %s" % self.minimum)
        elif self.maximum is not None and value > self.maximum:
            _error(errors, path, "must be at most %s" % self.maximum)
        return value

    def describe_range(self):
        if self.minimum is not None and self.maximum is not None:
            return "%s..%s" % (self.minimum, self.maximum)
        if self.minimum is not None:
            return ">= %s" % self.minimum
        if self.maximum is not None:
            return "<= %s" % self.maximum
        return ""


class NumberOrFormula(Number):
    """A number, or a formula string evaluated every tick (SPEC §2)."""

    def __init__(self, minimum=None, maximum=None, integer=False):
        Number.__init__(self, minimum, maximum, integer)
        self.doc_type = "number or formula"

    def check(self, value, path, errors):
        if isinstance(value, str):
            try:
                compile_formula(value)
            except FormulaError as exc:
                _error(errors, path, "formula error %s" % exc)
            return value
        if not _is_number(value):
            _error(errors, path, "must be a number or a formula string")
            return value
        return Number.check(self, value, path, errors)


class String(Type):
    def __init__(self, max_length=256, min_length=0, allowed=None, allowed_doc=None):
        self.max_length = max_length
        self.min_length = min_length
        self.allowed = allowed  # a predicate on characters, or None
        self.allowed_doc = allowed_doc
        self.doc_type = "string"

    def check(self, value, path, errors):
        if not isinstance(value, str):
            _error(errors, path, "must be a string")
            return value
        if len(value) > self.max_length:
            _error(errors, path, "must be at most %d characters" % self.max_length)
        elif len(value) < self.min_length:
            _error(errors, path, "must be at least %d characters" % self.min_length)
        elif self.allowed is not None:
            for ch in value:
                if not self.allowed(ch):
                    _error(errors, path, "character %r not allowed (%s)" % (ch, self.allowed_doc or "invalid"))
                    break
        return value

    def describe_range(self):
        text = "<= %d chars" % self.max_length
        if self.allowed_doc:
            text += ", " + self.allowed_doc
        return text


class Enum(Type):
    def __init__(self, choices):
        self.choices = tuple(choices)
        self.doc_type = "one of"

    def check(self, value, path, errors):
        if value not in self.choices or isinstance(value, bool):
            _error(errors, path, "must be one of %s" % ", ".join(repr(c) for c in self.choices))
        return value

    def describe_range(self):
        return " | ".join(str(c) for c in self.choices)


class Bool(Type):
    doc_type = "boolean"

    def check(self, value, path, errors):
        if not isinstance(value, bool):
            _error(errors, path, "must be true or false")
        return value


class Nullable(Type):
    """The inner type, or null (meaning: not set)."""

    def __init__(self, inner):
        self.inner = inner
        self.doc_type = inner.doc_type + " or null"

    def check(self, value, path, errors):
        if value is None:
            return None
        return self.inner.check(value, path, errors)

    def describe_range(self):
        return getattr(self.inner, "describe_range", lambda: "")()


class Field:
    def __init__(self, key, type_, default=None, doc="", required=False):
        self.key = key
        self.type = type_
        self.default = default
        self.doc = doc
        self.required = required


class Object(Type):
    doc_type = "object"

    def __init__(self, fields, doc="", check_whole=None):
        self.fields = fields
        self.doc = doc
        self.check_whole = check_whole  # optional f(clean, path, errors) for cross-field rules

    def field(self, key):
        for f in self.fields:
            if f.key == key:
                return f
        return None

    def check(self, value, path, errors):
        if not isinstance(value, dict):
            _error(errors, path, "must be an object")
            return value
        clean = {}
        for key in value:
            if self.field(key) is None:
                clean[key] = value[key]  # unknown keys are kept and ignored
        for f in self.fields:
            sub = (path + "." + f.key) if path else f.key
            if f.key in value:
                clean[f.key] = f.type.check(value[f.key], sub, errors)
            elif f.required:
                _error(errors, sub, "is required")
            elif isinstance(f.default, (dict, list)):
                clean[f.key] = f.type.check(_copy(f.default), sub, errors)  # fills nested defaults
            else:
                clean[f.key] = _copy(f.default)
        if self.check_whole is not None and not errors:
            self.check_whole(clean, path, errors)
        return clean


class List(Type):
    doc_type = "list"

    def __init__(self, item, max_items=256, unique_key=None):
        self.item = item
        self.max_items = max_items
        self.unique_key = unique_key

    def check(self, value, path, errors):
        if not isinstance(value, list):
            _error(errors, path, "must be a list")
            return value
        if len(value) > self.max_items:
            _error(errors, path, "must have at most %d entries" % self.max_items)
            return value
        clean = []
        seen = {}
        for index, item in enumerate(value):
            sub = "%s[%d]" % (path, index)
            checked = self.item.check(item, sub, errors)
            clean.append(checked)
            if self.unique_key is not None and isinstance(checked, dict):
                key = checked.get(self.unique_key)
                if key in seen:
                    _error(errors, sub + "." + self.unique_key,
                           "duplicate %s %r (also in entry %d)" % (self.unique_key, key, seen[key]))
                else:
                    seen[key] = index
        return clean


def _copy(value):
    if isinstance(value, dict):
        return dict((k, _copy(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def validate(schema, value):
    """(clean value with defaults filled in, list of field errors)."""
    errors = []
    clean = schema.check(value, "", errors)
    return clean, errors


def defaults(schema):
    """The document made only of defaults."""
    clean, _ = validate(schema, {})
    return clean


def describe(schema, path=""):
    """Rows (key path, type, range, default, doc) for the generated configuration reference."""
    rows = []
    if isinstance(schema, Object):
        for f in schema.fields:
            sub = (path + "." + f.key) if path else f.key
            t = f.type
            inner = t.inner if isinstance(t, Nullable) else t
            rng = getattr(t, "describe_range", lambda: "")()
            if isinstance(inner, Object):
                rows.append((sub, "object", "", "", f.doc))
                rows.extend(describe(inner, sub))
            elif isinstance(inner, List):
                rows.append((sub, "list", "at most %d" % inner.max_items, "[]", f.doc))
                if isinstance(inner.item, Object):
                    rows.extend(describe(inner.item, sub + "[]"))
            else:
                default = "required" if f.required else _doc_value(f.default)
                rows.append((sub, t.doc_type, rng, default, f.doc))
    return rows


def _doc_value(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"%s"' % value
    return str(value)
