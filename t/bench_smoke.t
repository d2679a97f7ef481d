use strict;
use warnings;
use utf8;

# The benchmark tools of bench/ on tiny orgs (their --smoke runs, what
# `make bench-smoke` runs), so that a change to the module, the simulator
# or the status document cannot leave them broken until the next full
# `make bench`.  Checks that each tool runs to the end, measures something
# and writes its results file; asserts no performance figure.  Also the
# pure functions that decide what is reported: the linear fit and knee of
# --scaling, and the refusal of runs in which wrk or the simulator was the
# bottleneck.

use Test::More;
use File::Temp qw(tempdir);
use Cwd qw(abs_path);
use FindBin;
use Time::HiRes qw(time);

binmode(Test::More->builder->$_, ':encoding(UTF-8)') for qw(output failure_output todo_output);

my $root   = abs_path("$FindBin::Bin/..");
my $module = $ENV{UMLO_MODULE} // "$root/build/ngx_umlo_module.so";
plan skip_all => "module not built ($module): run make first" unless -f $module;
sub in_path { my ($p) = @_; grep { -x "$_/$p" } split /:/, ($ENV{PATH} // '') }
plan skip_all => "python3 not found" unless in_path('python3');

my $have_wrk = in_path('wrk');
my $tmp = tempdir(CLEANUP => 1);

# Runs a command with a time limit -> (exit status, output).
sub run_tool {
    my ($limit, @cmd) = @_;
    my $out = "$tmp/out.txt";
    my $t0  = time;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', $out or die;
        open STDERR, '>&', \*STDOUT or die;
        chdir $root;
        setpgrp(0, 0);
        exec @cmd or exit 127;
    }
    my $rc;
    while (1) {
        my $w = waitpid($pid, 1);          # WNOHANG
        if ($w == $pid) { $rc = $? >> 8; last }
        if (time - $t0 > $limit) {
            kill 'TERM', -$pid;
            sleep 2;
            kill 'KILL', -$pid;
            waitpid($pid, 0);
            $rc = -1;
            last;
        }
        select(undef, undef, undef, 0.1);
    }
    open my $fh, '<:encoding(UTF-8)', $out or die;
    local $/;
    my $text = <$fh>;
    return ($rc, $text, time - $t0);
}

sub slurp {
    my ($f) = @_;
    open my $fh, '<:encoding(UTF-8)', $f or return '';
    local $/;
    return <$fh>;
}

# no path of this machine in a results file: they are committed
sub no_paths {
    my ($doc, $name) = @_;
    unlike($doc, qr{\Q$root\E|\Q$tmp\E|/tmp/umlo-}, "$name: no machine paths");
}

my $limit = 60 * ($ENV{UMLO_TIMEOUT_FACTOR} || 1);
my @py = ('python3');

subtest 'sync_bench --smoke' => sub {
    my ($rc, $out) = run_tool($limit, @py, 'bench/sync_bench.py', '--smoke',
                              '--module', $module, '--write', "$tmp/benchmarks.md");
    is($rc, 0, 'exit status 0') or diag $out;
    like($out, qr/^\| 300 \| fast \| unlimited \| \d/m, 'a measured row for 300 users');
    my $doc = slurp("$tmp/benchmarks.md");
    like($doc, qr/^# Sync benchmark/m, 'results file written');
    like($doc, qr/^## $_$/m, "section $_") for ('Machine', 'Versions', 'Results', 'Bounds',
                                                'Every run', 'Commands');
    no_paths($doc, 'benchmarks.md');
};

subtest 'sync_bench --smoke --scaling' => sub {
    my ($rc, $out) = run_tool($limit, @py, 'bench/sync_bench.py', '--smoke', '--scaling',
                              '--module', $module, '--write', "$tmp/scaling.md");
    is($rc, 0, 'exit status 0') or diag $out;
    my $doc = slurp("$tmp/scaling.md");
    like($doc, qr/^## Growth/m, 'results file written');
    # both sizes measured: a marginal cost from 200 to 500 users
    like($doc, qr/^\| 200 \| [0-9.]+ (?:s|min) \|/m, '200 users measured');
    like($doc, qr/^\| 500 \| [0-9.]+ (?:s|min) \| [0-9.]+ s \| -?[0-9.]+ s \|/m,
         '500 users measured, with its marginal cost');
    like($doc, qr/sync wall time ≈ .* per 1,000 users \(least squares over 2 sizes/,
         'linear fit over both sizes');
    no_paths($doc, 'benchmarks-scaling.md');
};

subtest 'scaling: linear fit and knee' => sub {
    # linear cost: no knee; a cost whose slope triples past 10k: knee at 30k
    my $py = <<'PY';
import sync_bench as s
lin = [(1000, 2.0), (10000, 11.0), (30000, 31.0), (100000, 101.0)]
a, b, r2 = s.linear_fit(lin)
print("fit %.3f %.6f %.6f" % (a, b, r2))
print("knee-linear", s.knee(lin)[0])
bent = [(1000, 2.0), (10000, 11.0), (30000, 91.0), (100000, 371.0)]
print("knee-bent", s.knee(bent)[0])
PY
    my ($rc, $out) = run_tool(20, @py, '-c', "import sys; sys.path.insert(0, 'bench')\n$py");
    is($rc, 0, 'ran') or diag $out;
    like($out, qr/^fit 1\.000 0\.001000 1\.000000$/m, 'exact line recovered, r² 1');
    like($out, qr/^knee-linear None$/m, 'no knee on a linear cost');
    like($out, qr/^knee-bent 30000$/m, 'knee where the marginal cost jumps');
};

SKIP: {
    skip 'wrk not installed (apt-get install -y wrk)', 3 unless $have_wrk;

    subtest 'status_bench --smoke' => sub {
        my ($rc, $out) = run_tool($limit, @py, 'bench/status_bench.py', '--smoke',
                                  '--module', $module, '--write', "$tmp/status.md");
        is($rc, 0, 'exit status 0') or diag $out;
        like($out, qr/idle\s+umlo_status\s+run 1: [\d,]+ req\/s/, 'idle umlo_status measured');
        like($out, qr/idle\s+stub_status\s+run 1: [\d,]+ req\/s/, 'idle stub_status measured');
        like($out, qr/sync\s+umlo_status\s+run 1: [\d,]+ req\/s/, 'umlo_status during a sync');
        my $doc = slurp("$tmp/status.md");
        like($doc, qr/^## How close to nginx's ceiling/m, 'results file written');
        # each row is a figure or says why it was refused
        for my $phase ('idle', 'during a sync') {
            like($doc, qr/^\| \Q$phase\E \| (?:[0-9.]+ \(|[0-9.]+ \||\*\*refused: )/m,
                 "ratio row: $phase");
        }
        no_paths($doc, 'benchmarks-status.md');
    };

    subtest 'status_bench refuses bottlenecked runs' => sub {
        my $py = <<'PY';
import sys
sys.path.insert(0, "bench")
import status_bench as s
class A: runs = 1
def run(target, refused, rps=1000.0, us=4.0):
    return {"phase": "idle", "target": target, "path": "/", "run": 1, "refused": refused,
            "wrk": {"rps": rps, "p50": 0.1, "p99": 1.0, "max": 2.0, "bytes_per_req": 100,
                    "errors": 0, "non2xx": 0},
            "nginx_cpu": 0.5, "nginx_us_per_req": us, "wrk_cpu_thread": 0.95 if refused else 0.3, "redis_cpu": 0.1,
            "sim_cpu": 0.0, "others_cpu": 0.0}
rows = [run("umlo_status", None, 500.0, 20.0),
        run("stub_status", "wrk-bound (95 % of a core per wrk thread)")]
print("\n".join(s.ratio_table(rows, A)))
print("\n".join(s.results_table(rows, A)))
rows = [run("umlo_status", None, 500.0, 20.0), run("stub_status", None, 1000.0, 4.0)]
print("\n".join(s.ratio_table(rows, A)))
PY
        my ($rc, $out) = run_tool(20, @py, '-c', $py);
        is($rc, 0, 'ran') or diag $out;
        like($out, qr/^\| idle \| \*\*refused: no pair of valid runs\*\* \| \| \| 0\/1 \|$/m,
             'no ratio from a wrk-bound run');
        like($out, qr/^\| idle \| `\/nginx_status` \| \*\*refused: wrk-bound/m,
             'the refused run says why instead of a figure');
        like($out, qr/^\| idle \| 0\.50 \| 1\.0× \| 0\.20 \| 1\/1 \|$/m,
             'valid pair: the ratios of throughput, p99 and CPU per request');
    };

    subtest 'users_bench --smoke' => sub {
        my ($rc, $out) = run_tool($limit, @py, 'bench/users_bench.py', '--smoke',
                                  '--module', $module, '--write', "$tmp/users.md");
        is($rc, 0, 'exit status 0') or diag $out;
        like($out, qr/c=2\s+run 1: p50 [0-9.]+ ms/, 'a query measured');
        like($out, qr/CSV run 1: \d+ rows/, 'the CSV export ran');
        my $doc = slurp("$tmp/users.md");
        like($doc, qr/^# /m, 'results file written');
        no_paths($doc, 'benchmarks-users.md');
    };
}

done_testing;
