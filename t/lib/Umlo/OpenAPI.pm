package Umlo::OpenAPI;

# Checks HTTP exchanges against an OpenAPI 3.0 document (docs/api.yaml):
# the operation exists, the status code is listed for it, the content
# type is one it lists, required headers are there, and the body is valid
# against the schema; requests are checked the same way (declared
# parameters and their values, the JSON body).
#
# The schema validator covers what OpenAPI 3.0 schemas use: $ref (local),
# type, nullable, properties, required, additionalProperties, items, enum,
# oneOf, anyOf, allOf, not, format (date-time, date, int32, int64, float,
# double), minimum, maximum, exclusiveMinimum, exclusiveMaximum,
# minLength, maxLength, pattern, minItems, maxItems, uniqueItems,
# minProperties, maxProperties.  A keyword it does not know is an error
# (lint() lists them, validate() dies), so a misspelt keyword cannot turn
# a check off silently.
#
# nullable: true accepts null whatever the other keywords say (the way
# most OpenAPI 3.0 tools read it, so "nullable: true" next to an
# "allOf: [$ref]" works); without it, null fails every "type".
#
# Use:
#
#     my $api = Umlo::OpenAPI->load('docs/api.yaml');
#     my @problems = $api->lint;
#     my @errors = $api->validate($api->schema('Status'), $data);
#     my @errors = $api->check_request(method => 'GET', uri => '/x?a=1');
#     my @errors = $api->check_response(method => 'GET', uri => '/x?a=1',
#         status => 200, headers => {...lower-case names}, body => $bytes);
#
# Every check_* call records what it saw, for coverage: unseen_operations()
# and unseen_parameters().

use strict;
use warnings;

use B ();
use Encode ();
use JSON::PP ();
use Scalar::Util qw(blessed);
use YAML::XS ();

my $JSON = JSON::PP->new->utf8->allow_nonref->canonical;

my %VALIDATION = map { $_ => 1 } qw(
    $ref type nullable properties required additionalProperties items enum
    oneOf anyOf allOf not format minimum maximum exclusiveMinimum
    exclusiveMaximum minLength maxLength pattern minItems maxItems
    uniqueItems minProperties maxProperties
);
my %ANNOTATION = map { $_ => 1 } qw(
    title description example default readOnly writeOnly deprecated
    externalDocs
);
my %TYPES = map { $_ => 1 } qw(string number integer boolean array object);
my %FORMATS = map { $_ => 1 } qw(date-time date int32 int64 float double);
my @METHODS = qw(get put post delete options head patch trace);

