use strict;
use warnings;
use utf8;

# The full sync's users partitions and its pacing under a rate limit:
#   - the users/search chains (account status x claim status, active
#     managed accounts also by mfaEnabled) read every user exactly once:
#     the snapshot equals the ground truth, no user is read twice, and the
#     number of users/search calls is that of the partitions;
#   - under a per-minute limit smaller than the sync, the budget is spent
#     at its refill rate: (calls - burst) / rate, with no 429, instead of
#     waiting for the bucket to be full again;
#   - the next run starts from the estimate the last one stored in Redis.

use Test::More;
use JSON::PP ();
use POSIX qw(ceil);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;

binmode(Test::More->builder->$_, ':encoding(UTF-8)') for qw(output failure_output todo_output);

my $t = Umlo::Test->new;
start_stack($t,
    sim => { users => 1500, sites => 2, groups => 50, seed => 23 },
);

sub search_calls {
    my ($stats) = @_;
    my $n = 0;
    for my $ep (keys %{ $stats->{endpoints} }) {
        $n += $stats->{endpoints}{$ep}{count} if $ep =~ m{users/search};
    }
    return $n;
}

# the partitions of src/ngx_umlo_fetch.c, from the ground truth
sub partitions {
    my (@users) = @_;
    my %n;
    for my $u (@users) {
        my $key = "$u->{accountStatus}/$u->{claimStatus}";
        $key .= $u->{mfaEnabled} ? '/mfa' : '/no-mfa'
            if $key eq 'active/managed';
        $n{$key}++;
    }
    return \%n;
}

subtest 'partitions: every user read exactly once' => sub {
    # active managed users such that each mfaEnabled half ends one user
    # into a page: seven chains then need one page more than six would,
    # so the call count shows the split
    my $parts = partitions(v2_users(truth($t)));
    my @add;
    for my $mfa (0, 1) {
        my $n = $parts->{ $mfa ? 'active/managed/mfa' : 'active/managed/no-mfa' } // 0;
        push @add, map { +{ name => "Split Test $mfa-$_", accountType => 'atlassian',
                           mfaEnabled => $mfa ? JSON::PP::true : JSON::PP::false } }
                   1 .. (101 - $n % 100) % 100;
    }
    $t->sim_ok('POST', 'users', { users => \@add }) if @add;

    my $truth = truth($t);
    my @v2 = v2_users($truth);
    $parts = partitions(@v2);
    my $six = ceil((($parts->{'active/managed/mfa'} // 0)
                    + ($parts->{'active/managed/no-mfa'} // 0)) / 100);
    my @names = qw(active/managed/mfa active/managed/no-mfa active/unmanaged
                   inactive/managed inactive/unmanaged closed/managed
                   closed/unmanaged);
    my $pages = 0;
    $pages += ceil(($parts->{$_} // 0) / 100) || 1 for @names;
    is scalar(keys %$parts), 7, 'the org has users in all seven partitions'
        or diag explain $parts;
    cmp_ok $parts->{'active/managed/mfa'} // 0, '>', 100,
        'a multi-page chain among them';

    $t->sim_ok('POST', 'stats/reset');
    my ($st) = run_sync($t, timeout => 60);
    is $st && $st->{state}, 'succeeded', 'full sync succeeded' or diag explain $st;

    my $snap = snapshot($t);
    compare_with_truth($snap, $truth, 'partitioned sync');
    is scalar(keys %{ $snap->{users} }), scalar(@v2), 'as many users as the truth';
    is $st->{sync}{progress}{done}, scalar(@v2),
        'users read: each once (a duplicate would count twice)';
    is $st->{sync}{counts}{users}, scalar(@v2), 'counts.users';
    is search_calls($t->sim_ok('GET', 'stats')), $pages,
        "users/search calls: the seven partitions' pages ($pages)";
    my $pages6 = $pages - ceil(($parts->{'active/managed/mfa'} // 0) / 100)
                 - ceil(($parts->{'active/managed/no-mfa'} // 0) / 100) + $six;
    cmp_ok $pages6, '<', $pages,
        "six partitions would have made $pages6: the active managed users were split";
};

subtest 'a rate limit below the sync: spent at the refill rate, no 429' => sub {
    my $limit = 60;                      # one token a second
    $t->sim_ok('POST', 'config', { rateLimit => $limit });
    $t->sim_ok('POST', 'ratelimit/reset');
    $t->sim_ok('POST', 'stats/reset');

    my ($st) = run_sync($t, timeout => 120);
    is $st && $st->{state}, 'succeeded', 'full sync succeeded' or diag explain $st;
    my $stats = $t->sim_ok('GET', 'stats');
    my $calls = $stats->{total};
    my $over = $calls - $limit;
    cmp_ok $over, '>=', 8, "the sync ($calls calls) outgrows the burst of $limit"
        or return;

    is $stats->{sent429}, 0, 'the simulator sent no 429';
    is $st->{sync}{api}{rate_limited}, 0, 'the module saw no 429';
    my $secs = $st->{sync}{duration_ms} / 1000;
    # the bucket refills one token a second: the calls past the burst take
    # $over seconds; the old wait for a full bucket took a minute
    cmp_ok $secs, '>=', ($over - 2) * 0.9, "paced: $secs s for $over calls past the burst";
    cmp_ok $secs, '<=', Umlo::Test::scaled($over * 1.25 + 4),
        "and no longer than the refill takes ($over s)";

    # the run left its estimate in Redis for the next one
    my $key = 'umlo:{' . $t->org . '}:pace:admin';
    my $pace = $t->redis('GET', $key) // '';
    like $pace, qr/^\d+ \d+ $limit -?\d+ 1 0$/,
        "the estimate is stored: '$pace' (at, reset, limit, remaining, paced)";

    # The budget is nearly spent now.  A selective sync of 50 users sends
    # 5 requests at once: from the stored estimate it waits for tokens;
    # without it, its first wave meets the empty budget.
    my @ids = map { $_->{accountId} } (v2_users(truth($t)))[0 .. 49];
    $t->sim_ok('POST', 'stats/reset');
    my ($sel) = run_sync($t, json => { users => \@ids }, timeout => 60);
    is $sel && $sel->{state}, 'succeeded', 'selective sync right after';
    is $t->sim_ok('GET', 'stats')->{sent429}, 0,
        'started from the estimate: no 429';

    $t->redis('DEL', $key);
    $t->sim_ok('POST', 'stats/reset');
    ($sel) = run_sync($t, json => { users => \@ids }, timeout => 60);
    is $sel && $sel->{state}, 'succeeded', 'selective sync without it';
    cmp_ok $t->sim_ok('GET', 'stats')->{sent429}, '>', 0,
        'without the estimate the first wave meets the spent budget '
        . '(the check above can fail)';
    # the 429s carried the first budget: the class waits for tokens, not
    # for the bucket to be full again (X-RateLimit-Reset, a minute away)
    cmp_ok $sel->{sync}{duration_ms} / 1000, '<', Umlo::Test::scaled(30),
        "then paced by tokens: $sel->{sync}{duration_ms} ms";

    compare_with_truth(snapshot($t), truth($t), 'paced sync');
    $t->sim_ok('POST', 'config', { rateLimit => 0 });
};

final_checks($t);
done_testing();
