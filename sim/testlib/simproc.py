"""Start umlo-sim on a free loopback port and talk to it."""

import http.client
import json
import os
import select
import signal
import subprocess
import sys
import time

from .openapi import OpenAPI

HERE = os.path.dirname(os.path.abspath(__file__))
SIM_DIR = os.path.dirname(HERE)
SIM = os.path.join(SIM_DIR, "umlo-sim")
REPO = os.path.dirname(SIM_DIR)
# Kept outside the repo and referenced relative to it (see sim/README.md).
API_DIR = os.path.normpath(os.path.join(REPO, "..", "shared", "atlassian-api"))

ORG = "8a1f3c4e-5b6d-4e7f-9a0b-1c2d3e4f5a6b"
KEY = "test-api-key"


def specs():
    """(organizations, user-management) validators, or None if the files
    are not there."""
    orgs = os.path.join(API_DIR, "organizations.openapi.json")
    um = os.path.join(API_DIR, "user-management.openapi.json")
    if not (os.path.exists(orgs) and os.path.exists(um)):
        return None
    return OpenAPI(orgs, prefix="/admin"), OpenAPI(um)


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # lower-cased names
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return "<Resp %d %s>" % (self.status, self.body[:300])


class Sim:
    """A running simulator.  Extra command line flags as keyword args:
    Sim(users=50, rate_limit=5, retry_after=True)."""

    def __init__(self, *flags, org=ORG, key=KEY, timeout=15, **kw):
        self.org, self.key = org, key
        argv = [sys.executable, SIM, "--listen", "127.0.0.1:0", "--org", org,
                "--api-key", key]
        kw.setdefault("users", 60)
        for name, value in kw.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                argv.append(flag)
            elif value is not None and value is not False:
                argv += [flag, str(value)]
        argv += list(flags)
        self.argv = argv
        self.started = time.time()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.first_line = self._read_line(timeout)
        self.startup_seconds = time.time() - self.started
        if not self.first_line.startswith("listening on "):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError("sim did not start: %r %r" % (self.first_line, err))
        self.addr = self.first_line.split()[-1]
        self.host, self.port = self.addr.rsplit(":", 1)
        self.port = int(self.port)
        self.base = "http://" + self.addr
        self.conn = None

    def _read_line(self, timeout):
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.time() + timeout
        while b"\n" not in buf and time.time() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.time()))
            if not ready:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
        return buf.decode()

    def stop(self, sig=signal.SIGTERM, timeout=5):
        if self.conn:
            self.conn.close()
            self.conn = None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------ http

    def request(self, method, path, body=None, auth=True, headers=None, timeout=10,
                fresh=False):
        """One request on a kept-alive connection (fresh=True: new one)."""
        hdrs = {}
        if auth is True:
            hdrs["Authorization"] = "Bearer " + self.key
        elif auth:
            hdrs["Authorization"] = auth
        if body is not None:
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        for attempt in (0, 1):
            if self.conn is None or fresh:
                if self.conn:
                    self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            self.conn.timeout = timeout
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                r = self.conn.getresponse()
                data = r.read()
                resp = Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return resp
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server closed: retry once.
                self.conn.close()
                self.conn = None
                if attempt or fresh:
                    raise

    def api(self, method, path, body=None, **kw):
        """path relative to /admin/{v}/orgs/{org} with "{org}" expanded."""
        return self.request(method, path.replace("{org}", self.org), body, **kw)

    def admin(self, method, path, body=None):
        r = self.request(method, "/__sim/" + path.lstrip("/"), body, auth=False)
        return r.json if r.status == 200 else r

    def truth(self):
        return self.admin("GET", "org")

    def users_all(self, body=None, directory="-"):
        """Walk a users/search chain -> (users, pages)."""
        body = dict(body or {})
        out, pages = [], []
        path = "/admin/v2/orgs/%s/directories/%s/users/search" % (self.org, directory)
        while True:
            r = self.request("POST", path, body)
            if r.status != 200:
                raise RuntimeError("users/search: %r" % r)
            pages.append(r.json)
            out += r.json["data"]
            nxt = r.json.get("links", {}).get("next")
            if not nxt:
                return out, pages
            body = {"cursor": nxt}
