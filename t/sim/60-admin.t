#!/usr/bin/env python3
# The /__sim/ control API: config, stats, truth, and changing the org while
# it runs; every change must show through the Atlassian endpoints.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sim"))
from testlib.simproc import Sim  # noqa: E402
from testlib.tap import TAP  # noqa: E402


def main(t):
    sim = Sim(users=30, sites=2, groups=10)
    o = sim.org
    search = "/admin/v2/orgs/%s/directories/-/users/search" % o

    def one(account_id, expand=("groups", "productAccess", "platformRoles")):
        r = sim.request("POST", search, {"accountIds": [account_id], "expand": list(expand)})
        return r.json["data"][0] if r.json and r.json["data"] else None

    t.is_(sim.admin("GET", "health"), {"ok": True, "org": o}, "GET /__sim/health")
    t.is_(sim.request("GET", "/__sim/nothing", auth=False).status, 404, "unknown admin call -> 404")
    t.is_(sim.request("POST", "/__sim/users", b"{", auth=False).status, 400, "bad JSON -> 400")

    # config
    cfg = sim.admin("GET", "config")
    t.is_((cfg["profile"], cfg["latencyMs"], cfg["rateLimit"], cfg["activityRateLimit"]),
          ("fast", 0, 0, 200), "GET /__sim/config shows the fast profile defaults")
    cfg = sim.admin("POST", "config", {"latencyMs": 5, "retryAfter": True})
    t.is_((cfg["latencyMs"], cfg["retryAfter"]), (5, True), "POST /__sim/config changes settings")
    for bad in ({"latencyMs": -1}, {"resetFormat": "hours"}, {"nope": 1}, {"apiKey": ""}):
        t.is_(getattr(sim.admin("POST", "config", bad), "status", None), 400,
              "config %s -> 400" % list(bad))
    sim.admin("POST", "config", {"latencyMs": 0})

    # stats
    sim.admin("POST", "stats/reset")
    sim.request("POST", search, {})
    sim.request("POST", search, {})
    sim.request("GET", "/admin/v2/orgs/%s/directories" % o)
    sim.request("GET", "/admin/v2/orgs/%s/bogus" % o)
    st = sim.admin("GET", "stats")
    key = "POST /admin/v2/orgs/{orgId}/directories/{directoryId}/users/search"
    t.is_(st["endpoints"].get(key), {"count": 2, "status": {"200": 2}},
          "stats per endpoint template with status counts")
    t.is_(st["endpoints"].get("unmatched", {}).get("count"), 1, "unmatched paths are counted")
    t.is_((st["total"], st["inFlight"]), (4, 0), "total and in-flight")
    t.ok(st["peakInFlight"] >= 1 and "sent429" in st and "sent5xx" in st and "uptimeSeconds" in st,
         "peak in-flight, 429s, 5xx and uptime are reported")
    t.is_(sim.admin("POST", "stats/reset")["total"], 0, "POST /__sim/stats/reset")

    truth = sim.truth()
    t.ok(set(truth) >= {"org", "directories", "sites", "groups", "users", "counts"},
         "GET /__sim/org has every section")
    slim = sim.admin("GET", "org?users=false")
    t.ok("users" not in slim and slim["counts"]["users"] == 30, "?users=false skips the users")
    page = sim.admin("GET", "org?offset=5&limit=3")
    t.is_([u["accountId"] for u in page["users"]],
          [u["accountId"] for u in truth["users"][5:8]], "?offset=&limit= pages the users")
    first = truth["users"][0]
    t.is_(sim.admin("GET", "org/users/" + first["accountId"]), first, "GET /__sim/org/users/{id}")
    g0 = truth["groups"][0]
    t.is_(sim.admin("GET", "org/groups/" + g0["name"]), g0, "GET /__sim/org/groups/{name}")

    # add generated users
    made = sim.admin("POST", "users", {"count": 3})["created"]
    t.is_(len(made), 3, "POST /__sim/users {count: 3}")
    t.is_(sim.admin("GET", "org?users=false")["counts"]["users"], 33, "truth counts them")

    # add an explicit user with groups, roles, activity
    prod = truth["sites"][0]["products"][0]
    grp = next(g for g in truth["groups"] if not g["roleAssignments"]) \
        if any(not g["roleAssignments"] for g in truth["groups"]) else truth["groups"][-1]
    spec = {"name": "Zoë Ñandú", "email": "zoe.nandu@example.test", "claimStatus": "managed",
            "groups": [grp["id"]], "roles": [{"resourceId": prod["id"], "role": "atlassian/user"}],
            "activity": {prod["id"]: "2026-07-01T12:00:00Z"}, "jobTitle": "Ingénieure"}
    new = sim.admin("POST", "users", {"users": [spec]})["created"][0]
    u = one(new)
    t.ok(u and u["name"] == "Zoë Ñandú" and u["email"] == spec["email"]
         and u["jobTitle"] == "Ingénieure", "explicit user is served with its fields", u)
    t.is_([g["name"] for g in u["groups"]], [grp["name"]], "explicit user's groups")
    t.is_(u["productAccess"], [{"id": prod["id"], "key": prod["key"],
                                "lastActiveTimestamp": "2026-07-01T12:00:00.000Z"}],
          "explicit user's activity")
    lad = sim.request("GET", "/admin/v1/orgs/%s/directory/users/%s/last-active-dates" % (o, new))
    t.is_(lad.json["data"]["product_access"][0]["last_active"], "2026-07-01",
          "activity shows in last-active-dates")
    r = sim.request("POST", search, {"resourceIds": [prod["id"]], "roleIds": ["atlassian/user"],
                                     "accountIds": [new]})
    t.is_(len(r.json["data"]), 1, "explicit direct role shows in the resourceIds+roleIds filter")
    bad = sim.admin("POST", "users", {"users": [{"claimStatus": "maybe"}]})
    t.is_(getattr(bad, "status", None), 400, "bad user field value -> 400")
    bad = sim.admin("POST", "users", {"users": [{"groups": ["no-such-group"]}]})
    t.is_(getattr(bad, "status", None), 404, "unknown group -> 404")
    before = sim.admin("GET", "org?users=false")["counts"]["users"]
    t.is_(before, 34, "a failing add changes nothing")

    # lifecycle actions
    sim.admin("POST", "users/%s/suspend" % new)
    t.is_(one(new)["status"], "suspended", "admin suspend")
    sim.admin("POST", "users/%s/restore" % new)
    sim.admin("POST", "users/%s/deactivate" % new)
    u = one(new)
    t.is_((u["status"], u["accountStatus"]), ("deactivated", "inactive"), "admin deactivate")
    got = sim.request("GET", "/admin/v2/orgs/%s/directories/-/users/%s" % (o, new)).json["data"]
    t.ok("deactivatedOn" in got, "deactivatedOn in the user details")
    sim.admin("POST", "users/%s/activate" % new)
    t.is_(one(new)["status"], "active", "admin activate")
    t.is_(getattr(sim.admin("POST", "users/%s/explode" % new), "status", None), 404,
          "unknown action -> 404")

    # patch
    sim.admin("PATCH", "users/" + new, {"email": None, "mfaEnabled": True,
                                        "membershipStatus": "no_membership"})
    u = one(new)
    t.ok("email" not in u and u["mfaEnabled"] and u["status"] == "not_invited",
         "PATCH /__sim/users/{id}: email removed, mfa, not invited", u)
    sim.admin("PATCH", "users/" + new, {"activity": {prod["id"]: None}})
    t.is_(one(new)["productAccess"], [], "PATCH activity null removes it")
    t.is_(getattr(sim.admin("PATCH", "users/" + new, {"accountId": "x"}), "status", None), 400,
          "accountId is read-only")

    # group membership through the admin API
    target = truth["users"][2]["accountId"]
    grp2 = truth["groups"][1]
    had = grp2["id"] in truth["users"][2]["groups"]
    change = {"remove" if had else "add": [target]}
    sim.admin("POST", "groups/%s/members" % grp2["id"], change)
    r = sim.request("POST", search, {"groupIds": [grp2["id"]], "limit": 100})
    member = target in [x["accountId"] for x in r.json["data"]]
    t.is_(member, not had, "POST /__sim/groups/{id}/members changes the groupIds filter")

    g = sim.admin("POST", "groups", {"name": "Groupe Été", "description": "créé par le test",
                                     "roles": [{"resourceId": prod["id"],
                                                "role": "atlassian/admin"}],
                                     "members": [target]})
    r = sim.request("POST", "/admin/v2/orgs/%s/directories/-/groups/search" % o,
                    {"searchTerm": "été", "expand": ["counts.users"]})
    t.is_([(x["name"], x["counts"]["users"]) for x in r.json["data"]], [("Groupe Été", 1)],
          "POST /__sim/groups creates a searchable group")
    r = sim.request("GET", "/admin/v2/orgs/%s/directories/-/groups/%s/role-assignments"
                    % (o, g["id"]))
    t.is_([(a["resourceId"], a["roles"]) for a in r.json["data"]],
          [(prod["id"], ["atlassian/admin"])], "and its role assignment")

    # connect a new site
    site = sim.admin("POST", "sites", {"products": ["jira-software", "jira-servicedesk"],
                                       "capacity": None})
    t.is_(site["hostUrl"], "https://site-3.atlassian.net", "POST /__sim/sites: site-3")
    r = sim.request("POST", "/admin/v2/orgs/%s/workspaces" % o, {"limit": 100})
    ws = {w["id"]: w for w in r.json["data"]}
    new_ids = [p["id"] for p in site["products"]]
    t.ok(all(i in ws for i in new_ids), "the new site's products are workspaces")
    t.ok(all(ws[i]["attributes"]["capacity"] is None and
             ws[i]["attributes"]["hostUrl"] == site["hostUrl"] for i in new_ids),
         "with hostUrl and null capacity")
    names = [g["name"] for g in sim.admin("GET", "org?users=false")["groups"]]
    t.ok("jira-software-users-site-3" in names, "access groups are created for the new site")
    t.is_(getattr(sim.admin("POST", "sites", {"products": ["bamboo"]}), "status", None), 400,
          "unknown product -> 400")

    # remove a user
    gone = truth["users"][3]["accountId"]
    sim.admin("DELETE", "users/" + gone)
    r = sim.request("GET", "/admin/v2/orgs/%s/directories/-/users/%s" % (o, gone))
    t.is_((r.status, r.json["errors"][0]["code"]), (404, "ADMIN-404-8"),
          "DELETE /__sim/users/{id}: gone from the API")
    t.ok(all(gone not in g["members"] for g in sim.truth()["groups"]), "and from every group")

    # reset to the start
    sim.admin("POST", "faults", {"pageCap": 2})
    sim.admin("POST", "reset")
    t.is_(sim.truth(), truth, "POST /__sim/reset restores the generated org")
    t.is_(sim.admin("GET", "faults")["pageCap"], None, "and clears faults")
    sim.stop()


TAP().run(main)
