#!/usr/bin/env python3
"""Full-sync benchmark: ngx_umlo against the Atlassian API simulator.

For every (users, profile, rate limit) it starts a fresh simulator, Redis
and nginx with the module, POSTs /umlo/sync, polls /umlo/status until the
sync ends, and compares the time with the physical bound of that run.
Python 3 standard library only.  See bench/README.md.
"""

import argparse
import hashlib
import http.client
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from umlo_bench_common import (
    CLK_TCK, Redis, children_of, copy_stable, cpu_busy_ticks, first_line,
    free_port, loadavg, log, machine_info, median_range, others_busy,
    proc_rss_kb, proc_ticks, read_first_line, redis_used_memory, stop_proc,
    wait_port)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SIM = os.path.join(REPO, "sim", "umlo-sim")
MODULE = os.path.join(REPO, "build", "ngx_umlo_module.so")
DOC = os.path.join(REPO, "docs", "benchmarks.md")

ORG = "b3e0c6a2-7d41-4f5e-9c1a-2b8d0e6f4a17"
API_KEY = "bench-api-key"
SEED = 1

USERS_PAGE = 100          # users/search page size the module asks for
GROUPS_PAGE = 100         # groups/search page size
GRANTS_PAGE = 100         # role-assignments page size (?limit=100)
WORKSPACES_PAGE = 1000    # workspaces page size
# The users/search partitions the module walks as independent cursor
# chains (ngx_umlo_chains in src/ngx_umlo_fetch.c), as (name, filters).
# Every user has one account status and one claim status, and a managed
# account's mfaEnabled is true or false, so they cover the org without
# overlap.  The longest of them is the sequential chain of the bound: a
# client of the real API can use exactly these filters, so the bound
# stays a bound of what any client can do with this partitioning.
PARTITIONS = [
    ("active/managed/mfa", {"accountStatus": ["active"], "claimStatus": "managed",
                            "mfaEnabled": True}),
    ("active/managed/no-mfa", {"accountStatus": ["active"], "claimStatus": "managed",
                               "mfaEnabled": False}),
    ("active/unmanaged", {"accountStatus": ["active"], "claimStatus": "unmanaged"}),
    ("inactive/managed", {"accountStatus": ["inactive"], "claimStatus": "managed"}),
    ("inactive/unmanaged", {"accountStatus": ["inactive"], "claimStatus": "unmanaged"}),
    ("closed/managed", {"accountStatus": ["closed"], "claimStatus": "managed"}),
    ("closed/unmanaged", {"accountStatus": ["closed"], "claimStatus": "unmanaged"}),
]

# mean per-request latency of each simulator profile, seconds
PROFILE_LATENCY = {"realistic": 0.150, "fast": 0.0}

DEFAULT_SIZES = [1000, 10000, 100000]
DEFAULT_RATES = ["unlimited", "600", "200"]
DEFAULT_PROFILES = ["realistic", "fast"]
DEFAULT_RUNS = 3
DEFAULT_MAX_MINUTES = 12.0

# --scaling: how cost grows with the org
SCALING_SIZES = [1000, 10000, 30000, 100000]
SCALING_PROFILES = ["realistic", "fast"]
SCALING_DOC = os.path.join(REPO, "docs", "benchmarks-scaling.md")
KNEE_FACTOR = 1.5         # marginal cost per user this much above the segment before: a knee

SIM_CPU_LIMIT = 0.90      # simulator busier than this on its one core: invalid
SIM_LAG_LIMIT_MS = 50.0   # median event-loop lag of the simulator: invalid

OTHERS_LIMIT = 0.5        # cores used by other processes that taint a run

SAMPLE_EVERY = 0.1        # RSS and status polling period, seconds
LAG_EVERY = 0.5           # simulator lag probe period, seconds

# Published full-sync times of existing tools, as quoted in issue #3.
PUBLISHED = [
    ("100", "30–60 s"),
    ("1,000–5,000", "7–15 min"),
    ("10,000", "25+ min"),
]


# the simulator the runs start: a copy taken at the start (see main)
SIM_COPY = [None]


# --------------------------------------------------------------------- utils

def scrub(text, tmp):
    """No machine paths in what is reported: the temporary directory
    becomes $BENCH, the repository '.'."""
    text = text.replace(os.path.realpath(tmp), "$BENCH").replace(tmp, "$BENCH")
    return text.replace(REPO + "/", "").replace(REPO, ".")


def fmt_s(x):
    if x is None:
        return "—"
    if x >= 120:
        return "%.1f min" % (x / 60.0)
    if x >= 10:
        return "%.1f s" % x
    return "%.2f s" % x


def fmt_rate(rate):
    return "unlimited" if rate == 0 else "%d/min" % rate


def parse_size(text):
    t = text.strip().lower().replace("_", "")
    mult = 1
    if t.endswith("k"):
        t, mult = t[:-1], 1000
    n = int(float(t) * mult)
    if n < 1:
        raise argparse.ArgumentTypeError("a size is at least 1 user")
    return n


def parse_rate(text):
    t = text.strip().lower()
    if t in ("unlimited", "0", "none", "inf"):
        return 0
    t = t.replace("/min", "")
    n = int(t)
    if n < 1:
        raise argparse.ArgumentTypeError("a rate is 'unlimited' or requests per minute")
    return n


def csv_of(parse):
    def inner(text):
        return [parse(x) for x in text.split(",") if x.strip()]
    return inner


def sites_for(users):
    return 2 if users <= 1000 else 4 if users <= 10000 else 8


