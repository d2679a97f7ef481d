"""Organizations API v2 reads: directories, users, groups and role
assignments.

Shapes follow organizations.openapi.json: camelCase fields, {data, links}
pages with links.next a cursor string (absent on the last page)."""

from . import paging
from . import validate as V
from .common import (cursor_fault, decode_cursor, find_group, next_links, path_directory,
                     search_body, v2_user)
from .errors import ApiError
from .model import ALL_ROLES
from .util import dumps, iso_ms

ACCOUNT_STATUS = ("active", "inactive", "closed")
MEMBERSHIP_STATUS = ("active", "suspended", "no_membership")
STATUS = ("active", "suspended", "not_invited", "deactivated", "for_deletion")
USER_EXPAND = ("platformRoles", "counts.resources", "productAccess", "groups")
GROUP_EXPAND = ("counts.resources", "counts.users")
QUERY_ROLES = tuple(r for r in ALL_ROLES if r != "atlassian/viewer")

_str_list10 = V.array(V.string, 1, 10)

USER_SEARCH = {
    "accountIds": _str_list10,
    "accountStatus": V.array(V.enum(ACCOUNT_STATUS), 1, 3),
    "claimStatus": V.enum(("managed", "unmanaged")),
    "cursor": V.string,
    "directoryIds": _str_list10,
    "emailDomains": _str_list10,
    "emails": V.array(V.string, 1, 100, unique=True),
    "expand": V.array(V.enum(USER_EXPAND), 0, None, unique=True),
    "groupIds": _str_list10,
    "limit": V.integer(1, 100),
    "membershipStatus": V.array(V.enum(MEMBERSHIP_STATUS), 1, 3),
    "mfaEnabled": V.boolean,
    "resourceIds": V.array(V.string, 1, 20),
    "roleIds": V.array(V.enum(QUERY_ROLES), 1, 10),
    "searchTerm": V.string,
    "sortBy": V.array(V.obj({"field": V.enum(("nick_name",)),
                             "direction": V.enum(("asc", "desc"))},
                            required=("field", "direction")), 1, 1),
    "status": V.array(V.enum(STATUS), 1, 4),
}

GROUP_SEARCH = {
    "accountIds": V.array(V.string, 1, 10, unique=True),
    "cursor": V.string,
    "directoryIds": V.array(V.string, 1, 10, unique=True),
    "expand": V.array(V.enum(GROUP_EXPAND), 1, 2, unique=True),
    "groupIds": V.array(V.string, 1, 10, unique=True),
    "groupNames": V.array(V.string, 1, 100, unique=True),
    "limit": V.integer(1, 100),
    "resourceIds": V.array(V.string, 1, 20, unique=True),
    "resourceOwners": V.array(V.string, 1, 10, unique=True),
    "roleIds": V.array(V.string, 1, 10, unique=True),
    "searchTerm": V.string,
    "sortBy": V.array(V.obj({"field": V.enum(("name",)),
                             "direction": V.enum(("asc", "desc"))},
                            required=("field", "direction")), 1, 1),
}

ROLE_ASSIGNMENT_ARRAYS = ("directoryIds", "resourceOwners", "resourceIds", "roleIds")


# ------------------------------------------------------------------- views

def user_view(org, u, expand=(), detail=False):
    """A MultiDirectoryUser (search) or MultiDirectoryUserDetailsData."""
    d = {"accountId": u.account_id, "accountType": "atlassian",
         "accountStatus": u.account_status, "status": u.status,
         "membershipStatus": u.membership, "claimStatus": u.claim,
         "name": u.name, "nickname": u.nickname}
    if u.email is not None:
        d["email"] = u.email
    d["emailVerified"] = u.email_verified
    d["picture"] = "https://avatar-management.example/%s/128" % u.account_id
    d["avatar"] = "https://avatar-management.example/%s/48" % u.account_id
    d["addedToOrg"] = iso_ms(u.added_ms)
    d["mfaEnabled"] = u.mfa
    if u.claim == "managed":
        d["managementSource"] = u.management_source
    for key, attr in (("jobTitle", "job_title"), ("department", "department"),
                      ("location", "location"), ("organization", "organization"),
                      ("timeZone", "time_zone")):
        value = getattr(u, attr)
        if value is not None:
            d[key] = value
    if detail and u.deactivated_ms is not None:
        d["deactivatedOn"] = iso_ms(u.deactivated_ms)
    if detail or "platformRoles" in expand:
        d["platformRoles"] = org.platform_roles(u)
    if detail or "counts.resources" in expand:
        d["counts"] = {"resources": len(org.roles_of(u))}
    if "groups" in expand:
        d["groups"] = [group_ref(org.groups[gi]) for gi in u.groups]
    if "productAccess" in expand:
        d["productAccess"] = [{"id": org.resources[ri].ari,
                               "key": org.resources[ri].owner,
                               "lastActiveTimestamp": iso_ms(ms)}
                              for ri, ms in u.activity.items()]
    return d


