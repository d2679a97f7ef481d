use strict;
use warnings;

# A short pass of every libFuzzer harness in fuzz/ (make fuzz runs them
# longer): each first replays the seeds in fuzz/corpus (which include
# inputs that once crashed), then mutates for UMLO_FUZZ_SECONDS (default
# 4) seconds.  Any crash, sanitizer report, leak or timeout fails.

use Test::More;
use File::Temp qw(tempdir);
use lib 't/lib';
use Umlo::Test;

my $ROOT = Umlo::Test->root;
my $secs = $ENV{UMLO_FUZZ_SECONDS} // 4;

plan skip_all => 'clang is not installed (make deps)'
    unless grep { -x "$_/clang" } split /:/, $ENV{PATH} // '';

my $out = `make -C \Q$ROOT\E --no-print-directory fuzz-build 2>&1`;
is $?, 0, 'the harnesses build' or BAIL_OUT("fuzz build failed:\n$out");

for my $f (qw(query cursor sync_body model headers)) {
    my $bin = "$ROOT/build/fuzz/fuzz_$f";
    my $work = tempdir(CLEANUP => 1);
    my $log = "$work/log";
    my $rc = system("\Q$bin\E -max_total_time=$secs -timeout=10 -rss_limit_mb=2048 "
        . "-max_len=8192 -print_final_stats=1 -artifact_prefix=\Q$work\E/ "
        . "\Q$work\E \Q$ROOT/fuzz/corpus/$f\E >\Q$log\E 2>&1");
    my $text = do { local (@ARGV, $/) = $log; <> } // '';
    my ($runs) = $text =~ /stat::number_of_executed_units:\s*(\d+)/;
    ok $rc == 0, "fuzz_$f: no crash in ${secs}s (" . ($runs // 0) . ' runs)'
        or diag(join "\n", grep { /ERROR|SUMMARY|runtime error|#\d+ 0x/ } split /\n/, $text);
    cmp_ok $runs // 0, '>', 100, "fuzz_$f: it did run";
}

done_testing;
