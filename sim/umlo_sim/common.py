"""Helpers shared by the v2 handlers: cursors, links, path lookups and
search bodies."""

import json
from urllib.parse import parse_qs

from . import validate as V
from .cursor import CursorError
from .errors import ApiError


def decode_cursor(ctx, kind, token):
    """-> (query, last key, count); 400 ADMIN-400-1 for any bad cursor."""
    try:
        return ctx.sim.cursors.decode(token, kind)
    except (CursorError, ValueError, TypeError):
        raise ApiError(400, "ADMIN-400-1", "The cursor is invalid or expired")


def request_cursor(ctx):
    """The cursor the request carries (query string or JSON body), or None."""
    got = parse_qs(ctx.req.query).get("cursor")
    if got:
        return got[0]
    if ctx.req.body[:1] == b"{":
        try:
            value = json.loads(ctx.req.body).get("cursor")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) and value else None
    return None


def cursor_fault(ctx, kind):
    """The rule of a fault that only fires on pages after the first."""
    if request_cursor(ctx) is None:
        return None
    rule = ctx.sim.faults.pick(kind, ctx.template)
    if rule:
        ctx.sim.stats.fault(kind)
    return rule


def next_links(ctx, kind, query, items, more, count, key):
    """{"next": cursor} when the chain goes on, {} on the last page."""
    rule = cursor_fault(ctx, "cursorLoop")
    if rule and rule["mode"] == "same":
        return {"next": request_cursor(ctx)}
    if rule:
        # cycle: back to the chain's first cursor instead of ending
        first = rule.setdefault("first", {})
        chain = json.dumps([kind, query], sort_keys=True)
        first.setdefault(chain, request_cursor(ctx))
        if not more:
            return {"next": first[chain]}
    if not more:
        return {}
    return {"next": ctx.sim.cursors.encode(kind, query, key(items[-1]), count + len(items))}


def path_directory(ctx):
    """The {directoryId} path segment: "-" (all) -> None, or a Directory."""
    did = ctx.params.get("directoryId", "-")
    if did == "-":
        return None
    d = ctx.org.directory_by_id(did)
    if d is None:
        raise ApiError(404, "ADMIN-404-1", "Directory %s was not found" % did)
    return d


def v2_user(ctx, account_id, directory):
    u = ctx.org.by_id.get(account_id)
    if u is None or not u.in_v2 or (directory is not None and u.directory != directory.idx):
        raise ApiError(404, "ADMIN-404-8", "User %s was not found" % account_id)
    return u


def find_group(ctx, group_id, directory):
    g = ctx.org.group_by_id.get(group_id)
    if g is None or (directory is not None and g.directory != directory.idx):
        raise ApiError(404, "ADMIN-404-10", "Group %s was not found" % group_id)
    return g


def search_body(ctx, spec, kind, code="ADMIN-400-24", cursor_only=False):
    """Parse a search body.  -> (query, after, count).  With a cursor the
    query comes from the cursor; other fields must be absent (cursor_only)
    or, if present, equal to what the cursor carries."""
    raw = V.parse_json(ctx.req.body, code)
    body = V.check_object(raw, spec, code)
    token = body.pop("cursor", None)
    if token is None:
        return body, None, 0
    query, after, count = decode_cursor(ctx, kind, token)
    if body:
        if cursor_only:
            raise ApiError(400, code, "When a cursor is given no other field is allowed")
        for k, v in body.items():
            if query.get(k, SEARCH_DEFAULTS.get((kind, k))) != v:
                raise ApiError(400, code, "Field %s differs from the query of the cursor" % k)
    return query, after, count


SEARCH_DEFAULTS = {("users", "limit"): 50, ("groups", "limit"): 20}
