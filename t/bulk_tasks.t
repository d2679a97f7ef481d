use strict;
use warnings;

# umlo_tasks: a saved filter (or list of users) + action + schedule.  A
# filter's run syncs the whole org first (a user who newly matches after a
# change made just before the run is acted on), a list's run re-reads only
# its users; then it runs as a bulk job, records its result in the task,
# sends task.completed / task.failed, waits while the org lock is held, runs once across
# two instances, and keeps a notice period.

use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);
use JSON::PP ();
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;

my $t = Umlo::Test->new;

# a webhook receiver: one JSON body per line in hooks.log
my $hooks = $t->path('hooks.log');
my $listen = IO::Socket::INET->new(Listen => 16, LocalAddr => '127.0.0.1', LocalPort => 0,
    Proto => 'tcp', ReuseAddr => 1) or die "listen: $!";
my $hook_port = $listen->sockport;
my $hook_pid = fork // die "fork: $!";
if ($hook_pid == 0) {
    local $SIG{ALRM} = sub { exit 0 };
    alarm 600;
    while (my $c = $listen->accept) {
        my ($len, $line) = (0);
        while (defined($line = <$c>)) {
            $len = $1 if $line =~ /^content-length:\s*(\d+)/i;
            last if $line =~ /^\r?\n$/;
        }
        my $body = '';
        read $c, $body, $len;
        open my $fh, '>>', $hooks or exit 1;
        print $fh "$body\n";
        close $fh;
        print $c "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        close $c;
    }
    exit 0;
}
close $listen;
END { kill 'TERM', $hook_pid if $hook_pid }

sub hook_events {
    open my $fh, '<', $hooks or return ();
    return map { decode_json($_) } grep { /\S/ } <$fh>;
}

