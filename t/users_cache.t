use strict;
use warnings;
use utf8;

# The worker's cache of filtered lists (src/ngx_umlo_results.c) and the
# ETags of umlo_users and umlo_dashboard: a cached list answers what a
# fresh filtering would (checked against the model of t/lib/Umlo/Users.pm),
# never outlives its snapshot (full sync swap, selective sync), identical
# concurrent requests share one filtering and agree, the memory bound
# evicts, and If-None-Match gets 304 until the data changes.
#
# One worker, so that which request filtered and which found the list
# cached (the X-Umlo-Cache header) is deterministic.

use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;
use Umlo::Users;

binmode(Test::More->builder->$_, ':encoding(UTF-8)') for qw(output failure_output todo_output);

my $t = Umlo::Test->new;
my $anchor = int time;
start_users_stack($t,
    sim   => { users => 300, sites => 3, groups => 24, seed => 11, args => [ '--anchor', $anchor ] },
    nginx => { worker_processes => 1 });

my ($st) = run_sync($t);
die "the first sync did not succeed\n" unless $st && $st->{state} eq 'succeeded';
my $m = build_model(truth($t));
my $gen = current_gen($t);

# GET: [status, X-Umlo-Cache, json, etag, raw body]
sub get {
    my ($path, %h) = @_;
    my $r = req($t, GET => $path, headers => \%h);
    return { status => $r->{status}, cache => $r->{headers}{'x-umlo-cache'} // '',
             json => $r->{json}, etag => $r->{headers}{etag}, body => $r->{body} };
}

sub expected {
    my ($p) = @_;
    my $ctx = context($m, site => $p->{site}, product => $p->{product});
    return sort_ids($m, [ expect_ids($m, $p, time * 1000) ], $p->{sort}, $p->{order}, $ctx);
}

# --------------------------------------------------------------------------

subtest 'a cached list answers as a fresh filtering would' => sub {
    my %p = (status => 'active', sort => 'email', order => 'desc');
    my $q = '/umlo/users?' . qs(%p, limit => 7);
    my $a = get($q);
    is $a->{status}, 200, 'first: 200';
    is $a->{cache}, 'miss', 'first: filtered (X-Umlo-Cache: miss)';
    my $b = get($q);
    is $b->{cache}, 'hit', 'repeat: from the cache';
    is $b->{body}, $a->{body}, 'repeat: the same body';
    my @want = expected(\%p);
    is_deeply [ ids_of($a->{json}{data}) ], [ @want[0 .. 6] ], 'page 1 is the expected rows';
    my $c = get("$q&cursor=" . esc($a->{json}{links}{next}));
    is $c->{cache}, 'hit', 'page 2: from the same list';
    is_deeply [ ids_of($c->{json}{data}) ], [ @want[7 .. 13] ], 'page 2 is the expected rows';
    is $c->{json}{meta}{total}, scalar @want, 'total';

    # inactive_days is applied to the list: other values share it
    my $first = 1;
    for my $days (400, 30, 90, 0, 4000) {
        my %pi = (%p, inactive_days => $days);
        my $r = get('/umlo/users?' . qs(%pi, limit => 1000));
        is $r->{cache}, $first ? 'miss' : 'hit', "inactive_days=$days: " . ($first ? 'filtered' : 'the same list');
        is_deeply [ ids_of($r->{json}{data}) ], [ expected(\%pi) ], "inactive_days=$days: the expected rows";
        $first = 0;
    }

    # sorted by the same date, the inactive users are one run of the list
    for my $order (qw(asc desc)) {
        for my $days (30, 180) {
            my %pi = (site => (sort keys %{ $m->{sites} })[0], billable => 'true', inactive_days => $days, sort => 'last_active', order => $order);
            my $r = get('/umlo/users?' . qs(%pi, limit => 1000));
            is_deeply [ ids_of($r->{json}{data}) ], [ expected(\%pi) ],
                "site, billable, inactive_days=$days, by last_active $order: the expected rows ($r->{cache})";
        }
    }

    # a kept page is the same request's: with inactive_days, the same URL
    # a second later is a new page (its cursor carries the new time)
    my %pd = (%p, inactive_days => 1);
    my $u1 = get('/umlo/users?' . qs(%pd, limit => 2));
    my $u2 = get('/umlo/users?' . qs(%pd, limit => 2));
    is $u2->{body}, $u1->{body}, 'inactive_days, the same second: the same page';
    sleep 1.1;
    my $u3 = get('/umlo/users?' . qs(%pd, limit => 2));
    is $u3->{cache}, 'hit', 'a second later: the same list';
    isnt $u3->{json}{links}{next}, $u1->{json}{links}{next}, 'a second later: a new cursor (new time)';
    my @e = expected(\%pd);
    is_deeply [ ids_of($u3->{json}{data}) ], [ @e[0, 1] ], 'a second later: the expected rows';
    is $u3->{json}{meta}{total}, scalar @e, 'a second later: the expected total';

    # the same filters spelled differently are the same list
    my $host = (sort keys %{ $m->{sites} })[0];
    my $r1 = get('/umlo/users?' . qs(site => $host, limit => 3));
    my $r2 = get('/umlo/users?' . qs(limit => 5, site => $host));
    is $r2->{cache}, 'hit', 'parameters in another order and another limit: the same list';
};

