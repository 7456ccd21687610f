#!/usr/bin/env bash
# Installs what dnsgate needs to build, test and demo on Debian 12.
# Idempotent and non-interactive: packages already present are not touched,
# so a warm machine pays only for a few dpkg look-ups.
set -euo pipefail

packages=(
  # build
  cmake ninja-build g++ pkg-config
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev libidn2-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # peers and clients for the demo and the integration tests
  knot knot-dnsutils dnsutils dnsperf
  python3-dnspython python3-pytest
  nodejs npm
  # hardening (issue 5): libFuzzer targets, valgrind memcheck
  clang-14 libclang-rt-14-dev valgrind
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# npm may come from outside Debian's package (the machine image ships one).
if [ ${#missing[@]} -gt 0 ] && command -v npm >/dev/null 2>&1; then
  kept=()
  for p in "${missing[@]}"; do [ "$p" = npm ] || kept+=("$p"); done
  missing=("${kept[@]+"${kept[@]}"}")
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# knotd's package starts a system service on install; the demo and the tests
# start their own knotd on loopback, so the system one is not wanted.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet knot 2>/dev/null; then
  systemctl stop knot || true
fi

# The official CloudEvents SDK, used by the integration tests to validate
# every event line in strict mode.
here=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$here/tests/integration/node_modules/cloudevents" ]; then
  (cd "$here/tests/integration" && npm ci --no-audit --no-fund --silent)
fi
