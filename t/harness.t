#!/usr/bin/perl
# Self-test of the test harness (t/lib/Umlo/Test.pm and Test/Blocks.pm).
# Needs nginx and redis-server but not the umlo module: every nginx here
# runs with module => 0.

use strict;
use warnings;
use utf8;

use Test::More;
use Test2::API qw(intercept);
use File::Path qw(remove_tree);
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Umlo::Test qw(json_contains json_diff wait_for free_port);
use Umlo::Test::Blocks;

my $t = Umlo::Test->new;

# Run $code under intercept() and return (passed?, diag text) of its
# assertions, so we can check that failures are reported as failures.
sub outcome {
    my ($code) = @_;
    my $events = intercept { $code->() };
    my @oks = grep { $_->isa('Test2::Event::Ok') } @$events;
    my $diag = join "\n", map { $_->message } grep { $_->isa('Test2::Event::Diag') } @$events;
    return (scalar(@oks) && !grep({ !$_->pass } @oks), $diag, scalar @oks);
}

subtest 'temp dir, ports and api key' => sub {
    ok -d $t->tmp, 'temp dir exists';
    my %seen;
    my @ports = map { free_port() } 1 .. 20;
    $seen{$_}++ for @ports;
    is scalar(keys %seen), 20, 'free_port never repeats';
    ok !grep({ $_ < 1 || $_ > 65535 } @ports), 'ports in range';

    like $t->api_key, qr/^[0-9a-f]{40}$/, 'api key is hex';
    my $mode = (stat $t->key_file)[2] & 07777;
    is sprintf('%04o', $mode), '0600', 'api.key mode 0600';
    open my $fh, '<', $t->key_file or die $!;
    chomp(my $k = <$fh>);
    is $k, $t->api_key, 'api.key holds the key';
};

subtest 'redis RESP client' => sub {
    my $port = $t->start_redis;
    ok $port, "redis on port $port";
    ok $t->redis_running, 'redis_running';
    is $t->redis('PING'), 'PONG', 'simple string';
    is $t->redis('SET', 'k1', 'two words  and "quotes"'), 'OK', 'SET';
    is $t->redis('GET', 'k1'), 'two words  and "quotes"', 'string with spaces';

    my $chars = "naïve ☺ ∑";    # character string (use utf8)
    $t->redis('SET', 'k2', $chars);
    is $t->redis('GET', 'k2'), Encode::encode_utf8($chars), 'character string stored as UTF-8 bytes';
    is $t->redis('STRLEN', 'k2'), length(Encode::encode_utf8($chars)), 'byte length';

    my $bin = "a\r\nb\0c\$3\r\n";
    $t->redis('SET', 'k3', $bin);
    is $t->redis('GET', 'k3'), $bin, 'binary-safe (CRLF, NUL, RESP-looking data)';
    is $t->redis('SET', 'empty', ''), 'OK', 'empty string arg';
    is $t->redis('GET', 'empty'), '', 'empty string value';

    is $t->redis('INCR', 'n'), 1, 'integer';
    is $t->redis('INCRBY', 'n', -5), -4, 'negative integer';
    is $t->redis('GET', 'nope'), undef, 'nil bulk is undef';

    $t->redis('RPUSH', 'l', 'a', 'b c', 'd');
    is_deeply $t->redis('LRANGE', 'l', 0, -1), [ 'a', 'b c', 'd' ], 'array';
    is_deeply $t->redis('LRANGE', 'none', 0, -1), [], 'empty array';
    is_deeply $t->redis('MGET', 'k1', 'nope'), [ 'two words  and "quotes"', undef ], 'array with nil';
    is $t->redis('BLPOP', 'none', '0.01'), undef, 'nil array is undef';

    my $big = 'x' x 300_000;
    $t->redis('SET', 'big', $big);
    is length($t->redis('GET', 'big')), 300_000, 'large value read over several reads';

    eval { $t->redis('INCR', 'k1') };
    like $@, qr/^redis error: ERR value is not an integer/, 'error reply dies';
    eval { $t->redis('NOSUCHCOMMAND', 'x') };
    like $@, qr/redis error: ERR unknown command/, 'unknown command dies';
    is $t->redis('PING'), 'PONG', 'connection in sync after errors';

    $t->redis('MULTI');
    $t->redis('SET', 'm', 'v');
    $t->redis('INCR', 'k1');
    my $res = $t->redis('EXEC');
    is $res->[0], 'OK', 'EXEC first reply';
    isa_ok $res->[1], 'Umlo::Test::RedisError', 'nested error';
    like "$res->[1]", qr/not an integer/, 'nested error text';

    eval { $t->redis() };
    like $@, qr/needs a command/, 'empty command refused';
};