subtest 'ETag and If-None-Match' => sub {
    for my $path ('/umlo/users?' . qs(claim => 'managed', limit => 3), '/umlo/dashboard') {
        my $a = get($path);
        like $a->{etag}, qr/^"[0-9a-f]{16}"$/, "$path: ETag";
        my $b = get($path, 'If-None-Match' => $a->{etag});
        is $b->{status}, 304, "$path: If-None-Match with it: 304";
        is $b->{body}, '', "$path: 304 without a body";
        is $b->{etag}, $a->{etag}, "$path: 304 repeats the ETag";
        is get($path, 'If-None-Match' => "W/$a->{etag}")->{status}, 304, "$path: weak comparison: 304";
        is get($path, 'If-None-Match' => '"0000000000000000"')->{status}, 200, "$path: another ETag: 200";
        is get($path, 'If-None-Match' => "\"x\", $a->{etag}")->{status}, 304, "$path: in a list: 304";
    }
    my $p1 = get('/umlo/users?' . qs(limit => 3));
    my $p2 = get('/umlo/users?' . qs(limit => 4));
    isnt $p1->{etag}, $p2->{etag}, 'another page, another ETag';
};

# Cached lists, ETags and the rows of a user before the data changes.
my $host = (sort keys %{ $m->{sites} })[0];
my @watch = ('/umlo/users?' . qs(sort => 'name', limit => 1000),
             '/umlo/users?' . qs(site => $host, sort => 'last_active', limit => 1000),
             '/umlo/users?' . qs(status => 'active', inactive_days => 30, limit => 1000));

sub cache_all {
    my (%e, %body);
    for my $q (@watch, '/umlo/dashboard') {
        get($q);
        my $r = get($q);
        $e{$q} = $r->{etag};
        $body{$q} = $r->{body};
        is $r->{cache}, 'hit', "cached: $q" unless $q =~ /dashboard/;
    }
    return (\%e, \%body);
}

