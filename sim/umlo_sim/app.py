"""The request pipeline: routing, auth, rate limits, faults, latency, stats.

Order for an API request, as the real gateway and services would apply it:
  auth (401) -> route (404/405) -> rate limit (429) -> org (404)
  -> faults (reset, hang, 5xx, 403 site) -> handler -> truncation fault
  -> rate-limit headers -> latency (the reply is scheduled, never slept on).
Admin calls under /__sim/ skip all of that.
"""

import hashlib
import random
import time
import traceback
from urllib.parse import unquote

from . import api_v1, api_v2, usermgmt, workspaces, writes
from .admin import Admin
from .cursor import Cursors
from .data import Org
from .errors import ApiError, GatewayError, UmError
from .faults import Faults
from .ratelimit import TokenBucket, headers as rl_headers
from .server import encode_response
from .stats import Stats
from .util import dumps, stable_id

ORG = "org"          # organizations API: application errors {"errors": [...]}
UM = "um"            # user management API: {"key": ...}

ROUTES = [
    # (method, template, handler, family)
    ("POST", "/admin/v2/orgs/{orgId}/workspaces", workspaces.workspaces, ORG),
    ("GET", "/admin/v2/orgs/{orgId}/directories", api_v2.directories, ORG),
    ("POST", "/admin/v2/orgs/{orgId}/directories/{directoryId}/users/search",
     api_v2.users_search, ORG),
    ("GET", "/admin/v2/orgs/{orgId}/directories/{directoryId}/users/{accountId}",
     api_v2.user_get, ORG),
    ("GET", "/admin/v2/orgs/{orgId}/directories/{directoryId}/users/{accountId}/role-assignments",
     api_v2.user_role_assignments, ORG),
    ("POST", "/admin/v2/orgs/{orgId}/directories/{directoryId}/users/{accountId}/suspend",
     writes.user_suspend, ORG),
    ("POST", "/admin/v2/orgs/{orgId}/directories/{directoryId}/users/{accountId}/restore",
     writes.user_restore, ORG),
    ("POST", "/admin/v2/orgs/{orgId}/directories/{directoryId}/groups/search",
     api_v2.groups_search, ORG),
    ("GET", "/admin/v2/orgs/{orgId}/directories/{directoryId}/groups/{groupId}/role-assignments",
     api_v2.group_role_assignments, ORG),
    ("POST", "/admin/v2/orgs/{orgId}/directories/{directoryId}/groups/{groupId}/role-assignments/assign",
     writes.group_role_assign, ORG),
    ("POST", "/admin/v2/orgs/{orgId}/directories/{directoryId}/groups/{groupId}/role-assignments/revoke",
     writes.group_role_revoke, ORG),
    ("POST", "/admin/v2/orgs/{orgId}/directories/{directoryId}/groups/{groupId}/memberships",
     writes.membership_add, ORG),
    ("DELETE", "/admin/v2/orgs/{orgId}/directories/{directoryId}/groups/{groupId}/memberships/{accountId}",
     writes.membership_remove, ORG),
    ("GET", "/admin/v1/orgs/{orgId}/users", api_v1.users, ORG),
    ("GET", "/admin/v1/orgs/{orgId}/directory/users/{accountId}/last-active-dates",
     api_v1.last_active_dates, ORG),
    ("POST", "/admin/v1/orgs/{orgId}/users/{userId}/role-assignments/assign",
     api_v1.org_role_assign, ORG),
    ("POST", "/admin/v1/orgs/{orgId}/users/{userId}/role-assignments/revoke",
     api_v1.org_role_revoke, ORG),
    ("POST", "/users/{account_id}/manage/lifecycle/disable", usermgmt.disable, UM),
    ("POST", "/users/{account_id}/manage/lifecycle/enable", usermgmt.enable, UM),
]

# The workspaces operation documents its 400/403/404/500 bodies as a bare
# ApplicationError object, not the {"errors": [...]} list the others use.
BARE_ERRORS = frozenset(["/admin/v2/orgs/{orgId}/workspaces"])