subtest 'redis stop and restart' => sub {
    my $port = $t->redis_port;
    $t->redis('SET', 'before', 1);
    $t->restart_redis;
    is $t->redis_port, $port, 'same port after restart';
    is $t->redis('GET', 'before'), undef, 'no persistence across restart';
    is $t->redis('PING'), 'PONG', 'client reconnects';

    my $pid = $t->redis_pid;
    $t->stop_redis;
    ok !kill(0, $pid), 'redis process gone';
    ok !$t->redis_running, 'not running';
    eval { $t->redis('PING') };
    like $@, qr/redis is not running/, 'commands fail when stopped';
    $t->start_redis;
    is $t->redis('PING'), 'PONG', 'started again';
    is $t->redis_port, $port, 'still the same port';
};

my $json_loc = q{
    location / {
        default_type application/json;
        return 200 '{"ok":true,"n":3,"list":[1,"two"]}';
    }
    location = /vars {
        return 200 "$UMLO_PORT|$UMLO_ORG|$UMLO_REDIS|$UMLO_TMP|$UMLO_KEY_FILE|${UMLO_PREFIX}";
    }
    location = /echo-header { return 200 "[$http_x_test]"; }
    location = /method { return 200 "$request_method $content_length"; }
    location /missing { root $UMLO_TMP/no-such-dir; }
};