def groups_for(users):
    return max(1, users // 20)


# ---------------------------------------------------------------------- http

class Http:
    """A kept-alive HTTP/1.1 connection that reconnects once on failure."""

    def __init__(self, port, timeout=10):
        self.port, self.timeout = port, timeout
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if method == "POST":
            # umlo_sync takes state-changing requests only as JSON
            hdrs.setdefault("Content-Type", "application/json")
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                r = self.conn.getresponse()
                raw = r.read()
                if (r.getheader("Connection") or "").lower() == "close":
                    self.close()
                try:
                    doc = json.loads(raw) if raw else None
                except ValueError:
                    doc = None
                return r.status, doc, raw
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# --------------------------------------------------------------- processes

class Sim:
    def __init__(self, workdir, users, profile, rate, fast_startup=False):
        self.users = users
        self.sites = sites_for(users)
        self.groups = groups_for(users)
        self.flags = ["--org", ORG, "--api-key", API_KEY,
                      "--users", str(users), "--sites", str(self.sites),
                      "--groups", str(self.groups), "--seed", str(SEED),
                      "--profile", profile, "--rate-limit", str(rate)]
        argv = [sys.executable, SIM_COPY[0] or SIM, "--listen", "127.0.0.1:0"] + self.flags
        self.stderr = open(os.path.join(workdir, "sim.stderr"), "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                     stderr=self.stderr, cwd=workdir)
        line = self._first_line(300)
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError("simulator did not start: %r (see sim.stderr)" % line)
        self.port = int(line.split()[-1].rsplit(":", 1)[1])
        self.http = Http(self.port, timeout=60)

    def _first_line(self, timeout):
        return read_first_line(self.proc, timeout)

    def command(self):
        return "sim/umlo-sim --listen 127.0.0.1:0 " + " ".join(self.flags)

    def admin(self, method, path, body=None):
        status, doc, raw = self.http.request(method, "/__sim/" + path, body)
        if status != 200:
            raise RuntimeError("simulator %s /__sim/%s: %d %r" % (method, path, status, raw[:200]))
        return doc

    def api(self, method, path, body=None):
        return self.http.request(method, path, body,
                                 {"Authorization": "Bearer " + API_KEY})

    def stop(self):
        if getattr(self, "http", None):
            self.http.close()
        stop_proc(self.proc)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.stderr.close()


def org_shape(workdir, users):
    """Walk the org once, on a simulator without latency or rate limit, to
    learn its shape: user counts per search partition, groups, grants,
    product instances.  The data is a function of the flags and the seed,
    so every benchmark simulator of this size serves the same org."""
    sim = Sim(workdir, users, "fast", 0)
    try:
        truth = sim.admin("GET", "org?users=false")
        counts = truth["counts"]
        grants = [len(g["roleAssignments"]) for g in truth["groups"]]
        partitions = {}
        for name, filters in PARTITIONS:
            body = dict(filters, limit=USERS_PAGE)
            n = pages = 0
            while True:
                code, doc, raw = sim.api("POST", "/admin/v2/orgs/%s/directories/-/users/search"
                                         % ORG, body)
                if code != 200:
                    raise RuntimeError("users/search during the shape walk: %d %r"
                                       % (code, raw[:200]))
                pages += 1
                n += len(doc["data"])
                nxt = (doc.get("links") or {}).get("next")
                if not nxt:
                    break
                body = {"cursor": nxt}
            partitions[name] = {"users": n, "pages": pages}
        return {
            "users": counts["users"],
            "v2_users": counts["v2Users"],
            "groups": counts["groups"],
            "products": counts["products"],
            "sites": len(truth["sites"]),
            "grant_pages": [max(1, math.ceil(g / GRANTS_PAGE)) for g in grants],
            "partitions": partitions,
        }
    finally:
        sim.stop()


def bounds(shape, profile, rate, concurrency):
    """The physical bound of a run (seconds) and how it was computed."""
    ws_pages = max(1, math.ceil(shape["products"] / WORKSPACES_PAGE))
    group_pages = max(1, math.ceil(shape["groups"] / GROUPS_PAGE))
    grant_calls = sum(shape["grant_pages"])
    user_pages = max(1, math.ceil(shape["v2_users"] / USERS_PAGE))
    min_calls = ws_pages + group_pages + grant_calls + user_pages
    part_pages = {k: max(1, math.ceil(v["users"] / USERS_PAGE))
                  for k, v in shape["partitions"].items()}
    largest = max(part_pages, key=part_pages.get)
    # the groups chain: every groups page, then the last group's grants
    groups_chain = group_pages + (shape["grant_pages"][-1] if shape["grant_pages"] else 0)
    chains = {"users " + largest: part_pages[largest], "groups+grants": groups_chain,
              "workspaces": ws_pages}
    chain_name = max(chains, key=chains.get)
    chain = chains[chain_name]
    latency = PROFILE_LATENCY[profile]
    chain_s = chain * latency
    if rate:
        steady_s = min_calls * 60.0 / rate
        burst_s = max(0, min_calls - rate) * 60.0 / rate
    else:
        steady_s = burst_s = 0.0
    return {
        "ws_pages": ws_pages, "group_pages": group_pages, "grant_calls": grant_calls,
        "user_pages": user_pages, "min_calls": min_calls,
        "chain": chain, "chain_name": chain_name, "chain_s": chain_s,
        "latency_s": latency, "rate_s": steady_s, "rate_burst_s": burst_s,
        "bound_s": max(steady_s, chain_s), "bound_burst_s": max(burst_s, chain_s),
        "concurrency_floor_s": min_calls * latency / concurrency,
    }


NGINX_CONF = """\
load_module {module};
{user}worker_processes 1;
pid logs/nginx.pid;
lock_file logs/nginx.lock;
error_log logs/error.log notice;
thread_pool umlo threads=2;

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
{extra}
    server {{
        listen 127.0.0.1:{port};

        location = /umlo/status {{ umlo_status; }}
        location = /umlo/sync   {{ umlo_sync; }}
    }}
}}
"""


def nginx_conf(module, redis, api_base, key_file, port, concurrency):
    extra = ""
    if concurrency is not None:
        extra = "    umlo_sync_concurrency %d;\n" % concurrency
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return NGINX_CONF.format(module=module, user=user, redis=redis, org=ORG,
                             api_base=api_base, key_file=key_file, port=port,
                             extra=extra)


class Nginx:
    def __init__(self, workdir, nginx_bin, module, redis_port, sim_port, concurrency):
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
                               "http://127.0.0.1:%d" % sim_port, key_file,
                               self.port, concurrency))
        self.error_log = os.path.join(self.prefix, "logs", "error.log")
        self.stderr = open(os.path.join(self.prefix, "logs", "stderr.log"), "wb")
        self.proc = subprocess.Popen([nginx_bin, "-p", self.prefix + "/", "-c", self.conf,
                                      "-e", self.error_log, "-g", "daemon off;"],
                                     stdout=self.stderr, stderr=self.stderr)
        if not wait_port(self.port, 20, self.proc) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("nginx did not start: %s" % self.tail_log())
        deadline = time.monotonic() + 10
        self.workers = []
        while not self.workers and time.monotonic() < deadline:
            self.workers = children_of(self.proc.pid)
            time.sleep(0.05)
        self.http = Http(self.port, timeout=30)

    @staticmethod
    def command():
        return "nginx -p $RUN/nginx/ -c $RUN/nginx/nginx.conf -e $RUN/nginx/logs/error.log -g 'daemon off;'"

    def worker_pids(self):
        pids = children_of(self.proc.pid)
        if pids:
            self.workers = pids
        return self.workers

    def rss_kb(self):
        total = 0
        for pid in self.worker_pids():
            rss = proc_rss_kb(pid)
            if rss:
                total += rss
        return total

    def cpu_ticks(self):
        return sum(proc_ticks(p) or 0 for p in self.worker_pids())

    def tail_log(self, n=5, match=None):
        try:
            with open(self.error_log, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return ""
        if match:
            lines = [l for l in lines if any(m in l for m in match)]
        return " | ".join(lines[-n:])

    def stop(self):
        if getattr(self, "http", None):
            self.http.close()
        stop_proc(self.proc, signal.SIGQUIT, 15)
        self.stderr.close()


class LagProbe(threading.Thread):
    """Measures the simulator's event-loop lag: its admin calls have no
    latency, so their round trip is the time the loop took to get to them.
    The call is GET /__sim/stats, whose request total also shows when the
    module sent nothing for a while (a stall)."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.http = Http(port, timeout=30)
        self.samples = []        # round trips, ms
        self.totals = []         # (monotonic time, requests so far)
        self.halt = threading.Event()

    def run(self):
        while not self.halt.wait(LAG_EVERY):
            t = time.monotonic()
            try:
                status, doc, raw = self.http.request("GET", "/__sim/stats")
            except (OSError, http.client.HTTPException):
                continue
            done = time.monotonic()
            self.samples.append((done - t) * 1000.0)
            if status == 200 and isinstance(doc, dict):
                self.totals.append((done, doc.get("total", 0)))

    def longest_stall(self, start, end):
        """Longest time (s) between start and end in which the simulator
        received no API request, at the probe's resolution."""
        last_t, last_n, worst = start, 0, 0.0
        for t, n in self.totals:
            if t > end:
                break
            if n != last_n:
                last_t, last_n = t, n
            worst = max(worst, t - last_t)
        return worst

    def stop(self):
        self.halt.set()
        self.join(35)
        self.http.close()


# --------------------------------------------------------------------- a run

def run_one(tmp, label, shape, bound, users, profile, rate, args, module):
    workdir = tempfile.mkdtemp(prefix=label + "-", dir=tmp)
    res = {"users": users, "profile": profile, "rate": rate, "result": "ok",
           "error": None}
    sim = redis = nginx = probe = None
    try:
        sim = Sim(workdir, users, profile, rate)
        res["sim_command"] = sim.command()
        counts = sim.admin("GET", "org?users=false")["counts"]
        if (counts["v2Users"], counts["groups"], counts["products"]) != \
                (shape["v2_users"], shape["groups"], shape["products"]):
            raise RuntimeError("the simulator's org (%d v2 users, %d groups, %d products) is not "
                               "the one the bound was computed for (%d, %d, %d): did sim/ "
                               "change during the benchmark?" % (
                                   counts["v2Users"], counts["groups"], counts["products"],
                                   shape["v2_users"], shape["groups"], shape["products"]))
        redis = Redis(workdir)
        nginx = Nginx(workdir, args.nginx, module, redis.port, sim.port, args.concurrency)

        # Wait (bounded) until other work on the machine quietens down.
        own = [os.getpid(), sim.proc.pid, redis.proc.pid, nginx.proc.pid] + nginx.worker_pids()
        waited, busy = 0.0, others_busy(2.0, own)
        while busy > OTHERS_LIMIT and waited < args.quiet_wait:
            time.sleep(5)
            waited += 5 + 2
            busy = others_busy(2.0, own)
        res["quiet_wait_s"] = waited
        if waited:
            log("    (waited %.0f s for other work on the machine; now %.2f cores busy)"
                % (waited, busy))

        # idle baseline
        status, doc, raw = nginx.http.request("GET", "/umlo/status")
        if status != 200:
            raise RuntimeError("GET /umlo/status before the sync: %d %r" % (status, raw[:300]))
        time.sleep(0.3)
        rss_base = nginx.rss_kb()
        mem_base = redis_used_memory(redis.port)
        sim.admin("POST", "stats/reset")
        sim.admin("POST", "ratelimit/reset")
        sim_t0 = proc_ticks(sim.proc.pid)
        ngx_t0 = nginx.cpu_ticks()
        own = [os.getpid(), sim.proc.pid, redis.proc.pid, nginx.proc.pid] + nginx.worker_pids()
        own_t0 = sum(proc_ticks(p) or 0 for p in own)
        busy_t0 = cpu_busy_ticks()
        probe = LagProbe(sim.port)
        probe.start()

        deadline_s = args.max_minutes * 60.0 * 2
        t0 = time.monotonic()
        status, doc, raw = nginx.http.request("POST", "/umlo/sync",
                                              headers={"Content-Type": "application/json"})
        if status != 202 or not isinstance(doc, dict):
            raise RuntimeError("POST /umlo/sync: %d %s" % (status, raw[:300].decode(errors="replace")))
        sync_id = doc.get("id") or (doc.get("sync") or {}).get("id")
        rss_peak = rss_base
        last = None
        next_note = t0 + 30
        wall = None
        fetch_end = None         # first poll that shows the fetch phase over
        while True:
            now = time.monotonic()
            rss = nginx.rss_kb()
            rss_peak = max(rss_peak, rss)
            status, doc, raw = nginx.http.request("GET", "/umlo/status")
            if status == 200 and isinstance(doc, dict):
                s = doc.get("sync") or {}
                if sync_id is None or s.get("id") == sync_id:
                    last = doc
                    if fetch_end is None and (s.get("phase") not in (None, "plan", "fetch")
                                              or s.get("state") not in ("queued", "running")):
                        fetch_end = time.monotonic()
                    if s.get("state") in ("succeeded", "failed", "cancelled"):
                        wall = time.monotonic() - t0
                        break
            if nginx.proc.poll() is not None:
                raise RuntimeError("nginx exited during the sync: %s" % nginx.tail_log())
            if now - t0 > deadline_s:
                nginx.http.request("DELETE", "/umlo/sync")
                res["result"] = "timeout"
                res["error"] = "not finished after %.0f min (progress %s); cancelled" % (
                    deadline_s / 60.0, json.dumps(((last or {}).get("sync") or {}).get("progress")))
                break
            if now >= next_note:
                s = (last or {}).get("sync") or {}
                prog = s.get("progress") or {}
                log("    ... %.0f s: %s %s%%, %s calls, %s 429s" % (
                    now - t0, s.get("phase"), prog.get("percent"),
                    (s.get("api") or {}).get("calls"), (s.get("api") or {}).get("rate_limited")))
                next_note = now + 30
            time.sleep(max(0.0, SAMPLE_EVERY - (time.monotonic() - now)))
        t_end = time.monotonic()
        elapsed = t_end - t0
        sim_t1 = proc_ticks(sim.proc.pid)
        ngx_t1 = nginx.cpu_ticks()
        own_t1 = sum(proc_ticks(p) or 0 for p in own)
        busy_t1 = cpu_busy_ticks()
        probe.stop()
        stats = sim.admin("GET", "stats")

        s = (last or {}).get("sync") or {}
        api = s.get("api") or {}
        res.update({
            "wall_s": wall,
            "duration_s": (s["duration_ms"] / 1000.0) if s.get("duration_ms") is not None else None,
            "state": s.get("state"),
            "calls": api.get("calls"),
            "retries": api.get("retries"),
            "rate_limited": api.get("rate_limited"),
            "api_errors": api.get("errors"),
            "sim_total": stats.get("total"),
            "sim_429": stats.get("sent429"),
            "sim_5xx": stats.get("sent5xx"),
            "peak_in_flight": stats.get("peakInFlight"),
            "endpoints": {k: v.get("count") for k, v in (stats.get("endpoints") or {}).items()},
            "sim_cpu": ((sim_t1 - sim_t0) / CLK_TCK / elapsed) if sim_t1 is not None else None,
            "nginx_cpu": (ngx_t1 - ngx_t0) / CLK_TCK / elapsed,
            "others_cpu": max(0.0, ((busy_t1 - busy_t0) - (own_t1 - own_t0)) / CLK_TCK / elapsed),
            "sim_lag_p50": statistics.median(probe.samples) if probe.samples else None,
            "sim_lag_max": max(probe.samples) if probe.samples else None,
            "stall_s": probe.longest_stall(t0, (fetch_end or t_end) - 0.5),
            "fetch_s": (fetch_end - t0) if fetch_end else None,
            "rss_base_kb": rss_base,
            "rss_peak_growth_kb": rss_peak - rss_base,
        })
        time.sleep(0.3)
        res["rss_after_growth_kb"] = nginx.rss_kb() - rss_base
        snap = (last or {}).get("snapshot") or {}
        snap_users = (snap.get("counts") or {}).get("users")
        res["snapshot_users"] = snap_users
        mem = redis_used_memory(redis.port)
        res["redis_bytes"] = mem - mem_base
        res["redis_per_user"] = (mem - mem_base) / snap_users if snap_users else None

        if res["result"] == "ok" and s.get("state") != "succeeded":
            err = s.get("error") or {}
            res["result"] = s.get("state") or "failed"
            res["error"] = "%s: %s" % (err.get("where"), err.get("message")) if err else \
                "sync ended as %s without an error" % s.get("state")
        if res["result"] == "ok" and snap_users != shape["v2_users"]:
            res["result"] = "failed"
            res["error"] = "snapshot has %s users, the org %d" % (snap_users, shape["v2_users"])
        crash = nginx.tail_log(3, ("exited on signal", "[alert]", "[emerg]"))
        if crash:
            res["log_alerts"] = crash
        if res["result"] == "ok":
            lag = res["sim_lag_p50"]
            if (res["sim_cpu"] or 0) > SIM_CPU_LIMIT or (lag is not None and lag > SIM_LAG_LIMIT_MS):
                res["result"] = "invalid"
                res["error"] = "simulator-bound (sim CPU %.0f%% of a core, loop lag p50 %.0f ms)" % (
                    100 * (res["sim_cpu"] or 0), lag or 0)
    except Exception as e:  # noqa: BLE001 -- report, never hide
        res["result"] = "error"
        res["error"] = "%s: %s" % (type(e).__name__, e)
        if nginx is not None:
            tail = nginx.tail_log(3, ("[error]", "[alert]", "[emerg]", "[crit]"))
            if tail:
                res["error"] += " (nginx: %s)" % tail
    finally:
        if probe is not None and probe.is_alive():
            probe.stop()
        for p in (nginx, redis, sim):
            if p is not None:
                try:
                    p.stop()
                except Exception:  # noqa: BLE001
                    pass
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    for key in ("error", "log_alerts"):
        if res.get(key):
            res[key] = scrub(res[key], tmp)
    return res


def describe_run(res, bound):
    if res["result"] not in ("ok",):
        return "%s: %s" % (res["result"], res["error"])
    ratio = res["wall_s"] / bound["bound_s"] if bound["bound_s"] else None
    return ("sync %s (module %s), bound %s%s, calls %s/%s min, 429s %s, retries %s, "
            "in flight <= %s, fetch stall %.0f s, RSS +%.1f MiB, Redis %.0f B/user, sim CPU %.0f%%, "
            "nginx CPU %.0f%%, others %.2f cores"
            % (fmt_s(res["wall_s"]), fmt_s(res["duration_s"]), fmt_s(bound["bound_s"]),
               (" (x%.2f)" % ratio) if ratio else "", res["calls"], bound["min_calls"],
               res["rate_limited"], res["retries"], res["peak_in_flight"], res["stall_s"],
               res["rss_peak_growth_kb"] / 1024.0, res["redis_per_user"] or 0,
               100 * (res["sim_cpu"] or 0), 100 * res["nginx_cpu"], res["others_cpu"]))


# ------------------------------------------------------------------ report


def versions(nginx_bin, module):
    curl = first_line(["curl", "--version"])
    libcurl = next((w for w in curl.split() if w.startswith("libcurl/")), curl)
    with open(module, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    commit = "unknown"
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10)
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "src", "config"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10)
        if head.returncode == 0:
            commit = head.stdout.decode().strip()
            if dirty.stdout.strip():
                commit += " + uncommitted changes in src/"
    except (OSError, subprocess.TimeoutExpired):
        pass
    h = hashlib.sha256()
    simdir = os.path.dirname(SIM_COPY[0] or SIM)
    for root, dirs, files in sorted(os.walk(simdir)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py") or name == os.path.basename(SIM):
                with open(os.path.join(root, name), "rb") as f:
                    h.update(name.encode() + b"\0" + f.read())
    return {"nginx": first_line([nginx_bin, "-v"]),
            "sim": "sim/ sources sha256 %s…" % h.hexdigest()[:16],
            "redis": first_line(["redis-server", "--version"]),
            "python": "Python " + platform.python_version(),
            "libcurl": libcurl,
            "module": "build/ngx_umlo_module.so sha256 %s…, commit %s" % (digest, commit)}


def shown_command(argv):
    out = ["python3", "bench/sync_bench.py"]
    for a in argv:
        if os.path.isabs(a):
            rel = os.path.relpath(a, REPO)
            a = rel if not rel.startswith("..") else "PATH"
        out.append(a if a and all(c.isalnum() or c in "-_.,/=:" for c in a) else "'%s'" % a)
    return " ".join(out)


def summarize(cfg):
    """-> (status text or None, ok runs) for a configuration's runs."""
    runs = cfg["runs"]
    if cfg.get("skipped"):
        return cfg["skipped"], []
    ok = [r for r in runs if r["result"] == "ok"]
    bad = [r for r in runs if r["result"] != "ok"]
    if bad:
        kinds = sorted(set(r["result"] for r in bad))
        msgs = sorted(set(r["error"] for r in bad))
        if "invalid" in kinds and len(kinds) == 1:
            text = "invalid: simulator-bound (%d/%d runs; %s)" % (
                len(bad), len(runs), "; ".join(m.replace("simulator-bound ", "") for m in msgs[:2]))
            return text, []
        return "%s in %d/%d runs: %s" % ("/".join(kinds), len(bad), len(runs),
                                         "; ".join(msgs[:2])), ok
    return None, ok


def results_table(configs):
    rows = ["| users | profile | rate limit | sync wall time (POST → succeeded) | module duration_ms "
            "| bound (steady / burst) | wall ÷ bound (steady / burst) | API calls (÷ minimum) "
            "| 429s | retries | peak worker RSS growth | Redis per user |",
            "| ---: | --- | --- | --- | --- | --- | --- | --- | ---: | ---: | --- | --- |"]
    for cfg in configs:
        b = cfg["bound"]
        head = "| %s | %s | %s " % ("{:,}".format(cfg["users"]), cfg["profile"],
                                     fmt_rate(cfg["rate"]))
        bound_txt = "%s / %s" % (fmt_s(b["bound_s"]), fmt_s(b["bound_burst_s"])) \
            if b["bound_s"] else "— (no latency, no limit)"
        status, ok = summarize(cfg)
        if status and not ok:
            rows.append(head + "| **%s** | | %s | | | | | | |" % (status, bound_txt))
            continue
        wall = median_range([r["wall_s"] for r in ok], fmt_s)
        dur = median_range([r["duration_s"] for r in ok], fmt_s)
        if b["bound_s"]:
            med = statistics.median(r["wall_s"] for r in ok)
            ratio = "%.2f / %.2f" % (med / b["bound_s"], med / b["bound_burst_s"])
        else:
            ratio = "—"
        calls = statistics.median(r["calls"] for r in ok)
        calls_txt = "%s (×%.3f)" % (median_range([r["calls"] for r in ok], lambda x: "%d" % x),
                                    calls / b["min_calls"])
        r429 = median_range([r["rate_limited"] for r in ok], lambda x: "%d" % x)
        retries = median_range([r["retries"] for r in ok], lambda x: "%d" % x)
        rss = median_range([r["rss_peak_growth_kb"] / 1024.0 for r in ok], lambda x: "%.1f MiB" % x)
        red = median_range([r["redis_per_user"] for r in ok], lambda x: "%.0f B" % x)
        if status:
            wall += " — **%s**" % status
        rows.append(head + "| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            wall, dur, bound_txt, ratio, calls_txt, r429, retries, rss, red))
    for users, t in PUBLISHED:
        rows.append("| %s | existing tools (published) | — | %s | | | | | | | | |" % (users, t))
    return rows


def bounds_table(configs):
    rows = ["| users | profile | rate limit | v2 users | groups | products | minimum calls "
            "(ws + groups pages + grants + users pages) | longest chain | chain × latency "
            "| calls ÷ rate (steady) | (calls − burst) ÷ rate | concurrency floor |",
            "| ---: | --- | --- | ---: | ---: | ---: | --- | --- | --- | --- | --- | --- |"]
    for cfg in configs:
        b, sh = cfg["bound"], cfg["shape"]
        rows.append("| %s | %s | %s | %s | %s | %s | %d = %d + %d + %d + %d | %d pages (%s) | %s "
                    "| %s | %s | %s |" % (
                        "{:,}".format(cfg["users"]), cfg["profile"], fmt_rate(cfg["rate"]),
                        "{:,}".format(sh["v2_users"]), "{:,}".format(sh["groups"]),
                        sh["products"], b["min_calls"], b["ws_pages"], b["group_pages"],
                        b["grant_calls"], b["user_pages"], b["chain"], b["chain_name"],
                        fmt_s(b["chain_s"]), fmt_s(b["rate_s"]) if cfg["rate"] else "—",
                        fmt_s(b["rate_burst_s"]) if cfg["rate"] else "—",
                        fmt_s(b["concurrency_floor_s"])))
    return rows


def partitions_table(shapes):
    names = [name for name, _ in PARTITIONS]
    rows = ["| users | " + " | ".join(names) + " |",
            "| ---: |" + " ---: |" * len(names)]
    for users in sorted(shapes):
        p = shapes[users]["partitions"]
        rows.append("| %s | %s |" % ("{:,}".format(users), " | ".join(
            "{:,} ({} p.)".format(p[n]["users"], p[n]["pages"]) for n in names)))
    return rows


def details_table(configs):
    rows = ["| users | profile | rate | run | result | wall | duration_ms | calls | sim requests "
            "| 429s (module / sim) | retries | peak in flight | worker RSS idle → +peak / +after "
            "| Redis B/user | sim CPU | sim lag p50 / max | nginx worker CPU | other processes' CPU "
            "| longest stall | fetch / write |",
            "| ---: | --- | --- | ---: | --- | --- | --- | ---: | ---: | --- | ---: | ---: | --- "
            "| ---: | ---: | --- | ---: | ---: | ---: | --- |"]
    for cfg in configs:
        for i, r in enumerate(cfg["runs"], 1):
            head = "| %s | %s | %s | %d " % ("{:,}".format(cfg["users"]), cfg["profile"],
                                            fmt_rate(cfg["rate"]), i)
            if "wall_s" not in r:
                rows.append(head + "| %s: %s |" % (r["result"], r["error"]) + " |" * 15)
                continue
            result = "ok" if r["result"] == "ok" else "%s: %s" % (r["result"], r["error"])
            rows.append(head + "| %s | %s | %s | %s | %s | %s / %s | %s | %s | %.1f MiB → +%.1f / +%.1f MiB "
                        "| %s | %.0f%% | %s / %s ms | %.0f%% | %.2f cores | %.1f s | %s / %s |" % (
                            result, fmt_s(r["wall_s"]), fmt_s(r["duration_s"]), r["calls"],
                            r["sim_total"], r["rate_limited"], r["sim_429"], r["retries"],
                            r["peak_in_flight"], r["rss_base_kb"] / 1024.0,
                            r["rss_peak_growth_kb"] / 1024.0, r["rss_after_growth_kb"] / 1024.0,
                            "%.0f" % r["redis_per_user"] if r["redis_per_user"] else "—",
                            100 * (r["sim_cpu"] or 0),
                            "%.1f" % r["sim_lag_p50"] if r["sim_lag_p50"] is not None else "—",
                            "%.1f" % r["sim_lag_max"] if r["sim_lag_max"] is not None else "—",
                            100 * r["nginx_cpu"], r["others_cpu"], r["stall_s"],
                            fmt_s(r["fetch_s"]),
                            fmt_s(r["wall_s"] - r["fetch_s"]) if r["fetch_s"] and r["wall_s"]
                            else "—"))
    return rows


def flags(configs):
    """Things worth a look, found mechanically in the numbers."""
    out = []
    for cfg in configs:
        b = cfg["bound"]
        name = "%s users, %s, %s" % ("{:,}".format(cfg["users"]), cfg["profile"], fmt_rate(cfg["rate"]))
        for r in cfg["runs"]:
            if r["result"] in ("failed", "error", "timeout", "cancelled"):
                out.append("%s: sync %s — %s" % (name, r["result"], r["error"]))
            if r.get("log_alerts"):
                out.append("%s: nginx error log: %s" % (name, r["log_alerts"]))
        ok = [r for r in cfg["runs"] if r["result"] == "ok"]
        if not ok:
            continue
        med = statistics.median(r["wall_s"] for r in ok)
        if b["bound_burst_s"] and med > 1.5 * b["bound_burst_s"] and med - b["bound_burst_s"] > 3:
            out.append("%s: median sync %s is %.1f× the bound with the simulator's burst (%s)"
                       % (name, fmt_s(med), med / b["bound_burst_s"], fmt_s(b["bound_burst_s"])))
        busy = [r["others_cpu"] for r in ok]
        if max(busy) > OTHERS_LIMIT:
            out.append("%s: other processes used up to %.2f cores of the machine's %d during "
                       "the runs (%s): CPU-bound figures (the fast profile above all) are "
                       "slower than on a quiet machine" % (
                           name, max(busy), os.cpu_count(), ", ".join("%.2f" % x for x in busy)))
        stalls = [r["stall_s"] for r in ok]
        if max(stalls) >= 5:
            out.append("%s: the module sent no request for up to %.0f s during a sync "
                       "(longest stalls: %s)" % (name, max(stalls), ", ".join(
                           "%.0f s" % x for x in stalls)))
        if any(r["rate_limited"] for r in ok):
            out.append("%s: 429s received (%s) although the client paces itself"
                       % (name, ", ".join(str(r["rate_limited"]) for r in ok)))
        calls = statistics.median(r["calls"] for r in ok)
        if calls > 1.05 * b["min_calls"] + 10:
            out.append("%s: %d calls, %.0f%% above the minimum %d"
                       % (name, calls, 100 * (calls / b["min_calls"] - 1), b["min_calls"]))
        after = [r["rss_after_growth_kb"] for r in ok]
        if min(after) > 8 * 1024:
            out.append("%s: worker RSS stays %.1f MiB above the idle baseline after the sync"
                       % (name, statistics.median(after) / 1024.0))
    return out


def commands_section(configs, args):
    """How the runs were started: simulator, Redis, nginx, its config."""
    L = []
    L.append("## Commands")
    L.append("")
    L.append("Each run starts its own simulator, Redis and nginx on free loopback ports in a "
             "temporary directory (`$RUN`), and stops them afterwards.  "
             "`$BENCH/ngx_umlo_module.so` and `$BENCH/sim/` are copies of "
             "`build/ngx_umlo_module.so` and `sim/` taken when the benchmark starts, so that "
             "a rebuild or an edit meanwhile changes nothing that is being measured (the "
             "commands below show the repository paths).")
    L.append("")
    L.append("```sh")
    seen = []
    for cfg in configs:
        cmd = next((r.get("sim_command") for r in cfg["runs"] if r.get("sim_command")), None)
        if cmd and cmd not in seen:
            seen.append(cmd)
            L.append(cmd)
    L.append(Redis.command())
    L.append(Nginx.command())
    L.append("# before the POST: POST /__sim/stats/reset, POST /__sim/ratelimit/reset")
    L.append("curl -X POST -H 'Content-Type: application/json' http://127.0.0.1:$NGINX_PORT/umlo/sync")
    L.append("curl http://127.0.0.1:$NGINX_PORT/umlo/status     # every 100 ms until it ends")
    L.append("```")
    L.append("")
    L.append("`$RUN/nginx/nginx.conf`:")
    L.append("")
    L.append("```nginx")
    L.append(nginx_conf("$BENCH/ngx_umlo_module.so", "127.0.0.1:$REDIS_PORT",
                        "http://127.0.0.1:$SIM_PORT", "$RUN/nginx/api.key", "$NGINX_PORT",
                        args.concurrency).rstrip())
    L.append("```")
    L.append("")
    return L


def doc_head(title, intro, argv, machine, vers, args, started, finished):
    """The top of a results file: what ran, when, on what, with what."""
    L = []
    L.append("# " + title)
    L.append("")
    L.append(intro)
    L.append("")
    L.append("- Command: `%s`" % shown_command(argv))
    L.append("- Run: %s → %s UTC (%.0f min)" % (
        time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        time.strftime("%H:%M", time.gmtime(finished)), (finished - started) / 60.0))
    L.append("- Each figure: median of %d run(s), (min–max) when more than one; "
             "runs whose bound exceeds %.0f min are skipped." % (args.runs, args.max_minutes))
    L.append("")
    L.append("## Machine")
    L.append("")
    L.append("- CPU: %s, %d cores (`nproc`)" % (machine["model"], machine["nproc"]))
    L.append("- Memory: %s" % machine["memory"])
    L.append("- Kernel: Linux %s" % machine["kernel"])
    L.append("- Load average (1 min) when the benchmark started: %s, when it ended: %s "
             "(other work on the machine shares its two cores)" % (
                 machine["load"], loadavg()))
    L.append("")
    L.append("## Versions")
    L.append("")
    L.append("- %s" % vers["nginx"])
    L.append("- %s" % vers["redis"])
    L.append("- %s" % vers["python"])
    L.append("- %s (from `curl --version`)" % vers["libcurl"])
    L.append("- Module: %s" % vers["module"])
    L.append("- Simulator: %s" % vers["sim"])
    L.append("- `umlo_sync_concurrency`: %s" % (
        args.concurrency if args.concurrency is not None else "16 (default)"))
    L.append("")
    return L


SYNC_INTRO = ("Full syncs of a simulated Atlassian organization by ngx_umlo, against the "
              "simulator in `sim/`, compared with the physical bound of each run.  "
              "Written by `bench/sync_bench.py` (see [bench/README.md](../bench/README.md)); "
              "every full run overwrites this file.")


def write_doc(path, argv, machine, vers, configs, shapes, args, started, finished):
    L = doc_head("Sync benchmark", SYNC_INTRO, argv, machine, vers, args, started, finished)
    L.append("## Results")
    L.append("")
    L += results_table(configs)
    L.append("")
    L.append("- *sync wall time*: from sending `POST /umlo/sync` to the first `GET /umlo/status` "
             "(polled every 100 ms) that shows the sync `succeeded`; *module duration_ms*: "
             "`sync.duration_ms` from the status.")
    L.append("- *bound (steady)* = max(minimum API calls ÷ rate limit, longest sequential "
             "cursor chain × 150 ms mean latency), as asked in issue #3.  The simulator's "
             "limit is a token bucket that starts full (a burst of as many requests as the "
             "per-minute limit) and refills at limit/60 per second, so the true floor on it is "
             "*bound (burst)* = max((minimum calls − limit) ÷ rate, chain × latency).  "
             "When every call fits into the burst, the steady bound is not a floor and "
             "wall ÷ bound (steady) falls below 1.")
    L.append("- *API calls*: `sync.api.calls` reported by the module; minimum: see below.  "
             "429s: `sync.api.rate_limited`; retries: `sync.api.retries`.")
    L.append("- *peak worker RSS growth*: highest VmRSS of the nginx worker "
             "(`/proc/PID/status`, sampled every 100 ms during the sync) less its idle value "
             "just before the POST.")
    L.append("- *Redis per user*: growth of Redis `used_memory` from before the sync to after "
             "it, divided by `snapshot.counts.users` (one snapshot generation; a second sync "
             "keeps two for `umlo_sync_grace`).")
    L.append("- The fast profile (no latency, no limit) has no bound; it shows the module's own "
             "speed, as far as the single-threaded simulator lets it.")
    L.append("- *Existing tools*: published full-sync times of existing tools, as quoted in "
             "issue #3; not measured here.")
    L.append("- A result is refused as *invalid: simulator-bound* when the simulator process "
             "used more than %.0f%% of a core during the sync (CPU time from "
             "`/proc/PID/stat` ÷ wall time) or its event loop lagged more than %.0f ms "
             "(median round trip of `GET /__sim/stats` every 0.5 s; admin calls have no "
             "simulated latency)." % (100 * SIM_CPU_LIMIT, SIM_LAG_LIMIT_MS))
    L.append("")
    fl = flags(configs)
    L.append("### Flagged by the script")
    L.append("")
    if fl:
        L += ["- " + f for f in fl]
    else:
        L.append("- nothing: no failures, no 429s, calls within 5% of the minimum, "
                 "no sync above 1.5 times its burst bound, no retained worker memory.")
    L.append("")
    L.append("## Bounds")
    L.append("")
    L.append("Minimum calls = workspaces pages (1000 per page) + groups pages (100 per page) "
             "+ one role-assignments call per group (more for a group with over 100 "
             "assignments) + ceil(users ÷ 100) users pages, from the org's actual shape "
             "(`GET /__sim/org` counts and a walk of users/search per partition on a "
             "simulator without latency or limit, before the measured runs).  Users are the "
             "org's v2 users, the ones `users/search` lists.  The module's one "
             "`GET /admin/v1/orgs/{org}/users` call (progress total) is not counted in the "
             "minimum, and neither is the rounding of the %d partitions to whole pages."
             % len(PARTITIONS))
    L.append("")
    L.append("Longest chain = the longest run of requests that must follow each other: the "
             "largest users/search partition (ceil(count ÷ 100) pages, each page's cursor "
             "comes from the one before), or the groups pages followed by the last group's "
             "grants, or the workspaces pages.  Concurrency floor = minimum calls × 150 ms ÷ "
             "`umlo_sync_concurrency`, for information; not part of the bound.")
    L.append("")
    L += bounds_table(configs)
    L.append("")
    L.append("Users per users/search partition (accountStatus/claimStatus, managed "
             "active accounts also by mfaEnabled: the chains the module walks) and its "
             "pages:")
    L.append("")
    L += partitions_table(shapes)
    L.append("")
    L.append("## Every run")
    L.append("")
    L += details_table(configs)
    L.append("")
    L.append("*sim requests*: API requests the simulator counted (`GET /__sim/stats` `total`, "
             "reset before the POST); *peak in flight*: its `peakInFlight`; *sim CPU*: "
             "simulator CPU time ÷ wall time; *nginx worker CPU*: the same for the worker "
             "(its sync thread included); *other processes' CPU*: CPU time the rest of the "
             "machine used during the sync (`/proc/stat` less the benchmark's own processes), "
             "in cores; *longest stall*: the longest time during the fetch "
             "phase in which the simulator's request total did not move (sampled every "
             "0.5 s); *fetch / write*: wall time until the status left the `fetch` phase, "
             "and from then to `succeeded` (writing to Redis and the swap), at the 100 ms "
             "polling resolution.")
    L.append("")
    L += commands_section(configs, args)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(L))
    os.replace(tmp, path)


# ----------------------------------------------------------------- scaling

def linear_fit(points):
    """Least squares y = a + b·x -> (a, b, r²), or None for fewer than
    two distinct x."""
    if len(set(x for x, _ in points)) < 2:
        return None
    n = float(len(points))
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    syy = sum((y - my) ** 2 for _, y in points)
    b = sxy / sxx
    a = my - b * mx
    r2 = (sxy * sxy / (sxx * syy)) if syy else 1.0
    return a, b, r2


def knee(points):
    """The first size at which the marginal cost per user (from the size
    before) exceeds KNEE_FACTOR times that of the segment before it, with
    the marginal costs; points are (users, cost) sorted by users."""
    marg = []
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        marg.append((x1, (y1 - y0) / (x1 - x0)))
    for (_, m0), (x1, m1) in zip(marg, marg[1:]):
        if m0 > 0 and m1 > KNEE_FACTOR * m0:
            return x1, marg
    return None, marg


def scaling_series(configs, profile):
    """(users, median wall s, median peak RSS growth KiB, median Redis
    B/user, runs) of a profile's valid configurations, by size."""
    out = []
    for cfg in configs:
        if cfg["profile"] != profile or cfg["rate"]:
            continue
        status, ok = summarize(cfg)
        if not ok or (status and status.startswith("invalid")):
            continue
        out.append((cfg["users"],
                    statistics.median(r["wall_s"] for r in ok),
                    statistics.median(r["rss_peak_growth_kb"] for r in ok),
                    statistics.median(r["redis_per_user"] or 0 for r in ok), ok))
    return sorted(out, key=lambda t: t[0])


def scaling_tables(configs, profiles):
    L = []
    for prof in profiles:
        series = scaling_series(configs, prof)
        L.append("### %s profile, no rate limit" % prof)
        L.append("")
        L.append("| users | sync wall time | per 1,000 users | marginal per 1,000 users "
                 "| peak worker RSS growth | marginal RSS per 1,000 users | Redis per user "
                 "| API calls |")
        L.append("| ---: | --- | ---: | ---: | --- | ---: | --- | --- |")
        prev = None
        for users, wall, rss, red, ok in series:
            if prev:
                mt = "%.3f s" % ((wall - prev[1]) / (users - prev[0]) * 1000)
                mr = "%.2f MiB" % ((rss - prev[2]) / 1024.0 / (users - prev[0]) * 1000)
            else:
                mt = mr = "—"
            L.append("| %s | %s | %.3f s | %s | %s | %s | %s | %s |" % (
                "{:,}".format(users), median_range([r["wall_s"] for r in ok], fmt_s),
                wall / users * 1000, mt,
                median_range([r["rss_peak_growth_kb"] / 1024.0 for r in ok],
                             lambda x: "%.1f MiB" % x), mr,
                median_range([r["redis_per_user"] for r in ok], lambda x: "%.0f B" % x),
                median_range([r["calls"] for r in ok], lambda x: "%d" % x)))
            prev = (users, wall, rss)
        refused = [cfg for cfg in configs if cfg["profile"] == prof and not cfg["rate"]
                   and cfg["users"] not in [t[0] for t in series]]
        for cfg in refused:
            status, _ = summarize(cfg)
            L.append("| %s | **%s** | | | | | | |" % ("{:,}".format(cfg["users"]),
                                                      status or "no valid run"))
        L.append("")
        for what, unit, pts in (
                ("sync wall time", "s", [(t[0], t[1]) for t in series]),
                ("peak worker RSS growth", "MiB", [(t[0], t[2] / 1024.0) for t in series]),
                ("Redis memory", "MiB", [(t[0], t[3] * t[0] / 1048576.0) for t in series])):
            fit = linear_fit(pts)
            if not fit:
                L.append("- %s: fewer than two sizes measured, no fit." % what)
                continue
            a, b, r2 = fit
            at, marg = knee(pts)
            L.append("- %s ≈ %.3g %s %s %.3g %s per 1,000 users (least squares over %d "
                     "sizes, r² = %.4f); %s." % (
                         what, a, unit, "−" if b < 0 else "+", abs(b) * 1000, unit,
                         len(pts), r2,
                         ("**knee at %s users**: the marginal cost per user from the size "
                          "before is more than %.1f× that of the segment below (%s)" % (
                              "{:,}".format(at), KNEE_FACTOR, ", ".join(
                                  "%.3g %s/1,000 up to %s" % (m * 1000, unit, "{:,}".format(x))
                                  for x, m in marg)))
                         if at else
                         "no knee: no segment's marginal cost per user is more than %.1f× "
                         "the one below it (%s)" % (KNEE_FACTOR, ", ".join(
                             "%.3g %s/1,000 up to %s" % (m * 1000, unit, "{:,}".format(x))
                             for x, m in marg) or "one segment")))
        L.append("")
    return L


SCALING_INTRO = ("How the cost of a full sync grows with the organization: sync time, the "
                 "nginx worker's peak memory and Redis memory per user at %s users, to "
                 "show whether it is linear and where a knee is.  Written by "
                 "`bench/sync_bench.py --scaling` (see [bench/README.md](../bench/README.md)); "
                 "every full run overwrites this file.")


def write_scaling_doc(path, argv, machine, vers, configs, shapes, args, started, finished):
    sizes = ", ".join("{:,}".format(u) for u in args.sizes)
    L = doc_head("Sync cost against organization size", SCALING_INTRO % sizes, argv, machine,
                 vers, args, started, finished)
    L.append("## Growth")
    L.append("")
    L += scaling_tables(configs, args.profiles)
    L.append("- *marginal per 1,000 users*: the difference of the median from the size "
             "before, divided by the users added; constant marginal costs are a linear "
             "cost, a rising one a knee.  A knee is reported when a segment's marginal "
             "cost per user exceeds %.1f× the segment's below it." % KNEE_FACTOR)
    L.append("- *realistic* has 150 ms of latency per request: its time is the pages a sync "
             "must wait for (divided by `umlo_sync_concurrency`); *fast* has none: its time "
             "is CPU, of the module and of the single-threaded simulator.  The fast "
             "profile's results are refused as simulator-bound when the simulator used "
             "over %.0f%% of a core." % (100 * SIM_CPU_LIMIT))
    L.append("- Memory: *peak worker RSS growth*, highest VmRSS of the nginx worker "
             "(sampled every 100 ms) less its idle value; *Redis per user*, growth of "
             "`used_memory` over the sync ÷ users in the snapshot.  The fit of Redis "
             "memory is over the total (per user × users).")
    L.append("")
    fl = flags(configs)
    L.append("### Flagged by the script")
    L.append("")
    L += ["- " + f for f in fl] if fl else ["- nothing"]
    L.append("")
    L.append("## All figures of these runs")
    L.append("")
    L += results_table(configs)
    L.append("")
    L.append("Bounds, columns and flags as in [benchmarks.md](benchmarks.md).")
    L.append("")
    L.append("## Every run")
    L.append("")
    L += details_table(configs)
    L.append("")
    L += commands_section(configs, args)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(L))
    os.replace(tmp, path)


