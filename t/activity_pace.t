# The last-active-dates lookups never exceed the endpoint's limit, even
# when there are more of them than the limit allows at once (the
# simulator's bucket, capacity = limit refilled at limit/60 a second,
# counts the 429s); the module's pacer alone keeps its rate when the
# service sends no rate-limit headers; and its budget is shared through
# Redis: a refresh from another instance right after one does not start
# with a fresh burst.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use lib 't/lib';
use Umlo::Test qw(wait_for);
use Umlo::Sync;

my $LIMIT = 60;      # per minute, the simulator's and the module's
my $BURST_A = 50;
my $LAD = 'GET /admin/v1/orgs/{orgId}/directory/users/{accountId}/last-active-dates';

my $t = Umlo::Test->new;
start_stack($t,
    names => [qw(a b)],
    sim   => { users => 100, sites => 2, groups => 10, seed => 11,
               args => ['--activity-rate-limit', $LIMIT, '--activity-page-size', 100] },
    # a burst below the bucket's size: the client, which also reads the
    # X-RateLimit headers, would otherwise wait a whole minute at zero
    http  => "umlo_activity_refresh off;\numlo_activity_rate_limit $LIMIT burst=$BURST_A;",
);

sub sim_ok {
    my ($method, $path, $json) = @_;
    my $r = $t->sim_admin($method, $path, $json);
    die "sim admin $method $path: $r->{status} $r->{body}\n" unless $r->{status} == 200;
    return $r->{json};
}

my ($st) = run_sync($t, name => 'a');
is $st && $st->{state}, 'succeeded', 'full sync';

sim_ok(POST => 'config', { hideAccessTimestamps => 1 });
sim_ok(POST => 'stats/reset');

my $t0 = time;
($st) = run_sync($t, name => 'a', json => { activity => JSON::PP::true }, timeout => 120);
my $took = time - $t0;
is $st && $st->{state}, 'succeeded', 'refresh with every user looked up';
my $n = $st && $st->{sync}{counts}{lookups};
ok $n > $LIMIT + 10, "$n lookups: more than the simulator's burst of $LIMIT";
my $stats = sim_ok(GET => 'stats');
is $stats->{endpoints}{$LAD}{count}, $n, 'the simulator saw each once';
is $stats->{endpoints}{$LAD}{status}{429} // 0, 0, 'no 429 from last-active-dates';
is $stats->{sent429}, 0, 'no 429 at all';
# the burst, then one a second
ok $took >= ($n - $BURST_A) * 60 / $LIMIT - 1, sprintf 'paced: %.1f s for %d lookups', $took, $n;

# The module's pacer alone: the simulator unlimited (no X-RateLimit
# headers, so the client holds nothing back), the module at 240 a minute
# with bursts of 8.  A new rate starts from a clean pacer.
my ($RATE, $BURST) = (240, 8);
my $EVERY = 60 / $RATE;
sim_ok(POST => 'config', { activityRateLimit => 0 });
$t->redis(DEL => org_key($t, 'activity', 'rate'));
$t->reload_nginx(name => $_, http_config => umlo_http_config(
    "umlo_activity_refresh off;\numlo_activity_rate_limit $RATE burst=$BURST;")) for qw(a b);

sim_ok(POST => 'config', { hideAccessTimestamps => 1 });
sim_ok(POST => 'stats/reset');
$t0 = time;
($st) = run_sync($t, name => 'a', json => { activity => JSON::PP::true }, timeout => 120);
$took = time - $t0;
my $t_end = time;
is $st && $st->{state}, 'succeeded', 'refresh paced by the module alone';
$n = $st && $st->{sync}{counts}{lookups};
ok $took >= ($n - $BURST) * $EVERY - 0.5,
    sprintf '%d lookups in %.1f s: %d at once, then one every %.2f s', $n, $took, $BURST, $EVERY;

# right away, from the other instance: the pacer's state is in Redis, so
# b's lookups are spaced from its start, less what the gap refilled
sim_ok(POST => 'config', { hideAccessTimestamps => 0.25 });
$t0 = time;
my $gap = $t0 - $t_end;
($st) = run_sync($t, name => 'b', json => { activity => JSON::PP::true }, timeout => 120);
$took = time - $t0;
is $st && $st->{state}, 'succeeded', 'second refresh, other instance';
my $m = $st && $st->{sync}{counts}{lookups};
ok $m > $BURST + 4, "$m lookups, more than a burst";
ok $took >= ($m - 1) * $EVERY - $gap - 0.3,
    sprintf 'b did not start with a fresh burst: %.1f s for %d lookups (gap %.1f s)', $took, $m, $gap;
$stats = sim_ok(GET => 'stats');
is $stats->{endpoints}{$LAD}{count}, $n + $m, 'each lookup sent once';

final_checks($t, names => [qw(a b)]);
done_testing;
