#!/usr/bin/env bash
# The whole test suite (unit, allocation and integration) against a build
# with AddressSanitizer and UndefinedBehaviorSanitizer (GCC), in its own
# build directory. Any sanitizer report aborts the process that made it, so
# the test that ran it fails; a leak at exit counts as an error too.
#
#   scripts/sanitize-test.sh            (part of `make test`)
#
# ctest gives each integration test DNSGATE_BIN=<this build's dnsgate>, so
# the integration suite drives the sanitized binary.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${ASAN_BUILD_DIR:-$repo/build-asan}
jobs=${JOBS:-$(nproc)}

cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDNSGATE_WERROR=ON \
  -DDNSGATE_SANITIZE=ON -DDNSGATE_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$jobs"

# abort_on_error: a report ends the process with SIGABRT, never a clean exit.
# detect_leaks: LeakSanitizer runs at exit (dnsgate exits after SIGTERM).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# valgrind cannot run an ASan binary: test_valgrind runs in the normal suite.
# LeakSanitizer stops the world with ptrace at exit, which no seccomp
# allow-list has: integration.seccomp and test_supervisor (whose proxies
# run under the filter) run in the normal suite only.
cd "$build"
ctest --output-on-failure -j "$jobs" -E '^integration\.(test_valgrind|seccomp|test_supervisor.*)$'
