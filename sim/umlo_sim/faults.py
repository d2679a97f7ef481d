"""Fault injection: what can go wrong between the module and Atlassian.

Request faults (each: rate 0..1, optional `match` = a regular expression
searched in the endpoint template "METHOD /path/{param}", e.g.
"users/search" or "directories$", optional `count` = fire at most N times):
  error5xx  {statuses: [500, 502, 503, 504]}  500 is an application error,
            502/503/504 come from the "gateway" ({"code","message"})
  hang      {delayMs: N}   answer after N ms; 0 or absent = never answer
  truncate  {mode: "json"|"short"}  json: a cut body with a matching
            Content-Length; short: full Content-Length, cut body, close
  reset     connection reset (RST) instead of an answer
  error429  {retryAfter: N}  429 from the gateway, with "Retry-After: N"
            when given, with no rate-limit header at all otherwise
  cursorLoop {mode: "same"|"cycle"}  a listing that never ends: links.next
            hands back the request's own cursor (same), or the chain's
            first cursor again (cycle: pages 2, 3, ..., k, 2, 3, ...);
            fires only on requests that carry a cursor
  duplicates  a page of a listing starts with the last item of the
            previous page again (an overlap, as a moving keyset can give);
            fires only on requests that carry a cursor
Org-wide switches:
  forbiddenSite  site name, cloud id or 1-based index: requests touching
                 that site's resources get 403
  pageCap        listings silently end after N items (no links.next)
  keyExpiresAt   the API key expires then (epoch seconds or ISO 8601)
"""

import random
import re

from .util import parse_time

REQUEST_FAULTS = ("error5xx", "hang", "truncate", "reset", "error429",
                  "cursorLoop", "duplicates")
SWITCHES = ("forbiddenSite", "pageCap", "keyExpiresAt")


class FaultSpecError(ValueError):
    pass


def _rule(kind, spec):
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        spec = {"rate": spec}
    if not isinstance(spec, dict):
        raise FaultSpecError("%s: expected an object or a rate" % kind)
    rule = {"rate": 1.0, "match": None, "count": None, "fired": 0}
    for key, value in spec.items():
        if key == "rate":
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise FaultSpecError("%s.rate must be a number in 0..1" % kind)
            rule["rate"] = float(value)
        elif key == "match":
            if value is not None and not isinstance(value, str):
                raise FaultSpecError("%s.match must be a string" % kind)
            try:
                re.compile(value or "")
            except re.error as e:
                raise FaultSpecError("%s.match is not a regular expression: %s" % (kind, e))
            rule["match"] = value or None
        elif key == "count":
            if value is not None and (not isinstance(value, int) or value < 0):
                raise FaultSpecError("%s.count must be a non-negative integer" % kind)
            rule["count"] = value
        elif kind == "error5xx" and key == "statuses":
            if (not isinstance(value, list) or not value or
                    any(v not in (500, 502, 503, 504) for v in value)):
                raise FaultSpecError("error5xx.statuses: list of 500/502/503/504")
            rule["statuses"] = value
        elif kind == "hang" and key == "delayMs":
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise FaultSpecError("hang.delayMs must be >= 0")
            rule["delayMs"] = value or 0
        elif kind == "truncate" and key == "mode":
            if value not in ("json", "short"):
                raise FaultSpecError("truncate.mode: json or short")
            rule["mode"] = value
        elif kind == "error429" and key == "retryAfter":
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or not 0 <= value <= 3600):
                raise FaultSpecError("error429.retryAfter must be 0..3600 seconds or null")
            rule["retryAfter"] = value
        elif kind == "cursorLoop" and key == "mode":
            if value not in ("same", "cycle"):
                raise FaultSpecError("cursorLoop.mode: same or cycle")
            rule["mode"] = value
        elif key not in ("fired", "first"):
            raise FaultSpecError("%s: unknown field %r" % (kind, key))
    defaults = {"error5xx": ("statuses", [500]), "hang": ("delayMs", 0),
                "truncate": ("mode", "json"), "error429": ("retryAfter", None),
                "cursorLoop": ("mode", "same")}
    if kind in defaults:
        rule.setdefault(*defaults[kind])
    return rule


class Faults:
    def __init__(self, seed):
        # Own random stream: faults never disturb the data generator.
        self.rng = random.Random("umlo-sim-faults:%s" % seed)
        self.clear()

    def clear(self):
        self.rules = {}
        self.forbidden_site = None
        self.page_cap = None
        self.key_expires_at = None

    def update(self, spec):
        """Merge a JSON object of faults; null clears one.  Validates all
        of it before changing anything."""
        if not isinstance(spec, dict):
            raise FaultSpecError("expected a JSON object")
        staged = {}
        for kind, value in spec.items():
            if kind in REQUEST_FAULTS:
                staged[kind] = None if value is None else _rule(kind, value)
            elif kind == "forbiddenSite":
                if value is not None and not isinstance(value, (str, int)):
                    raise FaultSpecError("forbiddenSite: site name, cloud id or index")
                staged[kind] = value
            elif kind == "pageCap":
                if value is not None and (not isinstance(value, int) or value < 0):
                    raise FaultSpecError("pageCap must be a non-negative integer")
                staged[kind] = value
            elif kind == "keyExpiresAt":
                try:
                    staged[kind] = None if value is None else parse_time(value)
                except ValueError:
                    raise FaultSpecError("keyExpiresAt: epoch seconds or ISO 8601")
            else:
                raise FaultSpecError("unknown fault %r" % kind)
        for kind, value in staged.items():
            if kind in REQUEST_FAULTS:
                if value is None:
                    self.rules.pop(kind, None)
                else:
                    self.rules[kind] = value
            elif kind == "forbiddenSite":
                self.forbidden_site = value
            elif kind == "pageCap":
                self.page_cap = value
            else:
                self.key_expires_at = value

    def pick(self, kind, template):
        """The rule to apply to this request, or None; counts a firing."""
        rule = self.rules.get(kind)
        if rule is None:
            return None
        if rule["match"] and not re.search(rule["match"], template):
            return None
        if rule["count"] is not None and rule["fired"] >= rule["count"]:
            return None
        if rule["rate"] < 1.0 and self.rng.random() >= rule["rate"]:
            return None
        rule["fired"] += 1
        return rule

    def choice(self, seq):
        return self.rng.choice(seq)

    def to_json(self):
        out = {k: dict(v) for k, v in sorted(self.rules.items())}
        out["forbiddenSite"] = self.forbidden_site
        out["pageCap"] = self.page_cap
        out["keyExpiresAt"] = self.key_expires_at
        return out
