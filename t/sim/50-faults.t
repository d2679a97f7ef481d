#!/usr/bin/env python3
# Fault injection: 5xx, hung requests, truncated JSON, connection resets,
# a forbidden site, page caps; set by flags and by POST /__sim/faults.
import http.client
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sim"))
from testlib.simproc import Sim  # noqa: E402
from testlib.tap import TAP  # noqa: E402


def raw(sim, method, path, body=b"", timeout=3.0):
    """One request on a fresh socket -> (bytes received, error or None)."""
    s = socket.create_connection((sim.host, sim.port), timeout=timeout)
    req = ("%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
           "Content-Length: %d\r\nConnection: close\r\n\r\n"
           % (method, path, sim.addr, sim.key, len(body))).encode() + body
    s.sendall(req)
    data, err = b"", None
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout) as e:
        err = e
    s.close()
    return data, err


def main(t):
    sim = Sim(users=40, sites=3)
    o = sim.org
    search = "/admin/v2/orgs/%s/directories/-/users/search" % o
    dirs = "/admin/v2/orgs/%s/directories" % o

    # --- 5xx with count and statuses
    sim.admin("POST", "faults", {"error5xx": {"rate": 1, "count": 2}})
    codes = [sim.request("POST", search, {}) for _ in range(3)]
    t.is_([r.status for r in codes], [500, 500, 200], "error5xx count 2: two 500s then 200")
    t.is_(codes[0].json["errors"][0]["code"], "ADMIN-500-1", "a 500 is ADMIN-500-1")
    sim.admin("POST", "faults", {"error5xx": {"rate": 1, "statuses": [503], "match": "users/search"}})
    r = sim.request("POST", search, {})
    t.ok(r.status == 503 and r.json == {"code": 503, "message": "Service Unavailable"},
         "503 comes from the gateway: {code, message}", r)
    t.is_(sim.request("GET", dirs).status, 200, "match limits the fault to one endpoint")
    sim.admin("POST", "faults", {"error5xx": {"rate": 0.5}})
    codes = [sim.request("GET", dirs).status for _ in range(200)]
    fails = codes.count(500)
    t.ok(60 < fails < 140, "rate 0.5 fails about half the requests", fails)
    stats = sim.admin("GET", "stats")
    t.is_(stats["sent5xx"], 3 + fails, "stats count the 5xx sent")
    t.is_(stats["faults"].get("error5xx"), 3 + fails, "stats count the faults fired")
    f = sim.admin("DELETE", "faults")
    t.ok("error5xx" not in f, "DELETE /__sim/faults clears them")
    t.is_(sim.request("GET", dirs).status, 200, "cleared: 200 again")
    bad = sim.admin("POST", "faults", {"error5xx": {"rate": 2}})
    t.is_(getattr(bad, "status", None), 400, "a bad fault spec -> 400")
    bad = sim.admin("POST", "faults", {"flood": 1})
    t.is_(getattr(bad, "status", None), 400, "an unknown fault -> 400")

    # --- hang: late answer, and no answer while others are served
    sim.admin("POST", "faults", {"hang": {"delayMs": 400, "count": 1}})
    start = time.time()
    r = sim.request("GET", dirs)
    took = time.time() - start
    t.ok(r.status == 200 and 0.38 < took < 2, "hang delayMs 400: answered late", took)
    sim.admin("POST", "faults", {"hang": {"count": 1}})
    hung = http.client.HTTPConnection(sim.host, sim.port, timeout=0.8)
    hung.request("GET", dirs, headers={"Authorization": "Bearer " + sim.key})
    start = time.time()
    r = sim.request("GET", dirs, fresh=True)
    t.ok(r.status == 200 and time.time() - start < 0.5, "others are served while one hangs")
    t.is_(sim.admin("GET", "stats")["inFlight"], 1, "the hung request is in flight")
    try:
        hung.getresponse()
        t.ok(False, "a hung request never answers")
    except socket.timeout:
        t.ok(True, "a hung request never answers (client timed out)")
    hung.close()
    time.sleep(0.1)
    t.is_(sim.admin("GET", "stats")["inFlight"], 0, "in-flight drops when the client gives up")

    # --- truncated JSON, both ways
    sim.admin("POST", "faults", {"truncate": {"count": 1}})
    r = sim.request("POST", search, {"limit": 10})
    t.ok(r.status == 200 and r.json is None and int(r.headers["content-length"]) == len(r.body),
         "truncate json: 200, matching Content-Length, body is not valid JSON", r)
    sim.admin("POST", "faults", {"truncate": {"mode": "short", "count": 1}})
    data, err = raw(sim, "POST", search, b'{"limit":10}')
    head, _, body = data.partition(b"\r\n\r\n")
    declared = int([line.split(b":")[1] for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")][0])
    t.ok(head.startswith(b"HTTP/1.1 200") and 0 < len(body) < declared,
         "truncate short: fewer bytes than Content-Length, then close", (len(body), declared))
    t.is_(sim.request("POST", search, {"limit": 10}).status, 200, "count 1: next one is whole")

    # --- connection reset
    sim.admin("POST", "faults", {"reset": {"count": 1, "match": "directories"}})
    data, err = raw(sim, "GET", dirs)
    t.ok(data == b"" and isinstance(err, ConnectionResetError), "reset: RST, no bytes", (data, err))
    t.is_(sim.request("GET", dirs, fresh=True).status, 200, "after the reset: served again")
    t.ok(sim.admin("GET", "stats")["faults"].get("reset") == 1, "stats count the reset")

    # --- forbidden site
    truth = sim.truth()
    site = truth["sites"][1]
    other = truth["sites"][0]
    sim.admin("POST", "faults", {"forbiddenSite": site["name"]})
    r = sim.request("POST", search, {"resourceIds": [site["products"][0]["id"]]})
    t.ok(r.status == 403 and r.json["errors"][0]["code"] == "ADMIN-403-3",
         "users/search naming the site's resource -> 403", r)
    t.is_(sim.request("POST", search, {"resourceIds": [other["products"][0]["id"]]}).status, 200,
          "another site's resource -> 200")
    grp = next(g for g in truth["groups"]
               if any(a["resourceId"].endswith(site["cloudId"]) for a in g["roleAssignments"]))
    r = sim.request("GET", "/admin/v2/orgs/%s/directories/-/groups/%s/role-assignments"
                    % (o, grp["id"]))
    t.is_(r.status, 403, "role-assignments of a group granting on the site -> 403")
    t.is_(sim.request("POST", "/admin/v2/orgs/%s/workspaces" % o, {}).status, 200,
          "workspaces still list every site")
    sim.admin("POST", "faults", {"forbiddenSite": 1})
    t.is_(sim.request("POST", search, {"resourceIds": [other["products"][0]["id"]]}).status, 403,
          "forbiddenSite by 1-based index")
    sim.admin("POST", "faults", {"forbiddenSite": None})

    # --- page cap: listings end early without an error
    sim.admin("POST", "faults", {"pageCap": 7})
    users, pages = sim.users_all({"limit": 3})
    t.is_((len(users), [len(p["data"]) for p in pages]), (7, [3, 3, 1]),
          "pageCap 7: the chain silently stops after 7 users")
    t.ok("next" not in pages[-1]["links"], "pageCap: last page has no next")
    sim.admin("DELETE", "faults")
    t.ok(len(sim.users_all({"limit": 100})[0]) > 7, "cleared: full listing again")
    faults = sim.admin("GET", "faults")
    t.is_((faults["pageCap"], faults["forbiddenSite"], faults["keyExpiresAt"]), (None, None, None),
          "GET /__sim/faults shows the switches cleared")
    sim.stop()

    # --- the same faults from the command line
    sim = Sim(users=10, fault_5xx=1, fault_5xx_status="502", fault_match="directories$")
    t.is_(sim.request("GET", dirs).status, 502, "--fault-5xx with --fault-match: 502")
    t.is_(sim.request("POST", search, {}).status, 200, "--fault-match spares other endpoints")
    rules = sim.admin("GET", "faults")
    t.is_((rules["error5xx"]["rate"], rules["error5xx"]["statuses"], rules["error5xx"]["match"]),
          (1.0, [502], "directories$"), "CLI faults show in GET /__sim/faults")
    sim.stop()
    sim = Sim(users=10, fault_hang=1, hang_ms=300)
    start = time.time()
    sim.request("GET", dirs)
    t.ok(time.time() - start >= 0.29, "--fault-hang --hang-ms 300 delays answers")
    sim.stop()
    sim = Sim(users=10, fault_truncate=1)
    t.is_(sim.request("GET", dirs).json, None, "--fault-truncate cuts bodies")
    sim.stop()
    sim = Sim(users=10, fault_reset=1)
    t.ok(isinstance(raw(sim, "GET", dirs)[1], ConnectionResetError), "--fault-reset resets")
    sim.stop()
    sim = Sim(users=30, page_cap=4, forbid_site="site-1")
    t.is_(len(sim.users_all({"limit": 100})[0]), 4, "--page-cap 4")
    prod = sim.truth()["sites"][0]["products"][0]["id"]
    t.is_(sim.request("POST", search, {"resourceIds": [prod]}).status, 403, "--forbid-site site-1")
    t.is_(json.loads(sim.request("POST", "/users/%s/manage/lifecycle/disable" % "x",
                                 b'{"message":"%s"}' % prod.encode()).body),
          {"key": "forbidden"}, "forbidden site on the user management API: {key: forbidden}")
    sim.stop()


TAP().run(main)
