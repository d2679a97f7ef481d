"""The simulated organization: deterministic generator, derived data and
mutations.

Everything is generated up front from one seeded random stream, so the same
seed and sizes give the same org, byte for byte, and user N does not depend
on how many users come after it.  Generating 100,000 users takes about
three seconds.
"""

import random
import time

from . import names
from .model import (BILLABLE, CAPACITY_TIERS, DAY_MS, NO_ACCESS, PLATFORM_ROLES,
                    PRODUCT_TYPES, Directory, Group, Resource, Site, User, ascii_fold)
from .util import uuid_from

SHOWCASE = [
    dict(name="Zoë Müller", org_admin=True),
    dict(name="Łukasz Nowak", org_admin=True, site_admin=True),
    dict(name="李雷"),
    dict(name="José García", membership="suspended"),
    dict(name="Renée Dubois", account_status="inactive"),
    dict(name="Søren Jørgensen", claim="unmanaged", email=None),
    dict(name="Siobhán O'Brien", never_active=True),
    dict(account_type="app"),
    dict(account_type="customer", name="Çağla Öztürk"),
    dict(name="Ólafur Ólafsson", membership="no_membership"),
    dict(name="Małgorzata Kowalczyk", account_status="inactive", for_deletion=True),
    dict(name="Jürgen Schröder", account_status="closed"),
    dict(name="韩梅梅", claim="unmanaged"),
    dict(name="Nguyễn Tanaka", guest=True),
]