subtest 'a full sync swap: no list of the old snapshot is served' => sub {
    my ($u) = grep { defined $_->{email} && $_->{status} eq 'active' } @{ $m->{users} }[ 10 .. 40 ];
    my $old = get('/umlo/users?' . qs(q => $u->{name}, limit => 1000));
    ok((grep { $_->{id} eq $u->{id} } @{ $old->{json}{data} }), "q=<name>: the user before the rename");
    my ($etag) = cache_all();
    my %etag = %$etag;
    my $new = 'Zzyzx Swapped Name';
    is $t->sim_admin(PATCH => "users/$u->{id}", { name => $new })->{status}, 200, 'renamed in the org';
    my ($s) = run_sync($t);
    is $s && $s->{state}, 'succeeded', 'full sync succeeded';
    is current_gen($t), $gen + 1, 'a new generation';
    $m = build_model(truth($t));
    for my $q (@watch) {
        my $r = get($q, 'If-None-Match' => $etag{$q});
        is $r->{status}, 200, "$q: the old ETag no longer matches";
        is $r->{cache}, 'miss', "$q: filtered again";
        is $r->{json}{meta}{generation}, $gen + 1, "$q: the new generation";
        my ($row) = grep { $_->{id} eq $u->{id} } @{ $r->{json}{data} };
        is $row->{name}, $new, "$q: the renamed user has the new name" if $row;
    }
    my $dash = get('/umlo/dashboard', 'If-None-Match' => $etag{'/umlo/dashboard'});
    is $dash->{status}, 200, 'dashboard: the old ETag no longer matches';
    is $dash->{json}{generation}, $gen + 1, 'dashboard: the new generation';
    my $gone = get('/umlo/users?' . qs(q => $u->{name}, limit => 1000));
    ok !(grep { $_->{id} eq $u->{id} } @{ $gone->{json}{data} }), 'q=<old name>: not found any more';
    is get('/umlo/users?' . qs(q => $new))->{json}{meta}{total}, 1, 'q=<new name>: found';
    my %p = (sort => 'name');
    is_deeply [ ids_of(get('/umlo/users?' . qs(%p, limit => 1000))->{json}{data}) ], [ expected(\%p) ],
        'the list is the new truth';
    $gen++;
};

subtest 'a selective sync: no list of the old revision is served' => sub {
    my ($u) = grep { defined $_->{email} && $_->{status} eq 'active' } @{ $m->{users} }[ 50 .. 80 ];
    my $qname = '/umlo/users?' . qs(q => $u->{name}, limit => 1000);
    my $qstatus = '/umlo/users?' . qs(status => 'active', sort => 'email', limit => 1000);
    for my $q ($qname, $qstatus) {
        get($q);
        is get($q)->{cache}, 'hit', "cached: $q";
    }
    my ($etag, $body) = cache_all();
    my $before = get($qstatus)->{json}{meta}{total};
    my $new = 'Zzyzx Selective Name';
    is $t->sim_admin(PATCH => "users/$u->{id}", { name => $new })->{status}, 200, 'renamed in the org';
    my ($s) = run_sync($t, json => { users => [ $u->{id} ] });
    is $s && $s->{state}, 'succeeded', 'selective sync succeeded';
    is current_gen($t), $gen, '(same generation, new revision)';
    my $r = get($qname);
    is $r->{cache}, 'miss', 'q=<old name>: filtered again';
    ok !(grep { $_->{id} eq $u->{id} } @{ $r->{json}{data} }), 'q=<old name>: the user is not found';
    is get('/umlo/users?' . qs(q => $new))->{json}{meta}{total}, 1, 'q=<new name>: found';
    my $s2 = get($qstatus);
    is $s2->{cache}, 'miss', 'status=active: filtered again';
    is $s2->{json}{meta}{total}, $before, 'status=active: same total';
    my ($row) = grep { $_->{id} eq $u->{id} } @{ $s2->{json}{data} };
    is $row && $row->{name}, $new, 'status=active: the row has the new name';
    # a page the rename does not touch is the same text: its ETag holds
    for my $q (@watch) {
        my $now = get($q);
        my $had = grep { $_->{id} eq $u->{id} } @{ decode_json($body->{$q})->{data} };
        my $r = get($q, 'If-None-Match' => $etag->{$q});
        if ($had) {
            is $r->{status}, 200, "$q: had the user: the old ETag no longer matches";
        } else {
            is $r->{status}, $now->{body} eq $body->{$q} ? 304 : 200,
                "$q: without the user: 304 exactly when the text is the same";
        }
    }
    ok((grep { $_->{id} eq $u->{id} } @{ decode_json($body->{ $watch[0] })->{data} }),
       '(the list of everyone had the user)');
};

