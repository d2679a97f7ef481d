"""v2 write calls: suspend/restore, group memberships and group role
assignments.  Each refuses what Atlassian refuses (IdP-synced groups,
duplicate members, roles a product does not have, seat capacity)."""

from . import validate as V
from .common import find_group, path_directory, v2_user
from .model import BILLABLE, PRODUCT_TYPES
from .errors import ApiError

# roleId values the group assign/revoke calls accept (their description).
GROUP_ASSIGNABLE = ("atlassian/user", "atlassian/user-access-admin",
                    "atlassian/admin", "atlassian/guest", "atlassian/contributor",
                    "atlassian/customer", "atlassian/basic",
                    "atlassian/stakeholder", "atlassian/viewer")


def user_suspend(ctx):
    u = v2_user(ctx, ctx.params["accountId"], path_directory(ctx))
    ctx.org.suspend(u)
    return 204, None


def user_restore(ctx):
    u = v2_user(ctx, ctx.params["accountId"], path_directory(ctx))
    ctx.org.restore(u)
    return 204, None


def _check_capacity(org, users, grants):
    """ADMIN-409-3 when granting billable roles would exceed a product's
    seat capacity.  users: who gains the grants; grants: (res idx, role)."""
    counts = org.billable_counts()
    for ri in sorted({ri for ri, role in grants if role in BILLABLE}):
        cap = org.resources[ri].capacity
        if cap is None:
            continue
        new = sum(1 for u in users
                  if u.account_status == "active" and u.membership == "active"
                  and not any(r == ri and ro in BILLABLE for r, ro in org.grants_of(u)))
        if new and counts.get(ri, 0) + new > cap:
            raise ApiError(409, "ADMIN-409-3", "Adding %d user(s) exceeds the %d seats of %s"
                           % (new, cap, org.resources[ri].ari))


def membership_add(ctx):
    directory = path_directory(ctx)
    g = find_group(ctx, ctx.params["groupId"], directory)
    body = V.check_object(V.parse_json(ctx.req.body, required=True),
                          {"accountId": V.string}, required=("accountId",))
    u = v2_user(ctx, body["accountId"], None)
    if g.external:
        raise ApiError(403, "ADMIN-403-5", "Group %s is synced from an identity provider" % g.id)
    if u.seq in g.members:
        raise ApiError(409, "ADMIN-409-28", "User %s is already in group %s" % (u.account_id, g.id))
    _check_capacity(ctx.org, [u], ctx.org.group_grants()[g.idx])
    ctx.org.add_member(g, u)
    return 204, None


def membership_remove(ctx):
    directory = path_directory(ctx)
    g = find_group(ctx, ctx.params["groupId"], directory)
    u = v2_user(ctx, ctx.params["accountId"], None)
    if g.external:
        raise ApiError(403, "ADMIN-403-5", "Group %s is synced from an identity provider" % g.id)
    ctx.org.remove_member(g, u)
    return 204, None


def _role_body(ctx):
    body = V.check_object(V.parse_json(ctx.req.body, required=True),
                          {"resourceId": V.string, "roleId": V.enum(GROUP_ASSIGNABLE)},
                          required=("resourceId", "roleId"))
    r = ctx.org.res_by_ari.get(body["resourceId"])
    if r is None or r.kind != "product":
        raise ApiError(400, "ADMIN-400-4", "Unknown resource %s" % body["resourceId"])
    if body["roleId"] not in PRODUCT_TYPES[r.owner]["roles"]:
        raise ApiError(400, "ADMIN-400-4", "Role %s is not available on %s"
                       % (body["roleId"], r.owner))
    return r, body["roleId"]


def group_role_assign(ctx):
    g = find_group(ctx, ctx.params["groupId"], path_directory(ctx))
    r, role = _role_body(ctx)
    members = [ctx.org.by_seq[s] for s in sorted(g.members)]
    _check_capacity(ctx.org, members, [(r.idx, role)])
    ctx.org.group_assign(g, r, role)
    return 200, None


def group_role_revoke(ctx):
    g = find_group(ctx, ctx.params["groupId"], path_directory(ctx))
    r, role = _role_body(ctx)
    ctx.org.group_revoke(g, r, role)
    return 204, None
