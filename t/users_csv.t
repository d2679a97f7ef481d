use strict;
use warnings;
use utf8;

# umlo_users CSV export: format=csv and Accept: text/csv, the header, one
# row per matching user in the order of the JSON pages, RFC 4180 quoting,
# formula-injection safety, and large exports streamed in full (also to a
# slow reader; a stalled one is dropped after send_timeout; readers that
# leave half way harm nothing).

use Test::More;
use Encode ();
use IO::Select;
use Socket qw(PF_INET SOCK_STREAM SOL_SOCKET SO_RCVBUF inet_aton pack_sockaddr_in);
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for free_port);
use Umlo::Sync;
use Umlo::Users;

binmode(Test::More->builder->$_, ':encoding(UTF-8)') for qw(output failure_output todo_output);

my $t = Umlo::Test->new;
my $anchor = int time;
# a second server with a small send buffer: there nginx has to wait for a
# slow client, as it would for a large export over a real network
my $slow_port = free_port();
start_users_stack($t,
    sim  => { users => 100, sites => 2, groups => 16, seed => 23, args => [ '--anchor', $anchor ] },
    http => "server {\n    listen 127.0.0.1:$slow_port sndbuf=8k;\n    send_timeout 2s;\n"
        . "    location /umlo/users { umlo_users; }\n}");

my @HEADER = qw(id name email status account_type claim_status billable last_active
    last_active_source never_active created sites products groups);

# 201 (Created) counts as success here as well
sub sim_ok { my ($method, $path, $json) = @_; $t->sim_ok($method, $path, $json, 200, 201) }

# Names a spreadsheet would run as formulas, and names that need quoting.
my @v2 = v2_users(truth($t));
my @victims = @v2[ 20 .. 27 ];
my %nasty = (
    $victims[0]{accountId} => '=HYPERLINK("http://evil.example/?x","click"),1',
    $victims[1]{accountId} => '+1 555 0100',
    $victims[2]{accountId} => '-2+3',
    $victims[3]{accountId} => '@SUM(A1:A9)',
    $victims[4]{accountId} => "\tTabbed",
    $victims[5]{accountId} => "Line one\nline two, \"quoted\"",
    $victims[6]{accountId} => 'Ådne "The Hammer" Öberg, Jr.',
    $victims[7]{accountId} => 'Plain-Name',    # a dash inside is harmless
);
sim_ok(PATCH => "users/$_", { name => $nasty{$_} }) for sort keys %nasty;
# a group whose name is a formula: the groups cell starts with it
sim_ok(POST => 'groups', { name => "=cmd|' /C calc'!A0", members => [ map { $_->{accountId} } @victims[ 0 .. 2 ] ] });

my $st = first_sync($t);
my $truth = truth($t);
my $m = build_model($truth);
my $n = scalar @{ $m->{users} };

