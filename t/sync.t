use strict;
use warnings;
use utf8;

# umlo_sync basics: requests and their answers, a full sync checked against
# the simulator's ground truth, 409 while running, cancel, history,
# generation clean-up, selective syncs, edge-case orgs.

use Test::More;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;

binmode(Test::More->builder->$_, ':encoding(UTF-8)') for qw(output failure_output todo_output);

my $t = Umlo::Test->new;
start_stack($t,
    sim  => { users => 150, sites => 2, groups => 12, seed => 5 },
    http => q{
        umlo_sync_history 3;
        umlo_sync_grace 1s;
        umlo_sync_selective_max 20;
    },
);
my $org = $t->org;

sub sim_ok {
    my ($method, $path, $json) = @_;
    my $r = $t->sim_admin($method, $path, $json);
    die "sim admin $method $path: $r->{status} $r->{body}\n" unless $r->{status} == 200;
    return $r->{json};
}

sub history {
    return [ map { decode_json($_) } @{ $t->redis('LRANGE', org_key($t, 'history'), 0, -1) } ];
}

sub gen_keys {
    my ($gen) = @_;
    return [ sort @{ $t->redis('KEYS', org_key($t, 'g', $gen, '*')) } ];
}

sub raw_http {
    my ($data) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->nginx_port,
        Timeout => 5) or die "connect: $!";
    print {$s} $data;
    my $out = '';
    my $sel = IO::Select->new($s);
    while ($sel->can_read(3)) {
        my $n = sysread($s, my $buf, 65536);
        last unless $n;
        $out .= $buf;
    }
    push @Umlo::Sync::RESPONSES, $out;
    return $out;
}

# --------------------------------------------------------------------------

subtest 'selective sync before any full sync fails clearly' => sub {
    my $some = (v2_users(truth($t)))[0]{accountId};
    my ($st, $r) = run_sync($t, json => { users => [$some] });
    is $r->{status}, 202, 'accepted';
    json_contains $r->{json}, { trigger => 'selective', state => 'queued',
        users_requested => [$some] }, '202 document names the users';
    json_contains $st, { state => 'failed', running => JSON::PP::false, snapshot => undef,
        sync => { trigger => 'selective', state => 'failed',
            error => { where => qr/./, message => qr/no full sync has completed yet/ } } },
        'failed: a full sync is needed first';
    is $t->redis('EXISTS', org_key($t, 'lock')), 0, 'the lock is released';
};

subtest 'bad requests: 400 and no sync started' => sub {
    my $before = status_json($t);
    my @cases = (
        [ 'not JSON',            '{"scope": "full"',            'invalid_json',  qr/not valid JSON/ ],
        [ 'garbage',             'hello',                       'invalid_json',  qr/not valid JSON/ ],
        [ 'duplicate key',       '{"scope":"full","scope":"full"}', 'invalid_json', qr/duplicate|not valid/i ],
        [ 'array body',          '[]',                          'invalid_body',  qr/JSON object/ ],
        [ 'string body',         '"full"',                      qr/^invalid_(?:json|body)$/, qr/JSON/ ],
        [ 'bad scope',           '{"scope":"partial"}',         'invalid_scope', qr/"scope" must be "full"/ ],
        [ 'scope not a string',  '{"scope":1}',                 'invalid_scope', qr/"scope"/ ],
        [ 'unknown field',       '{"user":["a"]}',              'unknown_field', qr/unknown field "user"/ ],
        [ 'unknown field 2',     '{"scope":"full","force":true}', 'unknown_field', qr/"force"/ ],
        [ 'scope and users',     '{"scope":"full","users":["a"]}', 'invalid_body', qr/exclude each other/ ],
        [ 'users empty',         '{"users":[]}',                'invalid_users', qr/1 to 20 account ids/ ],
        [ 'users not an array',  '{"users":"abc"}',             'invalid_users', qr/array/ ],
        [ 'users null',          '{"users":null}',              'invalid_users', qr/array/ ],
        [ 'id not a string',     '{"users":[42]}',              'invalid_users', qr/\[0\] is not an account id/ ],
        [ 'id with a space',     '{"users":["ok-1","bad id"]}', 'invalid_users', qr/\[1\] is not an account id/ ],
        [ 'id with a slash',     '{"users":["a/b"]}',           'invalid_users', qr/\[0\]/ ],
        [ 'id with a brace',     '{"users":["a{b}"]}',          'invalid_users', qr/\[0\]/ ],
        [ 'empty id',            '{"users":[""]}',              'invalid_users', qr/\[0\]/ ],
        [ 'id too long',         '{"users":["' . ('a' x 129) . '"]}', 'invalid_users', qr/\[0\]/ ],
        [ 'non-ASCII id',        qq({"users":["\xc3\xa9"]}),    'invalid_users', qr/\[0\]/ ],
        [ 'too many ids',        '{"users":[' . join(',', map { "\"u$_\"" } 1 .. 21) . ']}',
                                 'invalid_users', qr/1 to 20 account ids \(umlo_sync_selective_max\)/ ],
    );
    for my $c (@cases) {
        my ($name, $body, $code, $msg) = @$c;
        my $r = req($t, POST => '/umlo/sync', body => $body,
            headers => { 'Content-Type' => 'application/json' });
        is $r->{status}, 400, "$name: 400";
        json_contains $r->{json}, { error => { status => 400, code => $code, message => $msg } },
            "$name: error $code";
    }
    my $r = req($t, POST => '/umlo/sync', body => '{"users":["' . join('","', map { "ok:$_" } 1 .. 20) . '"]}');
    isnt $r->{status}, 400, '20 ids (umlo_sync_selective_max) are accepted';
    wait_sync($t, $r->{json} && $r->{json}{id});
    my $after = status_json($t);
    is $after->{sync}{id}, $r->{json}{id}, 'only the valid request started a sync';
    isnt $before->{sync}{id}, $after->{sync}{id}, '(it replaced the earlier document)';
};

