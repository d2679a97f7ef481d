package Umlo::Test::Blocks;

# Data-driven tests: a file (usually __DATA__) of blocks, each with a name
# and "--- section" parts describing nginx config, setup, one request and
# the expected response and log lines.  See t/README.md for the format.

use strict;
use warnings;

use Carp qw(croak);
use JSON::PP ();
use Test::More ();
use Time::HiRes qw(sleep);
use Umlo::Test;

# Section name => 1.  Anything else is a typo and dies at parse time.
my %SECTIONS = map { $_ => 1 } qw(
    main_config http_config config
    redis_setup sim_args
    request request_headers request_body request_json timeout wait
    error_code response_headers response_json response_body response_body_like
    error_log no_error_log allow_error_levels
    nginx_t_fails
    skip only
);

# Options of run() that are not section defaults.
my %RUN_OPTS = map { $_ => 1 } qw(t nginx redis sim error_log_wait);

# start_nginx() options that may also be given to run() directly.
my %NGINX_OPTS = map { $_ => 1 } qw(module worker_processes master_process daemon
    thread_pool error_log_level events_config vars env);

my @DEFAULT_BAD_LEVELS = qw(alert emerg crit);

my $JSON = JSON::PP->new->relaxed->allow_nonref;

# ---------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------

# Returns a list of {name, line, sections => {name => text}}.
# Section text has trailing whitespace (including the last newline) removed.
sub parse {
    my ($text) = @_;
    my (@blocks, $cur, $sec);
    my $lineno = 0;
    for my $line (split /\n/, $text) {
        $lineno++;
        if ($line =~ /^===\s*(.*?)\s*$/) {
            $cur = { name => $1 || "block at line $lineno", line => $lineno, sections => {} };
            push @blocks, $cur;
            undef $sec;
        } elsif (!$cur) {
            next;    # preamble before the first block
        } elsif ($line =~ /^---\s+(\w+)\s*(?::(.*))?$/) {
            my ($name, $inline) = ($1, $2);
            croak "line $lineno: unknown section '$name' in '$cur->{name}'" unless $SECTIONS{$name};
            croak "line $lineno: duplicate section '$name' in '$cur->{name}'"
                if exists $cur->{sections}{$name};
            $inline =~ s/^\s+|\s+$//g if defined $inline;
            $cur->{sections}{$name} = defined $inline ? $inline : '';
            $sec = defined $inline ? undef : $name;    # "--- x: value" has no body
        } elsif (defined $sec) {
            $cur->{sections}{$sec} .= "$line\n";
        } elsif ($line =~ /\S/) {
            croak "line $lineno: text outside any section in '$cur->{name}': $line";
        }
    }
    for my $b (@blocks) {
        s/\s+\z// for values %{ $b->{sections} };
        s/\A\s+// for grep { defined } @{ $b->{sections} }{qw(error_code timeout wait allow_error_levels)};
    }
    return @blocks;
}

# Split a line into arguments: whitespace separated, "double quoted" args
# may contain spaces and \" \\ \n \t \r escapes.
sub split_args {
    my ($line) = @_;
    my %esc = (n => "\n", t => "\t", r => "\r");
    my @out;
    pos($line) = 0;
    while ($line =~ /\G\s*(?:"((?:[^"\\]|\\.)*)"|([^\s"]\S*))/gc) {
        if (defined $1) {
            (my $s = $1) =~ s/\\(.)/$esc{$1} \/\/ $1/ge;
            push @out, $s;
        } else {
            push @out, $2;
        }
    }
    croak "bad quoting in: $line" if $line =~ /\G\s*\S/gc;
    return @out;
}

# "Name: value" lines into a hash; repeated names become array refs.
sub _parse_headers {
    my ($text) = @_;
    my %h;
    for my $line (grep { /\S/ } split /\n/, $text // '') {
        my ($k, $v) = $line =~ /^\s*([^:\s]+)\s*:\s*(.*?)\s*$/ or croak "bad header line: $line";
        if (!exists $h{$k})      { $h{$k} = $v }
        elsif (ref $h{$k})       { push @{ $h{$k} }, $v }
        else                     { $h{$k} = [ $h{$k}, $v ] }
    }
    return %h;
}

