package Umlo::Test;

# Test harness for ngx_umlo: starts redis, the Atlassian API simulator and
# one or more nginx instances in a private temp dir, and offers helpers for
# requests, log checks and JSON comparisons.  See t/README.md for usage.
#
# Only core Perl modules are used so the suite runs on a stock Debian box.

use strict;
use warnings;

use Carp qw(croak carp);
use Cwd ();
use Encode ();
use Fcntl qw(O_WRONLY O_CREAT O_EXCL);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use File::Spec;
use File::Temp ();
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use POSIX qw(WNOHANG);
use Scalar::Util qw(blessed looks_like_number refaddr weaken);
use Test::More ();
use Time::HiRes qw(sleep time);

use Exporter 'import';
our @EXPORT_OK = qw(json_contains json_diff wait_for free_port);

our $VERSION = '0.01';

# Repo root: this file lives in <root>/t/lib/Umlo/Test.pm.  Resolved at load
# time because tests may chdir later.
my $ROOT = Cwd::abs_path(
    File::Spec->catdir(dirname(File::Spec->rel2abs(__FILE__)), ('..') x 3));

my $DEFAULT_ORG = '5c3f1d2e-7a4b-4c6d-9e8f-0a1b2c3d4e5f';
my $DEFAULT_NO_ERROR_LOG = qr/\[(?:alert|emerg|crit)\]/;
my $TAIL_LINES = 50;

# Every live harness object, so the END block can stop what a test forgot
# (or could not stop because it died).  Weak refs: DESTROY still works.
my %LIVE;

# Temp dirs of objects already torn down, for END to remove or report.
my @FINISHED;

# Ports handed out by free_port() in this process, never handed out twice.
my %PORT_USED;

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

sub root { $ROOT }

# ---------------------------------------------------------------------------
# construction and teardown
# ---------------------------------------------------------------------------

sub new {
    my ($class, %args) = @_;

    my $tmp = File::Temp::tempdir('umlo-test-XXXXXX', TMPDIR => 1, CLEANUP => 0);
    my $self = bless {
        tmp     => $tmp,
        owner   => $$,            # forked children must not tear down
        org     => $args{org} // $DEFAULT_ORG,
        api_key => $args{api_key},
        keep    => $args{keep} // $ENV{UMLO_KEEP},
        redis_timeout => $args{redis_timeout} // 10,
        nginx   => {},            # name => instance record
        redis   => undef,
        sim     => undef,
        t_count => 0,             # nginx_t() scratch dir counter
    }, $class;

    $LIVE{ refaddr $self } = $self;
    weaken $LIVE{ refaddr $self };
    _install_signal_handlers();
    return $self;
}

sub tmp { $_[0]{tmp} }

# Path inside the private temp dir.
sub path {
    my ($self, @parts) = @_;
    return File::Spec->catfile($self->{tmp}, @parts);
}

sub org { $_[0]{org} }

# The api key is created on first use and written to api.key (mode 0600),
# so configs can point at $UMLO_KEY_FILE without a simulator running.
sub api_key {
    my ($self) = @_;
    $self->{api_key} //= join '', map { sprintf '%02x', int rand 256 } 1 .. 20;
    $self->_write_key_file;
    return $self->{api_key};
}

sub key_file {
    my ($self) = @_;
    $self->api_key;
    return $self->path('api.key');
}

sub _write_key_file {
    my ($self) = @_;
    my $file = $self->path('api.key');
    return if $self->{key_written};
    unlink $file;
    sysopen(my $fh, $file, O_WRONLY | O_CREAT | O_EXCL, 0600)
        or croak "cannot create $file: $!";
    print {$fh} $self->{api_key}, "\n";
    close $fh or croak "cannot write $file: $!";
    chmod 0600, $file;    # umask could not widen it, but be explicit
    $self->{key_written} = 1;
}

# Did the test file fail?  Consulted at teardown to decide whether to keep
# the temp dir.  $exit is the pending exit code when called from END.
sub _test_failed {
    my ($exit) = @_;
    return 1 if $exit;
    my $tb = Test::More->builder;
    return 1 unless $tb->is_passing;
    # A plan mismatch is only recorded by Test::Builder's own END block,
    # which runs after ours; check it here.
    my $plan = $tb->has_plan;
    return 1 if defined $plan && $plan =~ /^\d+$/ && $tb->current_test != $plan;
    return 0;
}

# Stop every process this object started.  Idempotent.  Whether the temp
# dir is removed is decided later, in END: when a test dies or exits, perl
# destroys file-scoped objects *before* END blocks run, and only END knows
# the exit code.
sub cleanup {
    my ($self) = @_;
    return if $self->{cleaned} || $self->{owner} != $$;
    $self->{cleaned} = 1;
    delete $LIVE{ refaddr $self };

    for my $name (sort keys %{ $self->{nginx} }) {
        eval { $self->stop_nginx($name); 1 } or carp "stopping nginx '$name': $@";
    }
    eval { $self->stop_sim; 1 }   or carp "stopping simulator: $@";
    eval { $self->stop_redis; 1 } or carp "stopping redis: $@";

    push @FINISHED, { tmp => $self->{tmp}, keep => $self->{keep}, owner => $self->{owner},
        logs => [ $self->_log_files ] };
}

sub DESTROY {
    my ($self) = @_;
    local ($@, $!, $?);
    $self->cleanup;
}

END {
    my $exit = $?;
    local $?;    # teardown runs waitpid(), which would clobber the exit code
    $_->cleanup for grep { defined } values %LIVE;
    my $failed = _test_failed($exit);
    # A child forked by a test runs this END block too; it owns nothing.
    for my $f (grep { $_->{owner} == $$ } @FINISHED) {
        if ($failed) {
            _report_logs(@{ $f->{logs} });
            Test::More::diag("umlo test dir kept: $f->{tmp}");
        } elsif ($f->{keep}) {
            Test::More::diag("umlo test dir kept (UMLO_KEEP): $f->{tmp}");
        } else {
            remove_tree($f->{tmp});
        }
    }
}

