#!/usr/bin/env python3
"""Status endpoint benchmark: GET /umlo/status against nginx's own
stub_status on the same nginx, with wrk, idle and while a full sync runs.

The ratio of the two throughputs says how close the handler is to what
nginx itself can serve on this machine.  A run in which wrk or the
simulator was the bottleneck is refused, not reported.  Python 3 standard
library only, plus wrk.  See bench/README.md.
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from umlo_bench_common import (
    CLK_TCK, MODULE, REPO, SIM_DIR, Redis, Wrk, children_of, copy_stable,
    cpu_times, first_line, free_port, log, loadavg, machine_info,
    median_range, proc_rss_kb, proc_ticks, shown_command, stop_proc,
    wait_port, write_key_file)
import sync_bench
from sync_bench import API_KEY, ORG, Http, Sim, fmt_s, parse_size

DOC = os.path.join(REPO, "docs", "benchmarks-status.md")

WRK_CPU_LIMIT = 0.90      # wrk busier than this per thread: wrk-bound, refused
SIM_CPU_LIMIT = 0.90      # simulator busier than this: simulator-bound, refused
OTHERS_LIMIT = 0.5        # cores used by other processes that taint a run

TARGETS = [("umlo_status", "/umlo/status"), ("stub_status", "/nginx_status")]

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

    server {{
        listen 127.0.0.1:{port};

        location = /umlo/status  {{ umlo_status; }}
        location = /umlo/sync    {{ umlo_sync; }}
        # nginx's own counters: the ceiling to compare with
        location = /nginx_status {{ stub_status; }}
    }}
}}
"""


def nginx_conf(module, redis, api_base, key_file, port):
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return NGINX_CONF.format(module=module, user=user, redis=redis, org=ORG,
                             api_base=api_base, key_file=key_file, port=port)


class Nginx:
    """nginx with one worker: the handler and stub_status share it."""

    def __init__(self, workdir, nginx_bin, module, redis_port, sim_port):
        self.prefix = os.path.join(workdir, "nginx")
        for d in ("logs", "temp"):
            os.makedirs(os.path.join(self.prefix, d))
        key_file = write_key_file(self.prefix, API_KEY)
        self.port = free_port()
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(nginx_conf(module, "127.0.0.1:%d" % redis_port,
                               "http://127.0.0.1:%d" % sim_port, key_file, self.port))
        self.error_log = os.path.join(self.prefix, "logs", "error.log")
        self.stderr = open(os.path.join(self.prefix, "logs", "stderr.log"), "wb")
        self.proc = subprocess.Popen([nginx_bin, "-p", self.prefix + "/", "-c", self.conf,
                                      "-e", self.error_log, "-g", "daemon off;"],
                                     stdout=self.stderr, stderr=self.stderr)
        if not wait_port(self.port, 20, self.proc):
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
        return ("nginx -p $RUN/nginx/ -c $RUN/nginx/nginx.conf "
                "-e $RUN/nginx/logs/error.log -g 'daemon off;'")

    def worker_pids(self):
        pids = children_of(self.proc.pid)
        if pids:
            self.workers = pids
        return self.workers

    def cpu_ticks(self):
        return sum(proc_ticks(p) or 0 for p in self.worker_pids())

    def rss_kb(self):
        return sum(proc_rss_kb(p) or 0 for p in self.worker_pids())

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


# ------------------------------------------------------------- measurement

