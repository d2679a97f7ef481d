"""Request statistics for GET /__sim/stats."""

import time


class Stats:
    def __init__(self):
        self.reset()

    def reset(self):
        self.since = time.time()
        self.total = 0
        self.endpoints = {}      # template -> {"count": n, "status": {code: n}}
        self.in_flight = 0
        self.peak_in_flight = 0
        self.sent_429 = 0
        self.sent_5xx = 0
        self.faults = {}         # fault kind -> times fired
        self.admin = 0

    def begin(self, template):
        self.total += 1
        ep = self.endpoints.get(template)
        if ep is None:
            ep = self.endpoints[template] = {"count": 0, "status": {}}
        ep["count"] += 1
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
        return ep

    def end(self, ep, status):
        """status None: no HTTP answer (reset, or hang cut by the client)."""
        self.in_flight -= 1
        key = str(status) if status is not None else "none"
        ep["status"][key] = ep["status"].get(key, 0) + 1
        if status == 429:
            self.sent_429 += 1
        elif status is not None and status >= 500:
            self.sent_5xx += 1

    def fault(self, kind):
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def to_json(self):
        return {
            "since": self.since,
            "uptimeSeconds": round(time.time() - self.since, 3),
            "total": self.total,
            "inFlight": self.in_flight,
            "peakInFlight": self.peak_in_flight,
            "sent429": self.sent_429,
            "sent5xx": self.sent_5xx,
            "faults": dict(sorted(self.faults.items())),
            "adminRequests": self.admin,
            "endpoints": {k: self.endpoints[k] for k in sorted(self.endpoints)},
        }
