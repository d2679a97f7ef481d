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
#     waiting for the bucket to be full again.

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

sub sim_ok {
    my ($method, $path, $json) = @_;
    my $r = $t->sim_admin($method, $path, $json);
    die "sim admin $method $path: $r->{status} $r->{body}\n" unless $r->{status} == 200;
    return $r->{json};
}

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
    sim_ok('POST', 'users', { users => \@add }) if @add;

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

    sim_ok('POST', 'stats/reset');
    my ($st) = run_sync($t, timeout => 60);
    is $st && $st->{state}, 'succeeded', 'full sync succeeded' or diag explain $st;

    my $snap = snapshot($t);
    compare_with_truth($snap, $truth, 'partitioned sync');
    is scalar(keys %{ $snap->{users} }), scalar(@v2), 'as many users as the truth';
    is $st->{sync}{progress}{done}, scalar(@v2),
        'users read: each once (a duplicate would count twice)';
    is $st->{sync}{counts}{users}, scalar(@v2), 'counts.users';
    is search_calls(sim_ok('GET', 'stats')), $pages,
        "users/search calls: the seven partitions' pages ($pages)";
    my $pages6 = $pages - ceil(($parts->{'active/managed/mfa'} // 0) / 100)
                 - ceil(($parts->{'active/managed/no-mfa'} // 0) / 100) + $six;
    cmp_ok $pages6, '<', $pages,
        "six partitions would have made $pages6: the active managed users were split";
};

subtest 'a rate limit below the sync: spent at the refill rate, no 429' => sub {
    my $limit = 60;                      # one token a second
    sim_ok('POST', 'config', { rateLimit => $limit });
    sim_ok('POST', 'ratelimit/reset');
    sim_ok('POST', 'stats/reset');

    my ($st) = run_sync($t, timeout => 120);
    is $st && $st->{state}, 'succeeded', 'full sync succeeded' or diag explain $st;
    my $stats = sim_ok('GET', 'stats');
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

    compare_with_truth(snapshot($t), truth($t), 'paced sync');
    sim_ok('POST', 'config', { rateLimit => 0 });
};

final_checks($t);
done_testing();