class Bench:
    def __init__(self, args, tmp, module):
        self.args = args
        self.tmp = tmp
        self.module = module
        self.sim = self.redis = self.nginx = None
        self.runs = []           # one dict per wrk run
        self.syncs = []          # sync ids started for the loaded phase
        self.errors = []

    def start(self):
        a = self.args
        log("starting the simulator (%s users, %s profile) ..." % (
            "{:,}".format(a.users), a.profile))
        self.sim = Sim(self.tmp, a.users, a.profile, 0)
        self.sim_command = self.sim.command()
        self.redis = Redis(self.tmp)
        self.nginx = Nginx(self.tmp, a.nginx, self.module, self.redis.port, self.sim.port)
        for _, path in TARGETS:
            status, doc, raw = self.nginx.http.request("GET", path)
            if status != 200:
                raise RuntimeError("GET %s: %d %r" % (path, status, raw[:200]))

    def stop(self):
        if self.nginx is not None and self.nginx.proc.poll() is None:
            try:    # a running sync would hold up nginx's graceful exit
                self.nginx.http.request("DELETE", "/umlo/sync")
            except Exception:  # noqa: BLE001
                pass
        for p in (self.nginx, self.redis, self.sim):
            if p is not None:
                try:
                    p.stop()
                except Exception:  # noqa: BLE001
                    pass

    def own_pids(self):
        return [os.getpid(), self.sim.proc.pid, self.redis.proc.pid,
                self.nginx.proc.pid] + self.nginx.worker_pids()

    def wait_quiet(self):
        """Waits (at most --quiet-wait seconds) until other processes use
        less than OTHERS_LIMIT cores; -> (cores they used, seconds waited)."""
        t0 = time.monotonic()
        while True:
            own = self.own_pids()
            b0, o0, w0 = cpu_times()[0], sum(proc_ticks(p) or 0 for p in own), time.monotonic()
            time.sleep(0.5)
            b1, o1 = cpu_times()[0], sum(proc_ticks(p) or 0 for p in own)
            busy = max(0.0, ((b1 - b0) - (o1 - o0)) / CLK_TCK / (time.monotonic() - w0))
            waited = time.monotonic() - t0
            if busy < OTHERS_LIMIT or waited >= self.args.quiet_wait:
                return busy, waited

    def sync_state(self):
        status, doc, raw = self.nginx.http.request("GET", "/umlo/status")
        if status != 200 or not isinstance(doc, dict):
            raise RuntimeError("GET /umlo/status: %d %r" % (status, raw[:200]))
        return doc.get("sync") or {}

    def ensure_sync(self):
        """A sync running now -> its id; starts one when none is."""
        s = self.sync_state()
        if s.get("state") in ("queued", "running"):
            return s.get("id")
        if s.get("state") == "failed":
            raise RuntimeError("the sync failed: %s" % s.get("error"))
        status, doc, raw = self.nginx.http.request("POST", "/umlo/sync")
        if status not in (202, 409):
            raise RuntimeError("POST /umlo/sync: %d %r" % (status, raw[:200]))
        s = self.sync_state()
        if s.get("id") not in self.syncs:
            self.syncs.append(s.get("id"))
            log("  (sync %s started)" % s.get("id"))
        # let it get past planning, into the steady fetch phase
        deadline = time.monotonic() + 30
        while s.get("phase") in (None, "plan") and s.get("state") in ("queued", "running") \
                and time.monotonic() < deadline:
            time.sleep(0.2)
            s = self.sync_state()
        return s.get("id")

    def one(self, phase, target, path, run):
        a = self.args
        others_before, waited = self.wait_quiet()
        sync_id = self.ensure_sync() if phase == "sync" else None
        ng, sim, red = self.nginx, self.sim.proc.pid, self.redis.proc.pid
        own = self.own_pids()
        ng0, sim0, red0 = ng.cpu_ticks(), proc_ticks(sim), proc_ticks(red)
        own0 = sum(proc_ticks(p) or 0 for p in own)
        busy0, total0 = cpu_times()
        # no per-request Lua (max_per_conn=0): wrk sends its prepared
        # request, which keeps the load generator as cheap as it can be
        w = Wrk(a.wrk, self.tmp, ng.port, path, a.conns, a.wrk_threads, a.duration,
                max_per_conn=0)
        m = w.finish()
        busy1, total1 = cpu_times()
        ng1, sim1, red1 = ng.cpu_ticks(), proc_ticks(sim), proc_ticks(red)
        own1 = sum(proc_ticks(p) or 0 for p in own)
        wall = m["wall"]
        row = {"phase": phase, "target": target, "path": path, "run": run, "wrk": m,
               "wrk_cpu": m["cpu_s"] / wall,
               "wrk_cpu_thread": m["cpu_s"] / wall / a.wrk_threads,
               "nginx_cpu": (ng1 - ng0) / CLK_TCK / wall,
               # worker CPU per answer, µs: robust to a machine shared with others
               "nginx_us_per_req": ((ng1 - ng0) / CLK_TCK * 1e6 / m["requests"])
               if m["requests"] else None,
               "sim_cpu": ((sim1 or 0) - (sim0 or 0)) / CLK_TCK / wall,
               "redis_cpu": ((red1 or 0) - (red0 or 0)) / CLK_TCK / wall,
               # the rest of the machine: all busy time less ours and wrk's
               "others_cpu": max(0.0, ((busy1 - busy0) - (own1 - own0)) / CLK_TCK / wall
                                 - m["cpu_s"] / wall),
               "machine_busy": (busy1 - busy0) / float(max(1, total1 - total0)),
               "others_before": others_before, "waited": waited,
               "refused": None}
        if row["wrk_cpu_thread"] > WRK_CPU_LIMIT:
            row["refused"] = "wrk-bound (%.0f %% of a core per wrk thread)" % (
                100 * row["wrk_cpu_thread"])
        elif row["sim_cpu"] > SIM_CPU_LIMIT:
            row["refused"] = "simulator-bound (%.0f %% of a core)" % (100 * row["sim_cpu"])
        if phase == "sync":
            s = self.sync_state()
            if s.get("id") != sync_id or s.get("state") not in ("queued", "running"):
                row["refused"] = row["refused"] or "the sync ended during the run"
        if m["errors"] or m["non2xx"]:
            self.errors.append("%s %s run %d: %d socket errors, %d non-2xx answers" % (
                phase, target, run, m["errors"], m["non2xx"]))
        self.runs.append(row)
        log("  %-5s %-12s run %d: %s req/s, p50 %.2f ms, p99 %.2f ms, %d B/req; "
            "nginx %.0f %% (%.1f µs/req), wrk %.0f %%/thread, redis %.0f %%, sim %.0f %%, others %.2f cores%s"
            % (phase, target, run, "{:,.0f}".format(m["rps"] or 0), m["p50"], m["p99"],
               m["bytes_per_req"] or 0, 100 * row["nginx_cpu"], row["nginx_us_per_req"] or 0,
               100 * row["wrk_cpu_thread"],
               100 * row["redis_cpu"], 100 * row["sim_cpu"], row["others_cpu"],
               (" — REFUSED: " + row["refused"]) if row["refused"] else ""))
        return row

    def run(self):
        a = self.args
        self.start()
        # a snapshot first, so that the idle status has one, as in production
        log("initial sync ...")
        self.ensure_sync()
        t0 = time.monotonic()
        while self.sync_state().get("state") in ("queued", "running"):
            if time.monotonic() - t0 > a.sync_timeout:
                raise RuntimeError("the initial sync did not finish in %d s" % a.sync_timeout)
            time.sleep(0.5)
        s = self.sync_state()
        if s.get("state") != "succeeded":
            raise RuntimeError("the initial sync ended %s: %s" % (s.get("state"), s.get("error")))
        self.first_sync_s = time.monotonic() - t0
        log("  succeeded in %s" % fmt_s(self.first_sync_s))
        for phase in ("idle", "sync"):
            log("%s ..." % ("idle" if phase == "idle" else "while a full sync runs"))
            for run in range(1, a.runs + 1):
                # alternate the order, so that neither always goes first
                order = TARGETS if run % 2 else TARGETS[::-1]
                for target, path in order:
                    for attempt in range(3):
                        row = self.one(phase, target, path, run)
                        if row["refused"] != "the sync ended during the run" \
                                or attempt == 2:
                            break
                        self.runs.remove(row)
        crash = self.nginx.tail_log(3, ("exited on signal", "[alert]", "[emerg]"))
        if crash:
            self.errors.append("nginx error log: %s" % crash)


