"""Control API under /__sim/ (no auth, no latency, no faults, no limits).

Tests use it to change the org while the module syncs, to switch faults,
to read statistics and to read the ground truth to compare against what
the module stored.  Every call is listed in sim/README.md."""

import json
import traceback
from urllib.parse import parse_qsl, unquote

from .model import PRODUCT_TYPES
from .faults import FaultSpecError
from .ratelimit import RESET_FORMATS
from .util import iso_ms, parse_time


class AdminError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


# camelCase admin/truth field -> (User attribute, allowed values or type)
USER_FIELDS = {
    "name": ("name", str),
    "nickname": ("nickname", str),
    "email": ("email", (str, type(None))),
    "emailVerified": ("email_verified", bool),
    "claimStatus": ("claim", ("managed", "unmanaged")),
    "accountStatus": ("account_status", ("active", "inactive", "closed")),
    "membershipStatus": ("membership", ("active", "suspended", "no_membership")),
    "forDeletion": ("for_deletion", bool),
    "mfaEnabled": ("mfa", bool),
    "managementSource": ("management_source", ("invited", "synced", None)),
    "jobTitle": ("job_title", (str, type(None))),
    "department": ("department", (str, type(None))),
    "location": ("location", (str, type(None))),
    "timeZone": ("time_zone", (str, type(None))),
    "organization": ("organization", (str, type(None))),
}


def _check_value(field, value, allowed):
    if isinstance(allowed, tuple) and allowed and not isinstance(allowed[0], type):
        ok = value in allowed
    else:
        ok = isinstance(value, allowed) and not (allowed is not bool and isinstance(value, bool))
    if not ok:
        raise AdminError(400, "bad value for %s: %r" % (field, value))


