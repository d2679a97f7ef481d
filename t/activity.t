# The activity refresh: POST {"activity": true} (or the cadence) reads
# productAccess and, where it lacks dates, last-active-dates; the current
# snapshot gets the new dates in one step, with activity_as_of, and the
# user browser and dashboard answer with them.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;
use Umlo::Users;

my $t = Umlo::Test->new;
start_users_stack($t,
    sim  => { users => 80, sites => 2, groups => 10, seed => 7 },
    http => 'umlo_activity_refresh off;',
);

my $LAD = 'GET /admin/v1/orgs/{orgId}/directory/users/{accountId}/last-active-dates';

sub sim_ok {
    my ($method, $path, $json) = @_;
    my $r = $t->sim_admin($method, $path, $json);
    die "sim admin $method $path: $r->{status} $r->{body}\n" unless $r->{status} == 200;
    return $r->{json};
}

sub user_doc {
    my ($id) = @_;
    my $r = req($t, GET => "/umlo/users/$id");
    return $r->{status} == 200 ? $r->{json}{data} : undef;
}

# account id -> {ARI -> ms} from the simulator's truth (v2 users)
sub truth_activity {
    my %out;
    for my $u (@{ truth($t)->{users} }) {
        next unless grep { $_ eq 'v2' } @{ $u->{apis} || [] };
        $out{ $u->{accountId} } = { map { $_->{resourceId} => iso_ms($_->{lastActiveTimestamp}) }
                                    @{ $u->{activity} || [] } };
    }
    return \%out;
}