# ------------------------------------------------------------------ report

def valid(runs):
    return [r for r in runs if not r["refused"]]


def fmt_rps(x):
    return "{:,.0f}".format(x)


def fmt_ms(x):
    return "%.2f ms" % x if x < 10 else "%.1f ms" % x


def results_table(runs, args):
    rows = ["| phase | endpoint | requests/s | p50 | p99 | bytes/request | nginx worker CPU "
            "| worker CPU per request | wrk CPU per thread | Redis CPU | simulator CPU "
            "| valid runs |",
            "| --- | --- | --- | --- | --- | ---: | --- | --- | --- | --- | --- | --- |"]
    for phase in ("idle", "sync"):
        for target, path in TARGETS:
            rs = [r for r in runs if r["phase"] == phase and r["target"] == target]
            ok = valid(rs)
            head = "| %s | `%s` " % ("idle" if phase == "idle" else "during a sync", path)
            if not ok:
                why = sorted(set(r["refused"] for r in rs))
                rows.append(head + "| **refused: %s** | | | | | | | | | 0/%d |" % (
                    "; ".join(why) or "no run", len(rs)))
                continue
            pc = lambda x: "%.0f %%" % (100 * x)   # noqa: E731
            rows.append(head + "| %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %d/%d |" % (
                median_range([r["wrk"]["rps"] for r in ok], fmt_rps),
                median_range([r["wrk"]["p50"] for r in ok], fmt_ms),
                median_range([r["wrk"]["p99"] for r in ok], fmt_ms),
                statistics.median(r["wrk"]["bytes_per_req"] or 0 for r in ok),
                median_range([r["nginx_cpu"] for r in ok], pc),
                median_range([r["nginx_us_per_req"] for r in ok], lambda x: "%.1f µs" % x),
                median_range([r["wrk_cpu_thread"] for r in ok], pc),
                median_range([r["redis_cpu"] for r in ok], pc),
                median_range([r["sim_cpu"] for r in ok], pc), len(ok), len(rs)))
    return rows


