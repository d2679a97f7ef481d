use strict;
use warnings;

# Hostile input on every handler: wrong and unknown methods, bodies that
# are malformed, deeply nested, not UTF-8, too large or cut off, content
# types a web form sends, huge and repeated query parameters, percent-
# encoding abuse, odd paths.  Every answer must be a 4xx JSON error naming
# the problem (or a normal answer), never a 500, a crash or a hang; nginx's
# other locations keep working and a sync still succeeds afterwards.

use Test::More;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;
use Umlo::Users;

my $t = Umlo::Test->new;
start_users_stack($t,
    sim => { users => 60, sites => 2, groups => 6, seed => 5 },
    http => 'umlo_body_max 4k;',
    locations => join("\n",
        'location = /umlo/sync2 { client_body_buffer_size 1k; umlo_sync; }',
        'location = /umlo/history { umlo_history; }',
        'location = /umlo/metrics { umlo_metrics; }',
        'location = /plain { return 200 "plain\n"; }'),
    nginx => { workers => 2 });

my ($st) = run_sync($t);
die "the first sync did not succeed\n" unless $st && $st->{state} eq 'succeeded';
my ($uid) = map { $_->{accountId} } v2_users(truth($t));

my @answers;    # [what, status, content type] of every hostile request

# One request on its own connection, bytes as given.  Returns
# {status, headers, body, json, raw}; the body is de-chunked.
sub raw {
    my ($data, %o) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->nginx_port,
        Timeout => 5) or die "connect: $!";
    local $SIG{PIPE} = 'IGNORE';
    syswrite $s, $data;
    shutdown $s, 1 if $o{half_close};
    my ($out, $t0) = ('', time);
    my $sel = IO::Select->new($s);
    while (time - $t0 < Umlo::Test::scaled($o{timeout} // 10) && $sel->can_read(1)) {
        my $n = sysread($s, my $buf, 65536);
        last unless $n;
        $out .= $buf;
    }
    close $s;
    push @Umlo::Sync::RESPONSES, $out;
    return parse_response($out);
}

