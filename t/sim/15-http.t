#!/usr/bin/env python3
# The hand-written HTTP/1.1 layer: keep-alive, pipelining order, bodies in
# pieces, Expect: 100-continue, HTTP/1.0, and malformed requests.
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sim"))
from testlib.simproc import Sim  # noqa: E402
from testlib.tap import TAP  # noqa: E402


def read_responses(sock, n, timeout=3.0):
    """Read n Content-Length responses -> [(status line, headers, body)]."""
    sock.settimeout(timeout)
    buf, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return out, buf
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        hdrs = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        if lines[0].startswith("HTTP/1.1 100"):
            out.append((lines[0], hdrs, b""))
            buf = rest
            continue
        size = int(hdrs.get("content-length", 0))
        while len(rest) < size:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        out.append((lines[0], hdrs, rest[:size]))
        buf = rest[size:]
    return out, buf


def main(t):
    sim = Sim(users=20)
    o, key = sim.org, sim.key
    dirs = "/admin/v2/orgs/%s/directories" % o
    search = "/admin/v2/orgs/%s/directories/-/users/search" % o
    auth = "Authorization: Bearer %s\r\n" % key

    def conn():
        return socket.create_connection((sim.host, sim.port), timeout=3)

    # pipelining: three requests in one write come back in order
    s = conn()
    body = b'{"limit":1}'
    s.sendall(("GET %s?limit=1 HTTP/1.1\r\nHost: x\r\n%s\r\n" % (dirs, auth)).encode()
              + ("POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n"
                 % (search, auth, len(body))).encode() + body
              + ("GET /__sim/health HTTP/1.1\r\nHost: x\r\n\r\n").encode())
    got, _ = read_responses(s, 3)
    kinds = [("directoryId" in r[2].decode(), "accountId" in r[2].decode(), b'"ok"' in r[2])
             for r in got]
    t.is_(kinds, [(True, False, False), (False, True, False), (False, False, True)],
          "pipelined requests are answered in order")
    t.ok(all(r[1].get("connection") == "keep-alive" for r in got), "HTTP/1.1 keeps alive")

    # a body sent in pieces, with Expect: 100-continue
    big = json.dumps({"limit": 5, "searchTerm": "", "emailDomains": ["x" * 3000]}).encode()
    s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n"
               "Expect: 100-continue\r\n\r\n" % (search, auth, len(big))).encode())
    first, _ = read_responses(s, 1)
    t.ok(first and first[0][0].startswith("HTTP/1.1 100"), "100 Continue before the body")
    for i in range(0, len(big), 700):
        s.sendall(big[i:i + 700])
        time.sleep(0.01)
    got, _ = read_responses(s, 1)
    t.ok(got and got[0][0].startswith("HTTP/1.1 200"), "body in pieces is assembled")
    s.close()

    # HTTP/1.0 closes unless asked to keep alive
    s = conn()
    s.sendall(("GET %s HTTP/1.0\r\n%s\r\n" % (dirs, auth)).encode())
    got, rest = read_responses(s, 1)
    t.is_(got[0][1].get("connection"), "close", "HTTP/1.0: Connection: close")
    t.is_(s.recv(10), b"", "HTTP/1.0: server closes")
    s.close()
    s = conn()
    s.sendall(("GET %s HTTP/1.0\r\nConnection: keep-alive\r\n%s\r\n" % (dirs, auth)).encode())
    got, _ = read_responses(s, 1)
    t.is_(got[0][1].get("connection"), "keep-alive", "HTTP/1.0 with keep-alive stays open")
    s.close()
    s = conn()
    s.sendall(("GET %s HTTP/1.1\r\nConnection: close\r\n%s\r\n" % (dirs, auth)).encode())
    got, _ = read_responses(s, 1)
    t.is_((got[0][1].get("connection"), s.recv(10)), ("close", b""), "Connection: close honoured")
    s.close()

    # 204 has neither body nor Content-Length
    someone = sim.truth()["users"][0]["accountId"]
    s = conn()
    s.sendall(("POST %s/%s/restore HTTP/1.1\r\nHost: x\r\n%sContent-Length: 0\r\n\r\n"
               % (search.rsplit("/", 1)[0], someone, auth)).encode())
    s.sendall(("GET /__sim/health HTTP/1.1\r\n\r\n").encode())
    got, _ = read_responses(s, 2)
    t.ok(got[0][0].startswith("HTTP/1.1 204") and "content-length" not in got[0][1]
         and got[1][0].startswith("HTTP/1.1 200"), "204 without body; the stream stays in sync")
    s.close()

    # malformed requests: answered and closed, server keeps going
    for raw, want, desc in ((b"NONSENSE\r\n\r\n", "400", "no request line"),
                            (b"GET / HTTP/2.0\r\n\r\n", "505", "HTTP/2.0 text"),
                            (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", "400", "header without colon"),
                            (b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", "400", "bad length"),
                            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "411",
                             "chunked body"),
                            (b"GET / HTTP/1.1\r\nX: " + b"a" * 70000, "431", "huge header")):
        s = conn()
        try:
            s.sendall(raw)
        except OSError:
            pass
        got, _ = read_responses(s, 1)
        t.ok(got and got[0][0].split()[1] == want, "%s -> %s" % (desc, want), got[:1])
        s.close()
    t.is_(sim.request("GET", "/__sim/health", auth=False, fresh=True).status, 200,
          "still serving after malformed requests")
    sim.stop()


TAP().run(main)
