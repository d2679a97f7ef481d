# A reload, a graceful stop and a fast stop of nginx while a sync runs:
# the sync ends as "cancelled" (recorded), the lock is released, the
# previous snapshot stays current, and no socket is left open.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use POSIX qw(WNOHANG);
use Umlo::Test qw(wait_for);

my $t = Umlo::Test->new;
$t->start_redis;

# slow enough that the sync is surely running when nginx is told to stop
$t->start_sim(users => 2000, groups => 80, sites => 2, seed => 3,
              args => ['--latency-ms', 300, '--jitter-ms', 0]);

my %nginx = (
    http_config => q{
        umlo_redis $UMLO_REDIS;
        umlo_api_base $UMLO_SIM;
        umlo_org $UMLO_ORG;
        umlo_api_key_file $UMLO_KEY_FILE;
        umlo_thread_pool umlo;
        umlo_sync_concurrency 4;
    },
    config => q{
        location = /umlo/status { umlo_status; }
        location = /umlo/sync   { umlo_sync; }
    },
);

sub status { $t->request(GET => '/umlo/status')->{json} // {} }

sub start_sync {
    my $r = $t->request(POST => '/umlo/sync');
    is $r->{status}, 202, 'sync accepted';
    ok wait_for(sub { (status()->{sync}{phase} // '') eq 'fetch' },
                timeout => 10), 'sync is fetching';
    return $r->{json}{id};
}

sub ended_cancelled {
    my ($id, $where, $what) = @_;
    my $doc = $t->redis(GET => 'umlo:{' . $t->org . '}:status');
    my $sync = JSON::PP->new->decode($doc);
    is $sync->{id}, $id, "$what: status names the sync";
    is $sync->{state}, 'cancelled', "$what: recorded as cancelled";
    is $sync->{error}{where}, $where, "$what: says why";
    is $t->redis(EXISTS => 'umlo:{' . $t->org . '}:lock'), 0,
        "$what: lock released";
    my $history = $t->redis(LRANGE => 'umlo:{' . $t->org . '}:history', 0, 0);
    like $history->[0] // '', qr/"id":"\Q$id\E".*"state":"cancelled"/,
        "$what: in the history";
}

$t->start_nginx(%nginx);

# a first, complete snapshot that later cancellations must not touch
$t->request(POST => '/umlo/sync');
ok wait_for(sub { (status()->{state} // '') eq 'succeeded' }, timeout => 120),
    'first sync succeeded';
my $gen = status()->{snapshot}{generation};
ok $gen, "snapshot generation $gen";

subtest 'reload during a sync' => sub {
    my $id = start_sync();
    my (undef, @old) = $t->nginx_pids;
    my $mark = $t->error_log_mark;
    $t->reload_nginx;

    ok wait_for(sub { !grep { kill 0, $_ } @old }, timeout => 15),
        'old workers exited promptly';
    ended_cancelled($id, 'shutdown', 'reload');
    is status()->{snapshot}{generation}, $gen, 'snapshot unchanged';
    unlike $t->error_log($mark), qr/open socket|\[alert\]/,
        'no socket left open';
    is $t->request(POST => '/umlo/sync')->{status}, 202,
        'a new sync can start at once';
    ok wait_for(sub { (status()->{state} // '') eq 'succeeded' },
                timeout => 120), 'and it succeeds';
    $gen = status()->{snapshot}{generation};
};

subtest 'graceful stop during a sync' => sub {
    my $id = start_sync();
    my $mark = $t->error_log_mark;
    $t->stop_nginx;
    ended_cancelled($id, 'shutdown', 'quit');
    unlike $t->error_log($mark), qr/open socket|\[alert\]/,
        'no socket left open';
    is $t->redis(HGET => 'umlo:{' . $t->org . '}:current', 'gen'), $gen,
        'snapshot unchanged';
};

subtest 'fast stop (SIGTERM) during a sync' => sub {
    $t->start_nginx(%nginx);
    my $id = start_sync();
    my ($master) = $t->nginx_pids;
    kill 'TERM', $master;
    ok wait_for(sub { waitpid($master, WNOHANG) == $master || !kill 0, $master },
                timeout => 15), 'nginx exited';
    ended_cancelled($id, 'shutdown', 'terminate');
    is $t->redis(HGET => 'umlo:{' . $t->org . '}:current', 'gen'), $gen,
        'snapshot unchanged';
    my $keys = $t->redis(KEYS => 'umlo:{' . $t->org . '}:g:*');
    ok !grep({ !/:g:\Q$gen\E:/ && !/:g:\d+:/ } @$keys),
        'no stray keys';
    ok !grep({ /:g:(\d+):/ && $1 > $gen } @$keys),
        'the cancelled generation was dropped';
};

done_testing;
