#!/usr/bin/perl
# Unit test of the user browser's query engine, src/ngx_umlo_query*.c.
#
# Builds t/unit/query_test.c with the engine and the real snapshot
# (src/ngx_umlo_snapshot.c) under ASan and UBSan and runs its checks: a
# snapshot made from fixture documents, every filter, context rule, sort,
# page, cursor, CSV line and bad input compared with a brute-force
# reference over the same documents.  Then an optimised build, without
# sanitizers, times a few queries on a generated 100,000-user snapshot
# (printed, not asserted: timings depend on the machine and its load).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use POSIX ();
use Test::More;
use Umlo::Test;

my $ROOT = Umlo::Test->root;
my $t = Umlo::Test->new;

my $BENCH_USERS = ($ENV{UMLO_QUERY_BENCH_USERS} // '') =~ /^\d+$/
                  ? $ENV{UMLO_QUERY_BENCH_USERS} : 100000;

$ENV{ASAN_OPTIONS} = 'detect_leaks=1:halt_on_error=1:exitcode=23';
$ENV{UBSAN_OPTIONS} = 'halt_on_error=1:print_stacktrace=1';

sub slurp {
    my ($file) = @_;
    open(my $fh, '<', $file) or return '';
    local $/;
    return scalar <$fh>;
}

# Compiles the driver; returns the binary's path, or undef after a failed
# test that shows the compiler's output.
sub build {
    my ($name, @opts) = @_;
    my $bin = $t->path($name);
    my $log = $t->path("$name.log");
    my @cc = ($ENV{CC} // 'cc', qw(-std=gnu99 -Wall -Wextra -Werror), @opts,
        "-I$ROOT/src", '-o', $bin, "$ROOT/t/unit/query_test.c",
        glob("$ROOT/src/ngx_umlo_query*.c"), "$ROOT/src/ngx_umlo_snapshot.c",
        "$ROOT/src/ngx_umlo_utf8.c",
        qw(-lhiredis -ljansson));
    my $rc = system(join(' ', map { quotemeta } @cc) . ' >' . quotemeta($log)
                    . ' 2>&1');
    unless (ok($rc == 0, "$name builds (" . join(' ', @opts) . ')')) {
        diag(slurp($log));
        return undef;
    }
    return $bin;
}

# Runs the binary with a time limit; returns (exit, signal, stdout, stderr).
sub run {
    my ($bin, $limit, @args) = @_;
    my ($out, $err) = ($t->path('run.out'), $t->path('run.err'));

    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        open(STDOUT, '>', $out) or POSIX::_exit(126);
        open(STDERR, '>', $err) or POSIX::_exit(126);
        exec('timeout', '-k', '5', $limit, $bin, @args) or POSIX::_exit(127);
    }
    waitpid($pid, 0);

    return ($? >> 8, $? & 127, slurp($out), slurp($err));
}

my $ASAN = build('query_test', '-fsanitize=address,undefined',
                 qw(-fno-omit-frame-pointer -g -O1));

unless ($ASAN) {
    done_testing();
    exit 1;
}

subtest 'engine against the reference (ASan, UBSan, leaks)' => sub {
    my ($exit, $signal, $out, $err) = run($ASAN, 120, 'check');

    my $n = 0;
    for my $line (split /\n/, $out) {
        if ($line =~ /^(not )?ok \d+ - (.*)$/) {
            ok(!$1, $2);
            $n++;
        } elsif ($line =~ /^# (.*)$/) {
            note($1);
        }
    }

    # the driver's own count, so that a crash mid-way cannot pass
    my ($planned) = $out =~ /^1\.\.(\d+)$/m;
    is($planned, $n, "the driver ran to its end ($n checks)");
    cmp_ok($n, '>=', 500, 'at least 500 checks');
    is($exit, 0, 'the driver exits 0') or diag("signal $signal");
    unlike($err, qr/Sanitizer|runtime error|LeakSanitizer/,
           'no sanitizer report') or diag($err);
};

subtest "timings on $BENCH_USERS users (optimised build)" => sub {
    my $bin = build('query_bench', '-O2') or return;
    my ($exit, $signal, $out, $err) = run($bin, 120, 'bench', $BENCH_USERS);

    is($exit, 0, 'the bench ran') or diag("signal $signal: $err$out");
    my @lines = grep { /^bench / } split /\n/, $out;
    cmp_ok(scalar @lines, '>=', 8, 'every query timed');
    diag($_) for @lines;
};

done_testing();
