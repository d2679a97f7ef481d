#!/usr/bin/env python3
# hideAccessTimestamps: a stable share of users whose users/search
# productAccess entries lack lastActiveTimestamp (optional in the spec),
# while last-active-dates still has their dates.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sim"))
from testlib.simproc import Sim  # noqa: E402
from testlib.tap import TAP  # noqa: E402


def main(t):
    sim = Sim(users=200, sites=2, groups=10)
    o = sim.org

    def access():
        users, _ = sim.users_all({"limit": 100, "expand": ["productAccess"]})
        return {u["accountId"]: u.get("productAccess", []) for u in users}

    before = access()
    used = [a for a, pa in before.items() if pa]
    t.ok(all("lastActiveTimestamp" in e for pa in before.values() for e in pa),
         "by default every productAccess entry has its timestamp")

    t.is_(sim.admin("GET", "config")["hideAccessTimestamps"], 0.0, "config shows the default 0")
    for bad in (-0.1, 1.5, "half", True):
        t.is_(getattr(sim.admin("POST", "config", {"hideAccessTimestamps": bad}), "status", None),
              400, "hideAccessTimestamps %r -> 400" % (bad,))

    sim.admin("POST", "config", {"hideAccessTimestamps": 0.5})
    after = access()
    hidden = [a for a in used if all("lastActiveTimestamp" not in e for e in after[a])]
    kept = [a for a in used if all("lastActiveTimestamp" in e for e in after[a])]
    t.is_(len(hidden) + len(kept), len(used), "each user has all or none of its timestamps")
    t.ok(0.3 * len(used) < len(hidden) < 0.7 * len(used),
         "about half the users lose them (%d of %d)" % (len(hidden), len(used)))
    t.is_({a: [e["id"] for e in after[a]] for a in used},
          {a: [e["id"] for e in before[a]] for a in used}, "the entries themselves stay")
    t.is_(sorted(a for a in used if all("lastActiveTimestamp" not in e for e in access()[a])),
          sorted(hidden), "the same users on the next walk")

    a = hidden[0]
    r = sim.request("GET", "/admin/v1/orgs/%s/directory/users/%s/last-active-dates" % (o, a))
    got = {e["id"]: e["last_active_timestamp"] for e in r.json["data"]["product_access"]}
    truth = sim.admin("GET", "org/users/" + a)
    t.ok(r.status == 200 and got and set(got) <= {x["resourceId"] for x in truth["activity"]},
         "last-active-dates still has the hidden user's dates")

    sim.admin("POST", "config", {"hideAccessTimestamps": 1})
    t.ok(all("lastActiveTimestamp" not in e for pa in access().values() for e in pa), "1 hides all")
    sim.admin("POST", "config", {"hideAccessTimestamps": 0})
    t.is_(access(), before, "0 brings them back")
    sim.stop()


TAP().run(main)
