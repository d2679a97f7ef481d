"""Request validation against the limits the OpenAPI files declare.

Each checker takes (value, field name) and returns the normalized value or
raises Invalid; check_object() turns that into the API's 400 error."""

import json
from urllib.parse import parse_qsl

from .errors import ApiError


class Invalid(ValueError):
    pass


def string(value, name):
    if not isinstance(value, str):
        raise Invalid("%s must be a string" % name)
    return value


def boolean(value, name):
    if not isinstance(value, bool):
        raise Invalid("%s must be a boolean" % name)
    return value


def integer(lo, hi):
    def check(value, name):
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid("%s must be an integer" % name)
        if not lo <= value <= hi:
            raise Invalid("%s must be between %d and %d" % (name, lo, hi))
        return value
    return check


def enum(values):
    def check(value, name):
        if value not in values:
            raise Invalid("%s must be one of %s" % (name, ", ".join(values)))
        return value
    return check


def array(item, min_items=1, max_items=None, unique=False):
    def check(value, name):
        if not isinstance(value, list):
            raise Invalid("%s must be an array" % name)
        if len(value) < min_items:
            raise Invalid("%s must have at least %d item(s)" % (name, min_items))
        if max_items is not None and len(value) > max_items:
            raise Invalid("%s must have at most %d items" % (name, max_items))
        out = [item(v, "%s[%d]" % (name, i)) for i, v in enumerate(value)]
        if unique and len(set(map(json.dumps, out))) != len(out):
            raise Invalid("%s must not repeat items" % name)
        return out
    return check


def obj(spec, required=()):
    def check(value, name):
        if not isinstance(value, dict):
            raise Invalid("%s must be an object" % name)
        for key in required:
            if key not in value:
                raise Invalid("%s.%s is required" % (name, key))
        return {k: spec[k](v, "%s.%s" % (name, k)) for k, v in value.items() if k in spec}
    return check


def parse_json(body, code="ADMIN-400-24", required=False):
    """-> the decoded JSON object ({} for an empty optional body)."""
    if not body.strip():
        if required:
            raise ApiError(400, code, "A JSON request body is required")
        return {}
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, code, "The request body is not valid JSON")
    if not isinstance(value, dict):
        raise ApiError(400, code, "The request body must be a JSON object")
    return value


def check_object(value, spec, code="ADMIN-400-24", required=()):
    """Validate known fields (unknown ones are ignored, as the schemas allow
    additional properties); None values count as absent."""
    out = {}
    try:
        for key in required:
            if value.get(key) is None:
                raise Invalid("%s is required" % key)
        for key, checker in spec.items():
            if value.get(key) is not None:
                out[key] = checker(value[key], key)
    except Invalid as e:
        raise ApiError(400, code, str(e))
    return out


def query_params(query, array_names=()):
    """Query string -> {name: value} with repeated or comma-separated
    values collected into lists for array parameters."""
    out = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        name = name[:-2] if name.endswith("[]") else name
        if name in array_names:
            out.setdefault(name, []).extend(v for v in value.split(",") if v)
        else:
            out[name] = value
    return out


def query_int(params, name, lo, hi, default, code="ADMIN-400-24"):
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, code, "%s must be an integer" % name)
    if not lo <= value <= hi:
        raise ApiError(400, code, "%s must be between %d and %d" % (name, lo, hi))
    return value
