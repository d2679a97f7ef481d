#!/usr/bin/env python3
# Every simulated endpoint and its important errors, checked against
# Atlassian's OpenAPI files in ../shared/atlassian-api (strictly: no
# undeclared fields).
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sim"))
from testlib.checks import schema_ok  # noqa: E402
from testlib.simproc import API_DIR, Sim, specs  # noqa: E402
from testlib.tap import TAP  # noqa: E402

V2 = "/admin/v2/orgs/{orgId}"
DIR = V2 + "/directories/{directoryId}"
V1 = "/admin/v1/orgs/{orgId}"


def body(t, sim, orgs, um):
    truth = sim.truth()
    users = truth["users"]
    v2 = [u for u in users if "v2" in u["apis"]]
    by = lambda **kw: next(u for u in users if all(u.get(k) == v for k, v in kw.items()))
    busy = max(v2, key=lambda u: len(u["activity"]))
    managed = by(claimStatus="managed", accountStatus="active", accountType="atlassian",
                 membershipStatus="active")
    unmanaged = by(claimStatus="unmanaged", accountType="atlassian")
    closed = by(accountStatus="closed")
    app = by(accountType="app")
    group = next(g for g in truth["groups"] if len(g["roleAssignments"]) > 1)
    plain_group = next(g for g in truth["groups"] if not g["externalSynced"]
                       and managed["accountId"] not in g["members"])
    product = truth["sites"][0]["products"][0]
    o = sim.org

    def chk(api, tmpl, method, path, status, desc, req_body=None, **kw):
        r = sim.request(method, path, req_body, **kw)
        schema_ok(t, api, tmpl, method, r, status, desc)
        return r

    # workspaces
    w = V2 + "/workspaces"
    p = "/admin/v2/orgs/%s/workspaces" % o
    r = chk(orgs, w, "POST", p, 200, "workspaces, no body")
    chk(orgs, w, "POST", p, 200, "workspaces with query and sort",
        {"limit": 2, "query": {"and": [{"field": {"name": "attributes.type",
                                                   "values": ["confluence", "jira-software"]}},
                                       {"searchWorkspaces": "site"}]},
         "sort": [{"field": "attributes.type", "order": "desc"}]})
    r = sim.request("POST", p, {"limit": 1})
    chk(orgs, w, "POST", p, 200, "workspaces by cursor", {"cursor": r.json["links"]["next"]})
    chk(orgs, w, "POST", p, 400, "workspaces cursor plus limit",
        {"cursor": r.json["links"]["next"], "limit": 5})
    chk(orgs, w, "POST", p, 400, "workspaces limit 1001", {"limit": 1001})
    chk(orgs, w, "POST", p, 400, "workspaces bad query", {"query": {"bogus": 1}})
    chk(orgs, w, "POST", p, 401, "workspaces without key", auth=False)
    chk(orgs, w, "POST", "/admin/v2/orgs/nope/workspaces", 404, "workspaces unknown org")

    # directories
    d = V2 + "/directories"
    p = "/admin/v2/orgs/%s/directories" % o
    r = chk(orgs, d, "GET", p, 200, "directories")
    dir_id = r.json["data"][0]["directoryId"]
    chk(orgs, d, "GET", p + "?limit=101", 400, "directories limit 101")
    chk(orgs, d, "GET", p + "?cursor=xyz", 400, "directories bad cursor")
    chk(orgs, d, "GET", p, 401, "directories wrong key", auth="Bearer wrong")

    # users search
    s = DIR + "/users/search"
    for directory in ("-", dir_id):
        p = "/admin/v2/orgs/%s/directories/%s/users/search" % (o, directory)
        r = chk(orgs, s, "POST", p, 200, "users/search expanded (%s)" % directory,
                {"limit": 100, "expand": ["productAccess", "groups", "platformRoles",
                                          "counts.resources"]})
    chk(orgs, s, "POST", p, 200, "users/search all filters",
        {"accountStatus": ["active"], "claimStatus": "managed", "membershipStatus": ["active"],
         "status": ["active"], "mfaEnabled": True, "emailDomains": ["example"],
         "resourceIds": [product["id"]], "roleIds": ["atlassian/user", "atlassian/admin"],
         "directoryIds": [dir_id], "sortBy": [{"field": "nick_name", "direction": "asc"}]})
    r = sim.request("POST", p, {"limit": 3})
    chk(orgs, s, "POST", p, 200, "users/search by cursor", {"cursor": r.json["links"]["next"]})
    chk(orgs, s, "POST", p, 400, "users/search limit 101", {"limit": 101})
    chk(orgs, s, "POST", p, 400, "users/search emails with searchTerm",
        {"emails": ["a@b.example"], "searchTerm": "a"})
    chk(orgs, s, "POST", p, 400, "users/search 11 accountIds", {"accountIds": ["x"] * 11})
    chk(orgs, s, "POST", p, 400, "users/search bad enum", {"status": ["gone"]})
    chk(orgs, s, "POST", p, 400, "users/search bad cursor", {"cursor": "bm9wZQ"})
    chk(orgs, s, "POST", p, 400, "users/search not JSON", b"{")
    chk(orgs, s, "POST", p, 401, "users/search without key", {}, auth=False)
    chk(orgs, s, "POST", p.replace(o, "other-org"), 404, "users/search unknown org", {})
    chk(orgs, s, "POST", "/admin/v2/orgs/%s/directories/nodir/users/search" % o, 404,
        "users/search unknown directory", {})

    # one user
    g1 = DIR + "/users/{userId}"
    up = "/admin/v2/orgs/%s/directories/-/users/%s"
    chk(orgs, g1, "GET", up % (o, managed["accountId"]), 200, "user details")
    chk(orgs, g1, "GET", up % (o, closed["accountId"]), 200, "user details, closed account")
    chk(orgs, g1, "GET", up % (o, "nobody"), 404, "user details unknown user")
    r = chk(orgs, g1, "GET", up % (o, app["accountId"]), 404, "user details of an app account")

    # groups
    gs = DIR + "/groups/search"
    p = "/admin/v2/orgs/%s/directories/-/groups/search" % o
    r = chk(orgs, gs, "POST", p, 200, "groups/search expanded",
            {"expand": ["counts.users", "counts.resources"], "limit": 100})
    chk(orgs, gs, "POST", p, 200, "groups/search filtered",
        {"searchTerm": "users", "roleIds": ["atlassian/user"], "sortBy": [
            {"field": "name", "direction": "desc"}]})
    chk(orgs, gs, "POST", p, 400, "groups/search limit 0", {"limit": 0})
    chk(orgs, gs, "POST", p, 400, "groups/search bad expand", {"expand": ["members"]})
    chk(orgs, gs, "POST", p, 400, "groups/search bad cursor", {"cursor": "AAAAAAAAAAAAAAAA"})

    gra = DIR + "/groups/{groupId}/role-assignments"
    p = "/admin/v2/orgs/%s/directories/-/groups/%s/role-assignments" % (o, group["id"])
    r = chk(orgs, gra, "GET", p, 200, "group role-assignments")
    r = sim.request("GET", p + "?limit=1")
    chk(orgs, gra, "GET", p + "?cursor=" + r.json["links"]["next"], 200,
        "group role-assignments by cursor")
    chk(orgs, gra, "GET", p + "?limit=abc", 400, "group role-assignments bad limit")
    chk(orgs, gra, "GET", p.replace(group["id"], "nogroup"), 404,
        "group role-assignments unknown group")

    ura = DIR + "/users/{accountId}/role-assignments"
    p = "/admin/v2/orgs/%s/directories/-/users/%s/role-assignments" % (o, managed["accountId"])
    chk(orgs, ura, "GET", p, 200, "user role-assignments")
    chk(orgs, ura, "GET", p + "?roleIds=atlassian/nope", 400, "user role-assignments bad role")
    chk(orgs, ura, "GET", p.replace(managed["accountId"], "nobody"), 404,
        "user role-assignments unknown user")

    # v1 last-active-dates
    lad = V1 + "/directory/users/{accountId}/last-active-dates"
    p = "/admin/v1/orgs/%s/directory/users/%s/last-active-dates" % (o, busy["accountId"])
    r = chk(orgs, lad, "GET", p, 200, "last-active-dates")
    t.ok(r.json and r.json["links"].get("next"), "last-active-dates has a second page")
    chk(orgs, lad, "GET", p + "?cursor=" + r.json["links"]["next"], 200,
        "last-active-dates second page")
    never = next(u for u in users if not u["activity"])
    chk(orgs, lad, "GET", p.replace(busy["accountId"], never["accountId"]), 200,
        "last-active-dates of a user who never logged in")
    chk(orgs, lad, "GET", p.replace(busy["accountId"], app["accountId"]), 200,
        "last-active-dates of an app account")
    chk(orgs, lad, "GET", p.replace(busy["accountId"], "nobody"), 404,
        "last-active-dates unknown user")
    chk(orgs, lad, "GET", p, 401, "last-active-dates without key", auth=False)
    chk(orgs, lad, "GET", p + "?cursor=zzzz", 400, "last-active-dates bad cursor")

    # v1 users
    vu = V1 + "/users"
    p = "/admin/v1/orgs/%s/users" % o
    r = chk(orgs, vu, "GET", p, 200, "v1 users")
    chk(orgs, vu, "GET", p + "?cursor=bad", 400, "v1 users bad cursor")
    chk(orgs, vu, "GET", "/admin/v1/orgs/nope/users", 404, "v1 users unknown org")
    chk(orgs, vu, "GET", p, 401, "v1 users without key", auth=False)

    # writes
    base = "/admin/v2/orgs/%s/directories/-" % o
    chk(orgs, DIR + "/users/{accountId}/suspend", "POST",
        "%s/users/%s/suspend" % (base, managed["accountId"]), 204, "suspend")
    chk(orgs, DIR + "/users/{accountId}/restore", "POST",
        "%s/users/%s/restore" % (base, managed["accountId"]), 204, "restore")
    chk(orgs, DIR + "/users/{accountId}/suspend", "POST",
        "%s/users/nobody/suspend" % base, 404, "suspend unknown user")
    mt = DIR + "/groups/{groupId}/memberships"
    mp = "%s/groups/%s/memberships" % (base, plain_group["id"])
    chk(orgs, mt, "POST", mp, 204, "membership add", {"accountId": managed["accountId"]})
    chk(orgs, mt, "POST", mp, 409, "membership add twice", {"accountId": managed["accountId"]})
    chk(orgs, mt, "POST", mp, 400, "membership add without accountId", {})
    chk(orgs, mt, "POST", mp.replace(plain_group["id"], "nogroup"), 404,
        "membership add unknown group", {"accountId": managed["accountId"]})
    chk(orgs, mt + "/{accountId}", "DELETE", "%s/%s" % (mp, managed["accountId"]), 204,
        "membership remove")
    rt = DIR + "/groups/{groupId}/role-assignments/"
    rp = "%s/groups/%s/role-assignments/" % (base, plain_group["id"])
    chk(orgs, rt + "assign", "POST", rp + "assign", 200, "group role assign",
        {"resourceId": product["id"], "roleId": "atlassian/admin"})
    chk(orgs, rt + "assign", "POST", rp + "assign", 400, "group role assign bad role",
        {"resourceId": product["id"], "roleId": "atlassian/god"})
    chk(orgs, rt + "assign", "POST", rp + "assign", 400, "group role assign unknown resource",
        {"resourceId": "ari:cloud:confluence::site/nope", "roleId": "atlassian/user"})
    chk(orgs, rt + "revoke", "POST", rp + "revoke", 204, "group role revoke",
        {"resourceId": product["id"], "roleId": "atlassian/admin"})
    ot = V1 + "/users/{userId}/role-assignments/"
    op = "/admin/v1/orgs/%s/users/%s/role-assignments/" % (o, managed["accountId"])
    chk(orgs, ot + "assign", "POST", op + "assign", 204, "org role assign",
        {"role": "atlassian/org-admin"})
    chk(orgs, ot + "assign", "POST", op + "assign", 400, "org role assign bad role",
        {"role": "atlassian/site-admin"})
    chk(orgs, ot + "revoke", "POST", op.replace(managed["accountId"], "nobody") + "revoke", 404,
        "org role revoke unknown user", {"role": "atlassian/org-admin"})
    chk(orgs, ot + "revoke", "POST", op + "revoke", 204, "org role revoke",
        {"role": "atlassian/org-admin"})

    # user management API
    dis, ena = "/users/{account_id}/manage/lifecycle/disable", "/users/{account_id}/manage/lifecycle/enable"
    up = "/users/%s/manage/lifecycle/"
    chk(um, dis, "POST", up % managed["accountId"] + "disable", 204, "disable",
        {"message": "Zoë left"})
    chk(um, ena, "POST", up % managed["accountId"] + "enable", 204, "enable")
    chk(um, dis, "POST", up % unmanaged["accountId"] + "disable", 403, "disable unmanaged", {})
    chk(um, dis, "POST", up % "nobody" + "disable", 404, "disable unknown", {})
    chk(um, dis, "POST", up % closed["accountId"] + "disable", 409, "disable closed", {})
    chk(um, dis, "POST", up % managed["accountId"] + "disable", 401, "disable without key", {},
        auth=False)
    chk(um, ena, "POST", up % managed["accountId"] + "enable", 401, "enable wrong key",
        auth="Bearer nope")

    # rate limits: 429 from the gateway
    sim.admin("POST", "config", {"rateLimit": 1, "activityRateLimit": 1})
    p = "/admin/v1/orgs/%s/directory/users/%s/last-active-dates" % (o, busy["accountId"])
    sim.request("GET", p)
    chk(orgs, lad, "GET", p, 429, "last-active-dates over the limit")
    sim.request("GET", "/admin/v1/orgs/%s/users" % o)
    chk(orgs, vu, "GET", "/admin/v1/orgs/%s/users" % o, 429, "v1 users over the limit")
    chk(orgs, s, "POST", "/admin/v2/orgs/%s/directories/-/users/search" % o, 429,
        "users/search over the limit", {})
    sim.admin("POST", "config", {"rateLimit": 0, "activityRateLimit": 0})
    sim.admin("POST", "faults", {"error5xx": {"statuses": [500]}})
    chk(orgs, s, "POST", "/admin/v2/orgs/%s/directories/-/users/search" % o, 500,
        "users/search injected 500", {})
    chk(orgs, vu, "GET", "/admin/v1/orgs/%s/users" % o, 500, "v1 users injected 500")
    chk(orgs, lad, "GET", p, 500, "last-active-dates injected 500")
    sim.admin("DELETE", "faults")


def main(t):
    api = specs()
    if api is None:
        t.skip("schema checks", "%s not found" % API_DIR)
        return
    with Sim(users=60, sites=3, groups=14, activity_page_size=2) as sim:
        body(t, sim, *api)


TAP().run(main)
