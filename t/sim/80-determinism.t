#!/usr/bin/env python3
# Same seed and arguments -> byte-identical responses; another seed ->
# another org; 100,000 users start in seconds and page quickly.
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sim"))
from testlib.simproc import Sim  # noqa: E402
from testlib.tap import TAP  # noqa: E402

EXPAND = ["productAccess", "groups", "platformRoles", "counts.resources"]


def transcript(sim):
    """Bodies of a fixed sequence of requests, with this sim's address
    replaced (v1 links and workspace self links carry it)."""
    o = sim.org
    out = []

    def add(r):
        out.append((r.status, r.body.replace(sim.addr.encode(), b"HOST")))
        return r
    body = {"limit": 40, "expand": EXPAND}
    for _ in range(10):
        r = add(sim.request("POST", "/admin/v2/orgs/%s/directories/-/users/search" % o, body))
        if not r.json["links"].get("next"):
            break
        body = {"cursor": r.json["links"]["next"]}
    add(sim.request("POST", "/admin/v2/orgs/%s/directories/-/groups/search" % o,
                    {"expand": ["counts.users", "counts.resources"], "limit": 100}))
    add(sim.request("POST", "/admin/v2/orgs/%s/workspaces" % o, {"limit": 100}))
    add(sim.request("GET", "/admin/v2/orgs/%s/directories" % o))
    add(sim.request("GET", "/admin/v1/orgs/%s/users" % o))
    truth = sim.truth()
    for u in truth["users"][:15]:
        add(sim.request("GET", "/admin/v1/orgs/%s/directory/users/%s/last-active-dates"
                        % (o, u["accountId"])))
        add(sim.request("GET", "/admin/v2/orgs/%s/directories/-/users/%s/role-assignments"
                        % (o, u["accountId"])))
    add(sim.request("POST", "/admin/v2/orgs/%s/directories/-/users/search" % o,
                    {"cursor": "broken"}))
    add(sim.request("GET", "/__sim/org", auth=False))
    return out


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def main(t):
    args = dict(users=120, sites=3, groups=12, seed=7)
    a = Sim(**args)
    first = transcript(a)
    a.stop()
    b = Sim(**args)
    second = transcript(b)
    b.stop()
    t.ok(len(first) > 30, "transcript covers %d responses" % len(first))
    diff = [i for i, (x, y) in enumerate(zip(first, second)) if x != y]
    t.ok(first == second, "same seed and arguments: byte-identical responses", diff[:5])
    c = Sim(**dict(args, seed=8))
    third = transcript(c)
    c.stop()
    t.ok(first[0] != third[0], "another seed: another org")
    d = Sim(**dict(args, users=200))
    ids_a = [u["accountId"] for u in Sim.truth(d)["users"]][:120]
    d.stop()
    e = Sim(**args)
    ids_b = [u["accountId"] for u in e.truth()["users"]]
    e.stop()
    t.is_(ids_a, ids_b, "more users extend the org; the first ones stay the same")

    # scale
    start = time.time()
    big = Sim(users=100000, sites=3, groups=20, timeout=60)
    took = time.time() - start
    t.ok(took < 15, "100,000 users: listening after %.1f s" % took)
    mem = rss_mb(big.proc.pid)
    t.ok(mem < 400, "100,000 users: RSS %.0f MB" % mem)
    o = big.org
    search = "/admin/v2/orgs/%s/directories/-/users/search" % o
    start = time.time()
    r = big.request("POST", search, {"limit": 100, "expand": EXPAND})
    cold = time.time() - start
    t.ok(r.status == 200 and len(r.json["data"]) == 100, "page of 100 expanded users")
    t.ok(cold < 1.0, "first page in %.3f s" % cold)
    prod = big.admin("GET", "org?users=false")["sites"][2]["products"][0]["id"]
    body = {"limit": 100, "resourceIds": [prod], "roleIds": ["atlassian/user", "atlassian/admin"]}
    start = time.time()
    pages = 0
    while pages < 20:
        r = big.request("POST", search, body)
        pages += 1
        if not r.json["links"].get("next"):
            break
        body = {"cursor": r.json["links"]["next"]}
    rate = pages / (time.time() - start)
    t.ok(r.status == 200 and rate > 10, "billable chain on a 100k org: %.0f pages/s" % rate)
    r = big.request("POST", search, {"limit": 100, "status": ["for_deletion"],
                                     "claimStatus": "unmanaged"})
    t.is_(r.json["data"], [], "a filter matching nobody scans 100k users and answers")
    big.stop()


TAP().run(main)
