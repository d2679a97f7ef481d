#!/usr/bin/env python3
# Cursor chains: every listing ends (no links.next on the last page), pages
# respect limits and defaults, cursors are opaque and checked, chains stay
# correct while the org changes.
import os
import sys
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sim"))
from testlib.simproc import Sim  # noqa: E402
from testlib.tap import TAP  # noqa: E402


def walk(sim, method, path, body, follow):
    """Follows a cursor chain from one request; follow(cursor) -> the next
    request's (path, body).  -> (items, pages), or (None, response) of the
    first answer that is not 200."""
    pages, items = [], []
    for _ in range(1000):
        r = sim.request(method, path, body)
        if r.status != 200:
            return None, r
        pages.append(r.json)
        items += r.json["data"]
        nxt = r.json.get("links", {}).get("next")
        if not nxt:
            return items, pages
        path, body = follow(nxt)
    raise RuntimeError("chain does not end")


def walk_post(sim, path, body):
    return walk(sim, "POST", path, dict(body), lambda nxt: (path, {"cursor": nxt}))


def walk_get(sim, path):
    return walk(sim, "GET", path, None,
                lambda nxt: (path.split("?")[0] + "?cursor=" + nxt, None))


def chain_shape(t, pages, limit, desc):
    t.ok(all(len(p["data"]) <= limit for p in pages), "%s: no page above %d" % (desc, limit))
    t.ok(all(p["links"].get("next") for p in pages[:-1]), "%s: every page but the last links on"
         % desc)
    t.ok("next" not in pages[-1].get("links", {}), "%s: last page has no links.next" % desc)


