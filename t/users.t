use strict;
use warnings;
use utf8;

# umlo_users over HTTP: every filter, the context rule of last_active,
# sorts and cursor pages, bad input, facets and one user, each checked
# against an independent computation from the simulator's ground truth
# (t/lib/Umlo/Users.pm), not against the module's own answers.

use Test::More;
use Time::HiRes qw(time);
use lib 't/lib';
use Umlo::Test qw(json_contains json_diff wait_for);
use Umlo::Sync;
use Umlo::Users;

binmode(Test::More->builder->$_, ':encoding(UTF-8)') for qw(output failure_output todo_output);

my $t = Umlo::Test->new;
# the data's "now" is the real one, so that inactivity windows mean something
my $anchor = int time;
start_users_stack($t,
    sim => { users => 300, sites => 3, groups => 24, seed => 11, args => [ '--anchor', $anchor ] });

my $T = JSON::PP::true;
my $F = JSON::PP::false;

# --------------------------------------------------------------------------

subtest 'before any sync: 404 no_snapshot' => sub {
    for my $path ('/umlo/users', '/umlo/users?status=active', '/umlo/users/facets',
                  '/umlo/users/5b10ac8d82e05b22cc7d4ef5', '/umlo/users?format=csv') {
        my $r = req($t, GET => $path);
        is $r->{status}, 404, "$path: 404";
        json_contains $r->{json}, { error => { status => 404, code => 'no_snapshot',
            message => qr/no full sync/ } }, "$path: no_snapshot";
    }
};

my ($st) = run_sync($t);
die "the first sync did not succeed\n" unless $st && $st->{state} eq 'succeeded';
my $truth = truth($t);
my $m = build_model($truth);
my $gen = current_gen($t);
my $n = scalar @{ $m->{users} };
my @hosts = sort keys %{ $m->{sites} };

subtest 'the snapshot the browser reads matches the truth' => sub {
    compare_with_truth(snapshot($t), $truth, 'snapshot', users_only => 1);
    cmp_ok $n, '>', 250, "$n v2 users";
    is scalar @hosts, 3, 'three sites with products';
};

