"""Code shared by the benchmarks in bench/: processes on free loopback
ports, CPU and memory from /proc, a minimal Redis client, wrk with a result
script, and the machine description.  Python 3 standard library only.
See bench/README.md."""

import hashlib
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SIM_DIR = os.path.join(REPO, "sim")
MODULE = os.path.join(REPO, "build", "ngx_umlo_module.so")

CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------- utils

def log(msg=""):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def stop_proc(proc, sig=signal.SIGTERM, timeout=10):
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except OSError:
        pass


def read_first_line(proc, timeout):
    """The first line a child writes to its stdout pipe ('' when it exits
    or stays silent for `timeout` seconds)."""
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
        elif proc.poll() is not None:
            break
    return buf.decode(errors="replace").strip()


def median_range(values, fmt):
    """'median (min–max)' of a run's values, or just the value for one."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med)
    return "%s (%s–%s)" % (fmt(med), fmt(values[0]), fmt(values[-1]))


def copy_stable(src, dst):
    """Copies a file that a build may be rewriting: retries until its size
    and mtime hold still across the copy and it is 2 s old."""
    for attempt in range(10):
        before = os.stat(src)
        shutil.copyfile(src, dst)
        after = os.stat(src)
        if (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns) \
                and time.time() - after.st_mtime > 2:
            return
        time.sleep(3)


# ---------------------------------------------------------------------- /proc

def proc_stat_fields(pid):
    """Fields of /proc/PID/stat after the command name (None when gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()


def proc_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks
    (None when it is gone)."""
    f = proc_stat_fields(pid)
    return None if f is None else int(f[11]) + int(f[12])


def proc_status_kb(pid, field):
    """A kB field of /proc/PID/status (VmRSS, VmHWM, ...), or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_rss_kb(pid):
    return proc_status_kb(pid, "VmRSS")


def children_of(ppid):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        f = proc_stat_fields(int(name))
        if f is not None and int(f[1]) == ppid:
            out.append(int(name))
    return sorted(out)


def cpu_times():
    """(busy, total) jiffies of the whole machine (all cores), from
    /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts[:8]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals) - idle, sum(vals)


def cpu_busy_ticks():
    """Busy clock ticks of the whole machine (all cores), from /proc/stat."""
    return cpu_times()[0]


def others_busy(seconds, own_pids):
    """CPU (in cores) used by processes other than own_pids over a
    short sample."""
    t0, b0 = time.monotonic(), cpu_busy_ticks()
    o0 = sum(proc_ticks(p) or 0 for p in own_pids)
    time.sleep(seconds)
    b1 = cpu_busy_ticks()
    o1 = sum(proc_ticks(p) or 0 for p in own_pids)
    return max(0.0, ((b1 - b0) - (o1 - o0)) / CLK_TCK / (time.monotonic() - t0))


# --------------------------------------------------------------------- redis

def redis_command(port, *args):
    """One RESP command on a fresh connection -> decoded reply."""
    payload = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        payload += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(payload)
        f = s.makefile("rb")
        line = f.readline()
        kind, rest = line[:1], line[1:].rstrip(b"\r\n")
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError("redis: " + rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else f.read(n + 2)[:-2].decode()
        raise RuntimeError("redis: unexpected reply %r" % line)


def redis_used_memory(port):
    info = redis_command(port, "INFO", "memory")
    for line in info.splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    return None


class Redis:
    """redis-server without persistence, on a free port, in workdir/redis."""

    def __init__(self, workdir):
        self.port = free_port()
        self.dir = os.path.join(workdir, "redis")
        os.makedirs(self.dir)
        self.argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--dir", self.dir,
                     "--logfile", os.path.join(self.dir, "redis.log")]
        self.proc = subprocess.Popen(self.argv, cwd=self.dir, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                if redis_command(self.port, "PING") == "PONG":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    @staticmethod
    def command():
        return "redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no"

    def stop(self):
        stop_proc(self.proc)


def write_key_file(prefix, api_key):
    """The API key in prefix/api.key, mode 0600 -> its path."""
    key_file = os.path.join(prefix, "api.key")
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (api_key + "\n").encode())
    os.close(fd)
    return key_file


# ---------------------------------------------------------------------- wrk

WRK_TIMEOUT_S = 10

# a wrk run stops after this many requests per connection even before its
# duration is over: every load is bounded in requests as well as in time
MAX_REQUESTS_PER_CONN = 20000

# the ping probe's pause before each request, milliseconds
PING_DELAY_MS = 10

# The script reports wrk's own latency statistics (microseconds) as one line,
# and stops each thread after MAX requests per connection.
WRK_LUA = """\
local path = %(path)s
local cap = %(cap)d
local sent = 0
%(extra)s
function request()
  sent = sent + 1
  if sent > cap then
    wrk.thread:stop()
  end
  return wrk.format(nil, path)
end
function done(summary, latency, requests)
  local e = summary.errors
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


def lua_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_lua(tmp, name, path, conns_per_thread, ping=False, max_per_conn=None):
    """The result script; max_per_conn=0: no cap, and no request()
    function either, so that wrk sends its prepared request without
    calling Lua for each one (the cheapest load generator wrk can be)."""
    extra = ""
    if ping:
        extra = ('wrk.headers["Connection"] = "close"\n'
                 "function delay()\n  return %d\nend\n" % PING_DELAY_MS)
    if max_per_conn is None:
        max_per_conn = MAX_REQUESTS_PER_CONN
    text = WRK_LUA % {"path": lua_str(path), "cap": max_per_conn * conns_per_thread,
                      "extra": extra}
    if max_per_conn == 0:
        text = extra + text[text.index("function done("):]
    fn = os.path.join(tmp, name)
    with open(fn, "w") as f:
        f.write(text)
    return fn


class Wrk:
    """One wrk process; its CPU use comes from wait4()'s rusage."""

    def __init__(self, wrk_bin, tmp, port, path, conns, threads, duration, ping=False,
                 max_per_conn=None):
        self.threads = threads
        self.duration = duration
        name = "wrk-%d-%s.lua" % (os.getpid(), hashlib.sha1(
            ("%s|%d|%d|%s|%s" % (path, conns, threads, ping, max_per_conn)
             ).encode()).hexdigest()[:10])
        script = write_lua(tmp, name, path, max(1, conns // threads), ping, max_per_conn)
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
        }


# ------------------------------------------------------------------ machine

def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "unknown"


def machine_info():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) / 1024.0 / 1024.0
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "model": model,
            "memory": "%.1f GiB" % mem if mem else "unknown",
            "kernel": platform.release(), "load": loadavg()}


def first_line(argv):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        return p.stdout.decode(errors="replace").strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "unavailable"


def shown_command(script, argv):
    """How the benchmark was started, without machine paths."""
    out = ["python3", script]
    for a in argv:
        if os.path.isabs(a):
            rel = os.path.relpath(a, REPO)
            a = rel if not rel.startswith("..") else "PATH"
        out.append(a if a and all(c.isalnum() or c in "-_.,/=:" for c in a) else "'%s'" % a)
    return " ".join(out)