# -------------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="sync_bench.py",
        description="Benchmark ngx_umlo full syncs against the simulator.")
    p.add_argument("--quick", action="store_true",
                   help="smoke check: 1,000 and 10,000 users, 1 run, realistic unlimited + fast")
    p.add_argument("--sizes", type=csv_of(parse_size), default=None,
                   help="users per org, comma separated (default 1000,10000,100000)")
    p.add_argument("--rates", type=csv_of(parse_rate), default=None,
                   help="rate limits of the realistic profile: 'unlimited' or per minute "
                        "(default unlimited,600,200)")
    p.add_argument("--profiles", type=csv_of(str), default=None,
                   help="realistic and/or fast (default both; fast runs unlimited only)")
    p.add_argument("--runs", type=int, default=None, help="runs per configuration (default 3)")
    p.add_argument("--max-minutes", type=float, default=DEFAULT_MAX_MINUTES,
                   help="skip a run whose bound exceeds this; a run is cancelled after "
                        "twice this (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=None,
                   help="umlo_sync_concurrency (default: the module's, 16)")
    p.add_argument("--module", default=MODULE, help="module to load (default build/ngx_umlo_module.so)")
    p.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx",
                   help="nginx binary")
    p.add_argument("--write", default=None, metavar="FILE",
                   help="results file (default docs/benchmarks.md for the full default set, "
                        "none otherwise; '-' never)")
    p.add_argument("--quiet-wait", type=float, default=60, metavar="SECONDS",
                   help="before each run, wait up to this long for other processes to use "
                        "less than %.1f core (default %%(default)s)" % OTHERS_LIMIT)
    p.add_argument("--keep", action="store_true", help="keep the temporary run directories")
    p.add_argument("--scaling", action="store_true",
                   help="how cost grows: %s users, no rate limit, realistic and fast; "
                        "writes docs/benchmarks-scaling.md" % ",".join(map(str, SCALING_SIZES)))
    p.add_argument("--smoke", action="store_true",
                   help="seconds: a tiny org (300 users; 200 and 500 with --scaling), fast "
                        "profile, 1 run, no waiting; checks that the tool works, writes nothing")
    args = p.parse_args(argv)
    full = not args.quick and not args.smoke and args.sizes is None and args.rates is None \
        and args.profiles is None and args.runs is None
    if args.smoke:
        args.sizes = args.sizes or ([200, 500] if args.scaling else [300])
        args.rates = args.rates or [0]
        args.profiles = args.profiles or ["fast"]
        args.runs = args.runs or 1
        args.quiet_wait = 0
    if args.scaling:
        args.sizes = args.sizes or ([1000, 10000, 30000] if args.quick else SCALING_SIZES)
        args.rates = args.rates or [0]
        args.profiles = args.profiles or SCALING_PROFILES
    if args.quick:
        args.sizes = args.sizes or [1000, 10000]
        args.rates = args.rates or [0]
        args.profiles = args.profiles or ["realistic", "fast"]
        args.runs = args.runs or 1
    args.sizes = args.sizes or DEFAULT_SIZES
    args.rates = args.rates if args.rates is not None else [parse_rate(r) for r in DEFAULT_RATES]
    args.profiles = args.profiles or DEFAULT_PROFILES
    args.runs = args.runs or DEFAULT_RUNS
    for prof in args.profiles:
        if prof not in PROFILE_LATENCY:
            p.error("unknown profile %r (realistic, fast)" % prof)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if args.write is None:
        args.write = (SCALING_DOC if args.scaling else DOC) if full else None
    elif args.write == "-":
        args.write = None
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    for what, path in (("module", args.module), ("nginx", args.nginx)):
        if not os.path.exists(path):
            sys.stderr.write("sync_bench: %s not found: %s (run make first)\n" % (what, path))
            return 2
    if shutil.which("redis-server") is None:
        sys.stderr.write("sync_bench: redis-server not found\n")
        return 2

    def terminate(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, terminate)

    started = time.time()
    machine = machine_info()
    tmp = tempfile.mkdtemp(prefix="umlo-bench-")
    module = os.path.join(tmp, "ngx_umlo_module.so")
    copy_stable(args.module, module)     # a build may be writing it
    # Copies of the module and the simulator: a rebuild or an edit during
    # the benchmark must not change (or crash) what is being measured.
    simdir = os.path.join(tmp, "sim")
    shutil.copytree(os.path.dirname(SIM), simdir,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "bench", "testlib"))
    SIM_COPY[0] = os.path.join(simdir, os.path.basename(SIM))
    vers = versions(args.nginx, module)
    log("machine: %s, %d cores, %s" % (machine["model"], machine["nproc"], machine["memory"]))
    log("%s; %s; %s; %s" % (vers["nginx"], vers["redis"], vers["python"], vers["libcurl"]))
    log("module: %s; simulator: %s" % (vers["module"], vers["sim"]))

    combos = []
    for prof in args.profiles:
        for rate in (args.rates if prof == "realistic" else [0]):
            combos.append((prof, rate))

    configs, shapes = [], {}
    bad = 0
    interrupted = False
    try:
        for users in args.sizes:
            log("\n== %s users (%d sites, %d groups): reading the org's shape"
                % ("{:,}".format(users), sites_for(users), groups_for(users)))
            shape = shapes[users] = org_shape(tmp, users)
            log("   %s v2 users, partitions %s" % ("{:,}".format(shape["v2_users"]), ", ".join(
                "%s %d" % (k, v["users"]) for k, v in shape["partitions"].items())))
            for prof, rate in combos:
                conc = args.concurrency if args.concurrency is not None else 16
                b = bounds(shape, prof, rate, conc)
                cfg = {"users": users, "profile": prof, "rate": rate, "shape": shape,
                       "bound": b, "runs": []}
                configs.append(cfg)
                name = "%s users, %s, %s" % ("{:,}".format(users), prof, fmt_rate(rate))
                if b["bound_s"] > args.max_minutes * 60:
                    cfg["skipped"] = "skipped: bound %.1f min > limit %.0f min" % (
                        b["bound_s"] / 60.0, args.max_minutes)
                    log("-- %s: %s" % (name, cfg["skipped"]))
                    continue
                log("-- %s: bound %s (burst %s; %d calls min, chain %d pages = %s)" % (
                    name, fmt_s(b["bound_s"]), fmt_s(b["bound_burst_s"]), b["min_calls"],
                    b["chain"], fmt_s(b["chain_s"])))
                for i in range(args.runs):
                    res = run_one(tmp, "%d-%s-%d-%d" % (users, prof, rate, i), shape, b,
                                  users, prof, rate, args, module)
                    cfg["runs"].append(res)
                    if res["result"] not in ("ok", "invalid"):
                        bad += 1
                    log("   run %d/%d: %s" % (i + 1, args.runs, describe_run(res, b)))
    except KeyboardInterrupt:
        interrupted = True
        log("\ninterrupted")
    finally:
        finished = time.time()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    log("")
    for line in results_table(configs):
        log(line)
    if args.scaling:
        log("")
        for line in scaling_tables(configs, args.profiles):
            log(line)
    for f in flags(configs):
        log("flag: " + f)
    if args.write and not interrupted:
        (write_scaling_doc if args.scaling else write_doc)(
            args.write, argv, machine, vers, configs, shapes, args, started, finished)
        log("\nwrote %s" % os.path.relpath(args.write, os.getcwd()))
    elif args.write:
        log("\ninterrupted: %s not written" % os.path.relpath(args.write, os.getcwd()))
    return 1 if bad or interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
