use strict;
use warnings;

# Configuration: "nginx -t" refuses what cannot work, with a message that
# names the directive and the problem; the API key is never printed.

use Test::More;
use File::Path qw(make_path);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;

my $t = Umlo::Test->new;
my $key = $t->api_key;
my $locations = umlo_locations();

# files the cases point at
sub spew {
    my ($name, $text, $mode) = @_;
    my $f = $t->path($name);
    open my $fh, '>', $f or die "$f: $!";
    print {$fh} $text;
    close $fh;
    chmod $mode // 0600, $f;
    return $f;
}
my $empty_key  = spew('empty.key', "\n  \n");
my $world_key  = spew('world.key', "$key\n", 0644);
my $big_key    = spew('big.key', ('k' x 5000) . "\n");
my $key_dir    = $t->path('keydir');
make_path($key_dir);
my $missing    = $t->path('no-such.key');
my $pw_file    = spew('redis.pw', "s3cret-redis-pass\n");

# http{} lines: the working base with directive $drop removed and %set
# replacing or adding directives.
sub http {
    my (%o) = @_;
    my %d = (
        umlo_redis        => '127.0.0.1:6390',
        umlo_org          => '$UMLO_ORG',
        umlo_api_key_file => '$UMLO_KEY_FILE',
        umlo_api_base     => 'http://127.0.0.1:9',
        umlo_thread_pool  => 'umlo',
        %{ $o{set} || {} },
    );
    delete $d{$_} for @{ $o{drop} || [] };
    return join "\n", (map { "$_ $d{$_};" } sort keys %d), @{ $o{extra} || [] };
}