# A Ctrl-C or a prove timeout should still run the END block above, so that
# nothing is left running.  Tests that set their own handlers keep them.
my %SIGNUM = (HUP => 1, INT => 2, TERM => 15);

sub _install_signal_handlers {
    for my $sig (sort keys %SIGNUM) {
        my $cur = $SIG{$sig};
        next if defined $cur && ref $cur;
        next if defined $cur && $cur ne '' && $cur ne 'DEFAULT';
        $SIG{$sig} = sub { Test::More::diag("caught SIG$sig, cleaning up"); exit 128 + $SIGNUM{$sig} };
    }
}

# Log files worth showing when a test failed.
sub _log_files {
    my ($self) = @_;
    my @logs;
    for my $name (sort keys %{ $self->{nginx} }) {
        my $p = $self->{nginx}{$name}{prefix};
        push @logs, "$p/logs/error.log", "$p/logs/stderr.log";
    }
    push @logs, map { $self->path($_) } qw(sim.log redis.log);
    return @logs;
}

sub _report_logs {
    my (@logs) = @_;
    for my $log (@logs) {
        next unless -s $log;
        Test::More::diag("---- last $TAIL_LINES lines of $log ----\n" . _tail($log, $TAIL_LINES));
    }
}

# ---------------------------------------------------------------------------
# small utilities
# ---------------------------------------------------------------------------

sub _slurp {
    my ($file, $offset) = @_;
    open(my $fh, '<:raw', $file) or return '';
    seek($fh, $offset, 0) if $offset;
    local $/;
    my $s = <$fh>;
    return $s // '';
}

sub _tail {
    my ($file, $n) = @_;
    my @lines = split /\n/, _slurp($file);
    splice @lines, 0, @lines - $n if @lines > $n;
    return join("\n", @lines) . "\n";
}

sub _spew {
    my ($file, $text) = @_;
    open(my $fh, '>:raw', $file) or croak "cannot write $file: $!";
    print {$fh} $text;
    close $fh or croak "cannot write $file: $!";
}

# Ask the kernel for a free loopback port.  There is a small window before
# the caller binds it; remembering handed-out ports avoids self-collisions.
sub free_port {
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
            Listen => 1, ReuseAddr => 1,
        ) or croak "cannot bind a loopback port: $!";
        my $port = $s->sockport;
        close $s;
        return $port unless $PORT_USED{$port}++;
    }
    croak 'no free port found';
}

# Is something listening on 127.0.0.1:$port?  Read from /proc/net/tcp so
# the check itself does not open a connection (which nginx would log as
# "client closed connection while waiting for request").
sub _port_listening {
    my ($port) = @_;
    open(my $fh, '<', '/proc/net/tcp') or return _port_open($port);
    my $want = sprintf '0100007F:%04X', $port;
    while (my $line = <$fh>) {
        my (undef, $local, undef, $state) = split ' ', $line;
        return 1 if $local eq $want && $state eq '0A';    # 0A = LISTEN
    }
    return 0;
}

sub _port_open {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 1);
    return 0 unless $s;
    close $s;
    return 1;
}

# Every timeout of the harness goes through this, so slow builds (ASan,
# valgrind) can stretch them all with UMLO_TIMEOUT_FACTOR=5.
sub scaled {
    my ($secs) = @_;
    my $f = $ENV{UMLO_TIMEOUT_FACTOR};
    return $f && $f =~ /^\d+(?:\.\d+)?$/ ? $secs * $f : $secs;
}

# Poll $code until it returns true or the timeout passes.  Exceptions inside
# $code count as "not yet" (e.g. redis restarting); the last one is shown
# if we give up.  Returns the true value, or undef on timeout.
sub wait_for {
    shift if @_ && blessed $_[0] && $_[0]->isa(__PACKAGE__) || ($_[0] // '') eq __PACKAGE__;
    my ($code, %opts) = @_;
    my $timeout  = scaled($opts{timeout} // 10);
    my $interval = $opts{interval} // 0.1;
    my $deadline = time + $timeout;
    my $last_err;
    while (1) {
        my $v = eval { $code->() };
        if ($@) { $last_err = $@ } elsif ($v) { return $v }
        last if time >= $deadline;
        sleep $interval;
    }
    Test::More::diag("wait_for: last error: $last_err") if defined $last_err && !$opts{quiet};
    return undef;
}

# ---------------------------------------------------------------------------
# child processes
# ---------------------------------------------------------------------------

# fork+exec $cmd with stdout/stderr appended to $log.  Each child gets its
# own process group: a terminal Ctrl-C then only reaches the test (which
# stops children in order), and leftovers can be killed as a group.
sub _spawn {
    my (%o) = @_;
    my @cmd = @{ $o{cmd} };
    my $pid = fork;
    croak "fork: $!" unless defined $pid;
    return $pid if $pid;

    # child: must never return into the test script or run its END blocks
    eval {
        setpgrp(0, 0);
        chdir $o{cwd} if $o{cwd};
        open(STDIN, '<', '/dev/null') or die "stdin: $!";
        open(STDOUT, '>>', $o{log}) or die "open $o{log}: $!";
        open(STDERR, '>&', \*STDOUT) or die "dup stderr: $!";
        $| = 1;
        while (my ($k, $v) = each %{ $o{env} || {} }) {
            if (defined $v) { $ENV{$k} = $v } else { delete $ENV{$k} }
        }
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE);
        exec { $cmd[0] } @cmd or die "exec $cmd[0]: $!";
    };
    print STDERR "spawn failed: $@";
    POSIX::_exit(127);
}

# Is $pid alive (and not a zombie we cannot reap)?
sub _alive {
    my ($pid) = @_;
    return 0 unless $pid && kill(0, $pid);
    if (open(my $fh, '<', "/proc/$pid/stat")) {
        my $stat = <$fh> // '';
        return 0 if $stat =~ /\)\s+Z\s/;
    }
    return 1;
}