subtest 'methods on the sync location' => sub {
    for my $m (qw(GET HEAD PUT PATCH)) {
        my $r = req($t, $m => '/umlo/sync');
        is $r->{status}, 405, "$m: 405";
        is $r->{headers}{allow}, 'POST, DELETE', "$m: Allow: POST, DELETE";
        json_contains $r->{json}, { error => { code => 'method_not_allowed' } }, "$m: JSON error"
            unless $m eq 'HEAD';
    }
    my $d = req($t, DELETE => '/umlo/sync');
    is $d->{status}, 409, 'DELETE with nothing running: 409';
    json_contains $d->{json}, { error => { status => 409, code => 'not_running',
        message => qr/no sync/ } }, 'code not_running';

    my $inner = "GET /smuggled HTTP/1.1\r\nHost: inner\r\n\r\n";
    my $out = raw_http("PUT /umlo/sync HTTP/1.1\r\nHost: a\r\nContent-Length: " . length($inner)
        . "\r\n\r\n$inner" . "GET /umlo/status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    my @codes = $out =~ m{^HTTP/1\.1 (\d{3})}mg;
    {
        is "@codes", '405 200', 'a refused PUT body is not parsed as the next request';
    }
    $out = raw_http("DELETE /umlo/sync HTTP/1.1\r\nHost: a\r\nContent-Length: " . length($inner)
        . "\r\n\r\n$inner" . "GET /umlo/status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    @codes = $out =~ m{^HTTP/1\.1 (\d{3})}mg;
    is "@codes", '409 200', 'a DELETE body is discarded';
};

# --------------------------------------------------------------------------

my ($first, $truth1);

subtest 'full sync: answers and status document' => sub {
    sim_ok(POST => 'stats/reset');
    my $r = req($t, POST => '/umlo/sync');
    is $r->{status}, 202, 'POST with an empty body: 202';
    like $r->{headers}{'content-type'}, qr{^application/json\b}, 'JSON';
    json_contains $r->{json}, {
        id => qr/^\S+$/, trigger => 'manual', state => 'queued', phase => undef,
        requested_at => sub { $_[0] && $_[0] =~ /^\d+$/ && abs($_[0] - time) < 60 },
        started_at => undef, finished_at => undef, error => undef,
    }, '202 document: queued';
    my $id = $r->{json}{id};
    my $st = wait_sync($t, $id);
    ok $st, 'finished';
    $truth1 = truth($t);
    my $snap = snapshot($t);
    my $n = scalar v2_users($truth1);
    json_contains $st, {
        org => $org, state => 'succeeded', running => JSON::PP::false,
        sync => {
            id => $id, trigger => 'manual', state => 'succeeded', phase => undef,
            requested_at => $r->{json}{requested_at},
            started_at => sub { $_[0] >= $r->{json}{requested_at} },
            finished_at => sub { $_[0] >= $st->{sync}{started_at} },
            duration_ms => sub { defined $_[0] && $_[0] =~ /^\d+$/ },
            progress => { done => $n, expected => $n, percent => 100, eta_seconds => 0 },
            api => { calls => sub { $_[0] > 0 }, retries => 0, rate_limited => 0, errors => 0 },
            error => undef,
        },
    }, 'succeeded document';
    check_snapshot_meta($st, $snap, $truth1, 'first sync');
    my $stats = sim_ok(GET => 'stats');
    is $st->{sync}{api}{calls}, $stats->{total}, 'api.calls is the number of API requests the simulator saw';
    is $stats->{sent5xx} + $stats->{sent429}, 0, 'no errors on the way';
    {
        json_contains $st->{sync}{counts}, $st->{snapshot}{counts},
            'sync.counts equals the snapshot counts (users, groups, sites, products)';
    }
    my $h = history();
    is scalar @$h, 3, 'history: the two earlier selective syncs and this one';
    json_contains $h->[0], { id => $id, trigger => 'manual', state => 'succeeded',
        started_at => $st->{sync}{started_at}, finished_at => $st->{sync}{finished_at},
        duration_ms => $st->{sync}{duration_ms}, api => $st->{sync}{api} }, 'newest entry first';
    is $t->redis('EXISTS', org_key($t, 'lock')), 0, 'lock released';
    is $t->redis('ZCARD', org_key($t, 'building')), 0, 'no generation left half-built';
    is_deeply gen_keys($snap->{gen}), [ map { org_key($t, 'g', $snap->{gen}, $_) } qw(groups sites users) ],
        'the generation is users, sites and groups (no stage left)';
    $first = $st;
};

subtest 'full sync: data matches the ground truth' => sub {
    my $snap = snapshot($t);
    compare_with_truth($snap, $truth1, 'first sync');

    my $users = $snap->{users};
    my @v2 = v2_users($truth1);

    my @intl = grep { $_->{name} =~ /[^\x00-\x7f]/ } @v2;
    cmp_ok scalar @intl, '>=', 5, 'the org has users with non-ASCII names';
    my @bad = grep { !$users->{ $_->{accountId} }
                     || ($users->{ $_->{accountId} }{name} // '') ne $_->{name} } @intl;
    ok !@bad, scalar(@intl) . ' non-ASCII names round-trip exactly'
        or diag join "\n", map { "$_->{accountId}: $_->{name}" } @bad;

    my @nomail = grep { !defined $_->{email} } @v2;
    cmp_ok scalar @nomail, '>=', 1, 'the org has users without email';
    @bad = grep { my $u = $users->{ $_->{accountId} }; !$u || !exists $u->{email} || defined $u->{email} } @nomail;
    ok !@bad, scalar(@nomail) . ' users without email have "email": null'
        or diag join "\n", map { $_->{accountId} } @bad;

    ok !grep({ $_->{accountType} ne 'atlassian' && $users->{ $_->{accountId} } } @{ $truth1->{users} }),
        'app and customer accounts (v1 only) are not in the snapshot';

    my (%tcount, %scount);
    $tcount{ $_->{status} }++ for @v2;
    $scount{ $_->{status} // 'null' }++ for values %$users;
    is_deeply \%scount, \%tcount, 'users per status match: '
        . join(', ', map { "$_ $tcount{$_}" } sort keys %tcount);
    cmp_ok scalar keys %tcount, '>=', 4, 'the org has users in at least four statuses';
    my @admins = grep { grep { $_ eq 'atlassian/org-admin' } @{ $_->{platformRoles} } } @v2;
    ok !grep({ !grep { $_ eq 'atlassian/org-admin' } @{ $users->{ $_->{accountId} }{platform_roles} || [] } } @admins),
        scalar(@admins) . ' org admins have the platform role';
    ok !grep({ grep { ($_->{id} // '') =~ /^ari:/ } @{ $_->{groups} } } values %$users),
        'group ids are plain ids, not ARIs';

    my @dups;
    for my $u (values %{ $snap->{users} }) {
        for my $p (@{ $u->{products} }) {
            my %seen;
            push @dups, "$u->{id} $p->{resource_id}: @{ $p->{roles} }"
                if grep { $seen{$_}++ } @{ $p->{roles} };
        }
    }
    {
        ok !@dups, 'each role appears once per product entry'
            or diag join "\n", @dups[ 0 .. ($#dups > 4 ? 4 : $#dups) ];
    }
    my @unknown;
    for my $u (values %{ $snap->{users} }) {
        push @unknown, map { "$u->{id}: $_->{resource_id} site=" . ($_->{site} // 'null')
            . ' product=' . ($_->{product} // 'null') }
            grep { ($_->{site} // '') eq 'unknown' || !defined $_->{product} } @{ $u->{products} };
    }
    {
        ok !@unknown, 'every product entry names a known site and a product'
            or diag join "\n", scalar(@unknown) . ' entries, e.g.:', @unknown[ 0 .. ($#unknown > 2 ? 2 : $#unknown) ];
        ok !grep({ grep { $_ eq 'unknown' } @{ $_->{sites} } } values %{ $snap->{users} }),
            'no user lists a site "unknown"';
    }
};

subtest 'second full sync with {"scope":"full"}: a new generation' => sub {
    my ($st, $r) = run_sync($t, json => { scope => 'full' });
    json_contains $r->{json}, { trigger => 'manual', state => 'queued' }, '202 queued';
    json_contains $st, { state => 'succeeded', snapshot => {
        generation => $first->{snapshot}{generation} + 1, sync_id => $r->{json}{id} } },
        'succeeded; generation + 1';
    my $old = $first->{snapshot}{generation};
    is $t->redis('HLEN', org_key($t, 'g', $old, 'users')), scalar(v2_users($truth1)),
        'the previous generation is kept during umlo_sync_grace';
    compare_with_truth(snapshot($t), truth($t), 'second sync');
};

subtest 'request bodies: chunked, too large' => sub {
    my $out = raw_http("POST /umlo/sync HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        . "Content-Type: application/json\r\nConnection: close\r\n\r\n"
        . "5\r\n{\"sco\r\nb\r\npe\":\"full\"}\r\n0\r\n\r\n");
    my ($code) = $out =~ m{^HTTP/1\.1 (\d{3})};
    is $code, 202, 'a chunked {"scope":"full"} in two chunks is accepted';
    my ($body) = $out =~ /\r\n\r\n(.*)\z/s;
    my $doc = eval { decode_json($body) } || {};
    my $st = wait_sync($t, $doc->{id});
    is $st && $st->{state}, 'succeeded', 'and that sync succeeds';

    # the part read with the headers stays a buffer of its own: the
    # body was once parsed from that first buffer only (invalid_json)
    my $split = '{"scope":' . (' ' x 3000) . '"full"}';
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->nginx_port,
        Timeout => 5) or die "connect: $!";
    $s->autoflush(1);
    print {$s} "POST /umlo/sync HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        . "Content-Length: " . length($split) . "\r\nConnection: close\r\n\r\n" . substr($split, 0, 100);
    select(undef, undef, undef, 0.3);
    print {$s} substr($split, 100);
    $out = '';
    my $sel = IO::Select->new($s);
    while ($sel->can_read(5)) {
        my $n = sysread($s, my $buf, 65536);
        last unless $n;
        $out .= $buf;
    }
    push @Umlo::Sync::RESPONSES, $out;
    ($code) = $out =~ m{^HTTP/1\.1 (\d{3})};
    is $code, 202, 'a body arriving after the headers, in two reads, is accepted'
        or diag $out;
    ($body) = $out =~ /\r\n\r\n(.*)\z/s;
    $doc = eval { decode_json($body) } || {};
    $st = wait_sync($t, $doc->{id});
    is $st && $st->{state}, 'succeeded', 'and that sync succeeds';

    my $r = req($t, POST => '/umlo/sync', body => '{"scope":"full"' . (' ' x 70000) . '}',
        headers => { 'Content-Type' => 'application/json' });
    is $r->{status}, 413, 'a body larger than umlo_body_max (64k): 413';
    json_contains $r->{json}, { error => { status => 413, code => 'body_too_large',
        message => qr/umlo_body_max/ } }, 'the error names the setting';
    is status_json($t)->{sync}{id}, $doc->{id}, 'no sync started';
};

# --------------------------------------------------------------------------

subtest 'while running: progress, 409, DELETE cancels' => sub {
    my $prev = status_json($t);
    my $gen = $prev->{snapshot}{generation};
    my $users_before = $t->redis('HGETALL', org_key($t, 'g', $gen, 'users'));
    sim_ok(POST => 'config', { latencyMs => 1200 });

    my $r = req($t, POST => '/umlo/sync');
    is $r->{status}, 202, 'slow sync accepted';
    my $id = $r->{json}{id};

    my $running = wait_for(sub {
        my $s = status_json($t);
        return $s->{state} eq 'running' && ($s->{sync}{phase} // '') eq 'fetch' ? $s : 0;
    }, timeout => 10);
    json_contains $running, {
        state => 'running', running => JSON::PP::true,
        sync => { id => $id, state => 'running', phase => 'fetch', error => undef,
            started_at => sub { $_[0] =~ /^\d+$/ }, finished_at => undef,
            progress => { done => sub { $_[0] >= 0 }, percent => sub { $_[0] >= 0 && $_[0] <= 99 } },
        },
        snapshot => { generation => $gen },
    }, 'running, phase fetch, previous snapshot still current';

    my $c = req($t, POST => '/umlo/sync');
    is $c->{status}, 409, 'a second POST: 409';
    json_contains $c->{json}, { error => { status => 409, code => 'sync_running', message => qr/running/ },
        sync => { id => $id, state => 'running' } }, '409 names the running sync';
    my $c2 = req($t, POST => '/umlo/sync', json => { users => ['x'] });
    is $c2->{status}, 409, 'a selective POST: 409 too';
    json_contains $c2->{json}, { error => { code => 'sync_running' }, sync => { id => $id } }, 'same sync';

    my $d = req($t, DELETE => '/umlo/sync');
    is $d->{status}, 202, 'DELETE: 202';
    json_contains $d->{json}, { cancelling => JSON::PP::true, sync => { id => $id } }, 'cancelling the sync';

    my $t0 = time;
    my $st = wait_sync($t, $id, timeout => 20);
    my $took = time - $t0;
    sim_ok(POST => 'config', { latencyMs => 0 });
    json_contains $st, { state => 'cancelled', running => JSON::PP::false,
        sync => { id => $id, state => 'cancelled', finished_at => sub { $_[0] =~ /^\d+$/ },
            error => { where => 'cancel', message => qr/cancel.*previous data stays current/i } },
        snapshot => $prev->{snapshot} }, 'cancelled; the snapshot block is unchanged';
    cmp_ok $took, '<', 6, sprintf('it stopped promptly (%.1fs)', $took);
    is current_gen($t), $gen, 'the current generation did not change';
    is_deeply $t->redis('HGETALL', org_key($t, 'g', $gen, 'users')), $users_before,
        'and its users are untouched';
    is $t->redis('ZCARD', org_key($t, 'building')), 0, 'the cancelled generation is not left building';
    is_deeply gen_keys($gen + 1), [], 'and its keys are gone';
    is $t->redis('EXISTS', org_key($t, 'lock')), 0, 'lock released';
    json_contains history()->[0], { id => $id, state => 'cancelled' }, 'history records the cancel';
    my $d2 = req($t, DELETE => '/umlo/sync');
    is $d2->{status}, 409, 'DELETE afterwards: 409 not_running';
    my ($ok) = run_sync($t);
    is $ok && $ok->{state}, 'succeeded', 'the next sync succeeds';
};

subtest 'history is trimmed to umlo_sync_history' => sub {
    my @ids;
    for (1 .. 3) {
        my ($st, $r) = run_sync($t);
        push @ids, $r->{json}{id};
        is $st && $st->{state}, 'succeeded', "sync $_ succeeded";
    }
    my $h = history();
    is scalar @$h, 3, 'three entries kept (umlo_sync_history 3)';
    is_deeply [ map { $_->{id} } @$h ], [ reverse @ids ], 'the newest three, newest first';
    for my $e (@$h) {
        json_contains $e, { id => qr/./, trigger => 'manual', state => 'succeeded',
            started_at => qr/^\d+$/, finished_at => qr/^\d+$/, duration_ms => qr/^\d+$/,
            counts => { users => qr/^\d+$/ }, api => { calls => qr/^\d+$/ } }, "entry $e->{id}";
    }
};

subtest 'old generations are dropped after umlo_sync_grace' => sub {
    my ($sa) = run_sync($t);
    my $ga = $sa->{snapshot}{generation};
    my ($sb) = run_sync($t);
    my $gb = $sb->{snapshot}{generation};
    is $gb, $ga + 1, 'two syncs, two generations';
    cmp_ok scalar @{ gen_keys($ga) }, '>=', 3, "generation $ga is still there right after";
    my $score = $t->redis('ZSCORE', org_key($t, 'retired'), $ga);
    ok defined $score, "generation $ga is retired";
    # wait until the grace has passed on the Redis clock
    ok wait_for(sub {
        my ($s, $us) = @{ $t->redis('TIME') };
        return $s * 1000 + $us / 1000 > $score + 50;
    }, timeout => 5), 'grace period over';
    my ($c) = run_sync($t);
    is $c->{state}, 'succeeded', 'a third sync';
    is_deeply gen_keys($ga), [], "generation $ga is gone";
    cmp_ok scalar @{ gen_keys($gb) }, '>=', 3, "generation $gb (retired less than 1s ago) stays";
    my @all = grep { /:g:(\d+):/ } @{ $t->redis('KEYS', org_key($t, 'g', '*')) };
    my %gens = map { /:g:(\d+):/; $1 => 1 } @all;
    is_deeply [ sort { $a <=> $b } keys %gens ], [ $gb, $c->{snapshot}{generation} ],
        'only the current and the last retired generation exist';
};

# --------------------------------------------------------------------------

subtest 'selective sync after changes in the org' => sub {
    my $truth = truth($t);
    my @active = grep { $_->{accountStatus} eq 'active' && $_->{membershipStatus} eq 'active' }
        v2_users($truth);
    my ($u1, $u2, $u3, $u4, $u5) = map { $_->{accountId} } @active[ 0 .. 4 ];
    my $snap0 = snapshot($t);
    my $gen = $snap0->{gen};

    # u1: new name and no email; u2: moved between groups; u3: deactivated;
    # u4: removed from the org; u5: renamed but not requested
    sim_ok(PATCH => "users/$u1", { name => "Ærøskøbing Ünïcødé 🚀 測試", email => undef });
    my %in = map { $_->{id} => 1 } @{ $snap0->{users}{$u2}{groups} };
    my ($grant_group) = grep { !$in{ $_->{id} } && @{ $_->{roleAssignments} } } @{ $truth->{groups} };
    my ($leave_group) = grep { $in{ $_->{id} } } @{ $truth->{groups} };
    sim_ok(POST => "groups/$grant_group->{id}/members", { add => [$u2] });
    sim_ok(POST => "groups/$leave_group->{id}/members", { remove => [$u2] }) if $leave_group;
    sim_ok(POST => "users/$u3/deactivate");
    sim_ok(DELETE => "users/$u4");
    sim_ok(PATCH => "users/$u5", { name => 'Not Requested' });

    my ($st, $r) = run_sync($t, json => { users => [ $u1, $u2, $u3, $u4 ] });
    json_contains $r->{json}, { trigger => 'selective', users_requested => [ $u1, $u2, $u3, $u4 ] },
        '202 selective';
    json_contains $st, { state => 'succeeded', sync => { trigger => 'selective', state => 'succeeded',
        counts => { users => 3, removed => 1 }, error => undef },
        snapshot => { generation => $gen } }, 'succeeded; same generation';

    my $after = truth($t);
    my $snap = snapshot($t);
    is $snap->{gen}, $gen, 'written into the current generation';
    my %want = map { $_->{accountId} => $_ } v2_users($after);
    ok !exists $snap->{users}{$u4}, 'the removed user is gone from the snapshot';
    # compare only the requested users with the truth
    my $sub = { %$snap, users => { map { $_ => $snap->{users}{$_} } $u1, $u2, $u3 } };
    my $subtruth = { %$after, users => [ map { $want{$_} } $u1, $u2, $u3 ] };
    compare_with_truth($sub, $subtruth, 'selectively synced users', users_only => 1);
    is $snap->{users}{$u1}{name}, "Ærøskøbing Ünïcødé 🚀 測試", 'new non-ASCII name, exactly';
    ok exists $snap->{users}{$u1}{email} && !defined $snap->{users}{$u1}{email}, 'email now null';
    ok((grep { $_->{id} eq $grant_group->{id} } @{ $snap->{users}{$u2}{groups} }), 'u2 is in the new group');
    json_contains $snap->{users}{$u3}, { status => 'deactivated', account_status => 'inactive' },
        'u3 is deactivated';
    is_deeply $snap->{users}{$u5}, $snap0->{users}{$u5}, 'a user that was not requested is unchanged';
    is scalar keys %{ $snap->{users} }, scalar(keys %{ $snap0->{users} }) - 1, 'one user fewer';

    # a full sync agrees with the selective one
    my ($full) = run_sync($t);
    is $full && $full->{state}, 'succeeded', 'a full sync after the selective one';
    my $snap2 = snapshot($t);
    is_deeply $snap2->{users}{$_}, $snap->{users}{$_}, "full sync gives the same document for $_"
        for $u1, $u2, $u3;
    compare_with_truth($snap2, truth($t), 'full sync after the changes');
};

subtest 'selective sync of unknown ids' => sub {
    my ($st) = run_sync($t, json => { users => [ 'no-such-user', '557058:00000000-0000-0000-0000-000000000000' ] });
    json_contains $st, { state => 'succeeded', sync => { counts => { users => 0, removed => 2 } } },
        'succeeds with nothing found';
};

# --------------------------------------------------------------------------

subtest 'users added through the admin API: names, emails' => sub {
    my @names = ("Ωmega Ελληνικά", "אבי כהן", "Ñandú Güemes", "Emoji 🙂 Person", "Tab\tand \"quotes\" \\ slash",
                 "Zero\x{200b}Width", "Ａｂｃ Fullwidth", "Ĳsbrand van der Ĳssel");
    my $created = sim_ok(POST => 'users', { users => [
        (map { { name => $_, email => undef, groups => ['engineering'], accountType => 'atlassian' } } @names),
        { name => 'Plain Person', email => 'plain.person@example.test', accountType => 'atlassian' },
    ] })->{created};
    is scalar @$created, @names + 1, 'users created in the simulator';
    my ($st) = run_sync($t);
    is $st && $st->{state}, 'succeeded', 'full sync';
    my $snap = snapshot($t);
    for my $i (0 .. $#names) {
        my $u = $snap->{users}{ $created->[$i] };
        is $u && $u->{name}, $names[$i], "name round-trips exactly: $names[$i]";
        ok $u && exists $u->{email} && !defined $u->{email}, 'email null';
    }
    my $plain = $snap->{users}{ $created->[-1] };
    is $plain && $plain->{email}, 'plain.person@example.test', 'email kept';
    compare_with_truth($snap, truth($t), 'after adding users');
};

subtest 'a larger org: several pages of users and groups' => sub {
    $t->restart_sim(users => 1500, groups => 140, sites => 4, seed => 6);
    my ($st) = run_sync($t, timeout => 60);
    is $st && $st->{state}, 'succeeded', 'full sync succeeded';
    my $truth = truth($t);
    my $snap = snapshot($t);
    check_snapshot_meta($st, $snap, $truth, 'larger org');
    compare_with_truth($snap, $truth, 'larger org');
    cmp_ok scalar keys %{ $snap->{groups} }, '>', 100, 'more groups than one page';
};

subtest 'an org without users' => sub {
    $t->restart_sim(users => 0);
    my $truth = truth($t);
    is scalar @{ $truth->{users} }, 0, 'the simulated org has no users';
    my ($st) = run_sync($t);
    json_contains $st, { state => 'succeeded', sync => { progress => { done => 0, percent => 100 } },
        snapshot => { counts => { users => 0, groups => $truth->{counts}{groups} } } },
        'succeeds with 0 users';
    my $snap = snapshot($t);
    is scalar keys %{ $snap->{users} }, 0, 'no users in the snapshot';
    compare_with_truth($snap, $truth, 'empty org');
};

final_checks($t);
done_testing;
