package Umlo::Webhook;

# A webhook receiver for the tests (t/lib/bin/webhook-receiver), the
# deliveries it recorded, and the receiver's side of the signature check,
# written from docs/operations.md's recipe.

use strict;
use warnings;

use Carp qw(croak);
use Digest::SHA qw(hmac_sha256_hex);
use File::Basename qw(dirname);
use File::Spec;
use JSON::PP ();
use Time::HiRes qw(sleep time);
use Umlo::Test qw(wait_for);

my $BIN = File::Spec->catfile(dirname(File::Spec->rel2abs(__FILE__)),
                              '..', 'bin', 'webhook-receiver');
my $JSON = JSON::PP->new->utf8->canonical;
my @RUNNING;

# Umlo::Webhook->start($t): a receiver logging into the test's temp dir.
sub start {
    my ($class, $t) = @_;
    my $log = $t->path('webhooks-' . (scalar(@RUNNING) + 1) . '.jsonl');
    my $pid = open(my $out, '-|', 'python3', $BIN, $log)
        // croak "cannot start $BIN: $!";
    my $line = <$out>;
    croak "webhook receiver did not start" unless defined $line
        && $line =~ /listening on (\d+)/;
    my $self = bless { pid => $pid, port => $1, log => $log, out => $out }, $class;
    push @RUNNING, $self;
    return $self;
}

sub url {
    my ($self, $path) = @_;
    return "http://127.0.0.1:$self->{port}$path";
}

sub stop {
    my ($self) = @_;
    return unless $self->{pid};
    local $?;    # called from END: keep the exit code of the test
    kill 'TERM', $self->{pid};
    waitpid $self->{pid}, 0;
    delete $self->{pid};
}

END { $_->stop for @RUNNING }

# Every request received so far, each {path, headers (lower-case names),
# body, json (decoded body), time, answer}.
sub requests {
    my ($self) = @_;
    open(my $fh, '<', $self->{log}) or return [];
    my @out;
    while (my $l = <$fh>) {
        my $r = eval { $JSON->decode($l) } or next;
        $r->{headers} = { map { lc($_) => $r->{headers}{$_} } keys %{ $r->{headers} } };
        $r->{json} = eval { $JSON->decode($r->{body}) };
        push @out, $r;
    }
    return \@out;
}

# Requests whose path starts with $prefix and, optionally, of one event.
sub received {
    my ($self, $prefix, $event) = @_;
    return [ grep {
        index($_->{path}, $prefix) == 0
            && (!defined $event || ($_->{headers}{'x-umlo-event'} // '') eq $event)
    } @{ $self->requests } ];
}

# Waits until $n requests match; returns them (or what came by the timeout).
sub wait_received {
    my ($self, $prefix, $event, $n, %o) = @_;
    my $got;
    wait_for(sub { $got = $self->received($prefix, $event); @$got >= $n },
             timeout => $o{timeout} // 20, interval => 0.1);
    return $got;
}

# The receiver's check: HMAC-SHA256 of "TIMESTAMP.BODY" with the secret,
# hex, in "X-Umlo-Signature: sha256=HEX"; the timestamp must be recent.
sub verify {
    my ($req, $secret, %o) = @_;
    my $ts = $req->{headers}{'x-umlo-timestamp'} // return 'no timestamp';
    my $sig = $req->{headers}{'x-umlo-signature'} // return 'no signature';
    return 'timestamp too old' if abs(time - $ts) > ($o{max_age} // 300);
    my $want = 'sha256=' . hmac_sha256_hex("$ts.$req->{body}", $secret);
    return $sig eq $want ? undef : "signature mismatch: $sig vs $want";
}

1;
