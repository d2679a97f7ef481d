use strict;
use warnings;
use utf8;

# Real answers of the module against docs/api.yaml: the module is driven
# through its states (no snapshot yet, bad input, a sync running, 409,
# cancelled, failed, succeeded, selective, a re-sync under a cursor, Redis
# gone) and every answer is checked by t/lib/Umlo/OpenAPI.pm: the status
# code is listed for the operation, the content type is one it lists,
# required headers are there, the body is valid against the schema.
# Requests are checked too: the ones the module accepts must be valid by
# the document, and the bad inputs it refuses must be invalid by it.
#
# Adding an endpoint: describe it in docs/api.yaml, then add rows
# ([METHOD, URI, expected status, options]) to the phase where the module
# is in the right state.  The last checks fail until every operation and
# every query parameter of the document has been exercised.

use Test::More;
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for free_port);
use Umlo::Sync;
use Umlo::Users;
use Umlo::OpenAPI;
use Umlo::Webhook;
use POSIX qw(strftime);

binmode(Test::More->builder->$_, ':encoding(UTF-8)') for qw(output failure_output todo_output);

my $api = Umlo::OpenAPI->load('docs/api.yaml');
my @lint = $api->lint;
ok !@lint, 'docs/api.yaml: lint finds nothing' or diag join "\n", @lint;

