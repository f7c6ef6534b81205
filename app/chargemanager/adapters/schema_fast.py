"""A small JSON-schema (Draft 4) compiler for the fast path of OCPP payload validation: it answers only "surely valid".

`compile_fast(schema, formats)` returns a function `check(payload) -> bool` that is True only when the payload
satisfies the schema, and False when it does not or when the check is not sure (then the caller asks jsonschema,
which decides and names the error). It returns None for a schema that uses a keyword it does not handle, so a
schema is either checked completely or not at all here.

Why not fastjsonschema alone: its generated code checks an enum by comparing with every member, tests a dict for
every string with `additionalProperties`, and copies the key set of every object; for a MeterValues with 10 sampled
values that was the largest single cost of a forwarded wallbox message. Here an enum is one frozenset lookup, the
allowed keys one `issuperset`, and types are compared exactly (`type(x) is str`: payloads come from `json.loads`, so
a subclass never occurs; a bool is never taken for an integer).

Handled: `type` (one of string, integer, number, boolean, object, array), `properties`, `required`,
`additionalProperties` (false or absent; ignored on non-objects, as Draft 4 does), `enum` (of strings), `maxLength`,
`minLength`, `format` (the functions given in `formats`; other formats are not checked, as jsonschema does not check
them either), `items` (one schema), `minItems`, `maxItems`, and the annotations `$schema`, `$id`, `id`, `title`,
`description`, `javaType`. Anything else (`$ref`, `multipleOf`, `minimum`, ...) makes `compile_fast` return None.
"""

_ANNOTATIONS = ("$schema", "$id", "id", "title", "description", "javaType")
_KEYWORDS = ("type", "properties", "required", "additionalProperties", "enum", "maxLength", "minLength", "format",
             "items", "minItems", "maxItems", "definitions") + _ANNOTATIONS
_TYPES = {"string": "type({v}) is not str", "integer": "type({v}) is not int",
          "number": "type({v}) is not int and type({v}) is not float", "boolean": "type({v}) is not bool",
          "object": "type({v}) is not dict", "array": "type({v}) is not list"}


class Unsupported(Exception):
    pass


class _Gen:
    def __init__(self, formats):
        self.formats = formats
        self.consts = {}
        self.lines = []
        self.n = 0

    def const(self, value):
        name = "C%d" % len(self.consts)
        self.consts[name] = value
        return name

    def var(self):
        self.n += 1
        return "v%d" % self.n

    def emit(self, indent, text):
        self.lines.append("    " * indent + text)

    def node(self, schema, v, indent):
        if not isinstance(schema, dict):
            raise Unsupported("schema is not an object")
        for key in schema:
            if key not in _KEYWORDS:
                raise Unsupported(key)
        if schema.get("definitions"):
            raise Unsupported("definitions")
        kind = schema.get("type")
        if kind is None:
            if len([k for k in schema if k not in _ANNOTATIONS]) > 0:
                raise Unsupported("constraints without a type")
            return
        if kind not in _TYPES:
            raise Unsupported("type %r" % (kind,))
        self.emit(indent, "if %s: return False" % _TYPES[kind].format(v=v))
        if "enum" in schema:
            values = schema["enum"]
            if kind != "string" or not all(isinstance(e, str) for e in values):
                raise Unsupported("enum of non-strings")
            self.emit(indent, "if %s not in %s: return False" % (v, self.const(frozenset(values))))
        if kind == "string":
            if "maxLength" in schema:
                self.emit(indent, "if len(%s) > %d: return False" % (v, int(schema["maxLength"])))
            if "minLength" in schema:
                self.emit(indent, "if len(%s) < %d: return False" % (v, int(schema["minLength"])))
            fmt = schema.get("format")
            if fmt is not None and fmt in self.formats:
                self.emit(indent, "if not %s(%s): return False" % (self.const(self.formats[fmt]), v))
        elif kind == "object":
            self.obj(schema, v, indent)
        elif kind == "array":
            if "minItems" in schema:
                self.emit(indent, "if len(%s) < %d: return False" % (v, int(schema["minItems"])))
            if "maxItems" in schema:
                self.emit(indent, "if len(%s) > %d: return False" % (v, int(schema["maxItems"])))
            items = schema.get("items")
            if items is not None:
                if not isinstance(items, dict):
                    raise Unsupported("items as a list")
                x = self.var()
                self.emit(indent, "for %s in %s:" % (x, v))
                before = len(self.lines)
                self.node(items, x, indent + 1)
                if len(self.lines) == before:
                    self.emit(indent + 1, "pass")

    def obj(self, schema, v, indent):
        props = schema.get("properties") or {}
        required = schema.get("required") or []
        if required:
            self.emit(indent, "if %s: return False" % " or ".join("%s not in %s" % (self.const(name), v)
                                                                   for name in required))
        extra = schema.get("additionalProperties", True)
        if extra is False:
            self.emit(indent, "if not %s.issuperset(%s): return False" % (self.const(frozenset(props)), v))
        elif extra is not True:
            raise Unsupported("additionalProperties as a schema")
        for name in props:
            x = self.var()
            key = self.const(name)
            self.emit(indent, "if %s in %s:" % (key, v))
            self.emit(indent + 1, "%s = %s[%s]" % (x, v, key))
            self.node(props[name], x, indent + 1)


def compile_fast(schema, formats=None):
    """`check(payload) -> bool` (True: surely valid), or None when the schema uses an unhandled keyword."""
    gen = _Gen(formats or {})
    try:
        gen.node(schema, "p", 1)
    except Unsupported:
        return None
    source = "def check(p):\n" + "\n".join(gen.lines) + "\n    return True\n"
    scope = dict(gen.consts)
    exec(compile(source, "<schema_fast>", "exec"), scope)
    return scope["check"]
