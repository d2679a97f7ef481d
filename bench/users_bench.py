#!/usr/bin/env python3
"""User Browser benchmark: ngx_umlo's /umlo/users and /umlo/dashboard on a
large snapshot, with wrk.

It syncs an org of --users users from the simulator into Redis, then
measures the latency and throughput of representative user queries at 1, 10
and 50 connections, the dashboard at 50, how responsive another location of
the same nginx stays meanwhile, the CSV export of every user, and the time and
memory a worker needs to load the snapshot.  Python 3 standard library only,
plus wrk.  See bench/README.md.
"""

import argparse
import csv
import hashlib
import http.client
import io
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from umlo_bench_common import (
    CLK_TCK, MAX_REQUESTS_PER_CONN, PING_DELAY_MS, WRK_TIMEOUT_S, Redis, Wrk, lua_str,
    children_of, cpu_times, first_line, free_port, log, machine_info,
    median_range as mrange, proc_stat_fields, proc_status_kb, proc_ticks, read_first_line, stop_proc, wait_port)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SIM_DIR = os.path.join(REPO, "sim")
MODULE = os.path.join(REPO, "build", "ngx_umlo_module.so")
DOC = os.path.join(REPO, "docs", "benchmarks-users.md")

ORG = "5d1f0c8e-2a47-4b9e-8c3d-7e6a1b0f9c24"
API_KEY = "users-bench-key"
SEED = 1


# issue targets, milliseconds (users at 50 clients; dashboard p99 at 50)
TARGET_USERS_P50 = 20.0
TARGET_USERS_P99 = 100.0
TARGET_DASH_P99 = 10.0
TARGET_CLIENTS = 50

# the ping probe: 2 connections, each request on a new connection (so that
# the probes land on either worker), a pause of PING_DELAY_MS before each
PING_CONNS = 2


CSV_STALL_S = 30

PERF_HZ = 499

# what --queries can choose
QUERY_IDS = ("three", "text", "product", "varied", "varied-days", "refs", "dashboard", "csv")


# --------------------------------------------------------------------- utils

def median_of(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_ms(x):
    if x is None:
        return "—"
    if x >= 100:
        return "%.0f" % x
    if x >= 10:
        return "%.1f" % x
    return "%.2f" % x


def fmt_num(x, digits=0):
    if x is None:
        return "—"
    return ("{:,.%df}" % digits).format(x)


def pct(x):
    return "—" if x is None else "%.0f %%" % (x * 100)


def mib(kb):
    return "—" if kb is None else "%.1f MiB" % (kb / 1024.0)


# ---------------------------------------------------------------------- http

def http_get(port, path, timeout=120, headers=None, method="GET"):
    """One request on a new connection -> (status, headers dict, body, seconds)."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        body = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        return r.status, hdrs, body, time.monotonic() - t0
    finally:
        conn.close()


def http_json(port, path, method="GET", timeout=30):
    # umlo_sync takes state-changing requests only as JSON
    headers = {"Content-Type": "application/json"} if method == "POST" else None
    status, hdrs, body, _ = http_get(port, path, timeout=timeout, method=method,
                                     headers=headers)
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    return status, doc, body


# --------------------------------------------------------------- processes

class Sim:
    def __init__(self, workdir, sim_dir, args, anchor):
        self.flags = ["--org", ORG, "--api-key", API_KEY, "--profile", "fast",
                      "--users", str(args.users), "--groups", str(args.groups),
                      "--sites", str(args.sites), "--seed", str(SEED),
                      "--anchor", anchor]
        argv = [sys.executable, os.path.join(sim_dir, "umlo-sim"),
                "--listen", "127.0.0.1:0"] + self.flags
        self.stderr = open(os.path.join(workdir, "sim.stderr"), "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.stderr,
                                     cwd=workdir)
        line = self._first_line(300)
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError("simulator did not start: %r (see sim.stderr)" % line)
        self.port = int(line.rsplit(":", 1)[1])

    def _first_line(self, timeout):
        return read_first_line(self.proc, timeout)

    def command(self):
        return "sim/umlo-sim --listen 127.0.0.1:0 " + " ".join(
            a if a != self.flags[-1] else "<now>" for a in self.flags)

    def stop(self):
        stop_proc(self.proc)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.stderr.close()


NGINX_CONF = """\
load_module {module};
{user}worker_processes 2;
pid logs/nginx.pid;
lock_file logs/nginx.lock;
error_log logs/error.log info;
thread_pool umlo threads=4;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    client_body_temp_path temp/client_body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;

    umlo_redis {redis};
    umlo_org {org};
    umlo_api_base {api_base};
    umlo_api_key_file {key_file};
    umlo_thread_pool umlo;

    server {{
        listen 127.0.0.1:{port}{listen_opts};

        # which worker answered: the benchmark times each worker's first load
        add_header X-Umlo-Worker $pid always;

        location = /umlo/status {{ umlo_status; }}
        location = /umlo/sync {{ umlo_sync; }}
        location /umlo/users {{ umlo_users; }}
        location = /umlo/dashboard {{ umlo_dashboard; }}
        location = /ping {{ return 200 ok; }}
    }}
}}
"""


def nginx_conf(module, redis, api_base, key_file, port, reuseport=False):
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return NGINX_CONF.format(module=module, user=user, redis=redis, org=ORG,
                             api_base=api_base, key_file=key_file, port=port,
                             listen_opts=" reuseport" if reuseport else "")


class Nginx:
    def __init__(self, workdir, nginx_bin, module, redis_port, sim_port, reuseport=False):
        self.prefix = os.path.join(workdir, "nginx")
        for d in ("logs", "temp"):
            os.makedirs(os.path.join(self.prefix, d))
        key_file = os.path.join(self.prefix, "api.key")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, (API_KEY + "\n").encode())
        os.close(fd)
        self.port = free_port()
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(nginx_conf(module, "127.0.0.1:%d" % redis_port,
                               "http://127.0.0.1:%d" % sim_port, key_file, self.port,
                               reuseport))
        self.error_log = os.path.join(self.prefix, "logs", "error.log")
        self.stderr = open(os.path.join(self.prefix, "logs", "stderr.log"), "wb")
        self.proc = subprocess.Popen([nginx_bin, "-p", self.prefix + "/", "-c", self.conf,
                                      "-e", self.error_log, "-g", "daemon off;"],
                                     stdout=self.stderr, stderr=self.stderr)
        if not wait_port(self.port, 20, self.proc):
            self.stop()
            raise RuntimeError("nginx did not start: %s" % self.tail_log())
        self.workers = self._wait_workers(set(), 10)

    def _wait_workers(self, old, timeout):
        """The worker processes, once there are two and none of `old`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [p for p in children_of(self.proc.pid)
                    if (proc_stat_fields(p) or ["", "Z"])[0] != "Z"]
            if len(pids) == 2 and not set(pids) & old:
                return pids
            time.sleep(0.05)
        raise RuntimeError("nginx workers did not (re)start: %s" % self.tail_log())

    def refresh(self):
        """The current workers (a crashed one is replaced by the master)."""
        self.workers = self._wait_workers(set(), 30)
        return self.workers

    def reload(self):
        """New workers (SIGHUP), empty snapshot caches; waits until the old
        ones have exited."""
        old = set(self.workers)
        self.proc.send_signal(signal.SIGHUP)
        self.workers = self._wait_workers(old, 30)
        return self.workers

    def rss_kb(self):
        return {p: proc_status_kb(p, "VmRSS") for p in self.workers}

    def ticks(self):
        """CPU ticks of the workers; a worker gone since is None."""
        return {p: proc_ticks(p) for p in self.workers}

    def tail_log(self, n=5):
        try:
            with open(self.error_log, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])

    def log_lines(self, pattern):
        try:
            with open(self.error_log, errors="replace") as f:
                return [l for l in f if re.search(pattern, l)]
        except OSError:
            return []

    @staticmethod
    def command():
        return "nginx -p $RUN/nginx/ -c $RUN/nginx/nginx.conf -g 'daemon off;'"

    def stop(self):
        stop_proc(self.proc, signal.SIGQUIT, 15)
        self.stderr.close()


# ---------------------------------------------------------------------- wrk

