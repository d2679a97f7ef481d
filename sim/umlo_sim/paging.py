"""Keyset pagination shared by every listing.

A listing is a list sorted by a key (ascending, or descending when
`desc`); a cursor remembers the key of the last item returned, so items
added or removed between pages neither repeat nor shift the rest.  The
page-cap fault truncates a chain after N items without any error, as
Atlassian has been seen to do."""


def _start(items, key, after, desc):
    lo, hi = 0, len(items)
    while lo < hi:
        mid = (lo + hi) // 2
        k = key(items[mid])
        if (k < after) if desc else (k > after):
            hi = mid
        else:
            lo = mid + 1
    return lo


def page(items, key, after, limit, pred=None, desc=False, count=0, cap=None,
         overlap=False):
    """-> (page items, has_more).  after: last key returned, or None;
    overlap: start with the item at `after` again (the duplicates fault)."""
    if cap is not None:
        limit = min(limit, max(0, cap - count))
    start = 0 if after is None else _start(items, key, after, desc)
    if overlap and start > 0:
        start -= 1
    out = []
    more = False
    for i in range(start, len(items)):
        item = items[i]
        if pred is None or pred(item):
            if len(out) >= limit:
                more = True
                break
            out.append(item)
    if cap is not None and count + len(out) >= cap:
        more = False
    return out, more
