use strict;
use warnings;

# Security: the admin token on state-changing requests (compared in
# constant time, never needed for reads), the headers every answer
# carries, and the API key absent from everything we control, with nginx
# logging at debug level: error and access logs, every Redis command sent
# during the syncs (MONITOR), every Redis key and value (DUMP too) and
# every response.  Also: request data never becomes a Redis command.

use Test::More;
use POSIX qw(WNOHANG);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;
use Umlo::Users;

my $t = Umlo::Test->new;

my $token = 'adm-' . join '', map { ('a' .. 'z', 0 .. 9)[ rand 36 ] } 1 .. 40;
my $token_file = $t->path('admin.token');
{
    open my $fh, '>', $token_file or die "$token_file: $!";
    print {$fh} "$token\n";
    close $fh;
    chmod 0600, $token_file;
}

my $debug = `${\ Umlo::Test::nginx_bin()} -V 2>&1` =~ /--with-debug/ ? 'debug' : 'info';

start_users_stack($t,
    sim => { users => 80, sites => 2, groups => 8, seed => 9 },
    http => "umlo_admin_token_file $token_file;",
    locations => "location /umlo/bulk { umlo_bulk; }\nlocation /umlo/tasks { umlo_tasks; }",
    nginx => { error_log_level => $debug });

# Redis MONITOR for the whole test: every command any client sends
my $monitor_log = $t->path('monitor.log');
my $monitor = fork // die "fork: $!";
if (!$monitor) {
    open STDOUT, '>', $monitor_log or die;
    open STDERR, '>&', \*STDOUT or die;
    exec 'redis-cli', '-p', $t->redis_port, 'monitor';
    exit 127;
}
ok wait_for(sub { -s $monitor_log || do { $t->redis('PING'); 0 } }, timeout => 10), 'Redis MONITOR runs';

sub sim_ok {
    my ($method, $path, $json) = @_;
    my $r = $t->sim_admin($method, "/__sim/$path", $json);
    die "sim admin $method $path: $r->{status} $r->{body}\n" unless $r->{status} == 200;
    return $r->{json};
}

my %A = (headers => { 'X-Umlo-Admin-Token' => $token });

sub sync_with_token {
    my (%o) = @_;
    my $r = req($t, POST => '/umlo/sync', with_token(), %o);
    return (undef, $r) unless $r->{status} == 202;
    return (wait_sync($t, $r->{json}{id}), $r);
}

sub with_token { my %h = (%{ $A{headers} }, %{ $_[0] || {} }); return (headers => \%h) }

# --------------------------------------------------------------------------

