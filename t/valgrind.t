use strict;
use warnings;

# valgrind memcheck over a whole life of nginx with the module, in one
# process (master_process off): a full sync, a selective sync, a failed
# sync, the user browser (list, CSV, facets, one user), the dashboard,
# then a graceful stop.  No invalid read or write anywhere, and no leak
# ("definitely" or "indirectly lost") whose stack passes through the
# module (ngx_umlo_*); nginx's own pools still reachable at exit are not
# leaks.  Slow under valgrind: a small org.

use Test::More;
use lib 't/lib';
use Umlo::Test qw(wait_for);
use Umlo::Sync;
use Umlo::Users;

plan skip_all => 'valgrind is not installed (make deps)'
    unless grep { -x "$_/valgrind" } split /:/, $ENV{PATH} // '';
plan skip_all => 'not under ASan (UMLO_NGINX_PRELOAD is set)' if $ENV{UMLO_NGINX_PRELOAD};

my $t = Umlo::Test->new;
my $vlog = $t->path('valgrind.%p.log');
my $wrap = $t->path('nginx-valgrind');
open my $fh, '>', $wrap or die "$wrap: $!";
print {$fh} "#!/bin/sh\nexec valgrind --tool=memcheck --error-exitcode=0 --leak-check=full "
    . "--show-leak-kinds=definite,indirect --num-callers=40 --track-origins=no "
    . "--keep-debuginfo=yes "
    . "--log-file=$vlog " . Umlo::Test::nginx_bin() . " \"\$@\"\n";
close $fh;
chmod 0755, $wrap;

{
    local $ENV{UMLO_NGINX} = $wrap;
    start_users_stack($t,
        sim => { users => 120, sites => 2, groups => 8, seed => 41 },
        nginx => { master_process => 0, worker_processes => 1, timeout => 60 });
}

sub sim_ok {
    my ($method, $path, $json) = @_;
    my $r = $t->sim_admin($method, "/__sim/$path", $json);
    die "sim admin $method $path: $r->{status} $r->{body}\n" unless $r->{status} == 200;
    return $r->{json};
}

my ($st) = run_sync($t, timeout => 120);
is $st && $st->{state}, 'succeeded', 'a full sync under valgrind';
my ($uid) = map { $_->{accountId} } v2_users(truth($t));
($st) = run_sync($t, json => { users => [$uid] }, timeout => 120);
is $st && $st->{state}, 'succeeded', 'a selective sync';
sim_ok(POST => 'faults', { error5xx => { statuses => [500], match => 'groups/search' } });
($st) = run_sync($t, timeout => 120);
is $st && $st->{state}, 'failed', 'a failing sync';
sim_ok(DELETE => 'faults');
for my $p ('/umlo/users?limit=50&sort=last_active', '/umlo/users?format=csv', '/umlo/users/facets',
           "/umlo/users/$uid", '/umlo/dashboard', '/umlo/users?cursor=bad', '/umlo/status') {
    my $r = req($t, GET => $p, timeout => 60);
    cmp_ok $r->{status}, '<', 500, "$p answers ($r->{status})";
}
my ($st2) = run_sync($t, timeout => 120);
is $st2 && $st2->{state}, 'succeeded', 'a second full sync (the first snapshot is retired)';
is req($t, GET => '/umlo/users?limit=5', timeout => 60)->{status}, 200, 'the new snapshot is served';

$t->stop_nginx;

my @logs = glob $t->path('valgrind.*.log');
ok @logs, 'valgrind wrote its report';
my $all = join '', map { local (@ARGV, $/) = $_; <> // '' } @logs;
like $all, qr/ERROR SUMMARY/, 'valgrind ran to the end';
like $all, qr/ngx_umlo_\w+ \(ngx_umlo_\w+\.c:\d+\)/, 'the module\'s frames are named in the report';

# one block per error or leak record, from "==PID== Xxx" to a blank "==PID=="
my @blocks = split /^==\d+==\s*\n/m, $all;
my @invalid = grep { /^==\d+== (?:Invalid (?:read|write|free)|Conditional jump|Use of uninitialised|Mismatched free|Syscall param)/m } @blocks;
# the module is unloaded before valgrind's leak check: --keep-debuginfo
# keeps its frames named, so that a leak in it cannot hide as "???"
my @ours = grep { /are (?:definitely|indirectly) lost/ && /ngx_umlo_/ } @blocks;
# a once-per-process object (the UTF-8 locale of the case folding, made
# under pthread_once) lives as long as the process by design
my @once = grep { /ngx_umlo_snap_locale_init/ } @ours;
my @leaks = grep { !/ngx_umlo_snap_locale_init/ } @ours;
note scalar(@once) . ' once-per-process allocation(s) of the module, kept by design' if @once;
ok !@invalid, 'no invalid memory access' or diag(join "\n", @invalid[0 .. ($#invalid > 2 ? 2 : $#invalid)]);
ok !@leaks, 'no leak through the module\'s code' or diag(join "\n", @leaks[0 .. ($#leaks > 2 ? 2 : $#leaks)]);
my ($def) = $all =~ /definitely lost: ([\d,]+) bytes/;
note 'valgrind: definitely lost ' . ($def // '?') . ' bytes in total (nginx and libraries included)';

done_testing;