my @cases = (
    # [name, {nginx_t opts}, expected output regex]
    [ 'umlo_redis missing', { http_config => http(drop => ['umlo_redis']) },
      qr/\[emerg\].*"umlo_redis" is required/ ],
    [ 'umlo_org missing', { http_config => http(drop => ['umlo_org']) },
      qr/\[emerg\].*"umlo_org" is required/ ],
    [ 'umlo_api_key_file missing', { http_config => http(drop => ['umlo_api_key_file']) },
      qr/\[emerg\].*"umlo_api_key_file" is required/ ],
    [ 'key file does not exist', { http_config => http(set => { umlo_api_key_file => $missing }) },
      qr/\[emerg\].*umlo_api_key_file: cannot open ".*no-such\.key".*No such file/ ],
    [ 'key file is a directory', { http_config => http(set => { umlo_api_key_file => $key_dir }) },
      qr/\[emerg\].*umlo_api_key_file: cannot read ".*keydir"/ ],
    [ 'key file is empty', { http_config => http(set => { umlo_api_key_file => $empty_key }) },
      qr/\[emerg\].*umlo_api_key_file: ".*empty\.key" is empty/ ],
    [ 'key file too large', { http_config => http(set => { umlo_api_key_file => $big_key }) },
      qr/\[emerg\].*umlo_api_key_file: ".*big\.key" is larger than \d+ bytes/ ],
    [ 'filter tasks every 30s', { http_config => http(set => { umlo_tasks_filter_min_every => '30s' }) },
      qr/\[emerg\].*"umlo_tasks_filter_min_every" must be from 60s to 1d/ ],
    [ 'filter tasks every 2d', { http_config => http(set => { umlo_tasks_filter_min_every => '2d' }) },
      qr/\[emerg\].*"umlo_tasks_filter_min_every" must be from 60s to 1d/ ],
    [ 'unknown thread pool', { http_config => http(set => { umlo_thread_pool => 'nosuchpool' }) },
      qr/\[emerg\].*unknown thread pool "nosuchpool"/ ],
    [ 'no thread_pool for the default pool name',
      { thread_pool => undef, http_config => http(drop => ['umlo_thread_pool']),
        expect_ok => 1 },
      qr/test is successful/ ],
    [ 'bad redis port', { http_config => http(set => { umlo_redis => '127.0.0.1:notaport' }) },
      qr/\[emerg\].*invalid redis address "127\.0\.0\.1:notaport"/ ],
    [ 'redis port out of range', { http_config => http(set => { umlo_redis => '127.0.0.1:70000' }) },
      qr/\[emerg\].*invalid redis address "127\.0\.0\.1:70000"/ ],
    [ 'empty unix socket path', { http_config => http(set => { umlo_redis => 'unix:' }) },
      qr/\[emerg\].*"umlo_redis" directive has an empty unix socket path/ ],
    [ 'bad redis db', { http_config => http(set => { umlo_redis => '127.0.0.1:6390 db=x' }) },
      qr/\[emerg\].*invalid redis database "db=x"/ ],
    [ 'unknown redis parameter', { http_config => http(set => { umlo_redis => '127.0.0.1:6390 tls=on' }) },
      qr/\[emerg\].*invalid parameter "tls=on"/ ],
    [ 'redis password file missing',
      { http_config => http(set => { umlo_redis => "127.0.0.1:6390 password_file=$missing" }) },
      qr/\[emerg\].*umlo_redis password_file: cannot open/ ],
    [ 'org id with a slash', { http_config => http(set => { umlo_org => 'acme/../x' }) },
      qr/\[emerg\].*invalid organization id "acme\/\.\.\/x"/ ],
    [ 'org id with a brace', { http_config => http(set => { umlo_org => '"a{b}"' }) },
      qr/\[emerg\].*invalid organization id "a\{b\}"/ ],
    [ 'org id too long', { http_config => http(set => { umlo_org => 'a' x 129 }) },
      qr/\[emerg\].*"umlo_org" directive needs an organization id of 1 to 128 characters/ ],
    [ 'empty org id', { http_config => http(set => { umlo_org => '""' }) },
      qr/\[emerg\].*"umlo_org" directive needs an organization id/ ],
    [ 'api base without scheme', { http_config => http(set => { umlo_api_base => 'api.atlassian.com' }) },
      qr/\[emerg\].*invalid URL "api\.atlassian\.com": it must start with "https:\/\/" or "http:\/\/"/ ],
    [ 'api base ftp', { http_config => http(set => { umlo_api_base => 'ftp://example.com' }) },
      qr/\[emerg\].*invalid URL "ftp:\/\/example\.com"/ ],
    [ 'api base scheme only', { http_config => http(set => { umlo_api_base => 'https://' }) },
      qr/\[emerg\].*invalid URL "https:\/\/"/ ],
    [ 'lock lease below 3s', { http_config => http(extra => ['umlo_sync_lock_lease 2s;']) },
      qr/\[emerg\].*"umlo_sync_lock_lease" must be at least 3s/ ],
    [ 'lock lease in ms below 3s', { http_config => http(extra => ['umlo_sync_lock_lease 2999ms;']) },
      qr/\[emerg\].*"umlo_sync_lock_lease" must be at least 3s/ ],
    [ 'lock lease 3s is fine', { http_config => http(extra => ['umlo_sync_lock_lease 3s;']),
        expect_ok => 1 },
      qr/test is successful/ ],
    [ 'concurrency 0', { http_config => http(extra => ['umlo_sync_concurrency 0;']) },
      qr/\[emerg\] value must be between 1 and 256 in \S+nginx\.conf:\d+/ ],
    [ 'retries too many', { http_config => http(extra => ['umlo_sync_retries 21;']) },
      qr/\[emerg\] value must be between 0 and 20 in \S+nginx\.conf:\d+/ ],
    [ 'selective max 0', { http_config => http(extra => ['umlo_sync_selective_max 0;']) },
      qr/\[emerg\] value must be between 1 and 10000 in \S+nginx\.conf:\d+/ ],
    [ 'history 0', { http_config => http(extra => ['umlo_sync_history 0;']) },
      qr/\[emerg\] value must be between 1 and 10000 in \S+nginx\.conf:\d+/ ],
    [ 'bad timeout', { http_config => http(extra => ['umlo_sync_timeout soon;']) },
      qr/\[emerg\].*"umlo_sync_timeout" directive invalid value/ ],
    [ 'duplicate umlo_org', { http_config => http(extra => ['umlo_org other;']) },
      qr/\[emerg\].*"umlo_org" directive is duplicate/ ],
    [ 'duplicate umlo_redis', { http_config => http(extra => ['umlo_redis 127.0.0.1:6391;']) },
      qr/\[emerg\].*"umlo_redis" directive is duplicate/ ],
    [ 'umlo_org inside server{}', { http_config => http(), config => "umlo_org x;\n$locations" },
      qr/\[emerg\].*"umlo_org" directive is not allowed here/ ],
    [ 'umlo_sync takes only status=URI', { http_config => http(),
        config => 'location = /s { umlo_sync on; }' },
      qr/\[emerg\].*invalid parameter "on", expected "status=URI"/ ],
    [ 'umlo_sync takes one parameter at most', { http_config => http(),
        config => 'location = /s { umlo_sync status=/a status=/b; }' },
      qr/\[emerg\].*invalid number of arguments in "umlo_sync" directive/ ],
    [ 'umlo_status at http level', { http_config => http(extra => ['umlo_status;']) },
      qr/\[emerg\].*"umlo_status" directive is not allowed here/ ],
    [ 'world-readable key file: a warning only',
      { http_config => http(set => { umlo_api_key_file => $world_key }), expect_ok => 1 },
      qr/\[warn\].*umlo_api_key_file: ".*world\.key" is readable by every user.*0600/ ],
    [ 'world-readable redis password file: a warning only',
      { http_config => http(set => { umlo_redis => "127.0.0.1:6390 password_file=$world_key" }),
        expect_ok => 1 },
      qr/\[warn\].*umlo_redis password_file: ".*world\.key" is readable by every user/ ],
    [ 'nothing required without a handler',
      { http_config => '', config => 'location = /x { return 204; }', expect_ok => 1 },
      qr/test is successful/ ],
    [ 'unix socket and options accepted',
      { http_config => http(set => { umlo_redis => "unix:/nonexistent/redis.sock db=3 password_file=$pw_file" },
          extra => [ 'umlo_redis_timeout 500ms;', 'umlo_sync_concurrency 4;', 'umlo_sync_timeout 10s;',
                     'umlo_sync_retries 0;', 'umlo_sync_lock_lease 1m;', 'umlo_sync_grace 0;',
                     'umlo_sync_selective_max 10000;', 'umlo_sync_history 1;' ]),
        expect_ok => 1 },
      qr/test is successful/ ],
    [ 'trailing slashes of the api base are fine',
      { http_config => http(set => { umlo_api_base => 'https://api.example.test///' }), expect_ok => 1 },
      qr/test is successful/ ],
);

