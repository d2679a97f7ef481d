use strict;
use warnings;
use utf8;

# The OpenAPI checker itself (t/lib/Umlo/OpenAPI.pm), without nginx: every
# keyword accepts what it should and rejects what it should, so that
# t/api_schema.t cannot pass by accepting everything; and docs/api.yaml is
# well-formed (references resolve, keywords known).

use Test::More;
use JSON::PP ();
use lib 't/lib';
use Umlo::OpenAPI;

binmode(Test::More->builder->$_, ':encoding(UTF-8)') for qw(output failure_output todo_output);

my $J = JSON::PP->new->utf8->allow_nonref;
my $JC = JSON::PP->new->allow_nonref;    # the source is characters (use utf8)
sub J { $JC->decode($_[0]) }

my $api = Umlo::OpenAPI->load('docs/api.yaml');

subtest 'docs/api.yaml is well-formed' => sub {
    my @p = $api->lint;
    ok !@p, 'lint finds nothing' or diag join "\n", @p;
    my @ops = map { "$_->[0] $_->[1]" } $api->operations;
    for my $op ('GET /umlo/status', 'POST /umlo/sync', 'DELETE /umlo/sync', 'GET /umlo/users',
                'GET /umlo/users/facets', 'GET /umlo/users/{accountId}', 'GET /umlo/dashboard') {
        ok((grep { $_ eq $op } @ops), "$op is described");
    }
};

# [schema (JSON), valid instances, invalid instances]
my @keyword_cases = (
    [ '{"type":"string"}',  [ '"a"', '""' ], [ '1', 'true', 'null', '[]', '{}' ] ],
    [ '{"type":"integer"}', [ '1', '-3', '40.0' ], [ '1.5', '"1"', 'true', 'null' ] ],
    [ '{"type":"number"}',  [ '1', '1.5' ], [ '"1.5"', 'false', 'null' ] ],
    [ '{"type":"boolean"}', [ 'true', 'false' ], [ '0', '"true"', 'null' ] ],
    [ '{"type":"array"}',   [ '[]', '[1]' ], [ '{}', '"[]"' ] ],
    [ '{"type":"object"}',  [ '{}', '{"a":1}' ], [ '[]', 'null', '"x"' ] ],
    [ '{"type":"string","nullable":true}', [ '"a"', 'null' ], [ '1' ] ],
    [ '{"type":"string","nullable":false}', [ '"a"' ], [ 'null' ] ],
    [ '{"nullable":true,"allOf":[{"type":"integer"}]}', [ '1', 'null' ], [ '"1"' ] ],
    [ '{"allOf":[{"type":"integer"}]}', [ '1' ], [ 'null' ] ],
    [ '{"enum":["a","b"]}', [ '"a"', '"b"' ], [ '"c"', '1', 'null' ] ],
    [ '{"enum":[1]}', [ '1', '1.0' ], [ '"1"', 'true' ] ],
    [ '{"enum":[true]}', [ 'true' ], [ 'false', '1' ] ],
    [ '{"type":"string","enum":["x",null],"nullable":true}', [ '"x"', 'null' ], [ '"y"' ] ],
    [ '{"type":"object","required":["a"]}', [ '{"a":null}' ], [ '{}', '{"b":1}' ] ],
    [ '{"type":"object","properties":{"a":{"type":"integer"}}}',
      [ '{}', '{"a":1}', '{"b":"x"}' ], [ '{"a":"1"}' ] ],
    [ '{"type":"object","properties":{"a":{}},"additionalProperties":false}',
      [ '{}', '{"a":[1]}' ], [ '{"b":1}', '{"a":1,"b":1}' ] ],
    [ '{"type":"object","additionalProperties":{"type":"integer"}}',
      [ '{}', '{"x":1,"y":2}' ], [ '{"x":"1"}' ] ],
    [ '{"type":"array","items":{"type":"string"}}', [ '[]', '["a","b"]' ], [ '["a",1]', '[null]' ] ],
    [ '{"type":"array","minItems":1,"maxItems":2}', [ '[1]', '[1,2]' ], [ '[]', '[1,2,3]' ] ],
    [ '{"type":"array","uniqueItems":true}', [ '[1,2]', '[{"a":1},{"a":2}]' ], [ '[1,1]', '[{"a":1},{"a":1}]' ] ],
    [ '{"type":"integer","minimum":1,"maximum":3}', [ '1', '3' ], [ '0', '4', '-1' ] ],
    [ '{"type":"number","minimum":0,"exclusiveMinimum":true}', [ '0.5' ], [ '0' ] ],
    [ '{"type":"string","minLength":2,"maxLength":3}', [ '"ab"', '"été"' ], [ '"a"', '"abcd"' ] ],
    [ '{"type":"string","pattern":"^s-[0-9]+$"}', [ '"s-12"' ], [ '"s-"', '"x-1"', '"s-1 "' ] ],
    [ '{"type":"string","format":"date-time"}',
      [ '"2026-11-26T06:55:56Z"', '"2022-02-05T14:20:42.660Z"', '"2024-02-29T00:00:00+02:00"' ],
      [ '"2026-11-26"', '"2026-13-01T00:00:00Z"', '"2025-02-29T00:00:00Z"', '"2026-11-26T24:00:00Z"',
        '"2026-11-26 06:55:56Z"', '"2026-11-26T06:55:56"', '"yesterday"' ] ],
    [ '{"type":"string","format":"date"}', [ '"2026-11-26"' ], [ '"2026-11-31"', '"2026-11-26T00:00:00Z"' ] ],
    [ '{"oneOf":[{"type":"integer"},{"type":"string"}]}', [ '1', '"a"' ], [ 'true', 'null' ] ],
    [ '{"oneOf":[{"type":"number"},{"type":"integer"}]}', [ '1.5' ], [ '1' ] ],
    [ '{"anyOf":[{"type":"number"},{"type":"integer"}]}', [ '1.5', '1' ], [ '"1"' ] ],
    [ '{"allOf":[{"type":"integer"},{"minimum":5}]}', [ '5' ], [ '4', '"5"' ] ],
    [ '{"not":{"type":"string"}}', [ '1' ], [ '"a"' ] ],
    [ '{"$ref":"#/components/schemas/Count"}', [ '0', '7' ], [ '-1', '"7"', 'null' ] ],
);

