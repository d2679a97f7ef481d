use strict;
use warnings;

# umlo_history and umlo_metrics: the last syncs with their figures, and a
# Prometheus exposition that parses and agrees with status and history on
# every instance.

use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;

my $t = Umlo::Test->new;
my $locations = join "\n",
    'location = /umlo/history { umlo_history; }',
    'location = /umlo/metrics { umlo_metrics; }';
start_stack($t,
    sim       => { users => 80, sites => 2, groups => 6, seed => 9 },
    http      => 'umlo_sync_history 4;',
    locations => $locations,
    names     => ['main', 'b'],
);
my $key = $t->api_key;

sub sim_ok {
    my ($method, $path, $json) = @_;
    my $r = $t->sim_admin($method, $path, $json);
    die "sim admin $method $path: $r->{status} $r->{body}\n" unless $r->{status} == 200;
    return $r->{json};
}

# A strict reader of the text format 0.0.4: returns ({name => {labels
# text => value}}, {name => type}, [errors]).
sub parse_prom {
    my ($text) = @_;
    my (%samples, %type, %help, @err);
    my $metric_re = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
    my $n = 0;
    for my $line (split /\n/, $text) {
        $n++;
        next if $line eq '';
        if ($line =~ /^# HELP ($metric_re) (.*)$/) {
            push @err, "line $n: second HELP for $1" if $help{$1}++;
            next;
        }
        if ($line =~ /^# TYPE ($metric_re) (counter|gauge|histogram|summary|untyped)$/) {
            push @err, "line $n: second TYPE for $1" if $type{$1};
            push @err, "line $n: TYPE after samples of $1" if $samples{$1};
            $type{$1} = $2;
            next;
        }
        if ($line =~ /^#/) { next }
        if ($line =~ /^($metric_re)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})? ([-+]?(?:[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|Inf|NaN))(?: -?[0-9]+)?$/) {
            my ($name, $labels, $value) = ($1, $2 // '', $3);
            (my $base = $name) =~ s/_(bucket|sum|count)$//;
            my $family = $type{$name} ? $name : $type{$base} ? $base : undef;
            push @err, "line $n: sample $name without a TYPE" unless $family;
            push @err, "line $n: duplicate sample $name\{$labels\}" if exists $samples{$name}{$labels};
            $samples{$name}{$labels} = $value;
            next;
        }
        push @err, "line $n: not valid exposition format: $line";
    }
    push @err, 'no trailing newline' unless $text =~ /\n\z/;
    return (\%samples, \%type, \@err);
}

# The same text through the reference client's parser (t/lib/bin/prom-parse):
# its samples, as {name => {labels text => value}}, or dies.
# 'b="2",a="1",le="5"' -> 'a="1",b="2",le="5"': names sorted, le last
sub canonical_labels {
    my @l = split /,(?=[a-zA-Z_]\w*=")/, $_[0];
    return join ',', sort { ($a =~ /^le=/) <=> ($b =~ /^le=/) || $a cmp $b } @l;
}

sub reference_parse {
    my ($text) = @_;
    my $in = $t->path('metrics.txt');
    open(my $fh, '>', $in) or die $!;
    print {$fh} $text;
    close $fh;
    my $out = `t/lib/bin/prom-parse < $in`;
    die "prom-parse: $out\n" if $?;
    my %s;
    for my $x (@{ decode_json($out) }) {
        my $l = join ',', map { "$_=\"$x->{labels}{$_}\"" } keys %{ $x->{labels} };
        $s{ $x->{name} }{ canonical_labels($l) } = $x->{value};
    }
    return \%s;
}

sub metrics {
    my ($name) = @_;
    my $r = req($t, GET => '/umlo/metrics', name => $name);
    die "metrics answered $r->{status}\n" unless $r->{status} == 200;
    my ($s, $ty, $err) = parse_prom($r->{body});
    return ($s, $ty, $err, $r);
}

sub history {
    my ($query, $name) = @_;
    my $r = req($t, GET => '/umlo/history' . ($query // ''), name => $name);
    return $r;
}

subtest 'empty' => sub {
    my $r = history();
    is $r->{status}, 200, 'history answers before any sync';
    json_contains $r->{json}, { org => $t->org, count => 0, syncs => [], deliveries => [] }, 'nothing yet';
    my ($s, $ty, $err) = metrics();
    is_deeply $err, [], 'metrics parse';
    is $s->{umlo_sync_running}{''}, 0, 'no sync running';
    is $s->{umlo_redis_up}{''}, 1, 'Redis up';
    ok !exists $s->{umlo_sync_duration_seconds_count}, 'no durations yet';
    is $s->{umlo_sync_last_success_timestamp_seconds}{''}, 0, 'never succeeded';
};

my @ids;
subtest 'several syncs' => sub {
    for my $i (1 .. 3) {
        my ($st) = run_sync($t, name => $i == 2 ? 'b' : 'main');
        is $st && $st->{state}, 'succeeded', "sync $i succeeded" or return;
        push @ids, $st->{sync}{id};
    }
    my $users = status_json($t)->{snapshot}{counts}{users};
    my ($st) = run_sync($t, json => { users => [ 'no-such-account-1' ] });
    is $st && $st->{state}, 'succeeded', 'a selective sync';
    push @ids, $st->{sync}{id};

    sim_ok(POST => 'config', { apiKey => 'wrong-key-0123456789abcdef' });
    ($st) = run_sync($t);
    sim_ok(POST => 'config', { apiKey => $key });
    is $st && $st->{state}, 'failed', 'a failed sync';
    push @ids, $st->{sync}{id};
};

subtest 'history' => sub {
    my $r = history();
    is $r->{status}, 200, "answers 200";
    my $h = $r->{json};
    is $h->{count}, 4, 'umlo_sync_history 4 keeps the last four';
    is_deeply [ map { $_->{id} } @{ $h->{syncs} } ], [ reverse @ids[1 .. 4] ], 'newest first';
    json_contains $h->{syncs}[0], { trigger => 'manual', state => 'failed',
        error => { message => qr/API key rejected/ }, webhooks => [] }, 'the failed sync with its error';
    json_contains $h->{syncs}[1], { trigger => 'selective', state => 'succeeded' }, 'the selective sync';
    for my $s (@{ $h->{syncs} }) {
        json_contains $s, { started_at => qr/^\d+$/, finished_at => qr/^\d+$/, duration_ms => qr/^\d+$/,
            api => { calls => qr/^\d+$/, rate_limited => qr/^\d+$/, retries => qr/^\d+$/ } }, "$s->{id}: figures";
        cmp_ok $s->{finished_at}, '>=', $s->{started_at}, "$s->{id}: finished after it started";
    }
    json_contains $h->{syncs}[2], { counts => { users => sub { $_[0] > 50 }, sites => 2 } }, 'counts of a full sync';
    cmp_ok $h->{syncs}[2]{api}{calls}, '>', 5, 'API calls of a full sync';

    my $last = status_json($t)->{sync};
    is $h->{syncs}[0]{duration_ms}, $last->{duration_ms}, 'the newest entry matches the status';

    is_deeply history('', 'b')->{json}, $h, 'the other instance answers the same';

    my $l = history('?limit=2')->{json};
    is $l->{count}, 2, 'limit=2';
    is_deeply [ map { $_->{id} } @{ $l->{syncs} } ], [ reverse @ids[3 .. 4] ], 'the two newest';

    for my $bad (['?limit=0', 'invalid_limit'], ['?limit=5', 'invalid_limit'], ['?limit=x', 'invalid_limit'],
                 ['?limit=', 'invalid_limit'], ['?since=1', 'unknown_parameter'], ['?limit', 'unknown_parameter']) {
        my $b = history($bad->[0]);
        is $b->{status}, 400, "$bad->[0]: 400";
        is $b->{json} && $b->{json}{error}{code}, $bad->[1], "$bad->[0]: $bad->[1]";
    }
    like history('?limit=0')->{json}{error}{message}, qr/1 to 4 \(umlo_sync_history\)/, 'the message names the range';
    my $p = req($t, POST => '/umlo/history');
    is $p->{status}, 405, 'POST: 405';
};

subtest 'metrics' => sub {
    my ($s, $ty, $err, $r) = metrics();
    is_deeply $err, [], 'the exposition parses' or diag $r->{body};
    my $ref = eval { reference_parse($r->{body}) };
    ok $ref, 'the reference parser (python3-prometheus-client) reads it' or diag $@;
    my (%mine, %theirs);
    for my $name (keys %$s) {
        for my $labels (keys %{ $s->{$name} }) {
            $mine{$name}{ canonical_labels($labels) } = 0 + $s->{$name}{$labels};
        }
    }
    for my $name (keys %{ $ref || {} }) {
        $theirs{$name}{$_} = 0 + $ref->{$name}{$_} for keys %{ $ref->{$name} };
    }
    is_deeply \%theirs, \%mine, 'and finds the same samples and values';
    like $r->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4}, 'content type 0.0.4';
    is $ty->{umlo_sync_duration_seconds}, 'histogram', 'duration is a histogram';
    is $ty->{$_}, 'counter', "$_ is a counter" for qw(umlo_syncs_total umlo_api_calls_total
        umlo_api_rate_limited_total umlo_api_retries_total umlo_redis_errors_total);

    my %syncs = %{ $s->{umlo_syncs_total} };
    is $syncs{'trigger="manual",outcome="succeeded"'}, 3, '3 manual syncs succeeded';
    is $syncs{'trigger="selective",outcome="succeeded"'}, 1, '1 selective';
    is $syncs{'trigger="manual",outcome="failed"'}, 1, '1 failed';

    # histograms by trigger: cumulative, +Inf = count = the syncs finished
    my $bk = $s->{umlo_sync_duration_seconds_bucket};
    my %count = (manual => 4, selective => 1);
    for my $trigger (sort keys %count) {
        my @le = sort { $a <=> $b } map { /^trigger="\Q$trigger\E",le="([^"+]+)"$/ ? $1 : () } keys %$bk;
        is scalar(@le), 11, "$trigger: 11 finite buckets";
        my ($prev, $mono) = (0, 1);
        for my $le (@le) {
            my $v = $bk->{"trigger=\"$trigger\",le=\"$le\""};
            $mono = 0 if $v < $prev;
            $prev = $v;
        }
        ok $mono, "$trigger: buckets are cumulative";
        is $bk->{"trigger=\"$trigger\",le=\"+Inf\""}, $count{$trigger}, "$trigger: +Inf bucket counts $count{$trigger}";
        is $s->{umlo_sync_duration_seconds_count}{"trigger=\"$trigger\""}, $count{$trigger}, "$trigger: count";
        cmp_ok $prev, '<=', $count{$trigger}, "$trigger: no finite bucket above the count";
    }
    is scalar(keys %{ $s->{umlo_sync_duration_seconds_count} }), 2, 'two triggers';

    # against the history (the last 4) plus the first sync's status
    my $h = history()->{json}{syncs};
    my $sum = 0;
    $sum += $_->{duration_ms} for @$h;
    my $tsum = 0;
    $tsum += $_ for values %{ $s->{umlo_sync_duration_seconds_sum} };
    cmp_ok $tsum, '>=', $sum / 1000 - 0.001, 'sums cover the history';
    my ($sel) = grep { $_->{trigger} eq 'selective' } @$h;
    is $s->{umlo_sync_duration_seconds_sum}{'trigger="selective"'}, sprintf('%.3f', $sel->{duration_ms} / 1000),
        'the selective sum is that sync\'s duration';
    my ($newest_ok) = grep { $_->{state} eq 'succeeded' } @$h;
    is $s->{umlo_sync_last_success_timestamp_seconds}{''}, $newest_ok->{finished_at}, 'last success = history';
    is $s->{umlo_sync_last_failure_timestamp_seconds}{''}, $h->[0]{finished_at}, 'last failure = history';
    my $calls = 0;
    $calls += $_->{api}{calls} for @$h;
    cmp_ok $s->{umlo_api_calls_total}{''}, '>', $calls - 1, 'API calls at least those of the history';
    my $st = status_json($t);
    is $s->{umlo_snapshot_users}{''}, $st->{snapshot}{counts}{users}, 'users = the status snapshot';
    is $s->{umlo_sync_running}{''}, 0, 'not running';
    is $s->{umlo_redis_up}{''}, 1, 'Redis up';
    my ($pid_label) = keys %{ $s->{umlo_redis_errors_total} };
    like $pid_label, qr/^pid="\d+"$/, 'Redis errors are labelled with the worker';

    my ($s2, undef, $err2) = metrics('b');
    is_deeply $err2, [], 'the other instance parses too';
    delete $_->{umlo_redis_errors_total} for $s, $s2;
    is_deeply $s2, $s, 'and reports the same org figures';
};

subtest 'rate limits and retries counted' => sub {
    my ($before) = metrics();
    sim_ok(POST => 'faults', { error5xx => { rate => 1, count => 2, statuses => [503] } });
    my ($st) = run_sync($t);
    sim_ok(DELETE => 'faults');
    is $st && $st->{state}, 'succeeded', 'a sync through two 503s' or return;
    my ($after) = metrics();
    is $after->{umlo_api_retries_total}{''} - $before->{umlo_api_retries_total}{''}, $st->{sync}{api}{retries},
        'retries counted as the sync reports them';
    cmp_ok $st->{sync}{api}{retries}, '>=', 2, 'two retries at least';
    is $after->{umlo_api_rate_limited_total}{''} - $before->{umlo_api_rate_limited_total}{''},
        $st->{sync}{api}{rate_limited}, '429s counted as the sync reports them';
    is $after->{umlo_api_calls_total}{''} - $before->{umlo_api_calls_total}{''}, $st->{sync}{api}{calls},
        'calls counted as the sync reports them';
};

subtest 'running' => sub {
    sim_ok(POST => 'config', { latencyMs => 600 });
    my $r = req($t, POST => '/umlo/sync');
    is $r->{status}, 202, 'started';
    ok wait_for(sub { (metrics('b'))[0]{umlo_sync_running}{''} == 1 }, timeout => 10),
        'umlo_sync_running 1 on the other instance';
    req($t, DELETE => '/umlo/sync');
    wait_sync($t, $r->{json}{id}, timeout => 30);
    sim_ok(POST => 'config', { latencyMs => 0 });
    is +(metrics())[0]{umlo_sync_running}{''}, 0, 'then 0';
    is +(metrics())[0]{umlo_syncs_total}{'trigger="manual",outcome="cancelled"'}, 1, 'counted as cancelled';
};

subtest 'Redis down' => sub {
    $t->stop_redis;
    my ($s, undef, $err, $r) = metrics();
    is $r->{status}, 200, 'still 200';
    is_deeply $err, [], 'still parses';
    is $s->{umlo_redis_up}{''}, 0, 'umlo_redis_up 0';
    my ($v) = values %{ $s->{umlo_redis_errors_total} };
    cmp_ok $v, '>=', 1, 'the worker counted the error';
    ok !exists $s->{umlo_syncs_total}, 'no org figures it could not read';
    is history()->{status}, 503, 'history: 503';
    $t->restart_redis;
};

final_checks($t, names => ['main', 'b']);
done_testing;