# A row as the list should show it, in the context $ctx.
sub expected_row {
    my ($u, $ctx) = @_;
    my ($last, $never) = expect_row_last($u, $ctx);
    my $in = ctx_eval($u, $ctx);
    my @entries = sort {
        ($a->{host} // "\x{10ffff}") cmp ($b->{host} // "\x{10ffff}")
            || ($a->{key} // "\x{10ffff}") cmp ($b->{key} // "\x{10ffff}")
            || $a->{ari} cmp $b->{ari}
    } values %{ $u->{entries} };
    my %sites = map { $_->{host} => 1 } grep { defined $_->{host} } @entries;
    my @groups = sort { $a->{name} cmp $b->{name} || $a->{id} cmp $b->{id} }
        map { $m->{groups}{$_} } @{ $u->{groups} };
    return {
        id => $u->{id}, name => $u->{name}, email => $u->{email},
        avatar => qr{^https?://},
        status => $u->{status}, account_type => $u->{account_type},
        claim_status => $u->{claim}, account_status => $u->{account_status},
        membership_status => $u->{membership_status},
        created => $u->{created_iso},
        billable => $in->{billable} ? $T : $F,
        platform_roles => [ sort keys %{ $u->{platform_roles} } ],
        sites => [ sort keys %sites ],
        products => [ map { {
            site => $_->{host}, product => $_->{key},
            roles => [ sort keys %{ $_->{roles} } ],
            billable => $_->{billable} ? $T : $F,
            last_active => ms_iso($_->{last}),
        } } @entries ],
        groups => [ map { { id => $_->{id}, name => $_->{name} } } @groups ],
        last_active => $last,
        never_active => $never ? $T : $F,
    };
}

# ids of a full walk compared with the expected set (and total)
sub check_set {
    my ($name, $query, $exp, %o) = @_;
    my $w = walk($t, $query);
    my @got = ids_of($w->{rows});
    my $d = set_diff(\@got, $exp);
    ok !defined $d, "$name: " . scalar(@$exp) . ' users' or diag "query: $query\n$d";
    is $w->{total}, scalar(@got), "$name: meta.total is the number of rows";
    return $w;
}

# --------------------------------------------------------------------------

subtest 'list without filters: every v2 user, rows as the sync stored them' => sub {
    my $w = walk($t, '');
    is $w->{total}, $n, "total is the number of v2 users ($n)";
    my $d = set_diff([ ids_of($w->{rows}) ], [ map { $_->{id} } @{ $m->{users} } ]);
    ok !defined $d, 'exactly the v2 users' or diag $d;
    my $r = req($t, GET => '/umlo/users');
    is $r->{status}, 200, 'GET /umlo/users: 200';
    like $r->{headers}{'content-type'}, qr{^application/json\b}, 'JSON';
    is $r->{headers}{'cache-control'}, 'no-cache', 'Cache-Control: no-cache (revalidate with the ETag)';
    like $r->{headers}{etag}, qr/^"[0-9a-f]{16}"$/, 'a strong ETag';
    is scalar @{ $r->{json}{data} }, 100, 'default limit 100';
    json_contains $r->{json}{meta}, { total => $n, limit => 100, generation => $gen,
        context => 'org', sync_id => $st->{sync}{id},
        data_as_of => $st->{snapshot}{data_as_of} }, 'meta';
    ok defined $r->{json}{links}{next}, 'links.next on the first of several pages';
    my $ctx = context($m);
    my @bad;
    for my $row (@{ $w->{rows} }) {
        my $u = $m->{by_id}{ $row->{id} } or next;
        my $dd = json_diff($row, expected_row($u, $ctx));
        push @bad, "$row->{id}: $dd" if defined $dd;
    }
    ok !@bad, "every row (fields, products, groups, last_active) matches the truth ($n rows)"
        or diag join "\n", @bad[ 0 .. ($#bad > 4 ? 4 : $#bad) ];
    my $r2 = req($t, GET => '/umlo/users/?limit=3');
    is $r2->{status}, 200, 'a trailing slash is the list too';
    is $r2->{json}{meta}{total}, $n, '(same total)';
    my $h = req($t, HEAD => '/umlo/users');
    is $h->{status}, 200, 'HEAD: 200';
    is $h->{body}, '', 'HEAD: no body';
    for my $mth (qw(POST PUT DELETE)) {
        my $x = req($t, $mth => '/umlo/users');
        is $x->{status}, 405, "$mth: 405";
        is $x->{headers}{allow}, 'GET, HEAD', "$mth: Allow: GET, HEAD";
    }
};

# --------------------------------------------------------------------------
# filters

# Picks from the truth so that the cases are meaningful for this org.
my ($h1, $h2, $h3) = @hosts;
my %sitekeys = map { my $h = $_; $h => { map { $m->{products}{$_}{key} => 1 } @{ $m->{sites}{$h}{products} } } } @hosts;
my ($no_jsm) = grep { !$sitekeys{$_}{'jira-servicedesk'} } @hosts;
my %gid = map { $_->{name} => $_->{id} } @{ $truth->{groups} };
my ($nonascii_group) = grep { /[^\x00-\x7f]/ } sort keys %gid;
my ($zoe) = grep { ($_->{name} // '') eq 'Zoë Müller' } @{ $m->{users} };
my ($cjk) = grep { ($_->{name} // '') =~ /\p{Han}/ } @{ $m->{users} };
my @created = sort { $a <=> $b } map { $_->{created} } grep { $_->{created} } @{ $m->{users} };
my $mid_created = $m->{users}[ int($n / 3) ]{created_iso};
my $domain = $truth->{org}{domains}[0];
# a piece of an ASCII-only name, upper-cased: the search folds case
my ($ascii) = grep { ($_->{name} // '') =~ /^[A-Za-z]+ ([A-Za-z]{4,})$/ } @{ $m->{users} }[ 20 .. $n - 1 ];
my $ascii_q = uc substr(($ascii->{name} =~ /^[A-Za-z]+ ([A-Za-z]{4,})$/)[0], 1, 3);

my @cases = (
    [ 'site by host',            { site => $h1 } ],
    [ 'site by host (2)',        { site => $h2 } ],
    [ 'site by cloud id',        { site => $m->{sites}{$h3}{cloud} } ],
    [ 'site naming nothing',     { site => 'nowhere.atlassian.net' }, 'empty' ],
    [ 'product (every site)',    { product => 'confluence' } ],
    [ 'product jira-software',   { product => 'jira-software' } ],
    [ 'product on a site',       { site => $h2, product => 'jira-software' } ],
    [ 'product on a site by cloud id', { site => $m->{sites}{$h1}{cloud}, product => 'confluence' } ],
    ($no_jsm ? [ 'product the site lacks', { site => $no_jsm, product => 'jira-servicedesk' }, 'empty' ] : ()),
    [ 'product naming nothing',  { product => 'bitbucket' }, 'empty' ],
    [ 'status',                  { status => 'suspended' } ],
    [ 'status list',             { status => 'deactivated,for_deletion' } ],
    [ 'status list with spaces', { status => ' active , not_invited' } ],
    [ 'status naming nothing',   { status => 'zombie' }, 'empty' ],
    [ 'status, one known',       { status => 'zombie,suspended' } ],
    [ 'account_type',            { account_type => 'atlassian' } ],
    [ 'account_type app (none in v2)', { account_type => 'app' }, 'empty' ],
    [ 'claim',                   { claim => 'unmanaged' } ],
    [ 'claim list',              { claim => 'managed,unmanaged' } ],
    [ 'group by id',             { group => $gid{engineering} } ],
    [ 'group by name',           { group => 'contractors' } ],
    ($nonascii_group ? [ "group by non-ASCII name ($nonascii_group)", { group => $nonascii_group } ] : ()),
    [ 'groups by id and name',   { group => "$gid{'site-admins'},contractors" } ],
    [ 'group naming nothing',    { group => 'no-such-group' }, 'empty' ],
    [ 'billable true',           { billable => 'true' } ],
    [ 'billable false',          { billable => 'false' } ],
    [ 'billable false on a site', { site => $h1, billable => 'false' } ],
    [ 'billable true, product',  { product => 'jira-servicedesk', billable => 'true' } ],
    [ 'role (product role)',     { role => 'atlassian/admin' } ],
    [ 'role guest on confluence', { product => 'confluence', role => 'atlassian/guest' } ],
    [ 'role guest on a site',    { site => $h1, role => 'atlassian/guest' } ],
    [ 'role (platform role)',    { role => 'atlassian/org-admin' } ],
    [ 'role site-admin',         { role => 'atlassian/site-admin' } ],
    [ 'roles, platform or product', { role => 'atlassian/org-admin,atlassian/admin' } ],
    [ 'platform role in a site context', { site => $h1, role => 'atlassian/site-admin' } ],
    [ 'role naming nothing',     { role => 'atlassian/wizard' }, 'empty' ],
    [ 'inactive_days 30',        { inactive_days => 30 } ],
    [ 'inactive_days 180',       { inactive_days => 180 } ],
    [ 'inactive_days 0',         { inactive_days => 0 } ],
    [ 'inactive_days 90 on a site', { site => $h2, inactive_days => 90 } ],
    [ 'inactive_days 60 on a product', { product => 'confluence', inactive_days => 60 } ],
    [ 'inactive_days 36500',     { inactive_days => 36500 }, 'empty' ],
    [ 'never_active true',       { never_active => 'true' } ],
    [ 'never_active false',      { never_active => 'false' } ],
    [ 'never_active true, site', { site => $h1, never_active => 'true' } ],
    [ 'never_active true, site+product', { site => $h1, product => 'confluence', never_active => 'true' } ],
    [ 'never_active true, product', { product => 'jira-software', never_active => 'true' } ],
    [ 'q upper-case ASCII',      { q => $ascii_q } ],
    [ 'q non-ASCII, other case', { q => 'MÜLLER' } ],
    [ 'q Polish capital',        { q => 'ŁUKASZ' } ],
    ($cjk ? [ 'q CJK',           { q => substr($cjk->{name}, -1) } ] : ()),
    [ 'q email domain',          { q => "\@$domain" } ],
    [ 'q empty: no filter',      { q => '' } ],
    [ 'q matching nothing',      { q => 'zzzqqq-nobody' }, 'empty' ],
    [ 'created_after (date)',    { created_after => '2025-01-01' } ],
    [ 'created_before (date-time)', { created_before => '2024-06-30T12:00:00Z' } ],
    [ 'created range',           { created_after => '2023-01-01', created_before => '2025-06-01' } ],
    [ 'created_after a user\'s exact date (inclusive)', { created_after => $mid_created } ],
    [ 'created_before a user\'s exact date (exclusive)', { created_before => $mid_created } ],
    [ 'combo: site, status, billable', { site => $h1, status => 'active', billable => 'true' } ],
    [ 'combo: product, inactive, billable', { product => 'jira-software', inactive_days => 30, billable => 'true' } ],
    [ 'combo: group, claim, q',  { group => $gid{'Équipe Produit'} // 'Équipe Produit', claim => 'managed', q => 'a' } ],
    [ 'combo: site+product, role, never_active false',
        { site => $h1, product => 'confluence', role => 'atlassian/user', never_active => 'false' } ],
    [ 'combo: status, created, sort', { status => 'active', created_after => '2024-01-01', sort => 'email', order => 'desc' } ],
);

subtest 'filters give exactly the expected users' => sub {
    for my $c (@cases) {
        my ($name, $p, $empty) = @$c;
        my @kv = map { ($_ => $p->{$_}) } sort keys %$p;
        my $query = qs(@kv);
        my $t0 = time;
        my $w = walk($t, $query);
        my $t1 = time;
        # the module's "now" lies between t0 and t1 (whole seconds)
        my @lo = expect_ids($m, $p, int($t0) * 1000);
        my @hi = expect_ids($m, $p, (int($t1) + 1) * 1000);
        my @got = ids_of($w->{rows});
        my $d = set_diff(\@got, \@lo);
        if (defined $d && @hi != @lo) {
            my $d2 = set_diff(\@got, \@hi);
            $d = undef unless defined $d2;    # a user on the boundary second
        }
        ok !defined $d, "$name: " . scalar(@lo) . ' users' or diag "query: $query\n$d";
        is $w->{total}, scalar(@got), "$name: meta.total = rows";
        if ($empty) {
            is scalar(@lo), 0, "$name: (expected to match nobody)";
        } else {
            ok @lo > 0 && @lo < $n || (exists $p->{q} && $p->{q} eq '') || ($p->{account_type} // '') eq 'atlassian'
                || ($p->{claim} // '') =~ /,/ || exists $p->{inactive_days} && $p->{inactive_days} == 0,
                "$name: (a meaningful case: " . scalar(@lo) . " of $n)";
        }
        my $ctx = context($m, site => $p->{site}, product => $p->{product});
        is $w->{pages}[0]{meta}{context}, $ctx->{name}, "$name: context $ctx->{name}";
    }
};

# --------------------------------------------------------------------------
# context rule of last_active / never_active

subtest 'last_active and never_active follow the context' => sub {
    my @ctxs = ([ 'org', {} ]);
    for my $h (@hosts) {
        push @ctxs, [ "site $h", { site => $h } ];
        push @ctxs, [ "site $h by cloud id", { site => $m->{sites}{$h}{cloud} } ];
        push @ctxs, map { [ "site $h product $_", { site => $h, product => $_ } ] }
            sort keys %{ $sitekeys{$h} };
    }
    my %keys = map { $_->{key} => 1 } values %{ $m->{products} };
    push @ctxs, map { [ "product $_", { product => $_ } ] } sort keys %keys;

    my ($created_rows, $never_rows) = (0, 0);
    for my $c (@ctxs) {
        my ($name, $p) = @$c;
        my $ctx = context($m, %$p);
        my $w = walk($t, qs(map { ($_ => $p->{$_}) } sort keys %$p));
        my @exp = expect_ids($m, $p, time * 1000);
        my $d = set_diff([ ids_of($w->{rows}) ], \@exp);
        ok !defined $d, "$name: the users with access or activity there (" . scalar(@exp) . ')'
            or diag $d;
        my @bad;
        for my $row (@{ $w->{rows} }) {
            my $u = $m->{by_id}{ $row->{id} } or next;
            my ($last, $never) = expect_row_last($u, $ctx);
            my $in = ctx_eval($u, $ctx);
            my $dd = json_diff($row, { last_active => $last, never_active => $never ? $T : $F,
                billable => $in->{billable} ? $T : $F });
            push @bad, "$row->{id}: $dd" if defined $dd;
            if ($never) {
                $never_rows++;
                $created_rows++ if ($row->{last_active}{source} // '') eq 'created'
                    && ($row->{last_active}{at} // '') eq ($u->{created_iso} // '');
            }
        }
        ok !@bad, "$name: last_active {at, context, source}, never_active and billable of "
            . scalar(@{ $w->{rows} }) . ' rows' or diag join "\n", @bad[ 0 .. ($#bad > 4 ? 4 : $#bad) ];
    }
    cmp_ok $never_rows, '>', 20, "$never_rows rows were never active in their context";
    is $created_rows, $never_rows, '... all showing the created date with source "created"';
};

# --------------------------------------------------------------------------
# sorting and pages

subtest 'sorts, orders and pages of 7 add up, stable, no gaps or duplicates' => sub {
    my @all = map { $_->{id} } @{ $m->{users} };
    for my $sort (qw(name email last_active created)) {
        for my $order (qw(asc desc)) {
            my $w = walk($t, "sort=$sort&order=$order", limit => 7);
            my @got = ids_of($w->{rows});
            my @exp = sort_ids($m, \@all, $sort, $order);
            is scalar(@got), $n, "$sort $order: $n rows over " . scalar(@{ $w->{pages} }) . ' pages';
            ok !defined set_diff(\@got, \@all), "$sort $order: no gaps, no duplicates";
            my ($first_bad) = grep { $got[$_] ne $exp[$_] } 0 .. $#exp;
            ok !defined $first_bad, "$sort $order: in the expected order"
                or diag "first difference at $first_bad: got $got[$first_bad], expected $exp[$first_bad]"
                    . "\n got: " . join(' | ', map { $_->{name} // 'null' } @{ $w->{rows} }[ $first_bad .. ($first_bad + 3 > $#got ? $#got : $first_bad + 3) ]);
            my @sizes = map { scalar @{ $_->{data} } } @{ $w->{pages} };
            ok !grep({ $_ != 7 } @sizes[ 0 .. $#sizes - 1 ]) && $sizes[-1] >= 1 && $sizes[-1] <= 7,
                "$sort $order: pages of 7, the last one " . $sizes[-1];
            ok !grep({ defined $_->{links}{next} } $w->{pages}[-1]) && !grep({ !defined $_->{links}{next} } @{ $w->{pages} }[ 0 .. $#sizes - 1 ]),
                "$sort $order: links.next on every page but the last";
            ok !grep({ $_->{meta}{total} != $n || $_->{meta}{limit} != 7 } @{ $w->{pages} }),
                "$sort $order: meta.total and meta.limit on every page";
            my $again = walk($t, "sort=$sort&order=$order", limit => 1000);
            is_deeply [ ids_of($again->{rows}) ], \@got, "$sort $order: the same order in one page (stable)";
        }
    }

    # the context date: last_active sorted within a site and a product
    for my $p ({ site => $h2 }, { site => $h1, product => 'confluence' }, { product => 'jira-software' }) {
        my $ctx = context($m, %$p);
        my @ids = expect_ids($m, $p, time * 1000);
        for my $order (qw(asc desc)) {
            my $w = walk($t, qs(%$p) . "&sort=last_active&order=$order", limit => 9);
            my @exp = sort_ids($m, \@ids, 'last_active', $order, $ctx);
            is_deeply [ ids_of($w->{rows}) ], \@exp, "last_active $order in $ctx->{name}: "
                . scalar(@exp) . ' rows by the context date';
        }
    }

    # filtered, sorted, paged
    my @ids = expect_ids($m, { status => 'active', claim => 'managed' }, 0);
    my $w = walk($t, 'status=active&claim=managed&sort=email&order=desc', limit => 7);
    is_deeply [ ids_of($w->{rows}) ], [ sort_ids($m, \@ids, 'email', 'desc') ],
        'status=active&claim=managed&sort=email&order=desc in pages of 7';

    # limit may change from page to page
    my $p1 = get_ok($t, '/umlo/users?sort=created&limit=5');
    my $p2 = get_ok($t, '/umlo/users?sort=created&limit=50&cursor=' . $p1->{links}{next});
    my @exp = sort_ids($m, \@all, 'created', 'asc');
    is_deeply [ map { $_->{id} } @{ $p1->{data} }, @{ $p2->{data} } ], [ @exp[ 0 .. 54 ] ],
        'a cursor continues with another limit';
};

# --------------------------------------------------------------------------

sub bad_request {
    my ($name, $query, $param, %o) = @_;
    my $r = req($t, GET => "/umlo/users?$query", %o);
    is $r->{status}, $o{status} // 400, "$name: " . ($o{status} // 400);
    json_contains $r->{json}, { error => { status => $o{status} // 400,
        code => $o{code} // 'invalid_parameter', param => $param, message => qr/\S/ } },
        "$name: names \"$param\"";
    return $r;
}

subtest 'bad input: 400 naming the parameter' => sub {
    bad_request('unknown parameter', 'colour=red', 'colour', code => 'unknown_parameter');
    bad_request('unknown parameter (sites)', 'sites=x', 'sites', code => 'unknown_parameter');
    bad_request('repeated parameter', 'status=active&status=suspended', 'status');
    bad_request('repeated limit', 'limit=5&limit=5', 'limit');
    bad_request('limit 0', 'limit=0', 'limit');
    bad_request('limit 1001', 'limit=1001', 'limit');
    bad_request('limit abc', 'limit=abc', 'limit');
    bad_request('limit -1', 'limit=-1', 'limit');
    bad_request('limit empty', 'limit=', 'limit');
    bad_request('bad date', 'created_after=2024-13-01', 'created_after');
    bad_request('bad date-time', 'created_before=2024-05-31T25:00:00Z', 'created_before');
    bad_request('not a date', 'created_before=yesterday', 'created_before');
    bad_request('30 February', 'created_after=2024-02-30', 'created_after');
    bad_request('29 February of a common year', 'created_before=2023-02-29', 'created_before');
    my $leap = req($t, GET => '/umlo/users?limit=1&created_before=2024-02-29');
    is $leap->{status}, 200, '29 February of a leap year is a date';
    bad_request('bad boolean', 'billable=yes', 'billable');
    bad_request('bad boolean (1)', 'never_active=1', 'never_active');
    bad_request('bad sort', 'sort=age', 'sort');
    bad_request('bad order', 'order=up', 'order');
    bad_request('bad format', 'format=xml', 'format');
    bad_request('inactive_days too large', 'inactive_days=36501', 'inactive_days');
    bad_request('inactive_days negative', 'inactive_days=-1', 'inactive_days');
    bad_request('invalid percent-encoding', 'q=%zz', 'q');
    bad_request('truncated percent-encoding', 'q=ab%4', 'q');
    bad_request('not UTF-8', 'q=%E9t%E9', 'q');
    bad_request('NUL', 'q=a%00b', 'q');
    bad_request('site with two values', "site=$h1,$h2", 'site');
    bad_request('site empty', 'site=', 'site');
    bad_request('product empty', 'product=', 'product');
    bad_request('status empty', 'status=', 'status');
    bad_request('status with an empty item', 'status=active,,suspended', 'status');
    bad_request('cursor garbage', 'cursor=hello', 'cursor');
    my $r = req($t, GET => '/umlo/users?colour=red');
    like $r->{headers}{'content-type'}, qr{^application/json\b}, 'errors are JSON';
    $r = req($t, GET => '/umlo/users?' . ('x' x 100) . '=1');
    is $r->{status}, 400, 'a long unknown name: 400';
};

subtest 'cursors: bound to their query, tampering refused' => sub {
    my $p1 = get_ok($t, '/umlo/users?status=active&limit=10');
    my $c = $p1->{links}{next};
    like $c, qr/^[A-Za-z0-9_-]+$/, 'the cursor is URL-safe';
    my $ok = req($t, GET => "/umlo/users?status=active&limit=10&cursor=$c");
    is $ok->{status}, 200, 'the cursor works with its query';
    bad_request('cursor with other filters', "status=suspended&limit=10&cursor=$c", 'cursor');
    bad_request('cursor without its filters', "limit=10&cursor=$c", 'cursor');
    bad_request('cursor with another sort', "status=active&sort=email&limit=10&cursor=$c", 'cursor');
    my $last = substr $c, -1;
    my $flip = $last eq 'A' ? 'E' : 'A';
    bad_request('cursor: last character changed', 'status=active&limit=10&cursor=' . substr($c, 0, -1) . $flip, 'cursor');
    bad_request('cursor: truncated', 'status=active&limit=10&cursor=' . substr($c, 0, -2), 'cursor');
    bad_request('cursor: one more character', "status=active&limit=10&cursor=${c}A", 'cursor');
    bad_request('cursor: not base64url', 'status=active&limit=10&cursor=' . substr($c, 0, -1) . '!', 'cursor');
    bad_request('cursor: other version', 'status=active&limit=10&cursor=B' . substr($c, 1), 'cursor');
    bad_request('cursor with CSV', "status=active&format=csv&cursor=$c", 'cursor');
    my $e = req($t, GET => '/umlo/users?status=active&limit=10&cursor=');
    is $e->{status}, 200, 'an empty cursor is the first page';
    is_deeply [ map { $_->{id} } @{ $e->{json}{data} } ], [ map { $_->{id} } @{ $p1->{data} } ], '(same rows)';
};

# --------------------------------------------------------------------------

subtest 'facets agree with the list and the truth' => sub {
    my $f = get_ok($t, '/umlo/users/facets');
    is $f->{total}, $n, 'total';
    my $tot = sub { get_ok($t, '/umlo/users?limit=1&' . qs(@_))->{meta}{total} };
    my $cnt = sub { scalar expect_ids($m, {@_}, 0) };

    is_deeply [ map { $_->{host} } @{ $f->{sites} } ], \@hosts, 'sites, by host';
    for my $s (@{ $f->{sites} }) {
        is $s->{id}, $m->{sites}{ $s->{host} }{cloud}, "$s->{host}: cloud id";
        is $s->{users}, $tot->(site => $s->{host}), "$s->{host}: users = total of ?site=host";
        is $s->{users}, $tot->(site => $s->{id}), "$s->{host}: users = total of ?site=cloud id";
        is $s->{users}, $cnt->(site => $s->{host}), "$s->{host}: users = the truth's";
        my @keys = sort keys %{ $sitekeys{ $s->{host} } };
        is_deeply [ map { $_->{key} } @{ $s->{products} } ], \@keys, "$s->{host}: products by key";
        for my $p (@{ $s->{products} }) {
            my @q = (site => $s->{host}, product => $p->{key});
            my $tp = $m->{products}{ $p->{id} };
            ok $tp && $tp->{host} eq $s->{host} && $tp->{key} eq $p->{key}, "$s->{host}/$p->{key}: id is the product ARI";
            is $p->{users}, $tot->(@q), "$s->{host}/$p->{key}: users = list total";
            is $p->{billable}, $tot->(@q, billable => 'true'), "$s->{host}/$p->{key}: billable = list total";
            is $p->{users}, $cnt->(@q), "$s->{host}/$p->{key}: users = the truth's";
            is $p->{billable}, $cnt->(@q, billable => 'true'), "$s->{host}/$p->{key}: billable = the truth's";
            is $p->{capacity}, $tp && $tp->{capacity}, "$s->{host}/$p->{key}: capacity";
        }
    }
    my %keys = map { $_->{key} => 1 } values %{ $m->{products} };
    is_deeply [ map { $_->{key} } @{ $f->{products} } ], [ sort keys %keys ], 'product keys, sorted';
    for my $p (@{ $f->{products} }) {
        is $p->{users}, $tot->(product => $p->{key}), "product $p->{key}: users = list total";
        is $p->{billable}, $tot->(product => $p->{key}, billable => 'true'), "product $p->{key}: billable = list total";
        is $p->{users}, $cnt->(product => $p->{key}), "product $p->{key}: users = the truth's";
    }
    is scalar @{ $f->{groups} }, scalar @{ $truth->{groups} }, 'every group';
    my @gn = map { $_->{name} } @{ $f->{groups} };
    is_deeply \@gn, [ sort @gn ], 'groups by name';
    my @gbad;
    for my $g (@{ $f->{groups} }) {
        my ($tg) = grep { $_->{id} eq $g->{id} } @{ $truth->{groups} };
        my $v2 = grep { $m->{by_id}{$_} } @{ $tg ? $tg->{members} : [] };
        push @gbad, "$g->{name}: facet $g->{users}, list " . $tot->(group => $g->{id}) . ", truth $v2"
            unless $tg && $tg->{name} eq $g->{name} && $g->{users} == $v2 && $g->{users} == $tot->(group => $g->{id});
    }
    ok !@gbad, 'group counts = list totals = v2 members in the truth' or diag join "\n", @gbad;
    for my $field (qw(status account_type claim)) {
        my %c;
        $c{ $_->{$field} // '' }++ for @{ $m->{users} };
        my @vals = @{ $f->{$field} };
        is_deeply { map { ($_->{value} // '') => $_->{users} } @vals }, \%c, "$field: counts match the truth";
        my @order = map { $_->{users} } @vals;
        is_deeply \@order, [ sort { $b <=> $a } @order ], "$field: most users first";
        for my $v (grep { defined $_->{value} } @vals) {
            is $v->{users}, $tot->($field => $v->{value}), "$field $v->{value}: = list total";
        }
    }
    my @rn = map { $_->{role} } @{ $f->{roles} };
    is_deeply \@rn, [ sort keys %{ $m->{roles} } ], 'roles: those held through groups or as platform roles, sorted';
    for my $r (@{ $f->{roles} }) {
        is $r->{users}, $tot->(role => $r->{role}), "role $r->{role}: = list total";
        is $r->{users}, $cnt->(role => $r->{role}), "role $r->{role}: = the truth's";
    }
    my $again = req($t, GET => '/umlo/users/facets/');
    is_deeply $again->{json}, $f, 'facets again (trailing slash): the same';
};

# --------------------------------------------------------------------------

subtest 'one user: the stored document with last_active' => sub {
    my @pick = grep { defined } ($zoe, $cjk, (grep { !$_->{last} } @{ $m->{users} })[0],
        (grep { !defined $_->{email} } @{ $m->{users} })[0], @{ $m->{users} }[ 20, 21 ],
        (grep { $_->{id} =~ /:/ } @{ $m->{users} })[0]);
    for my $u (@pick) {
        my $path = "/umlo/users/$u->{id}";
        my $r = req($t, GET => $path);
        is $r->{status}, 200, "$u->{id}: 200" or next;
        my $doc = decode_json($t->redis('HGET', org_key($t, 'g', $gen, 'users'), $u->{id}));
        my ($last, $never) = expect_row_last($u, context($m));
        my %exp = (%$doc, last_active => $last, never_active => $never ? $T : $F);
        json_contains $r->{json}, { data => \%exp,
            meta => { generation => $gen, sync_id => $st->{sync}{id},
                      data_as_of => $st->{snapshot}{data_as_of} } },
            "$u->{id}: every field the sync stored, last_active and never_active (org context), meta";
        is_deeply [ sort keys %{ $r->{json}{data} } ], [ sort keys %exp ], "$u->{id}: no other fields";
        json_contains $r->{json}{data}, { id => $u->{id}, name => $u->{name}, email => $u->{email},
            status => $u->{status}, added_to_org => $u->{created_iso},
            groups => sub { my %g = map { $_->{id} => 1 } @{ $_[0] }; join(' ', sort keys %g) eq join(' ', sort @{ $u->{groups} }) },
        }, "$u->{id}: the truth's values";
    }
    my $id = $pick[-1]{id};
    (my $enc = $id) =~ s/:/%3A/g;
    my $r = req($t, GET => "/umlo/users/$enc");
    is $r->{status}, 200, 'a percent-encoded id';
    is $r->{json}{data}{id}, $id, '(the same user)';
    $r = req($t, GET => "/umlo/users/$id/");
    is $r->{status}, 200, 'a trailing slash';
    for my $bad ('no-such-user', '5b10ac8d82e05b22cc7d4ef5', 'a%20b', "$id/x") {
        my $x = req($t, GET => "/umlo/users/$bad");
        is $x->{status}, 404, "unknown id $bad: 404";
        json_contains $x->{json}, { error => { status => 404, code => 'unknown_user' } }, "$bad: unknown_user";
    }
    my $p = req($t, POST => "/umlo/users/$id");
    is $p->{status}, 405, 'POST on a user: 405';
};

# --------------------------------------------------------------------------

subtest 'a new full sync: new generation, old cursors 409' => sub {
    my $p1 = get_ok($t, '/umlo/users?limit=10');
    my $c = $p1->{links}{next};
    my ($st2) = run_sync($t);
    is $st2 && $st2->{state}, 'succeeded', 'second sync succeeded';
    my $r = req($t, GET => "/umlo/users?limit=10&cursor=$c");
    is $r->{status}, 409, 'a cursor of the old generation: 409';
    json_contains $r->{json}, { error => { status => 409, code => 'snapshot_changed', param => 'cursor',
        message => qr/first page/ } }, 'snapshot_changed, naming cursor';
    my $j = get_ok($t, '/umlo/users?limit=10');
    is $j->{meta}{generation}, $gen + 1, 'the list answers from the new generation';
    is $j->{meta}{total}, $n, '(same org, same total)';
};

subtest 'a selective sync: its users change in the browser too' => sub {
    my $g0 = current_gen($t);
    my (undef, @workers) = $t->nginx_pids;
    my @pids = warm_workers($t, $g0);
    is scalar @pids, scalar @workers, "every worker holds generation $g0 (@pids)";
    my ($ren) = grep { defined $_->{email} && $_->{status} eq 'active' } @{ $m->{users} }[ 40 .. 60 ];
    # not active: the status counts then tell the old data from the new
    my ($gone) = grep { defined $_->{email} && $_->{status} ne 'active' } @{ $m->{users} }[ 20 .. $n - 1 ];
    my $new = 'Zzyzx Selectively Renamed';
    my $r = $t->sim_admin(PATCH => "users/$ren->{id}", { name => $new });
    is $r->{status}, 200, 'renamed in the org';
    $r = $t->sim_admin(DELETE => "users/$gone->{id}");
    is $r->{status}, 200, 'another user removed from the org';
    $r = $t->sim_admin(POST => 'users', { users => [ { name => 'Zzyzx Newcomer', email => 'zzyzx.newcomer@'
        . $truth->{org}{domains}[0] } ] });
    my ($added) = @{ $r->{json}{created} || [] };
    ok $added, 'a user added to the org';
    my ($sst) = run_sync($t, json => { users => [ $ren->{id}, $gone->{id}, $added ] });
    is $sst && $sst->{state}, 'succeeded', 'selective sync of the two succeeded';
    is current_gen($t), $g0, '(a selective sync changes the generation in place)';
    my $one = req($t, GET => "/umlo/users/$ren->{id}");
    is $one->{json} && $one->{json}{data}{name}, $new, 'one user: the new name';
    is req($t, GET => "/umlo/users/$gone->{id}")->{status}, 404, 'one user: the removed user is gone (404)';
    is $t->redis('HEXISTS', org_key($t, 'g', $g0, 'users'), $added), 1, 'the added user is in the generation';
    my $a = req($t, GET => "/umlo/users/$added");
    is $a->{status}, 200, 'one user: the added user is found';
    # every worker answers, each from its own copy
    my @found = parallel_get($t, '/umlo/users?' . qs(q => 'zzyzx selectively'), 8);
    my @old   = parallel_get($t, '/umlo/users?' . qs(q => $ren->{name}, limit => 1000), 8);
    my @still = parallel_get($t, '/umlo/users?' . qs(q => $gone->{email}), 8);
    my @fac   = parallel_get($t, '/umlo/users/facets', 8);
    my @bad;
    push @bad, 'new name not found: ' . ($_->[1] ? $_->[1]{meta}{total} : $_->[0])
        for grep { !$_->[1] || $_->[1]{meta}{total} != 1 } @found;
    push @bad, 'old name still found'
        for grep { !$_->[1] || grep { $_->{id} eq $ren->{id} } @{ $_->[1]{data} } } @old;
    push @bad, 'removed user still listed'
        for grep { !$_->[1] || $_->[1]{meta}{total} != 0 } @still;
    my %status;
    $status{ $_->{status} }++ for grep { $_->{id} ne $gone->{id} } @{ $m->{users} };
    $status{active}++;    # the added user
    my $want = join ' ', map { "$_=$status{$_}" } sort keys %status;
    my $counts = sub { my %c = @_; join ' ', map { "$_=$c{$_}" } sort keys %c };
    for my $f (@fac) {
        my $got = $f->[1] ? $counts->(map { (($_->{value} // 'null') => $_->{users}) } @{ $f->[1]{status} }) : $f->[0];
        push @bad, "facets status counts $got, expected $want" unless $got eq $want;
    }
    for my $d (parallel_get($t, '/umlo/dashboard', 8)) {
        my $got = $d->[1] ? join(' ', map { "$_=$d->[1]{by_status}{$_}" } sort keys %{ $d->[1]{by_status} }) : $d->[0];
        push @bad, "dashboard by_status $got, expected $want" unless $got eq $want;
    }
    my @new = parallel_get($t, '/umlo/users?' . qs(q => 'zzyzx newcomer'), 8);
    push @bad, 'added user not listed' for grep { !$_->[1] || $_->[1]{meta}{total} != 1 } @new;
    my %n;
    $n{$_}++ for @bad;
    ok !@bad, 'list, facets and dashboard of every worker show the renamed, removed and added users as they are now'
        or diag join "\n", map { "$n{$_} of 8 answers: $_" } sort keys %n;
};

subtest 'Redis down: 503; back but empty: 404' => sub {
    $t->stop_redis;
    for my $path ('/umlo/users', '/umlo/users/facets', "/umlo/users/$m->{users}[0]{id}") {
        my $r = req($t, GET => $path);
        is $r->{status}, 503, "$path: 503";
        json_contains $r->{json}, { error => { status => 503, code => 'redis_unavailable' } },
            "$path: redis_unavailable";
    }
    $t->start_redis;
    ok wait_for(sub { req($t, GET => '/umlo/users')->{status} == 404 }, timeout => 10),
        'Redis back (and empty): 404 no_snapshot, not the cached snapshot';
};

final_checks($t);
done_testing;
