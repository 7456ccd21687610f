# The two entry points a new user needs: `make demo` and `make test`.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)

.PHONY: all deps build demo test unit integration sanitize fuzz format clean

# `make fuzz` runs each libFuzzer target FUZZ_SECONDS (default 60); `make test`
# runs them 20 s each unless FUZZ_SECONDS is given (docs/hardening.md).
FUZZ_SECONDS ?= 60
ifeq ($(origin FUZZ_SECONDS),file)
TEST_FUZZ_SECONDS := 20
else
TEST_FUZZ_SECONDS := $(FUZZ_SECONDS)
endif

all: build

deps:
	bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDNSGATE_WERROR=ON
	cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	bash scripts/demo.sh $(BUILD_DIR)/dnsgate

# Everything CI runs: the unit and integration suites, the same suites
# under ASan + UBSan (build-asan/), and a short run of every fuzz target
# (build-fuzz/). After the normal build, three lanes run side by side
# (docs/hardening.md, "Time in CI"): the integration suites mostly wait on
# sockets and timers, so the compilations (niced) fill the idle cores.
#   lane 1: the normal suite (build/)
#   lane 2: build build-asan/, then the ASan suite
#   lane 3: once build-asan/ is built, build build-fuzz/, then the fuzz
#           targets one at a time
# Lane 1 prints as it goes; lanes 2 and 3 log to $(BUILD_DIR)/test-*.log,
# shown at once when a step fails, and the ASan suite's output and the fuzz
# table are printed at the end.
TEST_LOGS := $(abspath $(BUILD_DIR))
.PHONY: test-suite test-asan-build test-asan-suite test-fuzz-build test-fuzz-run
test: build
	@$(MAKE) --no-print-directory -j3 test-suite test-asan-suite test-fuzz-run
	@echo "==== the ASan + UBSan suite (build-asan/)"; cat $(TEST_LOGS)/test-asan-suite.log
	@echo "==== the fuzz targets (build-fuzz/)"; cat $(TEST_LOGS)/test-fuzz-run.log

# The integration suites run once per I/O backend (config `io`): the normal
# suite on epoll (DNSGATE_IO=epoll, as the default), the ASan suite with
# DNSGATE_IO=auto, io_uring on this kernel; test_io_backend and the
# allocation test run both in each.
test-suite:
	@echo "make test: $$(date -u +%T) the unit and integration suites (build/, io: epoll)"
	cd $(BUILD_DIR) && DNSGATE_IO=epoll ctest --output-on-failure -j $(JOBS)
	@echo "make test: $$(date -u +%T) the normal suite passed"

test-asan-build:
	@echo "make test: $$(date -u +%T) building build-asan/ (log: $(TEST_LOGS)/test-asan-build.log)"
	@JOBS=$(JOBS) DOQ_SERVER_DIR=$(TEST_LOGS)/tests/doq_server nice -n 19 \
	  bash scripts/sanitize-test.sh --build-only >$(TEST_LOGS)/test-asan-build.log 2>&1 || \
	  { tail -n 100 $(TEST_LOGS)/test-asan-build.log; echo "make test: the ASan build failed" >&2; exit 1; }
	@echo "make test: $$(date -u +%T) build-asan/ built"

test-asan-suite: test-asan-build
	@echo "make test: $$(date -u +%T) the ASan + UBSan suite (log: $(TEST_LOGS)/test-asan-suite.log)"
	@JOBS=$(JOBS) bash scripts/sanitize-test.sh --no-build >$(TEST_LOGS)/test-asan-suite.log 2>&1 || \
	  { cat $(TEST_LOGS)/test-asan-suite.log; echo "make test: the ASan + UBSan suite failed" >&2; exit 1; }
	@echo "make test: $$(date -u +%T) the ASan + UBSan suite passed"

test-fuzz-build: test-asan-build
	@echo "make test: $$(date -u +%T) building build-fuzz/ (log: $(TEST_LOGS)/test-fuzz-build.log)"
	@nice -n 19 bash fuzz/run.sh --build-only >$(TEST_LOGS)/test-fuzz-build.log 2>&1 || \
	  { tail -n 100 $(TEST_LOGS)/test-fuzz-build.log; echo "make test: the fuzz build failed" >&2; exit 1; }
	@echo "make test: $$(date -u +%T) build-fuzz/ built"

