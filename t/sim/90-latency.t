#!/usr/bin/env python3
# Latency profiles: delays per request with jitter, and concurrent requests
# overlap (the server never sleeps on one request).
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sim"))
from testlib.simproc import Sim  # noqa: E402
from testlib.tap import TAP  # noqa: E402


def timed(sim, path, n=8):
    out = []
    for _ in range(n):
        start = time.time()
        r = sim.request("GET", path)
        out.append((r.status, time.time() - start))
    return out


def main(t):
    sim = Sim(users=10, profile="realistic", rate_limit=0)
    dirs = "/admin/v2/orgs/%s/directories" % sim.org
    runs = timed(sim, dirs)
    lat = [s for _, s in runs]
    t.ok(all(c == 200 for c, _ in runs), "realistic: requests succeed")
    t.ok(all(0.095 <= s <= 0.35 for s in lat), "realistic: each takes 150 +/- 50 ms",
         ["%.3f" % s for s in lat])
    t.ok(max(lat) - min(lat) > 0.01, "realistic: latency has jitter")
    start = time.time()
    t.is_(sim.request("GET", "/__sim/health", auth=False).status, 200, "admin calls")
    t.ok(time.time() - start < 0.08, "admin calls skip the latency")

    # 12 concurrent requests on 12 connections overlap
    sim.admin("POST", "stats/reset")
    results = []

    def worker():
        s = Sim.__new__(Sim)
        s.__dict__.update({k: v for k, v in sim.__dict__.items() if k != "conn"})
        s.conn = None
        results.append(s.request("GET", dirs).status)
        s.conn.close()
    threads = [threading.Thread(target=worker) for _ in range(12)]
    start = time.time()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    took = time.time() - start
    t.is_(results, [200] * 12, "concurrent requests succeed")
    t.ok(took < 0.6, "12 concurrent 150 ms requests finish in %.2f s (overlap)" % took)
    peak = sim.admin("GET", "stats")["peakInFlight"]
    t.ok(peak >= 6, "stats see %d requests in flight at once" % peak)
    sim.admin("POST", "config", {"latencyMs": 0, "jitterMs": 0})
    t.ok(max(s for _, s in timed(sim, dirs, 3)) < 0.08, "latency switched off at run time")
    sim.stop()

    sim = Sim(users=10, latency_ms=300, jitter_ms=0)
    lat = [s for _, s in timed(sim, dirs, 3)]
    t.ok(all(0.29 <= s < 0.5 for s in lat), "--latency-ms 300: ~300 ms", lat)
    sim.stop()
    sim = Sim(users=10)
    lat = [s for _, s in timed(sim, dirs, 20)]
    t.ok(max(lat) < 0.05, "fast profile: no added latency (max %.1f ms)" % (max(lat) * 1000))
    sim.stop()


TAP().run(main)
