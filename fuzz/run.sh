#!/usr/bin/env bash
# Builds every libFuzzer target (clang 14, ASan + UBSan) in build-fuzz/ and
# runs each for SECONDS (default 60) on a scratch copy of its seed corpus
# (fuzz/corpus/<target>/ is never written to). Prints each target's
# executions and coverage; exits non-zero if any target finds a crash, a
# leak, a timeout or a failed invariant, and keeps the input that did it in
# build-fuzz/artifacts/.
#
#   fuzz/run.sh [--build-only | --no-build] [SECONDS]     (make fuzz FUZZ_SECONDS=N)
#
# The targets run FUZZ_JOBS at a time (default: the number of cores), each
# a single libFuzzer process for its full SECONDS: on 2 cores the 7 targets
# take 4 rounds of SECONDS instead of 7. `make test` builds (--build-only)
# beside the normal suite and runs the targets one at a time beside the
# ASan suite (--no-build, FUZZ_JOBS=1).
#
# Reproduce a finding: build-fuzz/fuzz/<target> build-fuzz/artifacts/<file>
set -euo pipefail

do_build=1
do_run=1
case "${1:-}" in
  --build-only) do_run=0; shift ;;
  --no-build) do_build=0; shift ;;
esac
seconds=${1:-60}
case "$seconds" in '' | *[!0-9]*) echo "usage: $0 [--build-only | --no-build] [SECONDS]" >&2; exit 2 ;; esac
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$repo/build-fuzz}
cxx=${FUZZ_CXX:-clang++-14}
jobs=${FUZZ_JOBS:-$(nproc)}
case "$jobs" in '' | *[!0-9]* | 0) echo "$0: FUZZ_JOBS must be a positive number" >&2; exit 2 ;; esac
targets=(parser_fuzz allowlist_fuzz upstream_response_fuzz config_fuzz stream_answer_fuzz doq_answer_fuzz
  dnssec_validator_fuzz)

if [ "$do_build" -eq 1 ]; then
  command -v "$cxx" >/dev/null || { echo "$cxx not found: run scripts/install-deps.sh" >&2; exit 1; }
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDNSGATE_WERROR=ON \
    -DCMAKE_CXX_COMPILER="$cxx" -DDNSGATE_BUILD_FUZZ=ON \
    -DDNSGATE_BUILD_TESTS=OFF -DDNSGATE_BUILD_BENCH=OFF >/dev/null
  cmake --build "$build" --target fuzzers -j "$(nproc)"
fi
[ "$do_run" -eq 1 ] || exit 0
for target in "${targets[@]}"; do
  [ -x "$build/fuzz/$target" ] || { echo "$0: no $build/fuzz/$target: build first" >&2; exit 1; }
done

scratch=$(mktemp -d /tmp/dnsgate-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$build/artifacts"

# One target, its full time; the exit code goes to $scratch/<target>.rc.
run_target() {
  local target=$1 work="$scratch/$1" rc=0
  mkdir -p "$work/corpus"
  cp "$repo/fuzz/corpus/$target/"* "$work/corpus/"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: 2 GiB is a leak or a bomb.
  "$build/fuzz/$target" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="$build/artifacts/$target-" "$work/corpus" \
    >"$build/artifacts/$target.log" 2>&1 || rc=$?
  echo "$rc" >"$scratch/$target.rc"
}

echo "fuzz: ${#targets[@]} targets, ${seconds} s each, $jobs at a time"
running=0
for target in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  run_target "$target" &
  running=$((running + 1))
done
wait || true

failed=()
printf '%-24s %12s %10s %8s %8s %s\n' target executions exec/s cov ft result
for target in "${targets[@]}"; do
  log="$build/artifacts/$target.log"
  rc=$(cat "$scratch/$target.rc" 2>/dev/null || echo '?')
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
  execs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
  speed=$(grep -oE '^stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$done_line")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$done_line")
  if [ "$rc" = 0 ] && [ -n "$done_line" ]; then
    result=ok
  else
    result="FAILED (exit $rc)"
    failed+=("$target")
  fi
  printf '%-24s %12s %10s %8s %8s %s\n' "$target" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "$result"
  [ -n "$done_line" ] && echo "    $done_line"
  if [ "$result" != ok ]; then
    echo "---- $target: last lines of $log" >&2
    tail -n 40 "$log" >&2
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}; inputs kept in $build/artifacts/" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, no crash"