sub _lines { grep { /\S/ && !/^\s*#/ } split /\n/, $_[0] // '' }

# ---------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------

# run(\*DATA or $text, %opts)
#   t => $t             harness object to use (default: a new one)
#   nginx => {...}      extra start_nginx()/nginx_t() options
#   module, worker_processes, master_process, daemon, thread_pool,
#   error_log_level, events_config, vars, env
#                       shortcuts for nginx => {...}
#   redis => 1          start redis even if no block mentions it
#   sim => 1 | {...}    start the simulator (hash: start_sim() options)
#   error_log_wait => 3 seconds to wait for "--- error_log" lines
#   any section name    default for blocks that lack that section
# Returns the harness object.  Call done_testing() yourself.
sub run {
    my ($src, %opts) = @_;
    my $text = ref $src eq 'GLOB' ? do { local $/; readline $src } : $src;
    croak 'run() needs a file handle or the block text' unless defined $text;
    my @blocks = parse($text);
    croak 'no blocks found (each starts with "=== name")' unless @blocks;

    my %defaults = map { $_ => delete $opts{$_} } grep { $SECTIONS{$_} } keys %opts;
    my %nginx = (%{ $opts{nginx} || {} },
        map { $_ => delete $opts{$_} } grep { $NGINX_OPTS{$_} } keys %opts);
    my @bad = grep { !$RUN_OPTS{$_} } keys %opts;
    croak "unknown run() options: @bad" if @bad;

    # Fail once, clearly, rather than in every block.
    Umlo::Test::module_path() if $nginx{module} // 1;

    my $t = $opts{t} // Umlo::Test->new;
    my $state = { t => $t, nginx => \%nginx, opts => \%opts };

    my @only = grep { exists $_->{sections}{only} } @blocks;
    @blocks = @only if @only;

    for my $b (@blocks) {
        my %s = (%defaults, %{ $b->{sections} });
        _run_block($state, $b->{name}, \%s);
    }
    return $t;
}

sub _run_block {
    my ($state, $name, $s) = @_;
    if (exists $s->{skip}) {
        SKIP: { Test::More::skip("$name: " . ($s->{skip} || 'skipped'), 1) }
        return;
    }
    # Anything that dies (nginx not starting, a bad redis_setup line, a
    # broken regex) fails this block and lets the next one run.
    eval { _run_block_body($state, $name, $s); 1 } and return;
    my $err = $@;
    Test::More::ok(0, "$name - block ran to completion");
    Test::More::diag($err);
}

sub _run_block_body {
    my ($state, $name, $s) = @_;
    my $t = $state->{t};

    my $cfg = join "\n", map { $s->{$_} // '' } qw(main_config http_config config);
    _ensure_redis($state, $s, $cfg);
    _ensure_sim($state, $s, $cfg);
    _redis_setup($t, $s->{redis_setup}) if defined $s->{redis_setup};

    my %nargs = (%{ $state->{nginx} },
        map { defined $s->{$_} ? ($_ => $s->{$_}) : () } qw(main_config http_config config));

    return _check_nginx_t($t, $name, $s, \%nargs) if defined $s->{nginx_t_fails};

    my $mark = _ensure_nginx($t, \%nargs);
    sleep $s->{wait} if $s->{wait};

    _check_request($t, $name, $s) if defined $s->{request};
    _check_logs($state, $name, $s, $mark);
}

sub _ensure_redis {
    my ($state, $s, $cfg) = @_;
    my $t = $state->{t};
    return if $t->redis_running;
    return unless $state->{opts}{redis} || defined $s->{redis_setup} || $cfg =~ /\$\{?UMLO_REDIS/;
    $t->start_redis;
}

# The simulator is shared by blocks; a block whose sim arguments differ
# from the running ones restarts it on the same port, so nginx configs
# that point at it stay valid.
sub _ensure_sim {
    my ($state, $s, $cfg) = @_;
    my $t = $state->{t};
    my $want = $state->{opts}{sim};
    return unless $want || defined $s->{sim_args} || $cfg =~ /\$\{?UMLO_SIM/;

    my %args = ref $want eq 'HASH' ? %$want : ();
    $args{args} = [ @{ $args{args} || [] }, split_args($s->{sim_args} // '') ];
    my $key = JSON::PP->new->canonical->encode(\%args);

    return if $t->sim_running && ($state->{sim_key} // '') eq $key;
    my $port = $t->sim_port;
    $t->stop_sim if $t->sim_running;
    $t->start_sim(%args, ($port ? (port => $port) : ()));
    $state->{sim_key} = $key;
}

sub _redis_setup {
    my ($t, $text) = @_;
    for my $line (_lines($t->expand($text))) {
        my @cmd = split_args($line);
        eval { $t->redis(@cmd); 1 } or die "redis_setup line '$line' failed: $@";
    }
}

# A running nginx with the very same rendered config is reused; otherwise
# it is restarted.  Returns the error-log mark the block's checks start at.
sub _ensure_nginx {
    my ($t, $nargs) = @_;
    my $conf = $t->nginx_conf(%$nargs);
    if ($t->nginx_running && ($t->nginx_instance->{conf} // '') eq $conf) {
        return $t->error_log_mark;
    }
    $t->stop_nginx;
    my $mark = $t->error_log_mark;
    $t->start_nginx(%$nargs);
    return $mark;
}

sub _check_nginx_t {
    my ($t, $name, $s, $nargs) = @_;
    my ($rc, $out) = $t->nginx_t(%$nargs);
    Test::More::ok($rc != 0, "$name - nginx -t fails")
        or Test::More::diag("nginx -t output:\n$out");
    for my $re (_lines($s->{nginx_t_fails})) {
        Test::More::like($out, qr/$re/, "$name - nginx -t output matches /$re/");
    }
}

sub _check_request {
    my ($t, $name, $s) = @_;
    my ($line) = _lines($t->expand($s->{request}));
    my ($method, $path) = split ' ', $line // '';
    croak "request section must be 'METHOD /path'" unless defined $path;

    my %ro = (headers => { _parse_headers($t->expand($s->{request_headers})) });
    $ro{timeout} = $s->{timeout} if $s->{timeout};
    $ro{body} = $t->expand($s->{request_body}) if defined $s->{request_body};
    $ro{json} = $JSON->decode($t->expand($s->{request_json})) if defined $s->{request_json};
    my $res = $t->request($method, $path, %ro);

    my $code = $s->{error_code} // 200;
    Test::More::is($res->{status}, $code, "$name - status $code")
        or Test::More::diag("response body:\n" . substr($res->{body}, 0, 2000));

    _check_headers($name, $res, $t->expand($s->{response_headers})) if defined $s->{response_headers};

    if (defined $s->{response_json}) {
        my $exp = $JSON->decode($t->expand($s->{response_json}));
        if (defined $res->{json} || $res->{body} =~ /^\s*null\s*$/) {
            Umlo::Test::json_contains($res->{json}, $exp, "$name - response json");
        } else {
            Test::More::ok(0, "$name - response json");
            Test::More::diag('response is not JSON (content-type: '
                . ($res->{headers}{'content-type'} // 'none') . "):\n" . substr($res->{body}, 0, 2000));
        }
    }
    if (defined $s->{response_body}) {
        (my $got = $res->{body}) =~ s/\n+\z//;
        Test::More::is($got, $t->expand($s->{response_body}), "$name - response body");
    }
    if (defined $s->{response_body_like}) {
        my $re = $t->expand($s->{response_body_like}, undef, 1);
        Test::More::like($res->{body}, qr/$re/, "$name - response body like");
    }
}

# "Name: value" exact, "Name: ~regex" regex, "!Name" must be absent.
sub _check_headers {
    my ($name, $res, $text) = @_;
    for my $line (_lines($text)) {
        if ($line =~ /^\s*!\s*(\S+)\s*$/) {
            Test::More::ok(!exists $res->{headers}{ lc $1 }, "$name - no header $1");
            next;
        }
        my ($h, $v) = $line =~ /^\s*([^:\s]+)\s*:\s*(.*?)\s*$/ or croak "bad response_headers line: $line";
        my $got = $res->{headers}{ lc $h };
        $got = join ', ', @$got if ref $got;
        if ($v =~ /^~\s*(.*)$/) {
            my $re = $1;
            Test::More::like($got // '', qr/$re/, "$name - header $h like /$re/");
        } else {
            Test::More::is($got, $v, "$name - header $h");
        }
    }
}

sub _check_logs {
    my ($state, $name, $s, $mark) = @_;
    my $t = $state->{t};
    my $wait = $state->{opts}{error_log_wait} // 3;
    for my $re (_lines($s->{error_log})) {
        $t->assert_error_log(qr/$re/, since => $mark, timeout => $wait,
            desc => "$name - error_log has /$re/");
    }

    my %allowed = map { $_ => 1 } split ' ', $s->{allow_error_levels} // '';
    my @levels = grep { !$allowed{$_} } @DEFAULT_BAD_LEVELS;
    my @forbidden = _lines($s->{no_error_log});
    push @forbidden, '\[(?:' . join('|', @levels) . ')\]' if @levels;
    for my $re (@forbidden) {
        $t->assert_no_error_log(qr/$re/, since => $mark, desc => "$name - no_error_log /$re/");
    }
}

1;
