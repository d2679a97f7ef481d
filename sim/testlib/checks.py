"""Assertions shared by the t/sim tests."""

import os
import sys


def setup_path():
    """Make `testlib` importable from a .t file anywhere under t/."""
    here = os.path.dirname(os.path.abspath(__file__))
    sim_dir = os.path.dirname(here)
    if sim_dir not in sys.path:
        sys.path.insert(0, sim_dir)


def is_gateway(body):
    return (isinstance(body, dict) and set(body) == {"code", "message"}
            and isinstance(body["code"], int))


def schema_ok(t, api, template, method, r, status, desc):
    """Status is `status` and the body matches what the file documents
    for it.  Gateway bodies ({"code","message"}) are checked against
    ProxyError strictly, since the README says the gateway answers so even
    where an operation documents another error schema."""
    if not t.is_(r.status, status, "%s: status %d" % (desc, status)):
        t.diag(repr(r))
        return False
    try:
        schema = api.response_schema(template, method, status)
    except KeyError as e:
        return t.ok(False, "%s: documented" % desc, str(e))
    if schema is None:
        if status >= 400 and r.body:
            # Write calls document their errors without a body; the sim
            # sends the usual application error list (README: "v2 and v1
            # application errors are {errors: [...]}").
            schema = api.doc["components"]["schemas"]["Errors.ApplicationErrors.Model"]
            errors = api.validate(r.json, schema, strict=True) if r.json else ["not JSON"]
            if r.json and not r.json.get("errors"):
                errors.append("no errors[] in the body")
            return t.ok(not errors, "%s: an application error list" % desc, "\n".join(errors))
        return t.ok(r.body == b"", "%s: no body, as documented" % desc, repr(r.body[:200]))
    if r.json is None:
        return t.ok(False, "%s: body is JSON" % desc, repr(r.body[:200]))
    errors = api.validate(r.json, schema, strict=not is_gateway(r.json))
    if is_gateway(r.json):
        proxy = api.doc["components"]["schemas"].get("ProxyError")
        if proxy is not None:
            errors += api.validate(r.json, proxy, strict=True)
    return t.ok(not errors, "%s: matches the schema" % desc, "\n".join(errors[:10]))
