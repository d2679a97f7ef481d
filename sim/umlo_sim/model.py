"""Facts of the simulated org: product types, role sets and the record
classes (resources, sites, directories, groups, users).

The classes use __slots__ and small ints/tuples so that 100,000 users fit
in well under 200 MB; behaviour lives in data.Org, JSON views in the api_*
modules."""

import unicodedata

from . import names

DAY_MS = 86400 * 1000

# Product types the generator puts on sites, keyed by the resource owner used
# in ARIs and in the workspaces API (`attributes.type`).  v1 spells some keys
# differently (its `key` enum has `jira-service-desk`), hence v1_key.
#   roles: roles a product accepts in role assignments
#   reach: chance that a user with access to the site uses this product
PRODUCT_TYPES = {
    "jira-software": dict(name="Jira Software", v1_key="jira-software",
                          slug="jira-software", reach=0.80,
                          roles=("atlassian/user", "atlassian/admin",
                                 "atlassian/basic", "atlassian/user-access-admin")),
    "confluence": dict(name="Confluence", v1_key="confluence",
                       slug="confluence", reach=0.70,
                       roles=("atlassian/user", "atlassian/admin",
                              "atlassian/guest", "atlassian/viewer",
                              "atlassian/user-access-admin")),
    "jira-servicedesk": dict(name="Jira Service Management",
                             v1_key="jira-service-desk",
                             slug="jira-servicemanagement", reach=0.30,
                             roles=("atlassian/user", "atlassian/admin",
                                    "atlassian/customer", "atlassian/stakeholder",
                                    "atlassian/user-access-admin")),
    "jira-core": dict(name="Jira Work Management", v1_key="jira-core",
                      slug="jira-workmanagement", reach=0.40,
                      roles=("atlassian/user", "atlassian/admin",
                             "atlassian/contributor",
                             "atlassian/user-access-admin")),
}

# Roles that cost a seat (see the README's role table).
BILLABLE = frozenset(("atlassian/user", "atlassian/admin"))
# Roles that do not let the user into the product at all.
NO_ACCESS = frozenset(("atlassian/user-access-admin", "atlassian/org-admin",
                       "atlassian/site-admin"))
# Roles reported in v2 `platformRoles` (the PlatformRole enum).
PLATFORM_ROLES = frozenset(("atlassian/org-admin", "atlassian/site-admin",
                            "atlassian/user-access-admin", "atlassian/ai-access"))
# Every role id the APIs name.
ALL_ROLES = ("atlassian/user", "atlassian/admin", "atlassian/guest",
             "atlassian/customer", "atlassian/user-access-admin",
             "atlassian/contributor", "atlassian/basic",
             "atlassian/stakeholder", "atlassian/org-admin",
             "atlassian/site-admin", "atlassian/ai-access", "atlassian/viewer")

CAPACITY_TIERS = (10, 25, 50, 100, 150, 200, 250, 300, 400, 500, 750, 1000,
                  1500, 2000, 3000, 5000, 10000, 20000, 35000, 50000, 100000,
                  150000, 250000)

# The first users are scripted so that even a 20-user org shows every case
# the module must handle; the rest are drawn at random.
class Resource:
    """A product instance (workspace), a site's platform resource (for the
    site-admin role) or the org itself (for the org-admin role)."""
    __slots__ = ("idx", "ari", "owner", "kind", "site", "name", "status",
                 "capacity", "created_ms")

    def __init__(self, idx, ari, owner, kind, site, name, status="online",
                 capacity=None, created_ms=None):
        self.idx, self.ari, self.owner, self.kind = idx, ari, owner, kind
        self.site, self.name, self.status = site, name, status
        self.capacity, self.created_ms = capacity, created_ms

    @property
    def ptype(self):
        return PRODUCT_TYPES.get(self.owner)


class Site:
    __slots__ = ("idx", "cloud_id", "name", "host_url", "products", "platform",
                 "created_ms")

    def __init__(self, idx, cloud_id, name, created_ms):
        self.idx, self.cloud_id, self.name = idx, cloud_id, name
        self.host_url = "https://%s.atlassian.net" % name
        self.products = []        # Resource, kind "product"
        self.platform = None      # Resource, kind "site"
        self.created_ms = created_ms


class Directory:
    __slots__ = ("idx", "id", "name")

    def __init__(self, idx, id_, name):
        self.idx, self.id, self.name = idx, id_, name


class Group:
    __slots__ = ("idx", "id", "name", "description", "directory", "external",
                 "members", "roles")

    def __init__(self, idx, id_, name, description, directory, external):
        self.idx, self.id, self.name = idx, id_, name
        self.description, self.directory, self.external = description, directory, external
        self.members = set()   # user seqs
        # resource idx -> [set of role ids, default role or None]; insertion
        # ordered so output order is stable.
        self.roles = {}

    @property
    def ari(self):
        return "ari:cloud:identity::group/" + self.id


class User:
    """One account.  Optional profile fields are None when absent."""
    __slots__ = ("seq", "account_id", "account_type", "name", "nickname",
                 "email", "email_verified", "claim", "account_status",
                 "membership", "for_deletion", "management_source", "mfa",
                 "job_title", "department", "location", "time_zone",
                 "organization", "directory", "added_ms", "deactivated_ms",
                 "groups", "direct", "activity")

    def __init__(self, seq):
        self.seq = seq
        self.account_type = "atlassian"
        self.email = None
        self.email_verified = True
        self.claim = "managed"
        self.account_status = "active"
        self.membership = "active"
        self.for_deletion = False
        self.management_source = None
        self.mfa = False
        self.job_title = self.department = self.location = None
        self.time_zone = self.organization = None
        self.directory = 0
        self.added_ms = None
        self.deactivated_ms = None
        self.groups = []      # group idxs, ascending
        self.direct = []      # [(resource idx, role id)]
        self.activity = {}    # resource idx -> epoch ms of last activity

    @property
    def status(self):
        """The composite v2 `status` (see the Status schema)."""
        if self.for_deletion:
            return "for_deletion"
        if self.account_status != "active":
            return "deactivated"
        return {"active": "active", "suspended": "suspended",
                "no_membership": "not_invited"}[self.membership]

    @property
    def in_v2(self):
        # v2's AccountType enum only has "atlassian": app and customer
        # accounts are visible through v1 only.
        return self.account_type == "atlassian"

    @property
    def in_v1(self):
        # v1 /users "returns a list of managed accounts".
        return self.claim == "managed"

    @property
    def last_active_ms(self):
        return max(self.activity.values()) if self.activity else None


def ascii_fold(text):
    """Display name -> ASCII for email local parts ("Łukasz" -> "Lukasz")."""
    text = "".join(names.ASCII_FOLD.get(c, c) for c in text)
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if c.isascii() and (c.isalnum() or c in " -.")).strip()