subtest 'nginx start and requests' => sub {
    my $inst = $t->start_nginx(module => 0, config => $json_loc);
    is $inst->{name}, 'main', 'default instance name';
    ok $t->nginx_running, 'running';
    like $t->nginx_url, qr{^http://127\.0\.0\.1:\d+$}, 'url';

    my $r = $t->request(GET => '/');
    is $r->{status}, 200, 'status';
    is $r->{headers}{'content-type'}, 'application/json', 'content-type';
    is_deeply $r->{json}, { ok => JSON::PP::true, n => 3, list => [ 1, 'two' ] }, 'json decoded';

    $r = $t->request(GET => '/vars');
    is $r->{json}, undef, 'no json for text/plain';
    my @v = split /\|/, $r->{body};
    is $v[0], $t->nginx_port, '$UMLO_PORT';
    is $v[1], $t->org, '$UMLO_ORG';
    is $v[2], '127.0.0.1:' . $t->redis_port, '$UMLO_REDIS';
    is $v[3], $t->tmp, '$UMLO_TMP';
    is $v[4], $t->key_file, '$UMLO_KEY_FILE';
    is $v[5], $t->nginx_instance->{prefix}, '${UMLO_PREFIX}';

    $r = $t->request(GET => '/echo-header', headers => { 'X-Test' => 'hi there' });
    is $r->{body}, '[hi there]', 'request header sent';
    $r = $t->request(POST => '/method', json => { a => 1 });
    is $r->{body}, 'POST 7', 'json body sent';
    $r = $t->request(PUT => '/method', body => 'abc');
    is $r->{body}, 'PUT 3', 'raw body sent';

    my $mark = $t->error_log_mark;
    $r = $t->request(GET => '/missing/file');
    is $r->{status}, 404, 'missing file is a 404';
    $t->assert_error_log(qr/\[error\].*No such file or directory/, since => $mark, desc => 'assert_error_log');
    $t->assert_no_error_log(undef, desc => 'assert_no_error_log default');
    like $t->error_log, qr/\[error\]/, 'whole error log';
    unlike $t->error_log, qr/client closed connection while waiting/, 'readiness checks leave no log noise';
    my $m2 = $t->error_log_mark;
    is $t->error_log($m2), '', 'nothing logged after a fresh mark';

    my ($ok, $diag) = outcome(sub { $t->assert_no_error_log(qr/No such file/) });
    ok !$ok, 'assert_no_error_log fails on a match';
    like $diag, qr/unexpected error log lines:.*No such file/s, '... and shows the line';
    ($ok) = outcome(sub { $t->assert_error_log(qr/never logged/, timeout => 0.3) });
    ok !$ok, 'assert_error_log fails without a match';

    eval { $t->start_nginx(module => 0, config => $json_loc) };
    like $@, qr/already running/, 'double start refused';

    $r = $t->request(GET => '/', port => free_port(), timeout => 2);
    is $r->{status}, 599, 'connection failure is status 599';
};

subtest 'nginx pids and reload' => sub {
    my ($master, @workers) = $t->nginx_pids;
    ok $master, "master $master";
    is scalar(@workers), 2, 'two workers by default';
    ok kill(0, $_), "worker $_ alive" for @workers;

    ok $t->reload_nginx(worker_processes => 3,
        config => $json_loc . q{ location = /new { return 200 new; } }), 'reload';
    my ($m2, @w2) = $t->nginx_pids;
    is $m2, $master, 'same master';
    is scalar(@w2), 3, 'three new workers';
    my %old = map { $_ => 1 } @workers;
    ok !grep({ $old{$_} } @w2), 'workers replaced';
    is $t->request(GET => '/new')->{body}, 'new', 'new config active';

    my $ok = $t->reload_nginx(config => 'bogus_directive;', allow_fail => 1, timeout => 5);
    ok !$ok, 'reload with a bad config reports failure';
    is $t->request(GET => '/new')->{body}, 'new', 'old config still serves';
    eval { $t->reload_nginx(config => 'bogus_directive;', timeout => 5) };
    like $@, qr/reload failed.*bogus_directive/, 'reload dies without allow_fail';
};

subtest 'several instances' => sub {
    my $b = $t->start_nginx(name => 'b', module => 0, worker_processes => 1,
        config => q{location / { return 200 "b:$UMLO_PORT"; }});
    isnt $b->{port}, $t->nginx_port, 'own port';
    is $t->request(GET => '/', name => 'b')->{body}, "b:$b->{port}", 'request to b';
    is $t->request(GET => '/', instance => 'b')->{body}, "b:$b->{port}", 'instance => alias';
    ok $t->request(GET => '/')->{json}, 'main still answers';
    my ($bm, @bw) = $t->nginx_pids('b');
    is scalar(@bw), 1, 'one worker';

    $t->stop_nginx('b');
    ok !kill(0, $bm), 'b master gone';
    ok !grep({ kill 0, $_ } @bw), 'b workers gone';
    is $t->request(GET => '/', name => 'b', timeout => 2)->{status}, 599, 'b port closed';

    my $d = $t->start_nginx(name => 'd', module => 0, daemon => 1, master_process => 1,
        worker_processes => 1, config => q{location / { return 200 daemon; }});
    is $t->request(GET => '/', name => 'd')->{body}, 'daemon', 'daemonised instance answers';
    my ($dm) = $t->nginx_pids('d');
    $t->stop_nginx('d');
    ok !Umlo::Test::_alive($dm), 'daemonised master gone';

    my $s = $t->start_nginx(name => 's', module => 0, master_process => 0,
        config => q{location / { return 200 single; }});
    is $t->request(GET => '/', name => 's')->{body}, 'single', 'master_process off answers';
    $t->stop_nginx('s');
};

subtest 'nginx start failures and nginx -t' => sub {
    eval { $t->start_nginx(name => 'bad', module => 0, config => 'bogus_directive;') };
    like $@, qr/failed to start.*unknown directive "bogus_directive"/s, 'start failure shows the log';
    ok !$t->nginx_running('bad'), 'not running';

    my ($rc, $out) = $t->nginx_t(module => 0, config => 'location / { nope_nope on; }');
    isnt $rc, 0, 'nginx -t exit code';
    like $out, qr/\[emerg\] unknown directive "nope_nope"/, 'nginx -t output';
    ($rc, $out) = $t->nginx_t(module => 0, config => 'location / { return 204; }');
    is $rc, 0, 'good config passes nginx -t';
    like $out, qr/syntax is ok/, 'nginx -t ok output';

    {
        local $ENV{UMLO_MODULE} = $t->path('no-such-module.so');
        eval { $t->nginx_t(config => '') };
        like $@, qr/module not found.*run make first/, 'missing module: run make first';
        eval { Umlo::Test::Blocks::run("=== x\n--- config\n", t => $t) };
        like $@, qr/run make first/, 'blocks die early on missing module';
    }
    {
        local $ENV{UMLO_MODULE} = $t->key_file;    # any existing file will do
        like $t->nginx_conf(), qr/^load_module \S+api\.key;$/m, 'load_module uses UMLO_MODULE';
    }
    unlike $t->nginx_conf(module => 0), qr/load_module/, 'module => 0 omits load_module';
    like $t->nginx_conf(module => 0), qr/^thread_pool umlo threads=4;$/m, 'default thread pool';
    unlike $t->nginx_conf(module => 0, thread_pool => undef), qr/thread_pool/, 'thread pool omitted';
    like $t->nginx_conf(module => 0, error_log_level => 'debug'), qr/error_log logs\/error.log debug;/, 'log level';
    like $t->nginx_conf(module => 0, main_config => 'env FOO;'), qr/^env FOO;$/m, 'main_config';

    eval { $t->nginx_conf(module => 0, config => 'x $UMLO_NOPE;') };
    like $@, qr/unknown template variable \$UMLO_NOPE/, 'unknown template variable dies';
    is $t->expand('${UMLO_ORG}x $UMLO_ORG.y $umlo_org'), $t->org . 'x ' . $t->org . '.y $umlo_org',
        'braces, word boundaries, lowercase untouched';
    is $t->expand('[$UMLO_ORG]'), '[' . $t->org . ']', 'expand';
    is $t->expand('$UMLO_REDIS', undef, 1), quotemeta('127.0.0.1:' . $t->redis_port), 'expand quoted';
};

subtest 'json_diff and json_contains' => sub {
    my $got = { a => 1, b => 'x', c => [ 1, { d => 2 } ], e => undef, t => JSON::PP::true,
        'odd key' => 5, f => 1.5 };
    is json_diff($got, {}), undef, 'empty expected';
    is json_diff($got, { a => 1, c => [ 1, { d => 2 } ] }), undef, 'nested subset';
    is json_diff($got, { a => '1.0' }), undef, 'numbers compare numerically';
    is json_diff($got, { b => qr/^x$/ }), undef, 'regex';
    is json_diff($got, { e => undef }), undef, 'null';
    is json_diff($got, { t => JSON::PP::true }), undef, 'boolean';
    is json_diff($got, { c => sub { ref $_[0] eq 'ARRAY' } }), undef, 'code check';
    is json_diff($got, { c => [1] }, prefix => 1), undef, 'array prefix';
    is json_diff([ 1, 2 ], [ 1, 2 ]), undef, 'top-level array';
    is json_diff('s', 's'), undef, 'top-level scalar';

    like json_diff($got, { c => [ 1, { d => 3 } ] }), qr/^\$\.c\[1\]\.d: expected 3, got 2/, 'path to mismatch';
    like json_diff($got, { z => 1 }), qr/^\$: missing key "z"/, 'missing key';
    like json_diff($got, { c => [1] }), qr/expected 1 elements, got 2/, 'array length';
    like json_diff($got, { c => [ 1, 2, 3 ] }, prefix => 1), qr/at least 3 elements/, 'prefix too short';
    like json_diff($got, { b => qr/^y/ }), qr/matching/, 'regex mismatch';
    like json_diff($got, { a => undef }), qr/expected null/, 'null mismatch';
    like json_diff($got, { t => JSON::PP::false }), qr/expected false/, 'boolean mismatch';
    like json_diff($got, { t => 1 }), qr/expected 1, got true/, 'boolean is not a number';
    like json_diff($got, { a => { x => 1 } }), qr/expected an object/, 'type mismatch';
    like json_diff($got, { 'odd key' => 6 }), qr/^\$\["odd key"\]/, 'quoted key in path';
    like json_diff(undef, 'x'), qr/expected "x", got null/, 'undef got';

    json_contains($got, { a => 1 }, 'json_contains passes');
    $t->json_contains($got, '{"c": [1, {"d": 2}]}', 'method form with JSON text');
    my ($ok, $diag) = outcome(sub { json_contains($got, { c => [ 1, { d => 9 } ] }, 'x') });
    ok !$ok, 'json_contains fails on mismatch';
    like $diag, qr/\$\.c\[1\]\.d: expected 9, got 2.*full value:/s, 'diagnostic shows path and value';
};

subtest 'wait_for' => sub {
    my $n = 0;
    is wait_for(sub { ++$n >= 3 && "done" }, interval => 0.01), 'done', 'returns the true value';
    my $t0 = time;
    is wait_for(sub { 0 }, timeout => 0.3, interval => 0.05), undef, 'undef on timeout';
    my $el = time - $t0;
    ok $el >= Umlo::Test::scaled(0.3) && $el < Umlo::Test::scaled(2), "honours timeout ($el s)";
    $n = 0;
    is $t->wait_for(sub { die "not yet\n" if ++$n < 3; 1 }, interval => 0.01), 1,
        'exceptions count as not yet';
};

subtest 'block parser' => sub {
    my @b = Umlo::Test::Blocks::parse(<<'EOF');
preamble is ignored
=== TEST 1: first
--- config
location / {
    return 200;
}

--- error_code: 201
--- response_headers
Content-Type: text/plain
X-A: ~^b

=== TEST 2: second
--- request
GET /x
--- skip
EOF
    is scalar(@b), 2, 'two blocks';
    is $b[0]{name}, 'TEST 1: first', 'name';
    is $b[0]{sections}{config}, "location / {\n    return 200;\n}", 'multi-line section trimmed';
    is $b[0]{sections}{error_code}, '201', 'inline value';
    is $b[0]{sections}{response_headers}, "Content-Type: text/plain\nX-A: ~^b", 'headers section';
    is $b[1]{sections}{request}, 'GET /x', 'request';
    ok exists $b[1]{sections}{skip}, 'flag section';

    eval { Umlo::Test::Blocks::parse("=== x\n--- confg\n") };
    like $@, qr/unknown section 'confg'/, 'unknown section dies';
    eval { Umlo::Test::Blocks::parse("=== x\n--- config\n--- config\n") };
    like $@, qr/duplicate section/, 'duplicate section dies';
    eval { Umlo::Test::Blocks::parse("=== x\n--- error_code: 1\nstray\n") };
    like $@, qr/outside any section/, 'stray text dies';

    my @a = Umlo::Test::Blocks::split_args(q{SET "a key" plain "q\"uote\\\\" "" "n\nl"});
    is_deeply \@a, [ 'SET', 'a key', 'plain', 'q"uote\\', '', "n\nl" ], 'split_args';
    eval { Umlo::Test::Blocks::split_args('SET "open') };
    like $@, qr/bad quoting/, 'unterminated quote dies';
};

# Blocks get their own harness object, as a test file would.
my $blocks = <<'EOF';
=== TEST 1: json response
--- config
location / { default_type application/json; return 200 '{"state": "idle", "n": [1, 2], "org": "$UMLO_ORG"}'; }
--- request
GET /umlo/status
--- error_code: 200
--- response_headers
Content-Type: application/json
Content-Length: ~^\d+$
!X-Nope
--- response_json
{"state": "idle", "n": [1, 2], "org": "$UMLO_ORG"}
--- response_body_like
"org": "$UMLO_ORG"

=== TEST 2: same config reuses nginx, redis_setup works
--- config
location / { default_type application/json; return 200 '{"state": "idle", "n": [1, 2], "org": "$UMLO_ORG"}'; }
--- redis_setup
SET "blk key" "value with spaces"
RPUSH blk:list a b
--- request
GET /
--- response_json
{"state": "idle"}

=== TEST 3: new config, error_log, no_error_log, request body
--- http_config
log_format x '$request_method';
--- config
location /missing { root $UMLO_TMP/none; }
location = /post { return 200 "$http_x_a $content_length"; }
--- request
POST /missing/thing
--- request_body
hello
--- error_code: 404
--- error_log
\[error\].*No such file or directory
--- no_error_log
\[warn\]

=== TEST 4: request headers and exact body
--- config
location = /post { return 200 "$http_x_a $content_length\n"; }
--- request
PUT /post
--- request_headers
X-A: one
--- request_json
{"a": 1}
--- response_body
one 7

=== TEST 5: nginx -t failure
--- config
location / { definitely_not_a_directive; }
--- nginx_t_fails
unknown directive "definitely_not_a_directive"
test failed

=== TEST 6: skipped block
--- skip: not relevant here
--- request
GET /
EOF

my $bt = Umlo::Test::Blocks::run($blocks, module => 0, worker_processes => 1);
is $bt->redis('GET', 'blk key'), 'value with spaces', 'redis_setup quoted args';
is_deeply $bt->redis('LRANGE', 'blk:list', 0, -1), [qw(a b)], 'redis_setup list';
my @starts = $bt->error_log =~ /\[notice\].*: start worker processes$/mg;
is scalar(@starts), 3, 'blocks with an identical config reuse nginx';

subtest 'blocks report failures' => sub {
    my $fail = <<'EOF';
=== F1: wrong everything
--- config
location / { default_type application/json; return 200 '{"state": "busy"}'; }
--- request
GET /
--- error_code: 201
--- response_headers
Content-Type: text/html
--- response_json
{"state": "idle"}
--- response_body_like
nothing-like-this
--- error_log
never-logged
=== F2: bad redis_setup
--- redis_setup
INCR "F2 not a number" extra
--- request
GET /
=== F3: nginx does not start
--- config
location / { not_a_directive; }
--- request
GET /
EOF
    my $events = intercept sub {
        Umlo::Test::Blocks::run($fail, t => $bt, module => 0, worker_processes => 1, error_log_wait => 0.2);
    };
    my @oks = grep { $_->isa('Test2::Event::Ok') } @$events;
    my %by = map { $_->name => $_->pass } @oks;
    for my $n ('F1: wrong everything - status 201', 'F1: wrong everything - header Content-Type',
        'F1: wrong everything - response json', 'F1: wrong everything - response body like',
        'F1: wrong everything - error_log has /never-logged/',
        'F2: bad redis_setup - block ran to completion', 'F3: nginx does not start - block ran to completion') {
        ok exists $by{$n} && !$by{$n}, "fails: $n";
    }
    ok $by{'F1: wrong everything - no_error_log /\[(?:alert|emerg|crit)\]/'}, 'default no_error_log ran';
    my $diag = join "\n", map { $_->message } grep { $_->isa('Test2::Event::Diag') } @$events;
    like $diag, qr/redis_setup line .*wrong number of arguments/, 'redis_setup error shown';
    like $diag, qr/unknown directive "not_a_directive"/, 'nginx start error shown';
};

# A stand-in simulator (written at run time) so start_sim() and friends are
# tested even before sim/umlo-sim exists.  It prints some noise, then the
# listening line, and answers every request with a JSON echo of it and of
# its command line.  "--mode exit" exits at once, "--mode silent" never
# prints the listening line.
sub write_stub_sim {
    my $file = $t->path('stub-sim');
    open my $fh, '>', $file or die $!;
    print {$fh} "#!$^X\n", <<'EOF';
use strict; use warnings; use IO::Socket::INET;
$| = 1;
my @argv = @ARGV;
my %a; while (@ARGV) { my $k = shift; $a{$k} = shift }
exit 3 if ($a{'--mode'} // '') eq 'exit';
my ($host, $port) = split /:/, $a{'--listen'};
my $srv = IO::Socket::INET->new(LocalAddr => $host, LocalPort => $port, Listen => 5, ReuseAddr => 1)
    or die "bind: $!";
print "stub simulator starting\n";
if (($a{'--mode'} // '') eq 'silent') { sleep 60; exit }
print "listening on $host:", $srv->sockport, "\n";
while (my $c = $srv->accept) {
    my ($method, $path) = split ' ', scalar <$c>;
    my $len = 0;
    while (my $h = <$c>) { last if $h =~ /^\r?\n$/; $len = $1 if $h =~ /^content-length:\s*(\d+)/i }
    my $body = ''; read($c, $body, $len) if $len;
    my $q = sub { my $s = shift; $s =~ s/(["\\])/\\$1/g; qq{"$s"} };
    my $json = '{"method":' . $q->($method) . ',"path":' . $q->($path) . ',"body":' . $q->($body)
        . ',"argv":[' . join(',', map { $q->($_) } @argv) . ']}';
    print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        . length($json) . "\r\nConnection: close\r\n\r\n$json";
    close $c;
}
EOF
    close $fh;
    chmod 0755, $file;
    return $file;
}

subtest 'simulator handling (stub)' => sub {
    local $ENV{UMLO_SIM_BIN} = write_stub_sim();
    my $url = $t->start_sim(users => 3, seed => 7, args => [ '--extra', 'x y' ]);
    like $url, qr{^http://127\.0\.0\.1:(\d+)$}, "listening line parsed: $url";
    is $t->sim_url, $url, 'sim_url';
    ok $t->sim_running, 'sim_running';

    my $r = $t->sim_admin(POST => 'fail', { endpoint => 'users', status => 503 });
    is $r->{status}, 200, 'sim_admin status';
    is $r->{json}{path}, '/__sim/fail', 'short admin path gets /__sim/ prefix';
    is $r->{json}{method}, 'POST', 'method';
    is_deeply JSON::PP::decode_json($r->{json}{body}), { endpoint => 'users', status => 503 }, 'json body';
    is $t->sim_admin(GET => '/__sim/state')->{json}{path}, '/__sim/state', 'full admin path kept';

    my %argv = @{ $r->{json}{argv} };
    is $argv{'--org'}, $t->org, '--org';
    is $argv{'--api-key'}, $t->api_key, '--api-key';
    is $argv{'--users'}, 3, '--users';
    is $argv{'--seed'}, 7, '--seed';
    is $argv{'--extra'}, 'x y', 'extra args passed as a list';
    ok !exists $argv{'--sites'}, 'unset options not passed';

    $t->start_nginx(name => 'px', module => 0, worker_processes => 1,
        config => q{location / { proxy_pass $UMLO_SIM; }});
    is $t->request(GET => '/api/x', name => 'px')->{json}{path}, '/api/x', '$UMLO_SIM in a config';
    $t->stop_nginx('px');

    my $port = $t->sim_port;
    $t->restart_sim(seed => 8);
    is $t->sim_port, $port, 'restart keeps the port';
    %argv = @{ $t->sim_admin(GET => 'x')->{json}{argv} };
    is $argv{'--seed'}, 8, 'restart overrides args';
    is $argv{'--users'}, 3, 'restart keeps other args';
    eval { $t->start_sim };
    like $@, qr/already running/, 'double start refused';
    my $pid = $t->sim_pid;
    $t->stop_sim;
    ok !Umlo::Test::_alive($pid), 'stopped';
    ok !$t->sim_running, 'not running';
    eval { $t->sim_admin(GET => 'x') };
    like $@, qr/not running/, 'sim_admin needs a simulator';

    my $t0 = time;
    eval { $t->start_sim(args => [ '--mode', 'exit' ]) };
    like $@, qr/simulator exited early/, 'early exit detected';
    ok time - $t0 < 5, 'early exit detected quickly';
    eval { $t->start_sim(args => [ '--mode', 'silent' ], timeout => 1) };
    like $@, qr/did not print 'listening on.*stub simulator starting/s, 'missing listening line times out';
    ok !$t->sim_running, 'silent simulator was stopped';

    local $ENV{UMLO_SIM_BIN} = $t->path('no-such-sim');
    eval { $t->start_sim };
    like $@, qr/simulator not found/, 'missing simulator';
};

subtest 'simulator' => sub {
    my $sim = Umlo::Test->sim_bin;
    plan skip_all => 'sim/umlo-sim not there yet' unless -x $sim;
    my $url = $t->start_sim(users => 5, sites => 1, groups => 2, seed => 1);
    like $url, qr{^http://127\.0\.0\.1:(\d+)$}, "listening line parsed: $url";
    is $t->sim_url, $url, 'sim_url';
    ok Umlo::Test::_port_open($t->sim_port), 'port accepts connections';
    like $t->expand('$UMLO_SIM'), qr{^http://127\.0\.0\.1:\d+$}, '$UMLO_SIM';
    my $port = $t->sim_port;
    $t->restart_sim(seed => 2);
    is $t->sim_port, $port, 'restart keeps the port';
    my $pid = $t->sim_pid;
    $t->stop_sim;
    ok !kill(0, $pid), 'simulator stopped';
};

# Runs a small test script in a child perl and reports its exit status,
# output and what it recorded about itself (pids, temp dir).
sub run_child {
    my ($mode, %o) = @_;
    my $script = $t->path('child.t');
    open my $fh, '>', $script or die $!;
    print {$fh} <<'EOF';
use strict; use warnings; use Test::More; use Umlo::Test;
my ($mode, $info) = @ARGV;
my $t = Umlo::Test->new;
$t->start_redis;
$t->start_nginx(module => 0, worker_processes => 1, config => 'location / { return 204; }');
open my $fh, '>', "$info.tmp" or die $!;
print {$fh} $t->tmp, "\n", join(' ', $t->nginx_pids, $t->redis_pid), "\n";
close $fh; rename "$info.tmp", $info;
ok(1, 'started');
ok(0, 'deliberate failure') if $mode eq 'fail';
die "deliberate death\n" if $mode eq 'die';
sleep 30 if $mode eq 'sleep';
done_testing;
EOF
    close $fh;
    my $info = $t->path("child-$mode.info");
    my $log  = $t->path("child-$mode.log");
    my $pid = Umlo::Test::_spawn(cmd => [ $^X, '-I' . Umlo::Test->root . '/t/lib', $script, $mode, $info ],
        log => $log, env => { HARNESS_ACTIVE => undef });
    if ($o{signal}) {
        wait_for(sub { -e $info }, timeout => 20);
        kill $o{signal}, $pid;
    }
    my $st = Umlo::Test::_wait_exit($pid, 60, 1);
    open my $ih, '<', $info or die "child wrote no info: " . Umlo::Test::_slurp($log);
    chomp(my @info = <$ih>);
    return ($st, Umlo::Test::_slurp($log), $info[0], split ' ', $info[1]);
}

subtest 'teardown' => sub {
    for my $case ([ pass => 0 ], [ fail => 1 ], [ die => 1 ], [ sleep => 1, 'TERM' ]) {
        my ($mode, $keeps, $sig) = @$case;
        my ($st, $out, $dir, @pids) = run_child($mode, signal => $sig);
        is scalar(@pids), 3, "$mode: child recorded master, worker and redis pids";
        ok !grep({ Umlo::Test::_alive($_) } @pids), "$mode: no stray processes";
        if ($keeps) {
            isnt $st, 0, "$mode: child exit status non-zero";
            ok -d $dir, "$mode: temp dir kept";
            like $out, qr/umlo test dir kept: \Q$dir\E/, "$mode: kept dir reported";
            like $out, qr/last 50 lines of \S+error\.log/, "$mode: error.log tail shown";
            like $out, qr/last 50 lines of \S+redis\.log/, "$mode: redis.log tail shown";
            remove_tree($dir);
        } else {
            is $st, 0, "$mode: child passed";
            ok !-e $dir, "$mode: temp dir removed";
        }
    }
};

done_testing;
