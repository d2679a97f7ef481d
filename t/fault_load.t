use strict;
use warnings;

# Sustained load on the status and user browser endpoints (wrk, bounded)
# while a large sync runs and swaps generations under the readers: no
# error response, no socket error, no worker crash, and the sync
# succeeds.  The load starts with the sync and stops two seconds after
# it finished, so it covers the swap and the workers loading the new
# generation.  UMLO_LOAD_USERS sets the org size (default 30,000; the
# issue asks for 100,000, which takes a few minutes on a loaded machine).

use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;
use Umlo::Users;

plan skip_all => 'wrk is not installed (make deps)'
    unless grep { -x "$_/wrk" } split /:/, $ENV{PATH} // '';

my $users = $ENV{UMLO_LOAD_USERS} // 30_000;

my $t = Umlo::Test->new;
start_users_stack($t,
    sim => { users => $users, sites => 4, groups => 200, seed => 51, timeout => 300 },
    nginx => { worker_processes => 2 });

my ($st) = run_sync($t, timeout => 600);
die "the first sync did not succeed\n" unless $st && $st->{state} eq 'succeeded';
is $st->{snapshot}{counts}{users} > $users * 0.9 ? 1 : 0, 1,
    "a first snapshot of $st->{snapshot}{counts}{users} users";

# wrk in the background: (pid, output file)
sub wrk {
    my ($name, $path) = @_;
    my $out = $t->path("wrk-$name.out");
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', $out or die;
        open STDERR, '>&', \*STDOUT or die;
        # stopped by SIGINT (wrk then prints its results)
        exec 'wrk', '-t1', '-c4', '-d900s', '--timeout', '10s', $t->nginx_url . $path;
        exit 127;
    }
    return [$pid, $out, $name];
}

sub wrk_result {
    my ($w) = @_;
    kill 'INT', $w->[0];
    waitpid $w->[0], 0;
    my $text = do { local (@ARGV, $/) = $w->[1]; <> } // '';
    my ($n) = $text =~ /(\d+) requests in/;
    my ($bad) = $text =~ /Non-2xx or 3xx responses: (\d+)/;
    my ($sock) = $text =~ /Socket errors: (.*)/;
    ok $n && $n > 0, "$w->[2]: $n requests" or diag($text);
    is $bad // 0, 0, "$w->[2]: no error response";
    ok !$sock, "$w->[2]: no socket error" or diag("Socket errors: $sock");
    return $n // 0;
}

# every worker holds the first snapshot: the load measures the sync and
# the swap, not the first load of a cold worker
my @warm = warm_workers($t, $st->{snapshot}{generation});
is scalar @warm, 2, 'both workers hold the first snapshot';

my $r = req($t, POST => '/umlo/sync');
is $r->{status}, 202, 'a second full sync started';
my $t0 = time;
my @w = (wrk(status => '/umlo/status'), wrk(users => '/umlo/users?limit=50&sort=last_active'));
ok wait_for(sub { status_json($t)->{state} eq 'running' }, timeout => 10), 'the load runs during the sync';
my $done = wait_sync($t, $r->{json}{id}, timeout => 600);
sleep 2;
my $n = 0;
$n += wrk_result($_) for @w;
note sprintf '%d requests in %.1fs under load', $n, time - $t0;
is $done && $done->{state}, 'succeeded', 'the sync under load succeeded';
is $done->{snapshot}{generation}, $st->{snapshot}{generation} + 1, 'and became current';
note sprintf 'the sync took %.1fs', ($done->{sync}{duration_ms} // 0) / 1000;
is req($t, GET => '/umlo/users?limit=1')->{json}{meta}{generation}, $done->{snapshot}{generation},
    'the browser serves the new generation';
unlike $t->error_log, qr/exited on signal|\[alert\]/, 'no worker crashed';

final_checks($t);
done_testing;
