use strict;
use warnings;

# Webhooks: signed payloads for sync.started, .succeeded, .failed and
# .cancelled, and for the task events; retries after failing answers,
# timeouts against a hanging receiver, outcomes in the history, no API key
# anywhere.

use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;
use Umlo::Webhook;

my $t = Umlo::Test->new;
my $rx = Umlo::Webhook->start($t);
my $secret = 'whsec-' . join '', map { sprintf '%02x', int rand 256 } 1 .. 16;
my $secret_file = $t->path('webhook.secret');
open(my $fh, '>', $secret_file) or die $!;
print {$fh} "$secret\n";
close $fh;
chmod 0600, $secret_file;

my $ok = $rx->url('/ok');
my $flaky = $rx->url('/fail/2?token=querysecret');
$flaky =~ s{^http://}{http://hookuser:hookpass@};
my $hang = $rx->url('/hang');
my $plain = $rx->url('/plain');

start_stack($t,
    sim  => { users => 60, sites => 2, groups => 6, seed => 5 },
    http => qq{
        umlo_webhook $ok secret_file=$secret_file;
        umlo_webhook $flaky secret_file=$secret_file events=sync.succeeded,sync.failed;
        umlo_webhook $hang events=sync.succeeded;
        umlo_webhook $plain events=sync.failed,sync.cancelled;
        umlo_webhook_timeout 1s;
        umlo_webhook_retries 3;
        umlo_webhook_backoff 200ms;
        umlo_webhook_log 10;
    },
    locations => 'location = /umlo/history { umlo_history; }',
);
my $key = $t->api_key;

sub sim_ok {
    my ($method, $path, $json) = @_;
    my $r = $t->sim_admin($method, $path, $json);
    die "sim admin $method $path: $r->{status} $r->{body}\n" unless $r->{status} == 200;
    return $r->{json};
}

sub check_payload {
    my ($req, $event, $sync_id, $label) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $j = $req->{json};
    ok $j, "$label: the body is JSON" or return;
    is $req->{headers}{'content-type'}, 'application/json', "$label: content type";
    is $req->{headers}{'x-umlo-event'}, $event, "$label: event header";
    is $j->{event}, $event, "$label: event in the body";
    is $req->{headers}{'x-umlo-delivery'}, $j->{id}, "$label: delivery id header = body id";
    like $j->{id}, qr/^d-\d+-[0-9a-f]+$/, "$label: delivery id";
    is $j->{org}, $t->org, "$label: org";
    cmp_ok abs($j->{timestamp} - time), '<', 120, "$label: event timestamp is now";
    is $j->{sync}{id}, $sync_id, "$label: the sync's id";
    is $j->{sync}{trigger}, 'manual', "$label: trigger";
}

sub no_key {
    my ($label) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my @leaks;
    for my $req (@{ $rx->requests }) {
        my $h = $req->{headers};
        my $all = join "\n", $req->{body}, map { "$_: $h->{$_}" } sort keys %$h;
        push @leaks, $req if index($all, $key) >= 0 || index($all, $secret) >= 0;
    }
    cmp_ok scalar(@{ $rx->requests }), '>', 10, "$label: deliveries checked";
    is scalar(@leaks), 0, "$label: neither the API key nor the secret is in any delivery";
}

my $history;
sub history { my $r = req($t, GET => '/umlo/history'); die "history: $r->{status}" unless $r->{status} == 200; $r->{json} }

subtest 'a succeeded sync' => sub {
    my ($st, $r) = run_sync($t);
    is $st && $st->{state}, 'succeeded', 'the sync succeeded' or return;
    my $id = $st->{sync}{id};

    my $started = $rx->wait_received('/ok', 'sync.started', 1);
    my $done = $rx->wait_received('/ok', 'sync.succeeded', 1);
    is scalar(@$started), 1, 'sync.started delivered once';
    is scalar(@$done), 1, 'sync.succeeded delivered once';
    check_payload($started->[0], 'sync.started', $id, 'started');
    check_payload($done->[0], 'sync.succeeded', $id, 'succeeded');
    is $started->[0]{json}{sync}{state}, 'running', 'started: state running';

    my $s = $done->[0]{json}{sync};
    is $s->{state}, 'succeeded', 'succeeded: state';
    is $s->{counts}{users}, $st->{sync}{counts}{users}, 'succeeded: user count as in the status';
    is $s->{duration_ms}, $st->{sync}{duration_ms}, 'succeeded: duration as in the status';
    cmp_ok $s->{api}{calls}, '>', 0, 'succeeded: API calls';
    ok exists $s->{error} && !defined $s->{error}, 'succeeded: error is null';

    for my $req (@$started, @$done) {
        is Umlo::Webhook::verify($req, $secret), undef,
            "$req->{headers}{'x-umlo-event'}: the signature verifies with the secret";
        isnt Umlo::Webhook::verify($req, "$secret-wrong"), undef, 'and not with another secret';
        my %forged = (%$req, body => $req->{body} =~ s/"manual"/"scheduled"/r);
        isnt Umlo::Webhook::verify(\%forged, $secret), undef, 'a changed body does not verify';
        my %replay = (%$req, headers => { %{ $req->{headers} }, 'x-umlo-timestamp' => $req->{headers}{'x-umlo-timestamp'} - 1 });
        isnt Umlo::Webhook::verify(\%replay, $secret), undef, 'another timestamp does not verify';
    }

    is scalar(@{ $rx->received('/plain') }), 0, 'the failure-only webhook got nothing';

    # 500, 500, then 200: three attempts, one delivery id
    my $fl = $rx->wait_received('/fail/2', 'sync.succeeded', 3);
    is scalar(@$fl), 3, 'the flaky receiver was tried three times';
    is_deeply [ map { $_->{answer} } @$fl ], [500, 500, 200], 'answered 500, 500, 200';
    is_deeply [ map { $_->{headers}{'x-umlo-attempt'} } @$fl ], [1, 2, 3], 'attempt header counts';
    is scalar(keys %{{ map { $_->{headers}{'x-umlo-delivery'} => 1 } @$fl }}), 1, 'same delivery id on every attempt';
    is Umlo::Webhook::verify($fl->[2], $secret), undef, 'the retry is signed too';
    cmp_ok $fl->[1]{time} - $fl->[0]{time}, '>=', 0.15, 'backoff before the 2nd attempt';
    cmp_ok $fl->[2]{time} - $fl->[1]{time}, '>=', 0.35, 'doubled before the 3rd';
    is scalar(@{ $rx->received('/fail/2', 'sync.started') }), 0, 'events= filters sync.started out';

    # the hanging receiver: 4 attempts of 1 s each
    my $h = $rx->wait_received('/hang', 'sync.succeeded', 4, timeout => 30);
    is scalar(@$h), 4, 'the hanging receiver was tried 1 + umlo_webhook_retries times';
    ok !exists $h->[0]{headers}{'x-umlo-signature'}, 'no signature without a secret';

    my $entry;
    ok wait_for(sub {
        $history = history();
        ($entry) = grep { $_->{id} eq $id } @{ $history->{syncs} };
        $entry && @{ $entry->{webhooks} } == 4
    }, timeout => 30), 'the history shows the four deliveries of the sync' or diag explain $history;
    my %by = map { ($_->{webhook} =~ s{^http://127\.0\.0\.1:\d+}{}r) . ' ' . $_->{event} => $_ } @{ $entry->{webhooks} };
    json_contains $by{'/ok sync.started'}, { status => 'delivered', attempts => 1, http_status => 200, error => undef, sync_id => $id }, 'ok: started';
    json_contains $by{'/ok sync.succeeded'}, { status => 'delivered', attempts => 1, http_status => 200 }, 'ok: succeeded';
    json_contains $by{'/fail/2 sync.succeeded'}, { status => 'delivered', attempts => 3, http_status => 200, error => undef }, 'flaky: delivered on the 3rd attempt';
    json_contains $by{'/hang sync.succeeded'}, { status => 'failed', attempts => 4, http_status => undef,
        error => qr/umlo_webhook_timeout/ }, 'hang: failed after 4 attempts, timeout named';
    my $names = join ' ', map { $_->{webhook} } @{ $entry->{webhooks} };
    unlike $names, qr/hookuser|hookpass|querysecret/, 'recorded URLs carry no credentials or query';
    $t->assert_error_log(qr/umlo: webhook sync\.succeeded \S+ to \S+\/hang failed after 4 attempt/,
        desc => 'the failed delivery is logged');
};

subtest 'a failed sync' => sub {
    sim_ok(POST => 'config', { apiKey => 'another-key-0123456789abcdef' });
    my ($st) = run_sync($t);
    sim_ok(POST => 'config', { apiKey => $key });
    is $st && $st->{state}, 'failed', 'the sync failed' or return;
    my $id = $st->{sync}{id};
    my ($req) = grep { $_->{json}{sync}{id} eq $id } @{ $rx->wait_received('/ok', 'sync.failed', 1) };
    ok $req, 'sync.failed delivered' or return;
    check_payload($req, 'sync.failed', $id, 'failed');
    is Umlo::Webhook::verify($req, $secret), undef, 'signed';
    json_contains $req->{json}{sync}, { state => 'failed', error => { where => qr/./, message => qr/API key rejected/ } },
        'the payload carries the error';
    my ($p) = grep { $_->{json}{sync}{id} eq $id } @{ $rx->wait_received('/plain', 'sync.failed', 1) };
    ok $p, 'the failure-only webhook got it';
    my $fl = $rx->wait_received('/fail/2', 'sync.failed', 3);
    is scalar(grep { $_->{json}{sync}{id} eq $id } @$fl), 3, 'the flaky one after retries';
};

subtest 'a cancelled sync' => sub {
    sim_ok(POST => 'config', { latencyMs => 800 });
    my $r = req($t, POST => '/umlo/sync');
    is $r->{status}, 202, 'sync started' or return;
    my $id = $r->{json}{id};
    ok wait_for(sub { status_json($t)->{state} eq 'running' }, timeout => 10), 'running';
    is req($t, DELETE => '/umlo/sync')->{status}, 202, 'cancel accepted';
    my $st = wait_sync($t, $id, timeout => 30);
    sim_ok(POST => 'config', { latencyMs => 0 });
    is $st && $st->{state}, 'cancelled', 'the sync was cancelled' or return;
    my ($req) = grep { $_->{json}{sync}{id} eq $id } @{ $rx->wait_received('/ok', 'sync.cancelled', 1) };
    ok $req, 'sync.cancelled delivered' or return;
    check_payload($req, 'sync.cancelled', $id, 'cancelled');
    is Umlo::Webhook::verify($req, $secret), undef, 'signed';
    like $req->{json}{sync}{error}{message}, qr/cancelled on request/, 'the payload says why';
    ok wait_for(sub { grep { $_->{json}{sync}{id} eq $id } @{ $rx->received('/plain', 'sync.cancelled') } }, timeout => 10),
        'the failure-only webhook got it';
    is scalar(grep { $_->{json}{sync}{id} eq $id } @{ $rx->received('/fail/2') }), 0, 'not subscribed: nothing';
};

subtest 'once per sync across instances' => sub {
    $t->start_nginx(name => 'b', http_config => umlo_http_config(qq{
        umlo_webhook $ok secret_file=$secret_file;
        umlo_webhook_timeout 1s;
        umlo_webhook_log 10;
    }), config => umlo_locations());
    my $before = scalar @{ $rx->received('/ok') };
    my ($st) = run_sync($t, name => 'b');
    is $st && $st->{state}, 'succeeded', 'a sync on the second instance' or return;
    my $id = $st->{sync}{id};
    $rx->wait_received('/ok', 'sync.succeeded', 1);
    sleep 1;
    my @mine = grep { ($_->{json}{sync}{id} // '') eq $id } @{ $rx->received('/ok') };
    is_deeply [ sort map { $_->{headers}{'x-umlo-event'} } @mine ], ['sync.started', 'sync.succeeded'],
        'each event once, from the instance that ran it';
    $t->stop_nginx('b');
};

subtest 'deliveries list is bounded' => sub {
    my $stats = { @{ $t->redis('HGETALL', org_key($t, 'stats')) } };
    my $total = 0;
    $total += $stats->{$_} for grep { /^webhook:/ } keys %$stats;
    cmp_ok $total, '>', 10, "more deliveries than umlo_webhook_log ($total)";
    is $t->redis('LLEN', org_key($t, 'deliveries')), 10, 'the list keeps umlo_webhook_log of them';
    my $h = history();
    is scalar(@{ $h->{deliveries} }), 10, 'the history shows those';
    my @at = map { $_->{at} } @{ $h->{deliveries} };
    is_deeply \@at, [ sort { $b <=> $a } @at ], 'newest first';
    cmp_ok $stats->{'webhook:sync.succeeded:failed'} // 0, '>=', 1, 'failed deliveries counted';
    cmp_ok $stats->{'webhook:sync.succeeded:delivered'} // 0, '>=', 3, 'delivered ones counted';
};

subtest 'a reload does not wait for retries' => sub {
    my $slow = $rx->url('/hang/reload');
    $t->start_nginx(name => 'c', worker_processes => 1, http_config => umlo_http_config(qq{
        umlo_webhook $slow events=sync.succeeded;
        umlo_webhook_timeout 3s;
        umlo_webhook_retries 10;
        umlo_webhook_backoff 1s;
    }), config => umlo_locations());
    my (undef, $worker) = $t->nginx_pids('c');
    my ($st) = run_sync($t, name => 'c');
    is $st && $st->{state}, 'succeeded', 'a sync' or return;
    my $got = $rx->wait_received('/hang/reload', 'sync.succeeded', 1);
    is scalar(@$got), 1, 'the first attempt hangs';
    my $t0 = time;
    $t->reload_nginx(name => 'c');
    ok wait_for(sub { !kill 0, $worker }, timeout => 20), 'the old worker exits';
    my $took = time - $t0;
    cmp_ok $took, '<', 8, sprintf('within about one attempt (%.1f s), not after 10 retries', $took);
    is scalar(@{ $rx->received('/hang/reload') }), 1, 'no retry after the reload';
    my $d;
    ok wait_for(sub {
        ($d) = grep { $_->{webhook} =~ m{/hang/reload$} } @{ history()->{deliveries} };
        $d
    }, timeout => 10), 'the outcome is recorded';
    json_contains $d, { status => 'failed', attempts => 1, error => qr/umlo_webhook_timeout/ }, 'failed after one attempt';
    $t->stop_nginx('c');
};

subtest 'task events: signed, retried, logged, filtered' => sub {
    my ($task_url, $task_flaky, $legacy, $syncs) = map { $rx->url($_) }
        qw(/task /fail/1/task /legacy /tasksync);
    my $http = qq{
        umlo_webhook $task_url secret_file=$secret_file events=task.completed,task.failed;
        umlo_webhook $task_flaky events=task.completed;
        umlo_webhook $syncs events=sync.succeeded;
        umlo_tasks_webhook $legacy;
        umlo_tasks_interval 1s;
        umlo_webhook_timeout 1s;
        umlo_webhook_retries 3;
        umlo_webhook_backoff 200ms;
        umlo_webhook_log 10;
    };
    my $locs = 'location /umlo/tasks { umlo_tasks; }';

    my ($rc, $out) = $t->nginx_t(http_config => umlo_http_config($http),
        config => umlo_locations($locs));
    is $rc, 0, 'nginx -t accepts umlo_tasks_webhook' or diag $out;
    like $out, qr/\[warn\].*"umlo_tasks_webhook" is deprecated.*events=task\.completed,task\.failed/,
        'and warns that it is deprecated, naming the replacement';
    ($rc, $out) = $t->nginx_t(http_config => umlo_http_config(
        "umlo_webhook $task_url events=task.done;"), config => umlo_locations());
    isnt $rc, 0, 'an unknown event in events=: refused';
    like $out, qr/task\.completed, task\.failed/, 'listing the task events';

    $t->start_nginx(name => 'd', http_config => umlo_http_config($http),
        config => umlo_locations($locs));
    my $r = req($t, POST => '/umlo/tasks', name => 'd', json => { name => 'hooked',
        filter => 'q=nobody-matches-this', action => 'suspend', schedule => { every => '1h' } });
    is $r->{status}, 201, 'a filter task' or diag $r->{body};
    my $id = $r->{json}{id} or return;
    is req($t, POST => "/umlo/tasks/$id/run", name => 'd')->{status}, 202, 'run now';

    my $got = $rx->wait_received('/task', 'task.completed', 1, timeout => 60);
    is scalar(@$got), 1, 'task.completed delivered once' or return;
    my $req = $got->[0];
    my $j = $req->{json};
    is $j->{event}, 'task.completed', 'event in the body';
    is $req->{headers}{'x-umlo-delivery'}, $j->{id}, 'delivery id header = body id';
    is $j->{org}, $t->org, 'org';
    json_contains $j->{task}, { id => $id, name => 'hooked', state => 'succeeded',
        counts => { targets => 0 }, sync => { state => 'succeeded' } }, 'the task run'
        or diag explain $j;
    is Umlo::Webhook::verify($req, $secret), undef, 'the signature verifies with the secret';
    my %forged = (%$req, body => $req->{body} =~ s/"hooked"/"hacked"/r);
    isnt Umlo::Webhook::verify(\%forged, $secret), undef, 'a changed body does not verify';

    my $fl = $rx->wait_received('/fail/1/task', 'task.completed', 2);
    is_deeply [ map { $_->{answer} } @$fl ], [500, 200], 'a failing receiver: retried, then delivered';
    is_deeply [ map { $_->{headers}{'x-umlo-attempt'} } @$fl ], [1, 2], 'attempts 1 and 2';
    is $fl->[0]{json}{id}, $fl->[1]{json}{id}, 'one delivery id';
    ok !exists $fl->[0]{headers}{'x-umlo-signature'}, 'unsigned without secret_file=';

    my $leg = $rx->wait_received('/legacy', 'task.completed', 1);
    is scalar(@$leg), 1, 'umlo_tasks_webhook: an ordinary task-events receiver';
    my $sy = $rx->wait_received('/tasksync', 'sync.succeeded', 1);
    is scalar(@$sy), 1, 'the task\'s sync: sync.succeeded';
    is scalar(grep { $_->{headers}{'x-umlo-event'} =~ /^task\./ } @{ $rx->received('/tasksync') }), 0,
        'not subscribed to task events: none';

    my @d;
    ok wait_for(sub {
        @d = grep { $_->{event} eq 'task.completed' }
            map { decode_json($_) } @{ $t->redis('LRANGE', org_key($t, 'deliveries'), 0, -1) };
        @d >= 3
    }, timeout => 10), 'the deliveries log has them' or diag explain \@d;
    my ($fd) = grep { $_->{webhook} =~ m{/fail/1/task$} } @d;
    json_contains $fd, { status => 'delivered', attempts => 2, http_status => 200,
        sync_id => $j->{task}{sync}{id} }, 'with attempts, and the sync the run made';
    my $stats = { @{ $t->redis('HGETALL', org_key($t, 'stats')) } };
    cmp_ok $stats->{'webhook:task.completed:delivered'} // 0, '>=', 3, 'and in the metrics';
    ok !exists req($t, GET => "/umlo/tasks/$id", name => 'd')->{json}{last_run}{webhook},
        'last_run no longer waits for an answer';
    $t->stop_nginx('d');
};

no_key('all deliveries');
final_checks($t);
done_testing;