class Org:
    """The org and every fact the APIs expose about it."""

    def __init__(self, org_id, seed=1, users=100, sites=2, groups=10,
                 directories=1, anchor_ms=None):
        self.org_id = org_id
        self.seed = seed
        self.anchor_ms = anchor_ms if anchor_ms is not None else 1785542400000  # 2026-08-01
        self.rng = random.Random("umlo-sim:%s:%s" % (seed, org_id))
        rng = self.rng
        self.company = rng.choice(names.COMPANIES)
        slug = self.company.lower()
        self.name = "%s Corporation" % self.company
        self.domains = ["%s.example" % slug, "%s-labs.example" % slug]
        self.resources = []
        self.res_by_ari = {}
        self.sites = []
        self.directories = []
        self.groups = []
        self.group_by_id = {}    # by plain id and by group ARI
        self.group_by_name = {}
        self.users = []          # ordered by seq: the default listing order
        self.by_id = {}
        self.by_seq = {}
        self.next_seq = 0
        self.gen = 0             # bumped by every mutation
        self._bulk = False
        self._cache = {}         # derived data, dropped on mutation
        self._fragments = {}     # serialized users, dropped on mutation
        self._emails = set()
        self._email_next = {}    # local@domain -> next number to try
        self._folded = {}        # display name -> ASCII email local part

        self.org_resource = self._add_resource(
            "ari:cloud:platform::org/%s" % org_id, "platform", "org", None, self.name)
        for d in range(max(1, directories)):
            name = "%s directory" % self.company if d == 0 else "Contractors directory %d" % d
            self.directories.append(Directory(d, uuid_from(rng), name))
        for _ in range(sites):
            self.add_site()
        self._make_groups(groups)
        self._bulk = True        # no cache flush per generated user
        for _ in range(users):
            self.add_user()
        self._bulk = False
        self.touch()
        self._set_capacities()
        self.gen = 0

    # ------------------------------------------------------------------ sites

    def _add_resource(self, ari, owner, kind, site, name, **kw):
        r = Resource(len(self.resources), ari, owner, kind, site, name, **kw)
        self.resources.append(r)
        self.res_by_ari[ari] = r
        return r

    def add_site(self, name=None, products=None, capacity="auto"):
        """Connect a site with its products.  products: list of owner keys;
        by default Jira Software and Confluence plus a random extra few."""
        rng = self.rng
        idx = len(self.sites)
        name = name or "site-%d" % (idx + 1)
        created = self.anchor_ms - rng.randrange(400, 3000) * DAY_MS
        site = Site(idx, uuid_from(rng), name, created)
        if products is None:
            products = ["jira-software", "confluence"]
            if rng.random() < 0.7:
                products.append("jira-servicedesk")
            if rng.random() < 0.4:
                products.append("jira-core")
        for owner in products:
            if owner not in PRODUCT_TYPES:
                raise ValueError("unknown product %r" % owner)
            status = "offline" if rng.random() < 0.06 else "online"
            cap = capacity if capacity != "auto" else "auto"
            res = self._add_resource("ari:cloud:%s::site/%s" % (owner, site.cloud_id),
                                     owner, "product", site, name, status=status,
                                     capacity=cap,
                                     created_ms=created + rng.randrange(0, 90) * DAY_MS)
            site.products.append(res)
        site.platform = self._add_resource("ari:cloud:platform::site/%s" % site.cloud_id,
                                           "platform", "site", site, name)
        self.sites.append(site)
        self.touch()
        return site

    def _set_capacities(self):
        """Seat capacity a little above the billable count, or null for about
        a quarter of products (the API allows null)."""
        counts = self.billable_counts()
        for r in self.resources:
            if r.kind == "product" and r.capacity == "auto":
                if self.rng.random() < 0.25:
                    r.capacity = None
                else:
                    need = counts.get(r.idx, 0) * 1.15 + 5
                    r.capacity = next((t for t in CAPACITY_TIERS if t >= need), int(need))

    # ----------------------------------------------------------------- groups

    def _make_groups(self, count):
        """Product-access groups first (they are what grants licences), then
        site admins, team groups, per-site admin groups, then filler."""
        plans = []
        for site in self.sites:
            for res in site.products:
                pt = res.ptype
                plans.append(("%s-users-%s" % (pt["slug"], site.name),
                              "Grants %s access on %s" % (pt["name"], site.name),
                              [(res, "atlassian/user", True)]))
        plans.append(("site-admins", "Site administrators for every site",
                      [(s.platform, "atlassian/site-admin", False) for s in self.sites]))
        teams = list(names.TEAM_GROUPS)
        plans += [self._team_plan(*t) for t in teams[:3]]
        for site in self.sites:
            plans.append(("administrators-%s" % site.name,
                          "Product admins on %s" % site.name,
                          [(r, "atlassian/admin", False) for r in site.products
                           if r.owner in ("jira-software", "confluence")]))
        plans += [self._team_plan(*t) for t in teams[3:]]
        n = 0
        while len(plans) < count:
            n += 1
            plans.append(("team-%d" % n, "Generated team %d" % n, []))
        for name, desc, grants in plans[:count]:
            g = self.add_group(name, desc, external=self.rng.random() < 0.2)
            for res, role, default in grants:
                self.group_assign(g, res, role, default=role if default else None)

    # Team groups that also grant something: overlapping billable access
    # (engineering), a non-billable role (contractors are Confluence guests)
    # and agents (support).
    TEAM_GRANTS = {"engineering": ("jira-software", "atlassian/user"),
                   "contractors": ("confluence", "atlassian/guest"),
                   "support-l1": ("jira-servicedesk", "atlassian/user")}

    def _team_plan(self, name, desc):
        grants = []
        want = self.TEAM_GRANTS.get(name)
        if want:
            res = next((r for s in self.sites for r in s.products if r.owner == want[0]), None)
            if res:
                grants.append((res, want[1], False))
        return (name, desc, grants)

    def add_group(self, name, description=None, external=False, directory=0):
        g = Group(len(self.groups), uuid_from(self.rng), name, description,
                  directory, external)
        self.groups.append(g)
        self.group_by_id[g.id] = g
        self.group_by_id[g.ari] = g
        self.group_by_name.setdefault(name, g)
        self.touch()
        return g

    def group_named(self, name):
        return self.group_by_name.get(name)

    def team_groups(self):
        """Groups that are not about product access or admin rights."""
        def build():
            access = tuple(p["slug"] + "-users-" for p in PRODUCT_TYPES.values())
            return [g for g in self.groups if g.directory == 0
                    and not g.name.startswith(access + ("administrators-",))
                    and g.name != "site-admins"]
        return self.cached("teams", build)

    # ------------------------------------------------------------------ users

    def add_user(self, spec=None):
        """Create one user: scripted for the first seqs, random after that;
        spec (admin API) overrides any generated field."""
        seq = self.next_seq
        self.next_seq += 1
        plan = {}
        if seq < len(SHOWCASE) and spec is None:
            # Scripted users are plain managed members unless stated.
            plan = dict(claim="managed", account_status="active",
                        membership="active", for_deletion=False)
            plan.update(SHOWCASE[seq])
        plan.update(spec or {})
        u = self._generate(seq, plan)
        self.users.append(u)
        self.by_id[u.account_id] = u
        self.by_seq[seq] = u
        for gi in u.groups:
            self.groups[gi].members.add(seq)
        self.touch()
        return u

    def _generate(self, seq, plan):
        rng = self.rng
        u = User(seq)
        r = rng.random()
        u.account_type = plan.get("account_type") or (
            "app" if r < 0.02 else "customer" if r < 0.05 else "atlassian")
        u.account_id = plan.get("account_id") or self._account_id(u.account_type)
        u.added_ms = self.anchor_ms - rng.randrange(30 * DAY_MS, 5 * 365 * DAY_MS)
        if u.account_type == "app":
            self._gen_app(u, plan)
        elif u.account_type == "customer":
            self._gen_customer(u, plan)
        else:
            self._gen_atlassian(u, plan)
        self._gen_activity(u, plan)
        for key in ("email_verified", "mfa", "job_title", "department", "location",
                    "time_zone", "organization", "management_source", "directory",
                    "nickname"):
            if key in plan:
                setattr(u, key, plan[key])
        return u

    def _account_id(self, account_type):
        rng = self.rng
        if account_type == "customer":
            return "qm:%s:%s" % (uuid_from(rng), uuid_from(rng))
        if account_type == "app" or rng.random() < 0.6:
            return "%d:%s" % (rng.choice((557058, 712020, 630219)), uuid_from(rng))
        return "%024x" % rng.getrandbits(96)   # older 24-hex account ids

    def _person_name(self, plan):
        rng = self.rng
        if plan.get("name"):
            return plan["name"]
        if rng.random() < 0.06:
            return rng.choice(names.CJK_NAMES)
        return "%s %s" % (rng.choice(names.FIRST_NAMES), rng.choice(names.LAST_NAMES))

    def _email(self, name, domain):
        local = self._folded.get(name)
        if local is None:
            local = ".".join(ascii_fold(name).lower().replace("-", " ").split()) or "user"
            self._folded[name] = local
        base = "%s@%s" % (local, domain)
        n = self._email_next.get(base, 1)
        email = base if n == 1 else "%s%d@%s" % (local, n, domain)
        while email in self._emails:      # only after admin-given emails
            n += 1
            email = "%s%d@%s" % (local, n, domain)
        self._email_next[base] = n + 1
        self._emails.add(email)
        return email

    def _gen_atlassian(self, u, plan):
        rng = self.rng
        u.name = self._person_name(plan)
        u.nickname = u.name.split()[0] if rng.random() < 0.8 else u.name
        u.claim = plan.get("claim") or ("managed" if rng.random() < 0.78 else "unmanaged")
        managed = u.claim == "managed"
        if "email" in plan:
            u.email = plan["email"]
            if u.email:
                self._emails.add(u.email)
        elif managed:
            u.email = self._email(u.name, self.domains[0 if rng.random() < 0.85 else 1])
        elif rng.random() < 0.12:
            u.email = None            # profile visibility hides it
        else:
            u.email = self._email(u.name, rng.choice(names.PUBLIC_DOMAINS))
        u.email_verified = rng.random() < 0.95
        r = rng.random()
        u.account_status = plan.get("account_status") or (
            "inactive" if r < 0.08 else "closed" if r < 0.10 else "active")
        r = rng.random()
        u.membership = plan.get("membership") or (
            "active" if u.account_status != "active" or r >= 0.08
            else "suspended" if r < 0.05 else "no_membership")
        u.for_deletion = bool(plan.get("for_deletion",
                                       managed and u.account_status == "inactive"
                                       and rng.random() < 0.2))
        if u.account_status != "active":
            u.deactivated_ms = u.added_ms + rng.randrange(0, self.anchor_ms - u.added_ms)
        if managed:
            r = rng.random()
            u.management_source = "invited" if r < 0.6 else "synced" if r < 0.95 else None
            u.mfa = rng.random() < 0.7
            u.job_title = rng.choice(names.JOB_TITLES) if rng.random() < 0.8 else None
            u.department = rng.choice(names.DEPARTMENTS) if rng.random() < 0.7 else None
            u.location = rng.choice(names.LOCATIONS) if rng.random() < 0.6 else None
            u.organization = self.company if rng.random() < 0.7 else None
        else:
            u.mfa = rng.random() < 0.2
        u.time_zone = rng.choice(names.TIME_ZONES) if rng.random() < 0.85 else None
        if u.membership == "no_membership":
            u.directory = None
            return
        if len(self.directories) > 1 and rng.random() < 0.2:
            u.directory = rng.randrange(1, len(self.directories))
        else:
            u.directory = 0
        if not plan.get("explicit"):
            self._gen_access(u, plan)

    def _gen_access(self, u, plan):
        """Group memberships and direct role assignments for a member."""
        rng = self.rng
        groups, direct = set(), []
        in_dir0 = u.directory == 0      # generated groups live in directory 0
        for site in self.sites:
            if rng.random() >= (0.9 if site.idx == 0 else 0.5):
                continue
            for res in site.products:
                if rng.random() >= res.ptype["reach"]:
                    continue
                g = self.group_named("%s-users-%s" % (res.ptype["slug"], site.name))
                if g and in_dir0:
                    groups.add(g.idx)
                else:
                    direct.append((res.idx, "atlassian/user"))
            if rng.random() < 0.03:
                g = self.group_named("administrators-%s" % site.name)
                if g and in_dir0:
                    groups.add(g.idx)
                else:
                    direct += [(r.idx, "atlassian/admin") for r in site.products[:2]]
        if plan.get("site_admin") or rng.random() < 0.015:
            g = self.group_named("site-admins")
            if g and in_dir0:
                groups.add(g.idx)
            else:
                direct += [(s.platform.idx, "atlassian/site-admin") for s in self.sites]
        team = self.team_groups()
        if team and in_dir0:
            for g in rng.sample(team, min(len(team), rng.choice((0, 1, 1, 2, 3)))):
                groups.add(g.idx)
        # Non-billable and odd roles, given directly as admins usually do.
        products = [r for s in self.sites for r in s.products]
        for owner, role, p in (("confluence", "atlassian/guest", 0.04),
                               ("jira-servicedesk", "atlassian/customer", 0.04),
                               ("jira-servicedesk", "atlassian/stakeholder", 0.01),
                               ("jira-core", "atlassian/contributor", 0.01),
                               ("jira-software", "atlassian/basic", 0.01),
                               ("jira-software", "atlassian/user-access-admin", 0.01)):
            forced = plan.get("guest") and role == "atlassian/guest"
            if forced or rng.random() < p:
                cands = [r for r in products if r.owner == owner]
                if cands:
                    direct.append((rng.choice(cands).idx, role))
        if plan.get("org_admin") or rng.random() < 0.002:
            direct.append((self.org_resource.idx, "atlassian/org-admin"))
        u.groups = sorted(groups)
        u.direct = list(dict.fromkeys(direct))

    def _gen_app(self, u, plan):
        rng = self.rng
        u.name = plan.get("name") or "%s %d" % (rng.choice(names.BOT_NAMES), u.seq)
        u.nickname = u.name
        u.email = plan.get("email")
        u.claim = "managed"       # the org owns its app accounts
        products = [r for s in self.sites for r in s.products]
        if products and not plan.get("explicit"):
            u.direct = [(rng.choice(products).idx, "atlassian/user")]

    def _gen_customer(self, u, plan):
        rng = self.rng
        u.name = self._person_name(plan)
        u.nickname = u.name
        u.email = plan["email"] if "email" in plan else self._email(
            u.name, rng.choice(names.PUBLIC_DOMAINS))
        u.claim = "managed"       # listed by v1 /users with the org's accounts
        jsm = [r for s in self.sites for r in s.products if r.owner == "jira-servicedesk"]
        if jsm and not plan.get("explicit"):
            u.direct = [(rng.choice(jsm).idx, "atlassian/customer")]

    def _gen_activity(self, u, plan):
        """Last-active per product instance over the two years before the
        anchor, skewed to recent; some users never logged in at all."""
        rng = self.rng
        if (plan.get("never_active") or plan.get("explicit")
                or u.membership == "no_membership" or rng.random() < 0.12):
            return
        end = u.deactivated_ms or self.anchor_ms
        start = max(u.added_ms, self.anchor_ms - 730 * DAY_MS)
        if end <= start:
            return
        access = [ri for ri, role in self.grants_of(u)
                  if role not in NO_ACCESS and self.resources[ri].kind == "product"]
        products = [r.idx for s in self.sites for r in s.products]
        if products and rng.random() < 0.05:
            access.append(rng.choice(products))        # stale: access since removed
        for ri in sorted(set(access)):
            if rng.random() < 0.85:
                r = rng.random()
                span = end - start
                back = (rng.random() * min(span, 30 * DAY_MS) if r < 0.55 else
                        rng.random() * min(span, 180 * DAY_MS) if r < 0.8 else
                        rng.random() * span)
                u.activity[ri] = int(end - back)

    # ------------------------------------------------------------ derived data

    def touch(self):
        """Record a mutation: drop every derived cache."""
        self.gen += 1
        if not self._bulk:
            self._cache.clear()
            self._fragments.clear()

    def cached(self, key, build):
        v = self._cache.get(key)
        if v is None:
            v = self._cache[key] = build()
        return v

    # Serialized users are the hot path of paging, but 100k of them per
    # expand combination would cost hundreds of MB: keep the most recent
    # FRAGMENTS only (a full sync walks each page once anyway; repeated
    # walks of small orgs, and load tests, hit the cache).
    FRAGMENTS = 30000

    def fragment(self, key, build):
        v = self._fragments.get(key)
        if v is None:
            if len(self._fragments) >= self.FRAGMENTS:
                self._fragments.clear()
            v = self._fragments[key] = build()
        return v

    def group_grants(self):
        """Per group idx, the sorted (resource idx, role) pairs it grants."""
        return self.cached("grants", lambda: [
            tuple(sorted((ri, role) for ri, (roles, _d) in g.roles.items() for role in roles))
            for g in self.groups])

    def roles_of(self, u):
        """{resource idx: {role: [methods]}} with methods "direct" and/or
        "group_direct", from direct grants and every group of the user.
        Not cached: it is cheap, and caching it for 100k users costs more
        memory than it saves time."""
        out = {}
        for ri, role in u.direct:
            out.setdefault(ri, {})[role] = ["direct"]
        grants = self.group_grants()
        for gi in u.groups:
            for ri, role in grants[gi]:
                m = out.setdefault(ri, {}).setdefault(role, [])
                if "group_direct" not in m:
                    m.append("group_direct")
        return {ri: out[ri] for ri in sorted(out)}

    def grants_of(self, u):
        """Every (resource idx, role) the user holds, however it came."""
        grants = self.group_grants()
        out = set(u.direct)
        for gi in u.groups:
            out.update(grants[gi])
        return out

    def platform_roles(self, u):
        return sorted({role for _ri, role in self.grants_of(u) if role in PLATFORM_ROLES})

    def billable_counts(self):
        """Seats used per product: active members holding user or admin."""
        def build():
            counts = {}
            for u in self.users:
                if u.account_status != "active" or u.membership != "active":
                    continue
                for ri in {ri for ri, role in self.grants_of(u) if role in BILLABLE}:
                    counts[ri] = counts.get(ri, 0) + 1
            return counts
        return self.cached("billable", build)

    def members_sorted(self, group_idxs):
        key = ("members", tuple(sorted(group_idxs)))

        def build():
            seqs = set()
            for gi in group_idxs:
                seqs |= self.groups[gi].members
            return [self.by_seq[s] for s in sorted(seqs)]
        return self.cached(key, build)

    def users_by_nickname(self):
        return self.cached("by_nick", lambda: sorted(
            self.users, key=lambda u: ((u.nickname or "").casefold(), u.seq)))

    def directory_by_id(self, directory_id):
        return next((d for d in self.directories if d.id == directory_id), None)

    # -------------------------------------------------------------- mutations

    def now_ms(self):
        return int(time.time() * 1000)

    def suspend(self, u):
        u.membership = "suspended"
        self.touch()

    def restore(self, u):
        u.membership = "active"
        if u.directory is None:
            u.directory = 0
        self.touch()

    def deactivate(self, u):
        if u.account_status == "active":
            u.account_status = "inactive"
            u.deactivated_ms = self.now_ms()
        self.touch()

    def activate(self, u):
        u.account_status = "active"
        u.for_deletion = False
        u.deactivated_ms = None
        self.touch()

    def close(self, u):
        u.account_status = "closed"
        u.deactivated_ms = u.deactivated_ms or self.now_ms()
        self.touch()

    def add_member(self, g, u):
        g.members.add(u.seq)
        if g.idx not in u.groups:
            u.groups = sorted(u.groups + [g.idx])
        self.touch()

    def remove_member(self, g, u):
        g.members.discard(u.seq)
        if g.idx in u.groups:
            u.groups = [x for x in u.groups if x != g.idx]
        self.touch()

    def group_assign(self, g, res, role, default=None):
        entry = g.roles.setdefault(res.idx, [set(), None])
        entry[0].add(role)
        if default:
            entry[1] = default
        self.touch()

    def group_revoke(self, g, res, role):
        entry = g.roles.get(res.idx)
        if entry and role in entry[0]:
            entry[0].discard(role)
            if entry[1] == role:
                entry[1] = None
            if not entry[0]:
                del g.roles[res.idx]
        self.touch()

    def user_assign(self, u, res, role):
        if (res.idx, role) not in u.direct:
            u.direct.append((res.idx, role))
        self.touch()

    def user_revoke(self, u, res, role):
        u.direct = [d for d in u.direct if d != (res.idx, role)]
        self.touch()

    def remove_user(self, u):
        for gi in u.groups:
            self.groups[gi].members.discard(u.seq)
        self.users.remove(u)
        del self.by_id[u.account_id]
        del self.by_seq[u.seq]
        self.touch()

    def set_activity(self, u, res, ms):
        if ms is None:
            u.activity.pop(res.idx, None)
        else:
            u.activity[res.idx] = int(ms)
        u.activity = {k: u.activity[k] for k in sorted(u.activity)}
        self.touch()
