package Umlo::Sync;

# Helpers shared by the HTTP-level tests of the module (t/status.t,
# t/sync*.t, t/config.t): a standard configuration, sync runs, snapshot
# reads from Redis, the comparison with the simulator's ground truth, and
# the checks every file ends with (no alerts, the API key nowhere).
#
# Built on Umlo::Test (t/lib); see t/README.md.

use strict;
use warnings;

use Exporter 'import';
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use Test::More ();
use Time::HiRes qw(time sleep);
use Umlo::Test qw(wait_for json_diff);

our @EXPORT = qw(
    umlo_http_config umlo_locations start_stack
    req status_json wait_sync run_sync first_sync
    org_key current_gen snapshot redis_hash truth v2_users
    compare_with_truth check_snapshot_meta
    final_checks assert_no_alerts assert_key_hidden redis_dump
    decode_json encode_json raw_http read_to_close
);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

sub decode_json { $JSON->decode($_[0]) }
sub encode_json { $JSON->encode($_[0]) }

# Every body nginx sent during the test: the API key must be in none.
our @RESPONSES;

# The module's http{} directives for the test stack, plus $extra lines.
# redis => 'address and options' in place of the harness's Redis
sub umlo_http_config {
    my ($extra, %o) = @_;
    return join "\n",
        'umlo_redis ' . ($o{redis} // '$UMLO_REDIS') . ';',
        'umlo_api_base $UMLO_SIM;',
        'umlo_org $UMLO_ORG;',
        'umlo_api_key_file $UMLO_KEY_FILE;',
        'umlo_thread_pool umlo;',
        ($extra // ());
}

sub umlo_locations {
    my ($extra) = @_;
    return join "\n",
        'location = /umlo/status { umlo_status; }',
        'location = /umlo/sync   { umlo_sync; }',
        ($extra // ());
}

# start_stack($t, sim => {...start_sim args}, http => 'extra http lines',
#             names => ['main'], nginx => {...more start_nginx args})
sub start_stack {
    my ($t, %o) = @_;
    $t->start_redis unless $t->redis_running;
    $t->start_sim(profile => 'fast', %{ $o{sim} || {} }) unless $t->sim_running;
    for my $name (@{ $o{names} || ['main'] }) {
        $t->start_nginx(
            name        => $name,
            http_config => umlo_http_config($o{http}),
            config      => umlo_locations($o{locations}),
            %{ $o{nginx} || {} },
        );
    }
    return $t;
}

# $t->request that remembers the body for assert_key_hidden().
sub req {
    my ($t, $method, $path, %o) = @_;
    my $r = $t->request($method, $path, %o);
    push @RESPONSES, join("\n", $r->{body} // '',
        map { "$_: " . (ref $r->{headers}{$_} ? join(',', @{ $r->{headers}{$_} }) : $r->{headers}{$_}) }
            sort keys %{ $r->{headers} || {} });
    return $r;
}

# Everything a raw socket receives until the peer closes it or it stays
# silent for $idle seconds.
sub read_to_close {
    my ($s, $idle) = @_;
    my $out = '';
    my $sel = IO::Select->new($s);
    while ($sel->can_read($idle)) {
        last unless sysread($s, my $buf, 65536);
        $out .= $buf;
    }
    return $out;
}

# A raw HTTP/1.1 exchange with 127.0.0.1:$port: everything the server sent
# before closing (kept for the final API-key check).
sub raw_http {
    my ($port, $data) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
        or die "connect: $!";
    print {$s} $data;
    my $out = read_to_close($s, 3);
    push @RESPONSES, $out;
    return $out;
}

sub status_json {
    my ($t, $name) = @_;
    my $r = req($t, GET => '/umlo/status', name => $name);
    die "status answered $r->{status}: $r->{body}\n" unless $r->{status} == 200 && $r->{json};
    return $r->{json};
}

my %TERMINAL = map { $_ => 1 } qw(succeeded failed cancelled);

# Polls the status until the sync $id (any sync when undef) is finished;
# returns the last status document, or undef on timeout.
sub wait_sync {
    my ($t, $id, %o) = @_;
    my $last;
    my $ok = wait_for(sub {
        $last = status_json($t, $o{name});
        my $s = $last->{sync} or return 0;
        return 0 if defined $id && ($s->{id} // '') ne $id;
        return $TERMINAL{ $last->{state} } ? 1 : 0;
    }, timeout => $o{timeout} // 30, interval => $o{interval} // 0.1);
    unless ($ok) {
        Test::More::diag('sync ' . ($id // '(any)') . ' did not finish; last status: '
            . ($last ? $JSON->encode($last) : 'none'));
        return undef;
    }
    return $last;
}

# POSTs a sync and waits for it.  Returns (final status or undef, 202 body).
sub run_sync {
    my ($t, %o) = @_;
    my $r = req($t, POST => '/umlo/sync', name => $o{name},
        (exists $o{json} ? (json => $o{json}) : ()),
        (defined $o{body} ? (body => $o{body}) : ()));
    unless ($r->{status} == 202 && $r->{json} && $r->{json}{id}) {
        Test::More::diag("POST /umlo/sync answered $r->{status}: $r->{body}");
        return (undef, $r);
    }
    my $st = wait_sync($t, $r->{json}{id}, name => $o{name}, timeout => $o{timeout});
    return ($st, $r);
}

# The sync the rest of a file depends on: its status document, or die.
sub first_sync {
    my ($t) = @_;
    my ($st) = run_sync($t);
    die "the first sync did not succeed\n" unless $st && $st->{state} eq 'succeeded';
    return $st;
}

sub org_key {
    my ($t, @rest) = @_;
    return join ':', 'umlo', '{' . $t->org . '}', @rest;
}

sub current_gen {
    my ($t) = @_;
    return $t->redis('HGET', org_key($t, 'current'), 'gen');
}

# A Redis hash of JSON documents, decoded: {field => doc}.
sub redis_hash {
    my ($t, $key) = @_;
    my $flat = $t->redis('HGETALL', $key) || [];
    my %h;
    for (my $i = 0; $i < @$flat; $i += 2) {
        $h{ $flat->[$i] } = $JSON->decode($flat->[ $i + 1 ]);
    }
    return \%h;
}

# The current snapshot: {gen, users => {id => doc}, sites, groups}.
sub snapshot {
    my ($t, $gen) = @_;
    $gen //= current_gen($t);
    return undef unless defined $gen;
    return {
        gen    => $gen,
        users  => redis_hash($t, org_key($t, 'g', $gen, 'users')),
        sites  => redis_hash($t, org_key($t, 'g', $gen, 'sites')),
        groups => redis_hash($t, org_key($t, 'g', $gen, 'groups')),
    };
}

sub truth {
    my ($t) = @_;
    my $r = $t->sim_admin(GET => 'org');
    die "GET /__sim/org answered $r->{status}\n" unless $r->{status} == 200 && $r->{json};
    return $r->{json};
}

sub v2_users {
    my ($truth) = @_;
    return grep { grep { $_ eq 'v2' } @{ $_->{apis} } } @{ $truth->{users} };
}

sub _host { my ($u) = @_; $u =~ s{^\w+://}{}; $u =~ s{[/:].*}{}s; return $u }

sub _same_set {
    my ($a, $b) = @_;
    my %a = map { ($_ // '') => 1 } @$a;
    my %b = map { ($_ // '') => 1 } @$b;
    return join("\0", sort keys %a) eq join("\0", sort keys %b);
}

sub _s { defined $_[0] ? (ref $_[0] ? $JSON->encode($_[0]) : "\"$_[0]\"") : 'null' }

# Compares the snapshot with the simulator's ground truth; one assertion
# per aspect, with the first mismatches as diagnostics.  Options:
# users_only => 1 (no group/site documents), only => [aspects],
# skip => [aspects].  Products are
# compared for what the module can know: roles granted through groups,
# billable from those roles, and last-active dates.
sub compare_with_truth {
    my ($snap, $truth, $label, %o) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    $label //= 'snapshot';

    my (%product, %host_of);
    for my $s (@{ $truth->{sites} }) {
        for my $p (@{ $s->{products} }) {
            $product{ $p->{id} } = $p;
            $host_of{ $p->{id} } = _host($s->{hostUrl});
        }
    }
    my %group = map { $_->{id} => $_ } @{ $truth->{groups} };
    my @v2 = v2_users($truth);
    my %want = map { $_->{accountId} => $_ } @v2;
    my $users = $snap->{users};

    my %err;
    my $add = sub { my ($k, $m) = @_; push @{ $err{$k} }, $m };

    for my $id (sort keys %want) {
        $add->(ids => "missing user $id") unless $users->{$id};
    }
    for my $id (sort keys %$users) {
        $add->(ids => "unexpected user $id (not a v2 user of the org)") unless $want{$id};
    }

    for my $id (sort grep { $users->{$_} } keys %want) {
        my ($u, $w) = ($users->{$id}, $want{$id});
        my @f = (
            [id => $id], [name => $w->{name}], [email => $w->{email}],
            [status => $w->{status}], [account_status => $w->{accountStatus}],
            [claim_status => $w->{claimStatus}],
            [membership_status => $w->{membershipStatus}],
            [account_type => 'atlassian'], [added_to_org => $w->{addedToOrg}],
            [last_active => $w->{lastActive}],
        );
        for my $f (@f) {
            my ($k, $v) = @$f;
            my $got = $u->{$k};
            next if !defined $got && !defined $v;
            $add->(fields => "$id.$k: expected " . _s($v) . ', got ' . _s($got))
                if !defined $got || !defined $v || ref $got || $got ne $v;
        }
        $add->(fields => "$id: no avatar URL") unless ($u->{avatar} // '') =~ m{^https?://};

        # groups: plain ids (not ARIs) with their names
        my @gids = map { $_->{id} } @{ $u->{groups} || [] };
        $add->(groups => "$id.groups: expected [@{[sort @{ $w->{groups} }]}], got [@{[sort @gids]}]")
            unless _same_set(\@gids, $w->{groups}) && @gids == @{ $w->{groups} };
        for my $g (@{ $u->{groups} || [] }) {
            my $tg = $group{ $g->{id} // '' };
            $add->(groups => "$id: group " . _s($g->{id}) . ' has name ' . _s($g->{name})
                . ', truth ' . _s($tg && $tg->{name}))
                unless $tg && defined $g->{name} && $g->{name} eq $tg->{name};
        }

        $add->(platform_roles => "$id.platform_roles: expected " . _s($w->{platformRoles})
            . ', got ' . _s($u->{platform_roles}))
            unless ref $u->{platform_roles} eq 'ARRAY'
            && _same_set($u->{platform_roles}, $w->{platformRoles});

        # truth: roles granted through groups, on products
        my (%troles, %tbill);
        for my $r (@{ $w->{roles} }) {
            next unless $product{ $r->{resourceId} };
            next unless grep { $_ eq 'group_direct' } @{ $r->{methods} };
            $troles{ $r->{resourceId} }{ $r->{role} } = 1;
            $tbill{ $r->{resourceId} } = 1 if $r->{role} =~ m{^atlassian/(?:user|admin)$};
        }
        my %tact = map { $_->{resourceId} => $_->{lastActiveTimestamp} } @{ $w->{activity} };

        my (%sroles, %sbill, %sact, %ssites);
        for my $p (@{ $u->{products} || [] }) {
            my $rid = $p->{resource_id} // '';
            next unless $product{$rid};    # platform resources: checked elsewhere
            if (@{ $p->{via_groups} || [] }) {
                $sroles{$rid}{$_} = 1 for @{ $p->{roles} || [] };
            }
            $sbill{$rid} = 1 if $p->{billable} && JSON::PP::is_bool($p->{billable});
            $sact{$rid} = $p->{last_active} if defined $p->{last_active};
            $add->(products => "$id: product $rid has site " . _s($p->{site})
                . ', expected ' . _s($host_of{$rid}))
                unless ($p->{site} // '') eq $host_of{$rid};
            $add->(products => "$id: product $rid has product " . _s($p->{product})
                . ', expected ' . _s($product{$rid}{key}))
                unless ($p->{product} // '') eq $product{$rid}{key};
            $add->(products => "$id: product $rid billable is not a boolean")
                unless JSON::PP::is_bool($p->{billable});
            for my $gid (@{ $p->{via_groups} || [] }) {
                my $tg = $group{$gid};
                my $grants = $tg && grep { $_->{resourceId} eq $rid } @{ $tg->{roleAssignments} };
                $add->(products => "$id: product $rid via group $gid, which does not grant it")
                    unless $grants;
                $add->(products => "$id: product $rid via group $gid, which the user is not in")
                    unless grep { $_ eq $gid } @{ $w->{groups} };
            }
            $ssites{ $p->{site} } = 1 if defined $p->{site} && $p->{site} ne 'unknown';
        }
        for my $rid (sort keys %{ { %troles, %sroles } }) {
            my @t = sort keys %{ $troles{$rid} || {} };
            my @s = sort keys %{ $sroles{$rid} || {} };
            $add->(products => "$id: group roles on $rid: expected [@t], got [@s]")
                unless "@t" eq "@s";
        }
        my @tb = sort keys %tbill;
        my @sb = sort keys %sbill;
        $add->(billable => "$id: billable on [@tb] expected, got [@sb]") unless "@tb" eq "@sb";
        for my $rid (sort keys %{ { %tact, %sact } }) {
            next unless $product{$rid};
            $add->(activity => "$id: last_active on $rid: expected " . _s($tact{$rid})
                . ', got ' . _s($sact{$rid}))
                unless ($tact{$rid} // '') eq ($sact{$rid} // '');
        }
        my %tsites = map { $host_of{$_} => 1 } grep { $product{$_} } keys %troles, keys %tact;
        my @got_sites = grep { $_ ne 'unknown' } @{ $u->{sites} || [] };
        $add->(sites => "$id.sites: expected [@{[sort keys %tsites]}], got [@{[sort @got_sites]}]")
            unless _same_set(\@got_sites, [ keys %tsites ]) && @got_sites == keys %tsites;
    }

    goto REPORT if $o{users_only};

    # groups hash
    my $sg = $snap->{groups};
    for my $g (@{ $truth->{groups} }) {
        my $s = $sg->{ $g->{id} };
        unless ($s) { $add->(group_docs => "missing group $g->{id} ($g->{name})"); next }
        my $exp = {
            id => $g->{id}, name => $g->{name}, directory_id => $g->{directoryId},
            users => scalar @{ $g->{members} },
            external_synced => $g->{externalSynced} ? JSON::PP::true : JSON::PP::false,
        };
        my $d = json_diff($s, $exp);
        $add->(group_docs => "group $g->{id}: $d") if defined $d;
        my %tg = map { $_->{resourceId} => $_ } @{ $g->{roleAssignments} };
        my %gg = map { ($_->{resource_id} // '') => $_ } @{ $s->{grants} || [] };
        $add->(group_docs => "group $g->{id}: grants on [@{[sort keys %gg]}], expected [@{[sort keys %tg]}]")
            unless join(' ', sort keys %tg) eq join(' ', sort keys %gg);
        for my $rid (grep { $gg{$_} } sort keys %tg) {
            $add->(group_docs => "group $g->{id}: roles on $rid " . _s($gg{$rid}{roles})
                . ', expected ' . _s($tg{$rid}{roles}))
                unless _same_set($gg{$rid}{roles}, $tg{$rid}{roles});
            $add->(group_docs => "group $g->{id}: default_role on $rid " . _s($gg{$rid}{default_role})
                . ', expected ' . _s($tg{$rid}{defaultRole}))
                unless ($gg{$rid}{default_role} // '') eq ($tg{$rid}{defaultRole} // '');
        }
    }
    $add->(group_docs => 'snapshot has ' . scalar(keys %$sg) . ' groups, truth '
        . scalar @{ $truth->{groups} })
        unless keys %$sg == @{ $truth->{groups} };

    # sites hash: keyed by host, with the site's products
    my $ss = $snap->{sites};
    my @tsites = grep { @{ $_->{products} } } @{ $truth->{sites} };
    $add->(site_docs => 'snapshot sites [' . join(' ', sort keys %$ss) . '], truth ['
        . join(' ', sort map { _host($_->{hostUrl}) } @tsites) . ']')
        unless _same_set([ keys %$ss ], [ map { _host($_->{hostUrl}) } @tsites ])
        && keys %$ss == @tsites;
    for my $s (@tsites) {
        my $doc = $ss->{ _host($s->{hostUrl}) } or next;
        my %p = map { ($_->{id} // '') => $_ } @{ $doc->{products} || [] };
        for my $tp (@{ $s->{products} }) {
            my $d = $p{ $tp->{id} }
                ? json_diff($p{ $tp->{id} }, { id => $tp->{id}, product => $tp->{key},
                    site => _host($s->{hostUrl}), status => $tp->{status},
                    capacity => $tp->{capacity} })
                : 'missing';
            $add->(site_docs => "site $s->{name} product $tp->{id}: $d") if defined $d;
        }
        $add->(site_docs => "site $s->{name}: " . scalar(keys %p) . ' products, truth '
            . scalar @{ $s->{products} })
            unless keys %p == @{ $s->{products} };
    }

  REPORT:
    my $n = @v2;
    my %only = map { $_ => 1 } @{ $o{only} || [] };
    my %skip = map { $_ => 1 } @{ $o{skip} || [] };
    for my $k (qw(ids fields groups platform_roles products billable activity sites),
               ($o{users_only} ? () : qw(group_docs site_docs))) {
        next if $skip{$k} || (%only && !$only{$k});
        my $e = $err{$k} || [];
        my $ok = Test::More::ok(!@$e, "$label: $k match the ground truth ($n users)");
        Test::More::diag(join "\n", @$e[ 0 .. ($#$e > 14 ? 14 : $#$e) ],
            (@$e > 15 ? ('... ' . (@$e - 15) . ' more') : ()))
            unless $ok;
    }
    return !%err;
}

# Status "snapshot" block and the finished full sync document against
# the snapshot that is in Redis and the truth's counts.
sub check_snapshot_meta {
    my ($st, $snap, $truth, $label) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $sites = grep { @{ $_->{products} } } @{ $truth->{sites} };
    Umlo::Test::json_contains($st->{snapshot}, {
        generation => sub { defined $_[0] && $_[0] == $snap->{gen} },
        sync_id    => $st->{sync}{id},
        data_as_of => qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
        counts     => {
            users    => scalar(v2_users($truth)),
            groups   => $truth->{counts}{groups},
            sites    => $sites,
            products => $truth->{counts}{products},
        },
    }, "$label: status snapshot block matches Redis and the truth");
    Test::More::is(scalar keys %{ $snap->{users} }, scalar(v2_users($truth)),
        "$label: users hash has one entry per v2 user");
}

# Whole Redis content as one string (keys and values), for secret scans.
sub redis_dump {
    my ($t) = @_;
    my $out = '';
    my $keys = $t->redis('KEYS', '*') || [];
    for my $k (@$keys) {
        my $type = $t->redis('TYPE', $k);
        my $v;
        if    ($type eq 'string') { $v = $t->redis('GET', $k) }
        elsif ($type eq 'hash')   { $v = join "\n", @{ $t->redis('HGETALL', $k) } }
        elsif ($type eq 'list')   { $v = join "\n", @{ $t->redis('LRANGE', $k, 0, -1) } }
        elsif ($type eq 'set')    { $v = join "\n", @{ $t->redis('SMEMBERS', $k) } }
        elsif ($type eq 'zset')   { $v = join "\n", @{ $t->redis('ZRANGE', $k, 0, -1, 'WITHSCORES') } }
        else                      { $v = '' }
        $out .= "$k\n$v\n";
    }
    return $out;
}

# No [alert]/[emerg]/[crit] in an instance's error log, except lines
# matching $allow (e.g. the master's note about a worker we SIGKILLed).
sub assert_no_alerts {
    my ($t, $name, $allow) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my @hits = grep { /\[(?:alert|emerg|crit)\]/ && !($allow && $_ =~ $allow) }
        split /\n/, $t->error_log($name);
    Test::More::ok(!@hits, 'no [alert], [emerg] or [crit] in the error log of nginx '
        . ($name // 'main'))
        or Test::More::diag(join "\n", @hits[ 0 .. ($#hits > 19 ? 19 : $#hits) ]);
}

# The API key is not in the error logs, in Redis, or in any response.
sub assert_key_hidden {
    my ($t, @names) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $key = $t->api_key;
    @names = ('main') unless @names;
    my @where;
    for my $n (@names) {
        push @where, "error log of $n" if index($t->error_log($n), $key) >= 0;
        my $acc = $t->nginx_instance($n)->{prefix} . '/logs/access.log';
        push @where, "access log of $n"
            if -f $acc && index(do { local (@ARGV, $/) = $acc; <> } // '', $key) >= 0;
    }
    if ($t->redis_running) {
        push @where, 'Redis' if index(redis_dump($t), $key) >= 0;
    }
    my @bad = grep { index($_, $key) >= 0 } @RESPONSES;
    push @where, scalar(@bad) . ' response(s)' if @bad;
    Test::More::ok(!@where, 'the API key appears in no log, Redis value or response ('
        . scalar(@RESPONSES) . ' responses checked)')
        or Test::More::diag('API key found in: ' . join ', ', @where);
}

sub final_checks {
    my ($t, %o) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my @names = @{ $o{names} || ['main'] };
    assert_no_alerts($t, $_, $o{allow}) for @names;
    assert_key_hidden($t, @names);
}

1;
