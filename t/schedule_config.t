use strict;
use warnings;

# The schedule and activity directives: "nginx -t" refuses bad values with
# a message naming the directive and the problem, and accepts good ones.

use Test::More;
use lib 't/lib';
use Umlo::Test;
use Umlo::Sync;

my $t = Umlo::Test->new;

sub check {
    my ($lines, $want, $name) = @_;
    my ($rc, $out) = $t->nginx_t(config => umlo_locations(),
        http_config => join("\n", 'umlo_redis 127.0.0.1:6390;', 'umlo_org $UMLO_ORG;',
                            'umlo_api_key_file $UMLO_KEY_FILE;', 'umlo_thread_pool umlo;',
                            @$lines));
    if (ref $want) {
        isnt $rc, 0, "$name: refused";
        like $out, $want, "$name: says why";
    } else {
        is $rc, 0, "$name: accepted" or diag $out;
    }
}

check(['umlo_sync_daily 03:30;'], 1, 'daily, UTC');
check(['umlo_sync_daily 23:59:30 Europe/Berlin;'], 1, 'daily with seconds and a zone');
check(['umlo_sync_daily 03:30 UTC;', 'umlo_sync_catch_up off;'], 1, 'catch-up off');
check(['umlo_activity_refresh off;'], 1, 'refresh off');
check(['umlo_activity_refresh 12h;', 'umlo_activity_rate_limit 100 burst=10;'], 1, 'refresh and rate');

check(['umlo_sync_daily 24:00;'], qr/\[emerg\].*invalid time "24:00": expected HH:MM/, 'hour 24');
check(['umlo_sync_daily 3:30;'], qr/\[emerg\].*invalid time "3:30"/, 'one-digit hour');
check(['umlo_sync_daily 03:61;'], qr/\[emerg\].*invalid time "03:61"/, 'minute 61');
check(['umlo_sync_daily 03:30 Mars/Olympus;'],
      qr/\[emerg\].*unknown time zone "Mars\/Olympus"/, 'unknown zone');
check(['umlo_sync_daily 03:30 ../../etc/passwd;'],
      qr/\[emerg\].*invalid time zone "\.\.\/\.\.\/etc\/passwd"/, 'a path is not a zone');
check(['umlo_sync_daily 03:30 zone.tab;'],
      qr/\[emerg\].*(invalid|not a valid TZif)/, 'a zoneinfo file that is not TZif');
check(['umlo_sync_daily 03:30;', 'umlo_sync_daily 04:30;'], qr/\[emerg\].*is duplicate/, 'twice');
check(['umlo_sync_catch_up maybe;'], qr/\[emerg\].*invalid value "maybe"/, 'catch-up not a flag');
check(['umlo_activity_refresh 0;'], qr/\[emerg\].*invalid interval "0"/, 'refresh 0');
check(['umlo_activity_refresh soon;'], qr/\[emerg\].*invalid interval "soon"/, 'refresh not a time');
check(['umlo_activity_rate_limit 0;'], qr/\[emerg\].*invalid rate "0"/, 'rate 0');
check(['umlo_activity_rate_limit 200 burst=201;'], qr/\[emerg\].*invalid parameter "burst=201"/,
      'burst above the rate');
check(['umlo_activity_rate_limit 200 bust=2;'], qr/\[emerg\].*invalid parameter "bust=2"/,
      'unknown parameter');

done_testing;
