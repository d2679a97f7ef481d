# umlo_sync_daily: a full sync at the day's time, once across every
# instance sharing the Redis; a manual sync running then counts as the
# day's run; a missed run happens at start-up with umlo_sync_catch_up on
# and not with off; the activity refresh cadence runs once per interval
# across instances; armed timers never delay a reload or a quit.
#
# The slots are a few seconds ahead of the test's clock, written with
# seconds (HH:MM:SS) in a zone without daylight saving time but with a
# half-hour offset (Asia/Kolkata, UTC+05:30), so a time zone mistake
# shows as a run at the wrong time or none.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX qw(WNOHANG);
use lib 't/lib';
use Umlo::Test qw(wait_for);
use Umlo::Sync;

plan skip_all => 'no zoneinfo for Asia/Kolkata' unless -e '/usr/share/zoneinfo/Asia/Kolkata';

my $ZONE = 'Asia/Kolkata';
my $OFFSET = 19800;

my $t = Umlo::Test->new;
$t->start_redis;
$t->start_sim(profile => 'fast', users => 60, sites => 2, groups => 8, seed => 5);

# "HH:MM:SS" and "YYYY-MM-DD" in Kolkata of a Unix time
sub local_slot {
    my ($epoch) = @_;
    my @t = gmtime(int($epoch) + $OFFSET);
    return (sprintf('%02d:%02d:%02d', @t[2, 1, 0]),
            sprintf('%04d-%02d-%02d', $t[5] + 1900, $t[4] + 1, $t[3]));
}

