use strict;
use warnings;

# The whole nginx (master and workers) killed with SIGKILL in the middle
# of a sync, so nothing gets to clean up: the previous snapshot stays
# current and is served by the restarted nginx, the lock lapses within one
# lease, the status then says the dead sync failed, the next sync succeeds
# and drops the half-written generation.  (A single worker killed is in
# t/sync_multi.t; reload, quit and terminate in t/sync_shutdown.t.)

use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;
use Umlo::Users;

my $t = Umlo::Test->new;
my %stack = (sim => { users => 400, sites => 2, groups => 12, seed => 21 },
             http => 'umlo_sync_lock_lease 3s;',
             locations => 'location = /plain { return 200 "plain\n"; }');
start_users_stack($t, %stack);
my $args = { %{ $t->nginx_instance('main')->{args} } };

sub sim_ok {
    my ($method, $path, $json) = @_;
    my $r = $t->sim_admin($method, "/__sim/$path", $json);
    die "sim admin $method $path: $r->{status} $r->{body}\n" unless $r->{status} == 200;
    return $r->{json};
}

my ($st) = run_sync($t);
die "the first sync did not succeed\n" unless $st && $st->{state} eq 'succeeded';
my $before = status_json($t);
my $page = req($t, GET => '/umlo/users?limit=1000')->{json};
my $dash = req($t, GET => '/umlo/dashboard')->{json};

subtest 'nginx SIGKILLed mid-sync, then started again' => sub {
    # three rounds of requests (groups, their grants, the write) at 2.5 s
    # each: still fetching when killed at about 1.5 s
    sim_ok(POST => 'config', { latencyMs => 2500 });
    my $r = req($t, POST => '/umlo/sync');
    is $r->{status}, 202, 'a slow sync started';
    my $id = $r->{json}{id};
    ok wait_for(sub { (status_json($t)->{sync}{phase} // '') eq 'fetch' }, timeout => 10),
        'it is fetching';
    sleep 1.5;    # long enough to have renewed its lease once
    my $building = $t->redis('ZRANGE', org_key($t, 'building'), 0, -1);
    is scalar @$building, 1, 'one generation is being written';

    my ($master, @workers) = $t->nginx_pids;
    ok $master && @workers, "master $master, workers @workers";
    kill 'KILL', $master, @workers;
    my $killed = time;
    is waitpid($master, 0), $master, 'the master is gone';
    $t->nginx_instance('main')->{pid} = undef;
    ok wait_for(sub { !grep { kill 0, $_ } @workers }, timeout => 5), 'and its workers';
    cmp_ok $t->redis('PTTL', org_key($t, 'lock')), '>', 0, 'the dead sync still holds the lock';

    sim_ok(POST => 'config', { latencyMs => 0 });
    $t->start_nginx(%$args);
    my $s = status_json($t);
    if (time - $killed < 1.5) {
        is $s->{state}, 'running', 'within the lease the status still says running';
    }
    is_deeply $s->{snapshot}, $before->{snapshot}, 'the previous snapshot is current';
    my $p = req($t, GET => '/umlo/users?limit=1000');
    is $p->{status}, 200, 'the restarted nginx serves users';
    is_deeply $p->{json}{data}, $page->{data}, 'the same users as before the kill';
    my $d = req($t, GET => '/umlo/dashboard')->{json};
    is $d->{generation}, $dash->{generation}, 'the dashboard shows the same generation';
    if (time - $killed < 1.5) {
        my $busy = req($t, POST => '/umlo/sync');
        is $busy->{status}, 409, 'a new sync waits for the lease'
            . ($busy->{status} == 202 ? ' (it did not: sent too late?)' : '');
    }

    my $failed = wait_for(sub { my $x = status_json($t); $x->{state} eq 'failed' ? $x : 0 },
        timeout => 10, interval => 0.05);
    my $lapse = time - $killed;
    ok $failed, 'the status turns to failed'
        or diag('lock ' . ($t->redis('GET', org_key($t, 'lock')) // 'none') . ' pttl '
            . $t->redis('PTTL', org_key($t, 'lock')) . ' status ' . encode_json(status_json($t)));
    cmp_ok $lapse, '<=', 3.5 * ($ENV{UMLO_TIMEOUT_FACTOR} // 1), sprintf('within the 3s lease (%.2fs)', $lapse);
    json_contains $failed, { running => JSON::PP::false, sync => { id => $id, state => 'failed',
        error => { where => 'lock', message => qr/died|lost/ } }, snapshot => $before->{snapshot} },
        'the dead sync is reported: failed at "lock"';
    is $t->redis('EXISTS', org_key($t, 'lock')), 0, 'the lock has lapsed';

    my ($next) = run_sync($t);
    is $next && $next->{state}, 'succeeded', 'the next sync succeeds';
    cmp_ok $next->{snapshot}{generation}, '>', $building->[0],
        'its generation follows the dead one';
    is $t->redis('ZCARD', org_key($t, 'building')), 0, 'nothing is left building';
    for my $g (@$building) {
        is_deeply $t->redis('KEYS', org_key($t, 'g', $g, '*')), [], "the dead generation $g is dropped";
    }
    compare_with_truth(snapshot($t), truth($t), 'after the kill');
    is req($t, GET => '/plain')->{status}, 200, 'other locations answer';
};

final_checks($t, allow => qr/exited on signal 9/);
done_testing;