for my $c (@cases) {
    my ($name, $opts, $re) = @$c;
    my $expect_ok = delete $opts->{expect_ok};
    my ($rc, $out) = $t->nginx_t(config => $locations, %$opts);
    if ($expect_ok) {
        is $rc, 0, "$name: nginx -t passes" or diag $out;
        unlike $out, qr/\[emerg\]/, "$name: no [emerg]";
    } else {
        isnt $rc, 0, "$name: nginx -t fails" or diag $out;
    }
    like $out, $re, "$name: message" or diag $out;
    unlike $out, qr/\Q$key\E/, "$name: the API key is not printed";
    unlike $out, qr/s3cret-redis-pass/, "$name: the Redis password is not printed";
}

# A working setup with the less common options: Redis over a unix socket,
# a password and a database number; both the status handler (event loop)
# and a sync (thread) must use all three.
subtest 'unix socket, password and db= at run time' => sub {
    my $sock = $t->path('redis', 'redis.sock');
    $t->start_redis(args => [ '--unixsocket', $sock, '--unixsocketperm', '700' ]);
    # the harness connection stays authenticated
    $t->redis('CONFIG', 'SET', 'requirepass', 's3cret-redis-pass');
    $t->redis('AUTH', 's3cret-redis-pass');
    $t->start_sim(users => 30, sites => 1, groups => 5, seed => 9, profile => 'fast');
    $t->start_nginx(
        http_config => qq{
            umlo_redis unix:$sock db=5 password_file=$pw_file;
            umlo_api_base \$UMLO_SIM;
            umlo_org \$UMLO_ORG;
            umlo_api_key_file \$UMLO_KEY_FILE;
            umlo_thread_pool umlo;
        },
        config => $locations,
    );
    my $r = req($t, GET => '/umlo/status');
    is $r->{status}, 200, 'status works over the unix socket with AUTH'
        or diag $r->{body};
    my ($st) = run_sync($t);
    is $st && $st->{state}, 'succeeded', 'a sync succeeds' or diag explain $st;
    $t->redis('SELECT', 5);
    ok defined $t->redis('GET', org_key($t, 'status')), 'the sync wrote to db 5';
    my $gen = current_gen($t);
    cmp_ok $t->redis('HLEN', org_key($t, 'g', $gen // 0, 'users')), '>', 0, 'users are in db 5';
    $t->redis('SELECT', 0);
    is scalar @{ $t->redis('KEYS', '*') }, 0, 'db 0 stays empty';
    $t->redis('SELECT', 5);
    final_checks($t);
    unlike $t->error_log, qr/s3cret-redis-pass/, 'the Redis password is not logged';
};

subtest 'wrong Redis password: 503 that says so' => sub {
    my $bad = spew('bad.pw', "wrong-pass\n");
    $t->stop_nginx;
    $t->start_nginx(
        http_config => qq{
            umlo_redis unix:@{[ $t->path('redis', 'redis.sock') ]} password_file=$bad;
            umlo_api_base \$UMLO_SIM;
            umlo_org \$UMLO_ORG;
            umlo_api_key_file \$UMLO_KEY_FILE;
            umlo_thread_pool umlo;
        },
        config => $locations,
    );
    my $r = req($t, GET => '/umlo/status');
    is $r->{status}, 503, 'status answers 503';
    json_contains $r->{json}, { error => { code => 'redis_unavailable',
        message => qr/AUTH|password|WRONGPASS|NOAUTH/i } }, 'the message points at authentication';
    unlike $r->{body}, qr/wrong-pass/, 'the password is not in the answer';
    unlike $t->error_log, qr/wrong-pass/, 'nor in the error log';
    assert_no_alerts($t);
};

done_testing;
