use strict;
use warnings;

# umlo_status: the idle document, methods, HEAD, Redis outages and that
# every worker gives the same answer.

use Test::More;
use Time::HiRes qw(time);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for free_port);
use Umlo::Sync;

my $t = Umlo::Test->new;
my $rp_port = free_port();

# A second server with "reuseport": the kernel spreads its connections over
# both workers, so "every worker answers the same" can be checked.
start_stack($t,
    sim  => { users => 40, sites => 2, groups => 8, seed => 3 },
    http => q{
        umlo_redis_timeout 1s;
        log_format umlo_pid '$pid $status $request_method';
        server {
            listen 127.0.0.1:$UMLO_RP_PORT reuseport;
            access_log logs/pid.log umlo_pid;
            location = /umlo/status { umlo_status; }
        }
    },
    nginx => { vars => { UMLO_RP_PORT => $rp_port } },
);

my $org = $t->org;

subtest 'idle status before any sync' => sub {
    my $r = req($t, GET => '/umlo/status');
    is $r->{status}, 200, 'GET answers 200';
    like $r->{headers}{'content-type'}, qr{^application/json\b}, 'content type is JSON';
    is $r->{headers}{'cache-control'}, 'no-store', 'not cacheable';
    json_contains $r->{json}, {
        org => $org, state => 'idle', running => JSON::PP::false,
        sync => undef, snapshot => undef,
    }, 'idle document';
    is_deeply [ sort keys %{ $r->{json} } ], [qw(org running snapshot state sync)],
        'exactly the documented fields';

    my $q = req($t, GET => '/umlo/status?verbose=1&x=%ff');
    is $q->{status}, 200, 'a query string does not matter';
    is $q->{body}, $r->{body}, 'same document with a query string';
};

subtest 'HEAD' => sub {
    my $g = req($t, GET => '/umlo/status');
    my $h = req($t, HEAD => '/umlo/status');
    is $h->{status}, 200, 'HEAD answers 200';
    is $h->{body}, '', 'no body';
    like $h->{headers}{'content-type'}, qr{^application/json\b}, 'JSON content type';
    is $h->{headers}{'content-length'}, length($g->{body}), 'Content-Length of the GET body';
};

subtest 'other methods: 405 with Allow' => sub {
    for my $m (qw(POST PUT DELETE PATCH OPTIONS)) {
        my $r = req($t, $m => '/umlo/status', body => '{"a":1}',
            headers => { 'Content-Type' => 'application/json' });
        is $r->{status}, 405, "$m answers 405";
        is $r->{headers}{allow}, 'GET, HEAD', "$m: Allow: GET, HEAD";
        json_contains $r->{json}, { error => { status => 405, code => 'method_not_allowed',
            message => qr/\Q$m\E.*GET, HEAD/ } }, "$m: JSON error";
    }
};