class Admin:
    def __init__(self, sim):
        self.sim = sim

    @property
    def org(self):
        return self.sim.org

    def handle(self, req):
        path = req.path[len("/__sim"):].strip("/")
        segs = [unquote(s) for s in path.split("/")] if path else []
        query = dict(parse_qsl(req.query))
        try:
            body = json.loads(req.body) if req.body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            return 400, {"error": "body is not valid JSON"}
        try:
            return self._route(req.method, segs, query, body)
        except AdminError as e:
            return e.status, {"error": e.message}
        except FaultSpecError as e:
            return 400, {"error": str(e)}
        except Exception as e:                   # noqa: BLE001 - report, keep serving
            traceback.print_exc()
            return 500, {"error": "simulator error: %s" % e}

    def _route(self, method, segs, query, body):
        head = segs[0] if segs else ""
        rest = segs[1:]
        table = {
            ("GET", "health", 0): lambda: (200, {"ok": True, "org": self.org.org_id}),
            ("GET", "config", 0): lambda: (200, self.sim.settings.to_json()),
            ("POST", "config", 0): lambda: self.set_config(body),
            ("GET", "stats", 0): lambda: (200, self.sim.stats.to_json()),
            ("POST", "stats", 1): lambda: self.reset_stats(rest[0]),
            ("DELETE", "stats", 0): lambda: self.reset_stats("reset"),
            ("GET", "faults", 0): lambda: (200, self.sim.faults.to_json()),
            ("POST", "faults", 0): lambda: self.set_faults(body),
            ("DELETE", "faults", 0): lambda: self.clear_faults(),
            ("GET", "org", 0): lambda: (200, self.truth(query)),
            ("GET", "org", 2): lambda: self.truth_one(rest),
            ("POST", "users", 0): lambda: self.add_users(body),
            ("PATCH", "users", 1): lambda: self.patch_user(rest[0], body),
            ("DELETE", "users", 1): lambda: self.remove_user(rest[0]),
            ("POST", "users", 2): lambda: self.user_action(rest[0], rest[1]),
            ("POST", "groups", 0): lambda: self.add_group(body),
            ("POST", "groups", 2): lambda: self.group_members(rest[0], rest[1], body),
            ("POST", "sites", 0): lambda: self.add_site(body),
            ("POST", "ratelimit", 1): lambda: self.reset_buckets(rest[0]),
            ("POST", "reset", 0): lambda: self.reset_all(),
        }
        fn = table.get((method, head, len(rest)))
        if fn is None:
            raise AdminError(404, "no admin call %s /__sim/%s" % (method, "/".join(segs)))
        return fn()

    # ------------------------------------------------------- config, stats

    def set_config(self, body):
        s = self.sim.settings
        numeric = {"latencyMs": "latency_ms", "jitterMs": "jitter_ms",
                   "rateLimit": "rate_limit", "activityRateLimit": "activity_rate_limit",
                   "activityPageSize": "activity_page_size", "v1PageSize": "v1_page_size"}
        for key, value in body.items():
            if key in numeric:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise AdminError(400, "%s must be a number >= 0" % key)
                if key.endswith("PageSize") and not 1 <= value <= 1000:
                    raise AdminError(400, "%s must be 1..1000" % key)
            elif key == "retryAfter" and not isinstance(value, bool):
                raise AdminError(400, "retryAfter must be a boolean")
            elif key == "resetFormat" and value not in RESET_FORMATS:
                raise AdminError(400, "resetFormat: %s" % ", ".join(RESET_FORMATS))
            elif key == "apiKey" and (not isinstance(value, str) or not value):
                raise AdminError(400, "apiKey must be a non-empty string")
            elif key == "hideAccessTimestamps" and (
                    isinstance(value, bool) or not isinstance(value, (int, float))
                    or not 0 <= value <= 1):
                raise AdminError(400, "hideAccessTimestamps must be a share 0..1")
            elif key not in numeric and key not in ("retryAfter", "resetFormat", "apiKey",
                                                    "hideAccessTimestamps"):
                raise AdminError(400, "unknown setting %s" % key)
        for key, value in body.items():
            if key in numeric:
                setattr(s, numeric[key], int(value) if key != "latencyMs" and
                        key != "jitterMs" else value)
            elif key == "retryAfter":
                s.retry_after = value
            elif key == "resetFormat":
                s.reset_format = value
            elif key == "apiKey":
                s.api_key = value
            elif key == "hideAccessTimestamps":
                s.hide_access_timestamps = float(value)
                self.sim.org.hide_access_timestamps = float(value)
                self.sim.org.touch()
        if "rateLimit" in body:
            self.sim.bucket.configure(s.rate_limit)
        if "activityRateLimit" in body:
            self.sim.activity_bucket.configure(s.activity_rate_limit)
        return 200, s.to_json()

    def reset_stats(self, word):
        if word != "reset":
            raise AdminError(404, "use POST /__sim/stats/reset")
        self.sim.stats.reset()
        return 200, self.sim.stats.to_json()

    def reset_buckets(self, word):
        if word != "reset":
            raise AdminError(404, "use POST /__sim/ratelimit/reset")
        self.sim.bucket.configure(self.sim.settings.rate_limit)
        self.sim.activity_bucket.configure(self.sim.settings.activity_rate_limit)
        return 200, {"ok": True}

    def set_faults(self, body):
        self.sim.faults.update(body)
        return 200, self.sim.faults.to_json()

    def clear_faults(self):
        self.sim.faults.clear()
        return 200, self.sim.faults.to_json()

    def reset_all(self):
        """Back to the state right after start: same org, settings, faults."""
        from .app import Settings
        sim = self.sim
        sim.settings = Settings(sim.args)
        sim.build_org()
        sim.faults.clear()
        sim.apply_cli_faults()
        sim.stats.reset()
        sim.bucket.configure(sim.settings.rate_limit)
        sim.activity_bucket.configure(sim.settings.activity_rate_limit)
        return 200, {"ok": True, "users": len(sim.org.users)}

    # -------------------------------------------------------------- lookups

    def _user(self, account_id):
        u = self.org.by_id.get(account_id)
        if u is None:
            raise AdminError(404, "no user %s" % account_id)
        return u

    def _group(self, ref):
        g = self.org.group_by_id.get(ref) or self.org.group_named(ref)
        if g is None:
            raise AdminError(404, "no group %s" % ref)
        return g

    def _resource(self, ari, products_only=False):
        r = self.org.res_by_ari.get(ari)
        if r is None or (products_only and r.kind != "product"):
            raise AdminError(400, "unknown resource %s" % ari)
        return r

    def _directory_idx(self, ref):
        if ref is None:
            return None
        for d in self.org.directories:
            if ref in (d.id, d.idx):
                return d.idx
        raise AdminError(400, "unknown directory %s" % ref)

    # ---------------------------------------------------------------- users

    def add_users(self, body):
        org = self.org
        if "count" in body:
            n = body["count"]
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 1000000:
                raise AdminError(400, "count must be an integer 0..1000000")
            created = [org.add_user() for _ in range(n)]
        elif isinstance(body.get("users"), list):
            specs = [self._plan(s) for s in body["users"]]
            created = []
            for plan, extra in specs:
                u = org.add_user(plan)
                self._apply_extra(u, extra)
                created.append(u)
        else:
            raise AdminError(400, 'give {"count": N} or {"users": [...]}')
        return 200, {"created": [u.account_id for u in created]}

    def _plan(self, spec):
        """Admin user object -> (generator plan, fields applied after)."""
        if not isinstance(spec, dict):
            raise AdminError(400, "each user must be an object")
        # Explicit users are plain: managed, active, no random access.
        plan = {"explicit": True, "claim": "managed", "account_status": "active",
                "membership": "active", "for_deletion": False}
        extra = {}
        for key, value in spec.items():
            if key in USER_FIELDS:
                attr, allowed = USER_FIELDS[key]
                _check_value(key, value, allowed)
                plan[attr] = value
            elif key == "accountType":
                _check_value(key, value, ("atlassian", "app", "customer"))
                plan["account_type"] = value
            elif key == "accountId":
                if not isinstance(value, str) or not value or value in self.org.by_id:
                    raise AdminError(400, "accountId must be a new non-empty string")
                plan["account_id"] = value
            elif key == "directoryId":
                plan["directory"] = self._directory_idx(value)
            elif key in ("groups", "roles", "activity", "addedToOrg"):
                extra[key] = value
            else:
                raise AdminError(400, "unknown user field %s" % key)
        self._check_extra(extra)
        return plan, extra

    def _check_extra(self, extra):
        if "groups" in extra:
            if not isinstance(extra["groups"], list):
                raise AdminError(400, "groups must be a list")
            extra["groups"] = [self._group(g) for g in extra["groups"]]
        if "roles" in extra:
            roles = extra["roles"]
            if not isinstance(roles, list) or not all(
                    isinstance(r, dict) and isinstance(r.get("role"), str) for r in roles):
                raise AdminError(400, 'roles: [{"resourceId": ARI, "role": ROLE}]')
            extra["roles"] = [(self._resource(r.get("resourceId")), r["role"]) for r in roles]
        if "activity" in extra:
            act = extra["activity"]
            if not isinstance(act, dict):
                raise AdminError(400, "activity: {ARI: time or null}")
            extra["activity"] = [(self._resource(k, True), self._ms(v)) for k, v in act.items()]
        if "addedToOrg" in extra:
            extra["addedToOrg"] = self._ms(extra["addedToOrg"])

    @staticmethod
    def _ms(value):
        if value is None:
            return None
        try:
            return int(parse_time(value) * 1000)
        except (ValueError, TypeError):
            raise AdminError(400, "bad time %r (epoch seconds or ISO 8601)" % (value,))

    def _apply_extra(self, u, extra):
        org = self.org
        if "groups" in extra:
            for gi in list(u.groups):
                org.remove_member(org.groups[gi], u)
            for g in extra["groups"]:
                org.add_member(g, u)
        if "roles" in extra:
            u.direct = list(dict.fromkeys((r.idx, role) for r, role in extra["roles"]))
        for r, ms in extra.get("activity", ()):
            org.set_activity(u, r, ms)
        if extra.get("addedToOrg") is not None:
            u.added_ms = extra["addedToOrg"]
        org.touch()

    def patch_user(self, account_id, body):
        u = self._user(account_id)
        if not isinstance(body, dict):
            raise AdminError(400, "body must be an object")
        changes, extra = {}, {}
        for key, value in body.items():
            if key in USER_FIELDS:
                attr, allowed = USER_FIELDS[key]
                _check_value(key, value, allowed)
                changes[attr] = value
            elif key == "directoryId":
                changes["directory"] = self._directory_idx(value)
            elif key in ("groups", "roles", "activity", "addedToOrg"):
                extra[key] = value
            else:
                raise AdminError(400, "unknown or read-only user field %s" % key)
        self._check_extra(extra)
        for attr, value in changes.items():
            setattr(u, attr, value)
        if changes.get("account_status") == "active":
            u.deactivated_ms = None
        elif "account_status" in changes and u.deactivated_ms is None:
            u.deactivated_ms = self.org.now_ms()
        self._apply_extra(u, extra)
        return 200, self.user_truth(u)

    def remove_user(self, account_id):
        self.org.remove_user(self._user(account_id))
        return 200, {"removed": account_id}

    def user_action(self, account_id, action):
        u = self._user(account_id)
        fn = {"deactivate": self.org.deactivate, "activate": self.org.activate,
              "suspend": self.org.suspend, "restore": self.org.restore,
              "close": self.org.close}.get(action)
        if fn is None:
            raise AdminError(404, "actions: deactivate, activate, suspend, restore, close")
        fn(u)
        return 200, self.user_truth(u)

    # --------------------------------------------------------- groups, sites

    def add_group(self, body):
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise AdminError(400, "name is required")
        desc = body.get("description")
        if desc is not None and not isinstance(desc, str):
            raise AdminError(400, "description must be a string or null")
        directory = self._directory_idx(body.get("directoryId")) or 0
        roles = body.get("roles", [])
        if not isinstance(roles, list):
            raise AdminError(400, "roles must be a list")
        grants = [(self._resource(r.get("resourceId")), r.get("role"), r.get("defaultRole"))
                  for r in roles if isinstance(r, dict)]
        members = [self._user(a) for a in body.get("members", [])]
        g = self.org.add_group(name, desc, bool(body.get("externalSynced")), directory)
        for res, role, default in grants:
            if not isinstance(role, str):
                raise AdminError(400, "each role needs a role id")
            self.org.group_assign(g, res, role, default=default)
        for u in members:
            self.org.add_member(g, u)
        return 200, self.group_truth(g)

    def group_members(self, ref, word, body):
        if word != "members":
            raise AdminError(404, "use POST /__sim/groups/{id}/members")
        g = self._group(ref)
        add = [self._user(a) for a in body.get("add", [])]
        remove = [self._user(a) for a in body.get("remove", [])]
        for u in add:
            self.org.add_member(g, u)
        for u in remove:
            self.org.remove_member(g, u)
        return 200, self.group_truth(g)

    def add_site(self, body):
        products = body.get("products")
        if products is not None and (not isinstance(products, list) or
                                     any(p not in PRODUCT_TYPES for p in products)):
            raise AdminError(400, "products: list of %s" % ", ".join(PRODUCT_TYPES))
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or
                                 any(s.name == name for s in self.org.sites)):
            raise AdminError(400, "name must be a new site name")
        capacity = body.get("capacity", "auto")
        if capacity not in ("auto", None) and (isinstance(capacity, bool) or
                                               not isinstance(capacity, int)):
            raise AdminError(400, "capacity: integer, null or \"auto\"")
        site = self.org.add_site(name, products, capacity)
        self.org._set_capacities()
        if body.get("groups", True):
            for r in site.products:
                g = self.org.add_group("%s-users-%s" % (r.ptype["slug"], site.name),
                                       "Grants %s access on %s" % (r.ptype["name"], site.name))
                self.org.group_assign(g, r, "atlassian/user", default="atlassian/user")
        return 200, self.site_truth(site)

    # ---------------------------------------------------------------- truth

    def truth(self, query):
        org = self.org
        out = {
            "org": {"id": org.org_id, "name": org.name, "domains": org.domains,
                    "seed": org.seed, "anchor": iso_ms(org.anchor_ms)},
            "directories": [{"id": d.id, "name": d.name} for d in org.directories],
            "sites": [self.site_truth(s) for s in org.sites],
            "groups": [self.group_truth(g) for g in org.groups],
            "counts": {"users": len(org.users),
                       "v2Users": sum(1 for u in org.users if u.in_v2),
                       "v1Users": sum(1 for u in org.users if u.in_v1),
                       "groups": len(org.groups),
                       "products": sum(len(s.products) for s in org.sites)},
        }
        if query.get("users", "true") != "false":
            try:
                offset = int(query.get("offset") or 0)
                limit = int(query["limit"]) if query.get("limit") else None
            except ValueError:
                raise AdminError(400, "offset and limit must be integers")
            users = org.users[offset:offset + limit] if limit is not None else org.users[offset:]
            out["users"] = [self.user_truth(u) for u in users]
        return out

    def truth_one(self, rest):
        kind, ref = rest
        if kind == "users":
            return 200, self.user_truth(self._user(ref))
        if kind == "groups":
            return 200, self.group_truth(self._group(ref))
        raise AdminError(404, "use /__sim/org/users/{id} or /__sim/org/groups/{id}")

    def site_truth(self, s):
        counts = self.org.billable_counts()
        return {"name": s.name, "cloudId": s.cloud_id, "hostUrl": s.host_url,
                "platformResourceId": s.platform.ari,
                "products": [{"id": r.ari, "key": r.owner, "v1Key": r.ptype["v1_key"],
                              "name": r.ptype["name"], "status": r.status,
                              "capacity": r.capacity, "billableCount": counts.get(r.idx, 0)}
                             for r in s.products]}

    def group_truth(self, g):
        org = self.org
        return {"id": g.id, "ari": g.ari, "name": g.name, "description": g.description,
                "directoryId": org.directories[g.directory].id,
                "externalSynced": g.external,
                "members": [org.by_seq[s].account_id for s in sorted(g.members)],
                "roleAssignments": [{"resourceId": org.resources[ri].ari,
                                     "resourceOwner": org.resources[ri].owner,
                                     "roles": sorted(rr), "defaultRole": d}
                                    for ri, (rr, d) in g.roles.items()]}

    def user_truth(self, u):
        org = self.org
        roles = org.roles_of(u)
        billable = [org.resources[ri].ari for ri, rr in roles.items()
                    if rr.keys() & {"atlassian/user", "atlassian/admin"}]
        apis = [a for a, ok in (("v2", u.in_v2), ("v1", u.in_v1)) if ok]
        d = {"accountId": u.account_id, "accountType": u.account_type, "apis": apis,
             "name": u.name, "nickname": u.nickname, "email": u.email,
             "emailVerified": u.email_verified, "claimStatus": u.claim,
             "accountStatus": u.account_status, "membershipStatus": u.membership,
             "status": u.status, "mfaEnabled": u.mfa,
             "managementSource": u.management_source}
        for key, (attr, _t) in USER_FIELDS.items():
            if key not in d:
                d[key] = getattr(u, attr)
        d.pop("forDeletion", None)
        d["directoryId"] = org.directories[u.directory].id if u.directory is not None else None
        d["addedToOrg"] = iso_ms(u.added_ms) if u.added_ms is not None else None
        d["deactivatedOn"] = iso_ms(u.deactivated_ms) if u.deactivated_ms else None
        d["groups"] = [org.groups[gi].id for gi in u.groups]
        d["platformRoles"] = org.platform_roles(u)
        d["roles"] = [{"resourceId": org.resources[ri].ari, "role": role, "methods": m}
                      for ri, rr in roles.items() for role, m in sorted(rr.items())]
        d["billableOn"] = billable
        d["accessBillable"] = bool(billable) and u.account_status == "active" \
            and u.membership == "active"
        d["activity"] = [{"resourceId": org.resources[ri].ari,
                          "key": org.resources[ri].owner,
                          "lastActiveTimestamp": iso_ms(ms)} for ri, ms in u.activity.items()]
        last = u.last_active_ms
        d["lastActive"] = iso_ms(last) if last is not None else None
        return d
