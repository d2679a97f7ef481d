# ngx_umlo: build, test and demo.
#
#   make            build build/ngx_umlo_module.so
#   make deps       install the Debian packages needed to build, run, test
#   make test       build and run the whole suite (prove -r t), then
#                   $(ASAN_SUBSET) against the ASan/UBSan build
#   make demo       Redis + simulator + nginx with the module, in the foreground
#   make asan       build build/asan/ngx_umlo_module.so (ASan + UBSan)
#   make test-asan  the suite against that build
#   make fuzz       each libFuzzer harness in fuzz/ for FUZZ_SECONDS (60)
#   make bench      every benchmark, on a quiet machine; writes docs/benchmarks*.md
#   make bench-smoke  every benchmark tool on a tiny org, in seconds (no figures)
#   make browser-deps  playwright-core for t/browser.t (npm ci; make test runs it)

NGX_SRC   ?= /usr/share/nginx/src
BUILD     := build
MODULE    := $(BUILD)/ngx_umlo_module.so
ASAN_SO   := $(BUILD)/asan/ngx_umlo_module.so

SRC_FILES := $(sort $(wildcard src/*.c src/*.h))

DEB_PKGS  := nginx nginx-dev libcurl4-openssl-dev libjansson-dev \
             libhiredis-dev libssl-dev redis-server redis-tools python3 perl \
             libjson-pp-perl libyaml-libyaml-perl gcc make wrk curl \
             python3-prometheus-client clang libclang-rt-dev valgrind \
             chromium
# Node.js for the browser tests (t/browser.t), only where no node is
# installed: Debian's npm conflicts with other builds of nodejs.
NODE_PKGS := nodejs npm
BROWSER   := t/browser

WARN      := -Wall -Wextra -Werror
ASAN_CC   := -fsanitize=address,undefined -fno-omit-frame-pointer -O1 -g
ASAN_LD   := -fsanitize=address,undefined

.PHONY: all deps check-deps browser-deps test test-asan demo asan bench \
        bench-smoke clean fuzz fuzz-build

all: $(MODULE)

# Packages are checked by the header or binary each one provides, so that a
# machine that already has them never needs apt.
check-deps:
	@missing=; \
	for f in $(NGX_SRC)/conf_flags /usr/sbin/nginx /usr/bin/curl-config \
	         /usr/include/jansson.h /usr/include/openssl/hmac.h \
	         /usr/include/hiredis/hiredis.h /usr/bin/redis-server \
	         /usr/bin/redis-cli /usr/bin/prove /usr/bin/python3 \
	         /usr/lib/python3/dist-packages/prometheus_client \
	         /usr/bin/chromium; do \
	    [ -e $$f ] || missing="$$missing $$f"; \
	done; \
	perl -MYAML::XS -e1 2>/dev/null || missing="$$missing YAML::XS"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	    echo "missing:$$missing; running make deps"; \
	    $(MAKE) --no-print-directory deps; \
	fi

deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $(DEB_PKGS) \
	    $$(command -v node >/dev/null 2>&1 || echo $(NODE_PKGS))

# playwright-core, exactly as the committed lock file says; it drives
# Debian's /usr/bin/chromium and downloads no browser.
browser-deps: $(BROWSER)/node_modules/.package-lock.json

$(BROWSER)/node_modules/.package-lock.json: $(BROWSER)/package-lock.json
	cd $(BROWSER) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
	    npm ci --no-audit --no-fund --loglevel=error

# $(1): build dir, $(2): extra cc opts, $(3): extra ld opts
define ngx_configure
	rm -rf $(1)/nginx
	mkdir -p $(1)
	cp -a $(NGX_SRC) $(1)/nginx
	cd $(1)/nginx && bash -c '. ./conf_flags && ./configure \
	    "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module="$(CURDIR)" \
	    --with-cc-opt="$(WARN) $(2)" --with-ld-opt="$(3)"' \
	    > ../configure.log 2>&1 \
	    || { tail -20 ../configure.log; exit 1; }
	touch $(1)/nginx/.configured
endef

$(BUILD)/rel/nginx/.configured: config
	@$(MAKE) --no-print-directory check-deps
	$(call ngx_configure,$(BUILD)/rel,-g -O2,)

$(BUILD)/asan/nginx/.configured: config
	@$(MAKE) --no-print-directory check-deps
	$(call ngx_configure,$(BUILD)/asan,$(ASAN_CC),$(ASAN_LD))

# a new file, renamed into place: a running nginx keeps its mapping intact
$(MODULE): $(BUILD)/rel/nginx/.configured $(SRC_FILES)
	$(MAKE) -C $(BUILD)/rel/nginx -f objs/Makefile modules
	cp $(BUILD)/rel/nginx/objs/ngx_umlo_module.so $@.tmp && mv -f $@.tmp $@

$(ASAN_SO): $(BUILD)/asan/nginx/.configured $(SRC_FILES)
	$(MAKE) -C $(BUILD)/asan/nginx -f objs/Makefile modules
	cp $(BUILD)/asan/nginx/objs/ngx_umlo_module.so $@.tmp && mv -f $@.tmp $@

asan: $(ASAN_SO)

# The whole suite, then the tests that drive the sync, the user browser
# and hostile input once more against the sanitized module.
ASAN_SUBSET ?= t/sync.t t/users.t t/hostile_http.t t/security.t

test: check-deps $(MODULE) $(ASAN_SO) browser-deps
	prove -r t
	$(ASAN_ENV) prove $(ASAN_SUBSET)

# The suite against the sanitized module: an ASan or UBSan report aborts
# the worker, and every test fails on the "[alert] ... exited on signal".
ASAN_ENV = UMLO_MODULE=$(CURDIR)/$(ASAN_SO) \
	UMLO_NGINX_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1 \
	UMLO_TIMEOUT_FACTOR=3

test-asan: check-deps $(ASAN_SO) browser-deps
	$(ASAN_ENV) prove -r t

# libFuzzer harnesses: the parsers are plain C over jansson, built here
# without nginx; sanitizers on, so a bug is a crash with a reproducer.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= 1
FUZZ_TARGETS := query cursor sync_body model headers
FUZZ_BIN     := $(BUILD)/fuzz
FUZZ_CFLAGS  := -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined -Wall -Wextra -Werror \
                -Isrc -Ifuzz
FUZZ_LIBS    := -ljansson -lhiredis -lcurl -lpthread

fuzz_srcs_query     := $(wildcard src/ngx_umlo_query*.c) src/ngx_umlo_snapshot.c \
                       src/ngx_umlo_utf8.c
fuzz_srcs_cursor    := $(fuzz_srcs_query)
fuzz_srcs_sync_body := src/ngx_umlo_syncbody.c src/ngx_umlo_utf8.c
fuzz_srcs_model     := src/ngx_umlo_model.c $(fuzz_srcs_query)
fuzz_srcs_headers   := src/ngx_umlo_atlassian.c src/ngx_umlo_snapshot.c

$(FUZZ_BIN)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_snap.h $(SRC_FILES)
	@mkdir -p $(FUZZ_BIN)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(fuzz_srcs_$*) $(FUZZ_LIBS)

fuzz-build: $(addprefix $(FUZZ_BIN)/fuzz_,$(FUZZ_TARGETS))

# The working corpus grows in build/fuzz/corpus; fuzz/corpus holds seeds.
fuzz: fuzz-build
	@for f in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_BIN)/corpus/$$f fuzz/corpus/$$f; \
	    echo "fuzz_$$f: $(FUZZ_SECONDS)s"; \
	    $(FUZZ_BIN)/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	        -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
	        $(if $(filter-out 1,$(FUZZ_JOBS)),-jobs=$(FUZZ_JOBS) \
	            -workers=$(FUZZ_JOBS)) \
	        -artifact_prefix=$(FUZZ_BIN)/crash-$$f- \
	        $(FUZZ_BIN)/corpus/$$f fuzz/corpus/$$f || exit 1; \
	done

demo: $(MODULE)
	@bash demo/run

# The full set takes about 1.5 hours; each tool writes its docs/ file only
# when it ran its full default set (BENCH_ARGS=--quick: a shorter check
# that writes nothing).
bench: check-deps $(MODULE)
	python3 bench/sync_bench.py $(BENCH_ARGS)
	python3 bench/sync_bench.py --scaling $(BENCH_ARGS)
	python3 bench/users_bench.py $(BENCH_ARGS)
	python3 bench/status_bench.py $(BENCH_ARGS)

# Seconds per tool, tiny orgs: checks that the tools still work, asserts no
# figure.  BENCH_SMOKE_OUT=DIR: also write the results files there.
bench-smoke: check-deps $(MODULE)
	python3 bench/sync_bench.py --smoke $(call smoke_out,benchmarks.md)
	python3 bench/sync_bench.py --smoke --scaling $(call smoke_out,benchmarks-scaling.md)
	python3 bench/users_bench.py --smoke $(call smoke_out,benchmarks-users.md)
	python3 bench/status_bench.py --smoke $(call smoke_out,benchmarks-status.md)

smoke_out = $(if $(BENCH_SMOKE_OUT),--write $(BENCH_SMOKE_OUT)/$(1))

clean:
	rm -rf $(BUILD) $(BROWSER)/node_modules
