#!/usr/bin/env python3
# Bearer auth, key expiry, token-bucket rate limits and their headers.
import datetime
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sim"))
from testlib.simproc import Sim  # noqa: E402
from testlib.tap import TAP  # noqa: E402

RESET_S = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
RESET_M = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}\+0000$")


def main(t):
    sim = Sim(users=20)
    o = sim.org
    search = "/admin/v2/orgs/%s/directories/-/users/search" % o
    someone = sim.truth()["users"][0]["accountId"]
    disable = "/users/%s/manage/lifecycle/disable" % someone

    # --- auth
    for auth, desc in ((False, "no Authorization"), ("Bearer wrong", "wrong key"),
                       ("Basic " + sim.key, "Basic scheme"), ("Bearer", "empty bearer")):
        r = sim.request("POST", search, {}, auth=auth)
        t.ok(r.status == 401 and r.json == {"code": 401, "message": "Unauthorized"},
             "org API, %s -> 401 gateway body" % desc, r)
        r = sim.request("POST", disable, {}, auth=auth)
        t.ok(r.status == 401 and r.json == {"key": "unauthorized"},
             "user management API, %s -> 401 {key}" % desc, r)
    r = sim.request("POST", search, {}, auth="bearer " + sim.key)
    t.is_(r.status, 200, "scheme name is case-insensitive")
    r = sim.request("GET", "/admin/v2/orgs/%s/nothing-here" % o, auth=False)
    t.is_(r.status, 401, "auth is checked before routing")
    r = sim.request("GET", "/admin/v2/orgs/%s/nothing-here" % o)
    t.is_((r.status, r.json["errors"][0]["code"]), (404, "ADMIN-404-1"), "unknown path -> 404")
    r = sim.request("GET", "/admin/v2/orgs/%s/workspaces" % o)
    t.is_((r.status, r.json["errors"][0]["code"], r.headers.get("allow")),
          (405, "ADMIN-405-1", "POST"), "wrong method -> 405 with Allow")
    t.is_(sim.request("POST", search, {}).headers.get("x-ratelimit-limit"), None,
          "unlimited (fast profile): no X-RateLimit headers")

    # --- key expiry through the admin API and rotation through config
    past = datetime.datetime.utcnow() - datetime.timedelta(minutes=1)
    sim.admin("POST", "faults", {"keyExpiresAt": past.strftime("%Y-%m-%dT%H:%M:%SZ")})
    r = sim.request("POST", search, {})
    t.ok(r.status == 401 and r.json.get("code") == 401, "expired key -> 401", r)
    t.is_(sim.request("POST", disable, {}).json, {"key": "unauthorized"},
          "expired key on the user management API")
    sim.admin("POST", "faults", {"keyExpiresAt": time.time() + 3600})
    t.is_(sim.request("POST", search, {}).status, 200, "key valid again before expiry")
    sim.admin("POST", "faults", {"keyExpiresAt": None})
    sim.admin("POST", "config", {"apiKey": "rotated"})
    t.is_(sim.request("POST", search, {}).status, 401, "old key refused after rotation")
    t.is_(sim.request("POST", search, {}, auth="Bearer rotated").status, 200, "new key accepted")
    sim.stop()

    # --- key expiry from the command line
    sim = Sim(users=5, key_expires_in=0.6)
    t.is_(sim.request("POST", search, {}).status, 200, "--key-expires-in: valid at first")
    time.sleep(0.8)
    t.is_(sim.request("POST", search, {}).status, 401, "--key-expires-in: 401 after expiry")
    sim.stop()

    # --- rate limit: 5/min bucket
    sim = Sim(users=20, rate_limit=5)
    seen = []
    for i in range(5):
        r = sim.request("POST", search, {})
        seen.append((r.status, r.headers.get("x-ratelimit-limit"),
                     r.headers.get("x-ratelimit-remaining")))
    t.is_(seen, [(200, "5", str(n)) for n in (4, 3, 2, 1, 0)],
          "5 requests pass with Limit 5 and Remaining counting down")
    reset = r.headers.get("x-ratelimit-reset", "")
    t.ok(RESET_S.match(reset), "X-RateLimit-Reset is ISO 8601 UTC", reset)
    when = datetime.datetime.strptime(reset, "%Y-%m-%dT%H:%M:%SZ")
    delta = (when - datetime.datetime.utcnow()).total_seconds()
    t.ok(30 < delta <= 62, "reset is when the bucket is full again (~1 min)", delta)
    r = sim.request("POST", search, {})
    t.ok(r.status == 429 and r.json == {"code": 429, "message": r.json.get("message")}
         and isinstance(r.json.get("message"), str), "6th request -> 429 gateway body", r)
    t.is_(r.headers.get("x-ratelimit-remaining"), "0", "429 carries Remaining 0")
    t.ok("retry-after" not in r.headers, "no Retry-After unless --retry-after")
    r = sim.request("POST", disable, {})
    t.is_(r.status, 429, "the user management API shares the org bucket")
    t.is_(sim.request("POST", search, {}, auth=False).status, 401,
          "401 takes precedence and costs nothing")
    stats = sim.admin("GET", "stats")
    t.is_(stats["sent429"], 2, "stats count the 429s")
    lad = "/admin/v1/orgs/%s/directory/users/%s/last-active-dates" % (o, someone)
    r = sim.request("GET", lad)
    t.is_((r.status, r.headers.get("x-ratelimit-limit")), (200, "200"),
          "last-active-dates has its own 200/min bucket")
    sim.admin("POST", "ratelimit/reset")
    t.is_(sim.request("POST", search, {}).status, 200, "POST /__sim/ratelimit/reset refills")
    sim.stop()

    # --- refill, Retry-After, minute-precision reset, activity bucket
    sim = Sim(users=5, rate_limit=120, retry_after=True, reset_format="minute",
              activity_rate_limit=3)
    for _ in range(120):
        r = sim.request("POST", search, {})
    t.ok(r.status == 200 and RESET_M.match(r.headers["x-ratelimit-reset"]),
         "minute-precision reset format", r.headers.get("x-ratelimit-reset"))
    r = sim.request("POST", search, {})
    t.is_(r.status, 429, "bucket of 120 empties after 120 requests")
    t.ok(r.headers.get("retry-after", "").isdigit() and int(r.headers["retry-after"]) >= 1,
         "--retry-after: integer Retry-After on 429", r.headers)
    time.sleep(0.6)                                   # 2 tokens per second
    t.is_(sim.request("POST", search, {}).status, 200, "a token refills after ~0.5 s")
    lad = "/admin/v1/orgs/%s/directory/users/%s/last-active-dates" % (
        o, sim.truth()["users"][0]["accountId"])
    codes = [sim.request("GET", lad).status for _ in range(4)]
    t.is_(codes, [200, 200, 200, 429], "--activity-rate-limit 3: fourth call -> 429")
    sim.admin("POST", "config", {"activityRateLimit": 0})
    r = sim.request("GET", lad)
    t.ok(r.status == 200 and "x-ratelimit-limit" not in r.headers,
         "activity limit 0 via /__sim/config: unlimited")
    sim.stop()

    # --- the realistic profile rate-limits by default
    sim = Sim(users=5, profile="realistic", latency_ms=0, jitter_ms=0)
    r = sim.request("POST", search, {})
    t.is_(r.headers.get("x-ratelimit-limit"), "200", "realistic profile: 200 requests/min")
    sim.stop()


TAP().run(main)
