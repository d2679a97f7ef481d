use strict;
use warnings;

# The dashboard page (web/) end to end in Debian's headless Chromium,
# driven by playwright-core (t/browser/dashboard.mjs), against the real
# module, Redis and the simulator started here.  The node script prints
# TAP; its lines are checked here one by one.
#
#   UMLO_BROWSER_OUT  where screenshots go (default build/browser)
#   UMLO_CHROMIUM     the browser (default /usr/bin/chromium)

use Test::More;
use File::Path qw(make_path);
use Time::HiRes qw(time);
use lib 't/lib';
use Umlo::Test;
use Umlo::Sync;

my $root = Umlo::Test::root();
my $chromium = $ENV{UMLO_CHROMIUM} // '/usr/bin/chromium';
plan skip_all => "$chromium is not installed (make deps installs the chromium package)"
    unless -x $chromium;
# Chromium present but no way to drive it: that is a broken setup, not a
# reason to skip.
my $node = `command -v node 2>/dev/null`;
chomp $node;
my $missing = !$node ? 'node is not installed (make deps installs nodejs and npm)'
    : !-d "$root/t/browser/node_modules/playwright-core"
    ? 't/browser/node_modules is missing: run make browser-deps (make test does)'
    : undef;
if ($missing) {
    fail $missing;
    done_testing;
    exit;
}

my $out = $ENV{UMLO_BROWSER_OUT} // "$root/build/browser";
make_path($out);

# The page's location as docs/dashboard.md documents it.
my $web = <<'CONF';
location = /umlo/dashboard { umlo_dashboard; }
location /umlo/users { umlo_users; }
location /umlo/ui/ {
    alias $UMLO_WEB/;
    index index.html;
    types {
        text/html              html;
        text/css               css;
        application/javascript js;
    }
    charset utf-8;
    charset_types text/css application/javascript;
    add_header Content-Security-Policy "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'" always;
    add_header X-Content-Type-Options nosniff always;
}
CONF

my $t = Umlo::Test->new;
$t->start_redis;
$t->start_sim(profile => 'fast', users => 1000, sites => 3, groups => 40, seed => 5,
    args => [ '--anchor', int time ]);

# Use a history location when this build has one (another change adds
# umlo_history); the page must work either way.
my $history = 'location = /umlo/history { umlo_history; }';
my ($rc) = $t->nginx_t(
    http_config => Umlo::Sync::umlo_http_config(),
    config      => Umlo::Sync::umlo_locations($history),
);
my $has_history = $rc == 0 ? 1 : 0;
note $has_history ? 'umlo_history is available' : 'no umlo_history: the page falls back';

# A key that expires in 5 days: inside the default warning window.
my @exp = gmtime(time + 5 * 86400);
my $expires = sprintf '%04d-%02d-%02d', $exp[5] + 1900, $exp[4] + 1, $exp[3];

$t->start_nginx(
    http_config => Umlo::Sync::umlo_http_config("umlo_api_key_expires $expires;"),
    config      => Umlo::Sync::umlo_locations($web . ($has_history ? "\n$history" : '')),
    vars => { UMLO_WEB => "$root/web" },
);

my $base = $t->nginx_url;
my $r = $t->request(GET => '/umlo/ui/app.js');
is $r->{status}, 200, 'the page script is served';
like $r->{headers}{'content-type'}, qr{^application/javascript}, 'as JavaScript';

my $timeout = 240 * ($ENV{UMLO_TIMEOUT_FACTOR} // 1);
local $ENV{UMLO_BASE} = $base;
local $ENV{UMLO_PAGE} = "$base/umlo/ui/";
local $ENV{UMLO_SIM} = $t->sim_url;
local $ENV{UMLO_HAS_HISTORY} = $has_history;
local $ENV{UMLO_CHROMIUM} = $chromium;
local $ENV{UMLO_BROWSER_OUT} = $out;

my $pid = open(my $fh, '-|', 'timeout', '-k', '10', $timeout, $node,
    "$root/t/browser/dashboard.mjs") // die "cannot run node: $!";
my ($plan, @results);
while (my $line = <$fh>) {
    chomp $line;
    if ($line =~ /^1\.\.(\d+)/) {
        $plan = $1;
    } elsif ($line =~ /^(not )?ok \d+ - (.*)$/) {
        push @results, 1;
        ok !$1, "browser: $2";
    } elsif ($line =~ /^#(.*)$/) {
        note $1;
    } else {
        diag $line;
    }
}
close $fh;
my $exit = $? >> 8;
is $exit, 0, 'the browser script exited 0' or diag "exit status $exit (124: timed out)";
ok defined $plan && $plan == @results, 'the browser script ran its whole plan'
    or diag sprintf 'planned %s, ran %d', $plan // 'nothing', scalar @results;
note "screenshots in $out";

Umlo::Sync::final_checks($t);
done_testing;
