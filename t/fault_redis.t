use strict;
use warnings;

# Redis going away in the middle of a sync, two ways: stopped and started
# again (with its data, as a persistent Redis would come back), and hung
# (SIGSTOP, then SIGCONT).  Meanwhile every handler answers 503 JSON in
# bounded time, nginx's other locations are unaffected; afterwards nginx
# recovers without a reload, the previous snapshot is still current (the
# half-written generation never is), and the next sync succeeds.

use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;
use Umlo::Users;

my $t = Umlo::Test->new;
# append-only file, fsync'ed always: a stop and start keeps the data
$t->start_redis(args => [ '--appendonly', 'yes', '--appendfsync', 'always' ]);
start_users_stack($t,
    sim => { users => 400, sites => 2, groups => 12, seed => 23 },
    http => "umlo_redis_timeout 1s;\numlo_sync_lock_lease 3s;",
    locations => 'location = /plain { return 200 "plain\n"; }');

sub sim_ok {
    my ($method, $path, $json) = @_;
    my $r = $t->sim_admin($method, "/__sim/$path", $json);
    die "sim admin $method $path: $r->{status} $r->{body}\n" unless $r->{status} == 200;
    return $r->{json};
}

my ($st) = run_sync($t);
die "the first sync did not succeed\n" unless $st && $st->{state} eq 'succeeded';
my ($uid) = map { $_->{accountId} } v2_users(truth($t));

my @paths = ('/umlo/status', '/umlo/users?limit=5', '/umlo/users/facets', "/umlo/users/$uid",
             '/umlo/users?format=csv', '/umlo/dashboard');

# Every handler: 503 JSON redis_unavailable, within the Redis timeout
# plus a margin; the other location: 200.
sub all_unavailable {
    my ($what) = @_;
    for my $p (@paths) {
        my $t0 = time;
        my $r = req($t, GET => $p, timeout => 10);
        my $took = time - $t0;
        is $r->{status}, 503, "$what: $p 503";
        json_contains $r->{json}, { error => { status => 503, code => 'redis_unavailable' } },
            "$what: $p redis_unavailable";
        cmp_ok $took, '<', 3 * ($ENV{UMLO_TIMEOUT_FACTOR} // 1), sprintf("$what: $p in %.1fs", $took);
    }
    for my $m (qw(POST DELETE)) {
        my $r = req($t, $m => '/umlo/sync', timeout => 10);
        is $r->{status}, 503, "$what: $m /umlo/sync 503";
    }
    is req($t, GET => '/plain')->{status}, 200, "$what: another location answers";
}

# After Redis is back: answers without a reload, the same snapshot.
sub recovered {
    my ($what, $before, $page) = @_;
    ok wait_for(sub { req($t, GET => '/umlo/status')->{status} == 200 }, timeout => 10),
        "$what: the status answers again, without a reload";
    for my $p (@paths) {
        my $r = wait_for(sub { my $x = req($t, GET => $p); $x->{status} == 200 ? $x : 0 }, timeout => 10);
        ok $r, "$what: $p answers 200";
    }
    my $s = wait_for(sub { my $x = status_json($t); $x->{running} ? 0 : $x }, timeout => 15);
    ok $s, "$what: the interrupted sync is over";
    json_contains $s, { state => qr/^(?:failed|cancelled)$/, sync => { error => { where => qr/./, message => qr/./ } } },
        "$what: it is reported as $s->{state}, saying where";
    is_deeply $s->{snapshot}, $before->{snapshot}, "$what: the previous snapshot is current";
    is_deeply req($t, GET => '/umlo/users?limit=1000')->{json}{data}, $page->{data},
        "$what: the same users are served";
    my ($next) = run_sync($t);
    is $next && $next->{state}, 'succeeded', "$what: the next sync succeeds";
    is $t->redis('ZCARD', org_key($t, 'building')), 0, "$what: nothing is left building";
    compare_with_truth(snapshot($t), truth($t), $what);
}

sub slow_sync {
    sim_ok(POST => 'config', { latencyMs => 500 });
    my $r = req($t, POST => '/umlo/sync');
    is $r->{status}, 202, 'a slow sync started';
    ok wait_for(sub { (status_json($t)->{sync}{phase} // '') eq 'fetch' }, timeout => 10), 'fetching';
    sleep 0.5;
    return $r->{json}{id};
}

subtest 'Redis stopped mid-sync, started again with its data' => sub {
    my $before = status_json($t);
    my $page = req($t, GET => '/umlo/users?limit=1000')->{json};
    slow_sync();
    $t->stop_redis;
    sim_ok(POST => 'config', { latencyMs => 0 });
    all_unavailable('Redis stopped');
    sleep 1;
    $t->start_redis;
    recovered('Redis restarted', $before, $page);
};

subtest 'Redis hung (SIGSTOP) mid-sync, then resumed' => sub {
    my $before = status_json($t);
    my $page = req($t, GET => '/umlo/users?limit=1000')->{json};
    slow_sync();
    kill 'STOP', $t->redis_pid;
    $t->_redis_drop;
    sim_ok(POST => 'config', { latencyMs => 0 });
    my $ok = eval { all_unavailable('Redis hung'); 1 };
    kill 'CONT', $t->redis_pid;
    die $@ unless $ok;
    recovered('Redis resumed', $before, $page);
};

final_checks($t);
done_testing;