sub parse_response {
    my ($out) = @_;
    my %r = (raw => $out, status => 0, headers => {}, body => '');
    my ($head, $body) = split /\r\n\r\n/, $out, 2;
    return \%r unless defined $head;
    my ($line, @h) = split /\r\n/, $head;
    ($r{status}) = ($line // '') =~ m{^HTTP/1\.\d (\d{3})};
    $r{status} //= 0;
    for (@h) { my ($k, $v) = /^([^:]+):\s*(.*)$/ or next; $r{headers}{lc $k} = $v }
    $body //= '';
    if (($r{headers}{'transfer-encoding'} // '') =~ /chunked/i) {
        my $plain = '';
        while ($body =~ s/^([0-9a-fA-F]+)\r\n//) {
            my $n = hex $1;
            last if $n == 0;
            $plain .= substr $body, 0, $n, '';
            $body =~ s/^\r\n//;
        }
        $body = $plain;
    }
    $r{body} = $body;
    $r{json} = eval { decode_json($body) } if ($r{headers}{'content-type'} // '') =~ /json/;
    return \%r;
}

sub request {
    my ($method, $path, %o) = @_;
    my $body = $o{body} // '';
    my $h = join '', map { "$_: $o{headers}{$_}\r\n" } sort keys %{ $o{headers} || {} };
    $h .= 'Content-Length: ' . length($body) . "\r\n" if length $body && !$o{no_length};
    return raw("$method $path HTTP/1.1\r\nHost: x\r\n${h}Connection: close\r\n\r\n$body", %o);
}

# A 4xx JSON error with the code (string or regex) and a message matching
# $msg; also recorded for the final checks.
sub refused {
    my ($what, $r, $status, $code, $msg) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    push @answers, [ $what, $r->{status}, $r->{headers}{'content-type'} // '' ];
    my $ok = is($r->{status}, $status, "$what: $status");
    $ok &&= like($r->{headers}{'content-type'} // '', qr{^application/json\b}, "$what: JSON")
        if $r->{status} == $status;
    $ok &&= json_contains($r->{json}, { error => { status => $status, code => $code,
        (defined $msg ? (message => $msg) : ()) } }, "$what: code and message");
    diag("answer: " . substr($r->{raw}, 0, 400)) unless $ok;
    return $ok;
}

# A normal answer or a 4xx JSON error: what the input deserves is not the
# point, only that it is not a 5xx, not HTML, not a hang.
sub survived {
    my ($what, $r) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    push @answers, [ $what, $r->{status}, $r->{headers}{'content-type'} // '' ];
    my $ok = ok($r->{status} >= 200 && $r->{status} < 500, "$what: answered $r->{status}");
    $ok &&= ok($r->{status} < 400 || ($r->{json} && $r->{json}{error}{code}),
        "$what: an error is a JSON error") if $r->{status} >= 400;
    diag('answer: ' . substr($r->{raw}, 0, 600)) unless $ok;
    return $ok;
}

my $J = { 'Content-Type' => 'application/json' };

# --------------------------------------------------------------------------

subtest 'wrong and unknown methods: 405 with Allow, on every handler' => sub {
    my %allow = ('/umlo/status' => 'GET, HEAD', '/umlo/users' => 'GET, HEAD',
        '/umlo/users/facets' => 'GET, HEAD', "/umlo/users/$uid" => 'GET, HEAD',
        '/umlo/users?format=csv' => 'GET, HEAD', '/umlo/dashboard' => 'GET, HEAD',
        '/umlo/history' => 'GET, HEAD', '/umlo/metrics' => 'GET, HEAD',
        '/umlo/sync' => 'POST, DELETE');
    for my $path (sort keys %allow) {
        my @m = $allow{$path} =~ /POST/ ? qw(GET PUT PATCH OPTIONS PROPFIND XYZZY)
                                        : qw(POST PUT PATCH DELETE OPTIONS PROPFIND XYZZY);
        for my $m (@m) {
            my $r = request($m, $path, headers => $J, body => '{"a":1}');
            refused("$m $path", $r, 405, 'method_not_allowed', qr/\Q$m\E/)
                and is $r->{headers}{allow}, $allow{$path}, "$m $path: Allow: $allow{$path}";
        }
    }
};

subtest 'a refused body is consumed: the next pipelined request is answered' => sub {
    my $body = '{"users":["x"]}' . (' ' x 3000);
    my $r = raw("PUT /umlo/users HTTP/1.1\r\nHost: x\r\nContent-Length: " . length($body)
        . "\r\n\r\n$body"
        . "POST /umlo/sync HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: "
        . length($body) . "\r\n\r\n$body"
        . "GET /umlo/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    my @codes = $r->{raw} =~ m{^HTTP/1\.1 (\d{3})}mg;
    is_deeply \@codes, [405, 415, 200], 'three answers, in order: 405, 415, 200';
};

# --------------------------------------------------------------------------

subtest 'state-changing requests need a JSON content type (no web forms)' => sub {
    my $before = status_json($t)->{sync}{id};
    for my $ct (undef, 'text/plain', 'application/x-www-form-urlencoded',
                'multipart/form-data; boundary=x', 'application/jsonp', 'text/json',
                'application/json-seq') {
        my $r = request(POST => '/umlo/sync', headers => { defined $ct ? ('Content-Type' => $ct) : () },
            body => (defined $ct && $ct =~ /form-urlencoded/ ? 'scope=full' : ''));
        refused('POST with ' . ($ct // 'no content type'), $r, 415, 'unsupported_media_type',
            qr{application/json});
    }
    my $r = request(DELETE => '/umlo/sync', headers => { 'Content-Type' => 'text/plain' });
    refused('DELETE with text/plain', $r, 415, 'unsupported_media_type');
    $r = request(DELETE => '/umlo/sync');
    refused('DELETE without a content type: checked further', $r, 409, 'not_running');
    $r = request(POST => '/umlo/sync', headers => { 'Content-Type' => 'Application/JSON; charset=utf-8' },
        body => '{"scope":"ful"}');
    refused('application/json in any case, with charset: the body is read', $r, 400, 'invalid_scope');
    is status_json($t)->{sync}{id}, $before, 'no sync started';
};

subtest 'bodies: malformed, nested, not UTF-8, NUL, huge numbers' => sub {
    my $before = status_json($t)->{sync}{id};
    my @cases = (
        [ 'deep array nesting (100,000)', '[' x 100_000, 'invalid_json', qr/depth|not valid/ ],
        [ 'deep object nesting',          '{"a":' x 3000 . '1' . '}' x 3000, 'invalid_json', qr/depth|not valid/ ],
        [ 'nesting inside users',         '{"users":[[[["a"]]]]}', 'invalid_users', qr/\[0\]/ ],
        [ 'invalid UTF-8 in a string',    qq({"users":["\xff\xfe"]}), 'invalid_json', qr/UTF-8|not valid/ ],
        [ 'overlong UTF-8 "/"',           qq({"users":["a\xc0\xafb"]}), 'invalid_json', qr/not valid/ ],
        [ 'UTF-8 surrogate',              qq({"users":["\xed\xa0\x80"]}), 'invalid_json', qr/not valid/ ],
        [ 'invalid UTF-8 in a key',       qq({"\xff":1}), 'invalid_json', qr/not valid/ ],
        # jansson's "near '...'" keeps one byte of the escaped character:
        # the message was not UTF-8 (found by fuzz_sync_body)
        [ 'an escaped 2-byte character',  qq({"ul\\\xde\x8d":1}), 'invalid_json', qr/invalid escape near '"ul\\\?'/ ],
        [ 'lone surrogate escape',        '{"users":["\ud800"]}', 'invalid_json', qr/not valid/ ],
        [ 'escaped NUL',                  '{"users":["a\u0000b"]}', 'invalid_json', qr/not valid/ ],
        [ 'raw NUL byte',                 qq({"scope":"full"}\0), 'invalid_json', qr/not valid/ ],
        [ 'NUL before the body',          qq(\0{"scope":"full"}), 'invalid_json', qr/not valid/ ],
        [ 'two documents',                '{"scope":"full"}{"scope":"full"}', 'invalid_json', qr/not valid/ ],
        [ 'huge number',                  '{"scope":1e999999}', qr/^invalid_(?:json|scope)$/, qr/./ ],
        [ 'huge integer',                 '{"users":[' . ('9' x 3000) . ']}', qr/^invalid_(?:json|users)$/, qr/./ ],
        [ 'only white space and a brace', "  \r\n\t{", 'invalid_json', qr/not valid/ ],
        [ 'null',                         'null', qr/^invalid_(?:json|body)$/, qr/JSON/ ],
        [ 'a long unknown key, 3-byte characters', '{"' . ("\xe0\xa5\x90" x 300) . '":1}', 'unknown_field', qr/^unknown field "\x{950}+": a sync takes/ ],
        [ 'a long unknown key',           '{"' . ("\xc3\xa9" x 1000) . '":1}', 'unknown_field', qr/^unknown field "\x{e9}+": a sync takes/ ],
        [ '4,000 account ids',            '{"users":[' . join(',', ('"a"') x 1000) . ']}', 'invalid_users', qr/umlo_sync_selective_max/ ],
    );
    for my $c (@cases) {
        my ($name, $body, $code, $msg) = @$c;
        next if length $body > 4096 && $name !~ /nesting \(/;
        my $r = request(POST => '/umlo/sync', headers => $J, body => $body);
        if (length $body > 4096) {
            refused($name, $r, 413, 'body_too_large', qr/umlo_body_max/);
        } else {
            refused($name, $r, 400, $code, $msg);
        }
    }
    # the nesting cases again, under a larger limit (location /umlo/sync2
    # has the same http-level limit; the parser's own depth limit is the
    # point here, so the text stays under 4k)
    my $r = request(POST => '/umlo/sync', headers => $J, body => '[' x 4000);
    refused('4,000 open brackets', $r, 400, 'invalid_json', qr/depth|not valid/);
    $r = request(POST => '/umlo/sync', headers => $J, body => '{"a":' x 800);
    refused('800 nested objects, unterminated', $r, 400, 'invalid_json');
    is status_json($t)->{sync}{id}, $before, 'no sync started';
};

subtest 'body size: umlo_body_max, checked before reading when announced' => sub {
    my $before = status_json($t)->{sync}{id};
    my $r = request(POST => '/umlo/sync', headers => $J, body => '{"scope":"full"' . (' ' x 5000) . '}');
    refused('5,000 bytes with a 4k limit', $r, 413, 'body_too_large', qr/5016 bytes; at most 4096 .*umlo_body_max/);
    # announced but never sent: answered at once, without waiting for it
    my $t0 = time;
    $r = raw("POST /umlo/sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        . "Content-Length: 900000\r\nConnection: close\r\n\r\n{", timeout => 8);
    refused('900,000 bytes announced, 1 sent', $r, 413, 'body_too_large');
    cmp_ok time - $t0, '<', 5, 'without waiting for the body';
    # chunked: no length in advance, counted once read
    my $chunk = ' ' x 1000;
    my $chunks = join '', map { sprintf("%x\r\n%s\r\n", length $chunk, $chunk) } 1 .. 6;
    $r = raw("POST /umlo/sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunks}0\r\n\r\n");
    refused('6,000 bytes chunked', $r, 413, 'body_too_large', qr/6000 bytes/);
    # above client_max_body_size (1m) nginx refuses before the module runs
    $r = raw("POST /umlo/sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        . "Content-Length: 5000000\r\nConnection: close\r\n\r\n{");
    is $r->{status}, 413, 'over client_max_body_size: nginx\'s own 413';
    is status_json($t)->{sync}{id}, $before, 'no sync started';

    # within the limit but larger than client_body_buffer_size (1k): the
    # body is in a temporary file and still read
    $r = request(POST => '/umlo/sync2', headers => $J, body => '{"scope":"full"' . (' ' x 3000) . '}');
    is $r->{status}, 202, '3,000 bytes through a 1k client_body_buffer_size: accepted';
    my $done = $r->{json} && wait_sync($t, $r->{json}{id});
    is $done && $done->{state}, 'succeeded', 'and that sync succeeds';
    $r = request(POST => '/umlo/sync2', headers => $J, body => '{"scope":"fulL"' . (' ' x 3000) . '}');
    refused('a bad body from a temporary file', $r, 400, 'invalid_scope');
};

subtest 'bodies cut off or stalled: no answer needed, nothing stuck' => sub {
    my $before = status_json($t)->{sync}{id};
    for my $i (1 .. 5) {
        raw("POST /umlo/sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            . "Content-Length: 100\r\n\r\n{\"scope\":", half_close => 1, timeout => 2);
        raw("POST /umlo/sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            . "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"sco", half_close => 1, timeout => 2);
    }
    my $r = request(GET => '/umlo/status');
    is $r->{status}, 200, 'status still answers';
    is status_json($t)->{sync}{id}, $before, 'no sync started';
    is $t->redis('EXISTS', org_key($t, 'lock')), 0, 'no lock taken';
};

# --------------------------------------------------------------------------

subtest 'query strings: huge, repeated, percent-encoding abuse' => sub {
    my @bad = (
        [ 'repeated cursor',            'cursor=&cursor=',                  'cursor' ],
        [ 'repeated format',            'format=json&format=json',          'format' ],
        [ 'repeated q',                 'q=a&q=a',                          'q' ],
        [ '800 unknown parameters',     join('&', map { "p$_=1" } 1 .. 800), 'p1' ],
        [ 'a name of 6,000 bytes',      ('n' x 6000) . '=1',                qr/^n+$/ ],
        [ 'encoded NUL in a name',      'st%00atus=active',                 qr/./ ],
        [ 'overlong UTF-8 "/"',         'q=%C0%AF',                         'q' ],
        [ 'UTF-8 surrogate',            'q=%ED%A0%80',                      'q' ],
        [ 'beyond U+10FFFF',            'q=%F4%90%80%80',                   'q' ],
        [ 'lone continuation byte',     'q=%80',                            'q' ],
        [ 'truncated sequence',         'q=%E2%82',                         'q' ],
        [ 'raw invalid byte',           "q=\xff",                           'q' ],
        [ '"%" at the end',             'q=abc%',                           'q' ],
        [ '"%%"',                       'q=%%41',                           'q' ],
        [ 'encoded "=" in a name',      'limit%3D5=1',                      qr/limit/ ],
        [ 'limit overflowing 64 bits',  'limit=99999999999999999999999',   'limit' ],
        [ 'limit with a plus sign',     'limit=%2B5',                       'limit' ],
        [ 'limit in hex',               'limit=0x10',                       'limit' ],
        [ 'limit 5.0',                  'limit=5.0',                        'limit' ],
        [ 'limit with a space',         'limit=%205',                       'limit' ],
        [ 'inactive_days overflowing',  'inactive_days=184467440737095516160', 'inactive_days' ],
        [ 'year 99999',                 'created_after=99999-01-01',        'created_after' ],
        [ 'offset +25:00',              'created_after=2024-01-01T00:00:00%2B25:00', 'created_after' ],
        [ 'offset -00:60',              'created_before=2024-01-01T00:00-00:60', 'created_before' ],
        [ 'offset without minutes',     'created_before=2024-01-01T00:00%2B01', 'created_before' ],
        [ 'date with a NUL',            'created_after=2024-01-01%00',      'created_after' ],
        [ 'a cursor of 5,000 bytes',    'cursor=' . ('A' x 5000),           'cursor' ],
        [ 'an encoded NUL cursor',      'cursor=%00',                       'cursor' ],
        [ 'a cursor of valid base64url garbage', 'cursor=AQ' . ('_' x 60),  'cursor' ],
        [ 'cursor with CSV via Accept', 'cursor=AQAA',                      'cursor' ],
        [ 'sort repeated with a comma', 'sort=name,email',                  'sort' ],
        [ 'site with 1,000 values',     'site=' . join(',', ('x') x 1000),  'site' ],
    );
    for my $c (@bad) {
        my ($name, $qs, $param) = @$c;
        my $r = request(GET => "/umlo/users?$qs");
        refused($name, $r, 400, qr/^(?:invalid|unknown)_parameter$/)
            and (ref $param ? like($r->{json}{error}{param} // '', $param, "$name: names the parameter")
                            : is($r->{json}{error}{param}, $param, "$name: names $param"));
    }
    my @odd = (
        [ 'q of 6,000 bytes',           'q=' . ('a' x 6000) ],
        [ 'q of 1,000 "é"',             'q=' . ('%C3%A9' x 1000) ],
        [ 'status with 1,000 values',   'status=' . join(',', ('active') x 1000) ],
        [ 'group with 500 values',      'group=' . join(',', map { "g$_" } 1 .. 500) ],
        [ 'double-encoded "%"',         'q=%2541' ],
        [ 'plus signs',                 'q=a+b' ],
        [ 'only ampersands',            '&&&&' ],
        [ 'an empty name',              '=x' ],
        [ 'a name without a value',     'q' ],
        [ 'an encoded ampersand',       'q=a%26limit%3D1' ],
        [ 'a fragment-looking value',   'q=%23a' ],
    );
    survived($_->[0], request(GET => "/umlo/users?$_->[1]")) for @odd;
    for my $p ('/umlo/users/facets', "/umlo/users/$uid", '/umlo/status', '/umlo/dashboard') {
        survived("$p with 700 parameters", request(GET => "$p?" . join('&', map { "p$_=%ff" } 1 .. 700)));
    }
    survived('CSV with a huge q', request(GET => '/umlo/users?format=csv&q=' . ('%C3%A9' x 1000)));
    # a request line longer than large_client_header_buffers (8k): nginx's own 414
    my $r = request(GET => '/umlo/users?q=' . ('a' x 9000));
    is $r->{status}, 414, 'a 9,000-byte request line: nginx answers 414 itself';
};

subtest 'history and metrics: query strings' => sub {
    my @bad = (
        [ 'limit 0',                    'limit=0',                          'invalid_limit' ],
        [ 'limit above the history',    'limit=100000',                     'invalid_limit' ],
        [ 'limit overflowing 64 bits',  'limit=99999999999999999999999',    'invalid_limit' ],
        [ 'limit with a plus sign',     'limit=%2B5',                       'invalid_limit' ],
        [ 'limit empty',                'limit=',                           'invalid_limit' ],
        [ 'limit and garbage',          'limit=5%00',                       'invalid_limit' ],
        [ 'an unknown parameter',       'colour=red',                       'unknown_parameter' ],
        [ 'a name of 6,000 bytes',      ('n' x 6000) . '=1',                'unknown_parameter' ],
        [ 'a raw invalid byte name',    "\xff\xfe=1",                       'unknown_parameter' ],
        [ 'a name without a value',     'limit',                            'unknown_parameter' ],
    );
    for my $c (@bad) {
        my ($name, $qs, $code) = @$c;
        refused("history: $name", request(GET => "/umlo/history?$qs"), 400, $code);
    }
    survived("history: $_", request(GET => "/umlo/history?$_"))
        for ('limit=1&limit=2', '&&&', 'limit=1&', '=x');
    my $r = request(GET => '/umlo/history?limit=1');
    is $r->{status}, 200, 'history still answers';
    for my $qs (join('&', map { "p$_=%ff" } 1 .. 700), "q=\xff", 'x' x 6000) {
        $r = request(GET => "/umlo/metrics?$qs");
        push @answers, [ 'metrics with a query string', $r->{status},
                         $r->{headers}{'content-type'} // '' ];
        is $r->{status}, 200, 'metrics ignore a query string (' . length($qs) . ' bytes)';
        like $r->{body}, qr/^umlo_/m, 'and still expose the metrics';
    }
};

subtest 'headers: Accept abuse, huge headers' => sub {
    for my $accept ('text/csv;q=abc', 'text/csv;q=1.00000000001', 'text/csv;q=-1',
                    'text/csv;q=', join(',', ('text/csv;q=0.1') x 300), ';;;,,,;q',
                    "text/csv\t;\tq=0.5", 'text/*;q=0.9,*/*;q=0.1') {
        my $r = request(GET => '/umlo/users?limit=2', headers => { Accept => $accept });
        survived("Accept: " . substr($accept, 0, 40), $r);
    }
    my $r = request(GET => '/umlo/users?limit=1', headers => { 'X-Pad' => 'a' x 7000 });
    survived('a 7,000-byte header', $r);
    $r = request(POST => '/umlo/sync', headers => { %$J, 'X-Umlo-Admin-Token' => 'x' x 5000 },
        body => '{"scope":"fulx"}');
    refused('an admin token header where none is configured: ignored', $r, 400, 'invalid_scope');
};

subtest 'paths: one user, facets and prefixes' => sub {
    my %cases = (
        '/umlo/users/' . ('a' x 300)   => [404, 400],
        '/umlo/users/a%2Fb'            => [404, 400],
        '/umlo/users/a%20b'            => [404, 400],
        '/umlo/users/%C3%A9'           => [404, 400],
        '/umlo/users/%FF'              => [404, 400],
        '/umlo/users/facets/x'         => [404, 400],
        '/umlo/users/facets?x=1'       => [200, 400],
        '/umlo/users//facets'          => [200, 400],
        '/umlo/users/' . $uid . '/x'   => [404, 400],
        '/umlo/usersXYZ'               => [404, 400],
        '/umlo/users/./facets'         => [200, 400],
        '/umlo/users/../users/facets'  => [200, 400],
    );
    for my $p (sort keys %cases) {
        my $r = request(GET => $p);
        my $name = 'GET ' . substr($p, 0, 60);
        survived($name, $r);
        ok((grep { $_ == $r->{status} } @{ $cases{$p} }), "$name: one of @{ $cases{$p} }")
            or diag(substr($r->{raw}, 0, 400));
    }
    # nginx itself refuses an encoded NUL in a path, before any module
    my $r = request(GET => '/umlo/users/%00');
    is $r->{status}, 400, 'an encoded NUL in the path: nginx\'s own 400';
    $r = request(GET => "/umlo/users/$uid");
    is $r->{status}, 200, 'the real user still answers';
};

# --------------------------------------------------------------------------

subtest 'afterwards: nothing crashed, other locations fine, syncs work' => sub {
    my @five = grep { $_->[1] >= 500 || $_->[1] == 0 } @answers;
    ok !@five, scalar(@answers) . ' hostile requests, none answered 5xx or not at all'
        or diag(join "\n", map { "$_->[0]: $_->[1]" } @five);
    my @html = grep { $_->[1] >= 400 && $_->[2] !~ /json/ } @answers;
    ok !@html, 'every error among them was JSON'
        or diag(join "\n", map { "$_->[0]: $_->[1] $_->[2]" } @html);
    unlike $t->error_log, qr/exited on signal|\[alert\]|\[crit\]|\[emerg\]/,
        'no worker crashed, no alert';
    my $r = request(GET => '/plain');
    is $r->{status}, 200, 'another location answers';
    is $r->{body}, "plain\n", '(its own body)';
    my ($st2) = run_sync($t);
    is $st2 && $st2->{state}, 'succeeded', 'a sync succeeds';
};

final_checks($t);
done_testing;
