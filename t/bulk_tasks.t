use strict;
use warnings;

# umlo_tasks: a saved filter + action + schedule.  A run re-reads the
# users its filter matches before acting (a change made just before the
# run is seen), runs as a bulk job, records its result in the task, calls
# the webhook, waits while the org lock is held, and runs once across two
# instances.

use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
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

my $http = join "\n",
    'umlo_tasks_interval 1s;',
    "umlo_tasks_webhook http://127.0.0.1:$hook_port/hook;",
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

$t->start_nginx(http_config => umlo_http_config($http), config => umlo_locations($locations));
my ($st) = run_sync($t);
die "the first sync did not succeed\n" unless $st && $st->{state} eq 'succeeded';

sub user { $t->sim_admin(GET => "org/users/tk-$_[0]")->{json} }
sub in_group { my ($u) = @_; scalar grep { $_ eq $g } @{ user($u)->{groups} } }

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
        [ 'explicit users', { %task, users => ['tk-a'] }, 'unexpected_field', qr/"users"/ ],
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
        schedule => { every => 3600 }, created_by => 'planner', last_run => undef },
        'the task';
    cmp_ok abs($r->{json}{next_run_ms} / 1000 - time - 3600), '<', 30, 'next run in an hour';
    my $list = tasks(GET => '')->{json}{data};
    is_deeply [ map { $_->{id} } @$list ], [$id], 'listed';
    is tasks(GET => "/$id")->{json}{name}, 'reclaim', 'read back';
};

subtest 'a run re-reads its users first, then acts like a bulk job' => sub {
    # just before the run: c leaves the group, b is suspended; the
    # snapshot still has both as they were
    sim_ok(POST => "groups/$g/members", { remove => ['tk-c'] });
    sim_ok(POST => 'users/tk-b/suspend');

    my $r = tasks(POST => "/$id/run");
    is $r->{status}, 202, 'run now: 202';
    my $task = wait_run($id);
    ok $task && $task->{last_run}, 'the task ran' or return;
    is $task->{last_run}{state}, 'succeeded', 'succeeded' or diag explain $task;
    my $job = req($t, GET => "/umlo/bulk/jobs/$task->{last_run}{job}")->{json};
    is_deeply [ sort map { $_->{id} } @{ $job->{users} } ], [qw(tk-a tk-b tk-d)],
        'c, out of the group in Atlassian, is no longer matched';
    is_deeply [ map { $_->{outcome} } @{ $job->{users} } ], [qw(done done done)], 'all done';
    ok $job->{data}{presynced}, 'the job says its users were re-read';
    is $job->{requested_by}, 'task:reclaim', 'who: the task';
    json_contains $job->{task}, { id => $id, name => 'reclaim' }, 'which task';
    ok !in_group($_), "$_ out of the group" for qw(a b d);
    cmp_ok abs($task->{next_run_ms} / 1000 - time - 3600), '<', 30, 'next run in an hour';
    my ($ev) = grep { $_->{task} eq $id } hook_events();
    json_contains $ev, { event => 'task.completed', name => 'reclaim',
        job => $task->{last_run}{job}, counts => { done => 3 } }, 'webhook task.completed';
    like $task->{last_run}{webhook}, qr/^HTTP 200$/, 'the webhook answer is recorded';
    my $snap = decode_json($t->redis('HGET', org_key($t, 'g', current_gen($t), 'users'), 'tk-c'));
    ok !grep({ $_->{id} eq $g } @{ $snap->{groups} }), 'the pre-sync updated c in the snapshot';
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
    is scalar(grep { $_->{task} eq $once } hook_events()), 1, 'one webhook';
    is user('a')->{membershipStatus}, 'suspended', 'a suspended';
    like $task->{next_run_at}, qr/T03:00:00Z$/, 'next run at 03:00 UTC';
};

subtest 'a notice period: users are acted on once matched long enough' => sub {
    sim_ok(POST => 'users', { users => [ map { {
        accountId => "tk-n$_", name => "Noticeuser $_", email => "n$_\@task.example.com" } } 1 .. 2 ] });
    run_sync($t, json => { users => [ 'tk-n1', 'tk-n2' ] });
    my $r = tasks(POST => '', { name => 'notice', filter => 'q=noticeuser', action => 'suspend',
        schedule => { every => '1h' }, notice => '3s' });
    is $r->{status}, 201, 'created' or diag $r->{body};
    is $r->{json}{notice}, 3, 'notice in seconds';
    my $nid = $r->{json}{id};
    tasks(POST => "/$nid/run");
    my $task = wait_run($nid);
    json_contains $task->{last_run}, { state => 'succeeded', notice => { new => 2, waiting => 0, due => 0 },
        counts => { targets => 0 } }, 'first run: both noticed, nobody acted on';
    is user('n1')->{membershipStatus}, 'active', 'n1 untouched';
    my ($ev) = grep { $_->{task} eq $nid } hook_events();
    json_contains $ev, { notice => { new => 2 } }, 'the webhook says who was noticed';

    tasks(POST => "/$nid/run");
    $task = wait_run($nid, $task->{last_run}{job});
    json_contains $task->{last_run}{notice}, { new => 0, waiting => 2, due => 0 }, 'too early: waiting';

    sleep 3.2;
    tasks(POST => "/$nid/run");
    $task = wait_run($nid, $task->{last_run}{job});
    json_contains $task->{last_run}, { notice => { due => 2 }, counts => { done => 2 } },
        'after the notice: acted on';
    is user($_)->{membershipStatus}, 'suspended', "$_ suspended" for qw(n1 n2);
    is tasks(DELETE => "/$nid")->{status}, 200, 'deleted';
    ok !$t->redis('EXISTS', org_key($t, 'tasks', 'notice', $nid)), 'its notice list too';
};

subtest 'delete' => sub {
    my $r = tasks(DELETE => "/$id");
    is $r->{status}, 200, 'deleted';
    is tasks(GET => "/$id")->{status}, 404, 'gone';
    is tasks(DELETE => "/$id")->{status}, 404, 'twice: 404';
    ok !defined $t->redis('ZSCORE', org_key($t, 'tasks', 'due'), $id), 'no longer scheduled';
};

final_checks($t, names => [qw(main second)]);

done_testing;
