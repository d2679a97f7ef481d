use strict;
use warnings;

# umlo_api_key_expires: warnings in status, dashboard and metrics from
# warn= days before; one key.expiring webhook a day across instances and
# workers; a 401 after the date names the expiry as the cause.

use Test::More;
use POSIX qw(strftime floor);
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Umlo::Test qw(json_contains wait_for);
use Umlo::Sync;
use Umlo::Webhook;

my $t = Umlo::Test->new;
my $rx = Umlo::Webhook->start($t);
my $hook = $rx->url('/ok');

sub day { strftime('%Y-%m-%d', gmtime(time + $_[0] * 86400)) }

sub days_left {
    my ($date) = @_;
    my ($y, $m, $d) = split /-/, $date;
    require Time::Local;
    my $at = Time::Local::timegm(0, 0, 0, $d, $m - 1, $y);
    return floor(($at - time) / 86400);
}

my $locations = join "\n",
    'location = /umlo/metrics { umlo_metrics; }',
    'location = /umlo/dashboard { umlo_dashboard; }';

sub http { my ($date, $extra) = @_; "umlo_api_key_expires $date" . ($extra // '') . ";\numlo_webhook $hook events=key.expiring;" }

sub metrics {
    my ($name) = @_;
    my $body = req($t, GET => '/umlo/metrics', name => $name)->{body};
    my %m = map { /^(\w+) (\S+)$/ ? ($1 => $2) : () } split /\n/, $body;
    return \%m;
}

my $soon = day(5);
start_stack($t,
    sim       => { users => 30, sites => 1, groups => 3, seed => 2 },
    http      => http($soon),
    locations => $locations,
    names     => ['main', 'b'],
);

subtest 'expiring in 5 days' => sub {
    my $left = days_left($soon);
    my $st = status_json($t);
    json_contains $st, { api_key => { expires => $soon, days_left => $left, expiring => JSON::PP::true,
        expired => JSON::PP::false, warning => qr/expires on \Q$soon\E, in $left day.*umlo_api_key_file/ } },
        'the status warns';
    my ($s) = run_sync($t);
    is $s && $s->{state}, 'succeeded', 'syncs still work';
    my $d = req($t, GET => '/umlo/dashboard');
    is $d->{status}, 200, 'dashboard';
    json_contains $d->{json}, { api_key => { expires => $soon, days_left => $left, expiring => JSON::PP::true } },
        'the dashboard warns';
    my $m = metrics();
    is $m->{umlo_api_key_expiry_days}, $left, 'metrics: days left';
    is $m->{umlo_api_key_expiring}, 1, 'metrics: expiring';

    my $got = $rx->wait_received('/ok', 'key.expiring', 1, timeout => 10);
    is scalar(@$got), 1, 'key.expiring sent';
    sleep 2.5;    # every worker of both instances has checked by now
    is scalar(@{ $rx->received('/ok', 'key.expiring') }), 1,
        'exactly once across two instances of two workers';
    json_contains $got->[0]{json}, { event => 'key.expiring', org => $t->org,
        api_key => { expires => $soon, days_left => $left, expiring => JSON::PP::true } }, 'the payload';
    my $today = strftime('%Y-%m-%d', gmtime);
    ok $t->redis('EXISTS', org_key($t, 'keywarn', $today)), "today's claim is in Redis";
    cmp_ok $t->redis('TTL', org_key($t, 'keywarn', $today)), '>', 86400, 'and lasts past the day';
    $t->assert_error_log(qr/\[warn\].*umlo: the Organization API key expires on \Q$soon\E/,
        desc => 'the warning is logged');
    my $body = join "\n", map { $_->{body} } @{ $rx->requests };
    unlike $body, qr/\Q${\ $t->api_key }\E/, 'no API key in the payload';
};

subtest 'far away' => sub {
    my $far = day(60);
    $t->redis('FLUSHALL');
    $t->reload_nginx(http_config => umlo_http_config(http($far)), name => $_) for qw(main b);
    my $before = scalar @{ $rx->received('/ok', 'key.expiring') };
    json_contains status_json($t), { api_key => { expires => $far, days_left => days_left($far),
        expiring => JSON::PP::false, warning => undef } }, 'no warning 60 days before';
    is metrics()->{umlo_api_key_expiring}, 0, 'metrics: not expiring';
    sleep 2.5;
    is scalar(@{ $rx->received('/ok', 'key.expiring') }), $before, 'no webhook';
};

subtest 'a custom window' => sub {
    my $d = day(20);
    $t->reload_nginx(http_config => umlo_http_config(http($d, ' warn=30')), name => 'main');
    json_contains status_json($t), { api_key => { expires => $d, expiring => JSON::PP::true } }, 'warn=30 warns 20 days before';
};

subtest 'expired' => sub {
    my $past = day(-1);
    $t->reload_nginx(http_config => umlo_http_config(http($past)), name => 'main');
    $t->sim_admin(POST => 'faults', { keyExpiresAt => strftime('%Y-%m-%dT00:00:00Z', gmtime(time - 86400)) });
    my ($st) = run_sync($t);
    $t->sim_admin(DELETE => 'faults');
    is $st && $st->{state}, 'failed', 'the sync fails';
    like $st->{sync}{error}{message},
        qr/^Organization API key rejected: .*the likely cause: the key expired at \Q$past\ET00:00:00Z \(umlo_api_key_expires\)/,
        'the 401 names the expiry as the likely cause';
    like $st->{sync}{error}{message}, qr/401/, 'and the 401';
    json_contains status_json($t), { api_key => { expired => JSON::PP::true, days_left => sub { $_[0] < 0 },
        warning => qr/expired on \Q$past\E/ } }, 'the status says it expired';
};

subtest 'configuration errors' => sub {
    for my $bad (['2026-13-01', qr/invalid date "2026-13-01"/], ['2025-02-29', qr/invalid date/],
                 ['tomorrow', qr/invalid date "tomorrow"/], ['2026-12-01 warn=x', qr/invalid parameter "warn=x"/],
                 ['2026-12-01 warn=400', qr/invalid parameter "warn=400"/]) {
        my ($rc, $out) = $t->nginx_t(http_config => umlo_http_config("umlo_api_key_expires $bad->[0];"),
                                     config => umlo_locations());
        isnt $rc, 0, "$bad->[0]: nginx -t fails";
        like $out, $bad->[1], "$bad->[0]: the message";
    }
    for my $bad (['ftp://x/', qr/invalid webhook URL "ftp:\/\/x\/"/], ['http://x/ events=sync.done', qr/invalid "events=sync.done"/],
                 ['http://x/ secret_file=/nonexistent/s', qr/umlo_webhook secret_file: cannot open/],
                 ['http://x/ colour=red', qr/invalid parameter "colour=red"/]) {
        my ($rc, $out) = $t->nginx_t(http_config => umlo_http_config("umlo_webhook $bad->[0];"),
                                     config => umlo_locations());
        isnt $rc, 0, "umlo_webhook $bad->[0]: nginx -t fails";
        like $out, $bad->[1], "umlo_webhook $bad->[0]: the message";
    }
};

final_checks($t, names => ['main', 'b']);
done_testing;