def ratio_table(runs, args):
    rows = ["| phase | umlo_status ÷ stub_status, requests/s | umlo_status ÷ stub_status, p99 "
            "| worker CPU per request, stub_status ÷ umlo_status | pairs |",
            "| --- | --- | --- | --- | --- |"]
    for phase in ("idle", "sync"):
        ratios, p99s, cpus, pairs = [], [], [], 0
        for run in range(1, args.runs + 1):
            pair = {r["target"]: r for r in runs if r["phase"] == phase and r["run"] == run}
            if len(pair) != 2:
                continue
            pairs += 1
            u, s = pair["umlo_status"], pair["stub_status"]
            if u["refused"] or s["refused"] or not s["wrk"]["rps"] or not s["wrk"]["p99"]:
                continue
            ratios.append(u["wrk"]["rps"] / s["wrk"]["rps"])
            p99s.append(u["wrk"]["p99"] / s["wrk"]["p99"])
            if u.get("nginx_us_per_req") and s.get("nginx_us_per_req"):
                cpus.append(s["nginx_us_per_req"] / u["nginx_us_per_req"])
        name = "idle" if phase == "idle" else "during a sync"
        if not ratios:
            rows.append("| %s | **refused: no pair of valid runs** | | | 0/%d |" % (name, pairs))
            continue
        rows.append("| %s | %s | %s | %s | %d/%d |" % (
            name, median_range(ratios, lambda x: "%.2f" % x),
            median_range(p99s, lambda x: "%.1f×" % x),
            median_range(cpus, lambda x: "%.2f" % x), len(ratios), pairs))
    return rows


def runs_table(runs):
    rows = ["| phase | endpoint | run | requests/s | p50 | p99 | max | errors / non-2xx "
            "| nginx | nginx per request | wrk per thread | Redis | simulator | other processes "
            "| result |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: "
            "| ---: | ---: | --- |"]
    for r in runs:
        m = r["wrk"]
        rows.append("| %s | %s | %d | %s | %s | %s | %s | %d / %d | %.0f %% | %s | %.0f %% "
                    "| %.0f %% | %.0f %% | %.2f cores | %s |" % (
                        r["phase"], r["target"], r["run"], fmt_rps(m["rps"] or 0),
                        fmt_ms(m["p50"]), fmt_ms(m["p99"]), fmt_ms(m["max"]),
                        m["errors"], m["non2xx"], 100 * r["nginx_cpu"],
                        "%.1f µs" % r["nginx_us_per_req"] if r.get("nginx_us_per_req")
                        else "—",
                        100 * r["wrk_cpu_thread"], 100 * r["redis_cpu"], 100 * r["sim_cpu"],
                        r["others_cpu"], ("refused: " + r["refused"]) if r["refused"] else "ok"))
    return rows


def flags(bench):
    out = list(bench.errors)
    busy = [r["others_cpu"] for r in bench.runs]
    if busy and max(busy) > OTHERS_LIMIT:
        out.append("other processes used up to %.2f cores of the machine's %d during the "
                   "runs: the figures are lower than on a quiet machine" % (
                       max(busy), os.cpu_count()))
    refused = [r for r in bench.runs if r["refused"]]
    if refused:
        out.append("%d of %d runs refused (%s)" % (
            len(refused), len(bench.runs), "; ".join(sorted(set(r["refused"].split(" (")[0]
                                                                 for r in refused)))))
    return out