sub start {
    my ($name, %o) = @_;
    $t->start_nginx(
        name        => $name,
        http_config => umlo_http_config(join "\n",
            ($o{at} ? "umlo_sync_daily $o{at} " . ($o{zone} // $ZONE) . ';' : ()),
            'umlo_sync_catch_up ' . ($o{catch_up} ? 'on' : 'off') . ';',
            'umlo_activity_refresh ' . ($o{refresh} // 'off') . ';'),
        config      => umlo_locations(),
    );
}

sub history {
    my $list = $t->redis(LRANGE => org_key($t, 'history'), 0, -1) || [];
    return [ map { decode_json($_) } @$list ];
}

sub scheduled { [ grep { $_->{trigger} eq 'scheduled' && ($_->{kind} // 'full') eq 'full' } @{ history() } ] }

sub idle {
    wait_for(sub { !$t->redis(EXISTS => org_key($t, 'lock')) }, timeout => 60);
}

sub logs { join "", map { $t->error_log($_) } @_ }

subtest 'the day\'s run happens once across two instances, at its time' => sub {
    my $slot = time + 8;
    my ($at, $day) = local_slot($slot);
    start($_, at => $at) for qw(a b);
    ok wait_for(sub { @{ scheduled() } >= 1 }, timeout => 30), "a scheduled sync ran ($at $ZONE)";
    idle();
    sleep 2;
    my $runs = scheduled();
    is scalar(@$runs), 1, 'exactly one';
    is $runs->[0]{state}, 'succeeded', 'it succeeded';
    ok $runs->[0]{started_at} >= int($slot) && $runs->[0]{started_at} <= $slot + 3,
        "it started at the slot ($runs->[0]{started_at} vs " . int($slot) . ')';
    is $t->redis(GET => org_key($t, 'daily')), $day, "the day $day is recorded";
    is status_json($t, 'a')->{sync}{trigger}, 'scheduled', 'the status names the trigger';
    my $log = logs(qw(a b));
    my @starts = $log =~ /daily sync of \Q$day\E starts/g;
    is scalar(@starts), 1, 'one instance started it';

    # an instance starting later with catch-up finds the day done
    $t->stop_nginx('b');
    start('b', at => $at, catch_up => 1);
    sleep 3;
    is scalar(@{ scheduled() }), 1, 'a restart with catch-up does not run it again';
    $t->stop_nginx($_) for qw(a b);
};

subtest 'a manual sync running at the time counts as the day\'s run' => sub {
    $t->redis(DEL => org_key($t, 'daily'));
    # two rounds of requests (groups, then their grants): 10 s, past the
    # slot in 5 s
    $t->sim_admin(POST => 'config', { latencyMs => 5000 });
    my $before = scalar @{ scheduled() };
    my $slot = time + 5;
    my ($at, $day) = local_slot($slot);
    start('a', at => $at);
    my $r = req($t, POST => '/umlo/sync', name => 'a');
    is $r->{status}, 202, 'manual sync started';
    sleep($slot - time + 1.5) if $slot + 1.5 > time;
    ok $t->redis(EXISTS => org_key($t, 'lock')), 'the manual sync is still running at the slot';
    my $st = wait_sync($t, $r->{json}{id}, name => 'a', timeout => 60);
    is $st && $st->{state}, 'succeeded', 'manual sync succeeded';
    sleep 6;
    is scalar(@{ scheduled() }), $before, 'no scheduled sync after it';
    is $t->redis(GET => org_key($t, 'daily')), $day, 'the day is recorded as done';
    like logs('a'), qr/daily sync of \Q$day\E: sync \Q$r->{json}{id}\E, already running, counts/,
        'the log says why';
    $t->sim_admin(POST => 'config', { latencyMs => 0 });
    $t->stop_nginx('a');
};

subtest 'catch-up at start-up' => sub {
    my ($at, $day) = local_slot(time - 60);
    $t->redis(DEL => org_key($t, 'daily'));

    my $before = scalar @{ scheduled() };
    start('a', at => $at, catch_up => 0);
    sleep 4;
    is scalar(@{ scheduled() }), $before, 'catch-up off: no run for the missed slot';
    $t->stop_nginx('a');

    start('a', at => $at, catch_up => 1);
    ok wait_for(sub { @{ scheduled() } == $before + 1 }, timeout => 20), 'catch-up on: the missed run at start-up';
    idle();
    is $t->redis(GET => org_key($t, 'daily')), $day, "for the day $day";
    $t->stop_nginx('a');

    start('a', at => $at, catch_up => 1);
    sleep 4;
    is scalar(@{ scheduled() }), $before + 1, 'once only: a second start-up does not repeat it';
    $t->stop_nginx('a');
};

subtest 'the activity cadence runs once per interval across instances' => sub {
    start($_, refresh => '3s') for qw(a b);
    my $t0 = time;
    sleep 11;
    $t->stop_nginx($_) for qw(a b);
    idle();
    my @runs = sort { $a->{started_at} <=> $b->{started_at} }
               grep { ($_->{kind} // '') eq 'activity' && $_->{trigger} eq 'scheduled' } @{ history() };
    ok @runs >= 2 && @runs <= 4, scalar(@runs) . ' refreshes in 11 s at 3 s intervals';
    is scalar(grep { $_->{state} ne 'succeeded' } @runs), 0, 'all succeeded';
    my @gaps = map { $runs[$_]{started_at} - $runs[$_ - 1]{started_at} } 1 .. $#runs;
    ok !grep({ $_ < 2 } @gaps), "never two within an interval (gaps @gaps)";
};

subtest 'armed timers never delay a reload or a quit' => sub {
    my ($at) = local_slot(time + 3600);
    start('a', at => $at, refresh => '1h');
    my (undef, @old) = $t->nginx_pids('a');
    my $t0 = time;
    $t->reload_nginx(name => 'a');
    ok wait_for(sub { !grep { kill 0, $_ } @old }, timeout => 5), 'reload: old workers exit';
    ok time - $t0 < 3, sprintf 'promptly (%.1f s)', time - $t0;
    my ($master) = $t->nginx_pids('a');
    $t0 = time;
    kill 'QUIT', $master;
    ok wait_for(sub { waitpid($master, WNOHANG) == $master || !kill 0, $master },
                timeout => 5, interval => 0.05), 'quit: nginx exits';
    ok time - $t0 < 3, sprintf 'promptly (%.1f s)', time - $t0;
    $t->stop_nginx('a');
};

subtest 'the next slot in zones with and without daylight saving time' => sub {
    for my $zone (qw(UTC Europe/Berlin America/New_York Australia/Sydney
                     America/St_Johns America/Sao_Paulo Asia/Kolkata)) {
        next unless $zone eq 'UTC' || -e "/usr/share/zoneinfo/$zone";
        my $mark = $t->error_log_mark('z');
        start('z', at => '02:30', zone => $zone);
        my ($date, $epoch);
        wait_for(sub { ($date, $epoch) = $t->error_log($mark)
                       =~ /daily sync: next slot (\S+) \(\Q$zone\E\) at (\d+)/ }, timeout => 5);
        my $now = time;
        $t->stop_nginx('z');

        # the test process may set TZ: it runs no threads
        local $ENV{TZ} = $zone;
        POSIX::tzset();
        my @lt = localtime $now;
        my ($want) = grep { $_ > $now }
            map { POSIX::mktime(0, 30, 2, $lt[3] + $_, $lt[4], $lt[5], 0, 0, -1) } 0 .. 2;
        is $epoch, $want, "$zone: 02:30 is at $want";
        is $date, POSIX::strftime('%Y-%m-%d', localtime $want), "$zone: on $date";
    }
    POSIX::tzset();
};

assert_no_alerts($t, $_) for qw(a b z);
done_testing;
