use strict;
use warnings;

# The Redis ACL that docs/operations.md recommends is enough: with the
# default user limited to the module's keys and commands (and a password
# from umlo_redis password_file=), full, repeated, selective and cancelled
# syncs, the browser and the dashboard all work and nothing is refused.
# A command the module starts to use must be added to the list below and
# to docs/operations.md.

use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;
use Umlo::Users;
use Umlo::Webhook;
use POSIX qw(strftime);

# keep in step with "Redis ACL" in docs/operations.md
my @COMMANDS = qw(auth select eval get set del unlink hget hmget hlen hscan
    hvals hset hdel hincrby hgetall lpush rpush lpop ltrim lrange multi exec
    incr pexpire pttl zadd zrangebyscore zrem hexists);

my $doc = do { local (@ARGV, $/) = 'docs/operations.md'; <> };
for my $c (@COMMANDS) {
    like $doc, qr/\+\Q$c\E\b/, "docs/operations.md grants +$c";
}

my $t = Umlo::Test->new;
$t->start_redis;
my $pw = 'umlo-acl-' . $t->api_key;
my $pass = $t->path('redis.pass');
open my $fh, '>', $pass or die "$pass: $!";
print {$fh} "$pw\n";
close $fh;
chmod 0600, $pass;

# the harness itself works as another user, with every right
$t->redis('ACL', 'SETUSER', 'umlo-test-admin', 'on', ">admin-$pw", '~*', '&*', '+@all');
$t->redis('AUTH', 'umlo-test-admin', "admin-$pw");
is $t->redis('ACL', 'SETUSER', 'default', 'on', ">$pw", 'resetkeys', '~umlo:*',
    'resetchannels', '-@all', map { "+$_" } @COMMANDS), 'OK', 'ACL set';

$t->start_sim(profile => 'fast', users => 60, sites => 2, groups => 5, seed => 4);
my $rx = Umlo::Webhook->start($t);
my $soon = strftime('%Y-%m-%d', gmtime(time + 3 * 86400));
$t->start_nginx(
    http_config => join("\n",
        "umlo_redis \$UMLO_REDIS password_file=$pass;",
        'umlo_api_base $UMLO_SIM;', 'umlo_org $UMLO_ORG;',
        'umlo_api_key_file $UMLO_KEY_FILE;', 'umlo_thread_pool umlo;',
        'umlo_sync_grace 1s;', 'umlo_tasks_interval 1s;',
        "umlo_api_key_expires $soon;",
        'umlo_webhook ' . $rx->url('/ok') . ';'),
    config => join("\n", umlo_locations(), users_locations(),
        'location /umlo/bulk { umlo_bulk; }', 'location /umlo/tasks { umlo_tasks; }',
        'location = /umlo/history { umlo_history; }',
        'location = /umlo/metrics { umlo_metrics; }'),
);

for my $n (1 .. 3) {
    my ($st) = run_sync($t);
    is $st && $st->{state}, 'succeeded', "full sync $n succeeds"
        or diag encode_json($st && $st->{sync});
    sleep 1.2;    # past umlo_sync_grace: the next sync drops a generation
}

my $users = req($t, GET => '/umlo/users?limit=2');
is $users->{status}, 200, 'users: 200';
my $id = $users->{json} && $users->{json}{data}[0]{id};
my ($st) = run_sync($t, json => { users => [ $id, 'gone-user-1' ] });
my $r;
is $st && $st->{state}, 'succeeded', 'selective sync succeeds';

for my $path ('/umlo/users?status=active', "/umlo/users/$id", '/umlo/users/facets',
              '/umlo/dashboard', '/umlo/status', '/umlo/history', '/umlo/metrics') {
    is req($t, GET => $path)->{status}, 200, "$path: 200";
}

# bulk jobs and tasks
my $dry = req($t, POST => '/umlo/bulk', json => { action => 'suspend', users => [$id],
    dry_run => JSON::PP::true });
is $dry->{status}, 200, 'bulk dry run: 200' or diag $dry->{body};
$r = req($t, POST => '/umlo/bulk', json => { token => $dry->{json}{token} // '' });
is $r->{status}, 202, 'bulk job from the token: 202' or diag $r->{body};
ok wait_for(sub { (req($t, GET => "/umlo/bulk/jobs/$r->{json}{id}")->{json}{state} // '')
    eq 'succeeded' }, timeout => 30), 'the job succeeds';
is req($t, GET => "/umlo/bulk/$_")->{status}, 200, "bulk $_: 200" for qw(audit audit?format=csv);
$r = req($t, POST => '/umlo/tasks', json => { name => 'acl', filter => "q=$id",
    action => 'restore', schedule => { every => '1h' }, notice => '1s' });
is $r->{status}, 201, 'task created' or diag $r->{body};
my $task = $r->{json}{id} // '';
is req($t, POST => "/umlo/tasks/$task/run")->{status}, 202, 'task run: 202';
ok wait_for(sub { (req($t, GET => "/umlo/tasks/$task")->{json}{last_run}{state} // '')
    eq 'succeeded' }, timeout => 30), 'the task run succeeds';
is req($t, GET => '/umlo/tasks')->{status}, 200, 'tasks: 200';
is req($t, DELETE => "/umlo/tasks/$task")->{status}, 200, 'task deleted';

$t->sim_admin(POST => 'config', { latencyMs => 800 });
$r = req($t, POST => '/umlo/sync');
is $r->{status}, 202, 'a slow sync starts';
ok wait_for(sub { status_json($t)->{state} eq 'running' }, timeout => 10), 'running';
is req($t, DELETE => '/umlo/sync')->{status}, 202, 'DELETE: 202';
$st = wait_sync($t, $r->{json}{id});
is $st && $st->{state}, 'cancelled', 'cancelled';
$t->sim_admin(POST => 'config', { latencyMs => 0 });

ok wait_for(sub { @{ $rx->received('/ok', 'key.expiring') } == 1 }, timeout => 10),
    'the key.expiring claim works';
ok wait_for(sub { my $h = req($t, GET => '/umlo/history')->{json}; $h && @{ $h->{deliveries} } >= 8 },
    timeout => 10), 'webhook outcomes are recorded';
like req($t, GET => '/umlo/metrics')->{body}, qr/^umlo_redis_up 1$/m, 'metrics read Redis';

$t->assert_no_error_log(qr/NOPERM|NOAUTH|WRONGPASS|refused|failed at|unavailable/i,
    desc => 'Redis refused no command');
my @bad = grep { /redis_unavailable|NOPERM/ } @Umlo::Sync::RESPONSES;
ok !@bad, 'no answer says Redis refused something' or diag $bad[0];
final_checks($t);

done_testing;
