"""The configuration schema (core/config.py) as a JSON description the config page builds its forms from.

The page has no field list of its own: a field added to the schema appears on the page, and the server validates
what the page sends with the same schema (set_config), so page and API can never disagree.
"""

from chargemanager.core.schema import Bool, Enum, List, Nullable, Number, NumberOrFormula, Object, String

SECRET_KEYS = ("password",)


def describe_type(t):
    if isinstance(t, Nullable):
        return {"t": "nullable", "inner": describe_type(t.inner)}
    if isinstance(t, NumberOrFormula):
        return {"t": "formula", "min": t.minimum, "max": t.maximum, "int": t.integer}
    if isinstance(t, Number):
        return {"t": "number", "min": t.minimum, "max": t.maximum, "int": t.integer}
    if isinstance(t, String):
        return {"t": "string", "min": t.min_length, "max": t.max_length, "chars": t.allowed_doc}
    if isinstance(t, Enum):
        return {"t": "enum", "choices": list(t.choices)}
    if isinstance(t, Bool):
        return {"t": "bool"}
    if isinstance(t, List):
        return {"t": "list", "item": describe_type(t.item), "max": t.max_items, "unique": t.unique_key}
    if isinstance(t, Object):
        return {"t": "object", "doc": t.doc, "fields": [describe_field(f) for f in t.fields]}
    return {"t": "any"}  # a type this page does not know yet: edited as JSON, validated by the server


def describe_field(f):
    desc = {"key": f.key, "doc": f.doc, "default": f.default, "required": f.required, "type": describe_type(f.type)}
    if f.key in SECRET_KEYS:
        desc["secret"] = True
    return desc


def _models():
    """{kind: [model ids]} from the device registry (chargers, meters, io), empty in a build without one."""
    try:
        from chargemanager.devices.index import MODELS
    except ImportError:
        return {}
    kinds = {}
    for model_id, module in sorted(MODELS.items()):
        kinds.setdefault(module.split(".")[-2], []).append(model_id)
    return kinds


def _field(obj_desc, key):
    for f in obj_desc.get("fields", []):
        if f["key"] == key:
            return f
    return None


def form_description(schema):
    """The schema's description; device `type` fields carry the known model ids as suggestions."""
    desc = describe_type(schema)
    models = _models()
    for section, suggest in (("evses", ["ocpp16"] + models.get("chargers", [])), ("meters", models.get("meters", [])),
                             ("inputs", models.get("io", []))):
        top = _field(desc, section)
        if top is None or top["type"].get("t") != "list":
            continue
        type_field = _field(top["type"]["item"], "type")
        if type_field is not None and suggest:
            type_field["type"]["suggest"] = suggest
    return desc