# every stored user's product dates against the truth: [mismatches]
sub activity_diff {
    my ($truth) = @_;
    my $users = redis_hash($t, org_key($t, 'g', current_gen($t), 'users'));
    my @bad;
    for my $id (sort keys %$truth) {
        my $doc = $users->{$id} or do { push @bad, "$id missing"; next };
        my %got = map { $_->{resource_id} => iso_ms($_->{last_active}) }
                  grep { defined $_->{last_active} } @{ $doc->{products} };
        my $want = $truth->{$id};
        for my $ari (sort keys %{ { %got, %$want } }) {
            my ($g, $w) = ($got{$ari} // 0, $want->{$ari} // 0);
            # v1 dates have whole seconds
            push @bad, "$id $ari: got $g, want $w" if abs($g - $w) >= 1000;
        }
        my ($max) = sort { $b <=> $a } values %$want;
        push @bad, "$id org-wide: " . ($doc->{last_active} // 'null')
            if ($max // 0) && abs(iso_ms($doc->{last_active}) - $max) >= 1000;
    }
    return \@bad;
}

my ($st) = run_sync($t);
is $st && $st->{state}, 'succeeded', 'full sync';
my $snap0 = status_json($t)->{snapshot};
ok $snap0->{activity_as_of}, 'a full sync records activity_as_of';
is $snap0->{activity_as_of}, $snap0->{data_as_of}, '... as of its data';

subtest 'bad requests' => sub {
    for my $case (
        [ { activity => 'yes' }, 'invalid_activity' ],
        [ { activity => JSON::PP::true, users => ['x'] }, 'invalid_body' ],
        [ { activity => JSON::PP::true, scope => 'full' }, 'invalid_body' ],
    ) {
        my $r = req($t, POST => '/umlo/sync', json => $case->[0]);
        is $r->{status}, 400, encode_json($case->[0]) . ' -> 400';
        is $r->{json} && $r->{json}{error}{code}, $case->[1], '... ' . $case->[1];
    }
};

subtest 'new activity reaches the users answers' => sub {
    my $truth = truth($t);
    my ($u) = grep { @{ $_->{activity} || [] } >= 1 && @{ $_->{billableOn} || [] } >= 1
                     && grep({ $_ eq 'v2' } @{ $_->{apis} }) } @{ $truth->{users} };
    my ($other) = grep { my $x = $_; !grep { $_->{resourceId} eq $x->{id} } @{ $u->{activity} } }
                  map { @{ $_->{products} } } @{ $truth->{sites} };
    my $ari = $u->{activity}[0]{resourceId};
    my $now = time;
    sim_ok(PATCH => "users/$u->{accountId}",
           { activity => { $ari => $now - 60, ($other ? ($other->{id} => $now - 120) : ()) } });

    my $before = user_doc($u->{accountId});
    my $gen = current_gen($t);
    sleep 1.1;   # activity_as_of has whole seconds
    my ($st) = run_sync($t, json => { activity => JSON::PP::true });
    is $st && $st->{state}, 'succeeded', 'activity refresh succeeded';
    json_contains $st->{sync}, { kind => 'activity', trigger => 'manual' }, 'recorded as a manual activity refresh';
    is current_gen($t), $gen, 'same generation';
    my $snap = status_json($t)->{snapshot};
    ok $snap->{activity_as_of} gt $snap0->{activity_as_of}, "activity_as_of moved on ($snap->{activity_as_of})";
    is $snap->{data_as_of}, $snap0->{data_as_of}, 'data_as_of did not';

    my $after = user_doc($u->{accountId});
    is iso_ms($after->{last_active}{at}), ($now - 60) * 1000, 'the user answer has the new org-wide date';
    my ($p) = grep { $_->{resource_id} eq $ari } @{ $after->{products} };
    is iso_ms($p && $p->{last_active}), ($now - 60) * 1000, '... and the product date';
    if ($other) {
        my ($q) = grep { $_->{resource_id} eq $other->{id} } @{ $after->{products} };
        ok $q && !@{ $q->{roles} } && !$q->{billable}, 'a product used but not held: an entry without roles';
        is iso_ms($q && $q->{last_active}), ($now - 120) * 1000, '... with its date';
    }
    my $list = req($t, GET => '/umlo/users?limit=1000&sort=last_active&order=desc')->{json};
    is $list->{data}[0]{id}, $u->{accountId}, 'the list sorts the user first by last_active';
    is $list->{meta}{activity_as_of}, $snap->{activity_as_of}, 'the list meta shows activity_as_of';
    is req($t, GET => '/umlo/dashboard')->{json}{activity_as_of}, $snap->{activity_as_of},
        'the dashboard too';
    is_deeply activity_diff(truth_activity()), [], 'every stored date equals the truth';
};

subtest 'the endpoint only where productAccess lacks dates' => sub {
    sim_ok(POST => 'config', { hideAccessTimestamps => 0.4 });
    # who lacks dates, seen from the listing itself
    my @need;
    my $body = { limit => 100, expand => ['productAccess'] };
    while (1) {
        my $r = Umlo::Test::_http(POST => $t->sim_url . '/admin/v2/orgs/' . $t->org . '/directories/-/users/search',
            json => $body, headers => { Authorization => 'Bearer ' . $t->api_key });
        push @need, map { $_->{accountId} }
            grep { grep { !defined $_->{lastActiveTimestamp} } @{ $_->{productAccess} || [] } }
            @{ $r->{json}{data} };
        my $next = $r->{json}{links}{next} or last;
        $body = { %$body, cursor => $next };
    }
    ok @need > 5, scalar(@need) . ' users lack dates in the listing';

    # their activity moves on: only the endpoint can tell
    my $now = time;
    for my $id (@need[0 .. 4]) {
        my $u = $t->sim_admin(GET => "org/users/$id")->{json};
        sim_ok(PATCH => "users/$id", { activity => { $u->{activity}[0]{resourceId} => $now - 30 } });
    }
    sim_ok(POST => 'stats/reset');
    my ($st) = run_sync($t, json => { activity => JSON::PP::true });
    is $st && $st->{state}, 'succeeded', 'refresh succeeded';
    is $st->{sync}{counts}{lookups_needed}, scalar(@need), 'looked up exactly those users';
    my $stats = sim_ok(GET => 'stats');
    my $lad = $stats->{endpoints}{$LAD} // {};
    is $lad->{count}, $st->{sync}{counts}{lookups}, 'one request per page looked up';
    is $stats->{sent429}, 0, 'no 429';
    is_deeply activity_diff(truth_activity()), [], 'every stored date equals the truth';
    sim_ok(POST => 'config', { hideAccessTimestamps => 0 });
};

subtest 'a refresh holds the sync lock; cancel keeps the old data' => sub {
    sim_ok(POST => 'config', { latencyMs => 1500 });
    my $before = redis_hash($t, org_key($t, 'g', current_gen($t), 'users'));
    my $rev = $t->redis(HGET => org_key($t, 'current'), 'rev');
    my $r = req($t, POST => '/umlo/sync', json => { activity => JSON::PP::true });
    is $r->{status}, 202, 'refresh started';
    my $c = req($t, POST => '/umlo/sync');
    is $c->{status}, 409, 'a full sync meanwhile: 409';
    is $c->{json}{sync}{kind}, 'activity', '... naming the refresh';
    is req($t, DELETE => '/umlo/sync')->{status}, 202, 'DELETE cancels it';
    my $st = wait_sync($t, $r->{json}{id});
    is $st && $st->{state}, 'cancelled', 'cancelled';
    is_deeply redis_hash($t, org_key($t, 'g', current_gen($t), 'users')), $before, 'users untouched';
    is $t->redis(HGET => org_key($t, 'current'), 'rev'), $rev, 'revision untouched';
    sim_ok(POST => 'config', { latencyMs => 0 });
};

subtest 'answers as docs/api.yaml describes them' => sub {
    plan skip_all => 'YAML::XS missing' unless eval { require Umlo::OpenAPI; Umlo::OpenAPI->load('docs/api.yaml') };
    my $api = Umlo::OpenAPI->load('docs/api.yaml');
    my $valid = sub {
        my ($method, $uri, $r, $body) = @_;
        my @e = $api->check_response(method => $method, uri => $uri, status => $r->{status},
            headers => $r->{headers}, body => $r->{body});
        ok !@e, "$method $uri $r->{status}: valid by the document" or diag join "\n", @e;
    };
    for my $body ('{"activity":true}', '{"activity":false}', '{"scope":"full","activity":false}') {
        my @e = $api->check_request(method => 'POST', uri => '/umlo/sync', body => $body,
            content_type => 'application/json');
        ok !@e, "$body: a valid request by the document" or diag join "\n", @e;
    }
    for my $body ('{"activity":"yes"}', '{"activity":true,"scope":"full"}') {
        ok scalar($api->check_request(method => 'POST', uri => '/umlo/sync', body => $body,
            content_type => 'application/json')), "$body: invalid by the document too";
    }
    my $bad = req($t, POST => '/umlo/sync', json => { activity => 'yes' });
    $valid->(POST => '/umlo/sync', $bad);

    sim_ok(POST => 'config', { latencyMs => 800, hideAccessTimestamps => 0.3 });
    my $r = req($t, POST => '/umlo/sync', json => { activity => JSON::PP::true });
    $valid->(POST => '/umlo/sync', $r);
    ok wait_for(sub { (status_json($t)->{sync}{phase} // '') =~ /^(users|lookups)$/ }, timeout => 10),
        'running';
    $valid->(GET => '/umlo/status', req($t, GET => '/umlo/status'));
    $valid->(POST => '/umlo/sync', req($t, POST => '/umlo/sync'));
    my $st = wait_sync($t, $r->{json}{id}, timeout => 60);
    is $st && $st->{state}, 'succeeded', 'refresh succeeded';
    $valid->(GET => '/umlo/status', req($t, GET => '/umlo/status'));
    my $id = req($t, GET => '/umlo/users?limit=1')->{json}{data}[0]{id};
    $valid->(GET => "/umlo/users/$id", req($t, GET => "/umlo/users/$id"));
    $valid->(GET => '/umlo/users?limit=5', req($t, GET => '/umlo/users?limit=5'));
    $valid->(GET => '/umlo/dashboard', req($t, GET => '/umlo/dashboard'));
    sim_ok(POST => 'config', { latencyMs => 0, hideAccessTimestamps => 0 });
};

final_checks($t);
done_testing;
