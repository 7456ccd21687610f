#!/usr/bin/env bash
# Builds every libFuzzer target (clang 14, ASan + UBSan) in build-fuzz/ and
# runs each for SECONDS (default 60) on a scratch copy of its seed corpus
# (fuzz/corpus/<target>/ is never written to). Prints each target's
# executions and coverage; exits non-zero if any target finds a crash, a
# leak, a timeout or a failed invariant, and keeps the input that did it in
# build-fuzz/artifacts/.
#
#   fuzz/run.sh [SECONDS]          (make fuzz FUZZ_SECONDS=N)
#
# Reproduce a finding: build-fuzz/fuzz/<target> build-fuzz/artifacts/<file>
set -euo pipefail

seconds=${1:-60}
case "$seconds" in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$repo/build-fuzz}
cxx=${FUZZ_CXX:-clang++-14}
targets=(parser_fuzz allowlist_fuzz upstream_response_fuzz config_fuzz stream_answer_fuzz doq_answer_fuzz
  dnssec_validator_fuzz)

command -v "$cxx" >/dev/null || { echo "$cxx not found: run scripts/install-deps.sh" >&2; exit 1; }

cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDNSGATE_WERROR=ON \
  -DCMAKE_CXX_COMPILER="$cxx" -DDNSGATE_BUILD_FUZZ=ON \
  -DDNSGATE_BUILD_TESTS=OFF -DDNSGATE_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target fuzzers -j "$(nproc)"

scratch=$(mktemp -d /tmp/dnsgate-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$build/artifacts"

failed=()
printf '%-24s %12s %10s %8s %8s %s\n' target executions exec/s cov ft result
summary=()
for target in "${targets[@]}"; do
  work="$scratch/$target"
  mkdir -p "$work/corpus"
  cp "$repo/fuzz/corpus/$target/"* "$work/corpus/"
  log="$build/artifacts/$target.log"
  set +e
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: 2 GiB is a leak or a bomb.
  "$build/fuzz/$target" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="$build/artifacts/$target-" "$work/corpus" >"$log" 2>&1
  rc=$?
  set -e
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
  execs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
  speed=$(grep -oE '^stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$done_line")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$done_line")
  if [ "$rc" -eq 0 ] && [ -n "$done_line" ]; then
    result=ok
  else
    result="FAILED (exit $rc)"
    failed+=("$target")
  fi
  summary+=("$(printf '%-24s %12s %10s %8s %8s %s' "$target" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "$result")")
  echo "${summary[-1]}"
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
