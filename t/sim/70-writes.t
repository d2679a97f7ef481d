#!/usr/bin/env python3
# Write calls change the org the way the reads then report, and refuse
# what Atlassian refuses.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sim"))
from testlib.simproc import Sim  # noqa: E402
from testlib.tap import TAP  # noqa: E402


def code(r):
    j = r.json or {}
    return j["errors"][0]["code"] if j.get("errors") else j.get("key", j.get("code"))


def main(t):
    sim = Sim(users=60, sites=2, groups=12)
    o = sim.org
    truth = sim.truth()
    base = "/admin/v2/orgs/%s/directories/-" % o
    users = truth["users"]
    pick = lambda **kw: next(u for u in users if all(u[k] == v for k, v in kw.items()))
    alice = pick(accountType="atlassian", claimStatus="managed", status="active")
    unmanaged = pick(accountType="atlassian", claimStatus="unmanaged", status="active")
    closed = pick(accountStatus="closed")
    doomed = pick(status="for_deletion")
    app = pick(accountType="app")
    me = lambda a: sim.admin("GET", "org/users/" + a)

    # suspend / restore
    r = sim.request("POST", "%s/users/%s/suspend" % (base, alice["accountId"]))
    t.is_((r.status, r.body), (204, b""), "suspend -> 204, no body")
    u = me(alice["accountId"])
    t.is_((u["membershipStatus"], u["status"], u["accountStatus"]),
          ("suspended", "suspended", "active"), "suspended: membership suspended, account active")
    t.is_(u["groups"], alice["groups"], "suspension keeps group memberships")
    t.is_(sim.request("POST", "%s/users/%s/suspend" % (base, alice["accountId"])).status, 204,
          "suspend is idempotent")
    sim.request("POST", "%s/users/%s/restore" % (base, alice["accountId"]))
    t.is_(me(alice["accountId"])["status"], "active", "restore -> active")
    r = sim.request("POST", "%s/users/%s/suspend" % (base, app["accountId"]))
    t.is_((r.status, code(r)), (404, "ADMIN-404-8"), "suspend an app account (not in v2) -> 404")
    r = sim.request("POST", "/admin/v2/orgs/elsewhere/directories/-/users/%s/suspend"
                    % alice["accountId"])
    t.is_((r.status, code(r)), (404, "ADMIN-404-2"), "suspend in another org -> ADMIN-404-2")

    # group memberships
    groups = truth["groups"]
    free = next(g for g in groups if not g["externalSynced"] and alice["accountId"] not in
                g["members"] and not any(set(a["roles"]) & {"atlassian/user", "atlassian/admin"}
                                         for a in g["roleAssignments"]))
    mp = "%s/groups/%s/memberships" % (base, free["id"])
    r = sim.request("POST", mp, {"accountId": alice["accountId"]})
    t.is_(r.status, 204, "add to group -> 204")
    t.ok(free["id"] in me(alice["accountId"])["groups"], "membership is in the truth")
    r = sim.request("POST", mp, {"accountId": alice["accountId"]})
    t.is_((r.status, code(r)), (409, "ADMIN-409-28"), "add twice -> 409")
    for body, desc in (({}, "no accountId"), ({"accountId": 5}, "accountId not a string"),
                       (b"[1]", "not an object"), (b"", "no body")):
        r = sim.request("POST", mp, body)
        t.is_((r.status, code(r)), (400, "ADMIN-400-24"), "add with %s -> 400" % desc)
    r = sim.request("POST", mp, {"accountId": "nobody"})
    t.is_((r.status, code(r)), (404, "ADMIN-404-8"), "add unknown user -> 404")
    r = sim.request("POST", "%s/groups/nogroup/memberships" % base, {"accountId": "x"})
    t.is_((r.status, code(r)), (404, "ADMIN-404-10"), "add to unknown group -> 404")
    synced = next((g for g in groups if g["externalSynced"]), None)
    if synced:
        r = sim.request("POST", "%s/groups/%s/memberships" % (base, synced["id"]),
                        {"accountId": alice["accountId"]})
        t.is_((r.status, code(r)), (403, "ADMIN-403-5"), "IdP-synced group -> 403")
    else:
        t.skip("IdP-synced group -> 403", "this seed has no synced group")
    r = sim.request("DELETE", "%s/%s" % (mp, alice["accountId"]))
    t.is_(r.status, 204, "remove from group -> 204")
    t.ok(free["id"] not in me(alice["accountId"])["groups"], "membership removed in the truth")
    r = sim.request("POST", "/admin/v2/orgs/%s/directories/%s/groups/%s/memberships"
                    % (o, free["id"], free["id"]), {"accountId": alice["accountId"]})
    t.is_(r.status, 404, "a group id is not a directory id")

    # group role assignments
    prod = truth["sites"][0]["products"]
    jira = next(p for p in prod if p["key"] == "jira-software")
    conf = next(p for p in prod if p["key"] == "confluence")
    rp = "%s/groups/%s/role-assignments/" % (base, free["id"])
    r = sim.request("POST", rp + "assign", {"resourceId": conf["id"], "roleId": "atlassian/guest"})
    t.is_((r.status, r.body), (200, b""), "assign guest on Confluence -> 200 (as documented)")
    g = sim.admin("GET", "org/groups/" + free["id"])
    t.ok(any(a["resourceId"] == conf["id"] and "atlassian/guest" in a["roles"]
             for a in g["roleAssignments"]), "assignment is in the truth")
    member = g["members"][0] if g["members"] else None
    if member:
        roles = me(member)["roles"]
        t.ok(any(x["resourceId"] == conf["id"] and x["role"] == "atlassian/guest"
                 and "group_direct" in x["methods"] for x in roles),
             "members inherit the role (group_direct)")
    r = sim.request("POST", rp + "assign", {"resourceId": jira["id"], "roleId": "atlassian/guest"})
    t.is_((r.status, code(r)), (400, "ADMIN-400-4"), "guest on Jira -> 400")
    r = sim.request("POST", rp + "assign", {"resourceId": jira["id"], "roleId": "atlassian/org-admin"})
    t.is_((r.status, code(r)), (400, "ADMIN-400-24"), "org-admin is not a group product role")
    r = sim.request("POST", rp + "assign", {"resourceId": jira["id"]})
    t.is_(r.status, 400, "assign without roleId -> 400")
    r = sim.request("POST", rp + "revoke", {"resourceId": conf["id"], "roleId": "atlassian/guest"})
    t.is_(r.status, 204, "revoke -> 204")
    g = sim.admin("GET", "org/groups/" + free["id"])
    t.ok(not any(a["resourceId"] == conf["id"] for a in g["roleAssignments"]), "revoked")

    # seat capacity: a product with capacity 1
    site = sim.admin("POST", "sites", {"products": ["confluence"], "capacity": 1,
                                       "groups": False})
    tiny = site["products"][0]["id"]
    g1 = sim.admin("POST", "groups", {"name": "tiny-users", "members": [alice["accountId"]]})
    r = sim.request("POST", "%s/groups/%s/role-assignments/assign" % (base, g1["id"]),
                    {"resourceId": tiny, "roleId": "atlassian/user"})
    t.is_(r.status, 200, "one seat: granting it to a one-member group works")
    bob = next(u for u in users if u["status"] == "active" and u["accountType"] == "atlassian"
               and u["accountId"] != alice["accountId"])
    r = sim.request("POST", "%s/groups/%s/memberships" % (base, g1["id"]),
                    {"accountId": bob["accountId"]})
    t.is_((r.status, code(r)), (409, "ADMIN-409-3"), "a second member would exceed it -> 409")

    # org-level role (v1)
    op = "/admin/v1/orgs/%s/users/%s/role-assignments/" % (o, alice["accountId"])
    r = sim.request("POST", op + "assign", {"role": "atlassian/org-admin"})
    t.is_(r.status, 204, "org-admin assign -> 204")
    t.ok("atlassian/org-admin" in me(alice["accountId"])["platformRoles"], "org-admin granted")
    r = sim.request("POST", search_path(o), {"accountIds": [alice["accountId"]],
                                             "expand": ["platformRoles"]})
    t.ok("atlassian/org-admin" in r.json["data"][0]["platformRoles"], "platformRoles shows it")
    sim.request("POST", op + "revoke", {"role": "atlassian/org-admin"})
    t.ok("atlassian/org-admin" not in me(alice["accountId"])["platformRoles"], "org-admin revoked")
    r = sim.request("POST", op + "assign", {"role": "atlassian/admin"})
    t.is_((r.status, code(r)), (400, "ADMIN-UAM-400-1"), "other roles -> 400 ADMIN-UAM-400-1")
    r = sim.request("POST", op + "assign", {})
    t.is_(r.status, 400, "missing role -> 400")

    # user management lifecycle
    up = "/users/%s/manage/lifecycle/"
    r = sim.request("POST", up % alice["accountId"] + "disable", {"message": "Au revoir"})
    t.is_((r.status, r.body), (204, b""), "disable managed -> 204")
    u = me(alice["accountId"])
    t.is_((u["accountStatus"], u["status"]), ("inactive", "deactivated"), "deactivated")
    t.ok(u["deactivatedOn"], "deactivatedOn set")
    r = sim.request("POST", up % alice["accountId"] + "enable")
    t.is_(r.status, 204, "enable -> 204")
    t.is_(me(alice["accountId"])["status"], "active", "active again")
    r = sim.request("POST", up % unmanaged["accountId"] + "disable", {})
    t.is_((r.status, r.json), (403, {"key": "forbidden.targetUnverified"}),
          "disable unmanaged -> 403 forbidden.targetUnverified")
    r = sim.request("POST", up % "nobody" + "disable", {})
    t.is_((r.status, r.json), (404, {"key": "accountNotFound"}), "unknown -> 404 accountNotFound")
    r = sim.request("POST", up % closed["accountId"] + "enable")
    t.ok(r.status == 409 and r.json["key"] == "conflict.lifecycleErrors"
         and r.json["context"]["accountId"] == closed["accountId"], "closed account -> 409", r)
    r = sim.request("POST", up % doomed["accountId"] + "enable")
    t.is_((r.status, code(r)), (409, "conflict.lifecycleErrors"),
          "pending deletion -> 409 on enable")
    for body, desc in ((b"", "no body"), (b"nope", "not JSON"), (b"[]", "not an object")):
        r = sim.request("POST", up % alice["accountId"] + "disable", body)
        t.is_((r.status, r.json), (400, {"key": "bodyParseFailure"}), "disable %s -> 400" % desc)
    r = sim.request("POST", up % alice["accountId"] + "disable", {"message": 3})
    t.is_((r.status, code(r)), (400, "fieldConstraintsViolated"), "message not a string -> 400")
    r = sim.request("POST", "/users/%s/manage/lifecycle/explode" % alice["accountId"])
    t.is_((r.status, r.json), (404, {"key": "notFound"}), "unknown user management path")
    sim.stop()


def search_path(o):
    return "/admin/v2/orgs/%s/directories/-/users/search" % o


TAP().run(main)
