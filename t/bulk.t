use strict;
use warnings;

# umlo_bulk over HTTP against the simulator: every action changes the
# simulator's ground truth (/__sim/org) as planned, a dry run changes
# nothing and its token runs exactly its plan, the protections hold, a
# user changed behind our back is skipped, stale data is refused unless
# forced, the audit log (JSON and CSV) and bad input.

use Test::More;
use MIME::Base64 ();
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;

my $t = Umlo::Test->new;
my $anchor = int time;

my $http = join "\n",
    'umlo_bulk_protected_group bulk-protected;',
    'umlo_bulk_max_users 6;',
    'umlo_sync_retries 1;',
    'umlo_bulk_actor $http_x_umlo_admin;';
my $locations = join "\n",
    'location /umlo/users { umlo_users; }',
    'location /umlo/bulk { umlo_bulk; }';

$t->start_redis;
$t->start_sim(profile => 'fast', users => 30, sites => 2, groups => 4, seed => 7,
    args => [ '--anchor', $anchor ]);

# --------------------------------------------------------------------------
# the org: a group granting one product (and another), a protected group,
# a plain group, and users in every situation the rules distinguish

my $truth = truth($t);
my ($site) = grep { @{ $_->{products} } >= 2 } @{ $truth->{sites} };
die "no site with two products\n" unless $site;
(my $host = $site->{hostUrl}) =~ s{^\w+://}{};
$host =~ s{[/:].*}{}s;
my ($p1, $p2) = @{ $site->{products} }[0, 1];

my $g_jira = $t->sim_ok(POST => 'groups', { name => 'bulk-access', roles => [
    { resourceId => $p1->{id}, role => 'atlassian/user' },
    { resourceId => $p2->{id}, role => 'atlassian/user' } ] })->{id};
my $g_prot = $t->sim_ok(POST => 'groups', { name => 'bulk-protected' })->{id};
my $g_extra = $t->sim_ok(POST => 'groups', { name => 'bulk-extra' })->{id};

my $org_ari = "ari:cloud:platform::org/" . $t->org;
my %U = (
    alice => { groups => ['bulk-access'] },
    bob   => { groups => ['bulk-access'] },
    carol => { groups => ['bulk-access'], claimStatus => 'unmanaged' },
    dave  => { groups => ['bulk-access'],
               roles => [ { resourceId => $org_ari, role => 'atlassian/org-admin' } ] },
    erin  => { groups => ['bulk-access', 'bulk-protected'] },
    frank => { groups => ['bulk-extra'] },
    gina  => { membershipStatus => 'suspended' },
    hank  => { accountStatus => 'inactive' },
);
$t->sim_ok(POST => 'users', { users => [ map { {
    accountId => "bk-$_", name => "Bulkuser \u$_", email => "$_\@bulk.example.com",
    %{ $U{$_} } } } sort keys %U ] });

$t->start_nginx(http_config => umlo_http_config($http),
    config => umlo_locations($locations));

my $st = first_sync($t);

sub user { $t->sim_admin(GET => "org/users/bk-$_[0]")->{json} }
sub in_group { my ($u, $g) = @_; scalar grep { $_ eq $g } @{ user($u)->{groups} } }

sub bulk {
    my ($json, %o) = @_;
    return req($t, POST => '/umlo/bulk', json => $json, name => $o{name},
        headers => { 'X-Umlo-Admin' => $o{who} // 'tester',
                     ($o{auth} ? (Authorization => "Basic $o{auth}") : ()) });
}

sub wait_job {
    my ($id, %o) = @_;
    my $doc;
    wait_for(sub {
        my $r = req($t, GET => "/umlo/bulk/jobs/$id", name => $o{name});
        $doc = $r->{json};
        return $r->{status} == 200 && $doc->{state} =~ /^(?:succeeded|failed|cancelled)$/;
    }, timeout => 20, interval => 0.1);
    return $doc;
}

sub by_id { return { map { ($_->{id} =~ s/^bk-//r) => $_ } @{ $_[0]{users} } } }

sub snap_user {
    my ($name) = @_;
    my $j = $t->redis('HGET', org_key($t, 'g', current_gen($t), 'users'), "bk-$name");
    return $j ? decode_json($j) : undef;
}

# --------------------------------------------------------------------------

subtest 'bad input: 4xx JSON naming the problem' => sub {
    my @cases = (
        [ 'not JSON', '{"action":', 400, 'invalid_json' ],
        # jansson quotes one byte of the escaped character: the message
        # was not UTF-8 and went missing from the answer
        [ 'an escaped 2-byte character', qq({"ul\\\xde\x8d":1}), 400, 'invalid_json',
          qr/invalid escape near '"ul\\\?'/ ],
        [ 'not an object', '[1]', 400, 'invalid_body' ],
        [ 'unknown field', { action => 'suspend', users => ['bk-alice'], color => 1 },
          400, 'unknown_field', qr/"color"/ ],
        [ 'unknown action', { action => 'delete', users => ['bk-alice'] },
          400, 'invalid_action', qr/suspend/ ],
        [ 'group action without group', { action => 'add_to_group', users => ['bk-alice'] },
          400, 'missing_field', qr/"group"/ ],
        [ 'product action without product',
          { action => 'remove_product', site => $host, users => ['bk-alice'] },
          400, 'missing_field', qr/"product"/ ],
        [ 'field the action does not take',
          { action => 'suspend', group => 'x', users => ['bk-alice'] },
          400, 'unexpected_field', qr/"group"/ ],
        [ 'users and filter', { action => 'suspend', users => ['bk-alice'], filter => 'q=x' },
          400, 'invalid_target' ],
        [ 'no target', { action => 'suspend' }, 400, 'invalid_target' ],
        [ 'empty users', { action => 'suspend', users => [] }, 400, 'invalid_users' ],
        [ 'bad account id', { action => 'suspend', users => ['bk-alice', 'a b'] },
          400, 'invalid_users', qr/\[1\]/ ],
        [ 'dry_run not boolean', { action => 'suspend', users => ['bk-alice'], dry_run => 1 },
          400, 'invalid_field', qr/"dry_run"/ ],
        [ 'filter paging', { action => 'suspend', filter => 'q=bulk&limit=5' },
          400, 'invalid_filter', qr/"limit"/ ],
        [ 'token with more', { token => 'a' x 32, action => 'suspend' },
          400, 'unexpected_field', qr/"action"/ ],
        [ 'malformed token', { token => 'xyz' }, 400, 'invalid_token' ],
        [ 'unknown token', { token => 'a' x 32 }, 404, 'unknown_token' ],
        [ 'unknown group', { action => 'add_to_group', group => 'no-such-group',
          users => ['bk-alice'] }, 422, 'unknown_group', qr/no-such-group/ ],
        [ 'unknown product', { action => 'remove_product', site => $host,
          product => 'no-such-product', users => ['bk-alice'] }, 422, 'unknown_product' ],
        [ 'too many users', { action => 'suspend', users => [ map { "bk-x$_" } 1 .. 7 ] },
          422, 'too_many_users', qr/umlo_bulk_max_users \(6\)/ ],
        [ 'filter matching too many', { action => 'suspend', filter => 'q=bulkuser' },
          422, 'too_many_users', qr/matches 8 users/ ],
    );
    for my $c (@cases) {
        my ($what, $body, $status, $code, $msg) = @$c;
        my $r = ref $body
            ? bulk($body)
            : req($t, POST => '/umlo/bulk', body => $body,
                  headers => { 'Content-Type' => 'application/json' });
        is $r->{status}, $status, "$what: $status";
        json_contains $r->{json}, { error => { status => $status, code => $code,
            ($msg ? (message => $msg) : ()) } }, "$what: $code"
            or diag $r->{body};
    }

    my $r = bulk({ action => 'suspend', filter => 'q=bulkuser&bogus=1' });
    is $r->{status}, 400, 'filter with an unknown parameter: 400';
    json_contains $r->{json}, { error => { code => 'unknown_parameter', param => 'bogus',
        field => 'filter' } }, 'the users API error, naming the filter';

    $r = req($t, PUT => '/umlo/bulk', body => '{}');
    is $r->{status}, 405, 'PUT: 405';
    is $r->{headers}{allow}, 'POST', 'the location itself takes POST';
    $r = req($t, POST => '/umlo/bulk/jobs/b-1', body => '{}');
    is $r->{status}, 405, 'POST below the location: 405';
    is $r->{headers}{allow}, 'GET, HEAD', 'jobs are read with GET';
    is req($t, GET => '/umlo/bulk/other')->{status}, 404, 'an unknown path: 404';
    $r = req($t, GET => '/umlo/bulk/jobs/b-0-nope');
    is $r->{status}, 404, 'unknown job: 404';
    json_contains $r->{json}, { error => { code => 'unknown_job' } }, 'unknown_job';
    $r = req($t, GET => '/umlo/bulk/audit?limit=0');
    is $r->{status}, 400, 'audit limit=0: 400';

    ok in_group('alice', $g_jira) && user('alice')->{membershipStatus} eq 'active',
        'nothing was changed';
};

my ($dry, $token);

subtest 'dry run of a filter: who and how, nothing changed' => sub {
    my $before = truth($t);
    $t->sim_ok(DELETE => 'stats');
    my $r = bulk({ action => 'remove_product', site => $host, product => $p1->{key},
                   filter => 'q=bulkuser&group=bulk-access' });
    is $t->sim_admin(GET => 'stats')->{json}{total}, 0, 'a dry run calls no Atlassian API';
    is $r->{status}, 200, 'dry run: 200' or diag $r->{body};
    $dry = $r->{json};
    ok $dry->{dry_run}, 'a filter is a dry run by default';
    is $dry->{state}, 'planned', 'state planned';
    is $dry->{requested_by}, 'tester', 'who asked, from umlo_bulk_actor';
    like $dry->{token}, qr/^[0-9a-f]{32}$/, 'a token';
    cmp_ok $dry->{data}{age_seconds}, '<', 60, 'the age of the data';
    my $u = by_id($dry);
    is_deeply [ sort keys %$u ], [qw(alice bob carol dave erin)], 'the members of the filter';
    for my $n (qw(alice bob carol)) {
        is $u->{$n}{outcome}, 'planned', "$n: planned";
        is_deeply [ map { "$_->{method} $_->{path}" } @{ $u->{$n}{steps} } ],
            [ "DELETE /admin/v2/orgs/" . $t->org . "/directories/-/groups/$g_jira/memberships/bk-$n" ],
            "$n: leaves the granting group";
        is_deeply $u->{$n}{also_removes}, [ { site => $host, product => $p2->{key} } ],
            "$n: the other product of that group is named";
    }
    is $u->{dave}{outcome}, 'protected', 'org admin: protected';
    like $u->{dave}{reason}, qr/organization admins/, 'with the reason';
    is $u->{erin}{outcome}, 'protected', 'protected group: protected';
    like $u->{erin}{reason}, qr/$g_prot/, 'naming the group';
    json_contains $dry->{counts}, { targets => 5, planned => 3, protected => 2 }, 'counts';

    my $after = truth($t);
    is_deeply [ map { [ $_->{accountId}, $_->{groups}, $_->{membershipStatus} ] } @{ $after->{users} } ],
        [ map { [ $_->{accountId}, $_->{groups}, $_->{membershipStatus} ] } @{ $before->{users} } ],
        'the simulator is unchanged';
    my $job = req($t, GET => "/umlo/bulk/jobs/$dry->{id}")->{json};
    is $job->{state}, 'planned', 'the dry run can be read back';
    $token = $dry->{token};
};

subtest 'a body nginx keeps in two buffers' => sub {
    my $body = '{"action":"suspend",' . (' ' x 3000) . '"users":["bk-frank"],"dry_run":true}';
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->nginx_port,
        Timeout => 5) or die "connect: $!";
    $s->autoflush(1);
    print {$s} "POST /umlo/bulk HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        . 'Content-Length: ' . length($body) . "\r\nConnection: close\r\n\r\n"
        . substr($body, 0, 100);
    sleep 0.3;
    print {$s} substr($body, 100);
    my $out = read_to_close($s, 5);
    like $out, qr{^HTTP/1\.1 200 }, 'read whole: 200' or diag $out;
    like $out, qr/"bk-frank"/, 'the plan names the user';
};

subtest 'the token runs the plan; a user changed meanwhile is skipped' => sub {
    # bob is suspended behind the module's back
    $t->sim_ok(POST => 'users/bk-bob/suspend');

    my $rev0 = $t->redis('HGET', org_key($t, 'current'), 'rev') // 0;
    $t->sim_ok(DELETE => 'stats');
    my $r = bulk({ token => $token }, who => 'approver');
    is $r->{status}, 202, 'token accepted: 202' or diag $r->{body};
    is $r->{json}{dry_run_id}, $dry->{id}, 'refers to its dry run';
    my $job = wait_job($r->{json}{id});
    is $job->{state}, 'succeeded', 'job succeeded';
    is_deeply [ map { [ $_->{id}, $_->{steps} ] } @{ $job->{users} } ],
        [ map { [ $_->{id}, $_->{steps} ] } @{ $dry->{users} } ], 'exactly the dry run plan';
    my $u = by_id($job);
    is $u->{alice}{outcome}, 'done', 'alice: done';
    is $u->{carol}{outcome}, 'done', 'carol: done';
    is $u->{bob}{outcome}, 'skipped', 'bob: skipped';
    like $u->{bob}{reason}, qr/membership_status was active, is now suspended/, 'with why';
    is $u->{dave}{outcome}, 'protected', 'dave untouched';
    json_contains $job->{counts}, { done => 2, skipped => 1, protected => 2 }, 'counts';
    my $ep = $t->sim_admin(GET => 'stats')->{json}{endpoints};
    my $dir = '/admin/v2/orgs/{orgId}/directories/{directoryId}';
    is $ep->{"DELETE $dir/groups/{groupId}/memberships/{accountId}"}{count}, 2,
        "the simulator's statistics: two memberships removed, no more";
    is $ep->{"POST $dir/users/search"}{count}, 5, 'three re-reads before, two after';
    is scalar(grep { !/users\/search|memberships/ } keys %$ep), 0, 'no other call';

    ok !in_group('alice', $g_jira), 'alice left the group in the simulator';
    ok !in_group('carol', $g_jira), 'carol too';
    ok in_group('bob', $g_jira), 'bob did not';
    ok in_group('dave', $g_jira) && in_group('erin', $g_jira), 'the protected stay';
    ok !grep({ $_ eq $p1->{id} } @{ user('alice')->{billableOn} }), 'alice holds no seat on it';

    ok !grep({ $_->{id} eq $g_jira } @{ snap_user('alice')->{groups} }),
        'the snapshot has alice updated';
    is $t->redis('HGET', org_key($t, 'current'), 'rev'), $rev0 + 2, 'revision bumped per user';
    my $row = req($t, GET => '/umlo/users/bk-alice')->{json}{data};
    ok !grep({ $_->{id} eq $g_jira } @{ $row->{groups} }), 'the users API shows it';
    ok !defined $t->redis('GET', org_key($t, 'lock')), 'the org lock is released';

    $r = bulk({ token => $token });
    is $r->{status}, 404, 'a token runs once';
    $t->sim_ok(POST => 'users/bk-bob/restore');
};

subtest 'a token is bound to the snapshot version' => sub {
    my $r = bulk({ action => 'suspend', users => ['bk-frank'], dry_run => JSON::PP::true });
    is $r->{status}, 200, 'dry run of explicit users' or diag $r->{body};
    my ($st) = run_sync($t, json => { users => ['bk-bob'] });
    is $st && $st->{state}, 'succeeded', 'a selective sync changed the snapshot';
    $r = bulk({ token => $r->{json}{token} });
    is $r->{status}, 409, 'old token: 409';
    json_contains $r->{json}, { error => { code => 'plan_outdated' } }, 'plan_outdated';
    is user('frank')->{membershipStatus}, 'active', 'frank was not suspended';
};

sub run_job {
    my ($json) = @_;
    my $r = bulk($json);
    is $r->{status}, 202, "$json->{action}: 202" or diag $r->{body};
    return wait_job($r->{json}{id}) // {};
}

subtest 'suspend and restore' => sub {
    my $job = run_job({ action => 'suspend', users => ['bk-frank', 'bk-gina'] });
    my $u = by_id($job);
    is $u->{frank}{outcome}, 'done', 'frank suspended';
    is $u->{gina}{outcome}, 'no_change', 'gina already was';
    is user('frank')->{membershipStatus}, 'suspended', 'in the simulator';
    is snap_user('frank')->{membership_status}, 'suspended', 'in the snapshot';
    $job = run_job({ action => 'restore', users => ['bk-frank'] });
    is by_id($job)->{frank}{outcome}, 'done', 'frank restored';
    is user('frank')->{membershipStatus}, 'active', 'in the simulator';
};

subtest 'an Atlassian error fails that user only' => sub {
    $t->sim_ok(POST => 'faults', { error5xx => { match => 'suspend$', statuses => [500], count => 2 } });
    my $job = run_job({ action => 'suspend', users => ['bk-frank', 'bk-alice'] });
    $t->sim_ok(DELETE => 'faults');
    my $u = by_id($job);
    is $job->{state}, 'succeeded', 'the job ends';
    is $u->{frank}{outcome}, 'failed', 'frank failed';
    like $u->{frank}{reason}, qr/500/, "with Atlassian's answer";
    is user('frank')->{membershipStatus}, 'active', 'frank unchanged';
    is $u->{alice}{outcome}, 'done', 'alice, next, done';
    json_contains $job->{counts}, { failed => 1, done => 1 }, 'counts';
    run_job({ action => 'restore', users => ['bk-alice'] });
};

subtest 'deactivate and reactivate: managed accounts only' => sub {
    my $job = run_job({ action => 'deactivate', users => ['bk-frank', 'bk-carol', 'bk-hank'] });
    my $u = by_id($job);
    is $u->{frank}{outcome}, 'done', 'frank deactivated';
    is user('frank')->{accountStatus}, 'inactive', 'in the simulator';
    is $u->{carol}{outcome}, 'refused', 'unmanaged carol refused';
    like $u->{carol}{reason}, qr/not managed.*suspend/, 'saying what Atlassian allows';
    is user('carol')->{accountStatus}, 'active', 'carol unchanged';
    is $u->{hank}{outcome}, 'no_change', 'hank already inactive';
    $job = run_job({ action => 'reactivate', users => ['bk-frank'] });
    is by_id($job)->{frank}{outcome}, 'done', 'frank reactivated';
    is user('frank')->{accountStatus}, 'active', 'in the simulator';
};

subtest 'add to and remove from a group' => sub {
    my $job = run_job({ action => 'add_to_group', group => 'bulk-extra',
                        users => ['bk-alice', 'bk-frank'] });
    my $u = by_id($job);
    is $u->{alice}{outcome}, 'done', 'alice added';
    is $u->{frank}{outcome}, 'no_change', 'frank already in it';
    ok in_group('alice', $g_extra), 'in the simulator';
    $job = run_job({ action => 'remove_from_group', group => $g_extra, users => ['bk-alice'] });
    is by_id($job)->{alice}{outcome}, 'done', 'alice removed (group named by id)';
    ok !in_group('alice', $g_extra), 'in the simulator';
};

subtest 'protections hold for explicit users' => sub {
    my $job = run_job({ action => 'suspend', users => ['bk-dave', 'bk-erin'] });
    my $u = by_id($job);
    is $u->{dave}{outcome}, 'protected', 'org admin';
    is $u->{erin}{outcome}, 'protected', 'protected group';
    is user($_)->{membershipStatus}, 'active', "$_ not suspended" for qw(dave erin);
};

subtest 'the org lock: no job while a sync holds it' => sub {
    $t->redis('SET', org_key($t, 'lock'), 'someone-else', 'PX', 10000);
    my $r = bulk({ action => 'suspend', users => ['bk-frank'] });
    is $r->{status}, 409, 'job refused: 409';
    json_contains $r->{json}, { error => { code => 'org_busy' } }, 'org_busy';
    $r = bulk({ action => 'suspend', users => ['bk-frank'], dry_run => JSON::PP::true });
    is $r->{status}, 200, 'a dry run still answers';
    $t->redis('DEL', org_key($t, 'lock'));
    is user('frank')->{membershipStatus}, 'active', 'frank untouched';
};

subtest 'a running job holds the org lock: a sync waits; progress is visible' => sub {
    $t->sim_ok(POST => 'config', { latencyMs => 300 });
    my $r = bulk({ action => 'suspend', users => ['bk-frank', 'bk-alice'] });
    is $r->{status}, 202, 'job accepted' or diag $r->{body};
    my $id = $r->{json}{id};
    my $s = req($t, POST => '/umlo/sync');
    is $s->{status}, 409, 'a sync during the job: 409';
    json_contains $s->{json}, { error => { code => 'sync_running',
        message => qr/bulk job/ } }, 'sync_running, naming bulk jobs';
    my $doc = req($t, GET => "/umlo/bulk/jobs/$id")->{json};
    is $doc->{state}, 'running', 'the job is running';
    cmp_ok $doc->{progress}{done}, '<', 2, 'progress so far';
    is $doc->{progress}{total}, 2, 'of two users';
    $doc = wait_job($id);
    $t->sim_ok(POST => 'config', { latencyMs => 0 });
    is $doc->{state}, 'succeeded', 'the job finished';
    is $doc->{progress}{done}, 2, 'progress complete';
    is user($_)->{membershipStatus}, 'suspended', "$_ suspended" for qw(frank alice);
    my ($st) = run_sync($t);
    is $st && $st->{state}, 'succeeded', 'a sync runs once the job is done';
    run_job({ action => 'restore', users => ['bk-frank', 'bk-alice'] });
    is user($_)->{membershipStatus}, 'active', "$_ restored" for qw(frank alice);
};

subtest 'stale data refused unless forced (second instance)' => sub {
    # no umlo_bulk_actor here: the audit names the basic-auth user
    my $pw = $t->path('htpasswd');
    open my $fh, '>', $pw or die "$pw: $!";
    print $fh 'admin:' . crypt('secret', 'ab') . "\n";
    close $fh;
    $t->start_nginx(name => 'stale',
        http_config => umlo_http_config(join "\n",
            'umlo_bulk_protected_group bulk-protected;', 'umlo_bulk_max_users 6;',
            'umlo_bulk_max_data_age 1s;'),
        config => umlo_locations(join "\n", 'location /umlo/users { umlo_users; }',
            "location /umlo/bulk { auth_basic umlo; auth_basic_user_file $pw; umlo_bulk; }"));
    sleep 2.2;
    my $auth = MIME::Base64::encode_base64('admin:secret', '');
    my $r = bulk({ action => 'suspend', users => ['bk-frank'] }, name => 'stale');
    is $r->{status}, 401, 'the location asks for a password';
    $r = bulk({ action => 'suspend', users => ['bk-frank'] }, name => 'stale', auth => $auth);
    is $r->{status}, 409, 'stale data: 409';
    json_contains $r->{json}, { error => { code => 'stale_data',
        message => qr/umlo_bulk_max_data_age \(1 s\).*force/ } }, 'stale_data, naming the limit';
    is user('frank')->{membershipStatus}, 'active', 'nothing changed';
    $r = bulk({ action => 'suspend', users => ['bk-frank'], force => JSON::PP::true },
        name => 'stale', auth => $auth);
    is $r->{status}, 202, 'forced: 202';
    my $job = wait_job($r->{json}{id});
    is by_id($job)->{frank}{outcome}, 'done', 'ran';
    ok $job->{force}, 'the job says it was forced';
    is $job->{requested_by}, 'admin', 'asked by the basic-auth user';
    is req($t, GET => "/umlo/bulk/jobs/$job->{id}")->{json}{state}, 'succeeded',
        'the other instance sees the job';
    run_job({ action => 'restore', users => ['bk-frank'] });
};

subtest 'a reload stops a running job cleanly' => sub {
    $t->sim_ok(POST => 'config', { latencyMs => 400 });
    my $r = bulk({ action => 'suspend', users => [ map { "bk-$_" } qw(alice bob frank) ] });
    is $r->{status}, 202, 'job accepted' or diag $r->{body};
    my $id = $r->{json}{id};
    wait_for(sub { (req($t, GET => "/umlo/bulk/jobs/$id")->{json}{state} // '') eq 'running' },
        timeout => 10, interval => 0.05);
    $t->reload_nginx;
    my $doc = wait_job($id);
    $t->sim_ok(POST => 'config', { latencyMs => 0 });
    is $doc->{state}, 'cancelled', 'cancelled';
    my %n = map { $_->{outcome} => 1 } @{ $doc->{users} };
    ok $n{not_run}, 'users not reached are not_run';
    like((grep { $_->{outcome} eq 'not_run' } @{ $doc->{users} })[0]{reason},
        qr/reloading or shutting down/, 'saying why');
    ok !defined $t->redis('GET', org_key($t, 'lock')), 'the lock is released';
    my @done = map { $_->{id} =~ s/^bk-//r } grep { $_->{outcome} eq 'done' } @{ $doc->{users} };
    is user($_)->{membershipStatus}, 'suspended', "$_ (done) is suspended" for @done;
    run_job({ action => 'restore', users => [ map { "bk-$_" } @done ] }) if @done;
    is user($_)->{membershipStatus}, 'active', "$_ active" for qw(alice bob frank);
};

subtest 'audit log: JSON and CSV' => sub {
    my $r = req($t, GET => '/umlo/bulk/audit');
    is $r->{status}, 200, 'audit: 200';
    my @e = @{ $r->{json}{data} };
    my ($dry_e) = grep { $_->{id} eq $dry->{id} } @e;
    ok $dry_e, 'the dry run is in it';
    json_contains $dry_e, { who => 'tester', dry_run => JSON::PP::true, action => 'remove_product',
        params => { site => $host, product => $p1->{key} }, state => 'planned' }, 'who, what, dry';
    my ($run) = grep { ($_->{dry_run_id} // '') eq $dry->{id} } @e;
    ok $run, 'the token run is in it';
    json_contains $run, { who => 'approver', dry_run => JSON::PP::false, state => 'succeeded' },
        'who ran it';
    my %out = map { $_->{id} => $_->{outcome} } @{ $run->{users} };
    is_deeply \%out, { 'bk-alice' => 'done', 'bk-bob' => 'skipped', 'bk-carol' => 'done',
        'bk-dave' => 'protected', 'bk-erin' => 'protected' }, 'per-user outcomes';
    like $e[0]{at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'when';

    $r = req($t, GET => '/umlo/bulk/audit?limit=2');
    is scalar @{ $r->{json}{data} }, 2, 'limit';

    is bulk({ action => 'suspend', users => ['bk-frank'], dry_run => JSON::PP::true },
        who => '=HYPERLINK("x")')->{status}, 200, 'a dry run by a strange name';
    $r = req($t, GET => '/umlo/bulk/audit?format=csv');
    is $r->{status}, 200, 'CSV: 200';
    like $r->{headers}{'content-type'}, qr{^text/csv}, 'text/csv';
    my @lines = split /\r\n/, $r->{body};
    is $lines[0], 'at,job,who,action,params,target,dry_run,state,dry_run_id,user,outcome,reason',
        'header';
    my ($bob) = grep { /"\Q$run->{id}\E"/ && /"bk-bob"/ } @lines;
    like $bob, qr/"approver","remove_product",.*"false","succeeded","\Q$dry->{id}\E","bk-bob","skipped","changed in Atlassian/,
        'a row per user';
    is scalar(grep { /"\Q$run->{id}\E"/ } @lines), 5, 'five rows for the run';
    like $lines[1], qr/^"[^"]+","b-[^"]+","'=HYPERLINK\(""x""\)","suspend",/,
        'quoted, and a formula is defused';
};

final_checks($t, names => [qw(main stale)]);

done_testing;