subtest 'identical concurrent requests share one filtering and agree' => sub {
    for my $round (1 .. 3) {
        my $q = '/umlo/users?' . qs(claim => 'managed', sort => 'created', order => 'desc',
                                    limit => 50 + $round);
        my @r = parallel_get($t, $q, 16);
        is scalar(grep { $_->[0] == 200 } @r), 16, "round $round: 16 answers, all 200";
        my %how;
        $how{ $_->[2] =~ /^X-Umlo-Cache: (\w+)/mi ? $1 : 'none' }++ for @r;
        is $how{miss} // 0, $round == 1 ? 1 : 0,
            "round $round: " . ($round == 1 ? 'one filtering' : 'no filtering (limit is not in the key)')
            . ' (' . join(', ', map { "$_ $how{$_}" } sort keys %how) . ')';
        my %bodies;
        $bodies{ $_->[2] =~ s/^.*?\r\n\r\n//sr }++ for @r;
        is scalar keys %bodies, 1, "round $round: every body the same";
        my %p = (claim => 'managed', sort => 'created', order => 'desc');
        my @want = expected(\%p);
        is_deeply [ ids_of($r[0][1]{data}) ], [ @want[0 .. 49 + $round] ], "round $round: the expected rows";
    }
};

subtest 'the cache is bounded (umlo_users_cache), least recently used out first' => sub {
    $t->start_nginx(name => 'small', http_config => Umlo::Sync::umlo_http_config('umlo_users_cache 5k;'),
                    config => Umlo::Sync::umlo_locations(users_locations()), worker_processes => 1);
    my $g = sub { my $r = req($t, GET => $_[0], name => 'small'); $r->{headers}{'x-umlo-cache'} // '' };
    # a list of 283 rows is about 1.5 KB: three fit in 5 KB
    my @q = map { '/umlo/users?' . qs(sort => $_, limit => 1) } qw(name email created last_active);
    is $g->($_), 'miss', "first: $_" for @q;
    is $g->($q[3]), 'hit', 'the newest is kept';
    is $g->($q[0]), 'miss', 'the oldest was evicted';
    is $g->($q[0]), 'hit', '... and is cached again';
    $t->stop_nginx('small');

    $t->start_nginx(name => 'off', http_config => Umlo::Sync::umlo_http_config('umlo_users_cache 0;'),
                    config => Umlo::Sync::umlo_locations(users_locations()), worker_processes => 1);
    my @how = map { req($t, GET => $q[0], name => 'off')->{headers}{'x-umlo-cache'} } 1 .. 3;
    is_deeply \@how, [ qw(miss miss miss) ], 'umlo_users_cache 0: nothing kept';
    $t->stop_nginx('off');
};

subtest 'Redis lost its data twice: the same version with other data is not the cached one' => sub {
    my $q = '/umlo/users?' . qs(sort => 'email', limit => 1000);
    my @totals;
    for my $round (1, 2) {
        $t->restart_redis;    # no persistence: everything is gone
        ok wait_for(sub { req($t, GET => '/umlo/status')->{status} == 200 }, timeout => 10),
            "round $round: the handlers reach the new Redis";
        is $t->sim_admin(POST => 'users', { count => 3 })->{status}, 200,
            "round $round: three more users in the org";
        my ($s) = run_sync($t);
        is $s && $s->{state}, 'succeeded', "round $round: a full sync rebuilds the data";
        is current_gen($t), 1, "round $round: as generation 1 (the same version both rounds)";
        $m = build_model(truth($t));
        my $r = get($q);
        is $r->{cache}, 'miss', "round $round: filtered again";
        is $r->{json}{meta}{generation}, 1, "round $round: generation 1";
        is_deeply [ ids_of($r->{json}{data}) ], [ expected({ sort => 'email' }) ],
            "round $round: the rows of the org as it is now";
        is get($q)->{cache}, 'hit', "round $round: then cached";
        push @totals, $r->{json}{meta}{total};
    }
    is $totals[1], $totals[0] + 3, 'the second rebuild shows the three users it added';
};

subtest 'bad input is still answered before any filtering' => sub {
    my $r = get('/umlo/users?' . qs(format => 'csv', cursor => 'x' x 39));
    is $r->{status}, 400, 'a cursor with CSV: 400';
    is $r->{cache}, '', 'no list looked up';
};

final_checks($t);
done_testing();
