#!/usr/bin/env python3
# Process behaviour: the exact "listening on" line, port 0, signals, bad
# arguments, a port already in use.
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sim"))
from testlib.simproc import KEY, ORG, SIM, Sim  # noqa: E402
from testlib.tap import TAP  # noqa: E402


def main(t):
    t.ok(os.access(SIM, os.X_OK), "sim/umlo-sim is executable")
    with open(SIM, "rb") as f:
        t.is_(f.readline(), b"#!/usr/bin/env python3\n", "shebang is #!/usr/bin/env python3")

    # Run through the shebang, as the module's tests will.
    p = subprocess.Popen([SIM, "--listen", "127.0.0.1:0", "--org", ORG, "--api-key", KEY,
                          "--users", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = p.stdout.readline().decode()
    t.ok(re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line), "prints the listening line",
         repr(line))
    port = int(line.split(":")[-1]) if ":" in line else 0
    t.ok(0 < port < 65536, "port 0 was replaced by the real port")
    p.send_signal(signal.SIGTERM)
    t.is_(p.wait(5), 0, "SIGTERM: clean exit 0")
    t.is_(p.stdout.read(), b"", "nothing else on stdout")
    p.stdout.close()
    p.stderr.close()

    sim = Sim(users=5)
    t.is_(sim.request("GET", "/__sim/health", auth=False).status, 200, "answers once listening")
    taken = sim.port
    t.is_(sim.stop(signal.SIGINT), 0, "SIGINT: clean exit 0")

    # A fixed port, then the same port while taken.
    sim = Sim(users=5)
    busy = subprocess.run([sys.executable, SIM, "--listen", "127.0.0.1:%d" % sim.port,
                           "--org", ORG, "--api-key", KEY, "--users", "1"],
                          capture_output=True, timeout=20)
    t.ok(busy.returncode != 0 and b"listening" not in busy.stdout,
         "port in use: non-zero exit, no listening line", busy)
    sim.stop()
    fixed = Sim("--listen", "127.0.0.1:%d" % taken, users=5)
    t.is_(fixed.port, taken, "an explicit port is used as given")
    fixed.stop()

    for argv, desc in ((["--org", ORG, "--api-key", KEY], "missing --listen"),
                       (["--listen", "127.0.0.1", "--org", ORG, "--api-key", KEY], "no port"),
                       (["--listen", "127.0.0.1:0", "--org", ORG, "--api-key", KEY,
                         "--profile", "slow"], "unknown profile"),
                       (["--listen", "127.0.0.1:0", "--org", ORG, "--api-key", KEY,
                         "--fault-5xx", "2"], "rate above 1")):
        r = subprocess.run([sys.executable, SIM] + argv, capture_output=True, timeout=20)
        t.ok(r.returncode == 2 and not r.stdout, "bad arguments (%s): exit 2" % desc, r)

    r = subprocess.run([sys.executable, SIM, "--help"], capture_output=True, timeout=20)
    t.ok(r.returncode == 0 and b"--activity-rate-limit" in r.stdout, "--help lists the flags")

    start = time.time()
    sim = Sim(users=100, sites=2, groups=10)
    t.ok(time.time() - start < 5, "default-sized org starts quickly")
    truth = sim.truth()
    t.is_((truth["counts"]["users"], len(truth["sites"]), len(truth["groups"])), (100, 2, 10),
          "--users/--sites/--groups are honoured")
    sim.stop()


TAP().run(main)
