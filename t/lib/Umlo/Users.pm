package Umlo::Users;

# Helpers for the tests of umlo_users and umlo_dashboard (t/users.t,
# t/users_csv.t, t/dashboard.t): an independent model of what the user
# browser should answer, computed from the simulator's ground truth
# (GET /__sim/org), plus page walking, query strings and a CSV parser.
#
# The model knows what a full sync can know: roles that reach a user
# through groups (docs/ARCHITECTURE.md, "Deliberate limits"), last-active
# dates per product instance, and the v2-listed users only.
#
# Built on Umlo::Test and Umlo::Sync (t/lib); see t/README.md.

use strict;
use warnings;
use utf8;

use Exporter 'import';
use Encode ();
use IO::Select;
use IO::Socket::INET;
use Time::HiRes ();
use POSIX ();
use Test::More ();
use Time::Local qw(timegm);
use Unicode::UCD ();
use Umlo::Sync qw(req truth v2_users);

our @EXPORT = qw(
    users_locations start_users_stack
    iso_ms ms_iso fold qs esc
    build_model context expect_ids sort_ids ctx_eval expect_row_last
    walk get_ok ids_of set_diff
    parallel_get loaded_pids warm_workers
    parse_csv
);

use constant DAY_MS => 86_400_000;

sub users_locations {
    return join "\n",
        'location /umlo/users { umlo_users; }',
        'location = /umlo/dashboard { umlo_dashboard; }';
}