def main(t):
    sim = Sim(users=130, sites=3, groups=12, directories=3, activity_page_size=2,
              v1_page_size=20)
    o = sim.org
    truth = sim.truth()
    v2_ids = [u["accountId"] for u in truth["users"] if "v2" in u["apis"]]
    search = "/admin/v2/orgs/%s/directories/-/users/search" % o

    # users: limit 7 and the default 50
    users, pages = walk_post(sim, search, {"limit": 7})
    ids = [u["accountId"] for u in users]
    t.is_(ids, v2_ids, "users chain (limit 7) returns every v2 user once, in order")
    chain_shape(t, pages, 7, "users limit 7")
    t.is_(len(pages), -(-len(v2_ids) // 7), "users chain has ceil(n/7) pages")
    r = sim.request("POST", search, {})
    t.is_(len(r.json["data"]), 50, "users default page size is 50")
    users, pages = walk_post(sim, search, {"limit": 100, "expand": ["groups"]})
    t.is_(len(users), len(v2_ids), "users chain at limit 100")
    t.ok(all("groups" in u for u in users), "expand survives the cursor")
    unmanaged = [u for u in truth["users"] if "v2" in u["apis"] and u["claimStatus"] == "unmanaged"]
    exact, pages = walk_post(sim, search, {"limit": len(unmanaged), "claimStatus": "unmanaged"})
    t.is_((len(pages), len(exact), "next" in pages[0]["links"]), (1, len(unmanaged), False),
          "a page that holds exactly everything has no next")
    for bad in (0, 101, -1, "10", 1.5):
        t.is_(sim.request("POST", search, {"limit": bad}).status, 400, "users limit %r -> 400" % bad)

    # cursor checks
    r = sim.request("POST", search, {"limit": 5})
    c = r.json["links"]["next"]
    t.ok(set(c) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
         "cursor is URL-safe base64")
    tampered = c[:10] + ("A" if c[10] != "A" else "B") + c[11:]
    for cur, desc in ((tampered, "tampered"), (c[:-3], "truncated"), ("!!!", "not base64"),
                      ("", "empty")):
        r = sim.request("POST", search, {"cursor": cur})
        code = r.json["errors"][0]["code"] if r.status == 400 and r.json else None
        t.ok(r.status == 400 and (code == "ADMIN-400-1" or (cur == "" and code)),
             "%s cursor -> 400 ADMIN-400-1" % desc, r)
    gr = sim.request("POST", "/admin/v2/orgs/%s/directories/-/groups/search" % o, {"limit": 1})
    r = sim.request("POST", search, {"cursor": gr.json["links"]["next"]})
    t.is_((r.status, r.json["errors"][0]["code"]), (400, "ADMIN-400-1"),
          "a groups cursor is refused by users/search")
    r = sim.request("POST", search, {"cursor": c, "limit": 5})
    t.is_(r.status, 200, "cursor with the same limit is accepted")
    r = sim.request("POST", search, {"cursor": c, "limit": 6})
    t.is_(r.status, 400, "cursor with a different limit is refused")
    other = Sim(users=20, seed=99)
    r = other.request("POST", search, {"cursor": c})
    t.is_(r.status, 400, "a cursor from a sim with another seed is refused")
    other.stop()
    d0 = truth["directories"][0]["id"]
    r = sim.request("POST", "/admin/v2/orgs/%s/directories/%s/users/search" % (o, d0),
                    {"cursor": c})
    t.is_(r.status, 400, "a '-' cursor is refused under a specific directory")

    # chains stay consistent while the org changes
    r1 = sim.request("POST", search, {"limit": 10})
    first = [u["accountId"] for u in r1.json["data"]]
    later = v2_ids[30]
    sim.admin("DELETE", "users/" + later)
    added = sim.admin("POST", "users", {"users": [{"name": "Nachzügler Neu"}]})["created"][0]
    rest, _ = walk_post(sim, search, {"cursor": r1.json["links"]["next"]})
    got = first + [u["accountId"] for u in rest]
    t.ok(later not in got, "a user removed mid-chain is not returned")
    t.is_(got[-1], added, "a user added mid-chain comes at the end")
    t.is_(len(got), len(set(got)), "no duplicates across a changing chain")

    # groups
    g_truth = sim.truth()["groups"]
    gsearch = "/admin/v2/orgs/%s/directories/-/groups/search" % o
    groups, pages = walk_post(sim, gsearch, {"limit": 5})
    t.is_([g["id"] for g in groups], [g["id"] for g in g_truth], "groups chain returns all groups")
    chain_shape(t, pages, 5, "groups limit 5")
    r = sim.request("POST", gsearch, {})
    t.is_(len(r.json["data"]), min(20, len(g_truth)), "groups default page size is 20")
    t.is_(sim.request("POST", gsearch, {"limit": 101}).status, 400, "groups limit 101 -> 400")
    r = sim.request("POST", "/admin/v2/orgs/%s/directories/%s/groups/search" % (o, d0),
                    {"cursor": pages[0]["links"]["next"]})
    t.is_(r.status, 400, "a '-' groups cursor is refused under a specific directory")

    # workspaces: cursor-only bodies, meta, limit 1000
    ws = "/admin/v2/orgs/%s/workspaces" % o
    products = [p["id"] for s in truth["sites"] for p in s["products"]]
    items, pages = walk_post(sim, ws, {"limit": 2})
    t.is_([w["id"] for w in items], products, "workspaces chain returns every product")
    chain_shape(t, pages, 2, "workspaces limit 2")
    t.is_([p["meta"]["total"] for p in pages], [len(products)] * len(pages), "meta.total on pages")
    t.is_([p["meta"]["startIndex"] for p in pages], list(range(0, len(products), 2)),
          "meta.startIndex follows the chain")
    t.is_(sim.request("POST", ws, {"limit": 1000}).status, 200, "workspaces limit 1000 ok")
    t.is_(sim.request("POST", ws, {"limit": 1001}).status, 400, "workspaces limit 1001 -> 400")
    nxt = pages[0]["links"]["next"]
    for extra in ({"limit": 2}, {"query": {"and": []}}):
        body = dict(extra, cursor=nxt)
        t.is_(sim.request("POST", ws, body).status, 400,
              "workspaces cursor with %s -> 400" % list(extra))
    r = sim.request("POST", ws, {})
    t.is_(len(r.json["data"]), min(20, len(products)), "workspaces default limit 20")

    # directories (3 of them), limit 1
    dirs, pages = walk_get(sim, "/admin/v2/orgs/%s/directories?limit=1" % o)
    t.is_([d["directoryId"] for d in dirs], [d["id"] for d in truth["directories"]],
          "directories chain with limit 1")
    chain_shape(t, pages, 1, "directories")
    r = sim.request("GET", "/admin/v2/orgs/%s/directories?limit=101" % o)
    t.is_(r.status, 400, "directories limit 101 -> 400")

    # role assignments of a group with one grant per site
    sa = next(g for g in g_truth if g["name"] == "site-admins")
    path = "/admin/v2/orgs/%s/directories/-/groups/%s/role-assignments" % (o, sa["id"])
    items, pages = walk_get(sim, path + "?limit=1")
    t.is_([i["resourceId"] for i in items], [a["resourceId"] for a in sa["roleAssignments"]],
          "group role-assignments chain, limit 1")
    chain_shape(t, pages, 1, "group role-assignments")
    r = sim.request("GET", path + "?limit=101")
    t.is_(r.status, 400, "role-assignments limit 101 -> 400")
    other_group = next(g for g in g_truth if g["id"] != sa["id"])
    r = sim.request("GET", "/admin/v2/orgs/%s/directories/-/groups/%s/role-assignments?cursor=%s"
                    % (o, other_group["id"], pages[0]["links"]["next"]))
    t.is_(r.status, 400, "a role-assignments cursor is bound to its group")

    # a user's role assignments
    richest = max((u for u in truth["users"] if "v2" in u["apis"]),
                  key=lambda u: len({r["resourceId"] for r in u["roles"]}))
    res = list(dict.fromkeys(r["resourceId"] for r in richest["roles"]))
    path = "/admin/v2/orgs/%s/directories/-/users/%s/role-assignments" % (o, richest["accountId"])
    items, pages = walk_get(sim, path + "?limit=2")
    t.is_([i["resourceId"] for i in items], res, "user role-assignments chain, limit 2")
    chain_shape(t, pages, 2, "user role-assignments")

    # last-active-dates, 2 products per page
    busy = max(truth["users"], key=lambda u: len(u["activity"]))
    path = "/admin/v1/orgs/%s/directory/users/%s/last-active-dates" % (o, busy["accountId"])
    got, url = [], path
    for _ in range(50):
        r = sim.request("GET", url)
        got += r.json["data"]["product_access"]
        nxt = r.json.get("links", {}).get("next")
        if not nxt:
            break
        url = path + "?cursor=" + nxt
    t.is_([p["id"] for p in got], [a["resourceId"] for a in busy["activity"]],
          "last-active-dates chain returns every product instance")
    t.ok(len(busy["activity"]) > 2, "that user needed several pages")

    # v1 users: links.next is a full URL, meta.total counts them all
    v1 = [u["accountId"] for u in sim.truth()["users"] if "v1" in u["apis"]]
    url = "/admin/v1/orgs/%s/users" % o
    got, totals, nexts = [], set(), []
    for _ in range(100):
        r = sim.request("GET", url)
        got += [u["account_id"] for u in r.json["data"]]
        totals.add(r.json["meta"]["total"])
        nxt = r.json["links"].get("next")
        if not nxt:
            break
        nexts.append(nxt)
        parts = urlsplit(nxt)
        url = parts.path + "?" + parts.query
    t.is_(got, v1, "v1 users chain returns every managed account once")
    t.is_(totals, {len(v1)}, "meta.total is the number of managed accounts")
    t.ok(nexts and all(n.startswith("%s/admin/v1/orgs/%s/users?cursor=" % (sim.base, o))
                       for n in nexts), "links.next is an absolute URL with a cursor parameter",
         nexts[:1])
    t.ok(all(parse_qs(urlsplit(n).query).get("cursor") for n in nexts), "cursor parses from URL")
    t.ok(len(nexts) >= 2, "v1 chain spans several pages")
    sim.stop()


TAP().run(main)
