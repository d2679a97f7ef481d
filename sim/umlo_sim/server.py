"""A small HTTP/1.1 server on asyncio.Protocol.

Why not http.server or asyncio streams: both cost several times more per
request than a Protocol that parses bytes directly, and the simulator must
answer thousands of requests per second on two cores.

Supported: keep-alive (HTTP/1.1 default, HTTP/1.0 with "Connection:
keep-alive"), pipelining (answers stay in order: a connection handles one
request at a time and buffers the rest), Content-Length request bodies,
"Expect: 100-continue".  Not supported: chunked request bodies (411), and
responses are never chunked.

A reply can be sent at once, after a delay (call_later, so concurrent
requests overlap and nothing ever sleeps), never (a hung request), or
replaced by a connection reset.
"""

import asyncio
import socket
import struct

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024

REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 202: "Accepted",
    204: "No Content", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 411: "Length Required", 413: "Payload Too Large",
    429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


class Request:
    __slots__ = ("method", "target", "path", "query", "version", "headers",
                 "body", "keep_alive")

    def __init__(self, method, target, version, headers, body, keep_alive):
        self.method, self.target, self.version = method, target, version
        self.path, _, self.query = target.partition("?")
        self.headers, self.body, self.keep_alive = headers, body, keep_alive


def encode_response(status, body=b"", headers=(), keep_alive=True,
                    content_type="application/json", declared_length=None):
    """Serialize a response.  declared_length lets the truncation fault
    announce more bytes than it sends."""
    lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status"))]
    if status != 204 and status >= 200:
        if body or content_type:
            lines.append("Content-Type: " + content_type)
        lines.append("Content-Length: %d" % (len(body) if declared_length is None
                                             else declared_length))
    for name, value in headers:
        lines.append("%s: %s" % (name, value))
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body and status != 204 else head


class HttpProtocol(asyncio.Protocol):
    """One client connection.  `app.handle(request, conn)` must eventually
    call conn.reply() (or not, for a hung request)."""

    def __init__(self, app):
        self.app = app
        self.loop = asyncio.get_running_loop()
        self.transport = None
        self.buf = bytearray()
        self.busy = False          # a request is being answered
        self.closed = False
        self.draining = False
        self.sent_continue = False
        self.timer = None
        self.on_done = None        # callback(sent: bool) of the pending reply

    # asyncio callbacks ----------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data):
        self.buf += data
        if not self.busy:
            self._drain()

    def connection_lost(self, exc):
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._finish(False)

    # request side -----------------------------------------------------------

    def _drain(self):
        self.draining = True
        try:
            while not self.busy and not self.closed and self.buf:
                req = self._parse_one()
                if req is None:
                    return
                self.busy = True
                self.app.handle(req, self)
        finally:
            self.draining = False

    def _parse_one(self):
        buf = self.buf
        while buf[:2] == b"\r\n":            # tolerate stray CRLF between requests
            del buf[:2]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                self._fail(431)
            return None
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._fail(400 if len(parts) != 3 else 505)
            return None
        method, target, version = parts
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name[-1] in " \t":
                self._fail(400)
                return None
            headers[name.lower()] = value.strip()
        if "transfer-encoding" in headers:
            self._fail(411)
            return None
        length = headers.get("content-length", "0")
        if not length.isdigit():
            self._fail(400)
            return None
        length = int(length)
        if length > MAX_BODY:
            self._fail(413)
            return None
        total = end + 4 + length
        if len(buf) < total:
            if (headers.get("expect", "").lower() == "100-continue"
                    and not self.sent_continue):
                self.sent_continue = True
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        body = bytes(buf[end + 4:total])
        del buf[:total]
        self.sent_continue = False
        conn = headers.get("connection", "").lower()
        keep = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
        return Request(method, target, version, headers, body, keep)

    def _fail(self, status):
        """Protocol-level error: answer and close (the stream is unusable)."""
        body = b'{"code":%d,"message":"%s"}' % (status, REASONS[status].encode())
        self.transport.write(encode_response(status, body, keep_alive=False))
        self.transport.close()
        self.closed = True
        self.buf.clear()

    # reply side -------------------------------------------------------------

    def reply(self, data, keep_alive=True, delay=0.0, on_done=None, reset=False,
              close_after=False):
        """Send `data` now, after `delay` seconds, or never (delay None).
        on_done(sent) runs once: True when written, False when the
        connection went away first or was reset."""
        self.on_done = on_done
        if delay is None:
            return
        if delay > 0:
            self.timer = self.loop.call_later(delay, self._write, data, keep_alive,
                                              reset, close_after)
        else:
            self._write(data, keep_alive, reset, close_after)

    def _write(self, data, keep_alive, reset, close_after):
        self.timer = None
        if self.closed:
            return
        if reset:
            self._reset()
            return
        self.transport.write(data)
        self._finish(True)
        if not keep_alive or close_after:
            self.transport.close()
            self.closed = True
            return
        self.busy = False
        if self.buf and not self.draining:
            self._drain()

    def _reset(self):
        """Abort with RST: SO_LINGER 0 then abort() discards and resets."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.closed = True
        self._finish(False)
        self.transport.abort()

    def _finish(self, sent):
        cb, self.on_done = self.on_done, None
        if cb is not None:
            cb(sent)