# The query loads' script: the URL, or one of many in turn (made from a
# number by %(gen)s, or from a list), wrk's own latency statistics
# (microseconds) as one line, and the X-Umlo-Cache counts; each thread
# stops after MAX requests per connection.  (The ping probe uses the
# common Wrk.)
QUERY_WRK_LUA = """\
local paths = {%(paths)s}
local start = %(start)d
local cap = %(cap)d
local sent = 0
local threads = {}
local nthreads = 0
hit, miss, wait = 0, 0, 0
first = 0
%(extra)s
-- each thread walks its own part of the list, so that with a list longer
-- than the run every request is a different one
function setup(thread)
  nthreads = nthreads + 1
  thread:set("first", nthreads - 1)
  table.insert(threads, thread)
end
%(gen)s
function request()
  sent = sent + 1
  if sent > cap then
    wrk.thread:stop()
  end
  local n = npaths or #paths
  local i = (start + first * math.floor(n / %(threads)d) + sent - 1) %% n
  return wrk.format(nil, path_of and path_of(i) or paths[i + 1])
end
%(response)s
function done(summary, latency, requests)
  local e = summary.errors
  local h, m, w = 0, 0, 0
  for _, t in ipairs(threads) do
    h = h + (t:get("hit") or 0)
    m = m + (t:get("miss") or 0)
    w = w + (t:get("wait") or 0)
  end
  io.write(string.format("UMLO-CACHE hit=%%d miss=%%d wait=%%d\\n", h, m, w))
  io.write(string.format(
    "UMLO-RESULT requests=%%d duration_us=%%d bytes=%%d connect=%%d read=%%d " ..
    "write=%%d status=%%d timeout=%%d mean=%%.1f stdev=%%.1f min=%%d max=%%d " ..
    "p50=%%d p90=%%d p99=%%d p999=%%d\\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read,
    e.write, e.status, e.timeout, latency.mean, latency.stdev, latency.min,
    latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
"""


VARIED_NAME = "varied: another query each request"
VARIED_DAYS_NAME = "varied: three filters + sort, inactive_days 1–365"


def cache_str(c):
    """The module's X-Umlo-Cache answers counted by wrk."""
    return "hit %d / miss %d / wait %d" % (c.get("hit", 0), c.get("miss", 0), c.get("wait", 0))



# counts the module's X-Umlo-Cache answers (hit, miss, wait); only for the
# varied loads, as a response() callback costs wrk some CPU
WRK_LUA_RESPONSE = """\
function response(status, headers, body)
  local c = headers["X-Umlo-Cache"]
  if c == "hit" then hit = hit + 1
  elseif c == "miss" then miss = miss + 1
  elseif c == "wait" then wait = wait + 1 end
end
"""


# The distinct queries of the "varied" load, made by wrk from a number:
# q of two letters (676) x status (3) x claim (3) x created_after (7) x
# sort (4) x order (2) = 340,704 different filtered lists.
VARIED_LUA = """\
npaths = 340704
local letters = "abcdefghijklmnopqrstuvwxyz"
local statuses = {"", "&status=active", "&status=suspended,deactivated"}
local claims = {"", "&claim=managed", "&claim=unmanaged"}
local sorts = {"name", "email", "created", "last_active"}
local orders = {"asc", "desc"}
function path_of(i)
  -- a fixed permutation, so that neighbours differ in every part
  i = (i * 7919) % npaths
  local function take(n)
    local d = i % n
    i = (i - d) / n
    return d
  end
  local a, b = take(26), take(26)
  local st, cl, yr = take(3), take(3), take(7)
  local so, od = take(4), take(2)
  return "/umlo/users?q=" .. letters:sub(a + 1, a + 1) .. letters:sub(b + 1, b + 1)
    .. statuses[st + 1] .. claims[cl + 1]
    .. (yr > 0 and ("&created_after=" .. (2019 + yr) .. "-01-01") or "")
    .. "&sort=" .. sorts[so + 1] .. "&order=" .. orders[od + 1] .. "&limit=100"
end
"""
VARIED_COUNT = 340704


def write_query_lua(tmp, name, paths, conns_per_thread, threads, ping=False, count=False,
              gen=None, start=0):
    extra = ""
    if ping:
        extra = ('wrk.headers["Connection"] = "close"\n'
                 "function delay()\n  return %d\nend\n" % PING_DELAY_MS)
    text = QUERY_WRK_LUA % {"paths": ",\n".join(lua_str(p) for p in paths) if not gen else "",
                      "cap": MAX_REQUESTS_PER_CONN * conns_per_thread,
                      "threads": threads, "extra": extra, "start": start,
                      "gen": gen or "",
                      "response": WRK_LUA_RESPONSE if count else ""}
    fn = os.path.join(tmp, name)
    with open(fn, "w") as f:
        f.write(text)
    return fn


class QueryWrk:
    """One wrk process of a query load; its CPU use comes from wait4()'s
    rusage."""

    def __init__(self, wrk_bin, tmp, port, path, conns, threads, duration, ping=False,
                 paths=None, gen=None, start=0):
        self.threads = threads
        self.duration = duration
        paths = paths or [path]
        name = "wrk-%d-%s.lua" % (os.getpid(), hashlib.sha1(
            ("%s|%d|%d|%s|%d|%d|%d" % (path, conns, threads, ping, len(paths), bool(gen),
                                       start)).encode()
        ).hexdigest()[:10])
        script = write_query_lua(tmp, name, paths, max(1, conns // threads), threads, ping,
                           count=len(paths) > 1 or bool(gen), gen=gen, start=start)
        self.argv = [wrk_bin, "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration,
                     "--timeout", "%ds" % WRK_TIMEOUT_S, "-s", script,
                     "http://127.0.0.1:%d%s" % (port, path)]
        self.out = tempfile.TemporaryFile(dir=tmp)
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=self.out, stderr=subprocess.STDOUT)

    def finish(self):
        deadline = self.t0 + self.duration + WRK_TIMEOUT_S + 15
        ru = None
        while True:
            pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.proc.returncode = status
                break
            if time.monotonic() > deadline:
                self.proc.kill()
                pid, status, ru = os.wait4(self.proc.pid, 0)
                self.proc.returncode = status
                raise RuntimeError("wrk did not stop in time: %s" % " ".join(self.argv))
            time.sleep(0.05)
        wall = time.monotonic() - self.t0
        self.out.seek(0)
        text = self.out.read().decode(errors="replace")
        self.out.close()
        m = re.search(r"^UMLO-RESULT (.*)$", text, re.M)
        if not m:
            raise RuntimeError("wrk gave no result (exit %s): %s" % (status, text[-500:]))
        r = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
        c = re.search(r"^UMLO-CACHE (.*)$", text, re.M)
        cache = {k: int(v) for k, v in (kv.split("=") for kv in c.group(1).split())} \
            if c else {}
        if not any(cache.values()):
            cache = {}
        dur = r["duration_us"] / 1e6
        errors = r["connect"] + r["read"] + r["write"] + r["timeout"]
        return {
            "requests": int(r["requests"]),
            "rps": r["requests"] / dur if dur > 0 else None,
            "mb_per_s": r["bytes"] / dur / 1e6 if dur > 0 else None,
            "bytes_per_req": r["bytes"] / r["requests"] if r["requests"] else None,
            "p50": r["p50"] / 1000.0, "p90": r["p90"] / 1000.0,
            "p99": r["p99"] / 1000.0, "p999": r["p999"] / 1000.0,
            "max": r["max"] / 1000.0, "mean": r["mean"] / 1000.0,
            "errors": int(errors), "non2xx": int(r["status"]),
            "timeouts": int(r["timeout"]),
            "cpu_s": ru.ru_utime + ru.ru_stime, "wall": wall,
            "cache": cache,
        }


# ------------------------------------------------------------- measurement

