use strict;
use warnings;
use utf8;

# The four documented scenarios, each replayed with the simulator's admin
# API between two full syncs and checked after the second against the
# ground truth:
#   1. 50 new employees added
#   2. group memberships changed by an identity provider
#   3. a new site connected
#   4. 200 contractors deactivated elsewhere

use Test::More;
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;

binmode(Test::More->builder->$_, ':encoding(UTF-8)') for qw(output failure_output todo_output);

my $t = Umlo::Test->new;
start_stack($t,
    sim => { users => 1000, sites => 3, groups => 30, seed => 11, args => [ '--directories', 2 ] },
);

sub full_sync {
    my ($label) = @_;
    my ($st, $r) = run_sync($t, timeout => 60);
    is $st && $st->{state}, 'succeeded', "$label: full sync succeeded"
        or diag explain $st;
    return $st;
}

sub group_named {
    my ($truth, $name) = @_;
    my ($g) = grep { $_->{name} eq $name } @{ $truth->{groups} };
    die "no group $name\n" unless $g;
    return $g;
}

sub product_of {
    my ($truth, $site, $key) = @_;
    my ($s) = grep { $_->{name} eq $site } @{ $truth->{sites} };
    my ($p) = grep { $_->{key} eq $key } @{ $s->{products} };
    return $p;
}

