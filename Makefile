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
# under ASan + UBSan (build-asan/), then a short run of every fuzz target
# (build-fuzz/).
test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)
	JOBS=$(JOBS) bash scripts/sanitize-test.sh
	bash fuzz/run.sh $(TEST_FUZZ_SECONDS)

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
# under load in a cell's namespace, 50 idle cells; its table is copied into
# docs/performance.md by hand). About 28 minutes.
.PHONY: bench
bench: build
	bash bench/run.sh $(BUILD_DIR)/dnsgate
	bash bench/dnssec.sh $(BUILD_DIR)/dnsgate
	bash bench/supervisor.sh $(BUILD_DIR)/dnsgate

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