def versions(nginx_bin, wrk_bin, module):
    import hashlib
    with open(module, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    return {"nginx": first_line([nginx_bin, "-v"]),
            "redis": first_line(["redis-server", "--version"]),
            "wrk": first_line([wrk_bin, "-v"]).split("Copyright")[0].strip(),
            "module": "build/ngx_umlo_module.so sha256 %s…" % digest}


def write_doc(path, argv, bench, args, machine, vers, started, finished):
    L = ["# Status endpoint benchmark", "",
         "`GET /umlo/status` against nginx's own `stub_status` on the same nginx, with "
         "`wrk`, on an idle instance and while a full sync of %s users runs.  Written by "
         "`bench/status_bench.py` (see [bench/README.md](../bench/README.md)); every full "
         "run overwrites this file." % "{:,}".format(args.users), "",
         "- Command: `%s`" % shown_command("bench/status_bench.py", argv),
         "- Run: %s → %s UTC (%.0f min)" % (
             time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
             time.strftime("%H:%M", time.gmtime(finished)), (finished - started) / 60.0),
         "- Each figure: median of %d run(s), (min–max) when more than one; every run "
         "`wrk -t%d -c%d -d%ds` on keep-alive connections." % (
             args.runs, args.wrk_threads, args.conns, args.duration), "",
         "## Machine", "",
         "- CPU: %s, %d cores (`nproc`)" % (machine["model"], machine["nproc"]),
         "- Memory: %s" % machine["memory"],
         "- Kernel: Linux %s" % machine["kernel"],
         "- Load average (1 min) at the start: %s, at the end: %s" % (
             machine["load"], loadavg()), "",
         "## Versions", "",
         "- %s" % vers["nginx"], "- %s" % vers["redis"], "- %s" % vers["wrk"],
         "- Module: %s" % vers["module"], "",
         "## How close to nginx's ceiling", ""]
    L += ratio_table(bench.runs, args)
    L += ["", "Ratio of the two endpoints' throughput (and p99) in the same run, pairing "
          "each `umlo_status` run with the `stub_status` run next to it.  `stub_status` "
          "answers from shared-memory counters without any I/O; `umlo_status` makes "
          "one Redis round trip per request (through the module's async client) and "
          "writes a JSON document, so a ratio of 1 is the ceiling, not the target.  "
          "*Worker CPU per request* (the worker's CPU time from `/proc` ÷ answers) is the "
          "figure least disturbed by other work on the machine.", "",
          "## Results", ""]
    L += results_table(bench.runs, args)
    L += ["",
          "- *during a sync*: a full sync (`POST /umlo/sync`, the simulator's %s profile, "
          "no rate limit) runs in the same worker's thread pool for the whole wrk run; a "
          "run during which the sync ended is repeated." % args.profile,
          "- CPU: from `/proc/PID/stat` (nginx worker, Redis, simulator) and wrk's "
          "`wait4()` rusage, divided by the run's wall time; 100 % is one core.",
          "- A run is **refused** when wrk used more than %.0f %% of a core per thread "
          "(wrk, not nginx, set the pace) or the simulator more than %.0f %% of a core." % (
              100 * WRK_CPU_LIMIT, 100 * SIM_CPU_LIMIT),
          "- wrk is closed-loop: each of the %d connections sends its next request when "
          "the answer arrives; the latencies are those of %d outstanding requests." % (
              args.conns, args.conns), "",
          "### Flagged by the script", ""]
    fl = flags(bench)
    L += ["- " + f for f in fl] if fl else ["- nothing"]
    L += ["", "## Every run", ""]
    L += runs_table(bench.runs)
    L += ["", "## Commands", "",
          "In a temporary directory (`$RUN`), on free loopback ports, with copies of the "
          "module and `sim/` taken at the start:", "", "```sh",
          bench.sim_command, Redis.command(), Nginx.command(),
          "curl -X POST -H 'Content-Type: application/json' "
          "http://127.0.0.1:$NGINX_PORT/umlo/sync   # the initial snapshot",
          "wrk -t%d -c%d -d%ds --timeout 10s -s $RUN/result.lua "
          "http://127.0.0.1:$NGINX_PORT/umlo/status" % (args.wrk_threads, args.conns,
                                                        args.duration),
          "wrk -t%d -c%d -d%ds --timeout 10s -s $RUN/result.lua "
          "http://127.0.0.1:$NGINX_PORT/nginx_status" % (args.wrk_threads, args.conns,
                                                         args.duration),
          "```", "", "`$RUN/nginx/nginx.conf`:", "", "```nginx",
          nginx_conf("$BENCH/ngx_umlo_module.so", "127.0.0.1:$REDIS_PORT",
                     "http://127.0.0.1:$SIM_PORT", "$RUN/nginx/api.key",
                     "$NGINX_PORT").rstrip(), "```", ""]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(L))
    os.replace(tmp, path)