subtest 'umlo_admin_token_file: POST and DELETE need the token' => sub {
    my @wrong = (
        [ 'no token',                    {} ],
        [ 'an empty token',              { 'X-Umlo-Admin-Token' => '' } ],
        [ 'a wrong token, same length',  { 'X-Umlo-Admin-Token' => substr($token, 0, -1) . (substr($token, -1) eq 'a' ? 'b' : 'a') } ],
        [ 'a prefix of the token',       { 'X-Umlo-Admin-Token' => substr($token, 0, 10) } ],
        [ 'the token and one more byte', { 'X-Umlo-Admin-Token' => "${token}x" } ],
        [ 'the token in Authorization',  { Authorization => "Bearer $token" } ],
    );
    for my $c (@wrong) {
        for my $m (qw(POST DELETE)) {
            my $r = req($t, $m => '/umlo/sync', headers => { 'Content-Type' => 'application/json', %{ $c->[1] } });
            is $r->{status}, 401, "$m with $c->[0]: 401";
            json_contains $r->{json}, { error => { status => 401, code => 'unauthorized',
                message => qr/X-Umlo-Admin-Token/ } }, "$m with $c->[0]: says which header";
            unlike $r->{body}, qr/\Q$token\E/, "$m with $c->[0]: the answer does not show the token";
        }
    }
    is status_json($t)->{sync}, undef, 'no sync was started';
    my $r = req($t, GET => '/umlo/status');
    is $r->{status}, 200, 'reads need no token';
    $r = req($t, PUT => '/umlo/sync');
    is $r->{status}, 405, 'a wrong method is still a 405 first';
    $r = req($t, POST => '/umlo/sync', headers => { 'x-umlo-admin-token' => $token,
        'Content-Type' => 'text/plain' });
    is $r->{status}, 415, 'with the token, the content type is still checked';
    my ($st) = sync_with_token();
    is $st && $st->{state}, 'succeeded', 'with the token (any header case): a sync runs and succeeds';
    # nginx's own debug log prints every request header (Authorization
    # too); apart from those lines, the token is in none
    my @lines = grep { /\Q$token\E/ && !/\[debug\] .*http header: "(?:X-Umlo-Admin-Token: |Authorization: Bearer )/i }
        split /\n/, $t->error_log;
    ok !@lines, 'the token is in no log line of the module' or diag(join "\n", @lines[0 .. 2]);
};

subtest 'bulk actions and tasks: the same guard' => sub {
    my @cases = (
        [ POST => '/umlo/bulk', {} ],
        [ POST => '/umlo/tasks', {} ],
        [ POST => '/umlo/tasks/t-0123abcd/run', {} ],
        [ DELETE => '/umlo/tasks/t-0123abcd', {} ],
    );
    for my $c (@cases) {
        my ($m, $p) = @$c;
        my $r = req($t, $m => $p, headers => { 'Content-Type' => 'application/json' }, body => '{}');
        is $r->{status}, 401, "$m $p without the token: 401";
        $r = req($t, $m => $p, headers => { 'Content-Type' => 'text/plain', 'X-Umlo-Admin-Token' => $token },
            body => '{}');
        is $r->{status}, 415, "$m $p as text/plain, with the token: 415";
        json_contains $r->{json}, { error => { code => 'unsupported_media_type' } }, "$m $p: JSON error";
    }
    my $r = req($t, POST => '/umlo/bulk', headers => { 'Content-Type' => 'application/json',
        'X-Umlo-Admin-Token' => $token, 'Content-Length' => 100000 }, body => '{' . (' ' x 99998) . '}');
    is $r->{status}, 413, 'a bulk body over umlo_body_max: 413';
    is req($t, GET => '/umlo/tasks')->{status}, 200, 'reading tasks needs no token';
};

subtest 'the token file is read like the key: warning when world-readable' => sub {
    my $world = $t->path('world.token');
    open my $fh, '>', $world or die;
    print {$fh} "tok\n";
    close $fh;
    chmod 0644, $world;
    my ($rc, $out) = $t->nginx_t(http_config => umlo_http_config("umlo_admin_token_file $world;"),
        config => umlo_locations());
    is $rc, 0, 'nginx -t passes';
    like $out, qr/\[warn\].*umlo_admin_token_file: ".*world\.token" is readable by every user/,
        'with a warning naming the file';
    ($rc, $out) = $t->nginx_t(http_config => umlo_http_config('umlo_admin_token_file '
        . $t->path('missing.token') . ';'), config => umlo_locations());
    isnt $rc, 0, 'a missing token file fails nginx -t';
    like $out, qr/\[emerg\].*umlo_admin_token_file: cannot open/, 'naming the problem';
};

subtest 'every answer: no-store (or no-cache with an ETag), nosniff' => sub {
    my ($uid) = map { $_->{accountId} } v2_users(truth($t));
    for my $p ('/umlo/status', '/umlo/users?limit=2', '/umlo/users/facets', "/umlo/users/$uid",
               '/umlo/users?format=csv', '/umlo/dashboard', '/umlo/users?limit=0', '/umlo/users/nobody') {
        my $r = req($t, GET => $p);
        # the list and the dashboard carry an ETag and must be revalidated
        my $cc = $p =~ m{^/umlo/(?:users\?limit=2|dashboard)$} ? 'no-cache' : 'no-store';
        is $r->{headers}{'cache-control'}, $cc, "$p ($r->{status}): Cache-Control: $cc";
        is $r->{headers}{'x-content-type-options'}, 'nosniff', "$p: X-Content-Type-Options: nosniff";
    }
    my $r = req($t, POST => '/umlo/sync');
    is $r->{status}, 401, 'a 401';
    is $r->{headers}{'x-content-type-options'}, 'nosniff', '401: nosniff too';
};

subtest 'request data never becomes a Redis command' => sub {
    my $keys = $t->redis('DBSIZE');
    for my $p ('/umlo/users/x%20FLUSHALL', '/umlo/users/*', '/umlo/users/x%0D%0AFLUSHALL%0D%0A',
               '/umlo/users?q=%0D%0AFLUSHALL%0D%0A', '/umlo/users?group=*&site=*') {
        my $r = req($t, GET => $p);
        cmp_ok $r->{status}, '<', 500, "$p: $r->{status}";
    }
    my $r = req($t, POST => '/umlo/sync', with_token({ 'Content-Type' => 'application/json' }),
        json => { users => ["x\r\nFLUSHALL\r\n"] });
    is $r->{status}, 400, 'an account id with CR LF: 400';
    is $t->redis('DBSIZE'), $keys, 'Redis still holds every key';
};

subtest 'syncs of every kind, at log level ' . $debug => sub {
    my ($uid) = map { $_->{accountId} } v2_users(truth($t));
    my ($st) = sync_with_token(json => { users => [$uid] });
    is $st && $st->{state}, 'succeeded', 'a selective sync';
    sim_ok(POST => 'config', { latencyMs => 400 });
    my $r = req($t, POST => '/umlo/sync', with_token());
    ok wait_for(sub { status_json($t)->{state} eq 'running' }, timeout => 10), 'a slow sync runs';
    my $d = req($t, DELETE => '/umlo/sync', with_token());
    is $d->{status}, 202, 'and is cancelled';
    wait_sync($t, $r->{json}{id});
    sim_ok(POST => 'config', { latencyMs => 0 });
    sim_ok(POST => 'faults', { keyExpiresAt => '2020-01-01T00:00:00Z' });
    ($st) = sync_with_token();
    is $st && $st->{state}, 'failed', 'a sync with an expired key fails';
    sim_ok(DELETE => 'faults');
    ($st) = sync_with_token();
    is $st && $st->{state}, 'succeeded', 'a full sync';
    for my $p ('/umlo/status', '/umlo/users', '/umlo/users/facets', "/umlo/users/$uid",
               '/umlo/users?format=csv', '/umlo/dashboard') {
        is req($t, GET => $p)->{status}, 200, "$p answers";
    }
    if ($debug eq 'debug') {
        like $t->error_log, qr/\[debug\]/, 'the error log has debug lines';
    }
};

subtest 'the API key is nowhere: logs, Redis commands, keys and values, answers' => sub {
    my $key = $t->api_key;
    kill 'TERM', $monitor;
    waitpid $monitor, 0;
    my $mon = do { local (@ARGV, $/) = $monitor_log; <> } // '';
    cmp_ok length $mon, '>', 10_000, 'MONITOR saw the syncs\' commands (' . length($mon) . ' bytes)';
    like $mon, qr/"HSET"|"hset"|"EVAL"|"eval"/i, '(writes included)';
    unlike $mon, qr/\Q$key\E/, 'no Redis command carried the key';
    unlike $mon, qr/\Q$token\E/, 'nor the admin token';
    my $dump = '';
    for my $k (@{ $t->redis('KEYS', '*') }) {
        $dump .= $k . ($t->redis('DUMP', $k) // '');
    }
    unlike $dump, qr/\Q$key\E/, 'no key or value in Redis (DUMP of each) holds the key';
    my $acc = $t->nginx_instance('main')->{prefix} . '/logs/access.log';
    my $al = do { local (@ARGV, $/) = $acc; <> } // '';
    unlike $al, qr/\Q$token\E/, 'the access log has no admin token';
};

final_checks($t);
done_testing;

END { local $?; kill 'KILL', $monitor if $monitor && !waitpid($monitor, WNOHANG) }
