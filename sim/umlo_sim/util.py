"""Small helpers shared by every module: time formats, ids and JSON."""

import datetime
import hashlib
import json
import time

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def dumps(obj):
    """Compact UTF-8 JSON. Non-ASCII stays raw, as Atlassian sends it."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def iso_ms(ms):
    """Epoch milliseconds -> 2025-11-06T23:07:29.936Z (v2 timestamps)."""
    s, frac = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + ".%03dZ" % frac


def iso_s(ms):
    """Epoch milliseconds -> 2025-11-06T23:07:29Z (v1 timestamps)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(ms) // 1000))


def iso_date(ms):
    """Epoch milliseconds -> 2025-11-06 (v1 dates)."""
    return time.strftime("%Y-%m-%d", time.gmtime(int(ms) // 1000))


def parse_time(text):
    """Accept epoch seconds, or ISO 8601 (date or date-time, Z or offset).

    Returns epoch seconds as float. Raises ValueError on anything else."""
    text = str(text).strip()
    try:
        return float(text)
    except ValueError:
        pass
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    dt = datetime.datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return (dt - _EPOCH).total_seconds()


def uuid_from(rng):
    """A version-4 shaped UUID drawn from a seeded random.Random."""
    h = "%032x" % rng.getrandbits(128)
    return "%s-%s-4%s-%s%s-%s" % (h[0:8], h[8:12], h[13:16],
                                   "89ab"[int(h[16], 16) & 3], h[17:20], h[20:32])


def stable_id(*parts):
    """A UUID-shaped id derived from its inputs: the same request gives the
    same error id, so responses stay byte-identical for a given seed."""
    h = hashlib.sha1("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return "%s-%s-%s-%s-%s" % (h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
