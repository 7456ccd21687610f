#!/usr/bin/env bash
# The whole test suite (unit, allocation and integration) against a build
# with AddressSanitizer and UndefinedBehaviorSanitizer (GCC), in its own
# build directory. Any sanitizer report aborts the process that made it, so
# the test that ran it fails; a leak at exit counts as an error too.
#
#   scripts/sanitize-test.sh [--build-only | --no-build]     (part of `make test`)
#
# `make test` builds with --build-only while the normal suite runs, then
# runs the suites with --no-build. DOQ_SERVER_DIR, when given, is a
# directory that already holds the DoQ test server (the normal build's
# tests/doq_server): it is used as it is instead of being built again.
#
# ctest gives each integration test DNSGATE_BIN=<this build's dnsgate>, so
# the integration suite drives the sanitized binary, with DNSGATE_IO=auto:
# on io_uring where the kernel has it; `make test` runs the normal suite on
# epoll (the default), so each backend gets the whole suite.
set -euo pipefail

do_build=1
do_test=1
case "${1:-}" in
  --build-only) do_test=0 ;;
  --no-build) do_build=0 ;;
  '') ;;
  *) echo "usage: $0 [--build-only | --no-build]" >&2; exit 2 ;;
esac
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${ASAN_BUILD_DIR:-$repo/build-asan}
jobs=${JOBS:-$(nproc)}

if [ "$do_build" -eq 1 ]; then
  # -O1 -g1 in place of RelWithDebInfo's -O2 -g: half the compile time
  # (docs/hardening.md, "Time in CI"); -O1 is what ASan's own documentation
  # advises, and -g1's line tables keep file:line in every report's stack.
  # GCC 12 at -O1 under ASan reports a memset "bound 2^64-4" inside
  # std::vector::resize (tests/unit/dnssec_rewrite_test.cpp, a resize to
  # size() - 3 of a longer vector): a warning here, as the normal -O2 build
  # (which has every warning as an error) does not see it.
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDNSGATE_WERROR=ON \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG -Wno-error=stringop-overflow" \
    -DDNSGATE_SANITIZE=ON -DDNSGATE_BUILD_BENCH=OFF \
    -DDNSGATE_DOQ_TEST_SERVER_DIR="${DOQ_SERVER_DIR:-}" >/dev/null
  cmake --build "$build" -j "$jobs"
fi
[ "$do_test" -eq 1 ] || exit 0

# abort_on_error: a report ends the process with SIGABRT, never a clean exit.
# detect_leaks: LeakSanitizer runs at exit (dnsgate exits after SIGTERM).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# valgrind cannot run an ASan binary: test_valgrind runs in the normal suite.
# LeakSanitizer stops the world with ptrace at exit, which no seccomp
# allow-list has: integration.seccomp and test_supervisor (whose proxies
# run under the filter) run in the normal suite only.
cd "$build"
export DNSGATE_IO=auto
ctest --output-on-failure -j "$jobs" -E '^integration\.(test_valgrind|seccomp|test_supervisor.*)$'