sub load {
    my ($class, $file) = @_;
    local $YAML::XS::Boolean = 'JSON::PP';
    my $doc = YAML::XS::LoadFile($file);
    die "$file: not an OpenAPI 3.0 document\n"
        unless ref $doc eq 'HASH' && ($doc->{openapi} // '') =~ /^3\.0\.\d+$/;
    return $class->from_data($doc, $file);
}

sub from_data {
    my ($class, $doc, $name) = @_;
    return bless { doc => $doc, name => $name // 'api', seen => {},
        seen_params => {}, media_checks => {} }, $class;
}

sub doc { $_[0]{doc} }

# A body check for a media type that is not JSON: $code->($body) returns
# a list of errors.  E.g. text/csv, or Prometheus' text/plain.
sub media_check {
    my ($self, $type, $code) = @_;
    $self->{media_checks}{ lc $type } = $code;
}

sub schema {
    my ($self, $name) = @_;
    return $self->resolve("#/components/schemas/$name");
}

sub resolve {
    my ($self, $ref) = @_;
    die "only local references are supported: $ref\n" unless $ref =~ m{^#(/.*)?$};
    my $node = $self->{doc};
    for my $part (split m{/}, substr($ref, 2)) {
        $part =~ s/~1/\//g;
        $part =~ s/~0/~/g;
        die "unresolved reference $ref\n"
            unless ref $node eq 'HASH' && exists $node->{$part};
        $node = $node->{$part};
    }
    return $node;
}

# $obj with its $ref followed (responses, parameters, headers)
sub _deref {
    my ($self, $obj) = @_;
    my %seen;
    while (ref $obj eq 'HASH' && exists $obj->{'$ref'}) {
        die "reference loop at $obj->{'$ref'}\n" if $seen{ $obj->{'$ref'} }++;
        $obj = $self->resolve($obj->{'$ref'});
    }
    return $obj;
}

# ---------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------

# The JSON kind of a decoded value, without touching its flags.
sub kind {
    my ($v) = @_;
    return 'null' unless defined $v;
    if (ref $v) {
        return 'boolean' if blessed($v) && $v->isa('JSON::PP::Boolean');
        return 'object'  if ref $v eq 'HASH';
        return 'array'   if ref $v eq 'ARRAY';
        return 'unknown';
    }
    # JSON::PP gives numbers without POK and strings without IOK/NOK;
    # YAML::XS gives plain numbers both, quoted ones POK only
    my $flags = B::svref_2object(\$v)->FLAGS;
    return 'string' unless $flags & (B::SVf_IOK | B::SVf_NOK);
    my $n = $v;
    return $n == int($n) ? 'integer' : 'number';
}

sub _show {
    my ($v) = @_;
    my $k = kind($v);
    return 'null' if $k eq 'null';
    return $$v ? 'true' : 'false' if $k eq 'boolean';
    my $copy = ref $v ? $v : do { my $c = $v; $c };
    my $text = ($k eq 'string') ? $JSON->encode("$copy")
             : ref $copy ? $JSON->encode($copy) : "$copy";
    $text = Encode::decode('UTF-8', $text) unless utf8::is_utf8($text);
    return length $text > 80 ? substr($text, 0, 77) . '...' : $text;
}

sub _equal {
    my ($a, $b) = @_;
    my ($ka, $kb) = (kind($a), kind($b));
    $ka = 'number' if $ka eq 'integer';
    $kb = 'number' if $kb eq 'integer';
    return 0 unless $ka eq $kb;
    return 1 if $ka eq 'null';
    return (!!$$a) == (!!$$b) if $ka eq 'boolean';
    if ($ka eq 'number') { my ($x, $y) = ($a, $b); return $x == $y }
    if ($ka eq 'string') { my ($x, $y) = ($a, $b); return $x eq $y }
    if ($ka eq 'array') {
        return 0 unless @$a == @$b;
        _equal($a->[$_], $b->[$_]) or return 0 for 0 .. $#$a;
        return 1;
    }
    if ($ka eq 'object') {
        return 0 unless join("\0", sort keys %$a) eq join("\0", sort keys %$b);
        _equal($a->{$_}, $b->{$_}) or return 0 for keys %$a;
        return 1;
    }
    return 0;
}

my %DAYS = (1 => 31, 2 => 29, 3 => 31, 4 => 30, 5 => 31, 6 => 30,
            7 => 31, 8 => 31, 9 => 30, 10 => 31, 11 => 30, 12 => 31);

sub _date_ok {
    my ($y, $m, $d) = @_;
    return 0 unless $m >= 1 && $m <= 12 && $d >= 1 && $d <= $DAYS{ $m + 0 };
    return 0 if $m == 2 && $d == 29 && !($y % 4 == 0 && ($y % 100 != 0 || $y % 400 == 0));
    return 1;
}

sub _format_error {
    my ($format, $v, $k) = @_;
    if ($format eq 'date-time') {
        return 'is not an RFC 3339 date-time' unless $k eq 'string'
            && $v =~ /^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.\d+)?(?:[Zz]|[+-](\d\d):(\d\d))\z/
            && _date_ok($1, $2, $3) && $4 <= 23 && $5 <= 59 && $6 <= 60
            && (!defined $7 || ($7 <= 23 && $8 <= 59));
    } elsif ($format eq 'date') {
        return 'is not an RFC 3339 full-date' unless $k eq 'string'
            && $v =~ /^(\d{4})-(\d\d)-(\d\d)\z/ && _date_ok($1, $2, $3);
    } elsif ($format eq 'int32') {
        return 'is out of the int32 range'
            if $k eq 'integer' && ($v < -2**31 || $v > 2**31 - 1);
    } elsif ($format eq 'int64') {
        return 'is out of the int64 range'
            if $k eq 'integer' && ($v < -2**63 || $v >= 2**63);
    }
    return undef;
}

# ---------------------------------------------------------------------------
# schema validation
# ---------------------------------------------------------------------------

# Errors ("$.path: what") of $data against $schema; empty when valid.
sub validate {
    my ($self, $schema, $data, $path) = @_;
    my @err;
    $self->_validate($schema, $data, $path // '$', \@err, 0);
    return @err;
}

sub _validate {
    my ($self, $s, $v, $p, $err, $depth) = @_;
    die "schema nesting too deep at $p (a reference loop?)\n" if $depth > 200;
    die "$p: schema is not an object\n" unless ref $s eq 'HASH';

    if (exists $s->{'$ref'}) {
        # OpenAPI 3.0: keywords next to $ref are ignored (lint() flags them)
        return $self->_validate($self->resolve($s->{'$ref'}), $v, $p, $err, $depth + 1);
    }

    for my $kw (keys %$s) {
        next if $VALIDATION{$kw} || $ANNOTATION{$kw} || $kw =~ /^x-/;
        die "$p: unknown schema keyword \"$kw\"\n";
    }

    my $k = kind($v);

    if ($k eq 'null' && _true($s->{nullable})) {
        return;
    }

    if (defined(my $type = $s->{type})) {
        die "$p: type must be one of " . join(', ', sort keys %TYPES) . ", not "
            . _show($type) . "\n" if ref $type || !$TYPES{$type};
        my $ok = $k eq $type || ($type eq 'number' && $k eq 'integer');
        unless ($ok) {
            push @$err, "$p: expected $type, got " . ($k eq 'integer' ? 'number' : $k)
                . ' ' . _show($v);
            return;
        }
    }

    if (exists $s->{enum}) {
        die "$p: enum must be a list\n" unless ref $s->{enum} eq 'ARRAY';
        push @$err, "$p: " . _show($v) . ' is not one of '
            . join(', ', map { _show($_) } @{ $s->{enum} })
            unless grep { _equal($v, $_) } @{ $s->{enum} };
    }

    if (defined(my $f = $s->{format})) {
        die "$p: unknown format \"$f\"\n" unless $FORMATS{$f};
        my $e = _format_error($f, $v, $k);
        push @$err, "$p: " . _show($v) . " $e" if $e && ($k eq 'string' || $k eq 'integer');
    }

    if ($k eq 'integer' || $k eq 'number') {
        my $n = $v;
        push @$err, "$p: $n is less than $s->{minimum}"
            if defined $s->{minimum} && ($n < $s->{minimum}
                || (_true($s->{exclusiveMinimum}) && $n == $s->{minimum}));
        push @$err, "$p: $n is more than $s->{maximum}"
            if defined $s->{maximum} && ($n > $s->{maximum}
                || (_true($s->{exclusiveMaximum}) && $n == $s->{maximum}));
    }

    if ($k eq 'string') {
        my $str = $v;
        my $len = length(utf8::is_utf8($str) ? $str : Encode::decode('UTF-8', $str));
        push @$err, "$p: " . _show($v) . " is shorter than $s->{minLength}"
            if defined $s->{minLength} && $len < $s->{minLength};
        push @$err, "$p: " . _show($v) . " is longer than $s->{maxLength}"
            if defined $s->{maxLength} && $len > $s->{maxLength};
        if (defined $s->{pattern}) {
            my $re = eval { qr/$s->{pattern}/ }
                or die "$p: pattern $s->{pattern} does not compile: $@\n";
            push @$err, "$p: " . _show($v) . " does not match /$s->{pattern}/"
                unless $str =~ $re;
        }
    }

    if ($k eq 'array') {
        push @$err, "$p: " . scalar(@$v) . " items, fewer than $s->{minItems}"
            if defined $s->{minItems} && @$v < $s->{minItems};
        push @$err, "$p: " . scalar(@$v) . " items, more than $s->{maxItems}"
            if defined $s->{maxItems} && @$v > $s->{maxItems};
        if (_true($s->{uniqueItems})) {
            for my $i (0 .. $#$v) {
                for my $j ($i + 1 .. $#$v) {
                    push @$err, "$p: items $i and $j are equal"
                        if _equal($v->[$i], $v->[$j]);
                }
            }
        }
        if (defined $s->{items}) {
            $self->_validate($s->{items}, $v->[$_], "$p\[$_]", $err, $depth + 1)
                for 0 .. $#$v;
        }
    }

    if ($k eq 'object') {
        my $props = $s->{properties} || {};
        die "$p: properties must be an object\n" unless ref $props eq 'HASH';
        for my $name (@{ $s->{required} || [] }) {
            push @$err, "$p: required property \"$name\" is missing"
                unless exists $v->{$name};
        }
        my $n = keys %$v;
        push @$err, "$p: $n properties, fewer than $s->{minProperties}"
            if defined $s->{minProperties} && $n < $s->{minProperties};
        push @$err, "$p: $n properties, more than $s->{maxProperties}"
            if defined $s->{maxProperties} && $n > $s->{maxProperties};
        for my $name (sort keys %$v) {
            my $sub = _prop_path($p, $name);
            if (exists $props->{$name}) {
                $self->_validate($props->{$name}, $v->{$name}, $sub, $err, $depth + 1);
            } elsif (exists $s->{additionalProperties}) {
                my $ap = $s->{additionalProperties};
                if (ref $ap eq 'HASH') {
                    $self->_validate($ap, $v->{$name}, $sub, $err, $depth + 1);
                } elsif (!_true($ap)) {
                    push @$err, "$p: property \"$name\" is not allowed (additionalProperties: false)";
                }
            }
        }
    }

    for my $sub (@{ $s->{allOf} || [] }) {
        $self->_validate($sub, $v, $p, $err, $depth + 1);
    }

    if ($s->{anyOf}) {
        my @all;
        my $ok = 0;
        for my $i (0 .. $#{ $s->{anyOf} }) {
            my @e;
            $self->_validate($s->{anyOf}[$i], $v, $p, \@e, $depth + 1);
            if (!@e) { $ok = 1; last }
            push @all, map { "  anyOf[$i]: $_" } @e;
        }
        push @$err, "$p: matches none of anyOf\n" . join("\n", @all) unless $ok;
    }

    if ($s->{oneOf}) {
        my (@all, @ok);
        for my $i (0 .. $#{ $s->{oneOf} }) {
            my @e;
            $self->_validate($s->{oneOf}[$i], $v, $p, \@e, $depth + 1);
            if (@e) { push @all, map { "  oneOf[$i]: $_" } @e } else { push @ok, $i }
        }
        push @$err, "$p: matches none of oneOf\n" . join("\n", @all) if !@ok;
        push @$err, "$p: matches more than one of oneOf (@ok)" if @ok > 1;
    }

    if ($s->{not}) {
        my @e;
        $self->_validate($s->{not}, $v, $p, \@e, $depth + 1);
        push @$err, "$p: must not match the \"not\" schema" unless @e;
    }
    return;
}

sub _true { my ($b) = @_; return defined $b && (ref $b ? !!$$b : ($b && $b ne 'false')) }

sub _prop_path {
    my ($p, $name) = @_;
    return $name =~ /^[A-Za-z_][A-Za-z0-9_]*\z/ ? "$p.$name" : "$p\[" . $JSON->encode("$name") . ']';
}

# ---------------------------------------------------------------------------
# the document itself
# ---------------------------------------------------------------------------

# Problems in the document: unresolved references, unknown keywords or
# types, operations without responses, path parameters not declared.
sub lint {
    my ($self) = @_;
    my @p;
    my $doc = $self->{doc};
    my $walk_schema;
    $walk_schema = sub {
        my ($s, $where) = @_;
        unless (ref $s eq 'HASH') { push @p, "$where: schema is not an object"; return }
        if (exists $s->{'$ref'}) {
            eval { $self->resolve($s->{'$ref'}); 1 } or push @p, "$where: $@" =~ s/\n//r;
            my @extra = grep { $_ ne '$ref' && !$ANNOTATION{$_} && !/^x-/ } keys %$s;
            push @p, "$where: keywords next to \$ref are ignored: @extra" if @extra;
            return;
        }
        for my $kw (sort keys %$s) {
            push @p, "$where: unknown schema keyword \"$kw\""
                unless $VALIDATION{$kw} || $ANNOTATION{$kw} || $kw =~ /^x-/;
        }
        push @p, "$where: bad type " . _show($s->{type})
            if exists $s->{type} && (ref $s->{type} || !$TYPES{ $s->{type} // '' });
        push @p, "$where: unknown format \"$s->{format}\""
            if exists $s->{format} && !$FORMATS{ $s->{format} };
        if (exists $s->{pattern}) {
            eval { qr/$s->{pattern}/; 1 } or push @p, "$where: bad pattern: $@";
        }
        push @p, "$where: required must be a list"
            if exists $s->{required} && ref $s->{required} ne 'ARRAY';
        if (ref $s->{properties} eq 'HASH') {
            $walk_schema->($s->{properties}{$_}, "$where.properties.$_")
                for sort keys %{ $s->{properties} };
        } elsif (exists $s->{properties}) {
            push @p, "$where: properties must be an object";
        }
        if (ref $s->{required} eq 'ARRAY' && ref $s->{properties} eq 'HASH'
            && exists $s->{additionalProperties} && !_true($s->{additionalProperties}))
        {
            for my $r (@{ $s->{required} }) {
                push @p, "$where: required \"$r\" is not among the properties"
                    unless exists $s->{properties}{$r};
            }
        }
        $walk_schema->($s->{items}, "$where.items") if exists $s->{items};
        $walk_schema->($s->{not}, "$where.not") if exists $s->{not};
        $walk_schema->($s->{additionalProperties}, "$where.additionalProperties")
            if ref $s->{additionalProperties} eq 'HASH';
        for my $kw (qw(allOf anyOf oneOf)) {
            next unless exists $s->{$kw};
            if (ref $s->{$kw} ne 'ARRAY' || !@{ $s->{$kw} }) {
                push @p, "$where: $kw must be a non-empty list";
                next;
            }
            $walk_schema->($s->{$kw}[$_], "$where.$kw\[$_]") for 0 .. $#{ $s->{$kw} };
        }
    };
    my $walk_content = sub {
        my ($c, $where) = @_;
        return unless $c;
        for my $mt (sort keys %$c) {
            if (exists $c->{$mt}{schema}) {
                $walk_schema->($c->{$mt}{schema}, "$where.content.$mt.schema");
            } else {
                push @p, "$where.content.$mt: no schema";
            }
        }
    };
    my $walk_headers = sub {
        my ($h, $where) = @_;
        for my $name (sort keys %{ $h || {} }) {
            my $hd = eval { $self->_deref($h->{$name}) };
            unless ($hd) { push @p, "$where.headers.$name: $@" =~ s/\n//r; next }
            $walk_schema->($hd->{schema}, "$where.headers.$name.schema") if $hd->{schema};
        }
    };
    my $walk_response = sub {
        my ($r, $where) = @_;
        my $resp = eval { $self->_deref($r) };
        unless ($resp) { push @p, "$where: $@" =~ s/\n//r; return }
        push @p, "$where: no description" unless defined $resp->{description};
        $walk_headers->($resp->{headers}, $where);
        $walk_content->($resp->{content}, $where);
    };

    for my $name (sort keys %{ $doc->{components}{schemas} || {} }) {
        $walk_schema->($doc->{components}{schemas}{$name}, "components.schemas.$name");
    }
    for my $path (sort keys %{ $doc->{paths} || {} }) {
        my $item = $doc->{paths}{$path};
        my @tpl = $path =~ /\{([^}]+)\}/g;
        if (exists $item->{'x-umlo-other-methods'}) {
            $walk_response->($item->{'x-umlo-other-methods'}, "$path x-umlo-other-methods");
        }
        for my $m (@METHODS) {
            my $op = $item->{$m} or next;
            my $w = uc($m) . " $path";
            my %declared;
            for my $prm (@{ $item->{parameters} || [] }, @{ $op->{parameters} || [] }) {
                my $pd = eval { $self->_deref($prm) };
                unless ($pd) { push @p, "$w: parameter: $@" =~ s/\n//r; next }
                push @p, "$w: parameter without name or in" unless $pd->{name} && $pd->{in};
                $declared{"$pd->{in}:$pd->{name}"} = 1;
                if ($pd->{schema}) { $walk_schema->($pd->{schema}, "$w parameter $pd->{name}") }
                else { push @p, "$w: parameter $pd->{name} has no schema" }
            }
            for my $t (@tpl) {
                push @p, "$w: path parameter {$t} is not declared" unless $declared{"path:$t"};
            }
            if ($op->{requestBody}) {
                my $rb = eval { $self->_deref($op->{requestBody}) };
                if ($rb) { $walk_content->($rb->{content}, "$w requestBody") }
                else { push @p, "$w requestBody: $@" =~ s/\n//r }
            }
            my $responses = $op->{responses};
            unless (ref $responses eq 'HASH' && %$responses) {
                push @p, "$w: no responses";
                next;
            }
            for my $code (sort keys %$responses) {
                push @p, "$w: bad response key \"$code\""
                    unless $code =~ /^(?:[1-5](?:\d\d|XX)|default)\z/;
                $walk_response->($responses->{$code}, "$w $code");
            }
        }
    }
    for my $kind (qw(responses parameters headers)) {
        for my $name (sort keys %{ $doc->{components}{$kind} || {} }) {
            my $obj = $doc->{components}{$kind}{$name};
            if ($kind eq 'responses') { $walk_response->($obj, "components.responses.$name") }
            elsif (ref $obj eq 'HASH' && $obj->{schema}) {
                $walk_schema->($obj->{schema}, "components.$kind.$name.schema");
            }
        }
    }
    return @p;
}

# Every [METHOD, path] the document describes.
sub operations {
    my ($self) = @_;
    my @ops;
    for my $path (sort keys %{ $self->{doc}{paths} || {} }) {
        for my $m (@METHODS) {
            push @ops, [ uc $m, $path ] if $self->{doc}{paths}{$path}{$m};
        }
    }
    return @ops;
}

# ---------------------------------------------------------------------------
# requests and responses
# ---------------------------------------------------------------------------

sub _unescape {
    my ($s) = @_;
    $s =~ tr/+/ /;
    $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
    return $s;
}

# (path template, path item, {param => value}) for a concrete path; a
# literal path wins over a template.
sub find_path {
    my ($self, $path) = @_;
    my $paths = $self->{doc}{paths} || {};
    return ($path, $paths->{$path}, {}) if $paths->{$path};
    for my $tpl (sort keys %$paths) {
        my @names = $tpl =~ /\{([^}]+)\}/g or next;
        my $re = join '', map { /^\{/ ? '([^/]+)' : quotemeta } split /(\{[^}]+\})/, $tpl;
        if (my @vals = $path =~ /^$re\z/) {
            my %params;
            @params{@names} = map { _unescape($_) } @vals;
            return ($tpl, $paths->{$tpl}, \%params);
        }
    }
    return;
}

sub _operation {
    my ($self, $method, $uri) = @_;
    my ($path, $query) = split /\?/, $uri, 2;
    my ($tpl, $item, $pparams) = $self->find_path($path);
    return (undef, "no path in $self->{name} matches $path") unless $item;
    my $m = lc $method;
    my $op = $item->{$m} // ($m eq 'head' ? $item->{get} : undef);
    return ({ tpl => $tpl, item => $item, op => $op, method => uc $method,
        key => uc($method) . " $tpl", path_params => $pparams, query => $query // '' });
}

sub _parameters {
    my ($self, $o) = @_;
    my %params;
    for my $prm (@{ $o->{item}{parameters} || [] }, @{ $o->{op}{parameters} || [] }) {
        my $pd = $self->_deref($prm);
        $params{"$pd->{in}:$pd->{name}"} = $pd;
    }
    return \%params;
}

# A parameter's raw text as the JSON value its schema describes, or undef
# and an error.
sub _param_value {
    my ($self, $pd, $raw) = @_;
    my $s = $self->_deref($pd->{schema} || {});
    my $type = $s->{type} // 'string';
    if ($type eq 'array') {
        my @parts = (($pd->{style} // 'form') eq 'form' && !_true($pd->{explode} // 1))
            ? split(/,/, $raw, -1) : ($raw);
        my $is = $self->_deref($s->{items} || {});
        return [ map { $self->_scalar_value($is->{type} // 'string', $_) } @parts ];
    }
    return $self->_scalar_value($type, $raw);
}

sub _scalar_value {
    my ($self, $type, $raw) = @_;
    if ($type eq 'integer' && $raw =~ /^-?\d+\z/) { return 0 + $raw }
    if ($type eq 'number' && $raw =~ /^-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\z/) { return 0 + $raw }
    if ($type eq 'boolean' && $raw =~ /^(?:true|false)\z/) {
        return $raw eq 'true' ? JSON::PP::true : JSON::PP::false;
    }
    return "$raw";
}

# Errors of a request: every query parameter declared, and valid; the JSON
# body valid against the requestBody.  Also records the parameters seen.
sub check_request {
    my ($self, %r) = @_;
    my ($o, $e) = $self->_operation($r{method}, $r{uri});
    return $e unless $o;
    return ("$o->{method} $o->{tpl} is not an operation of $self->{name}") unless $o->{op};
    my @err;
    my $params = $self->_parameters($o);
    my %seen;
    for my $pair (grep { length } split /&/, $o->{query}) {
        my ($name, $raw) = split /=/, $pair, 2;
        $name = _unescape($name);
        $raw = _unescape($raw // '');
        my $pd = $params->{"query:$name"};
        unless ($pd) { push @err, "query parameter \"$name\" is not declared for $o->{key}"; next }
        push @err, "query parameter \"$name\" appears twice" if $seen{$name}++;
        next if $raw eq '' && _true($pd->{allowEmptyValue});
        push @err, map { "query parameter $_" }
            $self->validate($pd->{schema}, $self->_param_value($pd, $raw), $name);
    }
    for my $name (sort keys %{ $o->{path_params} }) {
        my $pd = $params->{"path:$name"};
        push @err, $pd ? (map { "path parameter $_" }
            $self->validate($pd->{schema}, $self->_param_value($pd, $o->{path_params}{$name}), $name))
            : "path parameter {$name} is not declared";
    }
    for my $pd (values %$params) {
        push @err, "required $pd->{in} parameter \"$pd->{name}\" is missing"
            if _true($pd->{required}) && $pd->{in} eq 'query' && !$seen{ $pd->{name} };
    }
    if (defined $r{body} && length $r{body}) {
        my $rb = $o->{op}{requestBody} ? $self->_deref($o->{op}{requestBody}) : undef;
        my $mt = lc(($r{content_type} // 'application/json') =~ s/;.*//sr);
        $mt =~ s/\s+//g;
        if (!$rb) {
            push @err, "$o->{key} takes no request body";
        } elsif (!$rb->{content}{$mt}) {
            push @err, "request content type $mt is not one of "
                . join(', ', sort keys %{ $rb->{content} });
        } elsif ($mt =~ m{^application/(?:[\w.+-]+\+)?json\z}) {
            my $data = eval { $JSON->decode($r{body}) };
            if ($@) { push @err, "request body is not JSON: $@" =~ s/\n//r }
            else { push @err, map { "request body $_" } $self->validate($rb->{content}{$mt}{schema}, $data) }
        }
    } elsif ($o->{op}{requestBody} && _true($self->_deref($o->{op}{requestBody})->{required})) {
        push @err, "$o->{key} requires a body";
    }
    $self->{seen_params}{ $o->{key} }{$_} = 1 for keys %seen;
    return @err;
}

# Errors of a response to METHOD uri: status listed, content type listed,
# required headers present and valid, body valid (not for HEAD).
# $r{headers}: lower-case names; values are strings or lists of them.
sub check_response {
    my ($self, %r) = @_;
    my ($o, $e) = $self->_operation($r{method}, $r{uri});
    return $e unless $o;
    my $status = $r{status};
    my ($resp, $where);
    if (!$o->{op}) {
        my $other = $o->{item}{'x-umlo-other-methods'}
            or return "$o->{method} is not an operation of $o->{tpl}, and the path lists no answer for other methods";
        return "$o->{method} $o->{tpl}: status $status, but a method the path does not serve gets 405"
            unless $status == 405;
        $resp = $self->_deref($other);
        $where = "$o->{method} $o->{tpl} (x-umlo-other-methods)";
    } else {
        my $responses = $o->{op}{responses} || {};
        my $key = exists $responses->{$status} ? $status
                : exists $responses->{ substr($status, 0, 1) . 'XX' } ? substr($status, 0, 1) . 'XX'
                : exists $responses->{default} ? 'default' : undef;
        return "$o->{key}: status $status is not listed (listed: "
            . join(', ', sort keys %$responses) . ')' unless defined $key;
        $resp = $self->_deref($responses->{$key});
        $where = "$o->{key} $key";
    }
    $self->{seen}{ $o->{key} }{$status}++;

    my @err;
    my %h = %{ $r{headers} || {} };
    for my $name (sort keys %{ $resp->{headers} || {} }) {
        my $hd = $self->_deref($resp->{headers}{$name});
        my $v = $h{ lc $name };
        $v = join(', ', @$v) if ref $v eq 'ARRAY';
        if (!defined $v) {
            push @err, "$where: header $name is missing" if _true($hd->{required});
            next;
        }
        push @err, map { "$where: header $_" } $self->validate($hd->{schema} || {}, "$v", $name);
    }

    my $ct = $h{'content-type'};
    $ct = $ct->[0] if ref $ct eq 'ARRAY';
    my $body = $r{body} // '';
    my $content = $resp->{content};
    if (!$content || !%$content) {
        push @err, "$where: no body expected, got " . length($body) . ' bytes'
            if length $body;
        return @err;
    }
    unless (defined $ct) {
        push @err, "$where: no Content-Type";
        return @err;
    }
    (my $mt = lc $ct) =~ s/;.*//s;
    $mt =~ s/\s+//g;
    my $media = $content->{$mt};
    unless ($media) {
        push @err, "$where: content type $ct is not one of " . join(', ', sort keys %$content);
        return @err;
    }
    return @err if uc $r{method} eq 'HEAD';

    if ($mt =~ m{^application/(?:[\w.+-]+\+)?json\z}) {
        my $data = eval { $JSON->decode($body) };
        if ($@) {
            push @err, "$where: body is not JSON: " . ($@ =~ s/\n//r);
        } else {
            push @err, map { "$where: $_" } $self->validate($media->{schema} || {}, $data);
        }
    } else {
        if ($mt =~ m{^text/}) {
            my $copy = $body;
            push @err, "$where: body is not UTF-8 text"
                unless eval { Encode::decode('UTF-8', $copy, Encode::FB_CROAK); 1 };
        }
        if (my $check = $self->{media_checks}{$mt}) {
            push @err, map { "$where: $_" } $check->($body);
        }
    }
    return @err;
}

# Operations (METHOD path) no check_response() saw.
sub unseen_operations {
    my ($self) = @_;
    return grep { !$self->{seen}{$_} } map { "$_->[0] $_->[1]" } $self->operations;
}

# Query parameters ("METHOD path: name") no check_request() saw.
sub unseen_parameters {
    my ($self) = @_;
    my @out;
    for my $op ($self->operations) {
        my ($m, $path) = @$op;
        my $o = $self->_operation($m, $path) or next;
        my $key = "$m $path";
        for my $pd (values %{ $self->_parameters($o) }) {
            next unless $pd->{in} eq 'query';
            push @out, "$key: $pd->{name}" unless $self->{seen_params}{$key}{ $pd->{name} };
        }
    }
    return sort @out;
}

# Status codes of each operation that no response had.
sub unseen_statuses {
    my ($self) = @_;
    my @out;
    for my $op ($self->operations) {
        my ($m, $path) = @$op;
        my $key = "$m $path";
        my $responses = $self->{doc}{paths}{$path}{ lc $m }{responses} || {};
        for my $code (sort keys %$responses) {
            push @out, "$key $code" unless $self->{seen}{$key}{$code};
        }
    }
    return @out;
}

1;
