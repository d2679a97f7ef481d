use strict;
use warnings;

# Two nginx instances sharing one Redis: one sync at a time across all
# workers and instances, the same status everywhere, and a sync whose
# worker dies is reported failed once its lock lapses.

use Test::More;
use HTTP::Tiny;
use POSIX ();
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;

my $t = Umlo::Test->new;
start_stack($t,
    names => [qw(a b)],
    sim   => { users => 300, sites => 2, groups => 12, seed => 31 },
    http  => q{
        umlo_sync_lock_lease 3s;
    },
);

# the master's note about the worker SIGKILLed below is expected
my $KILLED = qr/worker process \d+ exited on signal 9/;

sub sim_ok {
    my ($method, $path, $json) = @_;
    my $r = $t->sim_admin($method, $path, $json);
    die "sim admin $method $path: $r->{status} $r->{body}\n" unless $r->{status} == 200;
    return $r->{json};
}

# Sends all @reqs ([name, method, path]) at the same instant from forked
# children; returns [{status, json, body}] in the same order.
sub simultaneous {
    my (@reqs) = @_;
    my $start = time + 0.3;
    my @kids;
    for my $i (0 .. $#reqs) {
        my ($name, $method, $path) = @{ $reqs[$i] };
        my $url = $t->nginx_url($name) . $path;
        pipe(my $rd, my $wr) or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            close $rd;
            my $http = HTTP::Tiny->new(timeout => 10, keep_alive => 0);
            my $wait = $start - time;
            sleep $wait if $wait > 0;
            my $r = $http->request($method, $url,
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
        push @out, { status => $status // 599, body => $body,
            json => eval { decode_json($body) } };
    }
    return \@out;
}

sub same_status {
    # documents change while a sync runs: compare a, b, a and accept when
    # a did not change in between
    my $r = wait_for(sub {
        my $a1 = req($t, GET => '/umlo/status', name => 'a')->{body};
        my $b  = req($t, GET => '/umlo/status', name => 'b')->{body};
        my $a2 = req($t, GET => '/umlo/status', name => 'a')->{body};
        return $a1 eq $a2 ? [ $a1, $b ] : 0;
    }, timeout => 10, interval => 0.05);
    return $r ? @$r : ('', 'no stable answer');
}

# --------------------------------------------------------------------------

subtest 'simultaneous POSTs to both instances: one 202, one 409' => sub {
    sim_ok(POST => 'config', { latencyMs => 250 });
    for my $round (1 .. 4) {
        my $res = simultaneous([ a => POST => '/umlo/sync' ], [ b => POST => '/umlo/sync' ]);
        my @codes = sort map { $_->{status} } @$res;
        is "@codes", '202 409', "round $round: one 202 and one 409";
        my ($won) = grep { $_->{status} == 202 } @$res;
        my ($lost) = grep { $_->{status} == 409 } @$res;
        if ($won && $lost) {
            json_contains $lost->{json}, { error => { code => 'sync_running' },
                sync => { id => $won->{json}{id} } }, "round $round: the 409 names the winner";
        }
        my $st = $won && wait_sync($t, $won->{json}{id}, name => 'b');
        is $st && $st->{state}, 'succeeded', "round $round: the winning sync succeeds";
    }

    # many at once, on every worker of both instances
    my $res = simultaneous(map { [ $_ % 2 ? 'a' : 'b', POST => '/umlo/sync' ] } 1 .. 10);
    my %codes;
    $codes{ $_->{status} }++ for @$res;
    is_deeply \%codes, { 202 => 1, 409 => 9 }, 'ten simultaneous POSTs: exactly one 202';
    my ($won) = grep { $_->{status} == 202 } @$res;
    ok !grep({ $_->{status} == 409 && ($_->{json}{sync}{id} // '') ne $won->{json}{id} } @$res),
        'every 409 names the same running sync';
    my $st = wait_sync($t, $won->{json}{id}, name => 'a');
    is $st && $st->{state}, 'succeeded', 'it succeeds';
    sim_ok(POST => 'config', { latencyMs => 0 });
};

subtest 'both instances report the same status' => sub {
    my ($a, $b) = same_status();
    is $b, $a, 'idle after a sync: identical documents';
    sim_ok(POST => 'config', { latencyMs => 600 });
    my $r = req($t, POST => '/umlo/sync', name => 'a');
    is $r->{status}, 202, 'a slow sync started on a';
    ok wait_for(sub { req($t, GET => '/umlo/status', name => 'b')->{json}{state} eq 'running' }, timeout => 10),
        'b sees it running';
    ($a, $b) = same_status();
    is $b, $a, 'while running: identical documents';
    my $c = req($t, POST => '/umlo/sync', name => 'b');
    is $c->{status}, 409, 'b refuses a second sync';

    my $d = req($t, DELETE => '/umlo/sync', name => 'b');
    is $d->{status}, 202, 'b cancels the sync running on a';
    my $st = wait_sync($t, $r->{json}{id}, name => 'a', timeout => 20);
    is $st && $st->{state}, 'cancelled', 'cancelled';
    ($a, $b) = same_status();
    is $b, $a, 'after the cancel: identical documents';
    sim_ok(POST => 'config', { latencyMs => 0 });
};

subtest 'a worker killed mid-sync: the lock lapses, status says failed' => sub {
    my $before = status_json($t, 'b');
    sim_ok(POST => 'config', { latencyMs => 1000 });
    my $mark = $t->error_log_mark('a');
    my $r = req($t, POST => '/umlo/sync', name => 'a');
    is $r->{status}, 202, 'slow sync started on a';
    my $id = $r->{json}{id};
    my $pid = wait_for(sub { $t->error_log($mark) =~ /\[notice\] (\d+)#\d+: \*\d+ umlo: manual sync \Q$id\E started/ && $1 },
        timeout => 5);
    ok $pid, "the sync runs in worker $pid";
    ok wait_for(sub { status_json($t, 'b')->{state} eq 'running' }, timeout => 10), 'running';
    # let it renew the lock at least once
    ok wait_for(sub { time - $r->{json}{requested_at} > 1.5 }, timeout => 5), "it has run (and renewed its lock) for a while";
    my $gen_building = $t->redis('ZRANGE', org_key($t, 'building'), 0, -1);

    kill 'KILL', $pid;
    my $killed = time;
    cmp_ok $t->redis('PTTL', org_key($t, 'lock')), '>', 0, 'right after the kill the lock is still held';
    my $running = req($t, GET => '/umlo/status', name => 'b')->{json};
    is $running->{state}, 'running', 'and the status still says running';

    my $failed = wait_for(sub {
        my $s = status_json($t, 'b');
        return $s->{state} eq 'failed' ? $s : 0;
    }, timeout => 10, interval => 0.05);
    my $lapse = time - $killed;
    ok $failed, 'the status turns to failed';
    cmp_ok $lapse, '<=', 3.5, sprintf('within the 3s lease (%.2fs)', $lapse);
    json_contains $failed, { state => 'failed', running => JSON::PP::false,
        sync => { id => $id, state => 'failed', error => { where => 'lock', message => qr/died|lost/ } },
        snapshot => $before->{snapshot} }, 'failed at "lock"; the previous snapshot stays current';
    my ($a, $b) = same_status();
    is $b, $a, 'both instances say so';

    sim_ok(POST => 'config', { latencyMs => 0 });
    my ($st) = run_sync($t, name => 'b');
    is $st && $st->{state}, 'succeeded', 'a new sync (on b) succeeds';
    is $t->redis('ZCARD', org_key($t, 'building')), 0, 'the dead sync\'s half-written generation is dropped';
    for my $g (@{ $gen_building || [] }) {
        is_deeply $t->redis('KEYS', org_key($t, 'g', $g, '*')), [], "no keys of generation $g remain";
    }
    ok wait_for(sub { my (undef, @w) = $t->nginx_pids('a'); @w == 2 }, timeout => 10),
        'instance a has two workers again';
    my ($st2) = run_sync($t, name => 'a');
    is $st2 && $st2->{state}, 'succeeded', 'and a sync on a succeeds';
    compare_with_truth(snapshot($t), truth($t), 'after the recovery');
};

subtest 'reloading nginx cancels its running sync and frees the lock' => sub {
    sim_ok(POST => 'config', { latencyMs => 1000 });
    my $r = req($t, POST => '/umlo/sync', name => 'a');
    is $r->{status}, 202, 'slow sync started on a';
    ok wait_for(sub { status_json($t, 'b')->{state} eq 'running' }, timeout => 10), 'running';
    my $t0 = time;
    $t->reload_nginx(name => 'a');
    my $st = wait_sync($t, $r->{json}{id}, name => 'b', timeout => 20);
    my $took = time - $t0;
    json_contains $st, { state => 'cancelled', sync => { error => { where => 'shutdown',
        message => qr/reloading or shutting down/ } } }, 'cancelled because of the reload';
    cmp_ok $took, '<', 8, sprintf('promptly (%.1fs)', $took);
    is $t->redis('EXISTS', org_key($t, 'lock')), 0, 'the lock is released (no lease wait)';
    sim_ok(POST => 'config', { latencyMs => 0 });
    my ($ok) = run_sync($t, name => 'a');
    is $ok && $ok->{state}, 'succeeded', 'the reloaded instance syncs';
};

subtest 'a sync that lost its lock does not overwrite the next sync\'s status' => sub {
    # Sync A (on a) waits on a hung request; its lock disappears (as when
    # its lease lapses); sync B (on b) takes the lock and finishes; then A
    # notices and gives up.  The status must stay B's.
    sim_ok(POST => 'faults', { hang => { rate => 1, count => 1, match => 'workspaces', delayMs => 5000 } });
    my $ra = req($t, POST => '/umlo/sync', name => 'a');
    is $ra->{status}, 202, 'sync A started';
    ok wait_for(sub { status_json($t, 'b')->{state} eq 'running' }, timeout => 10), 'A running';
    $t->redis('DEL', org_key($t, 'lock'));
    my $rb = req($t, POST => '/umlo/sync', name => 'b');
    is $rb->{status}, 202, 'sync B started once the lock was gone';
    my $sb = wait_sync($t, $rb->{json}{id}, name => 'b');
    is $sb && $sb->{state}, 'succeeded', 'B succeeded';
    $t->assert_error_log(qr/umlo: manual sync \Q$ra->{json}{id}\E failed at lock/,
        name => 'a', timeout => 10, desc => 'A gave up: lock lost');
    sim_ok(DELETE => 'faults');
    my $st = status_json($t, 'b');
    {
        json_contains $st, { state => 'succeeded', sync => { id => $rb->{json}{id}, state => 'succeeded' },
            snapshot => { sync_id => $rb->{json}{id} } },
            'the status still describes B, whose data is current';
    }
    is $st->{snapshot}{sync_id}, $rb->{json}{id}, 'the snapshot is B\'s';
    is $t->redis('EXISTS', org_key($t, 'lock')), 0, 'no lock left';
};

subtest 'two orgs in one Redis: separate locks, keys and status' => sub {
    # a second org with its own simulator and nginx, on the same Redis
    my $t2 = Umlo::Test->new(org => 'acme.corp_2-x');
    $t2->start_sim(users => 80, sites => 1, groups => 6, seed => 32, profile => 'fast');
    $t2->start_nginx(
        name        => 'c',
        http_config => umlo_http_config() =~ s/\$UMLO_REDIS\b/\$UMLO_SHARED_REDIS/r,
        config      => umlo_locations(),
        vars        => { UMLO_SHARED_REDIS => '127.0.0.1:' . $t->redis_port },
    );
    sim_ok(POST => 'config', { latencyMs => 400 });
    $t2->sim_admin(POST => 'config', { latencyMs => 400 });
    my $r1 = req($t, POST => '/umlo/sync', name => 'a');
    my $r2 = req($t2, POST => '/umlo/sync', name => 'c');
    is $r1->{status}, 202, 'org 1: sync started';
    is $r2->{status}, 202, 'org 2: a sync starts too (its own lock)';
    is status_json($t, 'b')->{state}, 'running', 'while org 1 is still running';
    my $st1 = wait_sync($t, $r1->{json}{id}, name => 'b');
    my $st2 = wait_sync($t2, $r2->{json}{id}, name => 'c');
    sim_ok(POST => 'config', { latencyMs => 0 });
    is $st1 && $st1->{state}, 'succeeded', 'org 1 succeeded';
    is $st2 && $st2->{state}, 'succeeded', 'org 2 succeeded';
    is $st2 && $st2->{org}, 'acme.corp_2-x', 'org 2 status names its org';
    is $st1 && $st1->{org}, $t->org, 'org 1 status names its org';
    my $gen2 = $t->redis('HGET', 'umlo:{acme.corp_2-x}:current', 'gen');
    my $users2 = $t->redis('HLEN', "umlo:{acme.corp_2-x}:g:$gen2:users");
    my $truth2 = $t2->sim_admin(GET => 'org')->{json};
    is $users2, scalar(v2_users($truth2)), 'org 2 users are under its own keys';
    my @stray = grep { !/^umlo:\{(?:\Q${\ $t->org }\E|acme\.corp_2-x)\}:/ } @{ $t->redis('KEYS', '*') };
    is_deeply \@stray, [], 'every key carries its org in the hash tag';
    compare_with_truth(snapshot($t), truth($t), 'org 1 next to org 2');
    assert_no_alerts($t2, 'c');
    my $k2 = $t2->api_key;
    ok index(redis_dump($t), $k2) < 0 && index($t2->error_log('c'), $k2) < 0,
        'org 2 API key in neither Redis nor its error log';
    $t2->stop_nginx('c');
};

final_checks($t, names => [qw(a b)], allow => $KILLED);
done_testing;