test-fuzz-run: test-fuzz-build
	@echo "make test: $$(date -u +%T) the fuzz targets, $(TEST_FUZZ_SECONDS) s each, one at a time (log: $(TEST_LOGS)/test-fuzz-run.log)"
	@FUZZ_JOBS=1 nice -n 10 bash fuzz/run.sh --no-build $(TEST_FUZZ_SECONDS) >$(TEST_LOGS)/test-fuzz-run.log 2>&1 || \
	  { cat $(TEST_LOGS)/test-fuzz-run.log; echo "make test: a fuzz target failed" >&2; exit 1; }
	@echo "make test: $$(date -u +%T) the fuzz targets passed"

sanitize: deps
	JOBS=$(JOBS) bash scripts/sanitize-test.sh

fuzz: deps
	bash fuzz/run.sh $(FUZZ_SECONDS)

unit: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -L '' -E '^integration\.'

integration: build
	cd $(BUILD_DIR) && ctest --output-on-failure -R '^integration\.'

# The side-by-side benchmark (knotd direct, dnsgate, dnsdist, dnsmasq) and the
# micro-benchmark, then the DNSSEC mode (bench/dnssec.sh: validation off and
# on, and memory over 100,000 signed names); writes its tables to
# docs/performance.md; then bench/supervisor.sh (root: upgrades and kill -9
# under load in a cell's namespace, 50 idle cells), bench/delivery.sh (event
# delivery: the nats sink through a killed server, a 3-node cluster losing its
# leader, throughput, memory through a 60 s outage) and bench/operations.sh
# (scrape cost, 100 reloads in 10 s under load); the tables of these three
# are copied into docs/performance.md by hand. About 45 minutes.
.PHONY: bench
bench: build
	bash bench/run.sh $(BUILD_DIR)/dnsgate
	bash bench/dnssec.sh $(BUILD_DIR)/dnsgate
	bash bench/supervisor.sh $(BUILD_DIR)/dnsgate
	bash bench/delivery.sh $(BUILD_DIR)/dnsgate
	bash bench/operations.sh $(BUILD_DIR)/dnsgate

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp')

clean:
	rm -rf $(BUILD_DIR) build-asan build-fuzz

# `make install` copies what `make build` made, builds nothing: the binary to
# $(PREFIX)/bin, the systemd units (dist/systemd, ExecStart= pointed at that
# binary) to $(PREFIX)/lib/systemd/system, which systemd reads for
# PREFIX=/usr/local and /usr alike, an example cell config to
# $(PREFIX)/share/doc/dnsgate, and the man pages dnsgate(1) and
# dnsgate.yaml(5) (man/) to $(PREFIX)/share/man. DESTDIR stages the tree
# (for a package).
# docs/running.md, "systemd: socket activation".
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR ?= $(PREFIX)/share/doc/dnsgate

.PHONY: install
install:
	@test -x $(BUILD_DIR)/dnsgate || { echo "make install: no $(BUILD_DIR)/dnsgate: run 'make build' first" >&2; exit 1; }
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)
	install -m 0755 $(BUILD_DIR)/dnsgate $(DESTDIR)$(BINDIR)/dnsgate
	for unit in dnsgate@.service dnsgate@.socket; do \
	  sed 's|/usr/local/bin/dnsgate|$(BINDIR)/dnsgate|g' dist/systemd/$$unit >$(DESTDIR)$(UNITDIR)/$$unit && \
	  chmod 0644 $(DESTDIR)$(UNITDIR)/$$unit || exit 1; \
	done
	install -m 0644 dist/systemd/example.yaml $(DESTDIR)$(DOCDIR)/example.yaml
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 0644 man/dnsgate.1 $(DESTDIR)$(PREFIX)/share/man/man1/dnsgate.1
	install -m 0644 man/dnsgate.yaml.5 $(DESTDIR)$(PREFIX)/share/man/man5/dnsgate.yaml.5