# Wait for $pid to go away.  Children are reaped; for non-children (a
# daemonised nginx) we can only watch.  Returns the wait status, 0 for a
# non-child, or undef on timeout.
sub _wait_exit {
    my ($pid, $timeout, $is_child) = @_;
    my $deadline = time + scaled($timeout);
    while (1) {
        if ($is_child) {
            my $r = waitpid($pid, WNOHANG);
            return $? if $r == $pid;
            return 0 if $r < 0;    # already reaped
        } else {
            return 0 unless _alive($pid);
        }
        return undef if time >= $deadline;
        sleep 0.05;
    }
}

# Escalating stop: each [signal, seconds] step until the process is gone,
# then SIGKILL to its process group so no helpers/workers survive.
sub _stop_process {
    my (%o) = @_;
    my ($pid, $is_child) = @o{qw(pid child)};
    return unless $pid;
    my $status;
    for my $step (@{ $o{steps} }, [KILL => 5]) {
        my ($sig, $secs) = @$step;
        kill $sig, $pid;
        $status = _wait_exit($pid, $secs, $is_child);
        last if defined $status;
    }
    kill 'KILL', -$o{pgrp} if $o{pgrp};
    kill 'KILL', $_ for grep { _alive($_) } @{ $o{also} || [] };
    return $status;
}

# Children of $ppid as [pid, title], read from /proc (no ps dependency).
sub _children {
    my ($ppid) = @_;
    my @kids;
    opendir(my $dh, '/proc') or return;
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        open(my $fh, '<', "/proc/$pid/stat") or next;
        my $stat = <$fh> // next;
        my ($state, $parent) = $stat =~ /\)\s+(\S)\s+(\d+)/ or next;
        next unless $parent == $ppid && $state ne 'Z';
        open(my $ch, '<', "/proc/$pid/cmdline") or next;
        my $title = do { local $/; <$ch> } // '';
        $title =~ s/\0.*//s;
        push @kids, [ $pid, $title ];
    }
    return sort { $a->[0] <=> $b->[0] } @kids;
}

# ---------------------------------------------------------------------------
# redis
# ---------------------------------------------------------------------------

sub redis_port    { $_[0]{redis} ? $_[0]{redis}{port} : undef }
sub redis_running { !!($_[0]{redis} && $_[0]{redis}{pid}) }
sub redis_pid     { $_[0]{redis} ? $_[0]{redis}{pid} : undef }

sub start_redis {
    my ($self, %args) = @_;
    croak 'redis is already running' if $self->{redis} && $self->{redis}{pid};

    my $r = $self->{redis} //= {};
    $r->{port} = $args{port} // $r->{port} // free_port();
    $r->{args} = $args{args} // $r->{args} // [];
    my $dir = $self->path('redis');
    make_path($dir);
    my $log = $self->path('redis.log');

    my @cmd = (
        $ENV{UMLO_REDIS_SERVER} // 'redis-server',
        '--port', $r->{port}, '--bind', '127.0.0.1', '--dir', $dir,
        '--save', '', '--appendonly', 'no', '--daemonize', 'no',
        '--logfile', $log, @{ $r->{args} },
    );
    $r->{pid} = _spawn(cmd => \@cmd, log => $log);

    # wait_for() treats exceptions as "not yet", so an early exit is
    # signalled through $exited instead of croak.
    my $exited;
    my $ok = wait_for(sub {
        return $exited = 1 if defined _wait_exit($r->{pid}, 0, 1);
        my $pong = eval { $self->redis('PING') };
        return defined $pong && $pong eq 'PONG';
    }, timeout => $args{timeout} // 10, quiet => 1);
    if ($exited) {
        $r->{pid} = undef;
        croak "redis-server exited early:\n" . _tail($log, 20);
    }
    unless ($ok) {
        my $tail = _tail($log, 20);
        $self->stop_redis;
        croak "redis-server did not answer PING on port $r->{port}:\n$tail";
    }
    return $r->{port};
}

sub stop_redis {
    my ($self) = @_;
    my $r = $self->{redis} or return;
    $self->_redis_drop;
    return unless $r->{pid};
    _stop_process(pid => $r->{pid}, child => 1, pgrp => $r->{pid}, steps => [[TERM => 10]]);
    $r->{pid} = undef;
}

# Restart on the same port (for fault-injection tests).  Data is lost:
# persistence is off.
sub restart_redis {
    my ($self, %args) = @_;
    croak 'redis was never started' unless $self->{redis};
    $self->stop_redis;
    return $self->start_redis(%args, port => $self->{redis}{port});
}

# Run one command.  Returns bulk/simple strings as byte strings, integers as
# numbers, arrays as array refs, nil as undef; dies on an error reply.
# Character strings (utf8 flag on) are sent UTF-8 encoded.
sub redis {
    my ($self, @cmd) = @_;
    croak 'redis() needs a command' unless @cmd;
    my $conn = $self->_redis_conn;
    my $req = '*' . scalar(@cmd) . "\r\n";
    for my $arg (@cmd) {
        croak 'undefined redis argument' unless defined $arg;
        my $bytes = utf8::is_utf8($arg) ? Encode::encode_utf8($arg) : "$arg";
        $req .= '$' . length($bytes) . "\r\n$bytes\r\n";
    }
    my $reply = eval {
        _redis_write($conn, $req);
        _redis_reply($conn);
    };
    if (my $err = $@) {
        $self->_redis_drop;    # state unknown: reconnect next time
        die $err;
    }
    croak "redis error: $$reply" if ref $reply eq 'Umlo::Test::RedisError';
    return $reply;
}

sub _redis_conn {
    my ($self) = @_;
    my $r = $self->{redis};
    croak 'redis is not running (call start_redis first)' unless $r && $r->{pid};
    return $r->{conn} if $r->{conn};
    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $r->{port}, Proto => 'tcp', Timeout => 5,
    ) or die "cannot connect to redis on port $r->{port}: $!\n";
    binmode $sock;
    return $r->{conn} = { sock => $sock, buf => '', timeout => scaled($self->{redis_timeout}) };
}

sub _redis_drop {
    my ($self) = @_;
    my $r = $self->{redis} or return;
    close $r->{conn}{sock} if $r->{conn};
    $r->{conn} = undef;
}