# start_users_stack($t, sim => {...}, http => ..., nginx => {...}):
# start_stack() with the users and dashboard locations.
sub start_users_stack {
    my ($t, %o) = @_;
    return Umlo::Sync::start_stack($t, %o,
        locations => join("\n", users_locations(), ($o{locations} // ())));
}

# ---------------------------------------------------------------------------
# times and text
# ---------------------------------------------------------------------------

# ISO 8601 UTC (date, or date-time with optional fraction and Z) -> ms;
# 0 for undef.
sub iso_ms {
    my ($s) = @_;
    return 0 unless defined $s;
    $s =~ /^(\d{4})-(\d\d)-(\d\d)(?:T(\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?Z?)?$/
        or die "not an ISO 8601 UTC time: $s\n";
    my $frac = defined $7 ? substr($7 . '000', 0, 3) : 0;
    return (timegm($6 // 0, $5 // 0, $4 // 0, $3, $2 - 1, $1) * 1000) + $frac;
}

# ms -> 2026-05-12T23:29:41.740Z; undef for 0
sub ms_iso {
    my ($ms) = @_;
    return undef unless $ms;
    my $s = POSIX::floor($ms / 1000);
    my @t = gmtime $s;
    return sprintf '%04d-%02d-%02dT%02d:%02d:%02d.%03dZ',
        $t[5] + 1900, $t[4] + 1, $t[3], $t[2], $t[1], $t[0], $ms - $s * 1000;
}

# Simple (one-to-one) Unicode lower-case mapping, character by character:
# what a case-insensitive search and a name sort fold with.
my %FOLD;
sub fold {
    my ($s) = @_;
    return '' unless defined $s;
    return join '', map {
        $FOLD{$_} //= do {
            my $c = $_;
            my $l = lc $c;
            if (length $l != 1) {
                my $info = Unicode::UCD::charinfo(ord $c);
                $l = $info && $info->{lower} ne '' ? chr hex $info->{lower} : $c;
            }
            $l;
        }
    } split //, $s;
}

# Percent-encodes one value (UTF-8) for a query string.
sub esc {
    my ($v) = @_;
    my $b = Encode::encode('UTF-8', $v);
    $b =~ s/([^A-Za-z0-9\-._~])/sprintf '%%%02X', ord $1/ge;
    return $b;
}

# qs(name => value, ...) -> "name=value&..." (values encoded)
sub qs {
    my @kv = @_;
    my @p;
    while (@kv) {
        my ($k, $v) = splice @kv, 0, 2;
        push @p, esc($k) . '=' . esc($v);
    }
    return join '&', @p;
}

# ---------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------

sub _host { my ($u) = @_; $u =~ s{^\w+://}{}; $u =~ s{[/:].*}{}s; return $u }

# {users => [..], by_id, products => {ari => {...}}, sites => {host => ..},
#  cloud => {cloudId => host}, groups => {id => {id, name}}, group_by_name,
#  roles => {role => 1}}
sub build_model {
    my ($truth) = @_;
    my (%prod, %site, %cloud);
    for my $s (@{ $truth->{sites} }) {
        next unless @{ $s->{products} };
        my $host = _host($s->{hostUrl});
        $site{$host} = { host => $host, cloud => $s->{cloudId}, name => $s->{name},
            products => [ map { $_->{id} } @{ $s->{products} } ] };
        $cloud{ $s->{cloudId} } = $host;
        for my $p (@{ $s->{products} }) {
            $prod{ $p->{id} } = { ari => $p->{id}, key => $p->{key}, host => $host,
                capacity => $p->{capacity}, name => $s->{name} };
        }
    }
    my %groups = map { $_->{id} => { id => $_->{id}, name => $_->{name} } } @{ $truth->{groups} };
    my %by_name;
    for my $g (@{ $truth->{groups} }) { push @{ $by_name{ $g->{name} } }, $g->{id} }

    my (@users, %by_id, %roles);
    for my $w (v2_users($truth)) {
        my %e;
        for my $r (@{ $w->{roles} }) {
            next unless $prod{ $r->{resourceId} };
            next unless grep { $_ eq 'group_direct' } @{ $r->{methods} };
            my $e = $e{ $r->{resourceId} } //= _entry(\%prod, $r->{resourceId});
            $e->{roles}{ $r->{role} } = 1;
            $e->{billable} = 1 if $r->{role} eq 'atlassian/user' || $r->{role} eq 'atlassian/admin';
            $roles{ $r->{role} } = 1;
        }
        my $last = 0;
        for my $a (@{ $w->{activity} }) {
            my $ms = iso_ms($a->{lastActiveTimestamp});
            my $e = $e{ $a->{resourceId} } //= _entry(\%prod, $a->{resourceId});
            $e->{last} = $ms if $ms > ($e->{last} // 0);
            $last = $ms if $ms > $last;
        }
        $roles{$_} = 1 for @{ $w->{platformRoles} };
        my $u = {
            id => $w->{accountId}, name => $w->{name}, email => $w->{email},
            status => $w->{status}, account_type => $w->{accountType},
            claim => $w->{claimStatus}, account_status => $w->{accountStatus},
            membership_status => $w->{membershipStatus},
            created => iso_ms($w->{addedToOrg}), created_iso => $w->{addedToOrg},
            groups => [ @{ $w->{groups} } ],
            platform_roles => { map { $_ => 1 } @{ $w->{platformRoles} } },
            entries => \%e, last => $last, truth => $w,
        };
        $u->{billable_any} = grep { $_->{billable} } values %e;
        push @users, $u;
        $by_id{ $u->{id} } = $u;
    }
    return { users => \@users, by_id => \%by_id, products => \%prod, sites => \%site,
        cloud => \%cloud, groups => \%groups, group_by_name => \%by_name,
        roles => \%roles, truth => $truth };
}

sub _entry {
    my ($prod, $ari) = @_;
    my $p = $prod->{$ari};
    return { ari => $ari, host => $p ? $p->{host} : undef, key => $p ? $p->{key} : undef,
        roles => {}, billable => 0, last => 0 };
}

# context(model, site => HOST|CLOUD_ID, product => KEY) ->
# {kind, host, key, name}; host undef when the site names nothing.
sub context {
    my ($m, %o) = @_;
    my $host;
    if (defined $o{site}) {
        $host = $m->{sites}{ $o{site} } ? $o{site} : $m->{cloud}{ $o{site} };
    }
    my $shown = defined $o{site} ? ($host // $o{site}) : undef;
    my $key = $o{product};
    my $name = defined $o{site}
        ? (defined $key ? "site:$shown/product:$key" : "site:$shown")
        : (defined $key ? "product:$key" : 'org');
    return { site => defined $o{site}, host => $host, key => $key, name => $name,
        nothing => (defined $o{site} && !defined $host) };
}

# What the user has in the context: {n, last, roles => {}, billable}
sub ctx_eval {
    my ($u, $ctx) = @_;
    my %in = (n => 0, last => 0, roles => {}, billable => 0);
    for my $e (values %{ $u->{entries} }) {
        if ($ctx->{site}) {
            next unless defined $e->{host} && defined $ctx->{host} && $e->{host} eq $ctx->{host};
        }
        if (defined $ctx->{key}) {
            next unless defined $e->{key} && $e->{key} eq $ctx->{key};
        }
        $in{n}++;
        $in{roles}{$_} = 1 for keys %{ $e->{roles} };
        $in{billable} ||= $e->{billable};
        $in{last} = $e->{last} if $e->{last} > $in{last};
    }
    $in{last} = $u->{last} if !$ctx->{site} && !defined $ctx->{key};
    return \%in;
}

# The context date: last activity there, else the created date.
sub _ctx_date {
    my ($u, $in) = @_;
    return $in->{last} || $u->{created};
}

# The expected last_active and never_active of a row.
sub expect_row_last {
    my ($u, $ctx) = @_;
    my $in = ctx_eval($u, $ctx);
    my $at = _ctx_date($u, $in);
    return ({ at => ms_iso($at), context => $ctx->{name},
              source => $in->{last} ? 'activity' : 'created' },
            $in->{last} ? 0 : 1);
}

sub _list { my ($v) = @_; return map { s/^ +| +$//gr } split /,/, $v, -1 }

# expect_ids($model, {param => value}, now_ms): unordered ids matching
# the filters, by the semantics of src/ngx_umlo_query.h.
sub expect_ids {
    my ($m, $p, $now) = @_;
    my $ctx = context($m, site => $p->{site}, product => $p->{product});
    return () if $ctx->{nothing};
    if (defined $p->{product}) {
        my $any = grep { $_->{key} eq $p->{product}
            && (!$ctx->{site} || $_->{host} eq $ctx->{host}) } values %{ $m->{products} };
        return () unless $any;
    }
    my %want;
    for my $f (qw(status account_type claim)) {
        next unless defined $p->{$f};
        $want{$f} = { map { $_ => 1 } _list($p->{$f}) };
    }
    my %groups;
    if (defined $p->{group}) {
        for my $g (_list($p->{group})) {
            if ($m->{groups}{$g}) { $groups{$g} = 1 }
            elsif ($m->{group_by_name}{$g}) { $groups{ $m->{group_by_name}{$g}[0] } = 1 }
        }
        return () unless %groups;
    }
    my %roles;
    if (defined $p->{role}) {
        %roles = map { $_ => 1 } grep { $m->{roles}{$_} } _list($p->{role});
        return () unless %roles;
    }
    my $needle = defined $p->{q} && length $p->{q} ? fold($p->{q}) : undef;
    my $after  = defined $p->{created_after}  ? iso_ms($p->{created_after})  : undef;
    my $before = defined $p->{created_before} ? iso_ms($p->{created_before}) : undef;

    my @ids;
    for my $u (@{ $m->{users} }) {
        next if $want{status} && !$want{status}{ $u->{status} // '' };
        next if $want{account_type} && !$want{account_type}{ $u->{account_type} // '' };
        next if $want{claim} && !$want{claim}{ $u->{claim} // '' };
        if (defined $after || defined $before) {
            next unless $u->{created};
            next if defined $after && $u->{created} < $after;
            next if defined $before && $u->{created} >= $before;
        }
        next if %groups && !grep { $groups{$_} } @{ $u->{groups} };
        my $in = ctx_eval($u, $ctx);
        next if ($ctx->{site} || defined $ctx->{key}) && !$in->{n};
        next if defined $p->{billable} && ($p->{billable} eq 'true' ? 1 : 0) != ($in->{billable} ? 1 : 0);
        next if %roles && !grep { $roles{$_} } keys %{ $in->{roles} }, keys %{ $u->{platform_roles} };
        next if defined $p->{never_active}
            && ($p->{never_active} eq 'true' ? 1 : 0) != ($in->{last} ? 0 : 1);
        if (defined $p->{inactive_days}) {
            next if _ctx_date($u, $in) > $now - $p->{inactive_days} * DAY_MS;
        }
        if (defined $needle) {
            my $n = fold($u->{name} // '');
            $n =~ s/\n/ /g;
            next unless index($n, $needle) >= 0 || index(fold($u->{email} // ''), $needle) >= 0;
        }
        push @ids, $u->{id};
    }
    return @ids;
}

# sort_ids($model, \@ids, sort, order, ctx): the expected order; ties end
# on the id, missing names/emails last, unknown created dates first.
sub sort_ids {
    my ($m, $ids, $sort, $order, $ctx) = @_;
    $sort //= 'name';
    $ctx //= context($m);
    my %k;
    for my $id (@$ids) {
        my $u = $m->{by_id}{$id};
        if ($sort eq 'name' || $sort eq 'email') {
            my $name = fold($u->{name} // '');
            $name =~ s/\n/ /g;
            my $email = fold($u->{email} // '');
            my $v = $sort eq 'name' ? $name : $email;
            $k{$id} = [ ($v eq '' ? 1 : 0), ($sort eq 'name' ? "$name\n$email" : $email) ];
        } elsif ($sort eq 'created') {
            $k{$id} = [ $u->{created}, '' ];
        } else {
            $k{$id} = [ _ctx_date($u, ctx_eval($u, $ctx)), '' ];
        }
    }
    my @s = sort {
        $k{$a}[0] <=> $k{$b}[0] || $k{$a}[1] cmp $k{$b}[1] || $a cmp $b
    } @$ids;
    return ($order // 'asc') eq 'desc' ? reverse @s : @s;
}

# ---------------------------------------------------------------------------
# requests
# ---------------------------------------------------------------------------

# GET that must answer 200 with JSON; dies otherwise.
sub get_ok {
    my ($t, $path, %o) = @_;
    my $r = req($t, GET => $path, %o);
    die "GET $path answered $r->{status}: " . substr($r->{body}, 0, 500) . "\n"
        unless $r->{status} == 200 && $r->{json};
    return $r->{json};
}

# walk($t, $query, limit => N): follows links.next to the end.  Returns
# {rows => [...], pages => [page json...], total => meta.total of page 1}.
sub walk {
    my ($t, $query, %o) = @_;
    my $limit = $o{limit} // 1000;
    my $base = '/umlo/users?' . join '&', grep { length } $query // '', "limit=$limit";
    my (@rows, @pages);
    my $path = $base;
    for (1 .. 100_000) {
        my $j = get_ok($t, $path, %{ $o{req} || {} });
        push @pages, $j;
        push @rows, @{ $j->{data} };
        my $next = $j->{links}{next};
        last unless defined $next;
        $path = "$base&cursor=" . esc($next);
    }
    return { rows => \@rows, pages => \@pages, total => $pages[0]{meta}{total} };
}

sub ids_of { return map { $_->{id} } @{ $_[0] } }

# set_diff(\@got, \@expected) -> undef, or "missing: ...; unexpected: ..."
sub set_diff {
    my ($got, $exp) = @_;
    my %g = map { $_ => 1 } @$got;
    my %e = map { $_ => 1 } @$exp;
    my @missing = grep { !$g{$_} } sort keys %e;
    my @extra   = grep { !$e{$_} } sort keys %g;
    my %seen;
    my @dups = grep { $seen{$_}++ } @$got;
    return undef unless @missing || @extra || @dups;
    my $cut = sub { my @l = @_; (@l > 5 ? join(' ', @l[0 .. 4]) . ' ... (' . scalar(@l) . ')' : "@l") };
    return join '; ', (@missing ? 'missing: ' . $cut->(@missing) : ()),
        (@extra ? 'unexpected: ' . $cut->(@extra) : ()),
        (@dups ? 'duplicated: ' . $cut->(@dups) : ());
}

# Sends the same GET on $k connections opened at once (so that every
# worker gets some); returns [status, decoded JSON or undef, raw] each.
sub parallel_get {
    my ($t, $path, $k) = @_;
    my @s;
    for (1 .. $k) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->nginx_port,
            Timeout => 5) or die "connect: $!";
        push @s, $s;
    }
    print {$_} "GET $path HTTP/1.0\r\nHost: x\r\n\r\n" for @s;
    my %out;
    my $sel = IO::Select->new(@s);
    my $deadline = Time::HiRes::time() + 20;
    while ($sel->count && Time::HiRes::time() < $deadline) {
        for my $s ($sel->can_read(1)) {
            my $nr = sysread($s, my $buf, 65536);
            if ($nr) { $out{ 0 + $s } .= $buf } else { $sel->remove($s); close $s }
        }
    }
    $_->close for $sel->handles;
    push @Umlo::Sync::RESPONSES, values %out;
    return map {
        my $raw = $out{ 0 + $_ } // '';
        my ($code) = $raw =~ m{^HTTP/1\.\d (\d+)};
        my ($body) = $raw =~ /\r\n\r\n(.*)\z/s;
        [ $code // 599, eval { Umlo::Sync::decode_json($body // '') }, $raw ];
    } @s;
}

# The worker pids that logged loading generation $gen (since $mark).
sub loaded_pids {
    my ($t, $gen, $mark) = @_;
    my $log = $t->error_log($mark);
    my %p;
    $p{$1} = 1 while $log =~ /\[info\] (\d+)#\d+: .*umlo: snapshot generation \Q$gen\E loaded/g;
    return sort keys %p;
}

# Parallel requests until every worker has loaded generation $gen (as
# the error log says); returns those pids.
sub warm_workers {
    my ($t, $gen, %o) = @_;
    my (undef, @workers) = $t->nginx_pids;
    my @pids;
    for (1 .. ($o{rounds} // 10)) {
        parallel_get($t, $o{path} // '/umlo/users?limit=1', 12);
        @pids = loaded_pids($t, $gen, $o{since});
        last if @pids >= @workers;
    }
    return @pids;
}

# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------

# RFC 4180 parser, strict: lines end in CRLF, quoted cells double their
# quotes, a quote, CR or LF elsewhere is an error.  Linear (\G matching),
# for exports of many megabytes.  Returns ([rows of cells], error or undef).
sub parse_csv {
    my ($text) = @_;
    my (@rows, @row);
    my $len = length $text;
    return (\@rows, undef) unless $len;
    pos($text) = 0;
    while (1) {
        my $cell;
        if ($text =~ /\G"((?:[^"]++|"")*+)"/gc) {
            ($cell = $1) =~ s/""/"/g;
        } else {
            $text =~ /\G([^",\r\n]*+)/gc;
            $cell = $1;
        }
        push @row, $cell;
        next if $text =~ /\G,/gc;
        if ($text =~ /\G\r\n/gc) {
            push @rows, [@row];
            @row = ();
            last if pos($text) == $len;
            next;
        }
        my $at = pos($text) // 0;
        return (\@rows, $at >= $len ? 'the last line does not end in CRLF'
            : sprintf('unexpected %s at character %d of line %d', _show_char(substr $text, $at, 1), $at, @rows + 1));
    }
    return (\@rows, undef);
}

sub _show_char { my ($c) = @_; return $c eq "\r" ? 'CR' : $c eq "\n" ? 'LF' : "'$c'" }

1;
