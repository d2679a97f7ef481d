# The last-active-dates lookups never exceed the endpoint's limit, even
# when there are more of them than the limit allows at once, and the
# budget is shared: a second refresh from another instance right after
# the first does not start with a fresh burst.  The simulator's bucket
# (capacity = limit, refilled at limit/60 per second) counts the 429s.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use lib 't/lib';
use Umlo::Test qw(wait_for);
use Umlo::Sync;

my $LIMIT = 60;      # per minute, the simulator's and the module's
my $LAD = 'GET /admin/v1/orgs/{orgId}/directory/users/{accountId}/last-active-dates';

my $t = Umlo::Test->new;
start_stack($t,
    names => [qw(a b)],
    sim   => { users => 100, sites => 2, groups => 10, seed => 11,
               args => ['--activity-rate-limit', $LIMIT, '--activity-page-size', 100] },
    http  => "umlo_activity_refresh off;\numlo_activity_rate_limit $LIMIT burst=$LIMIT;",
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
ok $n > $LIMIT + 10, "$n lookups: more than the limit's burst of $LIMIT";
my $stats = sim_ok(GET => 'stats');
is $stats->{endpoints}{$LAD}{count}, $n, 'the simulator saw each once';
is $stats->{endpoints}{$LAD}{status}{429} // 0, 0, 'no 429 from last-active-dates';
is $stats->{sent429}, 0, 'no 429 at all';
# the burst, then one a second
ok $took >= ($n - $LIMIT) * 60 / $LIMIT - 2, sprintf 'paced: %.1f s for %d lookups', $took, $n;

# right away, from the other instance: the bucket is still empty
sim_ok(POST => 'config', { hideAccessTimestamps => 0.15 });
sim_ok(POST => 'stats/reset');
$t0 = time;
($st) = run_sync($t, name => 'b', json => { activity => JSON::PP::true }, timeout => 120);
$took = time - $t0;
is $st && $st->{state}, 'succeeded', 'second refresh, other instance';
my $m = $st && $st->{sync}{counts}{lookups};
ok $m >= 5, "$m lookups";
$stats = sim_ok(GET => 'stats');
is $stats->{endpoints}{$LAD}{status}{429} // 0, 0, 'still no 429: the budget is shared through Redis';
ok $took >= ($m - 1) * 60 / $LIMIT - 1, sprintf 'paced from the start: %.1f s for %d lookups', $took, $m;

final_checks($t, names => [qw(a b)]);
done_testing;
