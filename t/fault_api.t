use strict;
use warnings;

# Atlassian-side faults that t/sync_errors.t does not cover: 429 storms
# with and without Retry-After, listings whose cursor never ends (the same
# cursor back, or a cycle through several), duplicate users across pages,
# and the API key expiring in the middle of a sync.  A sync either
# succeeds with exactly the truth, or fails in bounded time naming the
# endpoint, leaving the current snapshot untouched.

use Test::More;
use Time::HiRes qw(time);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;

my $t = Umlo::Test->new;
start_stack($t,
    sim  => { users => 600, sites => 2, groups => 260, seed => 31 },
    http => "umlo_sync_retries 4;\numlo_sync_timeout 2s;",
);

sub sim_ok {
    my ($method, $path, $json) = @_;
    my $r = $t->sim_admin($method, "/__sim/$path", $json);
    die "sim admin $method $path: $r->{status} $r->{body}\n" unless $r->{status} == 200;
    return $r->{json};
}

my ($base) = run_sync($t);
die "the first sync did not succeed\n" unless $base && $base->{state} eq 'succeeded';
my $truth = truth($t);

sub untouched {
    my ($st, $label) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    is_deeply $st->{snapshot}, $base->{snapshot}, "$label: the previous snapshot stays current";
    is $t->redis('ZCARD', org_key($t, 'building')), 0, "$label: nothing left building";
    is $t->redis('EXISTS', org_key($t, 'lock')), 0, "$label: the lock is released";
}

sub succeeded {
    my ($st, $label) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    is $st && $st->{state}, 'succeeded', "$label: succeeded";
    is $st && $st->{sync}{counts}{users}, scalar(v2_users($truth)), "$label: counts every user once";
    compare_with_truth(snapshot($t), $truth, $label);
    $base = $st if $st && $st->{state} eq 'succeeded';
}

subtest '429 storm with Retry-After: waited out, succeeded' => sub {
    sim_ok(POST => 'stats/reset');
    sim_ok(POST => 'faults', { error429 => { count => 6, retryAfter => 1, match => 'users/search' } });
    my $t0 = time;
    my ($st) = run_sync($t);
    my $took = time - $t0;
    succeeded($st, 'Retry-After storm');
    cmp_ok $st->{sync}{api}{rate_limited}, '>=', 6, "the six 429s are counted ($st->{sync}{api}{rate_limited})";
    cmp_ok $took, '>=', 0.9, sprintf('Retry-After was honoured (%.1fs)', $took);
    sim_ok(DELETE => 'faults');
};

subtest '429 storm without any rate-limit header: backed off, succeeded' => sub {
    sim_ok(POST => 'faults', { error429 => { count => 8, match => 'groups|workspaces' } });
    my ($st) = run_sync($t);
    succeeded($st, 'bare 429 storm');
    cmp_ok $st->{sync}{api}{rate_limited}, '>=', 8, 'the 429s are counted';
    sim_ok(DELETE => 'faults');
};

subtest 'endless 429s: failed in bounded time, naming the endpoint' => sub {
    sim_ok(POST => 'faults', { error429 => { retryAfter => 0, match => 'workspaces' } });
    my $t0 = time;
    my ($st) = run_sync($t, timeout => 90);
    my $took = time - $t0;
    is $st && $st->{state}, 'failed', 'failed';
    like $st->{sync}{error}{message}, qr/workspaces.*429|429.*workspaces/s, 'naming the endpoint and 429';
    cmp_ok $took, '<', 60, sprintf('after the retries (%.1fs)', $took);
    untouched($st, 'endless 429s');
    sim_ok(DELETE => 'faults');
};

subtest 'a cursor that never ends (the same one back): failed, named' => sub {
    sim_ok(POST => 'faults', { cursorLoop => { mode => 'same', match => 'users/search' } });
    my $t0 = time;
    my ($st) = run_sync($t, timeout => 60);
    my $took = time - $t0;
    is $st && $st->{state}, 'failed', 'failed';
    like $st->{sync}{error}{message}, qr/users\/search.*does not end.*repeated/s, 'says the listing does not end';
    cmp_ok $took, '<', 20, sprintf('at once (%.1fs)', $took);
    untouched($st, 'same cursor');
    sim_ok(DELETE => 'faults');
};

subtest 'a cursor cycle through several pages: failed, named' => sub {
    sim_ok(POST => 'faults', { cursorLoop => { mode => 'cycle', match => 'groups/search' } });
    my $t0 = time;
    my ($st) = run_sync($t, timeout => 90);
    my $took = time - $t0;
    is $st && $st->{state}, 'failed', 'failed';
    like $st->{sync}{error}{message}, qr/groups\/search.*does not end/s, 'says the listing does not end';
    cmp_ok $took, '<', 30, sprintf('in bounded time (%.1fs)', $took);
    untouched($st, 'cursor cycle');
    sim_ok(DELETE => 'faults');
};

subtest 'duplicate users across pages: each user once' => sub {
    sim_ok(POST => 'stats/reset');
    sim_ok(POST => 'faults', { duplicates => { match => 'users/search' } });
    my ($st) = run_sync($t);
    my $stats = sim_ok(GET => 'stats');
    cmp_ok $stats->{faults}{duplicates} // 0, '>', 0, "pages overlapped ($stats->{faults}{duplicates})";
    succeeded($st, 'duplicates');
    is $st->{sync}{progress}{done}, $st->{sync}{counts}{users}, 'progress counted each user once';
    sim_ok(DELETE => 'faults');
};

subtest 'the API key expires mid-sync: failed, saying so' => sub {
    sim_ok(POST => 'config', { latencyMs => 300 });
    my $r = req($t, POST => '/umlo/sync');
    is $r->{status}, 202, 'a slow sync started';
    ok wait_for(sub { (status_json($t)->{sync}{phase} // '') eq 'fetch' }, timeout => 10), 'fetching';
    sim_ok(POST => 'faults', { keyExpiresAt => time + 0.5 });
    my $st = wait_sync($t, $r->{json}{id}, timeout => 60);
    is $st && $st->{state}, 'failed', 'failed';
    like $st->{sync}{error}{message}, qr/401|expired|API key/i, 'says the key was refused';
    untouched($st, 'key expired');
    sim_ok(POST => 'config', { latencyMs => 0 });
    sim_ok(DELETE => 'faults');
    my ($ok) = run_sync($t);
    succeeded($ok, 'with a valid key again');
};

final_checks($t);
done_testing;