def group_ref(g):
    # The user->groups expansion identifies groups by ARI, as the
    # MultiDirectoryUserGroup example does; group search uses the bare id.
    return {"id": g.ari, "name": g.name, "description": g.description}


def group_view(org, g, expand=()):
    d = {"id": g.id, "name": g.name}
    if g.description is not None:
        d["description"] = g.description
    d["directoryId"] = org.directories[g.directory].id
    d["externalSynced"] = g.external
    d["managedBy"] = "external" if g.external else "admins"
    deletable = not g.external and not any(e[1] for e in g.roles.values())
    d["managementAccess"] = {"readable": True, "modifiable": not g.external,
                             "deletable": deletable}
    if expand:
        counts = {}
        if "counts.resources" in expand:
            counts["resources"] = len(g.roles)
        if "counts.users" in expand:
            counts["users"] = len(g.members)
        d["counts"] = counts
    return d


# -------------------------------------------------------------- directories

def directories(ctx):
    p = V.query_params(ctx.req.query, ("directoryIds",))
    if p.get("cursor"):
        query, after, count = decode_cursor(ctx, "dirs", p["cursor"])
    else:
        query = {"limit": V.query_int(p, "limit", 1, 100, 20)}
        for k in ("accountId", "searchTerm"):
            if p.get(k):
                query[k] = p[k]
        if p.get("directoryIds"):
            if len(p["directoryIds"]) > 10:
                raise ApiError(400, "ADMIN-400-24", "directoryIds: at most 10 items")
            query["directoryIds"] = p["directoryIds"]
        after, count = None, 0
    org = ctx.org
    member_of = None
    if "accountId" in query:
        u = org.by_id.get(query["accountId"])
        member_of = u.directory if u is not None else -1
    ids = set(query.get("directoryIds", ()))
    term = query.get("searchTerm", "").casefold()

    def pred(d):
        return ((member_of is None or d.idx == member_of) and (not ids or d.id in ids)
                and term in d.name.casefold())
    key = lambda d: [d.idx]
    got, more = paging.page(org.directories, key, after, query["limit"], pred,
                            count=count, cap=ctx.sim.faults.page_cap)
    return 200, {"data": [{"directoryId": d.id, "name": d.name,
                           "icon": "https://admin.example/icons/directory-%d.svg" % d.idx}
                          for d in got],
                 "links": next_links(ctx, "dirs", query, got, more, count, key)}


# -------------------------------------------------------------------- users

def _user_candidates(org, query):
    """The ordered list to walk, narrowed by accountIds/groupIds when given,
    plus its sort key and direction."""
    sort = (query.get("sortBy") or [None])[0]
    if query.get("accountIds"):
        users = sorted((org.by_id[a] for a in set(query["accountIds"]) if a in org.by_id),
                       key=lambda u: u.seq)
    elif query.get("groupIds"):
        gs = {org.group_by_id[g].idx for g in query["groupIds"] if g in org.group_by_id}
        users = org.members_sorted(gs)
    else:
        users = org.users
    if sort is None:
        return users, (lambda u: [u.seq]), False
    nick = lambda u: [(u.nickname or "").casefold(), u.seq]
    if users is org.users:
        users = org.users_by_nickname()
    else:
        users = sorted(users, key=nick)
    desc = sort["direction"] == "desc"
    return (users[::-1] if desc else users), nick, desc