sub _redis_write {
    my ($c, $data) = @_;
    local $SIG{PIPE} = 'IGNORE';
    while (length $data) {
        my $n = syswrite($c->{sock}, $data);
        die "redis write failed: $!\n" unless defined $n;
        substr($data, 0, $n, '');
    }
}

sub _redis_fill {
    my ($c) = @_;
    my $sel = IO::Select->new($c->{sock});
    die "redis reply timed out\n" unless $sel->can_read($c->{timeout});
    my $n = sysread($c->{sock}, $c->{buf}, 65536, length $c->{buf});
    die "redis read failed: $!\n" unless defined $n;
    die "redis closed the connection\n" unless $n;
}

sub _redis_line {
    my ($c) = @_;
    my $i;
    _redis_fill($c) while ($i = index($c->{buf}, "\r\n")) < 0;
    my $line = substr($c->{buf}, 0, $i);
    substr($c->{buf}, 0, $i + 2, '');
    return $line;
}

sub _redis_bytes {
    my ($c, $n) = @_;
    _redis_fill($c) while length($c->{buf}) < $n + 2;
    my $s = substr($c->{buf}, 0, $n);
    substr($c->{buf}, 0, $n + 2, '');
    return $s;
}

# RESP2 plus the RESP3 types, in case a test switches with HELLO 3.  Error
# replies nested in arrays (EXEC) come back as Umlo::Test::RedisError
# objects; only a top-level error dies (after the whole reply is read, so
# the connection stays in sync).
sub _redis_reply {
    my ($c) = @_;
    my $line = _redis_line($c);
    my ($type, $rest) = (substr($line, 0, 1), substr($line, 1));
    if ($type eq '+') { return $rest }
    if ($type eq '-') { return Umlo::Test::RedisError->new($rest) }
    if ($type eq ':') { return 0 + $rest }
    if ($type eq '$' || $type eq '=' || $type eq '!') {
        return undef if $rest < 0;
        my $s = _redis_bytes($c, $rest);
        $s =~ s/^...:// if $type eq '=';
        return $type eq '!' ? Umlo::Test::RedisError->new($s) : $s;
    }
    if ($type eq '*' || $type eq '~' || $type eq '>') {
        return undef if $rest < 0;
        return [ map { _redis_reply($c) } 1 .. $rest ];
    }
    if ($type eq '%') { return { map { _redis_reply($c) } 1 .. 2 * $rest } }
    if ($type eq '_') { return undef }
    if ($type eq ',') { return 0 + $rest }
    if ($type eq '#') { return $rest eq 't' ? 1 : 0 }
    if ($type eq '(') { return $rest }
    die "unknown redis reply type '$type' in '$line'\n";
}

# ---------------------------------------------------------------------------
# Atlassian API simulator
# ---------------------------------------------------------------------------

