"""Organizations API v1: the legacy user list, last-active dates and the
org-level role assignment calls.  snake_case fields; /users pages link to
the next page with a full URL whose `cursor` parameter is the cursor."""

from urllib.parse import quote

from . import paging
from . import validate as V
from .common import decode_cursor
from .errors import ApiError
from .model import BILLABLE
from .util import iso_date, iso_s


def user_view(ctx, u):
    """A v1 `User`.  product_access lists products the user has used."""
    org = ctx.org
    d = {"account_id": u.account_id, "account_type": u.account_type,
         "account_status": u.account_status, "name": u.name,
         "picture": "https://avatar-management.example/%s/128" % u.account_id}
    if u.email is not None:
        d["email"] = u.email
    d["access_billable"] = (u.account_status == "active" and u.membership == "active"
                            and any(role in BILLABLE for _r, role in org.grants_of(u)))
    last = u.last_active_ms
    if last is not None:
        d["last_active"] = iso_s(last)
    products = []
    for ri, ms in u.activity.items():
        r = org.resources[ri]
        products.append({"key": r.ptype["v1_key"], "name": r.ptype["name"],
                         "url": r.site.host_url, "last_active": iso_s(ms)})
    d["product_access"] = products
    d["links"] = {"self": "%s/users/%s/manage/profile"
                           % (ctx.base_url, quote(u.account_id, safe=""))}
    return d


def users(ctx):
    """GET /v1/orgs/{orgId}/users: managed accounts, fixed page size."""
    p = V.query_params(ctx.req.query)
    after, count = None, 0
    if p.get("cursor"):
        _q, after, count = decode_cursor(ctx, "v1users", p["cursor"])
    org = ctx.org
    key = lambda u: [u.seq]
    pred = lambda u: u.in_v1
    got, more = paging.page(org.users, key, after, ctx.sim.settings.v1_page_size, pred,
                            count=count, cap=ctx.sim.faults.page_cap)
    base = "%s/admin/v1/orgs/%s/users" % (ctx.base_url, org.org_id)
    links = {"self": base + ("?cursor=" + quote(p["cursor"], safe="") if p.get("cursor") else "")}
    if more:
        token = ctx.sim.cursors.encode("v1users", {}, key(got[-1]), count + len(got))
        links["next"] = base + "?cursor=" + quote(token, safe="")
    total = org.cached("v1total", lambda: sum(1 for u in org.users if u.in_v1))
    return 200, {"data": [user_view(ctx, u) for u in got], "links": links,
                 "meta": {"total": total}}


def last_active_dates(ctx):
    org = ctx.org
    u = org.by_id.get(ctx.params["accountId"])
    if u is None:
        raise ApiError(404, "ADMIN-404-8", "User %s was not found" % ctx.params["accountId"])
    p = V.query_params(ctx.req.query)
    after, count = None, 0
    if p.get("cursor"):
        subject, after, count = decode_cursor(ctx, "lad", p["cursor"])
        if subject != u.account_id:
            raise ApiError(400, "ADMIN-400-1", "The cursor belongs to another user")
    entries = list(u.activity.items())
    key = lambda e: [e[0]]
    got, more = paging.page(entries, key, after, ctx.sim.settings.activity_page_size,
                            count=count, cap=ctx.sim.faults.page_cap)
    access = []
    for ri, ms in got:
        r = org.resources[ri]
        access.append({"id": r.ari, "key": r.ptype["v1_key"],
                       "last_active": iso_date(ms), "last_active_timestamp": iso_s(ms)})
    data = {"product_access": access,
            "added_to_org": iso_date(u.added_ms) if u.added_ms is not None else None,
            "added_to_org_timestamp": iso_s(u.added_ms) if u.added_ms is not None else None}
    links = {}
    if more:
        links["next"] = ctx.sim.cursors.encode("lad", u.account_id, key(got[-1]),
                                               count + len(got))
    return 200, {"data": data, "links": links}


def _org_role(ctx):
    body = V.parse_json(ctx.req.body, "ADMIN-UAM-400-1", required=True)
    body = V.check_object(body, {"role": V.enum(("atlassian/org-admin",))},
                          "ADMIN-UAM-400-1", required=("role",))
    u = ctx.org.by_id.get(ctx.params["userId"])
    if u is None:
        raise ApiError(404, "ADMIN-UAM-404-3", "User %s was not found" % ctx.params["userId"])
    return u, body["role"]


def org_role_assign(ctx):
    u, role = _org_role(ctx)
    ctx.org.user_assign(u, ctx.org.org_resource, role)
    return 204, None


def org_role_revoke(ctx):
    u, role = _org_role(ctx)
    ctx.org.user_revoke(u, ctx.org.org_resource, role)
    return 204, None
