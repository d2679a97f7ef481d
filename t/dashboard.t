use strict;
use warnings;
use utf8;

# umlo_dashboard over HTTP, checked against an independent computation
# from the simulator's ground truth; answers during a running sync come
# from the previous snapshot; every worker loads each generation itself.

use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Umlo::Test qw(json_contains json_diff wait_for);
use Umlo::Sync;
use Umlo::Users;

binmode(Test::More->builder->$_, ':encoding(UTF-8)') for qw(output failure_output todo_output);

my $t = Umlo::Test->new;
my $anchor = int time;
start_users_stack($t,
    sim => { users => 400, sites => 3, groups => 24, seed => 7, args => [ '--anchor', $anchor ] });

use constant DAY_MS => 86_400_000;
my @WINDOWS = (30, 60, 90, 180);

sub sim_ok {
    my ($method, $path, $json) = @_;
    my $r = $t->sim_admin($method, $path, $json);
    die "sim admin $method $path: $r->{status} $r->{body}\n" unless $r->{status} == 200;
    return $r->{json};
}

# The dashboard expected from the truth, with the same "now".
sub expected_dashboard {
    my ($m, $now) = @_;
    my (%by, $never, @billable_users, %p);
    for my $u (@{ $m->{users} }) {
        $by{status}{ $u->{status} // 'unknown' }++;
        $by{account_type}{ $u->{account_type} // 'unknown' }++;
        $by{claim}{ $u->{claim} // 'unknown' }++;
        $never++ unless $u->{last};
        my $billable = 0;
        for my $e (values %{ $u->{entries} }) {
            next unless defined $e->{key};
            my $s = $p{ $e->{ari} } //= { users => 0, billable => 0, never => 0,
                inactive => { map { $_ => 0 } @WINDOWS } };
            $s->{users}++;
            next unless $e->{billable};
            $billable = 1;
            $s->{billable}++;
            $s->{never}++ unless $e->{last};
            my $date = $e->{last} || $u->{created};
            $s->{inactive}{$_}++ for grep { $date <= $now - $_ * DAY_MS } @WINDOWS;
        }
        push @billable_users, $u if $billable;
    }
    my %inactive = map { my $w = $_; $w => scalar grep { ($_->{last} || $_->{created}) <= $now - $w * DAY_MS } @billable_users } @WINDOWS;
    my @sites;
    for my $host (sort keys %{ $m->{sites} }) {
        my $s = $m->{sites}{$host};
        my @prods;
        for my $ari (@{ $s->{products} }) {
            my $tp = $m->{products}{$ari};
            my $c = $p{$ari} // { users => 0, billable => 0, never => 0, inactive => { map { $_ => 0 } @WINDOWS } };
            my $cap = $tp->{capacity};
            push @prods, {
                product => $tp->{key}, id => $ari, users => $c->{users}, billable => $c->{billable},
                capacity => $cap,
                utilisation_percent => $cap
                    ? sub { defined $_[0] && abs($_[0] - 100 * $c->{billable} / $cap) <= 0.1 + 1e-9 }
                    : undef,
                inactive_billable => { map { ($_ => $c->{inactive}{$_}) } @WINDOWS },
                never_active_billable => $c->{never},
            };
        }
        push @sites, { host => $host, id => $s->{cloud}, products => \@prods };
    }
    return {
        users => scalar @{ $m->{users} },
        billable_users => scalar @billable_users,
        by_status => $by{status}, by_account_type => $by{account_type}, by_claim => $by{claim},
        never_active => $never // 0,
        inactive_billable => \%inactive,
        licence_waste => $inactive{90},
        licence_waste_days => 90,
        sites => \@sites,
    };
}

# dashboard sites in any order, by host, for the comparison
sub by_host {
    my ($d) = @_;
    my %c = %$d;
    $c{sites} = [ sort { $a->{host} cmp $b->{host} } @{ $d->{sites} || [] } ];
    for my $s (@{ $c{sites} }) {
        $s = { %$s, products => [ sort { $a->{id} cmp $b->{id} } @{ $s->{products} || [] } ] };
    }
    return \%c;
}

sub sorted_products {
    my ($e) = @_;
    for my $s (@{ $e->{sites} }) { $s->{products} = [ sort { $a->{id} cmp $b->{id} } @{ $s->{products} } ] }
    return $e;
}

# --------------------------------------------------------------------------

subtest 'before any sync: 404 no_snapshot' => sub {
    my $r = req($t, GET => '/umlo/dashboard');
    is $r->{status}, 404, 'status 404';
    json_contains $r->{json}, { error => { status => 404, code => 'no_snapshot' } }, 'no_snapshot';
};

my ($st) = run_sync($t);
die "the first sync did not succeed\n" unless $st && $st->{state} eq 'succeeded';
my $truth = truth($t);
my $m = build_model($truth);
my $gen = current_gen($t);
my $n = scalar @{ $m->{users} };

subtest 'metrics match the truth' => sub {
    my $r = req($t, GET => '/umlo/dashboard');
    is $r->{status}, 200, 'status 200';
    like $r->{headers}{'content-type'}, qr{^application/json\b}, 'JSON';
    is $r->{headers}{'cache-control'}, 'no-cache', 'Cache-Control: no-cache (revalidate with the ETag)';
    like $r->{headers}{etag}, qr/^"[0-9a-f]{16}"$/, 'a strong ETag';
    my $d = $r->{json};
    ok $d->{computed_at} && abs($d->{computed_at} - time) < 60, 'computed_at is now (when the worker loaded the generation)';
    my $now = $d->{computed_at} * 1000;
    json_contains $d, { generation => $gen, sync_id => $st->{sync}{id},
        data_as_of => $st->{snapshot}{data_as_of} }, 'generation, sync_id, data_as_of';
    my $exp = sorted_products(expected_dashboard($m, $now));
    my $got = by_host($d);
    for my $k (qw(users billable_users by_status by_account_type by_claim never_active
                  inactive_billable licence_waste licence_waste_days)) {
        json_contains { $k => $got->{$k} }, { $k => $exp->{$k} }, "$k matches the truth";
    }
    is_deeply { map { $_ => 1 } keys %{ $d->{by_status} } }, { map { $_ => 1 } keys %{ $exp->{by_status} } },
        'by_status has exactly the statuses of the org';
    is_deeply [ map { $_->{host} } @{ $got->{sites} } ], [ sort keys %{ $m->{sites} } ], 'every site with products';
    for my $i (0 .. $#{ $exp->{sites} }) {
        my $es = $exp->{sites}[$i];
        json_contains $got->{sites}[$i], $es, "site $es->{host}: products, billable, capacity, utilisation, inactive, never active";
    }
    is_deeply [ map { $_->{host} } @{ $d->{sites} } ], [ sort map { $_->{host} } @{ $d->{sites} } ],
        'sites are in host order';

    # the licence figures, against the truth's own billableOn
    my %billable_on;
    for my $w (v2_users($truth)) { $billable_on{$_}++ for @{ $w->{billableOn} } }
    my @diff;
    for my $s (@{ $d->{sites} }) {
        for my $p (@{ $s->{products} }) {
            push @diff, "$s->{host}/$p->{product}: billable $p->{billable}, billableOn of v2 users "
                . ($billable_on{ $p->{id} } // 0) if $p->{billable} != ($billable_on{ $p->{id} } // 0);
        }
    }
    ok !@diff, "per product billable = v2 users with the product in billableOn" or diag join "\n", @diff;
    my @capped = grep { $_->{capacity} } map { @{ $_->{products} } } @{ $d->{sites} };
    ok @capped, scalar(@capped) . ' products have a capacity';
    ok !grep({ !defined $_->{utilisation_percent}
               || abs($_->{utilisation_percent} - 100 * $_->{billable} / $_->{capacity}) > 0.1 + 1e-9 } @capped),
        'utilisation_percent = 100 * billable / capacity (to a tenth): '
        . join(', ', map { "$_->{billable}/$_->{capacity} $_->{utilisation_percent}%" } @capped);
    my @nocap = grep { !defined $_->{capacity} } map { @{ $_->{products} } } @{ $d->{sites} };
    ok !grep({ defined $_->{utilisation_percent} } @nocap), scalar(@nocap) . ' products without capacity: utilisation null';

    # meaningful: the windows really split the users
    my @iw = map { $d->{inactive_billable}{$_} } @WINDOWS;
    ok $iw[0] > $iw[3] && $iw[3] > 0 && $d->{licence_waste} > 0 && $d->{never_active} > 0,
        "the data spreads over the windows (@iw; waste $d->{licence_waste}, never active $d->{never_active})";

    json_contains $d->{last_sync}, { id => $st->{sync}{id}, trigger => 'manual', state => 'succeeded',
        finished_at => $st->{sync}{finished_at}, duration_ms => $st->{sync}{duration_ms}, error => undef },
        'last_sync: the sync that made it, its state and duration';

    # the same snapshot as the user browser: per product users and billable
    my $f = get_ok($t, '/umlo/users/facets');
    my %fp = map { $_->{id} => $_ } map { @{ $_->{products} } } @{ $f->{sites} };
    my @fd = grep { !$fp{ $_->{id} } || $fp{ $_->{id} }{users} != $_->{users} || $fp{ $_->{id} }{billable} != $_->{billable} }
        map { @{ $_->{products} } } @{ $d->{sites} };
    ok !@fd, 'product users and billable agree with the facets';
    my $l = get_ok($t, '/umlo/users?limit=1&billable=true&inactive_days=90');
    my $o = get_ok($t, '/umlo/users?limit=1&billable=true');
    is $o->{meta}{total}, $d->{billable_users}, 'billable_users = total of ?billable=true';
    is $l->{meta}{total}, $d->{licence_waste}, 'licence_waste = total of ?billable=true&inactive_days=90';
    my $nv = get_ok($t, '/umlo/users?limit=1&never_active=true');
    is $nv->{meta}{total}, $d->{never_active}, 'never_active = total of ?never_active=true';

    my $h = req($t, HEAD => '/umlo/dashboard');
    is $h->{status}, 200, 'HEAD: 200';
    for my $mth (qw(POST DELETE)) {
        my $x = req($t, $mth => '/umlo/dashboard');
        is $x->{status}, 405, "$mth: 405";
        is $x->{headers}{allow}, 'GET, HEAD', "$mth: Allow";
    }
};

subtest 'a failed sync: last_sync shows it, the data stays' => sub {
    my $before = get_ok($t, '/umlo/dashboard');
    sim_ok(POST => 'config', { apiKey => 'not-the-key' });
    my ($fst) = run_sync($t, timeout => 60);
    sim_ok(POST => 'config', { apiKey => $t->api_key });
    is $fst && $fst->{state}, 'failed', 'the sync failed (the key is refused)';
    my $d = get_ok($t, '/umlo/dashboard');
    json_contains $d->{last_sync}, { id => $fst->{sync}{id}, state => 'failed',
        error => { where => qr/./, message => qr/./ }, duration_ms => $fst->{sync}{duration_ms} },
        'last_sync: failed, with its error';
    delete @{$_}{qw(last_sync computed_at)} for $before, $d;    # computed_at: per worker
    is_deeply $d, $before, 'the metrics are those of the unchanged snapshot';
};

# --------------------------------------------------------------------------

subtest 'during a sync: answers from the previous snapshot, then the new one' => sub {
    my $before = get_ok($t, '/umlo/dashboard');
    my $list = get_ok($t, '/umlo/users?limit=5');
    my $added = sim_ok(POST => 'users', { count => 25 })->{created};
    my $truth2 = truth($t);
    my $n2 = scalar v2_users($truth2);
    cmp_ok $n2, '>', $n, "the org grew to $n2 v2 users";
    sim_ok(POST => 'config', { latencyMs => 700 });
    my $mark = $t->error_log_mark;
    my $r = req($t, POST => '/umlo/sync');
    is $r->{status}, 202, 'a sync started';
    ok wait_for(sub { (status_json($t)->{sync}{phase} // '') eq 'fetch' }, timeout => 10), 'it is fetching';
    my ($checks, @bad) = (0);
    while (status_json($t)->{running} && $checks < 20) {
        my $d = get_ok($t, '/umlo/dashboard');
        my $l = get_ok($t, '/umlo/users?limit=5');
        my $f = get_ok($t, '/umlo/users/facets');
        my $one = req($t, GET => "/umlo/users/$added->[0]");
        # only a round that ended before the swap counts (the generation
        # only grows: still the old one now means it was so for the answers)
        last unless current_gen($t) == $gen;
        push @bad, "dashboard generation $d->{generation}, users $d->{users}"
            unless $d->{generation} == $gen && $d->{users} == $n;
        push @bad, "list generation $l->{meta}{generation}, total $l->{meta}{total}"
            unless $l->{meta}{generation} == $gen && $l->{meta}{total} == $n;
        push @bad, 'list rows changed' if defined json_diff($l->{data}, $list->{data});
        push @bad, "facets total $f->{total}" unless $f->{total} == $n;
        push @bad, "a user added since is found ($one->{status})" unless $one->{status} == 404;
        $checks++;
        sleep 0.2;
    }
    cmp_ok $checks, '>=', 2, "$checks rounds of queries while the sync ran";
    ok !@bad, 'while it ran: the previous generation, its data, its metrics' or diag join "\n", @bad[ 0 .. ($#bad > 5 ? 5 : $#bad) ];
    my $done = wait_sync($t, $r->{json}{id}, timeout => 60);
    sim_ok(POST => 'config', { latencyMs => 0 });
    is $done && $done->{state}, 'succeeded', 'the sync succeeded';
    my $g2 = $done ? $done->{snapshot}{generation} : -1;
    cmp_ok $g2, '>', $gen, "the new snapshot is generation $g2";
    my $d = get_ok($t, '/umlo/dashboard');
    is $d->{generation}, $g2, 'then: the dashboard answers from it';
    is $d->{users}, $n2, "then: $n2 users";
    my $l = get_ok($t, '/umlo/users?limit=5');
    is $l->{meta}{generation}, $g2, 'then: the list too (meta.generation increased)';
    is $l->{meta}{total}, $n2, 'then: the new total';
    my $one = req($t, GET => "/umlo/users/$added->[0]");
    is $one->{status}, 200, 'then: a user added to the org is there';
    json_contains $d->{last_sync}, { id => $r->{json}{id}, state => 'succeeded' }, 'then: last_sync is this sync';

    # the new metrics against the new truth
    my $m2 = build_model($truth2);
    my $exp = sorted_products(expected_dashboard($m2, $d->{computed_at} * 1000));
    json_contains by_host($d), { map { $_ => $exp->{$_} } qw(users billable_users by_status never_active
        inactive_billable licence_waste sites) }, 'then: the metrics match the new truth';
    $gen = $g2;
    $n = $n2;
    $m = $m2;
};

subtest 'each worker loads the snapshot itself; all answers agree' => sub {
    my (undef, @workers) = $t->nginx_pids;
    is scalar @workers, 2, 'two workers';
    my $mark = $t->error_log_mark;
    my ($st3) = run_sync($t);
    is $st3 && $st3->{state}, 'succeeded', 'a new generation';
    my $g = $st3 ? $st3->{snapshot}{generation} : -1;
    my (@bodies, @pids);
    for my $round (1 .. 10) {
        push @bodies, map { $_->[2] } parallel_get($t, '/umlo/dashboard', 12),
            parallel_get($t, '/umlo/users?limit=3&sort=created', 12);
        @pids = loaded_pids($t, $g, $mark);
        last if @pids >= 2 && $round >= 2;
    }
    my (%gens, %status, %dash, %list);
    for my $b (@bodies) {
        my ($code) = $b =~ m{^HTTP/1\.\d (\d+)};
        $status{ $code // 'none' }++;
        my ($json) = $b =~ /\r\n\r\n(.*)\z/s;
        my $j = eval { decode_json($json) } or next;
        if (exists $j->{billable_users}) {
            delete $j->{computed_at};    # each worker computes at its own load
            $dash{ encode_json($j) }++;
            $gens{ $j->{generation} }++;
        } else {
            # the cursor holds the time of the first page: it may differ
            $j->{links}{next} = defined $j->{links}{next} ? 'a cursor' : undef;
            $list{ encode_json($j) }++;
            $gens{ $j->{meta}{generation} }++;
        }
    }
    is_deeply \%status, { 200 => scalar @bodies }, scalar(@bodies) . ' concurrent requests: all 200';
    is_deeply [ keys %gens ], [$g], "all from generation $g";
    is scalar keys %dash, 1, 'every dashboard answer is the same (but computed_at)' or do {
        my ($x, $y) = map { decode_json($_) } keys %dash;
        diag 'first difference: ' . (json_diff($y, $x) // 'none');
    };
    is scalar keys %list, 1, 'every list answer is the same' or do {
        my ($x, $y) = map { decode_json($_) } keys %list;
        diag 'first difference: ' . (json_diff($y, $x) // 'none') . "\ncounts: @{[ values %list ]}";
    };
    is scalar @pids, 2, 'both workers loaded the generation (' . join(', ', @pids) . ')';
    my %w = map { $_ => 1 } @workers;
    ok !grep({ !$w{$_} } @pids), 'in the worker processes';
    my @loads = $t->error_log($mark) =~ /umlo: snapshot generation \Q$g\E loaded/g;
    is scalar @loads, scalar @pids, 'once per worker, though requests arrived during the load';
    $gen = $g;
};

subtest 'a generation that cannot be loaded: 503, then recovered' => sub {
    my ($st4) = run_sync($t);
    is $st4 && $st4->{state}, 'succeeded', 'a new generation';
    my $g = $st4->{snapshot}{generation};
    my $key = org_key($t, 'g', $g, 'users');
    my $id = $m->{users}[5]{id};
    my $doc = $t->redis('HGET', $key, $id);
    $t->redis('HSET', $key, $id, '{"id": broken');
    my $mark = $t->error_log_mark;
    my @r = parallel_get($t, '/umlo/dashboard', 6);
    my @bad = grep { $_->[0] != 503 || ($_->[1] && $_->[1]{error}{code} // '') ne 'snapshot_unavailable' } @r;
    ok !@bad, 'every request (some waiting for the same load): 503 snapshot_unavailable'
        or diag join "\n", map { substr($_->[2], 0, 300) } @bad[ 0 .. ($#bad > 2 ? 2 : $#bad) ];
    like $r[0][1]{error}{message} // '', qr/\Q$id\E/, 'the message names the document';
    $t->assert_error_log(qr/\[error\].*loading snapshot generation \Q$g\E failed/, since => $mark,
        desc => 'the failed load is logged as an error');
    $t->redis('HSET', $key, $id, $doc);
    my $d = get_ok($t, '/umlo/dashboard');
    is $d->{generation}, $g, 'repaired: the generation loads and answers';
    my $l = get_ok($t, '/umlo/users?limit=1');
    is $l->{meta}{generation}, $g, 'the list too';
    $gen = $g;
};

subtest 'Redis down: 503; back but empty: 404' => sub {
    $t->stop_redis;
    my $r = req($t, GET => '/umlo/dashboard');
    is $r->{status}, 503, 'status 503';
    json_contains $r->{json}, { error => { status => 503, code => 'redis_unavailable' } }, 'redis_unavailable';
    $t->start_redis;
    ok wait_for(sub { req($t, GET => '/umlo/dashboard')->{status} == 404 }, timeout => 10),
        'Redis back (and empty): 404 no_snapshot';
};

final_checks($t);
done_testing;