ACTIVITY_TEMPLATE = "/admin/v1/orgs/{orgId}/directory/users/{accountId}/last-active-dates"

PROFILES = {
    # latency_ms, jitter_ms, rate_limit per minute
    "fast": (0, 0, 0),
    "realistic": (150, 50, 200),
}


class Router:
    """Match a path against the templates, segment by segment."""

    def __init__(self, routes):
        self.by_len = {}
        for method, template, handler, family in routes:
            parts = template.strip("/").split("/")
            self.by_len.setdefault(len(parts), []).append((parts, method, template,
                                                            handler, family))

    def match(self, method, path):
        """-> (route tuple or None, params, allowed methods for that path)."""
        segs = path.strip("/").split("/")
        allowed = []
        for parts, m, template, handler, family in self.by_len.get(len(segs), ()):
            params = {}
            for p, s in zip(parts, segs):
                if p[0] == "{":
                    if not s:
                        break
                    params[p[1:-1]] = unquote(s)
                elif p != s:
                    break
            else:
                if m == method:
                    return (template, handler, family), params, allowed
                allowed.append(m)
        return None, None, allowed


class Ctx:
    """What a handler sees of one request."""
    __slots__ = ("sim", "org", "req", "params", "template", "host")

    def __init__(self, sim, req, params, template):
        self.sim, self.org, self.req = sim, sim.org, req
        self.params, self.template = params, template
        self.host = req.headers.get("host") or sim.listen_addr

    @property
    def base_url(self):
        return "http://" + self.host


class Settings:
    """Runtime knobs, changeable through POST /__sim/config."""

    def __init__(self, args):
        latency, jitter, rate = PROFILES[args.profile]
        self.profile = args.profile
        self.api_key = args.api_key
        self.latency_ms = args.latency_ms if args.latency_ms is not None else latency
        self.jitter_ms = args.jitter_ms if args.jitter_ms is not None else jitter
        self.rate_limit = args.rate_limit if args.rate_limit is not None else rate
        self.activity_rate_limit = args.activity_rate_limit
        self.retry_after = args.retry_after
        self.reset_format = args.reset_format
        self.activity_page_size = args.activity_page_size
        self.v1_page_size = args.v1_page_size

    def to_json(self):
        return {"profile": self.profile, "apiKey": self.api_key,
                "latencyMs": self.latency_ms, "jitterMs": self.jitter_ms,
                "rateLimit": self.rate_limit,
                "activityRateLimit": self.activity_rate_limit,
                "retryAfter": self.retry_after, "resetFormat": self.reset_format,
                "activityPageSize": self.activity_page_size,
                "v1PageSize": self.v1_page_size}