def _user_pred(org, query, directory):
    tests = [lambda u: u.in_v2]
    if directory is not None:
        tests.append(lambda u: u.directory == directory.idx)
    if "directoryIds" in query:
        dirs = {d.idx for d in org.directories if d.id in set(query["directoryIds"])}
        tests.append(lambda u: u.directory in dirs)
    if "accountStatus" in query:
        s = set(query["accountStatus"])
        tests.append(lambda u: u.account_status in s)
    if "claimStatus" in query:
        c = query["claimStatus"]
        tests.append(lambda u: u.claim == c)
    if "membershipStatus" in query:
        m = set(query["membershipStatus"])
        tests.append(lambda u: u.membership in m)
    if "status" in query:
        st = set(query["status"])
        tests.append(lambda u: u.status in st)
    if "mfaEnabled" in query:
        mfa = query["mfaEnabled"]
        tests.append(lambda u: u.mfa == mfa)
    if "emailDomains" in query:
        doms = {d.lstrip("@").lower() for d in query["emailDomains"]}
        tests.append(lambda u: u.email is not None and u.email.rpartition("@")[2].lower() in doms)
    if "emails" in query:
        emails = {e.lower() for e in query["emails"]}
        tests.append(lambda u: u.email is not None and u.email.lower() in emails)
    if "searchTerm" in query:
        t = query["searchTerm"].casefold()
        tests.append(lambda u: t in u.name.casefold() or t in (u.nickname or "").casefold()
                     or (u.email is not None and t in u.email.casefold()))
    if "resourceIds" in query or "roleIds" in query:
        res = None
        if "resourceIds" in query:
            res = {org.res_by_ari[a].idx for a in query["resourceIds"] if a in org.res_by_ari}
        roles = set(query["roleIds"]) if "roleIds" in query else None
        tests.append(lambda u: any((res is None or ri in res) and (roles is None or ro in roles)
                                   for ri, ro in org.grants_of(u)))
    if len(tests) == 1:
        return tests[0]
    return lambda u: all(t(u) for t in tests)


def users_search(ctx):
    directory = path_directory(ctx)
    query, after, count = search_body(ctx, USER_SEARCH, "users")
    if "searchTerm" in query and "emails" in query:
        raise ApiError(400, "ADMIN-400-24", "searchTerm and emails are mutually exclusive")
    query["limit"] = query.get("limit", 50)
    here = directory.id if directory else "-"
    if after is not None and query.get("directory") != here:
        raise ApiError(400, "ADMIN-400-1", "The cursor belongs to another directory")
    query["directory"] = here
    org = ctx.org
    users, key, desc = _user_candidates(org, query)
    pred = _user_pred(org, query, directory)
    got, more = paging.page(users, key, after, query["limit"], pred, desc=desc,
                            count=count, cap=ctx.sim.faults.page_cap,
                            overlap=bool(cursor_fault(ctx, "duplicates")))
    expand = frozenset(query.get("expand", ()))
    mask = tuple(sorted(expand))
    frags = [org.fragment((u.seq, mask), lambda u=u: dumps(user_view(org, u, expand)))
             for u in got]
    links = dumps(next_links(ctx, "users", query, got, more, count, key))
    return 200, b'{"data":[' + b",".join(frags) + b'],"links":' + links + b"}"


def user_get(ctx):
    u = v2_user(ctx, ctx.params["accountId"], path_directory(ctx))
    return 200, {"data": user_view(ctx.org, u, detail=True)}


# ------------------------------------------------------------------- groups

def groups_search(ctx):
    directory = path_directory(ctx)
    query, after, count = search_body(ctx, GROUP_SEARCH, "groups")
    query["limit"] = query.get("limit", 20)
    here = directory.id if directory else "-"
    if after is not None and query.get("directory") != here:
        raise ApiError(400, "ADMIN-400-1", "The cursor belongs to another directory")
    query["directory"] = here
    org = ctx.org
    tests = []
    if directory is not None:
        tests.append(lambda g: g.directory == directory.idx)
    if "directoryIds" in query:
        dirs = {d.idx for d in org.directories if d.id in set(query["directoryIds"])}
        tests.append(lambda g: g.directory in dirs)
    if "groupIds" in query:
        ids = {org.group_by_id[i].idx for i in query["groupIds"] if i in org.group_by_id}
        tests.append(lambda g: g.idx in ids)
    if "groupNames" in query:
        names_ = set(query["groupNames"])
        tests.append(lambda g: g.name in names_)
    if "accountIds" in query:
        seqs = {org.by_id[a].seq for a in query["accountIds"] if a in org.by_id}
        tests.append(lambda g: not seqs.isdisjoint(g.members))
    if "searchTerm" in query:
        t = query["searchTerm"].casefold()
        tests.append(lambda g: t in g.name.casefold())
    if any(k in query for k in ("resourceIds", "resourceOwners", "roleIds")):
        res = set(query.get("resourceIds", ())) or None
        owners = set(query.get("resourceOwners", ())) or None
        roles = set(query.get("roleIds", ())) or None
        tests.append(lambda g: any(
            (res is None or org.resources[ri].ari in res)
            and (owners is None or org.resources[ri].owner in owners)
            and (roles is None or not roles.isdisjoint(rr))
            for ri, (rr, _d) in g.roles.items()))
    pred = (lambda g: all(t(g) for t in tests)) if tests else None
    sort = (query.get("sortBy") or [None])[0]
    if sort is None:
        items, key, desc = org.groups, (lambda g: [g.idx]), False
    else:
        desc = sort["direction"] == "desc"
        key = lambda g: [g.name.casefold(), g.idx]
        items = sorted(org.groups, key=key, reverse=desc)
    got, more = paging.page(items, key, after, query["limit"], pred, desc=desc,
                            count=count, cap=ctx.sim.faults.page_cap)
    expand = frozenset(query.get("expand", ()))
    return 200, {"data": [group_view(org, g, expand) for g in got],
                 "links": next_links(ctx, "groups", query, got, more, count, key)}


