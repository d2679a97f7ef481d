#!/usr/bin/env python3
# Search filters against the ground truth from /__sim/org, and the mix of
# data the generator must produce.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sim"))
from testlib.simproc import Sim  # noqa: E402
from testlib.tap import TAP  # noqa: E402


def main(t):
    sim = Sim(users=300, sites=3, groups=16, directories=2)
    o = sim.org
    truth = sim.truth()
    users = truth["users"]
    v2 = [u for u in users if "v2" in u["apis"]]

    def ids(body, directory="-"):
        return [u["accountId"] for u in sim.users_all(dict(body, limit=100), directory)[0]]

    def want(pred, pool=v2):
        return [u["accountId"] for u in pool if pred(u)]

    def check(body, pred, desc, directory="-"):
        got, exp = ids(body, directory), want(pred)
        t.ok(got == exp and (exp or "empty" in desc), "filter %s (%d users)" % (desc, len(exp)),
             {"got": got[:5], "want": exp[:5], "lens": [len(got), len(exp)]})

    # --- the data mix the module must cope with
    names = {u["name"] for u in users}
    for n in ("Zoë Müller", "Łukasz Nowak", "李雷"):
        t.ok(n in names, "non-ASCII name %s present" % n)
    t.ok(any(u["email"] is None for u in v2), "some users have no email")
    t.ok(any(not u["activity"] for u in v2 if u["status"] == "active"),
         "some active users never logged in")
    for st in ("active", "suspended", "deactivated", "not_invited", "for_deletion"):
        t.ok(any(u["status"] == st for u in v2), "status %s present" % st)
    for cs in ("managed", "unmanaged"):
        t.ok(any(u["claimStatus"] == cs for u in v2), "claimStatus %s present" % cs)
    t.ok(any(u["accountStatus"] == "closed" for u in users), "closed accounts present")
    for at in ("app", "customer"):
        pool = [u for u in users if u["accountType"] == at]
        t.ok(pool and all(u["apis"] == ["v1"] for u in pool),
             "%s accounts exist and are v1-only (v2 AccountType is atlassian only)" % at)
    t.ok(all(u["apis"] == ["v2", "v1"] for u in users
             if u["accountType"] == "atlassian" and u["claimStatus"] == "managed")
         and all(u["apis"] == ["v2"] for u in users
                 if u["accountType"] == "atlassian" and u["claimStatus"] == "unmanaged"),
         "v1 /users lists managed accounts, v2 lists atlassian accounts")
    t.ok(any("atlassian/org-admin" in u["platformRoles"] for u in v2), "org admins present")
    t.ok(any("atlassian/site-admin" in u["platformRoles"] for u in v2), "site admins present")
    roles = {r["role"] for u in users for r in u["roles"]}
    for role in ("atlassian/user", "atlassian/admin", "atlassian/guest", "atlassian/customer"):
        t.ok(role in roles, "role %s is held by someone" % role)
    keys = {p["key"] for s in truth["sites"] for p in s["products"]}
    t.ok({"jira-software", "confluence"} <= keys, "sites carry Jira Software and Confluence")
    t.ok(all(s["hostUrl"] == "https://site-%d.atlassian.net" % (i + 1)
             for i, s in enumerate(truth["sites"])), "hostUrl https://site-N.atlassian.net")
    t.ok(all(p["id"] == "ari:cloud:%s::site/%s" % (p["key"], s["cloudId"])
             for s in truth["sites"] for p in s["products"]), "product ids are ARIs")
    caps = [p["capacity"] for s in truth["sites"] for p in s["products"]]
    t.ok(all(c is None or (isinstance(c, int) and c > 0) for c in caps), "capacity int or null")
    stamps = sorted(a["lastActiveTimestamp"] for u in users for a in u["activity"])
    t.ok(stamps[0] < "2024-12-01" and stamps[-1] >= "2026-07", "activity spread over two years",
         (stamps[0], stamps[-1]))
    t.ok(any(g["roleAssignments"] for g in truth["groups"]) and
         all(any(a["resourceId"] == p["id"] and "atlassian/user" in a["roles"]
                 for g in truth["groups"] for a in g["roleAssignments"])
             for p in truth["sites"][0]["products"]),
         "groups grant product access on the first site")

    # --- users/search filters
    check({"accountStatus": ["inactive"]}, lambda u: u["accountStatus"] == "inactive",
          "accountStatus inactive")
    check({"accountStatus": ["active", "closed"]},
          lambda u: u["accountStatus"] in ("active", "closed"), "accountStatus active+closed")
    check({"claimStatus": "unmanaged"}, lambda u: u["claimStatus"] == "unmanaged", "claimStatus")
    check({"membershipStatus": ["suspended"]}, lambda u: u["membershipStatus"] == "suspended",
          "membershipStatus suspended")
    check({"status": ["not_invited", "for_deletion"]},
          lambda u: u["status"] in ("not_invited", "for_deletion"), "status list")
    check({"mfaEnabled": True}, lambda u: u["mfaEnabled"], "mfaEnabled")
    dom = truth["org"]["domains"][1]
    check({"emailDomains": ["@" + dom.upper()]},
          lambda u: u["email"] is not None and u["email"].endswith("@" + dom), "emailDomains")
    some = [u["email"] for u in v2 if u["email"]][:3]
    check({"emails": [e.upper() for e in some]}, lambda u: u["email"] in some, "emails")
    check({"searchTerm": "ZOË"}, lambda u: "zoë" in u["name"].casefold()
          or "zoë" in (u["nickname"] or "").casefold()
          or "zoë" in (u["email"] or "").casefold(), "searchTerm non-ASCII, any case")
    acc = [u["accountId"] for u in v2[5:15]]
    check({"accountIds": acc}, lambda u: u["accountId"] in acc, "accountIds")
    app = next(u for u in users if u["accountType"] == "app")
    check({"accountIds": [app["accountId"]]}, lambda u: False, "accountIds of an app: empty")
    g1, g2 = truth["groups"][0], truth["groups"][-1]
    check({"groupIds": [g1["id"], g2["ari"]]},
          lambda u: g1["id"] in u["groups"] or g2["id"] in u["groups"], "groupIds (id and ARI)")
    d1 = truth["directories"][1]["id"]
    check({"directoryIds": [d1]}, lambda u: u["directoryId"] == d1, "directoryIds")
    check({}, lambda u: u["directoryId"] == d1, "directory in the path", directory=d1)
    prod = truth["sites"][1]["products"][0]["id"]
    billable = ("atlassian/user", "atlassian/admin")
    check({"resourceIds": [prod], "roleIds": list(billable)},
          lambda u: any(r["resourceId"] == prod and r["role"] in billable for r in u["roles"]),
          "billable users of one product (resourceIds+roleIds)")
    check({"roleIds": ["atlassian/guest"]},
          lambda u: any(r["role"] == "atlassian/guest" for r in u["roles"]), "roleIds alone")
    check({"resourceIds": [prod]}, lambda u: any(r["resourceId"] == prod for r in u["roles"]),
          "resourceIds alone")
    check({"resourceIds": [prod], "status": ["active"], "claimStatus": "managed"},
          lambda u: u["status"] == "active" and u["claimStatus"] == "managed"
          and any(r["resourceId"] == prod for r in u["roles"]), "filters combine (AND)")
    check({"resourceIds": ["ari:cloud:confluence::site/none"]}, lambda u: False,
          "unknown resource: empty")

    nick = lambda u: ((u["nickname"] or "").casefold(), users.index(u))
    asc = [u["accountId"] for u in sorted(v2, key=nick)]
    got = ids({"sortBy": [{"field": "nick_name", "direction": "asc"}]})
    t.is_(got, asc, "sortBy nick_name asc")
    got = ids({"sortBy": [{"field": "nick_name", "direction": "desc"}]})
    t.is_(got, asc[::-1], "sortBy nick_name desc")
    r = sim.request("POST", "/admin/v2/orgs/%s/directories/-/users/search" % o,
                    {"sortBy": [{"field": "email", "direction": "asc"}]})
    t.is_(r.status, 400, "sortBy an unsupported field -> 400")

    # expanded fields agree with the truth
    full = {u["accountId"]: u for u in sim.users_all(
        {"limit": 100, "expand": ["productAccess", "groups", "platformRoles",
                                  "counts.resources"]})[0]}
    bad = []
    for u in v2:
        f = full[u["accountId"]]
        if ([g["id"] for g in f["groups"]] != [next(x["ari"] for x in truth["groups"]
                                                    if x["id"] == gid) for gid in u["groups"]]
                or [(a["id"], a["key"], a["lastActiveTimestamp"]) for a in f["productAccess"]]
                != [(a["resourceId"], a["key"], a["lastActiveTimestamp"]) for a in u["activity"]]
                or f["platformRoles"] != u["platformRoles"]
                or f.get("email") != u["email"] or f["status"] != u["status"]
                or f["counts"]["resources"] != len({r["resourceId"] for r in u["roles"]})):
            bad.append(u["accountId"])
    t.ok(not bad, "expanded users agree with the truth", bad[:3])
    t.ok(all("email" not in full[u["accountId"]] for u in v2 if u["email"] is None),
         "hidden emails are absent, not null")

    # --- groups/search filters
    gsearch = "/admin/v2/orgs/%s/directories/-/groups/search" % o

    def gids(body):
        out, body = [], dict(body, limit=100)
        while True:
            r = sim.request("POST", gsearch, body)
            out += [g["id"] for g in r.json["data"]]
            if not r.json["links"].get("next"):
                return out
            body = {"cursor": r.json["links"]["next"]}

    def gcheck(body, pred, desc):
        exp = [g["id"] for g in truth["groups"] if pred(g)]
        t.is_(gids(body), exp, "groups filter %s (%d)" % (desc, len(exp)))

    gcheck({"searchTerm": "USERS"}, lambda g: "users" in g["name"].lower(), "searchTerm")
    gcheck({"groupNames": ["site-admins", "engineering"]},
           lambda g: g["name"] in ("site-admins", "engineering"), "groupNames")
    gcheck({"groupIds": [g1["ari"]]}, lambda g: g is g1, "groupIds by ARI")
    u0 = v2[0]
    gcheck({"accountIds": [u0["accountId"]]}, lambda g: g["id"] in u0["groups"], "accountIds")
    gcheck({"resourceIds": [prod]},
           lambda g: any(a["resourceId"] == prod for a in g["roleAssignments"]), "resourceIds")
    gcheck({"roleIds": ["atlassian/site-admin"]},
           lambda g: any("atlassian/site-admin" in a["roles"] for a in g["roleAssignments"]),
           "roleIds")
    gcheck({"resourceOwners": ["confluence"]},
           lambda g: any(a["resourceOwner"] == "confluence" for a in g["roleAssignments"]),
           "resourceOwners")
    names_sorted = [g["id"] for g in sorted(truth["groups"], key=lambda g: g["name"].casefold(),
                                            reverse=True)]
    t.is_(gids({"sortBy": [{"field": "name", "direction": "desc"}]}), names_sorted,
          "groups sortBy name desc")
    r = sim.request("POST", gsearch, {"expand": ["counts.users", "counts.resources"],
                                      "limit": 100})
    t.ok(all(g["counts"] == {"users": len(tg["members"]),
                             "resources": len(tg["roleAssignments"])}
             for g, tg in zip(r.json["data"], truth["groups"])), "group counts agree")

    # --- workspaces query language
    ws = "/admin/v2/orgs/%s/workspaces" % o
    prods = [p for s in truth["sites"] for p in s["products"]]

    def wids(body):
        return [w["id"] for w in sim.request("POST", ws, dict(body, limit=1000)).json["data"]]
    t.is_(wids({"query": {"field": {"name": "attributes.type", "values": ["confluence"]}}}),
          [p["id"] for p in prods if p["key"] == "confluence"], "workspaces field filter")
    t.is_(wids({"query": {"nor": [{"field": {"name": "attributes.type",
                                             "values": ["confluence"]}}]}}),
          [p["id"] for p in prods if p["key"] != "confluence"], "workspaces nor")
    t.is_(wids({"query": {"searchWorkspaces": "site-2"}}),
          [p["id"] for p in truth["sites"][1]["products"]], "workspaces searchWorkspaces")
    t.is_(wids({"query": {"features": ["x"]}}), [], "workspaces features filter: none have any")
    t.is_(wids({"query": {"and": []}}), [p["id"] for p in prods], "empty and is a no-op")
    t.is_(sim.request("POST", ws, {"query": {"field": {"name": "attributes.color",
                                                       "values": ["x"]}}}).status, 400,
          "workspaces unknown field -> 400")

    # --- role-assignment GET filters
    sa = next(g for g in truth["groups"] if g["name"] == "site-admins")
    one = sa["roleAssignments"][1]["resourceId"]
    path = "/admin/v2/orgs/%s/directories/-/groups/%s/role-assignments" % (o, sa["id"])
    r = sim.request("GET", path + "?resourceIds=" + one)
    t.is_([a["resourceId"] for a in r.json["data"]], [one], "group role-assignments resourceIds")
    r = sim.request("GET", path + "?roleIds=atlassian/user")
    t.is_(r.json["data"], [], "group role-assignments roleIds")
    rich = max(v2, key=lambda u: len(u["roles"]))
    path = "/admin/v2/orgs/%s/directories/-/users/%s/role-assignments" % (o, rich["accountId"])
    r = sim.request("GET", path + "?resourceOwners=confluence&limit=100")
    t.is_([a["resourceId"] for a in r.json["data"]],
          list(dict.fromkeys(x["resourceId"] for x in rich["roles"]
                             if x["resourceId"].startswith("ari:cloud:confluence:"))),
          "user role-assignments resourceOwners")
    r = sim.request("GET", path + "?limit=100")
    methods = {(a["resourceId"], ra["role"]): ra["roleAssignmentMethods"]
               for a in r.json["data"] for ra in a["roleAssignments"]}
    t.is_(methods, {(x["resourceId"], x["role"]): x["methods"] for x in rich["roles"]},
          "user role-assignments: roles and assignment methods agree")
    r = sim.request("POST", "/admin/v2/orgs/%s/directories/unknown-dir/users/search" % o, {})
    t.is_((r.status, r.json["errors"][0]["code"]), (404, "ADMIN-404-1"), "unknown directory -> 404")
    sim.stop()


TAP().run(main)
