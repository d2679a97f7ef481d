use strict;
use warnings;

# Redis loses its data (restarted without persistence, flushed, restored
# from an older backup) and a full sync rebuilds it: generation numbers
# start again, lower than what the workers hold in memory.  The browser
# and the dashboard must answer from the rebuilt snapshot, not from the
# one each worker still held (they once kept serving it until a reload).

use Test::More;
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;
use Umlo::Users;

my $t = Umlo::Test->new;
start_users_stack($t, sim => { users => 40, sites => 2, groups => 4, seed => 9 });

for my $n (1 .. 3) {
    my ($st) = run_sync($t);
    is $st && $st->{state}, 'succeeded', "sync $n";
}
is current_gen($t), 3, 'generation 3 is current';
my @pids = warm_workers($t, 3);
my (undef, @workers) = $t->nginx_pids;
is scalar(@pids), scalar(@workers), 'every worker holds generation 3';
my $before = req($t, GET => '/umlo/users?limit=1')->{json}{meta}{total};

$t->restart_redis;    # no persistence: everything is gone
ok wait_for(sub { req($t, GET => '/umlo/status')->{status} == 200 }, timeout => 10),
    'the handlers reach the new Redis';
is req($t, GET => '/umlo/users?limit=1')->{json}{error}{code}, 'no_snapshot',
    'no snapshot until a sync';

my $added = $t->sim_admin(POST => 'users', { count => 5 });
is $added->{status}, 200, 'five more users in the org';
my $mark = $t->error_log_mark;
my ($st) = run_sync($t);
is $st && $st->{state}, 'succeeded', 'a full sync rebuilds the data';
is current_gen($t), 1, 'as generation 1';

@pids = warm_workers($t, 1, since => $mark);
is scalar(@pids), scalar(@workers), 'every worker loaded the new generation 1';

my @bad;
for my $a (parallel_get($t, '/umlo/users?limit=1', 12), parallel_get($t, '/umlo/dashboard', 12)) {
    my ($code, $json) = @$a;
    my $gen = $json && ($json->{meta} ? $json->{meta}{generation} : $json->{generation});
    push @bad, "$code generation " . ($gen // 'none') unless $code == 200 && ($gen // 0) == 1;
}
ok !@bad, 'every answer comes from generation 1' or diag join "\n", @bad;
is req($t, GET => '/umlo/users?limit=1')->{json}{meta}{total}, $before + 5,
    'with the users the org has now';

final_checks($t);

done_testing;