subtest 'each keyword accepts and rejects' => sub {
    for my $c (@keyword_cases) {
        my ($schema, $good, $bad) = @$c;
        my $s = J($schema);
        for my $g (@$good) {
            my @e = $api->validate($s, J($g));
            ok !@e, "$schema accepts $g" or diag join "\n", @e;
        }
        for my $b (@$bad) {
            my @e = $api->validate($s, J($b));
            ok scalar(@e), "$schema rejects $b";
        }
    }
};

subtest 'errors name the place' => sub {
    my @e = $api->validate(J('{"type":"object","properties":{"a":{"type":"array","items":{"type":"integer"}}}}'),
        J('{"a":[1,"x"]}'));
    like $e[0], qr/^\$\.a\[1\]: expected integer, got string "x"/, 'path and values' or diag @e;
};

subtest 'a broken schema is an error, not a pass' => sub {
    my $e = eval { $api->validate(J('{"type":"object","requierd":["a"]}'), J('{}')); 1 } ? '' : $@;
    like $e, qr/unknown schema keyword "requierd"/, 'a misspelt keyword dies';
    $e = eval { $api->validate(J('{"type":["string","null"]}'), J('"a"')); 1 } ? '' : $@;
    like $e, qr/type must be one of/, 'a JSON Schema type list is not OpenAPI 3.0';
    $e = eval { $api->validate(J('{"$ref":"#/components/schemas/Nope"}'), J('1')); 1 } ? '' : $@;
    like $e, qr/unresolved reference/, 'a dangling $ref dies';
    $e = eval { $api->validate(J('{"type":"string","format":"datetime"}'), J('"x"')); 1 } ? '' : $@;
    like $e, qr/unknown format/, 'an unknown format dies';

    my $bad = Umlo::OpenAPI->from_data(J(q({
        "openapi": "3.0.3", "info": {"title": "t", "version": "1"},
        "paths": {
            "/a/{id}": {"get": {"responses": {"200": {"description": "x",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Missing"}}}}}}},
            "/b": {"get": {"responses": {}}},
            "/c": {"post": {"responses": {"20x": {"description": "x"}}}}
        },
        "components": {"schemas": {
            "A": {"type": "object", "propertes": {}},
            "B": {"type": "object", "additionalProperties": false, "required": ["z"], "properties": {}},
            "C": {"$ref": "#/components/schemas/A", "nullable": true},
            "D": {"type": "text"}
        }}
    })), 'bad');
    my $lint = join "\n", $bad->lint;
    like $lint, qr/unresolved reference #\/components\/schemas\/Missing/, 'lint: dangling $ref';
    like $lint, qr/path parameter \{id\} is not declared/, 'lint: undeclared path parameter';
    like $lint, qr{GET /b: no responses}, 'lint: operation without responses';
    like $lint, qr/bad response key "20x"/, 'lint: bad status key';
    like $lint, qr/A: unknown schema keyword "propertes"/, 'lint: misspelt keyword';
    like $lint, qr/B: required "z" is not among the properties/, 'lint: required but forbidden';
    like $lint, qr/C: keywords next to \$ref are ignored: nullable/, 'lint: keywords next to $ref';
    like $lint, qr/D: bad type "text"/, 'lint: bad type';
};

# A status document like the one in docs/api.md.
my $status = J(q({
  "org": "test-org", "state": "running", "running": true,
  "sync": {"id": "s-1795676156866-f0ef0ca1", "trigger": "manual", "state": "running",
    "phase": "fetch", "requested_at": 1795676156, "started_at": 1795676156,
    "finished_at": null,
    "progress": {"done": 1281, "expected": 3960, "percent": 32, "eta_seconds": 7},
    "counts": {"users": 1281, "groups": 250, "products": 11},
    "api": {"calls": 270, "retries": 0, "rate_limited": 0, "errors": 0}, "error": null},
  "snapshot": {"generation": 4, "sync_id": "s-1795676100000-0c1d2e3f",
    "data_as_of": "2026-11-26T06:55:56Z",
    "counts": {"users": 3960, "groups": 250, "sites": 4, "products": 11}}
}));

subtest 'the Status schema against documents' => sub {
    my $s = $api->schema('Status');
    my @e = $api->validate($s, $status);
    ok !@e, 'the example of api.md is valid' or diag join "\n", @e;
    my @mutations = (
        [ 'extra top-level field',   sub { $_[0]{extra} = 1 } ],
        [ 'missing required field',  sub { delete $_[0]{running} } ],
        [ 'unknown state',           sub { $_[0]{state} = 'paused' } ],
        [ 'running as a string',     sub { $_[0]{running} = 'true' } ],
        [ 'progress.percent > 100',  sub { $_[0]{sync}{progress}{percent} = 101 } ],
        [ 'phase unknown',           sub { $_[0]{sync}{phase} = 'sleep' } ],
        [ 'bad data_as_of',          sub { $_[0]{snapshot}{data_as_of} = '26/11/2026' } ],
        [ 'generation 0',            sub { $_[0]{snapshot}{generation} = 0 } ],
        [ 'counts of two shapes',    sub { $_[0]{sync}{counts}{removed} = 1 } ],
        [ 'error without message',   sub { $_[0]{sync}{error} = { where => 'api' } } ],
        [ 'sync id malformed',       sub { $_[0]{sync}{id} = 'sync-1' } ],
        [ 'requested_at a string',   sub { $_[0]{sync}{requested_at} = '1795676156' } ],
        [ 'org null',                sub { $_[0]{org} = undef } ],
    );
    for my $m (@mutations) {
        my $doc = J($J->encode($status));
        $m->[1]->($doc);
        ok scalar($api->validate($s, $doc)), "rejected: $m->[0]";
    }
    my $idle = { org => 'o', state => 'idle', running => JSON::PP::false, sync => undef, snapshot => undef };
    ok !$api->validate($s, $idle), 'idle with null sync and snapshot is valid';
};

my %json = ('content-type' => 'application/json', 'cache-control' => 'no-store');

subtest 'responses: status, content type, headers, body' => sub {
    my $body = $J->encode($status);
    my %status_h = (%json, etag => '"' . ('0a' x 16) . '"');
    my @e = $api->check_response(method => 'GET', uri => '/umlo/status', status => 200,
        headers => \%status_h, body => $body);
    ok !@e, 'a good status answer passes' or diag join "\n", @e;
    ok !$api->check_response(method => 'HEAD', uri => '/umlo/status', status => 200,
        headers => \%status_h, body => ''), 'HEAD: the GET operation, no body';
    ok scalar($api->check_response(method => 'GET', uri => '/umlo/status', status => 200,
        headers => \%json, body => $body)), 'status without its ETag';
    like join("\n", $api->check_response(method => 'GET', uri => '/umlo/status', status => 404,
        headers => \%json, body => $body)), qr/status 404 is not listed/, 'unlisted status';
    like join("\n", $api->check_response(method => 'GET', uri => '/umlo/status', status => 200,
        headers => { %json, 'content-type' => 'text/html' }, body => $body)),
        qr/content type text\/html is not one of application\/json/, 'wrong content type';
    like join("\n", $api->check_response(method => 'GET', uri => '/umlo/status', status => 200,
        headers => { 'content-type' => 'application/json' }, body => $body)),
        qr/header Cache-Control is missing/, 'missing required header';
    like join("\n", $api->check_response(method => 'GET', uri => '/umlo/status', status => 200,
        headers => \%json, body => '{"org":')), qr/body is not JSON/, 'truncated JSON';
    like join("\n", $api->check_response(method => 'GET', uri => '/umlo/status', status => 200,
        headers => \%json, body => '{}')), qr/required property "org" is missing/, 'body checked';
    like join("\n", $api->check_response(method => 'GET', uri => '/nowhere', status => 200,
        headers => \%json, body => '{}')), qr/no path/, 'unknown path';

    my $err405 = '{"error":{"status":405,"code":"method_not_allowed","message":"no"}}';
    ok !$api->check_response(method => 'GET', uri => '/umlo/sync', status => 405,
        headers => { %json, allow => 'POST, DELETE' }, body => $err405), '405 from x-umlo-other-methods';
    like join("\n", $api->check_response(method => 'GET', uri => '/umlo/sync', status => 405,
        headers => { %json, allow => 'GET, HEAD' }, body => $err405)),
        qr/header Allow: .* is not one of "POST, DELETE"/, 'Allow header value checked';
    like join("\n", $api->check_response(method => 'PUT', uri => '/umlo/status', status => 200,
        headers => \%json, body => $body)), qr/gets 405/, 'another method must get 405';

    my $e404 = '{"error":{"status":404,"code":"no_snapshot","message":"m"}}';
    ok !$api->check_response(method => 'GET', uri => '/umlo/users/abc', status => 404,
        headers => \%json, body => $e404), 'templated path, error body';
    like join("\n", $api->check_response(method => 'GET', uri => '/umlo/users/abc', status => 404,
        headers => \%json, body => '{"error":{"status":404,"code":"gone","message":"m"}}')),
        qr/"gone" is not one of "no_snapshot", "unknown_user"/, 'error code checked per response';
    like join("\n", $api->check_response(method => 'GET', uri => '/umlo/users/facets', status => 200,
        headers => \%json, body => '{"sites":[]}')), qr/required property/, 'facets is not a user id';
    ok !$api->check_response(method => 'GET', uri => '/umlo/users?format=csv', status => 200,
        headers => { 'content-type' => 'text/csv; charset=utf-8' }, body => "id\r\n"), 'CSV content type';
    like join("\n", $api->check_response(method => 'GET', uri => '/umlo/users?format=csv', status => 200,
        headers => { 'content-type' => 'text/csv; charset=utf-8' }, body => "\xff\xfe")),
        qr/not UTF-8/, 'CSV must be UTF-8';
};

subtest 'requests: parameters and bodies' => sub {
    ok !$api->check_request(method => 'GET', uri => '/umlo/users?status=active,suspended&limit=5&billable=true&q='),
        'declared parameters with good values';
    like join("\n", $api->check_request(method => 'GET', uri => '/umlo/users?colour=red')),
        qr/"colour" is not declared/, 'undeclared parameter';
    like join("\n", $api->check_request(method => 'GET', uri => '/umlo/users?limit=0')),
        qr/limit: 0 is less than 1/, 'out of range';
    like join("\n", $api->check_request(method => 'GET', uri => '/umlo/users?billable=yes')),
        qr/billable: expected boolean/, 'not a boolean';
    like join("\n", $api->check_request(method => 'GET', uri => '/umlo/users?sort=size')),
        qr/sort: "size" is not one of/, 'not in the enum';
    like join("\n", $api->check_request(method => 'GET', uri => '/umlo/users?status=active,')),
        qr/status\[1\]: "" is shorter than 1/, 'empty list item';
    like join("\n", $api->check_request(method => 'GET', uri => '/umlo/users?limit=1&limit=2')),
        qr/appears twice/, 'repeated parameter';
    ok !$api->check_request(method => 'POST', uri => '/umlo/sync', body => '{"users":["a1","b:2"]}'),
        'selective sync body';
    ok !$api->check_request(method => 'POST', uri => '/umlo/sync', body => '{"scope":"full"}'), 'full sync body';
    ok !$api->check_request(method => 'POST', uri => '/umlo/sync'), 'no body';
    like join("\n", $api->check_request(method => 'POST', uri => '/umlo/sync', body => '{"users":[]}')),
        qr/matches none of oneOf/, 'empty users list';
    like join("\n", $api->check_request(method => 'POST', uri => '/umlo/sync',
        body => '{"scope":"full","users":["a"]}')), qr/matches none of oneOf/, 'scope and users';
    like join("\n", $api->check_request(method => 'DELETE', uri => '/umlo/sync', body => '{}')),
        qr/takes no request body/, 'DELETE takes no body';
};

done_testing;