sub sim_bin { $ENV{UMLO_SIM_BIN} // "$ROOT/sim/umlo-sim" }

sub sim_url  { $_[0]{sim} && $_[0]{sim}{pid} ? $_[0]{sim}{url}  : undef }
sub sim_port { $_[0]{sim} && $_[0]{sim}{pid} ? $_[0]{sim}{port} : undef }
sub sim_running { !!($_[0]{sim} && $_[0]{sim}{pid}) }
sub sim_pid     { $_[0]{sim} ? $_[0]{sim}{pid} : undef }

# start_sim(users => N, sites => S, groups => G, seed => N, profile => P,
#           args => [...extra flags], org => ..., api_key => ..., port => P)
sub start_sim {
    my ($self, %args) = @_;
    croak 'simulator is already running' if $self->{sim} && $self->{sim}{pid};
    my $exe = $self->sim_bin;
    croak "simulator not found or not executable: $exe" unless -x $exe;

    my $port = $args{port} // 0;
    my @cmd = ($exe, '--listen', "127.0.0.1:$port",
        '--org', $args{org} // $self->org, '--api-key', $args{api_key} // $self->api_key);
    for my $opt (qw(users sites groups seed profile)) {
        push @cmd, "--$opt", $args{$opt} if defined $args{$opt};
    }
    push @cmd, @{ $args{args} || [] };

    my $log = $self->path('sim.log');
    my $offset = (-s $log) || 0;    # only look at this run's output
    my $pid = _spawn(cmd => \@cmd, log => $log, env => { PYTHONUNBUFFERED => 1 });
    $self->{sim} = { pid => $pid, args => {%args}, cmd => \@cmd };

    my $exited;
    my $found = wait_for(sub {
        my $out = _slurp($log, $offset);
        return $1 if $out =~ /^listening on 127\.0\.0\.1:(\d+)\s*$/m;
        return $exited = 1 if defined _wait_exit($pid, 0, 1);
        return;
    }, timeout => $args{timeout} // 30, quiet => 1);
    if ($exited) {
        $self->{sim}{pid} = undef;
        croak "simulator exited early:\n" . _slurp($log, $offset);
    }
    unless ($found) {
        my $out = _slurp($log, $offset);
        $self->stop_sim;
        croak "simulator did not print 'listening on 127.0.0.1:PORT' in time:\n$out";
    }
    @{ $self->{sim} }{qw(port url)} = ($found, "http://127.0.0.1:$found");
    return $self->{sim}{url};
}

sub stop_sim {
    my ($self) = @_;
    my $s = $self->{sim} or return;
    return unless $s->{pid};
    _stop_process(pid => $s->{pid}, child => 1, pgrp => $s->{pid}, steps => [[TERM => 5]]);
    $s->{pid} = undef;
}

# Restart on the same port (so running nginx configs stay valid), with the
# previous arguments overridden by %args.
sub restart_sim {
    my ($self, %args) = @_;
    my $s = $self->{sim} or croak 'simulator was never started';
    my $port = $s->{port};
    $self->stop_sim;
    return $self->start_sim(%{ $s->{args} }, %args, ($port ? (port => $port) : ()));
}

# Call the simulator's admin API.  $path may be "/__sim/x" or just "x".
sub sim_admin {
    my ($self, $method, $path, $json, %opts) = @_;
    my $url = $self->sim_url or croak 'simulator is not running (call start_sim first)';
    $path = "/__sim/$path" unless $path =~ m{^/};
    return _http($method, $url . $path, %opts, (defined $json ? (json => $json) : ()));
}

# ---------------------------------------------------------------------------
# nginx
# ---------------------------------------------------------------------------

sub nginx_bin { $ENV{UMLO_NGINX} // '/usr/sbin/nginx' }

sub module_path {
    my $p = $ENV{UMLO_MODULE} // "$ROOT/build/ngx_umlo_module.so";
    $p = File::Spec->rel2abs($p);
    croak "nginx module not found at $p: run make first (or set UMLO_MODULE)\n" unless -f $p;
    return $p;
}

# The per-name record: prefix dir and port stay fixed across restarts.
sub _nginx_instance {
    my ($self, $name) = @_;
    $name //= 'main';
    croak "bad nginx instance name '$name'" unless $name =~ /^[A-Za-z0-9_-]+$/;
    return $self->{nginx}{$name} //= do {
        my $prefix = $self->path("nginx-$name");
        make_path(map { "$prefix/$_" } qw(logs temp));
        { name => $name, prefix => $prefix, port => free_port(), args => {} };
    };
}

sub nginx_instance { $_[0]->_nginx_instance($_[1]) }
sub nginx_port     { $_[0]->_nginx_instance($_[1])->{port} }
sub nginx_url      { 'http://127.0.0.1:' . $_[0]->nginx_port($_[1]) }
sub nginx_running  { my $i = $_[0]{nginx}{ $_[1] // 'main' }; !!($i && $i->{pid}) }

sub _user_directive {
    return '' if $> != 0;
    # As root nginx would switch workers to "nobody", who cannot enter the
    # 0700 temp dir or read the 0600 key file.
    my $user  = getpwuid($>) // 'root';
    my $group = getgrgid((split ' ', $))[0]) // $user;
    return "user $user $group;\n";
}

# Template variables available in main_config/http_config/config.
sub _vars {
    my ($self, $inst, $extra) = @_;
    return {
        UMLO_TMP      => sub { $self->{tmp} },
        UMLO_PORT     => sub { $inst->{port} },
        UMLO_PREFIX   => sub { $inst->{prefix} },
        UMLO_ORG      => sub { $self->org },
        UMLO_KEY_FILE => sub { $self->key_file },
        UMLO_REDIS    => sub { '127.0.0.1:' . $self->_need_redis },
        UMLO_REDIS_PORT => sub { $self->_need_redis },
        UMLO_SIM      => sub { $self->sim_url // croak 'config uses $UMLO_SIM but the simulator is not running (call start_sim first)' },
        UMLO_SIM_PORT => sub { $self->sim_port // croak 'config uses $UMLO_SIM_PORT but the simulator is not running' },
        (map { my $v = $extra->{$_}; ($_ => sub { $v }) } keys %{ $extra || {} }),
    };
}

sub _need_redis {
    my ($self) = @_;
    my $port = $self->redis_port;
    croak 'config uses $UMLO_REDIS but redis is not started (call start_redis first)'
        unless $port && $self->{redis}{pid};
    return $port;
}

# Template variables of an instance (default 'main') as name => code ref;
# for expand().
sub template_vars {
    my ($self, $name, $extra) = @_;
    return $self->_vars($self->_nginx_instance($name), $extra);
}

# Replace $UMLO_X / ${UMLO_X} using $vars (default: those of 'main').
# Unknown UMLO_ names die: usually a typo.  $quote => values are
# quotemeta'd, for use inside regexes.
sub expand {
    my ($self, $text, $vars, $quote) = @_;
    return '' unless defined $text;
    $vars //= $self->template_vars;
    $text =~ s{\$(?:\{(UMLO_[A-Z0-9_]+)\}|(UMLO_[A-Z0-9_]+)(?![A-Za-z0-9_]))}{
        my $n = $1 // $2;
        my $v = $vars->{$n} ? $vars->{$n}->() : croak "unknown template variable \$$n";
        $quote ? quotemeta $v : $v;
    }ge;
    return $text;
}

# Render nginx.conf for an instance.  Options (all optional):
#   module (1), worker_processes (2), master_process (1), daemon (0),
#   thread_pool ('umlo threads=4'; false to omit), error_log_level ('info'),
#   main_config, events_config, http_config, config, vars => {NAME => value}
sub nginx_conf {
    my ($self, %a) = @_;
    my $inst = $self->_nginx_instance($a{name});
    my $vars = $self->_vars($inst, $a{vars});
    my $x = sub { $self->expand($_[0], $vars) };

    my $level   = $a{error_log_level} // $ENV{UMLO_LOG_LEVEL} // 'info';
    my $workers = $a{worker_processes} // 2;
    my $pool    = exists $a{thread_pool} ? $a{thread_pool} : 'umlo threads=4';

    my $conf = '';
    $conf .= 'load_module ' . module_path() . ";\n" if $a{module} // 1;
    $conf .= _user_directive();
    $conf .= "worker_processes $workers;\n";
    $conf .= 'master_process ' . (($a{master_process} // 1) ? 'on' : 'off') . ";\n";
    $conf .= 'daemon ' . ($a{daemon} ? 'on' : 'off') . ";\n";
    $conf .= "pid logs/nginx.pid;\n";
    $conf .= "lock_file logs/nginx.lock;\n";
    $conf .= "error_log logs/error.log $level;\n";
    $conf .= "thread_pool $pool;\n" if $pool;
    $conf .= _block($x->($a{main_config}));
    $conf .= "\nevents {\n    worker_connections 1024;\n" . _block($x->($a{events_config})) . "}\n";
    $conf .= "\nhttp {\n";
    $conf .= "    access_log logs/access.log;\n";
    $conf .= "    $_ temp/" . ($_ =~ s/_temp_path$//r) . ";\n"
        for qw(client_body_temp_path proxy_temp_path fastcgi_temp_path uwsgi_temp_path scgi_temp_path);
    $conf .= _block($x->($a{http_config}));
    $conf .= "\n    server {\n";
    $conf .= "        listen 127.0.0.1:$inst->{port};\n";
    $conf .= "        server_name localhost;\n";
    $conf .= _block($x->($a{config}));
    $conf .= "    }\n}\n";
    return $conf;
}

# Test-supplied config text, newline-terminated; empty text adds nothing.
# Not re-indented: that would change multi-line string literals.
sub _block {
    my ($text) = @_;
    return '' unless $text =~ /\S/;
    $text =~ s/\s+\z//;
    return "$text\n";
}

sub _nginx_cmd {
    my ($prefix, @extra) = @_;
    my $bin = nginx_bin();
    croak "nginx binary not found: $bin (set UMLO_NGINX)" unless -x $bin;
    return ($bin, '-p', "$prefix/", '-c', "$prefix/nginx.conf",
        '-e', "$prefix/logs/error.log", @extra);
}

# ASan builds of the module need the runtime preloaded into nginx only.
sub _nginx_env {
    my (%a) = @_;
    my %env = %{ $a{env} || {} };
    $env{LD_PRELOAD} = $ENV{UMLO_NGINX_PRELOAD} if $ENV{UMLO_NGINX_PRELOAD};
    return \%env;
}

# start_nginx(name => 'main', port => P, wait_workers => 1, timeout => 10,
#             env => {...}, plus the nginx_conf() options).
# Returns the instance record {name, port, prefix, pid, ...}.
sub start_nginx {
    my ($self, %a) = @_;
    my $inst = $self->_nginx_instance($a{name});
    croak "nginx '$inst->{name}' is already running (stop_nginx first)" if $inst->{pid};
    $inst->{port} = $a{port} if $a{port};
    $inst->{args} = {%a};

    my $conf = $self->nginx_conf(%a);
    _spew("$inst->{prefix}/nginx.conf", $conf);
    $inst->{conf} = $conf;

    my $log = "$inst->{prefix}/logs/stderr.log";
    my $pid = _spawn(cmd => [ _nginx_cmd($inst->{prefix}) ], log => $log, env => _nginx_env(%a));
    @$inst{qw(daemon master_process workers)} =
        (!!$a{daemon}, $a{master_process} // 1, $a{worker_processes} // 2);

    eval {
        if ($inst->{daemon}) {
            # The launcher exits once the daemon is up; its pid is in the file.
            my $st = _wait_exit($pid, $a{timeout} // 10, 1);
            die "nginx launcher did not exit\n" unless defined $st;
            die 'nginx exited with status ' . ($st >> 8) . "\n" if $st;
            my $pidfile = "$inst->{prefix}/logs/nginx.pid";
            my $mpid = wait_for(sub { -s $pidfile && _slurp($pidfile) =~ /(\d+)/ && $1 },
                timeout => 5, quiet => 1) or die "no pid file\n";
            @$inst{qw(pid child)} = ($mpid, 0);
        } else {
            @$inst{qw(pid child)} = ($pid, 1);
        }
        $self->_wait_nginx_up($inst, $a{timeout} // 10, $a{wait_workers} // 1);
        1;
    } or do {
        my $err = $@;
        my $tail = $self->_nginx_log_tails($inst);
        $self->stop_nginx($inst->{name}) if $inst->{pid};
        $inst->{pid} = undef;
        croak "nginx '$inst->{name}' failed to start: $err$tail";
    };
    return $inst;
}

sub _nginx_log_tails {
    my ($self, $inst) = @_;
    my $s = '';
    for my $f (map { "$inst->{prefix}/logs/$_" } qw(error.log stderr.log)) {
        $s .= "\n--- $f:\n" . _tail($f, 20) if -s $f;
    }
    return $s;
}

# Up means: the port accepts connections and (with a master) all workers
# exist, so multi-worker tests don't race worker startup.
sub _wait_nginx_up {
    my ($self, $inst, $timeout, $wait_workers) = @_;
    $timeout = scaled($timeout);
    my $deadline = time + $timeout;
    while (1) {
        if ($inst->{child}) {
            my $st = _wait_exit($inst->{pid}, 0, 1);
            if (defined $st) {
                $inst->{pid} = undef;
                die 'nginx exited with status ' . ($st >> 8) . "\n";
            }
        } elsif (!_alive($inst->{pid})) {
            $inst->{pid} = undef;
            die "nginx master exited\n";
        }
        if (_port_listening($inst->{port})) {
            return 1 unless $inst->{master_process} && $wait_workers;
            my (undef, @w) = $self->nginx_pids($inst->{name});
            return 1 if @w >= _worker_count($inst->{workers});
        }
        die "not up after ${timeout}s\n" if time >= $deadline;
        sleep 0.05;
    }
}

# "worker_processes auto" means one per CPU; waiting for one is enough.
sub _worker_count { $_[0] =~ /^\d+$/ ? $_[0] : 1 }

# (master_pid, worker_pids...) of a running instance; workers that are
# shutting down after a reload are not included.
sub nginx_pids {
    my ($self, $name) = @_;
    my $inst = $self->_nginx_instance($name);
    return () unless $inst->{pid};
    my @w = map { $_->[0] }
        grep { $_->[1] =~ /worker process/ && $_->[1] !~ /shutting down/ }
        _children($inst->{pid});
    return ($inst->{pid}, @w);
}

# Graceful stop: QUIT, then TERM, then KILL; waits for the master to exit
# and kills any orphaned workers.
sub stop_nginx {
    my ($self, $name) = @_;
    my $inst = $self->{nginx}{ $name // 'main' } or return;
    return unless $inst->{pid};
    my (undef, @workers) = eval { $self->nginx_pids($inst->{name}) };
    my $st = _stop_process(
        pid => $inst->{pid}, child => $inst->{child},
        pgrp => $inst->{pid}, also => \@workers,
        steps => [[QUIT => 10], [TERM => 5]],
    );
    $inst->{pid} = undef;
    return $st;
}

# Send HUP (after rewriting nginx.conf if options are given, merged over
# the ones used at start) and wait until a full set of new workers runs.
# Dies if the reload fails (e.g. [emerg] in the new config) unless
# allow_fail => 1, in which case it returns false.
sub reload_nginx {
    my ($self, %a) = @_;
    my $allow_fail = delete $a{allow_fail};
    my $timeout = delete $a{timeout} // 10;
    my $inst = $self->_nginx_instance($a{name});
    croak "nginx '$inst->{name}' is not running" unless $inst->{pid};
    croak 'reload needs master_process on' unless $inst->{master_process};

    if (grep { $_ ne 'name' } keys %a) {
        $inst->{args} = { %{ $inst->{args} }, %a };
        my $conf = $self->nginx_conf(%{ $inst->{args} });
        _spew("$inst->{prefix}/nginx.conf", $conf);
        $inst->{conf} = $conf;
        $inst->{workers} = $inst->{args}{worker_processes} // 2;
    }

    my (undef, @old) = $self->nginx_pids($inst->{name});
    my %old = map { $_ => 1 } @old;
    my $mark = $self->error_log_mark($inst->{name});
    kill 'HUP', $inst->{pid};

    my $err;
    my $ok = wait_for(sub {
        if ($self->error_log($mark) =~ /^(.*\[emerg\].*)$/m) { $err = $1; return 1 }
        my (undef, @w) = $self->nginx_pids($inst->{name});
        # done once the new set runs and no old worker still looks like
        # a live one (its title changes when it starts shutting down)
        return (grep { !$old{$_} } @w) >= _worker_count($inst->{workers})
            && !grep { $old{$_} } @w;
    }, timeout => $timeout, quiet => 1);
    $err //= "no new workers after ${timeout}s" unless $ok;
    return 1 unless defined $err;
    croak "nginx reload failed: $err" unless $allow_fail;
    return 0;
}

# Run "nginx -t" on a generated config (same options as start_nginx) in a
# scratch prefix.  Returns (exit_code, combined_output).
sub nginx_t {
    my ($self, %a) = @_;
    my $name = 't' . ++$self->{t_count};
    my $inst = $self->_nginx_instance($name);
    my $conf = $self->nginx_conf(%a, name => $name);
    _spew("$inst->{prefix}/nginx.conf", $conf);
    my $out = "$inst->{prefix}/logs/t.out";
    my $pid = _spawn(cmd => [ _nginx_cmd($inst->{prefix}, '-t') ], log => $out, env => _nginx_env(%a));
    my $st = _wait_exit($pid, $a{timeout} // 30, 1);
    unless (defined $st) {
        _stop_process(pid => $pid, child => 1, pgrp => $pid, steps => []);
        croak 'nginx -t did not finish';
    }
    # Scratch instances are not servers: forget them so teardown and log
    # reports skip them.
    delete $self->{nginx}{$name};
    return ($st >> 8, _slurp($out));
}

# ---------------------------------------------------------------------------
# error log
# ---------------------------------------------------------------------------

sub error_log_file {
    my ($self, $name) = @_;
    return $self->_nginx_instance($name)->{prefix} . '/logs/error.log';
}

# An opaque position in an instance's error.log; pass it to error_log()
# to get only what was logged afterwards.
sub error_log_mark {
    my ($self, $name) = @_;
    my $file = $self->error_log_file($name);
    return bless { name => $name // 'main', offset => (-s $file) || 0 }, 'Umlo::Test::LogMark';
}

# error_log()            whole error.log of 'main'
# error_log('b')         whole error.log of instance 'b'
# error_log($mark)       what was logged since error_log_mark()
sub error_log {
    my ($self, $arg) = @_;
    if (blessed $arg && $arg->isa('Umlo::Test::LogMark')) {
        return _slurp($self->error_log_file($arg->{name}), $arg->{offset});
    }
    return _slurp($self->error_log_file($arg));
}

# assert_error_log(qr/.../, name => 'b', since => $mark, timeout => 3, desc => '...')
# Waits up to timeout seconds (default 0) for the pattern to appear.
sub assert_error_log {
    my ($self, $re, %o) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $src = $o{since} // $o{name};
    my $found = wait_for(sub { $self->error_log($src) =~ $re }, timeout => $o{timeout} // 0, quiet => 1);
    my $ok = Test::More::ok($found, $o{desc} // "error log matches $re");
    Test::More::diag("error log:\n" . _last_lines($self->error_log($src), $TAIL_LINES)) unless $ok;
    return $ok;
}

# assert_no_error_log(qr/.../, name => 'b', since => $mark, desc => '...');
# the default pattern catches [alert], [emerg] and [crit].
sub assert_no_error_log {
    my ($self, $re, %o) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    $re //= $DEFAULT_NO_ERROR_LOG;
    my @hits = grep { $_ =~ $re } split /\n/, $self->error_log($o{since} // $o{name});
    my $ok = Test::More::ok(!@hits, $o{desc} // "error log has no $re");
    Test::More::diag("unexpected error log lines:\n" . join("\n", @hits[0 .. ($#hits > 19 ? 19 : $#hits)]))
        unless $ok;
    return $ok;
}

sub _last_lines {
    my ($text, $n) = @_;
    my @l = split /\n/, $text;
    splice @l, 0, @l - $n if @l > $n;
    return join "\n", @l;
}

# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

# request($method, $path, headers => {}, body => '...', json => $data,
#         timeout => 10, name => 'main' (or instance => ...), port => P)
# Returns {status, reason, headers, body, json, success}.  Status 599 means
# a connection-level failure (the body then holds the reason).
sub request {
    my ($self, $method, $path, %o) = @_;
    my $url = $path;
    unless ($url =~ m{^https?://}) {
        my $port = $o{port} // $self->nginx_port($o{name} // $o{instance});
        $url = "http://127.0.0.1:$port$path";
    }
    return _http($method, $url, %o);
}

sub _http {
    my ($method, $url, %o) = @_;
    my %headers = %{ $o{headers} || {} };
    my $body = $o{body};
    if (exists $o{json}) {
        $body = $JSON->encode($o{json});
        $headers{'Content-Type'} //= 'application/json';
    }
    # umlo_sync takes a POST only as JSON (a web form cannot change state);
    # headers => {'Content-Type' => undef} sends none
    $headers{'Content-Type'} = 'application/json'
        if uc $method eq 'POST' && !exists $headers{'Content-Type'};
    delete $headers{$_} for grep { !defined $headers{$_} } keys %headers;
    # A fresh client each time: no keep-alive surprises across restarts.
    my $http = HTTP::Tiny->new(timeout => scaled($o{timeout} // 10), keep_alive => 0,
        agent => 'umlo-test/1', max_redirect => 0);
    local $SIG{PIPE} = 'IGNORE';
    my $r = $http->request(uc $method, $url, {
        headers => \%headers, (defined $body ? (content => $body) : ()),
    });
    my $res = {
        status => $r->{status}, reason => $r->{reason}, headers => $r->{headers} || {},
        body => $r->{content} // '', success => $r->{success}, url => $url,
    };
    my $ct = $res->{headers}{'content-type'} // '';
    $ct = $ct->[0] if ref $ct;
    if ($ct =~ m{[/+]json\b}i) {
        $res->{json} = eval { $JSON->decode($res->{body}) };
    }
    return $res;
}

# ---------------------------------------------------------------------------
# JSON comparison
# ---------------------------------------------------------------------------

sub _is_bool { blessed $_[0] && $_[0]->isa('JSON::PP::Boolean') }

sub _show {
    my ($v) = @_;
    return 'null' unless defined $v;
    return "qr/$v/" if ref $v eq 'Regexp';
    my $s = eval { JSON::PP->new->canonical->allow_nonref->allow_blessed->encode($v) } // "$v";
    $s = substr($s, 0, 300) . '...' if length $s > 300;
    return $s;
}

sub _key_path {
    my ($path, $k) = @_;
    return $k =~ /^[A-Za-z_][A-Za-z0-9_]*$/ ? "$path.$k" : $path . '[' . _show($k) . ']';
}

# json_diff($got, $expected, prefix => 1) -> undef if $got contains
# $expected, else a one-line description of the first mismatch.
#   hashes: every key of expected must exist in got and match (extra keys OK)
#   arrays: element-wise, equal length (prefix => 1: got may be longer)
#   qr//:   got must be a string matching it
#   code:   called with got, must return true
#   JSON booleans must match booleans; numbers compare numerically
sub json_diff {
    shift if @_ && blessed $_[0] && $_[0]->isa(__PACKAGE__);
    my ($got, $exp, %o) = @_;
    return _jdiff($got, $exp, '$', \%o);
}

sub _jdiff {
    my ($got, $exp, $path, $o) = @_;
    my $mismatch = sub { "$path: expected $_[0], got " . _show($got) };

    if (!defined $exp) {
        return defined $got ? $mismatch->('null') : undef;
    }
    if (ref $exp eq 'Regexp') {
        return $mismatch->('a string matching ' . _show($exp))
            if !defined $got || ref $got;
        return $got =~ $exp ? undef : $mismatch->('a string matching ' . _show($exp));
    }
    if (ref $exp eq 'CODE') {
        return $exp->($got) ? undef : $mismatch->('a value accepted by the check sub');
    }
    if (_is_bool($exp)) {
        return undef if _is_bool($got) && !!$got == !!$exp;
        return $mismatch->($exp ? 'true' : 'false');
    }
    if (ref $exp eq 'HASH') {
        return $mismatch->('an object') unless ref $got eq 'HASH';
        for my $k (sort keys %$exp) {
            return "$path: missing key " . _show($k) . ' in ' . _show($got) unless exists $got->{$k};
            my $d = _jdiff($got->{$k}, $exp->{$k}, _key_path($path, $k), $o);
            return $d if defined $d;
        }
        return undef;
    }
    if (ref $exp eq 'ARRAY') {
        return $mismatch->('an array') unless ref $got eq 'ARRAY';
        my ($ne, $ng) = (scalar @$exp, scalar @$got);
        return "$path: expected " . ($o->{prefix} ? 'at least ' : '') . "$ne elements, got $ng: " . _show($got)
            if $o->{prefix} ? $ng < $ne : $ng != $ne;
        for my $i (0 .. $#$exp) {
            my $d = _jdiff($got->[$i], $exp->[$i], "$path\[$i]", $o);
            return $d if defined $d;
        }
        return undef;
    }
    croak "json_diff: unsupported expected value at $path: " . ref $exp if ref $exp;

    # plain scalar
    return $mismatch->(_show($exp)) if !defined $got || ref $got;
    if (looks_like_number($exp) && looks_like_number($got)) {
        return $got == $exp ? undef : $mismatch->(_show($exp));
    }
    return $got eq $exp ? undef : $mismatch->(_show($exp));
}

# Test::More assertion around json_diff.  $expected may also be a JSON
# string.  Options are those of json_diff.
sub json_contains {
    shift if @_ && blessed $_[0] && $_[0]->isa(__PACKAGE__);
    my ($got, $exp, $name, %o) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    $exp = JSON::PP->new->relaxed->allow_nonref->decode($exp) if !ref $exp && defined $exp && $exp =~ /^\s*[\[{]/;
    my $d = _jdiff($got, $exp, '$', \%o);
    my $ok = Test::More::ok(!defined $d, $name // 'JSON contains expected data');
    unless ($ok) {
        my $pretty = eval { JSON::PP->new->canonical->pretty->allow_nonref->allow_blessed->encode($got) } // _show($got);
        $pretty = substr($pretty, 0, 3000) . "\n..." if length $pretty > 3000;
        Test::More::diag("$d\nfull value:\n$pretty");
    }
    return $ok;
}

package Umlo::Test::RedisError;

use overload '""' => sub { ${ $_[0] } }, fallback => 1;

sub new { my ($class, $msg) = @_; return bless \$msg, $class }

1;
