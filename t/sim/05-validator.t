#!/usr/bin/env python3
# The OpenAPI validator the schema tests rely on must reject what is wrong.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sim"))
from testlib.openapi import OpenAPI  # noqa: E402
from testlib.simproc import API_DIR, specs  # noqa: E402
from testlib.tap import TAP  # noqa: E402


def main(t):
    api = specs()
    if api is None:
        t.skip("validator against the real files", "%s not found" % API_DIR)
        return
    orgs, um = api
    page = orgs.response_schema("/admin/v2/orgs/{orgId}/directories/{directoryId}/users/search",
                                "POST", 200)
    good = {"data": [{"accountId": "a", "accountType": "atlassian", "status": "active",
                      "managementSource": None,
                      "productAccess": [{"id": "ari", "key": "jira-software",
                                         "lastActiveTimestamp": "2025-11-06T23:07:29.936Z"}]}],
            "links": {"next": "c"}}
    t.is_(orgs.validate(good, page, strict=True), [], "a valid users page passes")
    cases = [
        ({"links": {}}, "missing required data"),
        ({"data": [{"accountType": "customer"}]}, "value outside an enum"),
        ({"data": [{"lastActive": "x"}]}, "undeclared field (strict)"),
        ({"data": [{"productAccess": [{"lastActiveTimestamp": "yesterday"}]}]}, "bad date-time"),
        ({"data": [{"accountId": 5}]}, "wrong type"),
        ({"data": [{"name": None}]}, "null where not nullable"),
        ({"data": {}}, "object instead of array"),
    ]
    for body, desc in cases:
        t.ok(orgs.validate(body, page, strict=True), "rejects: " + desc)
    t.is_(orgs.validate({"data": [{"lastActive": "x"}]}, page), [],
          "undeclared fields pass when not strict (the files allow them)")

    lad = orgs.response_schema(
        "/admin/v1/orgs/{orgId}/directory/users/{accountId}/last-active-dates", "GET", 200)
    t.ok(orgs.validate({"data": {"product_access": [{"id": "x", "key": "jira"}]}}, lad),
         "rejects a v1 product key outside its enum")
    t.ok(orgs.validate({"data": {"product_access": [{"id": "x", "key": "confluence",
                                                     "last_active": "2025-01-01T00:00:00Z"}]}},
                       lad), "rejects a date-time where a date is documented")
    t.is_(orgs.validate({"data": {"product_access": [], "added_to_org": None}}, lad), [],
          "nullable added_to_org accepts null")
    cursor_err = orgs.response_schema("/admin/v1/orgs/{orgId}/users", "GET", 400)
    t.ok(orgs.validate({"errors": [{"code": "ADMIN-404-2"}]}, cursor_err),
         "allOf with an enum rejects the wrong error code")
    t.is_(orgs.validate({"errors": [{"code": "ADMIN-400-1", "id": "i", "status": "400",
                                     "title": "t", "detail": "d"}]}, cursor_err, strict=True),
          [], "allOf with an enum accepts the right error code, strictly")
    forbidden = um.response_schema("/users/{account_id}/manage/lifecycle/disable", "POST", 403)
    t.is_(um.validate({"key": "forbidden.targetUnverified"}, forbidden, strict=True), [],
          "oneOf: exactly one alternative matches")
    t.ok(um.validate({"key": "forbidden.action"}, forbidden, strict=True),
         "oneOf: forbidden.action without its context matches none")
    t.ok(um.response_schema("/users/{account_id}/manage/lifecycle/enable", "POST", 204) is None,
         "204 responses have no body schema")
    ws = orgs.response_schema("/admin/v2/orgs/{orgId}/workspaces", "POST", 200)
    t.is_(orgs.validate({"data": [{"attributes": {"anything": 1, "capacity": None}}]}, ws,
                        strict=True), [], "additionalProperties: {} allows extra attributes")
    t.ok(orgs.validate({"data": [{"attributes": {"status": "gone"}}]}, ws, strict=True),
         "workspace status enum enforced")
    t.ok(isinstance(OpenAPI, type), "validator importable")


TAP().run(main)