# Raw HTTP/1.1 GET: a CSV export that never ends must not hang the test.
# Options: port, headers, method, rcvbuf (small receive buffer), pause (before
# reading), chunk (bytes per read), delay (between reads), stop_after
# (leave after that many bytes), idle (give up after that long without
# data; default 1.5 s).  Returns {status, head, headers => {lc name =>
# value}, body (de-chunked), complete (the final chunk or the announced
# length arrived), err}.
sub http_raw {
    my ($path, %o) = @_;
    socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
    setsockopt($s, SOL_SOCKET, SO_RCVBUF, pack('i', $o{rcvbuf})) or die "setsockopt: $!" if $o{rcvbuf};
    connect($s, pack_sockaddr_in($o{port} // $t->nginx_port, inet_aton('127.0.0.1'))) or die "connect: $!";
    my $hdrs = join '', map { "$_: $o{headers}{$_}\r\n" } sort keys %{ $o{headers} || {} };
    syswrite $s, ($o{method} // 'GET') . " $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n$hdrs\r\n";
    sleep $o{pause} if $o{pause};
    my $raw = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + 60;
    while (time < $deadline) {
        last unless $sel->can_read($o{idle} // 1.5);
        my $k = sysread $s, my $buf, $o{chunk} // 65536;
        last unless $k;
        $raw .= $buf;
        last if $o{stop_after} && length $raw >= $o{stop_after};
        sleep $o{delay} if $o{delay};
    }
    close $s;
    push @Umlo::Sync::RESPONSES, $raw;
    my %res = (complete => 0, body => '');
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    $res{head} = $head;
    ($res{status}) = ($head // '') =~ m{^HTTP/1\.\d (\d+)};
    $res{status} //= 599;
    for my $line (split /\r\n/, $head // '') {
        $res{headers}{ lc $1 } = $2 if $line =~ /^([^:]+):\s*(.*)$/;
    }
    return { %res, err => 'no header end' } unless defined $body;
    if (($res{headers}{'transfer-encoding'} // '') =~ /chunked/i) {
        my $out = '';
        while (1) {
            unless ($body =~ s/\A([0-9a-fA-F]+)\r\n//) {
                $res{err} = length $body ? 'bad chunk size' : 'no final chunk';
                last;
            }
            my $len = hex $1;
            if ($len == 0) {
                if ($body eq "\r\n") { $res{complete} = 1 } else { $res{err} = 'junk after the final chunk' }
                last;
            }
            if (length($body) < $len + 2) { $res{err} = 'truncated chunk'; $out .= $body; last }
            $out .= substr $body, 0, $len;
            unless (substr($body, $len, 2) eq "\r\n") { $res{err} = 'chunk without CRLF'; last }
            $body = substr $body, $len + 2;
        }
        $res{body} = $out;
    } else {
        $res{body} = $body;
        $res{complete} = defined $res{headers}{'content-length'}
            && length($body) == $res{headers}{'content-length'} ? 1 : 0;
        $res{err} = 'body shorter than Content-Length' unless $res{complete};
    }
    return \%res;
}

# Every CSV answer and whether it ended properly (see endings_ok).
my @ENDINGS;

# GET returning the decoded CSV rows; dies unless 200 text/csv.
sub get_csv {
    my ($path, %o) = @_;
    my $r = http_raw($path, %o);
    die "GET $path answered $r->{status}: " . substr($r->{body}, 0, 300) . "\n"
        unless $r->{status} == 200 || $o{any_status};
    push @ENDINGS, [ $path, $r->{complete}, $r->{err} ];
    my $text = Encode::decode('UTF-8', $r->{body}, Encode::FB_CROAK | Encode::LEAVE_SRC);
    my ($rows, $err) = parse_csv($text);
    return { r => $r, rows => $rows, err => $err, text => $text };
}

# The exports so far ended with the last chunk (and the connection closed).
sub endings_ok {
    my ($name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my @bad = grep { !$_->[1] } @ENDINGS;
    ok !@bad, "$name: " . scalar(@ENDINGS) . ' exports ended with the final chunk'
        or diag join "\n", map { "$_->[0]: " . ($_->[2] // 'incomplete') } @bad[ 0 .. ($#bad > 2 ? 2 : $#bad) ];
    @ENDINGS = ();
}

# What a cell holding $v should read once parsed: formulas defused.
sub safe { my ($v) = @_; $v //= ''; return $v =~ /^[=+\-\@\t\r]/ ? "'$v" : $v }

# The CSV row a JSON row stands for.
sub csv_of_row {
    my ($j) = @_;
    my $b = sub { $_[0] ? 'true' : 'false' };
    my @groups = map { $_->{name} // $_->{id} } @{ $j->{groups} };
    return [ map { safe($_) }
        $j->{id}, $j->{name}, $j->{email}, $j->{status}, $j->{account_type}, $j->{claim_status},
        $b->($j->{billable}), $j->{last_active}{at}, $j->{last_active}{source},
        $b->($j->{never_active}), $j->{created},
        join('; ', @{ $j->{sites} }),
        join('; ', map { ($_->{site} // 'unknown') . '/' . ($_->{product} // 'unknown') } @{ $j->{products} }),
        join('; ', @groups) ];
}

sub compare_with_json {
    my ($name, $csv, $query) = @_;
    my $w = walk($t, $query, limit => 7);
    my @rows = @{ $csv->{rows} };
    my $head = shift @rows;
    is_deeply $head, \@HEADER, "$name: header row";
    is scalar(@rows), $w->{total}, "$name: one line per matching user ($w->{total})";
    is_deeply [ map { $_->[0] } @rows ], [ ids_of($w->{rows}) ], "$name: same users in the same order as the JSON pages";
    my @bad;
    for my $i (0 .. $#rows) {
        my $exp = csv_of_row($w->{rows}[$i] // {});
        push @bad, "line " . ($i + 2) . ": got [" . join('|', @{ $rows[$i] }) . "]\n expected [" . join('|', @$exp) . ']'
            unless join("\0", @{ $rows[$i] }) eq join("\0", @$exp);
    }
    ok !@bad, "$name: every cell matches its JSON row" or diag join "\n", @bad[ 0 .. ($#bad > 2 ? 2 : $#bad) ];
    return \@rows;
}

# --------------------------------------------------------------------------

subtest 'format=csv: header, rows, headers' => sub {
    my $c = get_csv('/umlo/users?format=csv');
    ok !defined $c->{err}, 'valid RFC 4180 (CRLF lines, quoted cells)' or diag $c->{err};
    like $c->{r}{headers}{'content-type'}, qr{^text/csv\b}, 'Content-Type: text/csv';
    like $c->{r}{headers}{'content-type'}, qr{charset=utf-8}i, '... charset=utf-8';
    like $c->{r}{headers}{'content-disposition'} // '', qr/^attachment; filename="users\.csv"$/, 'Content-Disposition: attachment';
    like $c->{r}{headers}{'transfer-encoding'} // '', qr/chunked/, 'streamed: chunked';
    ok !defined $c->{r}{headers}{'content-length'}, 'no Content-Length';
    like $c->{text}, qr/\r\n\z/, 'the last line ends in CRLF (parse_csv checks every line)';
    my $rows = compare_with_json('format=csv', $c, '');
    is scalar(@$rows), $n, "all $n v2 users";
    my %model = map { $_->{id} => $_ } @{ $m->{users} };
    my @bad = grep { my $u = $model{ $_->[0] };
        !$u || $_->[1] ne safe($u->{name}) || $_->[2] ne ($u->{email} // '') } @$rows;
    ok !@bad, 'ids, names and emails are the truth\'s' or diag join "\n", map { join '|', @$_ } @bad[ 0 .. ($#bad > 2 ? 2 : $#bad) ];
    endings_ok('format=csv');
};

subtest 'Accept: text/csv, with filters and sort in a context' => sub {
    my ($host) = sort keys %{ $m->{sites} };
    my $q = qs(site => $host, sort => 'last_active', order => 'desc');
    my $c = get_csv("/umlo/users?$q", headers => { Accept => 'text/csv' });
    ok !defined $c->{err}, 'valid CSV' or diag $c->{err};
    like $c->{r}{headers}{'content-type'}, qr{^text/csv\b}, 'Accept: text/csv gives text/csv';
    my $rows = compare_with_json("Accept: text/csv, site=$host, sort=last_active desc", $c, $q);
    my @exp = sort_ids($m, [ expect_ids($m, { site => $host }, 0) ], 'last_active', 'desc', context($m, site => $host));
    is_deeply [ map { $_->[0] } @$rows ], \@exp, 'the users of the site, by their last activity there';
    my $ctx = context($m, site => $host);
    my @bad;
    for my $row (@$rows) {
        my ($last, $never) = expect_row_last($m->{by_id}{ $row->[0] }, $ctx);
        push @bad, "$row->[0]: @$row[7..9]" unless ($row->[7] // '') eq ($last->{at} // '')
            && $row->[8] eq $last->{source} && $row->[9] eq ($never ? 'true' : 'false');
    }
    ok !@bad, 'last_active, source and never_active of the site context' or diag join "\n", @bad[ 0 .. ($#bad > 2 ? 2 : $#bad) ];
    my $c2 = get_csv('/umlo/users?status=suspended', headers => { Accept => 'text/html, text/csv;q=0.9' });
    like $c2->{r}{headers}{'content-type'}, qr{^text/csv\b}, 'text/csv among other types';
    compare_with_json('Accept list, status=suspended', $c2, 'status=suspended');
    # shorter than postpone_output (1460 bytes): must still be flushed
    my $c3 = get_csv('/umlo/users?format=csv&q=zzzz-nobody', any_status => 1);
    is $c3->{r}{status}, 200, 'no match: status 200';
    is_deeply $c3->{rows}, [ \@HEADER ], 'no match: the header alone';
    my $c4 = get_csv('/umlo/users?format=csv&limit=5&sort=email');
    is scalar(@{ $c4->{rows} }) - 1, $n, 'limit is ignored: every matching row';
    my $j = req($t, GET => '/umlo/users?limit=2', headers => { Accept => 'application/json' });
    like $j->{headers}{'content-type'}, qr{^application/json}, 'Accept: application/json stays JSON';
    endings_ok('Accept: text/csv');
    {
        for my $c ([ 'format=json', 'text/csv', 'an explicit format=json wins over Accept: text/csv' ],
                   [ '', 'text/csv;q=0', 'Accept: text/csv;q=0 (not acceptable) is not a request for CSV' ]) {
            my $r = http_raw("/umlo/users?limit=1&$c->[0]", headers => { Accept => $c->[1] }, idle => 0.5);
            like $r->{headers}{'content-type'} // '', qr{^application/json}, $c->[2];
        }
    }
};

subtest 'RFC 4180 quoting and formula injection' => sub {
    my $c = get_csv('/umlo/users?format=csv&sort=created');
    my %line = map { $_->[0] => $_ } @{ $c->{rows} }[ 1 .. $#{ $c->{rows} } ];
    for my $id (sort keys %nasty) {
        my $row = $line{$id};
        ok $row, "user $id is in the export" or next;
        is $row->[1], safe($nasty{$id}), 'name ' . ($nasty{$id} =~ s/\n/\\n/gr =~ s/\t/\\t/gr) . ': '
            . ($nasty{$id} =~ /^[=+\-\@\t]/ ? "prefixed with '" : 'unchanged');
    }
    my $raw = $c->{text};
    like $raw, qr/,"'=HYPERLINK\(""http:\/\/evil\.example\/\?x"",""click""\),1",/, 'quotes doubled inside a quoted cell, the formula defused';
    like $raw, qr/,'\+1 555 0100,/, 'a + cell is prefixed, not quoted';
    like $raw, qr/,"Line one\nline two, ""quoted""",/, 'a cell with a line break is quoted and keeps it';
    like $raw, qr/,"Ådne ""The Hammer"" Öberg, Jr\.",/, 'non-ASCII text in a quoted cell';
    like $raw, qr/,Plain-Name,/, 'a dash inside a cell is left alone';
    my @g = grep { $_->[13] =~ /cmd/ } @{ $c->{rows} };
    is scalar(@g), 3, 'three users are in the formula-named group';
    ok !grep({ $_->[13] !~ /^'=cmd\|' \/C calc'!A0/ } @g), 'the groups cell starting with "=" is prefixed with \''
        or diag join "\n", map { $_->[13] } @g;
    my $bad = 0;
    for my $row (@{ $c->{rows} }) { $bad++ if grep { /^[=+\-\@\t\r]/ } @$row }
    is $bad, 0, 'no cell of the export starts with = + - @ TAB or CR';
    endings_ok('quoting');
};

subtest 'CSV errors are JSON; HEAD' => sub {
    for my $case ([ 'format=csv&limit=0', 'limit' ], [ 'format=csv&sort=size', 'sort' ],
                  [ 'format=csv&cursor=abc', 'cursor' ], [ 'format=csv&format=csv', 'format' ]) {
        my $r = req($t, GET => "/umlo/users?$case->[0]");
        is $r->{status}, 400, "$case->[0]: 400";
        json_contains $r->{json}, { error => { param => $case->[1] } }, "$case->[0]: JSON naming $case->[1]";
    }
    my $h = req($t, HEAD => '/umlo/users?format=csv');
    is $h->{status}, 200, 'HEAD: 200';
    like $h->{headers}{'content-type'}, qr{^text/csv}, 'HEAD: text/csv';
    is $h->{body}, '', 'HEAD: no body';
    my $after = req($t, GET => '/umlo/users?limit=1');
    is $after->{status}, 200, 'the server still answers';
};

# --------------------------------------------------------------------------
# a large org

subtest 'about 5,000 users: complete, streamed, also to slow, stalled and leaving readers' => sub {
    sim_ok(POST => 'users', { count => 5000 - 100 });
    my $t0 = time;
    my ($st2) = run_sync($t, timeout => 60);
    is $st2 && $st2->{state}, 'succeeded', sprintf('a sync of the larger org (%.1fs)', time - $t0);
    my $big = build_model(truth($t));
    my $nb = scalar @{ $big->{users} };
    cmp_ok $nb, '>', 4500, "$nb v2 users";
    my @all = map { $_->{id} } @{ $big->{users} };

    my $c = get_csv('/umlo/users?format=csv', any_status => 1);
    is $c->{r}{status}, 200, 'status 200';
    like $c->{r}{headers}{'transfer-encoding'} // '', qr/chunked/, 'chunked';
    ok !defined $c->{err}, 'the chunks are well formed' or diag $c->{err};
    cmp_ok length($c->{r}{body}), '>', 4 * 32 * 1024, length($c->{r}{body}) . ' bytes: many buffers';
    my @rows = @{ $c->{rows} };
    is_deeply shift(@rows), \@HEADER, 'header';
    is scalar(@rows), $nb, "every user: $nb lines";
    my $d = set_diff([ map { $_->[0] } @rows ], \@all);
    ok !defined $d, 'exactly the v2 users, once each' or diag $d;
    is_deeply [ map { $_->[0] } @rows ], [ sort_ids($big, \@all, 'name', 'asc') ], 'in name order';
    endings_ok('large export');

    my $mark = $t->error_log_mark;
    my $sr = http_raw('/umlo/users?format=csv&sort=email&order=desc', port => $slow_port,
        rcvbuf => 4096, pause => 1, chunk => 4096, delay => 0.001);
    is $sr->{status}, 200, 'slow reader: status 200';
    like $sr->{headers}{'transfer-encoding'} // '', qr/chunked/, 'slow reader: chunked';
    ok $sr->{complete}, 'slow reader: the chunked body ends with the final chunk' or diag $sr->{err};
    my ($srows, $serr) = parse_csv(Encode::decode('UTF-8', $sr->{body}));
    ok !defined $serr, 'slow reader: valid CSV' or diag $serr;
    is scalar(@$srows) - 1, $nb, "slow reader: all $nb lines";
    is_deeply [ map { $_->[0] } @$srows[ 1 .. $#$srows ] ], [ sort_ids($big, \@all, 'email', 'desc') ],
        'slow reader: in email order, descending';
    unlike $t->error_log($mark), qr/exited on signal/, 'slow reader: no worker died';

    # a client that stops reading is dropped after send_timeout (2s there)
    $mark = $t->error_log_mark;
    my $t1 = time;
    my $stall = http_raw('/umlo/users?format=csv', port => $slow_port, rcvbuf => 4096, pause => 4, chunk => 65536);
    ok !$stall->{complete}, sprintf('a stalled reader does not get the whole export (%d bytes)', length $stall->{body});
    $t->assert_error_log(qr/client timed out during a CSV export/, since => $mark, timeout => 3,
        desc => 'the export is abandoned after send_timeout, and logged');

    $mark = $t->error_log_mark;
    for (1 .. 3) {
        http_raw('/umlo/users?format=csv', port => $slow_port, rcvbuf => 4096, pause => 0.3, chunk => 4096,
            stop_after => 50_000);
    }
    my $after = http_raw('/umlo/users?format=csv&status=active');
    is $after->{status}, 200, 'after three readers left half way: the server answers';
    my @lines = grep { /\[(?:alert|emerg|crit)\]|exited on signal/ } split /\n/, $t->error_log($mark);
    ok !@lines, 'readers leaving half way: no alert, no worker died'
        or diag join "\n", @lines[ 0 .. ($#lines > 4 ? 4 : $#lines) ];
    my $j = get_ok($t, '/umlo/users?limit=1');
    is $j->{meta}{total}, $nb, 'the JSON list agrees';
};

unlike $t->error_log, qr/exited on signal/, 'no worker died';
final_checks($t);
done_testing;