class Sim:
    def __init__(self, args):
        self.args = args
        self.listen_addr = "%s:%d" % args.listen     # main() sets the bound port
        self.settings = Settings(args)
        self.stats = Stats()
        self.faults = Faults(args.seed)
        self.latency_rng = random.Random("umlo-sim-latency:%s" % args.seed)
        self.router = Router(ROUTES)
        self.admin = Admin(self)
        self.build_org()
        self.bucket = TokenBucket(self.settings.rate_limit)
        self.activity_bucket = TokenBucket(self.settings.activity_rate_limit)
        self.apply_cli_faults()

    def build_org(self):
        a = self.args
        self.org = Org(a.org, seed=a.seed, users=a.users, sites=a.sites,
                       groups=a.groups, directories=a.directories,
                       anchor_ms=a.anchor_ms)
        secret = hashlib.sha256(("umlo-sim-cursor:%s:%s" % (a.seed, a.org)).encode())
        self.cursors = Cursors(secret.digest())

    def apply_cli_faults(self):
        a = self.args
        spec = {}
        if a.fault_5xx:
            spec["error5xx"] = {"rate": a.fault_5xx, "statuses": a.fault_5xx_status}
        if a.fault_hang:
            spec["hang"] = {"rate": a.fault_hang, "delayMs": a.hang_ms}
        if a.fault_truncate:
            spec["truncate"] = {"rate": a.fault_truncate, "mode": a.truncate_mode}
        if a.fault_reset:
            spec["reset"] = {"rate": a.fault_reset}
        if a.fault_match:
            for rule in spec.values():
                rule["match"] = a.fault_match
        if a.forbid_site is not None:
            spec["forbiddenSite"] = a.forbid_site
        if a.page_cap is not None:
            spec["pageCap"] = a.page_cap
        if a.key_expires_at is not None:
            spec["keyExpiresAt"] = a.key_expires_at
        elif a.key_expires_in is not None:
            spec["keyExpiresAt"] = time.time() + a.key_expires_in
        self.faults.update(spec)

    # ------------------------------------------------------------------ entry

    def handle(self, req, conn):
        if req.path.startswith("/__sim/") or req.path == "/__sim":
            self.stats.admin += 1
            status, body = self.admin.handle(req)
            conn.reply(encode_response(status, dumps(body) if body is not None else b"",
                                       keep_alive=req.keep_alive), req.keep_alive)
            return
        route, params, allowed = self.router.match(req.method, req.path)
        template = ("%s %s" % (req.method, route[0])) if route else "unmatched"
        family = route[2] if route else (UM if req.path.startswith("/users/") else ORG)
        ep = self.stats.begin(template)
        status, body, hdrs, extra = self._process(req, route, params, allowed,
                                                  template, family)
        delay = self._latency()
        if extra.get("hang") is not None:
            ms = extra["hang"]
            delay = None if not ms else delay + ms / 1000.0
        reset = extra.get("reset", False)
        declared = None
        close_after = False
        if extra.get("truncate") and body:
            cut = max(1, len(body) // 2)
            if extra["truncate"] == "short":
                declared, close_after = len(body), True
            body = body[:cut]
        data = encode_response(status, body, hdrs, req.keep_alive,
                               declared_length=declared)
        conn.reply(data, req.keep_alive, delay,
                   on_done=lambda sent: self.stats.end(ep, status if sent else None),
                   reset=reset, close_after=close_after)

    def _latency(self):
        s = self.settings
        if not s.latency_ms and not s.jitter_ms:
            return 0.0
        ms = s.latency_ms + self.latency_rng.uniform(-s.jitter_ms, s.jitter_ms)
        return max(0.0, ms) / 1000.0

    def _process(self, req, route, params, allowed, template, family):
        """-> (status, body bytes, headers, fault extras)."""
        hdrs, extra = [], {}
        try:
            self._authenticate(req, family)
            if route is None:
                if allowed:
                    hdrs.append(("Allow", ", ".join(allowed)))
                    raise ApiError(405, "ADMIN-405-1", "Use %s for this path" % ", ".join(allowed))
                if family == UM:
                    raise UmError(404, "notFound")
                raise ApiError(404, "ADMIN-404-1", "No such endpoint: %s" % req.path)
            self._rate_limit(route[0], hdrs)
            org_id = params.get("orgId")
            if org_id is not None and org_id != self.org.org_id:
                raise ApiError(404, "ADMIN-404-2", "Organization %s was not found" % org_id)
            self._faults_before(req, route[0], template, family, extra)
            if extra.get("reset"):
                return 0, b"", hdrs, extra
            ctx = Ctx(self, req, params, route[0])
            status, payload = route[1](ctx)
            body = payload if isinstance(payload, bytes) else \
                b"" if payload is None else dumps(payload)
            if 200 <= status < 300 and body:
                rule = self.faults.pick("truncate", template)
                if rule:
                    self.stats.fault("truncate")
                    extra["truncate"] = rule["mode"]
            return status, body, hdrs, extra
        except Exception as exc:                 # noqa: BLE001 - any failure is a 500
            err = exc
            if not isinstance(err, (ApiError, GatewayError, UmError)):
                # A simulator bug must look like an Atlassian 500, not kill
                # the connection; the traceback goes to stderr.
                traceback.print_exc()
                err = ApiError(500, "ADMIN-500-1", "Simulator error: %s" % exc)
            if family == UM and isinstance(err, ApiError):
                err = _um_equivalent(err)
            if isinstance(err, GatewayError) and err.status == 429:
                injected = getattr(err, "injected", False)
                if injected and err.retry_after is not None:
                    hdrs.append(("Retry-After", str(err.retry_after)))
                elif not injected and self.settings.retry_after:
                    hdrs.append(("Retry-After", str(err.retry_after)))
            eid = stable_id(self.args.seed, req.method, req.target,
                            hashlib.sha1(req.body).hexdigest(), err.status)
            payload = err.body(eid)
            if isinstance(err, ApiError) and route and route[0] in BARE_ERRORS:
                payload = payload["errors"][0]
            return err.status, dumps(payload), hdrs, extra

    def _authenticate(self, req, family):
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        ok = scheme.lower() == "bearer" and token.strip() == self.settings.api_key
        expires = self.faults.key_expires_at
        if ok and expires is not None and time.time() >= expires:
            ok = False
        if not ok:
            if family == UM:
                raise UmError(401, "unauthorized")
            raise GatewayError(401)

    def _rate_limit(self, template, hdrs):
        """Take a token; adds X-RateLimit-* to hdrs (429s carry them too).
        Last-active-dates has its own published limit, hence its own bucket."""
        bucket = self.activity_bucket if template == ACTIVITY_TEMPLATE else self.bucket
        if bucket.unlimited:
            return
        allowed, remaining, reset, retry = bucket.take()
        hdrs += rl_headers(bucket, remaining, reset, self.settings.reset_format)
        if not allowed:
            err = GatewayError(429)
            err.retry_after = retry
            raise err

    def _faults_before(self, req, template, key, family, extra):
        f = self.faults
        if f.pick("reset", key):
            self.stats.fault("reset")
            extra["reset"] = True
            return
        rule = f.pick("hang", key)
        if rule:
            self.stats.fault("hang")
            extra["hang"] = rule["delayMs"]
        rule = f.pick("error5xx", key)
        if rule:
            self.stats.fault("error5xx")
            status = f.choice(rule["statuses"])
            if status == 500:
                raise ApiError(500, "ADMIN-500-1", "Injected internal error")
            raise GatewayError(status)
        rule = f.pick("error429", key)
        if rule:
            self.stats.fault("error429")
            err = GatewayError(429)
            err.injected = True
            err.retry_after = rule["retryAfter"]
            raise err
        site = self.forbidden_site()
        if site is not None and self._touches_site(req, template, site):
            self.stats.fault("forbiddenSite")
            if family == UM:
                raise UmError(403, "forbidden")
            raise ApiError(403, "ADMIN-403-3",
                           "You are not allowed to manage resources of %s" % site.name)

    def forbidden_site(self):
        want = self.faults.forbidden_site
        if want is None:
            return None
        for site in self.org.sites:
            if want in (site.name, site.cloud_id, str(site.idx + 1), site.idx + 1):
                return site
        return None

    def _touches_site(self, req, template, site):
        """A request touches a site when it names one of the site's
        resources (its cloud id is in every ARI), or lists the role
        assignments of a group that grants roles on the site."""
        cid = site.cloud_id
        if cid in unquote(req.target) or cid.encode() in req.body:
            return True
        if template.endswith("/groups/{groupId}/role-assignments"):
            segs = req.path.strip("/").split("/")
            g = self.org.group_by_id.get(unquote(segs[7]))
            idxs = {r.idx for r in site.products} | {site.platform.idx}
            return g is not None and bool(idxs & g.roles.keys())
        return False


def _um_equivalent(err):
    """The user management API speaks {"key": ...}, even for errors the
    shared pipeline raised in organizations-API terms."""
    key = {400: "badRequest", 403: "forbidden", 404: "notFound",
           405: "methodNotAllowed"}.get(err.status)
    if err.status >= 500:
        return GatewayError(err.status)
    return UmError(err.status, key or "error")