# The CSV answers (users, bulk audit): a header row naming the columns,
# CRLF line ends.
$api->media_check('text/csv', sub {
    my ($body) = @_;
    my @e;
    push @e, 'CSV does not start with the header row'
        unless $body =~ /\Aid,name,email,status,account_type,claim_status,billable,last_active,last_active_source,never_active,created,sites,products,groups\r\n/
            || $body =~ /\Aat,job,who,action,params,target,dry_run,state,dry_run_id,user,outcome,reason\r\n/;
    push @e, 'CSV has a bare LF line end' if $body =~ /(?<!\r)\n(?=(?:[^"]*"[^"]*")*[^"]*\z)/;
    return @e;
});

# Prometheus text: every line a comment or a sample
$api->media_check('text/plain', sub {
    my ($body) = @_;
    my @bad = grep { !/^(?:# (?:HELP|TYPE) \w+ .+|\w+(?:\{[^}]*\})? -?[0-9.e+]+(?:Inf)?)$/ }
        split /\n/, $body;
    return map { "not exposition format: $_" } @bad[0 .. ($#bad > 4 ? 4 : $#bad)];
});

my $t = Umlo::Test->new;
$t->start_redis;
$t->start_sim(profile => 'fast', users => 40, sites => 2, groups => 6, seed => 7);
my $rx = Umlo::Webhook->start($t);
my $expires = strftime('%Y-%m-%d', gmtime(time + 5 * 86400));
my $nobody = 'http://127.0.0.1:' . free_port() . '/gone';
$t->start_nginx(
    http_config => umlo_http_config(qq{
        umlo_sync_selective_max 5;
        umlo_sync_grace 1s;
        umlo_api_key_expires $expires;
        umlo_webhook ${\ $rx->url('/ok') };
        umlo_webhook $nobody events=sync.succeeded;
        umlo_webhook_retries 0;
        umlo_bulk_max_users 30;
        umlo_tasks_interval 1s;
    }),
    config => q{
        location = /umlo/status { umlo_status; }
        location = /umlo/sync {
            client_body_buffer_size 1k;
            umlo_sync status=/umlo/status;
        }
        location /umlo/users { umlo_users; }
        location = /umlo/dashboard { umlo_dashboard; }
        location = /umlo/history { umlo_history; }
        location = /umlo/metrics { umlo_metrics; }
        location /umlo/bulk { umlo_bulk; }
        location /umlo/tasks { umlo_tasks; }
    },
);

# Values later rows use, filled in by earlier rows' "then".
my %v;

# One row: [METHOD, URI, expected status, options].  URI may be a code
# ref (called when the row runs).  Options:
#   code => 'x'        the error code expected in the body
#   json => {...}      request body as JSON; body => '...' raw body
#   headers => {...}   request headers
#   invalid => 1       the request is one the document calls invalid (the
#                      module must refuse it; the document must agree);
#                      'config': invalid by a configured limit only
#   then => sub {}     more checks, given the response
sub check {
    my ($row) = @_;
    my ($method, $uri, $want, %o) = @$row;
    $uri = $uri->() if ref $uri eq 'CODE';
    my $body = exists $o{json} ? encode_json($o{json}) : $o{body};
    my $name = "$method $uri" . (defined $body ? " $body" : '');
    $name = substr($name, 0, 100) . '...' if length $name > 100;
    my %headers = %{ $o{headers} || {} };
    $headers{'Content-Type'} //= 'application/json' if defined $body;

    my @req = $api->check_request(method => $method, uri => $uri, body => $body,
        content_type => $headers{'Content-Type'});
    if (($o{invalid} // '') eq 'config') {
        note "$name: invalid by the configuration only";
    } elsif ($o{invalid}) {
        ok scalar(@req), "$name: the document calls this request invalid too";
    } else {
        ok !@req, "$name: the request is valid by the document" or diag join "\n", @req;
    }

    my $r = req($t, $method => $uri, headers => \%headers,
        (defined $body ? (body => $body) : ()));
    is $r->{status}, $want, "$name: $want" or diag substr($r->{body}, 0, 2000);
    my @e = $api->check_response(method => $method, uri => $uri, status => $r->{status},
        headers => $r->{headers}, body => $r->{body});
    ok !@e, "$name: the answer is valid by the document"
        or diag join "\n", @e > 20 ? (@e[0 .. 19], '... ' . (@e - 20) . ' more') : @e;
    if (defined $o{code}) {
        is $r->{json} && $r->{json}{error} && $r->{json}{error}{code}, $o{code}, "$name: code $o{code}";
    }
    $o{then}->($r) if $o{then};
    return $r;
}

sub phase {
    my ($name, @rows) = @_;
    subtest $name => sub { check($_) for @rows };
}

sub wait_state {
    my ($state) = @_;
    my $st = wait_for(sub { my $s = status_json($t); $s->{state} eq $state ? $s : 0 }, timeout => 30);
    ok $st, "the sync reached the state $state"
        or diag encode_json(status_json($t));
    return $st;
}

my @bad_sync_bodies = (
    [ '{"scope": "full"',        'invalid_json' ],
    [ '[]',                      'invalid_body' ],
    [ '{"scope":"partial"}',     'invalid_scope' ],
    [ '{"scope":"full","x":1}',  'unknown_field' ],
    [ '{"scope":"full","users":["a"]}', 'invalid_body' ],
    [ '{"users":[]}',            'invalid_users' ],
    [ '{"users":["a b"]}',       'invalid_users' ],
    [ '{"users":[' . join(',', map { "\"u$_\"" } 1 .. 6) . ']}', 'invalid_users', 'config' ],
);

# --------------------------------------------------------------------------

phase 'no snapshot yet',
    [ GET    => '/umlo/status', 200, then => sub {
        json_contains $_[0]{json}, { state => 'idle', running => JSON::PP::false,
            sync => undef, snapshot => undef }, 'idle';
        $v{etag} = $_[0]{headers}{etag} } ],
    [ HEAD   => '/umlo/status', 200 ],
    [ GET    => '/umlo/users', 404, code => 'no_snapshot' ],
    [ GET    => '/umlo/users?format=csv', 404, code => 'no_snapshot' ],
    [ GET    => '/umlo/users/facets', 404, code => 'no_snapshot' ],
    [ GET    => '/umlo/users/5b10ac8d82e05b22cc7d4ef5', 404, code => 'no_snapshot' ],
    [ GET    => '/umlo/dashboard', 404, code => 'no_snapshot' ],
    [ DELETE => '/umlo/sync', 409, code => 'not_running', then => sub {
        is $_[0]{json}{sync}, undef, 'no sync ever ran: sync is null' } ],
    [ POST   => '/umlo/status', 405, invalid => 1, code => 'method_not_allowed' ],
    [ GET    => '/umlo/sync', 405, invalid => 1, code => 'method_not_allowed' ],
    [ PUT    => '/umlo/users', 405, invalid => 1, code => 'method_not_allowed' ],
    [ DELETE => '/umlo/users/facets', 405, invalid => 1 ],
    [ POST   => '/umlo/dashboard', 405, invalid => 1 ],
    [ GET    => '/umlo/history', 200, then => sub {
        json_contains $_[0]{json}, { count => 0, syncs => [], deliveries => [] }, 'no history yet' } ],
    [ HEAD   => '/umlo/history', 200 ],
    [ GET    => '/umlo/history?limit=0', 400, code => 'invalid_limit', invalid => 1 ],
    [ GET    => '/umlo/history?limit=x', 400, code => 'invalid_limit', invalid => 1 ],
    [ GET    => '/umlo/history?limit=51', 400, code => 'invalid_limit', invalid => 'config' ],
    [ GET    => '/umlo/history?since=1', 400, code => 'unknown_parameter', invalid => 1 ],
    [ POST   => '/umlo/history', 405, invalid => 1, code => 'method_not_allowed' ],
    [ GET    => '/umlo/metrics', 200, then => sub {
        like $_[0]{body}, qr/^umlo_api_key_expiring 1$/m, 'the key expires soon' } ],
    [ HEAD   => '/umlo/metrics', 200 ],
    [ DELETE => '/umlo/metrics', 405, invalid => 1 ];

subtest 'status: If-None-Match' => sub {
    check([ GET => '/umlo/status', 304, headers => { 'If-None-Match' => $v{etag} },
        then => sub { is $_[0]{body}, '', 'no body' } ]);
};

phase 'bad sync requests',
    (map { [ POST => '/umlo/sync', 400, body => $_->[0], code => $_->[1], invalid => $_->[2] // 1 ] }
        @bad_sync_bodies),
    [ POST => '/umlo/sync', 413, body => '{"users":["' . ('a' x 70000) . '"]}', code => 'body_too_large',
      invalid => 1 ];

phase 'a selective sync before any full sync fails',
    [ POST => '/umlo/sync', 202, json => { users => ['someone-1'] }, then => sub {
        json_contains $_[0]{json}, { state => 'queued', trigger => 'selective',
            links => { self => '/umlo/sync', status => '/umlo/status' } }, 'queued, with links' } ];
wait_state('failed');
phase 'failed (no snapshot)',
    [ GET => '/umlo/status', 200, then => sub {
        json_contains $_[0]{json}{sync}, { state => 'failed', error => { where => 'plan' } }, 'failed at plan' } ];

# --------------------------------------------------------------------------

$t->sim_ok(POST => 'config', { latencyMs => 1500 });
phase 'a sync running',
    [ POST => '/umlo/sync', 202, json => { scope => 'full' }, then => sub { $v{running} = $_[0]{json}{id} } ];
ok wait_for(sub { my $s = status_json($t); $s->{state} eq 'running' && ($s->{sync}{phase} // '') eq 'fetch' },
    timeout => 15), 'the sync is running (phase fetch)';
phase 'while it runs',
    [ GET    => '/umlo/status', 200, then => sub {
        json_contains $_[0]{json}, { state => 'running', running => JSON::PP::true,
            sync => { id => $v{running}, phase => 'fetch' } }, 'running' } ],
    [ POST   => '/umlo/sync', 409, code => 'sync_running', then => sub {
        is $_[0]{json}{sync}{id}, $v{running}, '409 names the running sync' } ],
    [ POST   => '/umlo/sync', 409, json => { users => ['someone-1'] }, code => 'sync_running' ],
    [ GET    => '/umlo/users?status=active', 404, code => 'no_snapshot' ],
    [ DELETE => '/umlo/sync', 202, then => sub {
        json_contains $_[0]{json}, { cancelling => JSON::PP::true, sync => { id => $v{running} } },
            'cancelling it' } ];
wait_state('cancelled');
$t->sim_ok(POST => 'config', { latencyMs => 0 });
phase 'cancelled',
    [ GET => '/umlo/status', 200, then => sub {
        json_contains $_[0]{json}{sync}, { state => 'cancelled', error => { where => 'cancel' } }, 'cancelled' } ];

# --------------------------------------------------------------------------

$t->sim_ok(POST => 'config', { apiKey => 'not-the-key-0123456789' });
phase 'a sync with a rejected key', [ POST => '/umlo/sync', 202 ];
wait_state('failed');
$t->sim_ok(POST => 'config', { apiKey => $t->api_key });
phase 'failed',
    [ GET => '/umlo/status', 200, then => sub {
        json_contains $_[0]{json}{sync}, { state => 'failed', error => { message => qr/API key rejected/ },
            api => { errors => sub { $_[0] >= 1 } } }, 'failed, naming the key' } ];

# --------------------------------------------------------------------------

# a site whose product has no known capacity: null in facets and dashboard
$t->sim_ok(POST => 'sites', { products => ['confluence'], capacity => undef, groups => JSON::PP::true });

phase 'a full sync', [ POST => '/umlo/sync', 202, then => sub {
    is $_[0]{json}{trigger}, 'manual', 'no body: a full (manual) sync' } ];
wait_state('succeeded');

my $csv_accept = { Accept => 'text/csv' };
# filled by a row's "then", read when a later row runs
my $dash_inm = {};
my $users_inm = {};

phase 'succeeded',
    [ GET  => '/umlo/status', 200, then => sub {
        ok $_[0]{json}{snapshot}, 'a snapshot is current';
        $v{gen} = $_[0]{json}{snapshot}{generation} } ],
    [ GET  => '/umlo/dashboard', 200, then => sub {
        is $_[0]{json}{last_sync}{state}, 'succeeded', 'last_sync';
        $dash_inm->{'If-None-Match'} = $_[0]{headers}{etag} } ],
    [ GET  => '/umlo/dashboard', 304, headers => $dash_inm ],
    [ HEAD => '/umlo/dashboard', 200 ],
    [ GET  => '/umlo/users?limit=2', 200, then => sub {
        $users_inm->{'If-None-Match'} = $_[0]{headers}{etag} } ],
    [ GET  => '/umlo/users?limit=2', 304, headers => $users_inm ],
    [ GET  => '/umlo/users/facets', 200, then => sub {
        my $f = $_[0]{json};
        my ($site) = grep { @{ $_->{products} } } @{ $f->{sites} };
        $v{site} = $site->{host};
        $v{cloud} = $site->{id};
        $v{product} = $site->{products}[0]{key};
        $v{group} = $f->{groups}[0]{name};
        $v{group_id} = $f->{groups}[-1]{id};
        $v{role} = $f->{roles}[0]{role};
        ok $v{site} && $v{product} && $v{group} && $v{role}, 'facets name a site, product, group and role';
        ok((grep { !defined $_->{capacity} } map { @{ $_->{products} } } @{ $f->{sites} }),
            'a product of unknown capacity is null') } ],
    [ GET  => '/umlo/users?limit=3', 200, then => sub {
        $v{next} = $_[0]{json}{links}{next};
        $v{id} = $_[0]{json}{data}[0]{id};
        ok $v{next}, 'a next page' } ],
    [ GET  => sub { "/umlo/users?limit=3&cursor=" . esc($v{next}) }, 200 ],
    [ GET  => sub { "/umlo/users?site=" . esc($v{site}) . "&product=" . esc($v{product})
                    . "&billable=true&never_active=false&sort=last_active&order=desc&limit=1000" }, 200,
      then => sub { like $_[0]{json}{meta}{context}, qr/^site:.+\/product:/, 'site and product context' } ],
    [ GET  => sub { "/umlo/users?site=" . esc($v{cloud}) . "&inactive_days=30&sort=created" }, 200 ],
    [ GET  => sub { "/umlo/users?product=" . esc($v{product}) . "&role=" . esc($v{role})
                    . "&never_active=true" }, 200 ],
    [ GET  => sub { "/umlo/users?status=active,suspended&account_type=atlassian&claim=managed,unmanaged"
                    . "&group=" . esc($v{group}) . ',' . esc($v{group_id}) . "&q=a&sort=email&order=asc" }, 200 ],
    [ GET  => '/umlo/users?created_after=2020-01-01&created_before=2030-01-01T00:00:00Z&q=&cursor=', 200 ],
    [ GET  => '/umlo/users?site=nowhere.example', 200, then => sub {
        is $_[0]{json}{meta}{total}, 0, 'an unknown site matches nobody' } ],
    [ GET  => '/umlo/users?format=json', 200, headers => $csv_accept ],
    [ GET  => '/umlo/users?format=csv&status=active&limit=5', 200 ],
    [ GET  => '/umlo/users', 200, headers => $csv_accept, then => sub {
        like $_[0]{headers}{'content-disposition'}, qr/attachment/, 'CSV is an attachment' } ],
    [ HEAD => '/umlo/users?format=csv', 200 ],
    [ GET  => sub { "/umlo/users/$v{id}" }, 200, then => sub {
        is $_[0]{json}{data}{id}, $v{id}, 'that user' } ],
    [ GET  => '/umlo/users/no-such-user', 404, code => 'unknown_user' ],
    [ GET  => '/umlo/users?colour=red', 400, code => 'unknown_parameter', invalid => 1, then => sub {
        is $_[0]{json}{error}{param}, 'colour', 'param names it' } ],
    [ GET  => '/umlo/users?limit=0', 400, code => 'invalid_parameter', invalid => 1 ],
    [ GET  => '/umlo/users?limit=1001', 400, code => 'invalid_parameter', invalid => 1 ],
    [ GET  => '/umlo/users?billable=maybe', 400, code => 'invalid_parameter', invalid => 1 ],
    [ GET  => '/umlo/users?inactive_days=-1', 400, code => 'invalid_parameter', invalid => 1 ],
    [ GET  => '/umlo/users?created_after=last-week', 400, code => 'invalid_parameter', invalid => 1 ],
    [ GET  => '/umlo/users?sort=size', 400, code => 'invalid_parameter', invalid => 1 ],
    [ GET  => '/umlo/users?format=xml', 400, code => 'invalid_parameter', invalid => 1 ],
    [ GET  => '/umlo/users?status=', 400, code => 'invalid_parameter', invalid => 1 ],
    [ GET  => '/umlo/users?limit=1&limit=2', 400, invalid => 1 ],
    [ GET  => '/umlo/users?cursor=garbage', 400, code => 'invalid_parameter' ],
    [ GET  => sub { "/umlo/users?format=csv&cursor=" . esc($v{next}) }, 400, code => 'invalid_parameter' ],
    [ GET  => sub { "/umlo/users?limit=3&sort=email&cursor=" . esc($v{next}) }, 400, code => 'invalid_parameter' ];

sub wait_job {
    my ($id) = @_;
    ok wait_for(sub { (req($t, GET => "/umlo/bulk/jobs/$id")->{json}{state} // '')
        =~ /^(?:succeeded|failed|cancelled)$/ }, timeout => 30), "bulk job $id finished";
}

phase 'bulk jobs',
    [ POST => '/umlo/bulk', 200, json => { action => 'suspend', users => [ $v{id} ],
      dry_run => JSON::PP::true }, then => sub { $v{token} = $_[0]{json}{token} } ],
    [ POST => '/umlo/bulk', 200, json => { action => 'remove_product', site => $v{site},
      product => $v{product}, filter => 'status=active&q=a' } ],
    [ POST => '/umlo/bulk', 200, json => { action => 'add_to_group', group => $v{group},
      users => [ $v{id} ], dry_run => JSON::PP::true, force => JSON::PP::false } ],
    [ POST => '/umlo/bulk', 400, body => '{"action":', code => 'invalid_json', invalid => 1 ],
    [ POST => '/umlo/bulk', 400, json => { action => 'suspend', users => [ $v{id} ], x => 1 },
      code => 'unknown_field', invalid => 1 ],
    [ POST => '/umlo/bulk', 400, json => { action => 'fly', users => [ $v{id} ] },
      code => 'invalid_action', invalid => 1 ],
    [ POST => '/umlo/bulk', 400, json => { action => 'add_to_group', users => [ $v{id} ] },
      code => 'missing_field', invalid => 1 ],
    [ POST => '/umlo/bulk', 400, json => { action => 'suspend', group => 'g', users => [ $v{id} ] },
      code => 'unexpected_field', invalid => 1 ],
    [ POST => '/umlo/bulk', 400, json => { action => 'suspend', users => [ $v{id} ], filter => '' },
      code => 'invalid_target', invalid => 1 ],
    [ POST => '/umlo/bulk', 400, json => { action => 'suspend', users => ['a b'] },
      code => 'invalid_users', invalid => 1 ],
    [ POST => '/umlo/bulk', 400, json => { action => 'suspend', filter => 'limit=5' },
      code => 'invalid_filter', invalid => 'config' ],
    [ POST => '/umlo/bulk', 400, json => { action => 'suspend', filter => 'colour=red' },
      code => 'unknown_parameter', invalid => 'config' ],
    [ POST => '/umlo/bulk', 400, json => { token => 'nope' }, code => 'invalid_token', invalid => 1 ],
    [ POST => '/umlo/bulk', 404, json => { token => 'f' x 32 }, code => 'unknown_token' ],
    [ POST => '/umlo/bulk', 422, json => { action => 'add_to_group', group => 'no-such-group',
      users => [ $v{id} ] }, code => 'unknown_group' ],
    [ POST => '/umlo/bulk', 422, json => { action => 'suspend',
      users => [ map { "u$_" } 1 .. 31 ] }, code => 'too_many_users', invalid => 'config' ],
    [ POST => '/umlo/bulk', 413, body => '{"action":"suspend","users":["' . ('a' x 40000) . '"]}',
      code => 'body_too_large', invalid => 1 ];
subtest 'a bulk job, and one refused by the org lock' => sub {
    my $r = check([ POST => '/umlo/bulk', 202, body => encode_json({ token => $v{token} }) ]);
    $v{job} = $r->{json}{id};
    wait_job($v{job});
    $t->redis('SET', org_key($t, 'lock'), 'someone', 'PX', 20000);
    check([ POST => '/umlo/bulk', 409, json => { action => 'restore', users => [ $v{id} ] },
        code => 'org_busy' ]);
    $t->redis('DEL', org_key($t, 'lock'));
    $r = check([ POST => '/umlo/bulk', 202, json => { action => 'restore', users => [ $v{id} ] } ]);
    wait_job($r->{json}{id});
};
phase 'bulk jobs and the audit log, read back',
    [ GET  => sub { "/umlo/bulk/jobs/$v{job}" }, 200, then => sub {
        is $_[0]{json}{state}, 'succeeded', 'the job succeeded' } ],
    [ HEAD => sub { "/umlo/bulk/jobs/$v{job}" }, 200 ],
    [ GET  => '/umlo/bulk/jobs/b-1-00000000', 404, code => 'unknown_job' ],
    [ GET  => '/umlo/bulk/audit', 200 ],
    [ GET  => '/umlo/bulk/audit?limit=2&format=json', 200 ],
    [ GET  => '/umlo/bulk/audit?format=csv', 200 ],
    [ GET  => '/umlo/bulk/audit?limit=0', 400, code => 'invalid_parameter', invalid => 1 ],
    [ GET  => '/umlo/bulk/audit?format=xml', 400, code => 'invalid_parameter', invalid => 1 ],
    [ PUT  => '/umlo/bulk', 405, invalid => 1, code => 'method_not_allowed' ],
    [ POST => '/umlo/bulk/audit', 405, invalid => 1, code => 'method_not_allowed' ];

my %task = (name => 'schema', filter => 'q=zzz-nobody', action => 'suspend',
            schedule => { every => '1h' });
phase 'tasks',
    [ POST   => '/umlo/tasks', 201, json => \%task, then => sub { $v{task} = $_[0]{json}{id} } ],
    [ POST   => '/umlo/tasks', 201, json => { %task, action => 'remove_from_group',
      group => $v{group}, schedule => { daily => '04:30' }, notice => '14d' } ],
    [ POST   => '/umlo/tasks', 400, json => { %task, notice => 'soon' }, code => 'invalid_notice',
      invalid => 'config' ],
    [ POST   => '/umlo/tasks', 400, json => { %task, schedule => { daily => '4h' } },
      code => 'invalid_schedule', invalid => 1 ],
    [ POST   => '/umlo/tasks', 400, json => { %task, schedule => { every => '5s' } },
      code => 'invalid_schedule', invalid => 'config' ],
    [ POST   => '/umlo/tasks', 400, json => { %task, name => '' }, code => 'missing_field',
      invalid => 1 ],
    [ POST   => '/umlo/tasks', 400, json => { %task, users => ['a'] }, code => 'invalid_target',
      invalid => 1 ],
    [ POST   => '/umlo/tasks', 400, json => { %task, dry_run => JSON::PP::true },
      code => 'unexpected_field', invalid => 1 ],
    [ POST   => '/umlo/tasks', 201, json => { name => 'listed', users => [ $v{id} ],
      action => 'suspend', schedule => { daily => '05:00' }, notice => '7d' },
      then => sub { $v{listed} = $_[0]{json}{id} } ],
    [ GET    => sub { "/umlo/tasks/$v{listed}/notice" }, 200 ],
    [ GET    => '/umlo/tasks/t-00/notice', 404, code => 'unknown_task' ],
    [ POST   => sub { "/umlo/tasks/$v{listed}/notice" }, 405, invalid => 1 ],
    [ DELETE => sub { "/umlo/tasks/$v{listed}" }, 200 ],
    [ POST   => '/umlo/tasks', 400, body => '[', code => 'invalid_json', invalid => 1 ],
    [ GET    => '/umlo/tasks', 200 ],
    [ GET    => sub { "/umlo/tasks/$v{task}" }, 200 ],
    [ POST   => sub { "/umlo/tasks/$v{task}/run" }, 202 ],
    [ GET    => '/umlo/tasks/t-00', 404, code => 'unknown_task' ],
    [ POST   => '/umlo/tasks/t-00/run', 404, code => 'unknown_task' ],
    [ DELETE => '/umlo/tasks', 405, invalid => 1, code => 'method_not_allowed' ],
    [ POST   => sub { "/umlo/tasks/$v{task}" }, 405, invalid => 1 ],
    [ GET    => sub { "/umlo/tasks/$v{task}/run" }, 405, invalid => 1 ];
ok wait_for(sub { (req($t, GET => "/umlo/tasks/$v{task}")->{json}{last_run}{state} // '')
    eq 'succeeded' }, timeout => 30), 'the task ran';
phase 'a task that ran, deleted',
    [ GET    => sub { "/umlo/tasks/$v{task}" }, 200, then => sub {
        is $_[0]{json}{last_run}{counts}{targets}, 0, 'its filter matched nobody' } ],
    [ DELETE => sub { "/umlo/tasks/$v{task}" }, 200 ],
    [ DELETE => sub { "/umlo/tasks/$v{task}" }, 404, code => 'unknown_task' ];

phase 'a selective sync',
    [ POST => '/umlo/sync', 202, json => { users => [ $v{id}, 'gone-user-1' ] }, then => sub {
        json_contains $_[0]{json}, { trigger => 'selective', users_requested => [ $v{id}, 'gone-user-1' ] },
            'selective, naming the users' } ];
wait_state('succeeded');
phase 'after the selective sync',
    [ GET => '/umlo/status', 200, then => sub {
        json_contains $_[0]{json}{sync}, { trigger => 'selective', counts => { users => 1, removed => 1 } },
            'one user stored, one removed' } ],
    [ GET => '/umlo/dashboard', 200 ],
    [ GET => sub { "/umlo/users/$v{id}" }, 200 ];

# a cursor of the old generation, after a full re-sync
my ($st) = run_sync($t);
is $st && $st->{state}, 'succeeded', 'another full sync';
# every delivery of the syncs so far has an outcome
ok wait_for(sub { $t->redis('LLEN', org_key($t, 'deliveries')) >= 14 }, timeout => 20),
    'the webhook outcomes are recorded';
phase 'history and metrics after syncs',
    [ GET => '/umlo/history', 200, then => sub {
        my $h = $_[0]{json};
        json_contains $h->{syncs}[0], { state => 'succeeded', webhooks => sub { @{ $_[0] } == 3 } },
            'the last sync with its three deliveries';
        ok((grep { $_->{status} eq 'failed' && !defined $_->{http_status} } @{ $h->{deliveries} }),
            'a failed delivery without an answer is there');
        ok((grep { $_->{event} eq 'key.expiring' && !defined $_->{sync_id} } @{ $h->{deliveries} }),
            'and key.expiring') } ],
    [ GET => '/umlo/history?limit=2', 200, then => sub { is $_[0]{json}{count}, 2, 'two' } ],
    [ GET => '/umlo/status', 200, then => sub {
        json_contains $_[0]{json}{api_key}, { expires => $expires, expiring => JSON::PP::true }, 'api_key' } ],
    [ GET => '/umlo/metrics', 200, then => sub {
        like $_[0]{body}, qr/^umlo_syncs_total\{trigger="manual",outcome="succeeded"\} 2$/m, 'two manual syncs' } ];

phase 'a cursor of a replaced snapshot',
    [ GET => sub { "/umlo/users?limit=3&cursor=" . esc($v{next}) }, 409, code => 'snapshot_changed' ];

# --------------------------------------------------------------------------

$t->stop_redis;
phase 'Redis gone',
    [ GET    => '/umlo/status', 503, code => 'redis_unavailable' ],
    [ POST   => '/umlo/sync', 503, code => 'redis_unavailable' ],
    [ DELETE => '/umlo/sync', 503, code => 'redis_unavailable' ],
    [ GET    => '/umlo/users', 503, code => 'redis_unavailable' ],
    [ GET    => '/umlo/users/facets', 503, code => 'redis_unavailable' ],
    [ GET    => sub { "/umlo/users/$v{id}" }, 503, code => 'redis_unavailable' ],
    [ GET    => '/umlo/dashboard', 503, code => 'redis_unavailable' ],
    [ GET    => '/umlo/history', 503, code => 'redis_unavailable' ],
    [ GET    => '/umlo/metrics', 200, then => sub {
        like $_[0]{body}, qr/^umlo_redis_up 0$/m, 'metrics still answer, Redis down' } ],
    [ POST   => '/umlo/bulk', 503, json => { action => 'suspend', users => ['someone-1'] },
      code => 'redis_unavailable' ],
    [ GET    => '/umlo/bulk/jobs/b-1-00000000', 503, code => 'redis_unavailable' ],
    [ GET    => '/umlo/bulk/audit', 503, code => 'redis_unavailable' ],
    [ GET    => '/umlo/tasks', 503, code => 'redis_unavailable' ],
    [ POST   => '/umlo/tasks', 503, json => \%task, code => 'redis_unavailable' ],
    [ GET    => '/umlo/tasks/t-00', 503, code => 'redis_unavailable' ],
    [ DELETE => '/umlo/tasks/t-00', 503, code => 'redis_unavailable' ],
    [ POST   => '/umlo/tasks/t-00/run', 503, code => 'redis_unavailable' ];

# --------------------------------------------------------------------------

subtest 'coverage of the document' => sub {
    my @ops = $api->unseen_operations;
    ok !@ops, 'every operation of docs/api.yaml was checked' or diag join "\n", @ops;
    my @params = $api->unseen_parameters;
    ok !@params, 'every query parameter was sent in a valid request' or diag join "\n", @params;
    note "statuses listed but not produced here: $_" for $api->unseen_statuses;
};

assert_no_alerts($t);
assert_key_hidden($t);

done_testing;