def _role_query(ctx, kind, subject):
    """Query of the role-assignment GETs; a cursor replaces all of it
    ("if present, all other parameters are discarded")."""
    p = V.query_params(ctx.req.query, ROLE_ASSIGNMENT_ARRAYS)
    if p.get("cursor"):
        query, after, count = decode_cursor(ctx, kind, p["cursor"])
        if query.get("subject") != subject:
            raise ApiError(400, "ADMIN-400-1", "The cursor belongs to another listing")
        return query, after, count
    query = {"limit": V.query_int(p, "limit", 1, 100, 20)}
    for name, most in (("directoryIds", 10), ("resourceOwners", 10),
                       ("resourceIds", 20), ("roleIds", 10)):
        if p.get(name):
            if len(p[name]) > most:
                raise ApiError(400, "ADMIN-400-24", "%s: at most %d items" % (name, most))
            query[name] = p[name]
    bad = [r for r in query.get("roleIds", ()) if r not in QUERY_ROLES]
    if bad:
        raise ApiError(400, "ADMIN-400-24", "Unknown role id %s" % bad[0])
    query["subject"] = subject
    return query, None, 0


def _role_filter(org, query):
    res = set(query.get("resourceIds", ())) or None
    owners = set(query.get("resourceOwners", ())) or None

    def pred(ri):
        r = org.resources[ri]
        return (res is None or r.ari in res) and (owners is None or r.owner in owners)
    return pred, set(query.get("roleIds", ())) or None


def group_role_assignments(ctx):
    directory = path_directory(ctx)
    g = find_group(ctx, ctx.params["groupId"], directory)
    query, after, count = _role_query(ctx, "gra", g.id)
    org = ctx.org
    rpred, roles = _role_filter(org, query)
    dirs = query.get("directoryIds")
    if dirs and org.directories[g.directory].id not in dirs:
        entries = []
    else:
        entries = [(ri, sorted(rr), d) for ri, (rr, d) in sorted(g.roles.items())
                   if rpred(ri) and (roles is None or not roles.isdisjoint(rr))]
    key = lambda e: [e[0]]
    got, more = paging.page(entries, key, after, query["limit"], count=count,
                            cap=ctx.sim.faults.page_cap)
    data = [{"resourceId": org.resources[ri].ari, "resourceOwner": org.resources[ri].owner,
             "roles": rr, "defaultRole": d} for ri, rr, d in got]
    return 200, {"data": data, "links": next_links(ctx, "gra", query, got, more, count, key)}


def user_role_assignments(ctx):
    directory = path_directory(ctx)
    u = v2_user(ctx, ctx.params["accountId"], directory)
    query, after, count = _role_query(ctx, "ura", u.account_id)
    org = ctx.org
    rpred, roles = _role_filter(org, query)
    dir_id = org.directories[u.directory].id if u.directory is not None else None
    dirs = query.get("directoryIds")
    entries = []
    if not dirs or dir_id in dirs:
        for ri, rr in org.roles_of(u).items():
            if rpred(ri) and (roles is None or not roles.isdisjoint(rr)):
                entries.append((ri, rr))
    key = lambda e: [e[0]]
    got, more = paging.page(entries, key, after, query["limit"], count=count,
                            cap=ctx.sim.faults.page_cap)
    data = [{"directoryId": dir_id, "resourceId": org.resources[ri].ari,
             "resourceOwner": org.resources[ri].owner,
             "roleAssignments": [{"role": role, "roleAssignmentMethods": m}
                                 for role, m in sorted(rr.items())],
             "roles": sorted(rr),
             "userDirectoryStatus": u.membership} for ri, rr in got]
    return 200, {"data": data, "links": next_links(ctx, "ura", query, got, more, count, key)}