class Bench:
    def __init__(self, args, tmp, module, sim_dir):
        self.args = args
        self.tmp = tmp
        self.module = module
        self.sim_dir = sim_dir
        self.walked = {}
        self.sim = self.redis = self.nginx = None
        self.res = {"load": [], "runs": [], "csv": [], "ping_idle": [],
                    "queries": [], "notes": []}

    # ---- setup

    def start(self):
        a = self.args
        anchor = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.res["anchor"] = anchor
        log("starting the simulator (%d users, %d groups, %d sites) ..." % (
            a.users, a.groups, a.sites))
        t0 = time.monotonic()
        self.sim = Sim(self.tmp, self.sim_dir, a, anchor)
        log("  listening after %.1f s" % (time.monotonic() - t0))
        self.redis = Redis(self.tmp)
        self.nginx = Nginx(self.tmp, a.nginx, self.module, self.redis.port, self.sim.port,
                           a.reuseport)
        self.port = self.nginx.port
        self.res["sim_command"] = self.sim.command()

    def stop(self):
        for p in (self.nginx, self.redis, self.sim):
            if p is not None:
                try:
                    p.stop()
                except Exception:   # noqa: BLE001 - cleanup must go on
                    pass

    def sync(self):
        log("full sync ...")
        t0 = time.monotonic()
        status, doc, raw = http_json(self.port, "/umlo/sync", method="POST")
        if status != 202:
            raise RuntimeError("POST /umlo/sync: %d %r" % (status, raw[:300]))
        deadline = t0 + self.args.sync_timeout
        last = None
        while time.monotonic() < deadline:
            status, doc, raw = http_json(self.port, "/umlo/status")
            if status == 200 and doc:
                last = doc
                s = doc.get("sync") or {}
                if s.get("state") in ("succeeded", "failed", "cancelled"):
                    break
            if self.nginx.proc.poll() is not None:
                raise RuntimeError("nginx exited during the sync: %s" % self.nginx.tail_log())
            time.sleep(0.2)
        else:
            http_json(self.port, "/umlo/sync", method="DELETE")
            raise RuntimeError("sync not finished after %d s" % self.args.sync_timeout)
        s = last["sync"]
        if s["state"] != "succeeded":
            raise RuntimeError("sync %s: %s" % (s["state"], json.dumps(s.get("error"))))
        snap = last.get("snapshot") or {}
        users = (snap.get("counts") or {}).get("users")
        self.expected_users = users
        self.res["snapshot_users"] = users
        self.res["sync_s"] = time.monotonic() - t0
        self.res["snapshot"] = snap
        self.res["sync_api_calls"] = (s.get("api") or {}).get("calls")
        log("  succeeded in %.1f s: %s users, generation %s" % (
            self.res["sync_s"], users, snap.get("generation")))
        # accounts only the v1 API lists (apps, customers) are not synced
        counts = sim_org_counts(self.sim.port)
        self.res["sim_counts"] = counts
        if users != counts.get("v2Users"):
            self.res["notes"].append("the snapshot has %s users, the simulator's v2 "
                                     "directory %s" % (users, counts.get("v2Users")))

    # ---- first load of the snapshot by each worker

    def measure_load(self, label):
        """Requests on new connections until each worker has answered once;
        the first answer of each worker is the one that loaded the snapshot."""
        ng = self.nginx
        time.sleep(0.5)
        rss0 = ng.rss_kb()
        hwm0 = {p: proc_status_kb(p, "VmHWM") for p in ng.workers}
        ticks0 = ng.ticks()
        first = {}
        tries = 0
        while len(first) < len(ng.workers) and tries < 200:
            tries += 1
            status, hdrs, body, secs = http_get(self.port, "/umlo/users?limit=1", timeout=300)
            if status != 200:
                raise RuntimeError("first /umlo/users after %s: %d %r" % (label, status, body[:300]))
            pid = int(hdrs.get("x-umlo-worker", "0"))
            if pid in ng.workers and pid not in first:
                first[pid] = secs
        if len(first) < len(ng.workers):
            self.res["notes"].append("%s: only %d of the workers answered in %d requests" % (
                label, len(first), tries))
        # a second request to each, now loaded, for comparison
        again = {}
        tries = 0
        while len(again) < len(first) and tries < 200:
            tries += 1
            status, hdrs, body, secs = http_get(self.port, "/umlo/users?limit=1")
            pid = int(hdrs.get("x-umlo-worker", "0"))
            if pid in first and pid not in again:
                again[pid] = secs
        time.sleep(0.3)
        rss1 = ng.rss_kb()
        ticks1 = ng.ticks()
        loaded = {}
        for line in ng.log_lines(r"snapshot generation \d+ loaded"):
            m = re.search(r"\] (\d+)#\d+: .*loaded: (\d+) users, (\d+) bytes", line)
            if m:
                loaded[int(m.group(1))] = (int(m.group(2)), int(m.group(3)))
        for i, pid in enumerate(sorted(first)):
            row = {"label": label, "worker": i + 1, "first_s": first[pid],
                   "second_s": again.get(pid),
                   "rss_before_kb": rss0.get(pid), "rss_after_kb": rss1.get(pid),
                   "hwm_before_kb": hwm0.get(pid),
                   "cpu_s": ((ticks1.get(pid) or 0) - (ticks0.get(pid) or 0)) / CLK_TCK,
                   "snap_users": loaded.get(pid, (None, None))[0],
                   "snap_bytes": loaded.get(pid, (None, None))[1]}
            self.res["load"].append(row)
            log("  %s, worker %d: first request %.0f ms (then %s ms), RSS %s -> %s, "
                "snapshot %s bytes" % (
                    label, i + 1, first[pid] * 1000,
                    fmt_ms(again.get(pid, 0) * 1000), mib(row["rss_before_kb"]),
                    mib(row["rss_after_kb"]), fmt_num(row["snap_bytes"])))

    # ---- queries

    def pick_queries(self):
        status, doc, raw = http_json(self.port, "/umlo/users/facets", timeout=120)
        if status != 200:
            raise RuntimeError("GET /umlo/users/facets: %d %r" % (status, raw[:300]))
        self.res["facets_total"] = (doc.get("data") or doc).get("total") \
            if isinstance(doc, dict) else None
        site = find_site(doc)
        if site is None:
            raise RuntimeError("no site in /umlo/users/facets: %r" % raw[:300])
        self.res["site"] = site
        qsite = urllib.parse.quote(site, safe="")
        qs = [
            ("three", "three filters + sort",
             "/umlo/users?site=%s&billable=true&inactive_days=90&sort=last_active&limit=100"
             % qsite, True),
            # the issue's example says q=ann, which no generated name or
            # email contains: "ana" (Ana, Hana, Tanaka) matches a few percent
            ("text", "text search + status, by name",
             "/umlo/users?q=ana&status=active&sort=name&limit=100", True),
            ("product", "product, never active",
             "/umlo/users?product=jira-software&never_active=true&limit=100", True),
            # every request another query: the module's cache of filtered
            # lists cannot help, each answer is a cold miss
            ("varied", VARIED_NAME, None, True),
            # one list, seen with another inactive_days each time
            ("varied-days", VARIED_DAYS_NAME, None, True),
            # references at one client only: where the time goes
            ("refs", "no filter (org, by name)", "/umlo/users?limit=100", False),
            ("refs", "three filters + sort, 1 row",
             "/umlo/users?site=%s&billable=true&inactive_days=90&sort=last_active&limit=1"
             % qsite, False),
            ("refs", "org, by last active", "/umlo/users?sort=last_active&limit=100", False),
            ("refs", "one site, by name", "/umlo/users?site=%s&limit=100" % qsite, False),
        ]
        for qid, name, path, main in qs:
            if qid not in self.args.queries:
                continue
            paths = gen = None
            if qid == "varied":
                gen = VARIED_LUA
                path = "/umlo/users?q=aa&sort=name&order=asc&limit=100"
            elif qid == "varied-days":
                paths = ["/umlo/users?site=%s&billable=true&inactive_days=%d&sort=last_active"
                         "&limit=100" % (qsite, d) for d in range(1, 366)]
            if paths:
                path = paths[0]
            status, hdrs, body, secs = http_get(self.port, path)
            if status != 200:
                raise RuntimeError("%s: %d %r" % (path, status, body[:300]))
            doc = json.loads(body)
            total = doc["meta"]["total"]
            self.res["queries"].append({"name": name, "path": path, "main": main,
                                        "total": total if not (paths or gen) else None,
                                        "rows": len(doc["data"]),
                                        "bytes": len(body), "paths": paths, "gen": gen})
            log("  %-32s total %6d, %3d rows, %7d bytes  %s" % (
                name, total, len(doc["data"]), len(body), path))
            if total == 0:
                self.res["notes"].append("query %r matches no user" % path)

    def warm(self):
        """A few requests of each query until both workers answer them fast."""
        seen = {}
        paths = [q["path"] for q in self.res["queries"]] + ["/umlo/dashboard", "/ping"]
        for path in paths:
            for _ in range(40):
                status, hdrs, body, secs = http_get(self.port, path)
                if status != 200:
                    raise RuntimeError("warm-up %s: %d %r" % (path, status, body[:200]))
                pid = int(hdrs.get("x-umlo-worker", "0"))
                seen.setdefault((path, pid), 0)
                seen[(path, pid)] += 1
                if all(seen.get((path, w), 0) >= 2 for w in self.nginx.workers):
                    break

    def wait_quiet(self):
        """Waits (at most --quiet-wait seconds) until the machine is idle:
        other processes' CPU use would blur the figures."""
        t0 = time.monotonic()
        while True:
            b0, t_0 = cpu_times()
            time.sleep(0.5)
            b1, t_1 = cpu_times()
            busy = (b1 - b0) / float(max(1, t_1 - t_0))
            waited = time.monotonic() - t0
            if busy < 0.1 or waited >= self.args.quiet_wait:
                return busy, waited

    def load_run(self, kind, name, path, conns, duration, run, paths=None, gen=None):
        """One wrk run of `path` (or of `paths`, or `gen`'s, in turn), with the
        ping probe alongside.  A list is walked on from where the last run of
        the same load stopped, so that runs do not repeat each other's
        queries."""
        a = self.args
        ng = self.nginx
        idle_busy, waited = self.wait_quiet()
        threads = min(a.wrk_threads, conns)
        ng_t0 = ng.ticks()
        redis_t0 = proc_ticks(self.redis.proc.pid)
        sim_t0 = proc_ticks(self.sim.proc.pid)
        busy0, total0 = cpu_times()
        start = self.walked.get(name, 0)
        main = QueryWrk(a.wrk, self.tmp, self.port, path, conns, threads, duration, paths=paths,
                   gen=gen, start=start)
        ping = None
        if not a.no_ping:
            ping = Wrk(a.wrk, self.tmp, self.port, "/ping", PING_CONNS, 1, duration, ping=True)
        m = main.finish()
        self.walked[name] = start + m["requests"]
        p = ping.finish() if ping else None
        busy1, total1 = cpu_times()
        sim_t1 = proc_ticks(self.sim.proc.pid)
        ng_t1 = ng.ticks()
        redis_t1 = proc_ticks(self.redis.proc.pid)
        wall = m["wall"]
        per_worker = sorted((ng_t1[w] - ng_t0[w]) / CLK_TCK / wall for w in ng_t0
                            if ng_t0.get(w) is not None and ng_t1.get(w) is not None)
        row = {"kind": kind, "name": name, "path": path, "conns": conns, "run": run,
               "threads": threads, "main": m, "ping": p,
               "nginx_cpu": sum(per_worker), "nginx_cpu_workers": per_worker,
               "redis_cpu": ((redis_t1 or 0) - (redis_t0 or 0)) / CLK_TCK / wall,
               "wrk_cpu": m["cpu_s"] / wall,
               "ping_wrk_cpu": (p["cpu_s"] / p["wall"]) if p else 0.0,
               "machine_busy": (busy1 - busy0) / float(max(1, total1 - total0))}
        # CPU of processes that are not part of this benchmark (cores)
        ncpu = os.cpu_count() or 1
        ours = (row["nginx_cpu"] + row["redis_cpu"] + row["wrk_cpu"] + row["ping_wrk_cpu"]
                + ((sim_t1 or 0) - (sim_t0 or 0)) / CLK_TCK / wall)
        row["other_cpu"] = max(0.0, row["machine_busy"] * ncpu - ours)
        row["bottleneck"] = bottleneck(row, threads)
        row["busy_before"] = idle_busy
        row["waited"] = waited
        self.res["runs"].append(row)
        log("  %-30s c=%-3d run %d: p50 %s ms, p99 %s ms, %s req/s, ping p99 %s ms, "
            "nginx %s, wrk %s, redis %s, machine %s, others %s%s%s" % (
                name, conns, run, fmt_ms(m["p50"]), fmt_ms(m["p99"]), fmt_num(m["rps"], 1),
                fmt_ms(p["p99"]) if p else "—", pct(row["nginx_cpu"]), pct(row["wrk_cpu"]),
                pct(row["redis_cpu"]), pct(row["machine_busy"]), pct(row["other_cpu"]),
                (", cache %s" % cache_str(m["cache"])) if m["cache"] else "",
                (", %d errors, %d non-2xx" % (m["errors"], m["non2xx"]))
                if m["errors"] or m["non2xx"] else ""))
        return row

    def ping_idle(self, duration, run):
        w = Wrk(self.args.wrk, self.tmp, self.port, "/ping", PING_CONNS, 1, duration, ping=True)
        p = w.finish()
        self.res["ping_idle"].append(p)
        log("  ping alone, run %d: p50 %s ms, p99 %s ms, max %s ms" % (
            run, fmt_ms(p["p50"]), fmt_ms(p["p99"]), fmt_ms(p["max"])))

    def csv_export(self, run):
        """GET ?format=csv with one client, timing the whole body, while a
        Python thread probes /ping on new connections."""
        ng = self.nginx
        self.warm_workers()
        stop = threading.Event()
        pings = []

        def prober():
            while not stop.is_set():
                try:
                    st, _, _, secs = http_get(self.port, "/ping", timeout=30)
                    if st == 200:
                        pings.append(secs * 1000)
                except OSError:
                    pass
                stop.wait(PING_DELAY_MS / 1000.0)

        t = threading.Thread(target=prober, daemon=True)
        crashes0 = len(ng.log_lines(r"exited on signal"))
        ticks0 = ng.ticks()
        t.start()
        t0 = time.monotonic()
        # a stalled export fails after CSV_STALL_S without a byte
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CSV_STALL_S)
        chunks = []
        error = None
        status = None
        t_head = None
        try:
            conn.request("GET", "/umlo/users?format=csv")
            r = conn.getresponse()
            status = r.status
            t_head = time.monotonic() - t0
            while True:
                b = r.read1(1 << 16)
                if not b:
                    break
                chunks.append(b)
        except (http.client.HTTPException, OSError) as e:
            error = "%s after %d bytes" % (type(e).__name__, sum(len(c) for c in chunks))
        secs = time.monotonic() - t0
        conn.close()
        stop.set()
        t.join(35)
        ticks1 = ng.ticks()
        body = b"".join(chunks)
        crashes = ng.log_lines(r"exited on signal")[crashes0:]
        if status != 200 and error is None:
            error = "status %s: %r" % (status, body[:200])
        rows = None
        if status == 200:
            text = body.decode("utf-8", errors="replace")
            rows = sum(1 for _ in csv.reader(io.StringIO(text))) - 1
        # a crashed worker's time is lost with it: then the survivors' only
        cpu = sum(ticks1[w] - ticks0[w] for w in ticks0
                  if ticks0.get(w) is not None and ticks1.get(w) is not None) / CLK_TCK
        row = {"run": run, "seconds": secs, "headers_s": t_head,
               "bytes": len(body), "rows": rows, "nginx_cpu_s": cpu,
               "error": error, "crashes": [c.strip() for c in crashes],
               "ping_n": len(pings),
               "ping_p50": median_of(pings),
               "ping_max": max(pings) if pings else None}
        self.res["csv"].append(row)
        log("  CSV run %d: %s rows, %s bytes in %.2f s (headers after %s ms), "
            "nginx CPU %.2f s, ping max %s ms over %d probes%s" % (
                run, fmt_num(rows), fmt_num(len(body)), secs,
                fmt_ms(t_head * 1000) if t_head is not None else "—", cpu,
                fmt_ms(row["ping_max"]), len(pings),
                ("; FAILED: %s%s" % (error, "; " + crashes[-1].strip() if crashes else ""))
                if error else ""))
        if error is None and rows != self.expected_users:
            self.res["notes"].append("CSV run %d has %s rows, the snapshot %s users" % (
                run, rows, self.expected_users))
        if crashes:
            ng.refresh()

    def warm_workers(self):
        """Until every (current) worker has answered a users request: after a
        crash the master starts a worker whose cache is empty."""
        ng = self.nginx
        ng.refresh()
        seen = set()
        for _ in range(200):
            status, hdrs, body, secs = http_get(self.port, "/umlo/users?limit=1", timeout=300)
            if status == 200:
                seen.add(int(hdrs.get("x-umlo-worker", "0")))
            if set(ng.workers) <= seen:
                return
        raise RuntimeError("could not reach every worker: %s answered" % sorted(seen))

    def perf_start(self, name, pids, max_s):
        data = os.path.join(self.tmp, "perf-%s.data" % name)
        proc = subprocess.Popen([self.perf, "record", "-F", str(PERF_HZ), "--call-graph",
                                 "dwarf,16384", "-o", data, "-p",
                                 ",".join(str(p) for p in pids), "--", "sleep", str(max_s)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)    # perf attaches
        return proc, data

    def perf_finish(self, name, what, proc, data):
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if not os.path.exists(data):
            self.res["perf"].append((name, what, "perf record wrote nothing"))
            return
        def report(*opts):
            rep = subprocess.run([self.perf, "report", "-i", data, "--stdio"] + list(opts),
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 timeout=300)
            return rep.stdout.decode(errors="replace").splitlines()

        # self time by object, self time by function, and the module's
        # functions with their callees (inclusive time)
        by_dso = []
        for line in report("--no-children", "--sort", "dso", "-g", "none",
                           "--percent-limit", "1"):
            m = re.match(r"^\s+(\d+\.\d+)%\s+(\S+)\s*$", line)
            if m:
                by_dso.append((float(m.group(1)), os.path.basename(m.group(2))))
        # per (object, function), summed over the two workers (each has its
        # own mappings, so perf lists a function once per process)
        selfs, incl = {}, {}
        for line in report("--children", "--sort", "dso,symbol", "-g", "none",
                           "--percent-limit", "0.5"):
            m = re.match(r"^\s+(\d+\.\d+)%\s+(\d+\.\d+)%\s+(\S+)\s+\[[.k]\]\s+(\S+)",
                         line)
            if not m:
                continue
            children, own = float(m.group(1)), float(m.group(2))
            dso, sym = os.path.basename(m.group(3)), m.group(4)
            if sym.startswith("0x"):
                sym = "(no symbol)"
            selfs[(dso, sym)] = selfs.get((dso, sym), 0.0) + own
            if sym != "(no symbol)" and dso != "nginx" and not sym.startswith("__libc_start"):
                incl[(dso, sym)] = incl.get((dso, sym), 0.0) + children
        selfs = sorted(((v, d, f) for (d, f), v in selfs.items() if v >= 1.5), reverse=True)
        incl = sorted(((v, d, f) for (d, f), v in incl.items() if v >= 3.0), reverse=True)
        self.res["perf"].append((name, what, {"dso": by_dso[:8], "self": selfs[:15],
                                              "incl": incl[:15]}))
        log("  perf %s: %s | %s" % (
            name, ", ".join("%s %.0f %%" % (d, pc) for pc, d in by_dso[:5]),
            ", ".join("%s %.0f %%" % (sym, pc) for pc, dso, sym in incl[:8])))

    def perf_profiles(self, path, seconds):
        """Where the workers' time goes: perf record of both workers under
        the main query and the dashboard at 50 clients, and during the load
        of the snapshot by a fresh worker."""
        self.perf = shutil.which("perf")
        self.res["perf"] = []
        if self.perf is None:
            self.res["perf_error"] = "perf is not installed"
            return
        for name, p in (("query", path), ("dashboard", "/umlo/dashboard")):
            w = Wrk(self.args.wrk, self.tmp, self.port, p, TARGET_CLIENTS,
                    min(self.args.wrk_threads, TARGET_CLIENTS), seconds + 3)
            time.sleep(1)
            proc, data = self.perf_start(name, self.nginx.workers, seconds)
            proc.wait(seconds + 30)
            w.finish()
            self.perf_finish(name, "`%s` at %d clients, %d s" % (p, TARGET_CLIENTS, seconds),
                             proc, data)
        # the load: new workers, one first request
        self.nginx.reload()
        proc, data = self.perf_start("load", self.nginx.workers, 120)
        t0 = time.monotonic()
        http_get(self.port, "/umlo/users?limit=1", timeout=300)
        secs = time.monotonic() - t0
        self.perf_finish("load", "a fresh worker's first request (loads the snapshot, "
                         "%.1f s)" % secs, proc, data)
        self.warm_workers()

    # ---- the whole benchmark

    def run(self):
        a = self.args
        self.start()
        self.sync()

        log("snapshot load (first request of each worker after the sync) ...")
        self.measure_load("after the sync")
        for i in range(1, a.runs):
            self.nginx.reload()
            self.measure_load("fresh workers (reload %d)" % i)

        log("queries ...")
        self.pick_queries()
        self.warm()
        main = [q for q in self.res["queries"] if q["main"]]
        refs = [q for q in self.res["queries"] if not q["main"]]

        rss_before = self.nginx.rss_kb()
        for run in range(1, a.runs + 1):
            log("run %d of %d" % (run, a.runs))
            self.ping_idle(min(a.duration, 5), run)
            for q in main:
                for c in a.conns:
                    self.load_run("users", q["name"], q["path"], c, a.duration, run,
                                  paths=q.get("paths"), gen=q.get("gen"))
            for q in refs:
                self.load_run("ref", q["name"], q["path"], 1,
                              max(1 if a.smoke else 2, a.duration // 2), run)
            if "dashboard" in a.queries:
                self.load_run("dashboard", "dashboard", "/umlo/dashboard", TARGET_CLIENTS,
                              a.duration, run)
        time.sleep(0.5)
        self.res["rss_end"] = (rss_before, self.nginx.rss_kb())

        if a.perf and main:
            log("perf profiles ...")
            self.perf_profiles(main[0]["path"], a.perf)

        # last: the export has crashed workers (see the results' flags)
        if "csv" in a.queries:
            log("CSV export ...")
            for run in range(1, a.runs + 1):
                self.csv_export(run)

        errors = [l.strip() for l in self.nginx.log_lines(r"\[(alert|crit|emerg|error)\]")]
        self.res["nginx_errors"] = errors[-10:]


def sim_org_counts(port):
    status, doc, raw = http_json(port, "/__sim/org?users=false")
    if status != 200 or not isinstance(doc, dict):
        raise RuntimeError("GET /__sim/org: %d %r" % (status, raw[:200]))
    return doc.get("counts") or {}


def find_site(doc):
    """The host of the site with the most users in a facets document."""
    best = None
    data = doc.get("data", doc) if isinstance(doc, dict) else {}
    sites = data.get("sites") if isinstance(data, dict) else None
    for s in sites or []:
        host = s.get("host") or s.get("name") or s.get("url") or s.get("id")
        users = s.get("users") or 0
        if host and (best is None or users > best[1]):
            best = (host, users)
    if best is None:
        return None
    host = best[0]
    return urllib.parse.urlparse(host).netloc or host


def bottleneck(row, threads):
    """Who limited this run, from the CPU use measured in /proc."""
    ncpu = os.cpu_count() or 1
    wrk_per_thread = row["wrk_cpu"] / max(1, threads)
    if wrk_per_thread > 0.9:
        return "wrk (%.0f %% of a core per thread)" % (wrk_per_thread * 100)
    if row["machine_busy"] > 0.9:
        if row.get("other_cpu", 0) > 0.2:
            return "CPU shared with other processes (%.2f cores)" % row["other_cpu"]
        if row["wrk_cpu"] + row["ping_wrk_cpu"] > 0.2:
            return "CPU shared: wrk took %.2f of %d cores" % (
                row["wrk_cpu"] + row["ping_wrk_cpu"], ncpu)
        return "nginx CPU"
    if max(row["nginx_cpu_workers"]) > 0.9:
        return "one nginx worker"
    return "latency (closed loop)"


# ------------------------------------------------------------------ report


def git_state():
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10)
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "src", "config"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10)
        diff = subprocess.run(["git", "-C", REPO, "diff", "HEAD", "--", "src", "config"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    s = head.stdout.decode().strip()
    if dirty.stdout.strip():
        files = sorted({l[3:] for l in dirty.stdout.decode().splitlines()})
        s += " + uncommitted changes to %s (diff sha256 %s…)" % (
            ", ".join(files), hashlib.sha256(diff.stdout).hexdigest()[:12])
    return s


def build_state(module):
    """Whether the module is the build of the sources there now."""
    built = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(os.stat(module).st_mtime))
    if os.path.realpath(module) != os.path.realpath(MODULE):
        return "built %s, not build/ngx_umlo_module.so" % built
    try:
        q = subprocess.run(["make", "-q", "-C", REPO, "build/ngx_umlo_module.so"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "built %s" % built
    if q.returncode == 0:
        return "built %s, up to date with the sources (`make -q`)" % built
    return "built %s, **older than the sources** (`make -q` wants a rebuild)" % built


def versions(nginx_bin, wrk_bin, module, copy):
    with open(copy, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    return {"nginx": first_line([nginx_bin, "-v"]),
            "redis": first_line(["redis-server", "--version"]),
            "wrk": first_line([wrk_bin, "-v"]).split("Copyright")[0].strip(),
            "python": "Python " + platform.python_version(),
            "module": "%s sha256 %s…, %s; sources: %s" % (
                os.path.relpath(module, REPO) if not os.path.relpath(module, REPO).startswith("..")
                else os.path.basename(module), digest, build_state(module), git_state())}


def shown_command(argv):
    out = ["python3", "bench/users_bench.py"]
    for a in argv:
        if os.path.isabs(a):
            rel = os.path.relpath(a, REPO)
            a = rel if not rel.startswith("..") else "PATH"
        out.append(a if a and all(c.isalnum() or c in "-_.,/=:" for c in a) else "'%s'" % a)
    return " ".join(out)


def runs_of(res, kind, name=None, conns=None):
    return [r for r in res["runs"] if r["kind"] == kind
            and (name is None or r["name"] == name)
            and (conns is None or r["conns"] == conns)]


def verdict(value, target):
    if value is None:
        return "—"
    return "met" if value <= target else "**missed**"


def tables(res, args):
    """-> list of markdown lines: the summary and every table."""
    L = []
    main = [q for q in res["queries"] if q["main"]]
    refs = [q for q in res["queries"] if not q["main"]]

    # targets
    L.append("### Targets (%d clients)" % TARGET_CLIENTS)
    L.append("")
    L.append("| what | target | measured: median (min–max) of %d runs | |" % args.runs)
    L.append("| --- | --- | --- | --- |")
    for q in main:
        rs = runs_of(res, "users", q["name"], TARGET_CLIENTS)
        p50 = [r["main"]["p50"] for r in rs]
        p99 = [r["main"]["p99"] for r in rs]
        L.append("| users: %s, p50 | ≤ %.0f ms | %s ms | %s |" % (
            q["name"], TARGET_USERS_P50, mrange(p50, fmt_ms), verdict(median_of(p50), TARGET_USERS_P50)))
        L.append("| users: %s, p99 | ≤ %.0f ms | %s ms | %s |" % (
            q["name"], TARGET_USERS_P99, mrange(p99, fmt_ms), verdict(median_of(p99), TARGET_USERS_P99)))
    rs = runs_of(res, "dashboard")
    p99 = [r["main"]["p99"] for r in rs]
    L.append("| dashboard p99 | ≤ %.0f ms | %s ms | %s |" % (
        TARGET_DASH_P99, mrange(p99, fmt_ms), verdict(median_of(p99), TARGET_DASH_P99)))
    L.append("")
    ncpu = os.cpu_count() or 1
    need = TARGET_CLIENTS / (TARGET_USERS_P50 / 1000.0)
    per = [(q["name"], median_of([cpu_per_req(r) for r in
                                  runs_of(res, "users", q["name"], TARGET_CLIENTS)]))
           for q in main]
    per = [(n, v) for n, v in per if v]
    if per:
        L.append("How far off: with %d closed-loop clients the mean latency is %d ÷ "
                 "throughput (Little's law), so a p50 of %.0f ms needs about %s answers/s. "
                 "%d cores allow at most %d ÷ (CPU time per answer): %s." % (
                     TARGET_CLIENTS, TARGET_CLIENTS, TARGET_USERS_P50, fmt_num(need), ncpu, ncpu,
                     "; ".join("*%s* takes %s ms of worker CPU per answer at %d clients, "
                               "so at most %s/s" % (n, fmt_ms(v), TARGET_CLIENTS,
                                                    fmt_num(ncpu * 1000.0 / v))
                               for n, v in per)))
        L.append("")

    # users
    L.append("### User queries")
    L.append("")
    L.append("Each cell: median (min–max) of %d runs of `wrk -d%ds`; latency in ms. "
             "*ping p99* is `/ping` on the same nginx meanwhile; CPU is %% of one core "
             "(*nginx CPU*: both workers together; *busiest worker*: the one that worked "
             "most, which shows how evenly nginx spread the connections; the machine has "
             "%d cores)." % (
                 args.runs, args.duration, os.cpu_count()))
    L.append("")
    L.append("| query | matches | bytes/answer | clients | p50 | p99 | req/s | CPU ms/req | ping p99 | "
             "nginx CPU | busiest worker | wrk CPU | Redis CPU | other processes | machine busy | "
             "limited by | cache |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: | ---: | ---: | --- | --- |")
    for q in main:
        for c in args.conns:
            rs = runs_of(res, "users", q["name"], c)
            if not rs:
                continue
            L.append(users_row(q, c, rs))
    rs = runs_of(res, "dashboard")
    if rs:
        L.append(users_row({"name": "dashboard", "total": None,
                            "bytes": rs[0]["main"]["bytes_per_req"]}, TARGET_CLIENTS, rs))
    L.append("")
    L.append("Queries:")
    L.append("")
    for q in main:
        if q.get("gen"):
            L.append("- *%s*: %s different queries, made by wrk in turn from a number "
                     "(each wrk thread from its own place, each run on from where the "
                     "last stopped): `q=` two letters, `status` none / active / "
                     "suspended,deactivated, `claim` none / managed / unmanaged, "
                     "`created_after` none / 2020…2025, four sorts, two orders, "
                     "`limit=100`; e.g. `%s`" % (q["name"], fmt_num(VARIED_COUNT), q["path"]))
        elif q.get("paths"):
            L.append("- *%s*: %d different URLs in turn (each wrk thread from its own "
                     "place in the list), the first `%s`" % (q["name"], len(q["paths"]),
                                                              q["path"]))
        else:
            L.append("- *%s*: `%s`" % (q["name"], q["path"]))
    L.append("")
    L.append("*cache*: the module's `X-Umlo-Cache` answers, counted by wrk for the "
             "varied loads over every run of the cell: `hit` (the filtered list was "
             "in the worker's cache: the answer cost one page), `miss` (filtered for "
             "this request, in the thread pool: a cold miss), `wait` (waited for the "
             "same filtering started by another request). The repeated identical URLs "
             "above are all hits but the first of each worker; the *varied: another "
             "query each request* rows show what a cold miss costs.")
    L.append("")

    # every run
    L.append("<details><summary>Every run</summary>")
    L.append("")
    L.append("| what | clients | run | p50 | p90 | p99 | p99.9 | max | req/s | errors | "
             "nginx CPU per worker | wrk | Redis | others | waited for quiet |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: "
             "| ---: | ---: | ---: |")
    for r in res["runs"]:
        m = r["main"]
        L.append("| %s | %d | %d | %s | %s | %s | %s | %s | %s | %d | %s | %s | %s | %s | %.0f s |" % (
            r["name"], r["conns"], r["run"], fmt_ms(m["p50"]), fmt_ms(m["p90"]),
            fmt_ms(m["p99"]), fmt_ms(m["p999"]), fmt_ms(m["max"]), fmt_num(m["rps"], 1),
            m["errors"] + m["non2xx"], " + ".join(pct(x) for x in r["nginx_cpu_workers"]),
            pct(r["wrk_cpu"]), pct(r["redis_cpu"]), pct(r["other_cpu"]), r["waited"]))
    L.append("")
    L.append("</details>")
    L.append("")

    # references
    if refs:
        L.append("### Where the time goes: reference queries at one client")
        L.append("")
        L.append("With one client the latency is the worker's own time for one "
                 "request (plus loopback); runs of -d%ds." % max(2, args.duration // 2))
        L.append("")
        L.append("| query | matches | rows | bytes | p50 | p99 | req/s |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for q in main + refs:
            kind = "users" if q["main"] else "ref"
            rs = runs_of(res, kind, q["name"], 1)
            if not rs:
                continue
                L.append("| %s `%s` | %s | %d | %s | %s | %s | %s |" % (
                q["name"], q["path"].split("?", 1)[1]
                + (" …" if q.get("paths") or q.get("gen") else ""),
                fmt_num(q["total"]), q["rows"],
                fmt_num(q["bytes"]),
                mrange([r["main"]["p50"] for r in rs], fmt_ms),
                mrange([r["main"]["p99"] for r in rs], fmt_ms),
                mrange([r["main"]["rps"] for r in rs], lambda x: fmt_num(x, 1))))
        L.append("")

    # ping
    L.append("### Another location meanwhile (`/ping`)")
    L.append("")
    L.append("`wrk -t1 -c%d` with `Connection: close` (each probe on a new "
             "connection, so on either worker) and a %d ms pause before each request."
             % (PING_CONNS, PING_DELAY_MS))
    L.append("")
    L.append("| load | ping p50 | ping p99 | ping max | probes/s |")
    L.append("| --- | ---: | ---: | ---: | ---: |")
    pi = res["ping_idle"]
    if pi:
        L.append("| none | %s | %s | %s | %s |" % (
            mrange([p["p50"] for p in pi], fmt_ms), mrange([p["p99"] for p in pi], fmt_ms),
            mrange([p["max"] for p in pi], fmt_ms),
            mrange([p["rps"] for p in pi], lambda x: fmt_num(x, 0))))
    for q in main + [{"name": "dashboard"}]:
        kind = "dashboard" if q["name"] == "dashboard" else "users"
        for c in args.conns:
            rs = [r for r in runs_of(res, kind, q["name"], c) if r["ping"]]
            if not rs:
                continue
            L.append("| %s, %d clients | %s | %s | %s | %s |" % (
                q["name"], c,
                mrange([r["ping"]["p50"] for r in rs], fmt_ms),
                mrange([r["ping"]["p99"] for r in rs], fmt_ms),
                mrange([r["ping"]["max"] for r in rs], fmt_ms),
                mrange([r["ping"]["rps"] for r in rs], lambda x: fmt_num(x, 0))))
    cs = res["csv"]
    if cs:
        L.append("| CSV export (1 client; Python prober, new connection each) | %s | — | %s | — |" % (
            mrange([c["ping_p50"] for c in cs], fmt_ms), mrange([c["ping_max"] for c in cs], fmt_ms)))
    L.append("")

    # csv
    if cs:
        L.append("### CSV export of every user")
        L.append("")
        L.append("`GET /umlo/users?format=csv`, one client (Python `http.client`), "
                 "until the last byte; one row per run. *complete* means the status was "
                 "200, the chunked body ended properly and the CSV has one row per user.")
        L.append("")
        L.append("| run | result | rows | bytes | headers after | total time | MB/s | nginx CPU |")
        L.append("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for c in cs:
            ok = c["error"] is None and c["rows"] == res.get("snapshot_users")
            result = "complete" if ok else "**failed**: %s%s" % (
                c["error"] or "%s rows" % c["rows"],
                "; worker exited on signal %s" % re.search(
                    r"signal (\d+)", c["crashes"][-1]).group(1) if c["crashes"] else "")
            L.append("| %d | %s | %s | %s | %s ms | %.2f s | %.1f | %.2f s |" % (
                c["run"], result, fmt_num(c["rows"]), fmt_num(c["bytes"]),
                fmt_ms(c["headers_s"] * 1000) if c["headers_s"] is not None else "—",
                c["seconds"], c["bytes"] / c["seconds"] / 1e6, c["nginx_cpu_s"]))
        L.append("")

    # load
    ld = res["load"]
    if ld:
        L.append("### Loading the snapshot")
        L.append("")
        L.append("The first `GET /umlo/users?limit=1` a worker answers after a sync "
                 "loads the snapshot from Redis in the thread pool; each worker loads "
                 "its own copy. The response header `X-Umlo-Worker: $pid` tells which "
                 "worker answered. Rows after the first: `nginx -s reload` (SIGHUP), "
                 "i.e. new workers with empty caches and the same snapshot.")
        L.append("")
        L.append("| when | worker | first request | next request | worker CPU | "
                 "RSS before | RSS after | snapshot (module's count) |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in ld:
            L.append("| %s | %d | %.2f s | %s ms | %.2f s | %s | %s | %s bytes |" % (
                r["label"], r["worker"], r["first_s"],
                fmt_ms(r["second_s"] * 1000) if r["second_s"] is not None else "—",
                r["cpu_s"], mib(r["rss_before_kb"]), mib(r["rss_after_kb"]),
                fmt_num(r["snap_bytes"])))
        firsts = [r["first_s"] for r in ld]
        growth = [(r["rss_after_kb"] - r["rss_before_kb"]) / 1024.0 for r in ld
                  if r["rss_after_kb"] and r["rss_before_kb"]]
        L.append("")
        L.append("Load time (first request): %s s; RSS growth per worker: %s MiB." % (
            mrange(firsts, lambda x: "%.2f" % x), mrange(growth, lambda x: "%.1f" % x)))
        L.append("")
    if res.get("rss_end"):
        before, after = res["rss_end"]
        L.append("Worker RSS before the load runs: %s; after all of them: %s." % (
            ", ".join(mib(before[p]) for p in sorted(before)),
            ", ".join(mib(after.get(p)) for p in sorted(before))))
        L.append("")
    return L


def cpu_per_req(r):
    """nginx CPU milliseconds per answered request in a run."""
    rps = r["main"]["rps"]
    return r["nginx_cpu"] * 1000.0 / rps if rps else None


def users_row(q, c, rs):
    m = [r["main"] for r in rs]
    bn = sorted({r["bottleneck"] for r in rs})
    errs = sum(x["errors"] + x["non2xx"] for x in m)
    cache = {}
    for x in m:
        for k, v in (x.get("cache") or {}).items():
            cache[k] = cache.get(k, 0) + v
    nbytes = q.get("bytes")
    if q.get("paths") or q.get("gen"):
        nbytes = median_of([x["bytes_per_req"] for x in m if x["bytes_per_req"]])
    return "| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s%s | %s |" % (
        q["name"], fmt_num(q.get("total")), fmt_num(nbytes), c,
        mrange([x["p50"] for x in m], fmt_ms), mrange([x["p99"] for x in m], fmt_ms),
        mrange([x["rps"] for x in m], lambda v: fmt_num(v, 1)),
        mrange([cpu_per_req(r) for r in rs], fmt_ms),
        mrange([r["ping"]["p99"] for r in rs if r["ping"]], fmt_ms),
        mrange([r["nginx_cpu"] for r in rs], pct),
        mrange([max(r["nginx_cpu_workers"] or [0]) for r in rs], pct),
        mrange([r["wrk_cpu"] for r in rs], pct),
        mrange([r["redis_cpu"] for r in rs], pct), mrange([r["other_cpu"] for r in rs], pct),
        mrange([r["machine_busy"] for r in rs], pct), "; ".join(bn),
        (" (%d errors)" % errs) if errs else "", cache_str(cache) if cache else "")


def write_doc(path, argv, res, args, machine, vers, started, finished):
    L = []
    L.append("# User Browser benchmark results")
    L.append("")
    L.append("Written by `bench/users_bench.py` (see [bench/README.md](../bench/README.md#user-browser-benchmark-users_benchpy)); "
             "rewritten by every full run. Measured %s – %s UTC." % (
                 time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
                 time.strftime("%H:%M", time.gmtime(finished))))
    L.append("")
    L.append("## Machine and versions")
    L.append("")
    L.append("| | |")
    L.append("| --- | --- |")
    L.append("| CPU | %s × %s |" % (machine["nproc"], machine["model"]))
    L.append("| memory | %s |" % machine["memory"])
    L.append("| kernel | Linux %s |" % machine["kernel"])
    for k in ("nginx", "redis", "wrk", "python", "module"):
        L.append("| %s | %s |" % (k, vers[k]))
    L.append("")
    L.append("**The load generator shares the machine**: wrk, nginx's two workers, "
             "Redis and the simulator (idle during the measurements) run on the same "
             "%d cores. The tables give the CPU each used, from `/proc`; *machine busy* "
             "is the share of all cores in use (from `/proc/stat`), and *limited by* "
             "says what bounded a run: `CPU shared` means the cores were saturated and "
             "wrk took the share shown, which a separate client machine would leave to "
             "nginx; `latency (closed loop)` means no core was saturated, each "
             "connection simply waited for its answer." % machine["nproc"])
    L.append("")
    L.append("wrk is a closed-loop generator (a connection sends its next request "
             "when the answer arrives), so the latencies are service times under that "
             "concurrency, not those of an open arrival rate.")
    L.append("")
    L.append("## Setup")
    L.append("")
    snap = res.get("snapshot") or {}
    L.append("- org: %s users, %s groups, %s sites, seed %d, `--anchor` = the start of "
             "the run (so `inactive_days` counts back from the real now); snapshot "
             "generation %s with %s users (the simulator's v2 directory: %s), synced in "
             "%.1f s with %s API calls;" % (
                 fmt_num(args.users), fmt_num(args.groups), args.sites, SEED,
                 snap.get("generation"), fmt_num((snap.get("counts") or {}).get("users")),
                 fmt_num((res.get("sim_counts") or {}).get("v2Users")),
                 res.get("sync_s") or 0, fmt_num(res.get("sync_api_calls"))))
    L.append("- `%s`" % res.get("sim_command"))
    L.append("- `%s`" % Redis.command())
    L.append("- `%s`, with `$RUN/nginx/nginx.conf`:" % Nginx.command())
    L.append("")
    L.append("```nginx")
    L.append(nginx_conf("$RUN/ngx_umlo_module.so", "127.0.0.1:$REDIS_PORT",
                        "http://127.0.0.1:$SIM_PORT", "$RUN/nginx/api.key",
                        "$PORT", args.reuseport).rstrip())
    L.append("```")
    L.append("")
    L.append("- each figure: `wrk -tT -cC -d%ds --timeout %ds -s users.lua URL` "
             "(T = min(%d, C)); the generated Lua script prints wrk's own latency "
             "percentiles and stops a thread after %d requests per connection; the "
             "ping probe runs at the same time as a second wrk." % (
                 args.duration, WRK_TIMEOUT_S, args.wrk_threads, MAX_REQUESTS_PER_CONN))
    L.append("- site of the site queries: `%s` (the one with the most users)." % res.get("site"))
    L.append("")
    L.append("Command: `%s`" % shown_command(argv))
    L.append("")
    L.append("## Results")
    L.append("")
    L.extend(tables(res, args))
    if res.get("perf") or res.get("perf_error"):
        L.append("### CPU profiles of the workers")
        L.append("")
        if res.get("perf_error"):
            L.append(res["perf_error"])
        L.append("`perf record -F %d --call-graph dwarf,16384 -p <both workers>` (their "
                 "thread-pool threads included), then `perf report --children --sort "
                 "dso,symbol`, each function summed over the two workers: *self* is the "
                 "time in the function itself (at least 1.5 %% of the samples), *with "
                 "callees* the time of the calls it made too (at least 3 %%; nginx's own "
                 "frames, which hold everything, are left out). libjansson has no symbols "
                 "on Debian: its unnamed functions are one row." % PERF_HZ)
        L.append("")
        for name, what, lines in res.get("perf") or []:
            L.append("**%s**: %s" % (name, what))
            L.append("")
            if isinstance(lines, str):
                L.append(lines)
                L.append("")
                continue
            L.append("By object (self): " + ", ".join(
                "%s %.1f %%" % (d, pc) for pc, d in lines["dso"]) + ".")
            L.append("")
            L.append("| self | object | function | | with callees | object | function |")
            L.append("| ---: | --- | --- | --- | ---: | --- | --- |")
            for i in range(max(len(lines["self"]), len(lines["incl"]))):
                a = lines["self"][i] if i < len(lines["self"]) else None
                b = lines["incl"][i] if i < len(lines["incl"]) else None
                L.append("| %s | %s | %s | | %s | %s | %s |" % (
                    "%.1f %%" % a[0] if a else "", a[1] if a else "",
                    "`%s`" % a[2] if a else "", "%.1f %%" % b[0] if b else "",
                    b[1] if b else "", "`%s`" % b[2] if b else ""))
            L.append("")
    notes = list(res["notes"])
    for r in res["runs"]:
        m = r["main"]
        if m["errors"] or m["non2xx"]:
            notes.append("%s at %d clients, run %d: %d socket errors/timeouts, %d non-2xx" % (
                r["name"], r["conns"], r["run"], m["errors"], m["non2xx"]))
    for e in res.get("nginx_errors") or []:
        notes.append("nginx error log: `%s`" % re.sub(r"^\S+ \S+ ", "", e)[:300])
    if notes:
        L.append("## Flags")
        L.append("")
        for n in notes:
            L.append("- " + n)
        L.append("")
    text = "\n".join(L)
    text = text.replace(REPO + "/", "").replace(REPO, ".")
    with open(path, "w") as f:
        f.write(text)


# -------------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=None, help="org size (100000; --quick 20000)")
    p.add_argument("--groups", type=int, default=None, help="groups (users / 20)")
    p.add_argument("--sites", type=int, default=8)
    p.add_argument("--runs", type=int, default=None, help="runs per figure (3; --quick 1)")
    p.add_argument("--duration", type=int, default=None,
                   help="seconds per wrk run (10; --quick 3)")
    p.add_argument("--conns", default="1,10,50", help="client counts for the user queries")
    p.add_argument("--wrk-threads", type=int, default=2,
                   help="wrk threads (at most the connections)")
    p.add_argument("--perf", type=int, default=None, metavar="SECONDS",
                   help="perf-profile the workers for SECONDS under the main query and the "
                        "dashboard at 50 clients, and a snapshot load (default 5; --quick 0 = off)")
    p.add_argument("--no-ping", action="store_true", help="no /ping probe during the loads")
    p.add_argument("--reuseport", action="store_true",
                   help="listen ... reuseport: the kernel spreads connections over the workers")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 20,000 users, 1 run, 3 s per wrk run, no perf")
    p.add_argument("--smoke", action="store_true",
                   help="seconds: 500 users, 1 run of 1 s at 2 clients, no perf, no "
                        "waiting; checks that the tool works, writes nothing")
    p.add_argument("--sync-timeout", type=int, default=1800, help="seconds")
    p.add_argument("--quiet-wait", type=float, default=30.0, metavar="SECONDS",
                   help="before each run, wait up to SECONDS for the machine to be "
                        "idle (under 10 %% busy)")
    p.add_argument("--write", default=None,
                   help="results file ('-': none); default docs/benchmarks-users.md "
                        "for a full default run, none otherwise")
    p.add_argument("--module", default=MODULE)
    p.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    p.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--queries", default=",".join(QUERY_IDS),
                   help="the loads to run, of %s (all)" % ", ".join(QUERY_IDS))
    args = p.parse_args(argv)
    custom = any(x is not None for x in (args.users, args.runs, args.duration)) \
        or args.conns != "1,10,50" or args.no_ping or args.groups is not None \
        or args.sites != 8 or args.wrk_threads != 2 or args.reuseport \
        or args.queries != ",".join(QUERY_IDS)
    if args.smoke:
        args.users = args.users or 500
        args.duration = args.duration or 1
        args.perf = 0 if args.perf is None else args.perf
        args.quiet_wait = 0
        if args.conns == "1,10,50":
            args.conns = "2"
        args.wrk_threads = 1
    if args.users is None:
        args.users = 20000 if args.quick else 100000
    if args.groups is None:
        args.groups = max(1, args.users // 20)
    if args.runs is None:
        args.runs = 1 if args.quick or args.smoke else 3
    if args.duration is None:
        args.duration = 3 if args.quick else 10
    if args.perf is None:
        args.perf = 0 if args.quick else 5
    args.conns = [int(x) for x in args.conns.split(",") if x.strip()]
    args.queries = [x.strip() for x in args.queries.split(",") if x.strip()]
    if not set(args.queries) <= set(QUERY_IDS):
        p.error("--queries: unknown %s" % ", ".join(sorted(set(args.queries) - set(QUERY_IDS))))
    if args.users < 1 or args.runs < 1 or args.duration < 1 or not args.conns \
            or min(args.conns) < 1 or max(args.conns) > 500 or args.duration > 120:
        p.error("users, runs, duration (1..120 s) and connections (1..500) must be positive")
    if args.write is None:
        args.write = "-" if (args.quick or args.smoke or custom) else DOC
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    for name, path in (("module", args.module), ("nginx", args.nginx), ("wrk", args.wrk)):
        if not (path and os.path.exists(path)) and shutil.which(path or "") is None:
            hint = {"module": "run make", "wrk": "apt-get install -y wrk",
                    "nginx": "apt-get install -y nginx"}[name]
            log("%s not found (%s): %s" % (name, path, hint))
            return 2
    started = time.time()
    tmp = tempfile.mkdtemp(prefix="umlo-users-bench-")

    # copies: a rebuild or an edit during the benchmark must not change what runs
    module = os.path.join(tmp, "ngx_umlo_module.so")
    shutil.copy2(args.module, module)
    sim_dir = os.path.join(tmp, "sim")
    shutil.copytree(SIM_DIR, sim_dir, ignore=shutil.ignore_patterns(
        "__pycache__", "bench", "testlib", "*.md"))
    machine = machine_info()
    vers = versions(args.nginx, args.wrk, args.module, module)

    bench = Bench(args, tmp, module, sim_dir)

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    rc = 0
    try:
        bench.run()
    except KeyboardInterrupt:
        log("interrupted")
        rc = 130
    except Exception as e:   # noqa: BLE001 - reported, then cleaned up
        log("FAILED: %s" % e)
        if bench.nginx is not None:
            log("nginx error log: %s" % bench.nginx.tail_log(8))
        rc = 1
    finally:
        bench.stop()
    finished = time.time()

    if rc == 0:
        log("")
        for line in tables(bench.res, args):
            log(line)
        if args.write != "-":
            write_doc(args.write, argv, bench.res, args, machine, vers, started, finished)
            log("wrote %s" % os.path.relpath(args.write, REPO))
    if args.keep:
        log("kept %s" % tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
