use strict;
use warnings;

# Where a 202 points, and a 403 on one site: the API key may not read part of the org.  The sync
# fails (a snapshot silently missing a site would mislead licence
# decisions), the status names the endpoint, the status code and what to
# check, and the current snapshot stays as it was.

use Test::More;
use lib 't/lib';
use Umlo::Test qw(wait_for);
use Umlo::Sync;

my $t = Umlo::Test->new;
start_stack($t, sim => { users => 80, sites => 3, groups => 8, seed => 5 },
            locations => 'location = /api/sync { umlo_sync status=/umlo/status; }');

# umlo_sync status=URI: the 202 tells the client where to follow the sync
my $r0 = $t->request(POST => '/api/sync');
is $r0->{status}, 202, 'sync accepted on a location with status=';
is $r0->{json}{links}{status}, '/umlo/status', 'links.status points there';
is $r0->{json}{links}{self}, '/api/sync', 'links.self is the location';
wait_sync($t, $r0->{json}{id});

my ($first) = run_sync($t);
is $first->{state}, 'succeeded', 'a second sync succeeds';
my $gen = current_gen($t);

my $r = $t->sim_admin(POST => '/__sim/faults', { forbiddenSite => 2 });
is $r->{status}, 200, 'site 2 forbidden in the simulator';

my ($st) = run_sync($t);
is $st->{state}, 'failed', 'the sync fails';
my $err = $st->{sync}{error} // {};
like $err->{message}, qr/HTTP 403/, 'the message gives the status';
like $err->{message}, qr{(GET|POST) /admin/v2/orgs/\Q${\ $t->org }\E/\S+},
    'and the endpoint';
like $err->{message}, qr/not allowed|admin|permission|forbidden/i,
    'and says what to check';
ok $err->{where}, "it says where ($err->{where})";
is current_gen($t), $gen, 'the current snapshot is untouched';
is $st->{snapshot}{generation}, $gen, 'and the status still shows it';

$t->sim_admin(DELETE => '/__sim/faults');
is +(run_sync($t))[0]{state}, 'succeeded', 'with access back, a sync succeeds';

$t->assert_no_error_log;
done_testing;