subtest '405 consumes the request body (keep-alive stays in sync)' => sub {
    # The body of a refused request must be read and dropped; otherwise it
    # is parsed as the next request on the connection.
    my $inner = "GET /smuggled HTTP/1.1\r\nHost: inner\r\n\r\n";
    my $out = raw_http($t->nginx_port,
        "POST /umlo/status HTTP/1.1\r\nHost: a\r\nContent-Length: " . length($inner)
        . "\r\n\r\n$inner"
        . "GET /umlo/status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    my @codes = $out =~ m{^HTTP/1\.1 (\d{3})}mg;
    is "@codes", '405 200', 'two responses: 405 for the POST, 200 for the GET; the body is not a request';
};

subtest 'every worker gives the same answer' => sub {
    # a finished sync makes the document non-trivial
    my ($st) = run_sync($t);
    is $st && $st->{state}, 'succeeded', 'a sync succeeded';

    my $log = $t->nginx_instance('main')->{prefix} . '/logs/pid.log';
    my (%bodies, %pids);
    for my $i (1 .. 120) {
        my $r = req($t, GET => '/umlo/status', port => $rp_port);
        $bodies{ $r->{status} . ' ' . $r->{body} }++;
    }
    open my $fh, '<', $log or die "$log: $!";
    while (<$fh>) { $pids{$1}++ if /^(\d+) 200 GET/ }
    my (undef, @workers) = $t->nginx_pids;
    cmp_ok scalar(keys %pids), '>=', 2, 'requests were served by both workers'
        or diag explain \%pids;
    is scalar(keys %bodies), 1, '120 requests, one identical answer'
        or diag explain [ keys %bodies ];
    my ($only) = keys %bodies;
    like $only, qr/^200 /, 'and it is a 200';
    my $main = req($t, GET => '/umlo/status');
    is "200 $main->{body}", $only, 'the other server answers the same';
};

subtest 'Redis down: 503, then recovery' => sub {
    my $before = req($t, GET => '/umlo/status')->{json};
    $t->stop_redis;
    my $mark = $t->error_log_mark;

    # requests keep coming for a while: reconnection is attempted at most
    # once per second per worker, not once per request
    my %seen;
    my $t0 = time;
    my $n = 0;
    while (time - $t0 < 2.5) {
        my $r = req($t, GET => '/umlo/status');
        $n++;
        $seen{ $r->{status} }++;
        if ($r->{status} == 503 && !$seen{checked}++) {
            like $r->{headers}{'content-type'}, qr{^application/json\b}, '503 is JSON';
            json_contains $r->{json}, { error => { status => 503, code => 'redis_unavailable',
                message => qr/redis/i } }, '503 names the problem';
        }
        my $h = req($t, HEAD => '/umlo/status');
        $seen{"head $h->{status}"}++;
        select undef, undef, undef, 0.02;
    }
    my $elapsed = time - $t0;
    is_deeply [ sort grep { !/checked/ } keys %seen ], [ '503', 'head 503' ],
        'every GET and HEAD answers 503 while Redis is down';

    my @tries = $t->error_log($mark) =~ /umlo: cannot connect to redis/g;
    my $max = 2 * (int($elapsed) + 2);
    cmp_ok scalar(@tries), '<=', $max,
        sprintf('at most one connection attempt per second per worker (%d in %.1fs, %d requests)',
            scalar(@tries), $elapsed, $n);
    cmp_ok scalar(@tries), '>=', 1, 'the failed reconnection attempts are logged';

    $t->start_redis;
    my $back = wait_for(sub {
        my $r = req($t, GET => '/umlo/status');
        return $r->{status} == 200 ? $r : 0;
    }, timeout => 10);
    ok $back, 'status answers 200 again once Redis is back';
    # data was lost with the restart: idle again, snapshot gone
    json_contains $back && $back->{json}, { org => $org, state => 'idle', sync => undef,
        snapshot => undef }, 'idle document from the fresh Redis';

    # and both workers recovered
    my $all = wait_for(sub {
        my %c;
        $c{ req($t, GET => '/umlo/status', port => $rp_port)->{status} }++ for 1 .. 20;
        return keys %c == 1 && $c{200};
    }, timeout => 10);
    ok $all, 'every worker answers 200 again';
    ok defined $before, 'status worked before the outage';
};

subtest 'Redis hangs: 503 after umlo_redis_timeout, then recovery' => sub {
    kill 'STOP', $t->redis_pid;
    my $t0 = time;
    my $r = req($t, GET => '/umlo/status', timeout => 10);
    my $took = time - $t0;
    kill 'CONT', $t->redis_pid;
    is $r->{status}, 503, 'a silent Redis gives 503';
    json_contains $r->{json}, { error => { code => 'redis_unavailable',
        message => qr/in time|timeout/i } }, 'the error says Redis did not answer in time';
    cmp_ok $took, '>=', 0.8, sprintf('the answer waited for umlo_redis_timeout (%.2fs)', $took);
    cmp_ok $took, '<', 3, 'and not much longer';
    ok wait_for(sub { req($t, GET => '/umlo/status')->{status} == 200 }, timeout => 10),
        'status answers 200 again once Redis answers';
};

subtest 'the status is read from Redis on every request' => sub {
    $t->redis('SET', org_key($t, 'status'),
        encode_json({ id => 's-x', trigger => 'manual', state => 'succeeded', phase => undef,
            error => undef }));
    my $r = req($t, GET => '/umlo/status');
    json_contains $r->{json}, { state => 'succeeded', running => JSON::PP::false,
        sync => { id => 's-x' } }, 'a document written to Redis is reported as is';

    # a "running" document without a lock: the sync lost its worker
    $t->redis('SET', org_key($t, 'status'),
        encode_json({ id => 's-y', trigger => 'manual', state => 'running', phase => 'fetch',
            error => undef }));
    $r = req($t, GET => '/umlo/status');
    json_contains $r->{json}, { state => 'failed', running => JSON::PP::false,
        sync => { id => 's-y', state => 'failed', error => { where => 'lock',
            message => qr/./ } } }, 'running without a lock is reported failed (where lock)';

    $t->redis('SET', org_key($t, 'lock'), 's-y/token', 'PX', 5000);
    $r = req($t, GET => '/umlo/status');
    json_contains $r->{json}, { state => 'running', running => JSON::PP::true,
        sync => { id => 's-y', state => 'running', error => undef } },
        'with the lock held it is running';
    $t->redis('DEL', org_key($t, 'lock'), org_key($t, 'status'));
};

subtest 'ETag and If-None-Match: 304 while nothing changed' => sub {
    my $doc = { id => 's-e', trigger => 'manual', state => 'succeeded', phase => undef,
        error => undef };
    $t->redis('SET', org_key($t, 'status'), encode_json($doc));
    my $r = req($t, GET => '/umlo/status');
    is $r->{status}, 200, 'GET answers 200';
    my $etag = $r->{headers}{etag};
    like $etag // '', qr/^"[0-9a-f]{32}"$/, 'with a strong ETag';
    is req($t, GET => '/umlo/status')->{headers}{etag}, $etag,
        'the same document has the same ETag';

    $r = req($t, GET => '/umlo/status', headers => { 'If-None-Match' => $etag });
    is $r->{status}, 304, 'If-None-Match with it: 304';
    is $r->{body}, '', 'without a body';
    is $r->{headers}{etag}, $etag, 'the 304 repeats the ETag';
    is $r->{headers}{'cache-control'}, 'no-store', 'and stays uncacheable';

    $r = req($t, GET => '/umlo/status', headers => { 'If-None-Match' => "\"0\", W/$etag" });
    is $r->{status}, 304, 'a list with its weak form matches too';
    $r = req($t, HEAD => '/umlo/status', headers => { 'If-None-Match' => $etag });
    is $r->{status}, 304, 'HEAD: 304';
    $r = req($t, GET => '/umlo/status', headers => { 'If-None-Match' => '"0123"' });
    is $r->{status}, 200, 'another ETag: 200';
    ok $r->{json}, 'with the document';

    $doc->{state} = 'failed';
    $doc->{error} = { where => 'api', message => 'x' };
    $t->redis('SET', org_key($t, 'status'), encode_json($doc));
    $r = req($t, GET => '/umlo/status', headers => { 'If-None-Match' => $etag });
    is $r->{status}, 200, 'after a change the old ETag gets 200';
    json_contains $r->{json}, { state => 'failed' }, 'with the new document';
    isnt $r->{headers}{etag}, $etag, 'and a new ETag';
    $t->redis('DEL', org_key($t, 'status'));
};

final_checks($t);
done_testing;
