use strict;
use warnings;

# Progress while group grant lookups are the last work left: users chains
# go first, so every user can be read long before the grants are known.
# The percent and ETA must count the lookups instead of sitting at 99 %.

use Test::More;
use lib 't/lib';
use Umlo::Test qw(wait_for);
use Umlo::Sync;

my $t = Umlo::Test->new;
start_stack($t,
    sim  => { users => 300, sites => 2, groups => 40, seed => 7 },
    http => 'umlo_sync_concurrency 8;');

# every grant lookup answers after 1.5 s: 40 groups take several rounds
$t->sim_ok(POST => 'faults',
    { hang => { rate => 1, delayMs => 1500, match => 'role-assignments' } });

my $v2 = scalar v2_users(truth($t));    # v1's total also counts others

my $r = req($t, POST => '/umlo/sync');
is $r->{status}, 202, 'a sync starts';

my ($seen, $last);
wait_for(sub {
    $last = status_json($t);
    my $p = $last->{sync}{progress} or return 0;
    return 1 if $last->{state} ne 'running';
    my $g = $p->{grants} or return 0;
    if ($g->{done} < $g->{expected} && $p->{done} >= $v2) {
        $seen = $p;
        return 1;
    }
    return 0;
}, timeout => 60, interval => 0.2);

ok $seen, 'while grant lookups remain, every user is already read'
    or diag explain $last;
if ($seen) {
    cmp_ok $seen->{grants}{expected}, '==', 40, 'the grants to look up: one per group';
    cmp_ok $seen->{percent}, '<', 90,
        "percent counts the lookups left ($seen->{percent} %, "
        . "$seen->{grants}{done} of 40 grants)";
    ok defined $seen->{eta_seconds}, 'and an ETA is given';
}

my $st = wait_sync($t, $r->{json}{id}, timeout => 90);
is $st && $st->{state}, 'succeeded', 'the sync succeeds';
is $st && $st->{sync}{progress}{percent}, 100, 'at 100 % when done';
$t->sim_ok(DELETE => 'faults');

done_testing;
