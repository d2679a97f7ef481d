"""POST /v2/orgs/{orgId}/workspaces: product instances, with the
QueryVariants query language (and, nor, field, searchWorkspaces, features,
policies) and cursor-only follow-up bodies."""

from . import paging
from . import validate as V
from .common import next_links, search_body
from .errors import ApiError
from .util import iso_ms

WORKSPACE_SEARCH = {
    "cursor": V.string,
    "limit": V.integer(1, 1000),
    "query": lambda v, name: v,          # checked by _workspace_pred
    "sort": V.array(V.obj({"field": V.string, "order": V.enum(("asc", "desc"))}), 0, None),
}


def workspace_view(ctx, r):
    site = r.site
    return {
        "id": r.ari,
        "type": "workspace",
        "attributes": {
            "name": site.name,
            "type": r.owner,
            "typeKey": r.owner,
            "hostUrl": site.host_url,
            "status": r.status,
            "capacity": r.capacity,
            "createdAt": iso_ms(r.created_ms),
            "createdBy": None,
            "realm": "us",
            "regions": ["us-east-1"],
            "sandbox": {"type": "NONE"},
            "labels": [],
        },
        "links": {"self": "%s/admin/v2/orgs/%s/workspaces/%s"
                  % (ctx.base_url, ctx.org.org_id, r.ari)},
    }


_WS_FIELDS = {
    "id": lambda r: r.ari,
    "attributes.type": lambda r: r.owner,
    "attributes.typeKey": lambda r: r.owner,
    "attributes.name": lambda r: r.site.name,
    "attributes.hostUrl": lambda r: r.site.host_url,
    "attributes.status": lambda r: r.status,
    "attributes.createdAt": lambda r: iso_ms(r.created_ms),
}


def _workspace_pred(q, path="query"):
    """Compile a QueryVariants object to a predicate; 400 on bad shapes."""
    def bad(msg):
        return ApiError(400, "ADMIN-400-4", "%s: %s" % (path, msg))
    if q is None:
        return lambda r: True
    if not isinstance(q, dict) or len(q) == 0:
        raise bad("expected a query object")
    if "and" in q or "nor" in q:
        op = "and" if "and" in q else "nor"
        if len(q) != 1 or not isinstance(q[op], list):
            raise bad("%s takes a single array" % op)
        subs = [_workspace_pred(s, "%s.%s[%d]" % (path, op, i)) for i, s in enumerate(q[op])]
        if op == "and":
            return lambda r: all(p(r) for p in subs)
        return lambda r: not any(p(r) for p in subs)
    if "field" in q:
        f = q["field"]
        if len(q) != 1 or not isinstance(f, dict):
            raise bad("field takes an object")
        name, values = f.get("name"), f.get("values")
        if name not in _WS_FIELDS:
            raise bad("unsupported field name %r" % (name,))
        if values is None or values == []:
            return lambda r: True       # "absent values makes this operator no-op"
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise bad("field.values must be an array of strings")
        get, want = _WS_FIELDS[name], set(values)
        return lambda r: get(r) in want
    if "searchWorkspaces" in q:
        text = q["searchWorkspaces"]
        if not isinstance(text, str):
            raise bad("searchWorkspaces must be a string")
        text = text.casefold()
        return lambda r: text in r.site.name.casefold() or text in r.site.host_url.casefold()
    for key in ("features", "policies"):
        if key in q:
            if not isinstance(q[key], list):
                raise bad("%s must be an array" % key)
            # No simulated workspace has features or policies.
            return (lambda r: True) if not q[key] else (lambda r: False)
    raise bad("unknown query operator %s" % ", ".join(sorted(q)))


def workspaces(ctx):
    query, after, count = search_body(ctx, WORKSPACE_SEARCH, "ws", "ADMIN-400-4",
                                       cursor_only=True)
    limit = query.get("limit", 20)
    pred = _workspace_pred(query.get("query"))
    sort = (query.get("sort") or [{}])[0]
    field = sort.get("field")
    if field is not None and field not in _WS_FIELDS:
        raise ApiError(400, "ADMIN-400-4", "Cannot sort by %s" % field)
    desc = sort.get("order") == "desc"
    get = _WS_FIELDS.get(field) if field else None
    items = [r for r in ctx.org.resources if r.kind == "product"]
    if get:
        items.sort(key=lambda r: (get(r), r.idx), reverse=desc)
        key = lambda r: [get(r), r.idx]
    else:
        desc = False
        key = lambda r: [r.idx]
    matching = [r for r in items if pred(r)]
    if after is not None:
        after = list(after)
    got, more = paging.page(matching, key, after, limit, desc=desc, count=count,
                            cap=ctx.sim.faults.page_cap)
    meta = {"pageSize": limit, "startIndex": count,
            "endIndex": count + len(got) - 1 if got else None,
            "total": len(matching)}
    return 200, {"data": [workspace_view(ctx, r) for r in got],
                 "links": next_links(ctx, "ws", query, got, more, count, key),
                 "meta": meta}
