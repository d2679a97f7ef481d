#!/usr/bin/env python3
# More fault injection: 429 storms with and without Retry-After, listings
# whose cursor never ends (same cursor, or a cycle), duplicates across
# pages.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sim"))
from testlib.simproc import Sim  # noqa: E402
from testlib.tap import TAP  # noqa: E402


def walk(sim, path, body, most=50):
    """Follows links.next; -> (ids, cursors) of at most `most` pages."""
    ids, cursors, cursor = [], [], None
    for _ in range(most):
        b = dict(body)
        if cursor:
            b = {"cursor": cursor}
        r = sim.request("POST", path, b)
        assert r.status == 200, (r.status, r.body)
        ids += [u["accountId"] for u in r.json["data"]]
        cursor = r.json.get("links", {}).get("next")
        if not cursor:
            return ids, cursors
        cursors.append(cursor)
    return ids, cursors


def main(t):
    sim = Sim(users=60, sites=2)
    search = "/admin/v2/orgs/%s/directories/-/users/search" % sim.org
    dirs = "/admin/v2/orgs/%s/directories" % sim.org

    # --- 429 storms
    sim.admin("POST", "faults", {"error429": {"count": 3, "retryAfter": 2}})
    rs = [sim.request("GET", dirs) for _ in range(4)]
    t.is_([r.status for r in rs], [429, 429, 429, 200], "error429 count 3: three 429s, then 200")
    t.is_(rs[0].headers.get("retry-after"), "2", "retryAfter 2: Retry-After: 2")
    t.is_(rs[0].json.get("code"), 429, "a gateway 429 body: {code, message}")
    sim.admin("POST", "faults", {"error429": {"count": 1}})
    r = sim.request("GET", dirs)
    t.ok(r.status == 429 and "retry-after" not in r.headers
         and not any(k.lower().startswith("x-ratelimit") for k in r.headers),
         "without retryAfter: a 429 with no Retry-After and no rate-limit header", r.headers)
    t.is_(sim.admin("GET", "stats")["faults"].get("error429"), 4, "stats count the 429 faults")
    bad = sim.admin("POST", "faults", {"error429": {"retryAfter": -1}})
    t.is_(getattr(bad, "status", None), 400, "a bad retryAfter -> 400")
    sim.admin("DELETE", "faults")

    body = {"limit": 10}
    all_ids, cursors = walk(sim, search, body)
    t.ok(len(all_ids) >= 50 and len(cursors) >= 5, "baseline: %d users in %d pages"
         % (len(all_ids), len(cursors) + 1))

    # --- a cursor that never ends: the same one back
    sim.admin("POST", "faults", {"cursorLoop": {"mode": "same", "match": "users/search"}})
    ids, got = walk(sim, search, body, most=6)
    t.is_(len(got), 6, "mode same: the listing does not end")
    t.ok(all(c == got[0] for c in got), "mode same: page 2 hands back its own cursor")
    t.is_(ids[10:20], ids[20:30], "mode same: page 2 repeats")
    t.is_(sim.request("GET", dirs).status, 200, "other listings are untouched")

    # --- a cycle: the end leads back to page 2
    sim.admin("POST", "faults", {"cursorLoop": {"mode": "cycle", "match": "users/search"}})
    ids, got = walk(sim, search, body, most=3 * (len(cursors) + 1))
    t.is_(len(got), 3 * (len(cursors) + 1), "mode cycle: the listing does not end")
    t.ok(len(set(got)) == len(cursors), "mode cycle: the cursors repeat, none twice in a row",
         (len(set(got)), len(cursors)))
    t.ok(all(a != b for a, b in zip(got, got[1:])), "mode cycle: never the same cursor twice in a row")
    sim.admin("DELETE", "faults")

    # --- duplicates across pages
    sim.admin("POST", "faults", {"duplicates": {"match": "users/search"}})
    ids, got = walk(sim, search, body)
    t.is_(sorted(set(ids)), sorted(all_ids), "duplicates: the same users in the end")
    t.is_(len(ids), len(all_ids) + len(got), "each later page repeats one user")
    t.is_(ids[10], ids[9], "page 2 starts with the last user of page 1")
    t.is_(sim.admin("GET", "stats")["faults"].get("duplicates"), len(got), "stats count them")
    sim.admin("DELETE", "faults")
    t.is_(walk(sim, search, body)[0], all_ids, "cleared: the plain listing again")
    sim.stop()


TAP().run(main)
