"""Opaque, self-contained page cursors.

A cursor carries everything needed for the next page (endpoint kind, the
normalized query, the key of the last item returned and how many items the
chain has returned so far), so "cursor-only" requests work and the server
keeps no per-chain state.  A truncated MAC makes tampered or foreign
cursors fail cleanly with ADMIN-400-1 instead of returning odd pages.
"""

import base64
import binascii
import hashlib
import hmac
import json
import zlib


class CursorError(ValueError):
    pass


class Cursors:
    def __init__(self, secret):
        self.secret = secret.encode() if isinstance(secret, str) else secret

    def _mac(self, payload):
        return hmac.new(self.secret, payload, hashlib.sha256).digest()[:8]

    def encode(self, kind, query, pos, count):
        payload = json.dumps([kind, query, pos, count], sort_keys=True,
                             separators=(",", ":"), ensure_ascii=False).encode()
        # Long filter lists (20 ARIs) compress well; keep URLs short.
        body = b"z" + zlib.compress(payload, 9) if len(payload) > 160 else b"j" + payload
        return base64.urlsafe_b64encode(body + self._mac(payload)).rstrip(b"=").decode()

    def decode(self, token, kind):
        """-> (query, pos, count); CursorError if not ours or not for `kind`."""
        if not isinstance(token, str) or not 4 <= len(token) <= 16384:
            raise CursorError("malformed cursor")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise CursorError("cursor is not base64url")
        if len(raw) < 10:
            raise CursorError("cursor too short")
        body, mac = raw[:-8], raw[-8:]
        try:
            payload = zlib.decompress(body[1:]) if body[:1] == b"z" else \
                body[1:] if body[:1] == b"j" else None
        except zlib.error:
            payload = None
        if payload is None or not hmac.compare_digest(mac, self._mac(payload)):
            raise CursorError("cursor checksum mismatch")
        got_kind, query, pos, count = json.loads(payload)
        if got_kind != kind:
            raise CursorError("cursor belongs to another listing")
        return query, pos, count