sub entry {
    my ($user, $rid) = @_;
    my ($e) = grep { ($_->{resource_id} // '') eq $rid } @{ $user->{products} || [] };
    return $e;
}

my $st0 = full_sync('baseline');
my $truth0 = truth($t);
my $snap0 = snapshot($t);
compare_with_truth($snap0, $truth0, 'baseline');
check_snapshot_meta($st0, $snap0, $truth0, 'baseline');

# --------------------------------------------------------------------------

subtest 'scenario 1: 50 new employees' => sub {
    my $before = status_json($t);
    my $t0 = truth($t);
    my $js = product_of($t0, 'site-1', 'jira-software');
    my $cf = product_of($t0, 'site-1', 'confluence');
    my @specs = map { {
        name => sprintf('Neue Mitarbeiterin %02d Ünal', $_),
        email => sprintf('new.hire%02d@%s', $_, $t0->{org}{domains}[0]),
        accountType => 'atlassian',
        groups => [ 'jira-software-users-site-1', 'confluence-users-site-1',
                    ($_ % 2 ? ('engineering') : ()) ],
        addedToOrg => '2026-07-31T09:00:00Z',
    } } 1 .. 50;
    my $created = $t->sim_ok(POST => 'users', { users => \@specs })->{created};
    is scalar @$created, 50, '50 users created in the simulator';

    my $st = full_sync('after hiring');
    my $truth = truth($t);
    my $snap = snapshot($t);
    compare_with_truth($snap, $truth, 'after hiring');
    check_snapshot_meta($st, $snap, $truth, 'after hiring');
    is $st->{snapshot}{counts}{users}, $before->{snapshot}{counts}{users} + 50, 'users + 50';
    isnt $st->{snapshot}{generation}, $before->{snapshot}{generation}, 'a new generation';

    my @missing = grep { !$snap->{users}{$_} } @$created;
    ok !@missing, 'every new employee is in the snapshot' or diag "@missing";
    my @wrong;
    for my $i (0 .. 49) {
        my $u = $snap->{users}{ $created->[$i] } or next;
        push @wrong, "$created->[$i]: name" unless $u->{name} eq $specs[$i]{name};
        push @wrong, "$created->[$i]: email" unless ($u->{email} // '') eq $specs[$i]{email};
        push @wrong, "$created->[$i]: status" unless $u->{status} eq 'active';
        push @wrong, "$created->[$i]: added_to_org" unless ($u->{added_to_org} // '') =~ /^2026-07-31T09:00:00/;
        for my $p ($js, $cf) {
            my $e = entry($u, $p->{id});
            push @wrong, "$created->[$i]: no billable $p->{key}"
                unless $e && $e->{billable} && $e->{site} eq 'site-1.atlassian.net';
        }
        push @wrong, "$created->[$i]: sites" unless grep { $_ eq 'site-1.atlassian.net' } @{ $u->{sites} };
    }
    ok !@wrong, 'new employees: names, emails, status, billable access on site-1'
        or diag join "\n", @wrong[ 0 .. ($#wrong > 9 ? 9 : $#wrong) ];
    my $g = group_named($truth, 'jira-software-users-site-1');
    is $snap->{groups}{ $g->{id} }{users}, scalar @{ $g->{members} }, 'the product group counts its new members';
};

# --------------------------------------------------------------------------

subtest 'scenario 2: group memberships changed by an identity provider' => sub {
    my $t0 = truth($t);
    my $snap_before = snapshot($t);
    my @v2 = grep { $_->{directoryId} && $_->{directoryId} eq $t0->{directories}[0]{id} } v2_users($t0);

    my $cf2 = group_named($t0, 'confluence-users-site-2');
    my %in_cf2 = map { $_ => 1 } @{ $cf2->{members} };
    my @leave = (grep { $in_cf2{ $_->{accountId} } } @v2)[ 0 .. 29 ];
    my @join  = (grep { !$in_cf2{ $_->{accountId} } } @v2)[ 0 .. 39 ];
    @leave = grep { defined } @leave;
    @join  = grep { defined } @join;
    $t->sim_ok(POST => "groups/$cf2->{id}/members", {
        add => [ map { $_->{accountId} } @join ], remove => [ map { $_->{accountId} } @leave ] });

    my $eng = group_named($t0, 'engineering');
    my %in_eng = map { $_ => 1 } @{ $eng->{members} };
    my @eng_join = (grep { !$in_eng{ $_->{accountId} } } reverse @v2)[ 0 .. 24 ];
    my @eng_leave = (grep { $in_eng{ $_->{accountId} } } reverse @v2)[ 0 .. 9 ];
    $t->sim_ok(POST => "groups/$eng->{id}/members", {
        add => [ map { $_->{accountId} } grep { defined } @eng_join ],
        remove => [ map { $_->{accountId} } grep { defined } @eng_leave ] });

    # the IdP pushes a new group that grants Jira on site-2
    my $js2 = product_of($t0, 'site-2', 'jira-software');
    my @idp = map { $_->{accountId} } @v2[ 100 .. 119 ];
    my $new = $t->sim_ok(POST => 'groups', { name => 'idp-contractors-Ω', description => 'pushed by SCIM',
        externalSynced => JSON::PP::true,
        roles => [ { resourceId => $js2->{id}, role => 'atlassian/user' } ], members => \@idp });

    my $st = full_sync('after IdP changes');
    my $truth = truth($t);
    my $snap = snapshot($t);
    compare_with_truth($snap, $truth, 'after IdP changes');
    check_snapshot_meta($st, $snap, $truth, 'after IdP changes');
    is $st->{snapshot}{counts}{groups}, $st0->{snapshot}{counts}{groups} + 1, 'one group more';

    my $cf2_after = group_named($truth, 'confluence-users-site-2');
    is $snap->{groups}{ $cf2->{id} }{users}, scalar @{ $cf2_after->{members} },
        'confluence-users-site-2 member count updated';
    my @still = grep { grep { $_->{id} eq $cf2->{id} } @{ $snap->{users}{ $_->{accountId} }{groups} } } @leave;
    ok !@still, scalar(@leave) . ' users who left the group no longer list it';
    my @notvia = grep { my $e = entry($snap->{users}{ $_->{accountId} }, product_of($t0, 'site-2', 'confluence')->{id});
                        !$e || !grep { $_ eq $cf2->{id} } @{ $e->{via_groups} } } @join;
    ok !@notvia, scalar(@join) . ' users who joined get Confluence on site-2 via the group';
    json_contains $snap->{groups}{ $new->{id} }, { name => 'idp-contractors-Ω', external_synced => JSON::PP::true,
        users => 20, grants => [ { resource_id => $js2->{id}, roles => ['atlassian/user'] } ] },
        'the new IdP group is in the snapshot';
    my @no = grep { my $e = entry($snap->{users}{$_}, $js2->{id}); !$e || !$e->{billable}
                    || !grep { $_ eq $new->{id} } @{ $e->{via_groups} } } @idp;
    ok !@no, 'its 20 members hold billable Jira on site-2 through it' or diag "@no";
    # users nobody touched keep their documents
    my %touched = map { $_ => 1 } (map { $_->{accountId} } @leave, @join, grep { defined } @eng_join, @eng_leave), @idp;
    my @changed = grep { !$touched{$_} && encode_json($snap->{users}{$_}) ne encode_json($snap_before->{users}{$_}) }
        grep { $snap_before->{users}{$_} } keys %{ $snap->{users} };
    ok !@changed, 'users outside the changed groups have identical documents'
        or diag scalar(@changed) . " changed, e.g. $changed[0]";
};

# --------------------------------------------------------------------------

subtest 'scenario 3: a new site connected' => sub {
    my $before = status_json($t);
    my $site = $t->sim_ok(POST => 'sites', { name => 'site-new',
        products => [ 'jira-software', 'confluence', 'jira-servicedesk' ] });
    is scalar @{ $site->{products} }, 3, 'site with three products connected';
    my $t0 = truth($t);
    my @v2 = grep { $_->{accountStatus} eq 'active' && ($_->{directoryId} // '') eq $t0->{directories}[0]{id} }
        v2_users($t0);
    my $gjs = group_named($t0, 'jira-software-users-site-new');
    my $gcf = group_named($t0, 'confluence-users-site-new');
    my @jira = map { $_->{accountId} } @v2[ 0 .. 59 ];
    my @conf = map { $_->{accountId} } @v2[ 40 .. 69 ];
    $t->sim_ok(POST => "groups/$gjs->{id}/members", { add => \@jira });
    $t->sim_ok(POST => "groups/$gcf->{id}/members", { add => \@conf });
    # someone already used the new Jira
    my $js_new = product_of($t0, 'site-new', 'jira-software');
    $t->sim_ok(PATCH => "users/$jira[0]", { activity => { $js_new->{id} => '2026-07-30T12:00:00.000Z' } });

    my $st = full_sync('after connecting a site');
    my $truth = truth($t);
    my $snap = snapshot($t);
    compare_with_truth($snap, $truth, 'after connecting a site');
    check_snapshot_meta($st, $snap, $truth, 'after connecting a site');
    json_contains $st->{snapshot}{counts}, {
        sites => $before->{snapshot}{counts}{sites} + 1,
        products => $before->{snapshot}{counts}{products} + 3,
        groups => $before->{snapshot}{counts}{groups} + 3,
    }, 'one site, three products and three groups more';

    my $doc = $snap->{sites}{'site-new.atlassian.net'};
    ok $doc, 'the site is in the snapshot, keyed by its host';
    is_deeply [ sort map { $_->{product} } @{ $doc->{products} || [] } ],
        [ sort qw(confluence jira-servicedesk jira-software) ], 'with its three products';

    my $cf_new = product_of($truth, 'site-new', 'confluence');
    my @bad;
    for my $id (@jira) {
        my $u = $snap->{users}{$id};
        my $e = entry($u, $js_new->{id});
        push @bad, "$id: no Jira on site-new" unless $e && $e->{billable} && $e->{site} eq 'site-new.atlassian.net'
            && $e->{product} eq 'jira-software' && grep({ $_ eq $gjs->{id} } @{ $e->{via_groups} });
        push @bad, "$id: site-new not in sites" unless grep { $_ eq 'site-new.atlassian.net' } @{ $u->{sites} };
    }
    for my $id (@conf) {
        my $e = entry($snap->{users}{$id}, $cf_new->{id});
        push @bad, "$id: no Confluence on site-new" unless $e && $e->{billable};
    }
    ok !@bad, '60 users granted Jira and 30 Confluence on the new site' or diag join "\n", @bad[ 0 .. 4 ];
    is entry($snap->{users}{ $jira[0] }, $js_new->{id})->{last_active}, '2026-07-30T12:00:00.000Z',
        'last activity on the new site';
    my @others = grep { my $u = $snap->{users}{ $_->{accountId} };
                        $u && grep { $_ eq 'site-new.atlassian.net' } @{ $u->{sites} } } v2_users($truth);
    my %granted = map { $_ => 1 } @jira, @conf;
    ok !grep({ !$granted{ $_->{accountId} } } @others), 'nobody else has access to the new site';
};

# --------------------------------------------------------------------------

subtest 'scenario 4: 200 contractors deactivated elsewhere' => sub {
    my $before = status_json($t);
    my $t0 = truth($t);
    my $contractors = $t0->{directories}[1]{id};
    my @active = grep { $_->{accountStatus} eq 'active' } v2_users($t0);
    my @pick = ((grep { ($_->{directoryId} // '') eq $contractors } @active),
                (grep { ($_->{directoryId} // '') ne $contractors } @active))[ 0 .. 199 ];
    is scalar(grep { defined } @pick), 200, '200 active users picked (contractors directory first)';
    my %status_before;
    $status_before{ $_->{status} }++ for v2_users($t0);
    for my $u (@pick) {
        $t->sim_ok(POST => "users/$u->{accountId}/deactivate");
    }

    my $st = full_sync('after deactivations');
    my $truth = truth($t);
    my $snap = snapshot($t);
    compare_with_truth($snap, $truth, 'after deactivations');
    check_snapshot_meta($st, $snap, $truth, 'after deactivations');
    is $st->{snapshot}{counts}{users}, $before->{snapshot}{counts}{users},
        'deactivated users stay in the org: same user count';
    my @bad = grep { my $u = $snap->{users}{ $_->{accountId} };
                     !$u || $u->{status} ne 'deactivated' || $u->{account_status} ne 'inactive' } @pick;
    ok !@bad, 'all 200 are deactivated (account_status inactive)' or diag scalar(@bad) . ' not';
    my %status;
    $status{ $_->{status} }++ for values %{ $snap->{users} };
    is $status{deactivated}, ($status_before{deactivated} // 0) + 200, 'deactivated users + 200';
    is $status{active}, $status_before{active} - (grep { $_->{status} eq 'active' } @pick),
        'active users fewer by as many';
};

subtest 'history of the scenario syncs' => sub {
    my $h = [ map { decode_json($_) } @{ $t->redis('LRANGE', org_key($t, 'history'), 0, -1) } ];
    is scalar @$h, 5, 'five syncs recorded';
    ok !grep({ $_->{state} ne 'succeeded' } @$h), 'all succeeded';
};

final_checks($t);
done_testing;
