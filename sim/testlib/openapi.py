"""A validator for the OpenAPI 3.0 schema subset Atlassian's files use.

Supported: $ref (schemas and responses), type, properties, required,
items, enum, nullable, allOf/oneOf/anyOf, additionalProperties,
min/maxItems, uniqueItems, minimum/maximum, min/maxLength and loose
formats (date, date-time).  Ignored: discriminator, readOnly, example,
pattern (the files' AccountId pattern ends in a newline).

strict=True also reports properties a schema does not declare (when it
does not say additionalProperties): the schemas allow unknown fields, so
without it a misspelt field name would pass unnoticed.
"""

import json
import re

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$")


class OpenAPI:
    def __init__(self, path, prefix=""):
        with open(path, encoding="utf-8") as f:
            self.doc = json.load(f)
        # The sim serves spec path /v2/... at prefix + /v2/... (e.g. /admin).
        self.prefix = prefix

    # ------------------------------------------------------------ lookups

    def resolve(self, ref):
        if not ref.startswith("#/"):
            raise ValueError("external $ref not supported: %s" % ref)
        node = self.doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def operation(self, template, method):
        if self.prefix and template.startswith(self.prefix):
            template = template[len(self.prefix):]
        return self.doc["paths"][template][method.lower()]

    def response_schema(self, template, method, status):
        """The JSON schema of a documented response; None when the response
        has no body; KeyError when the status is not documented."""
        responses = self.operation(template, method)["responses"]
        resp = responses.get(str(status)) or responses.get("default")
        if resp is None:
            raise KeyError("%s %s does not document status %s" % (method, template, status))
        if "$ref" in resp:
            resp = self.resolve(resp["$ref"])
        content = resp.get("content")
        if not content:
            return None
        media = content.get("application/json") or next(iter(content.values()))
        return media.get("schema", {})

    def schema(self, name):
        return self.doc["components"]["schemas"][name]

    # ---------------------------------------------------------- validation

    def validate(self, instance, schema, strict=False):
        """-> list of error strings (empty when valid)."""
        errors = []
        self._check(instance, schema, "$", errors, strict, False)
        return errors

    def _props(self, schema):
        """Property names a schema declares, through $ref and allOf."""
        if "$ref" in schema:
            return self._props(self.resolve(schema["$ref"]))
        names = set(schema.get("properties", {}))
        for sub in schema.get("allOf", ()):
            names |= self._props(sub)
        return names

    def _check(self, x, s, path, errors, strict, in_allof):
        if "$ref" in s:
            if x is None and s.get("nullable"):
                return
            self._check(x, self.resolve(s["$ref"]), path, errors, strict, in_allof)
            return
        if x is None:
            if s.get("nullable") or not s:
                return
            if "type" in s or "enum" in s or "properties" in s:
                errors.append("%s: null is not allowed" % path)
                return
        for sub in s.get("allOf", ()):
            self._check(x, sub, path, errors, strict, True)
        for key in ("oneOf", "anyOf"):
            if key in s:
                passing = [i for i, sub in enumerate(s[key])
                           if not self.validate(x, sub, strict)]
                if key == "oneOf" and len(passing) != 1:
                    errors.append("%s: matches %d of oneOf alternatives" % (path, len(passing)))
                if key == "anyOf" and not passing:
                    detail = self.validate(x, s[key][0], strict)[:2]
                    errors.append("%s: matches no anyOf alternative (first: %s)" % (path, detail))
        if "enum" in s and x not in s["enum"]:
            errors.append("%s: %r not in enum %s" % (path, x, s["enum"]))
        t = s.get("type")
        if t is None and "properties" in s:
            t = "object"
        if t is not None and not _type_ok(x, t):
            errors.append("%s: expected %s, got %s" % (path, t, type(x).__name__))
            return
        if isinstance(x, dict) and (t == "object" or "properties" in s):
            self._object(x, s, path, errors, strict, in_allof)
        elif isinstance(x, list) and t == "array":
            if "minItems" in s and len(x) < s["minItems"]:
                errors.append("%s: fewer than %d items" % (path, s["minItems"]))
            if "maxItems" in s and len(x) > s["maxItems"]:
                errors.append("%s: more than %d items" % (path, s["maxItems"]))
            if s.get("uniqueItems") and len({json.dumps(i, sort_keys=True) for i in x}) != len(x):
                errors.append("%s: items are not unique" % path)
            for i, item in enumerate(x):
                self._check(item, s.get("items", {}), "%s[%d]" % (path, i), errors, strict, False)
        elif isinstance(x, str):
            fmt = s.get("format")
            if fmt == "date" and not _DATE.match(x):
                errors.append("%s: %r is not a date" % (path, x))
            if fmt == "date-time" and not _DATE_TIME.match(x):
                errors.append("%s: %r is not a date-time" % (path, x))
            if "minLength" in s and len(x) < s["minLength"]:
                errors.append("%s: shorter than %d" % (path, s["minLength"]))
            if "maxLength" in s and len(x) > s["maxLength"]:
                errors.append("%s: longer than %d" % (path, s["maxLength"]))
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            if "minimum" in s and x < s["minimum"]:
                errors.append("%s: below minimum %s" % (path, s["minimum"]))
            if "maximum" in s and x > s["maximum"]:
                errors.append("%s: above maximum %s" % (path, s["maximum"]))

    def _object(self, x, s, path, errors, strict, in_allof):
        props = s.get("properties", {})
        for name in s.get("required", ()):
            if name not in x:
                errors.append("%s: missing required %s" % (path, name))
        for name, value in x.items():
            if name in props:
                self._check(value, props[name], "%s.%s" % (path, name), errors, strict, False)
        extra = [k for k in x if k not in props]
        ap = s.get("additionalProperties")
        if ap is False:
            for k in extra:
                errors.append("%s: unexpected property %s" % (path, k))
        elif isinstance(ap, dict):
            for k in extra:
                self._check(x[k], ap, "%s.%s" % (path, k), errors, strict, False)
        elif strict and not in_allof and (props or "allOf" in s):
            declared = self._props(s)
            for k in x:
                if k not in declared:
                    errors.append("%s: undeclared property %s" % (path, k))


def _type_ok(x, t):
    if t == "object":
        return isinstance(x, dict)
    if t == "array":
        return isinstance(x, list)
    if t == "string":
        return isinstance(x, str)
    if t == "integer":
        return isinstance(x, int) and not isinstance(x, bool)
    if t == "number":
        return isinstance(x, (int, float)) and not isinstance(x, bool)
    if t == "boolean":
        return isinstance(x, bool)
    return True
