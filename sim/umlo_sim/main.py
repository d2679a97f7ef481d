"""Command line: parse flags, build the org, serve until SIGTERM/SIGINT."""

import argparse
import asyncio
import signal
import sys

from .ratelimit import RESET_FORMATS
from .util import parse_time


def _listen(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError("expected HOST:PORT, e.g. 127.0.0.1:0")
    return host.strip("[]") or "127.0.0.1", int(port)


def _rate(text):
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("a rate is a number in 0..1")
    return value


def _time(text):
    try:
        return parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError("epoch seconds or ISO 8601 expected")


def _statuses(text):
    out = [int(s) for s in text.split(",") if s]
    if not out or any(s not in (500, 502, 503, 504) for s in out):
        raise argparse.ArgumentTypeError("comma list of 500, 502, 503, 504")
    return out


def _nonneg(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _page(text):
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be 1..1000")
    return value


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="umlo-sim",
        description="Simulated Atlassian organizations + user management APIs.")
    p.add_argument("--listen", required=True, type=_listen, metavar="HOST:PORT",
                   help="address to listen on; port 0 picks a free port")
    p.add_argument("--org", required=True, help="organization id served")
    p.add_argument("--api-key", required=True, help="the Bearer key accepted")
    g = p.add_argument_group("data")
    g.add_argument("--users", type=_nonneg, default=100)
    g.add_argument("--sites", type=_nonneg, default=2)
    g.add_argument("--groups", type=_nonneg, default=10)
    g.add_argument("--directories", type=int, default=1, choices=range(1, 11),
                   metavar="1..10")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--anchor", type=_time, default=None, metavar="TIME",
                   help="'now' of the generated data (default 2026-08-01T00:00:00Z); "
                        "activity spreads over the two years before it")
    g = p.add_argument_group("behaviour")
    g.add_argument("--profile", choices=("fast", "realistic"), default="fast")
    g.add_argument("--latency-ms", type=float, default=None,
                   help="per-request latency (profile default: fast 0, realistic 150)")
    g.add_argument("--jitter-ms", type=float, default=None,
                   help="+/- uniform jitter (profile default: fast 0, realistic 50)")
    g.add_argument("--rate-limit", type=_nonneg, default=None, metavar="PER_MIN",
                   help="org-wide requests per minute, 0 = unlimited "
                        "(profile default: fast 0, realistic 200)")
    g.add_argument("--activity-rate-limit", type=_nonneg, default=200, metavar="PER_MIN",
                   help="last-active-dates requests per minute (default 200, 0 = unlimited)")
    g.add_argument("--retry-after", action="store_true",
                   help="send Retry-After on 429 (Atlassian does not document it)")
    g.add_argument("--reset-format", choices=sorted(RESET_FORMATS), default="seconds",
                   help="X-RateLimit-Reset as %%Y-%%m-%%dT%%H:%%M:%%SZ (seconds) or "
                        "%%Y-%%m-%%dT%%H:%%M+0000 (minute)")
    g.add_argument("--activity-page-size", type=_page, default=5,
                   help="product_access entries per last-active-dates page")
    g.add_argument("--v1-page-size", type=_page, default=50,
                   help="users per page of GET /v1/orgs/{orgId}/users")
    g = p.add_argument_group("faults (also settable through POST /__sim/faults)")
    g.add_argument("--fault-5xx", type=_rate, default=0.0, metavar="RATE")
    g.add_argument("--fault-5xx-status", type=_statuses, default=[500], metavar="LIST")
    g.add_argument("--fault-hang", type=_rate, default=0.0, metavar="RATE")
    g.add_argument("--hang-ms", type=float, default=0,
                   help="hung requests answer after this long; 0 = never")
    g.add_argument("--fault-truncate", type=_rate, default=0.0, metavar="RATE")
    g.add_argument("--truncate-mode", choices=("json", "short"), default="json")
    g.add_argument("--fault-reset", type=_rate, default=0.0, metavar="RATE")
    g.add_argument("--fault-match", default=None, metavar="REGEX",
                   help="limit the flag faults above to endpoint templates matching this "
                        "(searched in e.g. 'POST /admin/v2/orgs/{orgId}/workspaces')")
    g.add_argument("--forbid-site", default=None, metavar="SITE",
                   help="403 on requests touching this site (name, cloud id or 1-based index)")
    g.add_argument("--page-cap", type=_nonneg, default=None, metavar="N",
                   help="listings silently end after N items")
    g.add_argument("--key-expires-at", type=_time, default=None, metavar="TIME")
    g.add_argument("--key-expires-in", type=float, default=None, metavar="SECONDS")
    g.add_argument("--access-log", action="store_true", help="log requests to stderr")
    args = p.parse_args(argv)
    args.host, args.port = args.listen
    args.anchor_ms = int(args.anchor * 1000) if args.anchor is not None else None
    return args


async def serve(args):
    from .app import Sim
    from .server import HttpProtocol
    sim = Sim(args)
    if args.access_log:
        _wrap_access_log(sim)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(sim), args.host, args.port,
                                      reuse_address=True, backlog=1024)
    host, port = server.sockets[0].getsockname()[:2]
    sim.listen_addr = "%s:%d" % (host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write("listening on %s:%d\n" % (host, port))
    sys.stdout.flush()
    await stop.wait()
    server.close()
    await server.wait_closed()


def _wrap_access_log(sim):
    inner = sim.handle

    def handle(req, conn):
        sys.stderr.write("%s %s\n" % (req.method, req.target))
        inner(req, conn)
    sim.handle = handle


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from .faults import FaultSpecError
    try:
        asyncio.run(serve(args))
    except FaultSpecError as e:
        sys.stderr.write("umlo-sim: %s\n" % e)
        return 2
    except OSError as e:
        sys.stderr.write("umlo-sim: %s\n" % e)
        return 1
    return 0
