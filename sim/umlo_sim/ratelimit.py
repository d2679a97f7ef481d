"""Per-org token buckets and the X-RateLimit-* headers.

A bucket holds `limit` tokens and refills at limit/60 per second, so a
client may burst up to the limit and then sustain limit per minute, which
is how a per-minute quota behaves to a well-paced client.
X-RateLimit-Reset is the time the bucket will be full again (the end of the
current "period"), in ISO 8601 UTC.
"""

import math
import time

# Reset header formats: ISO 8601 with seconds (default) or the minute
# precision form seen from Atlassian in the wild ("%Y-%m-%dT%H:%M%z").
RESET_FORMATS = {
    "seconds": "%Y-%m-%dT%H:%M:%SZ",
    "minute": "%Y-%m-%dT%H:%M+0000",
}


class TokenBucket:
    def __init__(self, per_minute, clock=time.time):
        self.clock = clock
        self.configure(per_minute)

    def configure(self, per_minute):
        self.limit = max(0, int(per_minute))
        self.tokens = float(self.limit)
        self.stamp = self.clock()

    @property
    def unlimited(self):
        return self.limit == 0

    def _refill(self, now):
        rate = self.limit / 60.0
        self.tokens = min(float(self.limit), self.tokens + (now - self.stamp) * rate)
        self.stamp = now

    def take(self):
        """Consume one token.  -> (allowed, remaining, reset_epoch, retry_after_s)."""
        now = self.clock()
        self._refill(now)
        rate = self.limit / 60.0
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            allowed, retry = True, 0
        else:
            allowed = False
            retry = max(1, math.ceil((1.0 - self.tokens) / rate))
        reset = now + (self.limit - self.tokens) / rate
        return allowed, int(self.tokens), reset, retry


def headers(bucket, remaining, reset, fmt="seconds"):
    stamp = reset
    if fmt == "minute":
        stamp = math.ceil(reset / 60.0) * 60     # never earlier than the truth
    else:
        stamp = math.ceil(reset)
    return [("X-RateLimit-Limit", str(bucket.limit)),
            ("X-RateLimit-Remaining", str(remaining)),
            ("X-RateLimit-Reset", time.strftime(RESET_FORMATS[fmt], time.gmtime(stamp)))]
