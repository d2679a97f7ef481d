use strict;
use warnings;

# Three nginx instances sharing one Redis (two are in t/sync_multi.t):
# six simultaneous POSTs, two per instance, start exactly one sync; all
# three report the same status; the instance running the sync dies whole
# (SIGKILL) and the other two report it failed once the lease lapses, and
# take over: the next sync, started on another instance, succeeds.

use Test::More;
use HTTP::Tiny;
use POSIX ();
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;

my @names = qw(a b c);
my $t = Umlo::Test->new;
start_stack($t,
    names => \@names,
    sim   => { users => 300, sites => 2, groups => 12, seed => 33 },
    http  => 'umlo_sync_lock_lease 3s;',
);

sub sim_ok {
    my ($method, $path, $json) = @_;
    my $r = $t->sim_admin($method, "/__sim/$path", $json);
    die "sim admin $method $path: $r->{status} $r->{body}\n" unless $r->{status} == 200;
    return $r->{json};
}

# POSTs from forked children, all at the same instant
sub simultaneous_posts {
    my (@on) = @_;
    my $start = time + 0.3;
    my @kids;
    for my $name (@on) {
        my $url = $t->nginx_url($name) . '/umlo/sync';
        pipe(my $rd, my $wr) or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            close $rd;
            my $http = HTTP::Tiny->new(timeout => 10, keep_alive => 0);
            my $wait = $start - time;
            sleep $wait if $wait > 0;
            my $r = $http->request(POST => $url,
                { headers => { 'Content-Type' => 'application/json' } });
            print {$wr} "$r->{status}\n" . ($r->{content} // '');
            close $wr;
            POSIX::_exit(0);
        }
        close $wr;
        push @kids, [ $pid, $rd ];
    }
    my @out;
    for my $k (@kids) {
        my ($pid, $rd) = @$k;
        local $/;
        my $data = <$rd> // '';
        close $rd;
        waitpid $pid, 0;
        my ($status, $body) = split /\n/, $data, 2;
        push @Umlo::Sync::RESPONSES, $body // '';
        push @out, { status => $status // 599, json => eval { decode_json($body) } };
    }
    return @out;
}

# the same document from every instance named, read twice around them
sub same_everywhere {
    my (@on) = @_;
    my $r = wait_for(sub {
        my $first = req($t, GET => '/umlo/status', name => $on[0])->{body};
        my @others = map { req($t, GET => '/umlo/status', name => $_)->{body} } @on[1 .. $#on];
        my $again = req($t, GET => '/umlo/status', name => $on[0])->{body};
        return 0 unless $first eq $again;
        return (grep { $_ ne $first } @others) ? [ $first, @others ] : 1;
    }, timeout => 10, interval => 0.05);
    return ref $r ? 0 : $r;
}

my ($st) = run_sync($t, name => 'a');
die "the first sync did not succeed\n" unless $st && $st->{state} eq 'succeeded';
my $before = status_json($t, 'b');

subtest 'six simultaneous POSTs on three instances: one sync' => sub {
    sim_ok(POST => 'config', { latencyMs => 800 });
    my @r = simultaneous_posts(map { ($_, $_) } @names);
    my @won = grep { $_->{status} == 202 } @r;
    my @lost = grep { $_->{status} == 409 } @r;
    is scalar @won, 1, 'exactly one 202';
    is scalar @lost, 5, 'five 409s';
    my $id = $won[0] && $won[0]{json}{id};
    json_contains $_->{json}, { error => { code => 'sync_running' }, sync => { id => $id } },
        'a 409 names the running sync' for @lost;
    ok same_everywhere(@names), 'all three report the same status while it runs';

    # the instance that runs it dies whole
    my ($runner) = grep { $t->error_log($_) =~ /umlo: manual sync \Q$id\E started/ } @names;
    ok $runner, "instance $runner runs the sync";
    ok wait_for(sub { (status_json($t, $runner)->{sync}{phase} // '') eq 'fetch' }, timeout => 10),
        'it is fetching';
    my ($master, @workers) = $t->nginx_pids($runner);
    kill 'KILL', $master, @workers;
    my $killed = time;
    waitpid $master, 0;
    $t->nginx_instance($runner)->{pid} = undef;
    my @alive = grep { $_ ne $runner } @names;
    my $failed = wait_for(sub { my $s = status_json($t, $alive[0]); $s->{state} eq 'failed' ? $s : 0 },
        timeout => 10, interval => 0.05);
    my $lapse = time - $killed;
    ok $failed, "the others report the dead sync failed";
    cmp_ok $lapse, '<=', 3.5 * ($ENV{UMLO_TIMEOUT_FACTOR} // 1), sprintf('within the lease (%.2fs)', $lapse);
    json_contains $failed, { sync => { id => $id, state => 'failed', error => { where => 'lock' } },
        snapshot => $before->{snapshot} }, 'failed at "lock", the previous snapshot current';
    ok same_everywhere(@alive), 'both survivors say the same';

    sim_ok(POST => 'config', { latencyMs => 0 });
    my ($next) = run_sync($t, name => $alive[1]);
    is $next && $next->{state}, 'succeeded', "a sync on $alive[1] takes over and succeeds";
    is $t->redis('ZCARD', org_key($t, 'building')), 0, 'nothing is left building';
    compare_with_truth(snapshot($t), truth($t), 'after the takeover');
    ok same_everywhere(@alive), 'both survivors report it';
};

final_checks($t, names => [ grep { $t->nginx_running($_) } @names ],
    allow => qr/exited on signal 9/);
done_testing;