# -------------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(prog="status_bench.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=parse_size, default=None,
                   help="org size of the sync (100000; --smoke 5000)")
    p.add_argument("--profile", default="realistic", choices=("realistic", "fast"),
                   help="simulator profile of the sync (default realistic: the sync lasts "
                        "long enough and leaves the simulator idle enough)")
    p.add_argument("--runs", type=int, default=None, help="runs per figure (3; --smoke 1)")
    p.add_argument("--duration", type=int, default=None,
                   help="seconds per wrk run (10; --smoke 1)")
    p.add_argument("--conns", type=int, default=None, help="wrk connections (50; --smoke 4)")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--smoke", action="store_true",
                   help="a few seconds: 5,000 users, 1 run of 1 s, 4 connections; checks "
                        "that the tool works, writes nothing")
    p.add_argument("--quick", action="store_true",
                   help="10,000 users, 1 run of 3 s; writes nothing")
    p.add_argument("--sync-timeout", type=int, default=1800, help="seconds")
    p.add_argument("--quiet-wait", type=float, default=30.0, metavar="SECONDS",
                   help="before each run, wait up to SECONDS for other processes to use "
                        "less than %.1f core" % OTHERS_LIMIT)
    p.add_argument("--write", default=None,
                   help="results file ('-': none); default docs/benchmarks-status.md for a "
                        "full default run, none otherwise")
    p.add_argument("--module", default=MODULE)
    p.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    p.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    custom = any(x is not None for x in (args.users, args.runs, args.duration, args.conns)) \
        or args.wrk_threads != 1 or args.profile != "realistic"
    s, q = args.smoke, args.quick
    args.users = args.users or (5000 if s else 10000 if q else 100000)
    args.runs = args.runs or (1 if s or q else 3)
    args.duration = args.duration or (1 if s else 3 if q else 10)
    args.conns = args.conns or (4 if s else 50)
    if args.runs < 1 or args.duration < 1 or args.duration > 120 or args.conns < 1 \
            or args.wrk_threads < 1 or args.wrk_threads > args.conns:
        p.error("runs >= 1, duration 1..120 s, 1 <= wrk threads <= connections")
    if s:
        args.quiet_wait = min(args.quiet_wait, 0)
    if args.write is None:
        args.write = "-" if (s or q or custom) else DOC
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    for name, path in (("module", args.module), ("nginx", args.nginx), ("wrk", args.wrk)):
        if not (path and os.path.exists(path)) and shutil.which(path or "") is None:
            log("status_bench: %s not found (%s)" % (name, path))
            return 2
    if "--with-http_stub_status_module" not in subprocess.run(
            [args.nginx, "-V"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ).stdout.decode(errors="replace"):
        log("status_bench: %s has no stub_status module (nginx -V)" % args.nginx)
        return 2

    def terminate(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, terminate)

    started = time.time()
    machine = machine_info()
    tmp = tempfile.mkdtemp(prefix="umlo-status-bench-")
    module = os.path.join(tmp, "ngx_umlo_module.so")
    copy_stable(args.module, module)
    simdir = os.path.join(tmp, "sim")
    shutil.copytree(SIM_DIR, simdir, ignore=shutil.ignore_patterns(
        "__pycache__", "*.pyc", "bench", "testlib"))
    sync_bench.SIM_COPY[0] = os.path.join(simdir, "umlo-sim")
    vers = versions(args.nginx, args.wrk, module)
    bench = Bench(args, tmp, module)
    rc = 0
    try:
        bench.run()
    except KeyboardInterrupt:
        log("interrupted")
        rc = 130
    except Exception as e:  # noqa: BLE001 -- reported, then cleaned up
        log("FAILED: %s: %s" % (type(e).__name__, e))
        if bench.nginx is not None:
            log("nginx error log: %s" % bench.nginx.tail_log(8))
        rc = 1
    finally:
        bench.stop()
    finished = time.time()
    if rc == 0:
        log("")
        for line in ratio_table(bench.runs, args) + [""] + results_table(bench.runs, args):
            log(line)
        for f in flags(bench):
            log("flag: " + f)
        if bench.errors:
            rc = 1
        if args.write != "-":
            write_doc(args.write, argv, bench, args, machine, vers, started, finished)
            log("wrote %s" % os.path.relpath(args.write, REPO))
    if args.keep:
        log("kept %s" % tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