# the task events of one task: {id, event, timestamp, org, task => {...}}
sub task_events {
    my ($id) = @_;
    return grep { ref $_->{task} eq 'HASH' && ($_->{task}{id} // '') eq $id } hook_events();
}

my $http = join "\n",
    'umlo_tasks_interval 1s;',
    "umlo_webhook http://127.0.0.1:$hook_port/hook events=task.completed,task.failed;",
    "umlo_webhook http://127.0.0.1:$hook_port/sync events=sync.succeeded,sync.failed;",
    'umlo_bulk_actor $http_x_umlo_admin;';
my $locations = join "\n",
    'location /umlo/users { umlo_users; }',
    'location /umlo/bulk { umlo_bulk; }',
    'location /umlo/tasks { umlo_tasks; }';

$t->start_redis;
$t->start_sim(profile => 'fast', users => 20, sites => 2, groups => 3, seed => 9);

sub sim_ok {
    my ($method, $path, $json) = @_;
    my $r = $t->sim_admin($method, $path, $json);
    die "$method /__sim/$path answered $r->{status}: $r->{body}\n" unless $r->{status} == 200;
    return $r->{json};
}

my $g = sim_ok(POST => 'groups', { name => 'task-group' })->{id};
sim_ok(POST => 'users', { users => [ map { {
    accountId => "tk-$_", name => "Taskuser \u$_", email => "$_\@task.example.com",
    groups => ['task-group'] } } qw(a b c d) ] });
sim_ok(POST => 'users', { users => [ { accountId => 'tk-e', name => 'Taskuser E',
    email => "e\@task.example.com" } ] });

$t->start_nginx(http_config => umlo_http_config($http), config => umlo_locations($locations));
my ($st) = run_sync($t);
die "the first sync did not succeed\n" unless $st && $st->{state} eq 'succeeded';

sub user { $t->sim_admin(GET => "org/users/tk-$_[0]")->{json} }
sub in_group { my ($u) = @_; scalar grep { $_ eq $g } @{ user($u)->{groups} } }

# "2026-01-02T03:04:05Z" in seconds
sub str_time {
    my @f = ($_[0] // '') =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z$/ or return undef;
    return timegm($f[5], $f[4], $f[3], $f[2], $f[1] - 1, $f[0]);
}

sub tasks {
    my ($method, $path, $json, %o) = @_;
    return req($t, $method => "/umlo/tasks$path", (defined $json ? (json => $json) : ()),
        name => $o{name}, headers => { 'X-Umlo-Admin' => 'planner' });
}

# waits until the task's last_run is a new one; returns the task
sub wait_run {
    my ($id, $prev, %o) = @_;
    my $task;
    wait_for(sub {
        $task = tasks(GET => "/$id")->{json};
        my $job = $task && $task->{last_run} && $task->{last_run}{job};
        return $job && (!defined $prev || $job ne $prev);
    }, timeout => $o{timeout} // 20, interval => 0.2);
    return $task;
}

my %task = (name => 'reclaim', filter => 'q=taskuser&group=task-group',
            action => 'remove_from_group', group => 'task-group', schedule => { every => '1h' });

subtest 'bad input' => sub {
    my @cases = (
        [ 'no name', { %task, name => undef }, 'missing_field', qr/"name"/ ],
        [ 'no filter', { map { $_ => $task{$_} } grep { $_ ne 'filter' } keys %task },
          'missing_field', qr/"filter"/ ],
        [ 'bad schedule', { %task, schedule => { every => '5s' } }, 'invalid_schedule' ],
        [ 'bad daily', { %task, schedule => { daily => '25:00' } }, 'invalid_schedule' ],
        [ 'two schedules', { %task, schedule => { daily => '03:00', every => '1h' } },
          'invalid_schedule' ],
        [ 'users and a filter', { %task, users => ['tk-a'] }, 'invalid_target', qr/"users"/ ],
        [ 'a dry run', { %task, dry_run => JSON::PP::true }, 'unexpected_field', qr/"dry_run"/ ],
        [ 'bad action', { %task, action => 'nuke' }, 'invalid_action' ],
        [ 'filter paging', { %task, filter => 'limit=3' }, 'invalid_filter' ],
    );
    for my $c (@cases) {
        my ($what, $body, $code, $msg) = @$c;
        delete $body->{name} unless defined $body->{name};
        my $r = tasks(POST => '', $body);
        is $r->{status}, 400, "$what: 400";
        json_contains $r->{json}, { error => { code => $code, ($msg ? (message => $msg) : ()) } },
            "$what: $code" or diag $r->{body};
    }
    my $r = tasks(POST => '', { %task, schedule => { every => '59m' } });
    is $r->{status}, 400, 'a filter task more often than umlo_tasks_filter_min_every: 400';
    json_contains $r->{json}, { error => { code => 'invalid_schedule',
        message => qr/"schedule\.every" must be at least 3600 seconds for a "filter" task/ } },
        'naming the field and the minimum' or diag $r->{body};
    $r = tasks(POST => '', { %task, schedule => { daily => '04:00' } });
    is $r->{status}, 201, 'a daily filter task is fine' or diag $r->{body};
    is tasks(DELETE => "/$r->{json}{id}")->{status}, 200, 'deleted';
    $r = tasks(POST => '', { name => 'often', users => ['tk-a'], action => 'suspend',
        schedule => { every => '60s' } });
    is $r->{status}, 201, 'a list of users may run every 60s' or diag $r->{body};
    is tasks(DELETE => "/$r->{json}{id}")->{status}, 200, 'deleted';
    is tasks(GET => '/t-0123')->{status}, 404, 'unknown task: 404';
    is tasks(POST => '/t-0123/run')->{status}, 404, 'run an unknown task: 404';
    is tasks(PUT => '/t-0123')->{status}, 405, 'PUT: 405';
};

my $id;

subtest 'create, list, read' => sub {
    my $r = tasks(POST => '', \%task);
    is $r->{status}, 201, 'created' or diag $r->{body};
    $id = $r->{json}{id};
    like $id, qr/^t-[0-9a-f]{16}$/, 'an id';
    json_contains $r->{json}, { name => 'reclaim', action => 'remove_from_group',
        params => { group => 'task-group' }, filter => $task{filter},
        schedule => { every => 3600 }, created_by => 'planner', last_run => undef,
        presync => 'full' }, 'the task: a filter needs a full sync first';
    cmp_ok abs($r->{json}{next_run_ms} / 1000 - time - 3600), '<', 30, 'next run in an hour';
    my $list = tasks(GET => '')->{json}{data};
    is_deeply [ map { $_->{id} } @$list ], [$id], 'listed';
    is tasks(GET => "/$id")->{json}{name}, 'reclaim', 'read back';
};

subtest 'a run syncs the org first, then acts like a bulk job' => sub {
    # just before the run: c leaves the group, b is suspended, e joins it;
    # the snapshot still has all three as they were
    sim_ok(POST => "groups/$g/members", { remove => ['tk-c'] });
    sim_ok(POST => 'users/tk-b/suspend');
    sim_ok(POST => "groups/$g/members", { add => ['tk-e'] });
    my $gen = current_gen($t);

    my $r = tasks(POST => "/$id/run");
    is $r->{status}, 202, 'run now: 202';
    my $task = wait_run($id);
    ok $task && $task->{last_run}, 'the task ran' or return;
    is $task->{last_run}{state}, 'succeeded', 'succeeded' or diag explain $task;
    my $job = req($t, GET => "/umlo/bulk/jobs/$task->{last_run}{job}")->{json};
    is_deeply [ sort map { $_->{id} } @{ $job->{users} } ], [qw(tk-a tk-b tk-d tk-e)],
        'c, out of the group in Atlassian, is no longer matched; e, newly in it, is';
    is_deeply [ map { $_->{outcome} } @{ $job->{users} } ], [qw(done done done done)], 'all done';
    ok $job->{data}{presynced}, 'the job says its data was synced just before';
    cmp_ok current_gen($t), '>', $gen, 'a new generation: the whole org was synced';
    is $job->{data}{generation}, current_gen($t), 'the job ran on it';
    json_contains $task->{last_run}{sync}, { state => 'succeeded' }, 'last_run names the sync';
    my ($hist) = grep { $_->{id} eq $task->{last_run}{sync}{id} }
        map { decode_json($_) } @{ $t->redis('LRANGE', org_key($t, 'history'), 0, -1) };
    json_contains $hist, { trigger => 'task', state => 'succeeded' },
        'a sync like any other, triggered by the task' or diag explain $hist;
    my ($sev) = grep { $_->{event} eq 'sync.succeeded' && $_->{sync}{id} eq $hist->{id} }
        hook_events();
    json_contains $sev, { sync => { trigger => 'task', task => { id => $id } } },
        'its sync.succeeded webhook' or diag explain [ hook_events() ];
    is $job->{requested_by}, 'task:reclaim', 'who: the task';
    json_contains $job->{task}, { id => $id, name => 'reclaim' }, 'which task';
    ok !in_group($_), "$_ out of the group" for qw(a b d e);
    cmp_ok abs($task->{next_run_ms} / 1000 - time - 3600), '<', 30, 'next run in an hour';
    my $ev;
    wait_for(sub { ($ev) = task_events($id) }, timeout => 10, interval => 0.2);
    json_contains $ev, { event => 'task.completed', org => $t->org, task => { name => 'reclaim',
        job => $task->{last_run}{job}, counts => { done => 4 },
        sync => { id => $task->{last_run}{sync}{id} } } }, 'webhook task.completed'
        or diag explain [ hook_events() ];
    my $d;
    wait_for(sub {
        ($d) = grep { $_->{id} eq ($ev->{id} // '') }
            map { decode_json($_) } @{ $t->redis('LRANGE', org_key($t, 'deliveries'), 0, -1) };
        $d
    }, timeout => 10, interval => 0.2);
    json_contains $d, { event => 'task.completed', status => 'delivered', http_status => 200,
        sync_id => $task->{last_run}{sync}{id} }, 'its outcome in the deliveries log' or diag explain $d;
    ok !exists $task->{last_run}{webhook}, 'the run does not wait for the answer';
    my $snap = decode_json($t->redis('HGET', org_key($t, 'g', current_gen($t), 'users'), 'tk-c'));
    ok !grep({ $_->{id} eq $g } @{ $snap->{groups} }), 'the sync updated c in the snapshot';
};

subtest 'a list of users: only they are re-read, no full sync' => sub {
    # d is back in the group in Atlassian, not in the snapshot
    sim_ok(POST => "groups/$g/members", { add => ['tk-d'] });
    my $gen = current_gen($t);
    my $r = tasks(POST => '', { name => 'listed', users => [qw(tk-d tk-e)],
        action => 'add_to_group', group => 'task-group', schedule => { every => '1h' } });
    is $r->{status}, 201, 'created' or diag $r->{body};
    json_contains $r->{json}, { users => [qw(tk-d tk-e)], presync => 'users' }, 'a list needs only its users';
    ok !exists $r->{json}{filter}, 'no filter';
    my $lid = $r->{json}{id};
    tasks(POST => "/$lid/run");
    my $task = wait_run($lid);
    is $task->{last_run}{state}, 'succeeded', 'succeeded' or diag explain $task;
    ok !exists $task->{last_run}{sync}, 'no sync';
    is current_gen($t), $gen, 'the same generation';
    my $job = req($t, GET => "/umlo/bulk/jobs/$task->{last_run}{job}")->{json};
    my %out = map { $_->{id} => $_->{outcome} } @{ $job->{users} };
    is_deeply \%out, { 'tk-d' => 'no_change', 'tk-e' => 'done' },
        'd re-read first: already in the group; e added' or diag explain $job->{users};
    ok in_group('e'), 'e in the group';
    is tasks(DELETE => "/$lid")->{status}, 200, 'deleted';
};

subtest 'the org lock held: the run waits' => sub {
    $t->redis('SET', org_key($t, 'lock'), 'a-sync', 'PX', 30000);
    sim_ok(POST => "groups/$g/members", { add => ['tk-a'] });
    my $prev = tasks(GET => "/$id")->{json}{last_run}{job};
    tasks(POST => "/$id/run");
    my $task = wait_run($id, $prev);
    is $task->{last_run}{state}, 'postponed', 'postponed';
    like $task->{last_run}{error}, qr/org lock/, 'saying why';
    cmp_ok abs($task->{next_run_ms} / 1000 - time - 60), '<', 10, 'tried again in a minute';
    ok in_group('a'), 'nothing done';
    $t->redis('DEL', org_key($t, 'lock'));
};

subtest 'two instances run a task once' => sub {
    $t->start_nginx(name => 'second', http_config => umlo_http_config($http),
        config => umlo_locations($locations));
    my %once = (%task, name => 'once', action => 'suspend',
        filter => 'q=taskuser&status=active', schedule => { daily => '03:00' });
    delete $once{group};
    my $r = tasks(POST => '', \%once);
    is $r->{status}, 201, 'created' or diag $r->{body};
    my $once = $r->{json}{id};
    tasks(POST => "/$once/run", undef, name => 'second');
    my $task = wait_run($once);
    is $task->{last_run}{state}, 'succeeded', 'ran' or diag explain $task;
    sleep 3;    # both instances look at least twice more meanwhile
    my @jobs = grep { ($_->{id} // '') =~ /^b-/ && $_->{who} eq 'task:once' }
        @{ req($t, GET => '/umlo/bulk/audit')->{json}{data} };
    is scalar @jobs, 1, 'one job in the audit log';
    is scalar(task_events($once)), 1, 'one webhook';
    is user('a')->{membershipStatus}, 'suspended', 'a suspended';
    like $task->{next_run_at}, qr/T03:00:00Z$/, 'next run at 03:00 UTC';
};

subtest 'a notice period: users are acted on once matched long enough' => sub {
    sim_ok(POST => 'users', { users => [ map { {
        accountId => "tk-n$_", name => "Noticeuser $_", email => "n$_\@task.example.com" } } 1 .. 3 ] });
    my $r = tasks(POST => '', { name => 'notice', filter => 'q=noticeuser&status=active',
        action => 'suspend', schedule => { every => '1h' }, notice => '8s' });
    is $r->{status}, 201, 'created' or diag $r->{body};
    is $r->{json}{notice}, 8, 'notice in seconds';
    my $nid = $r->{json}{id};
    tasks(POST => "/$nid/run");
    my $task = wait_run($nid);
    json_contains $task->{last_run}, { state => 'succeeded', notice => { new => 3, waiting => 0, due => 0 },
        counts => { targets => 0 } }, 'first run: all three noticed, nobody acted on';
    is user('n1')->{membershipStatus}, 'active', 'n1 untouched';
    my $ev;
    wait_for(sub { ($ev) = task_events($nid) }, timeout => 10, interval => 0.2);
    json_contains $ev, { task => { notice => { new => 3 } } }, 'the webhook counts who was noticed';
    is_deeply [ sort map { $_->{id} } @{ $ev->{task}{notice}{noticed} } ], [qw(tk-n1 tk-n2 tk-n3)],
        'and names them';
    my $list = tasks(GET => "/$nid/notice");
    is $list->{status}, 200, 'the notice list' or diag $list->{body};
    json_contains $list->{json}, { task => $nid, notice => 8 }, 'of this task';
    is_deeply [ sort map { $_->{id} } @{ $list->{json}{data} } ], [qw(tk-n1 tk-n2 tk-n3)], 'all three';
    for my $n (@{ $list->{json}{data} }) {
        my ($at, $due) = map { str_time($_) } @$n{qw(noticed_at due_at)};
        ok defined $at && abs($at - time) < 30, "$n->{id}: noticed now" or diag explain $n;
        is $due - $at, 8, "$n->{id}: due after the notice";
    }
    is tasks(POST => "/$nid/notice")->{status}, 405, 'the list is read only';
    is tasks(GET => '/t-0123/notice')->{status}, 404, 'an unknown task: 404';

    # n3 no longer matches: off the list, and not acted on when due
    sim_ok(POST => 'users/tk-n3/suspend');

    tasks(POST => "/$nid/run");
    $task = wait_run($nid, $task->{last_run}{job});
    json_contains $task->{last_run}{notice}, { new => 0, waiting => 2, due => 0 }, 'too early: waiting';
    is_deeply [ sort map { $_->{id} } @{ tasks(GET => "/$nid/notice")->{json}{data} } ],
        [qw(tk-n1 tk-n2)], 'n3, no longer matched, is off the list';

    # until the notice has run out (the run itself starts later still)
    my $due = str_time($list->{json}{data}[0]{due_at});
    sleep $due + 1.1 - time if $due + 1.1 > time;
    tasks(POST => "/$nid/run");
    $task = wait_run($nid, $task->{last_run}{job});
    json_contains $task->{last_run}, { notice => { due => 2 }, counts => { targets => 2, done => 2 } },
        'after the notice: acted on';
    is user($_)->{membershipStatus}, 'suspended', "$_ suspended" for qw(n1 n2);
    my $job = req($t, GET => "/umlo/bulk/jobs/$task->{last_run}{job}")->{json};
    is_deeply [ sort map { $_->{id} } @{ $job->{users} } ], [qw(tk-n1 tk-n2)], 'not n3';
    is tasks(DELETE => "/$nid")->{status}, 200, 'deleted';
    ok !$t->redis('EXISTS', org_key($t, 'tasks', 'notice', $nid)), 'its notice list too';
};

subtest 'a failed full sync fails the run, and nothing is done' => sub {
    ok in_group('a'), 'a is in the group (since the postponed run)';
    sim_ok(POST => 'faults', { keyExpiresAt => '2020-01-01T00:00:00Z' });
    my $prev = tasks(GET => "/$id")->{json}{last_run}{job};
    tasks(POST => "/$id/run");
    my $task = wait_run($id, $prev);
    sim_ok(DELETE => 'faults');
    is $task->{last_run}{state}, 'failed', 'failed' or diag explain $task;
    json_contains $task->{last_run}{sync}, { state => 'failed' }, 'the sync failed';
    like $task->{last_run}{error}, qr/full sync \S+ failed before the run: .*key/i, "saying why"
        or diag $task->{last_run}{error};
    ok in_group('a'), 'nothing done';
    ok !$t->redis('EXISTS', org_key($t, 'lock')), 'the org lock is free';
    my $ev;
    wait_for(sub { ($ev) = grep { $_->{task}{state} eq 'failed' } task_events($id) },
        timeout => 10, interval => 0.2);
    json_contains $ev, { event => 'task.failed', task => { sync => { state => 'failed' } } },
        'webhook task.failed';
    ok scalar(grep { $t->error_log($_) =~ /umlo: task sync \S+ failed/ } qw(main second)),
        'the failure is logged by the instance that ran it';
};

subtest 'delete' => sub {
    my $r = tasks(DELETE => "/$id");
    is $r->{status}, 200, 'deleted';
    is tasks(GET => "/$id")->{status}, 404, 'gone';
    is tasks(DELETE => "/$id")->{status}, 404, 'twice: 404';
    ok !defined $t->redis('ZSCORE', org_key($t, 'tasks', 'due'), $id), 'no longer scheduled';
};

# the webhook is a place the key must not reach either
my $hook_text = -f $hooks ? do { local (@ARGV, $/) = $hooks; <> } // '' : '';
ok length($hook_text) && index($hook_text, $t->api_key) < 0,
    'the API key is in no webhook body (' . length($hook_text) . ' bytes checked)';

final_checks($t, names => [qw(main second)]);

done_testing;
