#!/usr/bin/env bash
# Installs what dnsgate needs to build, test and demo on Debian 12.
# Idempotent and non-interactive: packages already present are not touched,
# so a warm machine pays only for one dpkg look-up and a few file compares.
set -euo pipefail

packages=(
  # build
  cmake ninja-build g++ pkg-config
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev libidn2-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # systemd socket activation and sd_notify (DESIGN §10); systemd brings
  # systemd-socket-activate and systemd-analyze for test_socket_activation.py
  libsystemd-dev systemd
  # the supervisor (DESIGN §10): seccomp for the proxies, `ip netns` for the
  # tests' cell namespaces
  libseccomp-dev iproute2
  # encrypted upstreams (DESIGN §8): DoT and DoH on GnuTLS and nghttp2, DoQ on
  # ngtcp2 >= 1.0 with its GnuTLS crypto helper (from bookworm-backports, below)
  libgnutls28-dev libnghttp2-dev libngtcp2-dev libngtcp2-crypto-gnutls-dev
  # DNSSEC validation (DESIGN §9): Knot's libdnssec (on GnuTLS) for the
  # cryptography, the root trust anchor, and ldns-signzone for broken test zones
  libknot-dev dns-root-data ldnsutils
  # peers and clients for the demo and the integration tests
  knot knot-dnsutils dnsutils dnsperf
  python3-dnspython python3-pytest
  musl-tools  # test_conformance.py: musl's stub resolver, as Alpine workloads have it
  mandoc  # test_man_pages.py: lints and renders the man pages (man/, mdoc)
  # operations (DESIGN §12): libmicrohttpd serves /metrics, /healthz and
  # /readyz; Prometheus (promtool and a real server) checks and scrapes them
  libmicrohttpd-dev prometheus
  # event delivery (DESIGN §11): the NATS C client and a JetStream server for
  # the tests, libcurl (GnuTLS flavour, like the rest) for the HTTP sink
  libnats-dev nats-server libcurl4-gnutls-dev
  # the io_uring I/O backend (docs/performance.md)
  liburing-dev
  nodejs npm
  # DoT/DoH/DoQ test peers: certtool for test certificates, Unbound and dnsdist
  # serve DoT and DoH, python3-h2 scripts faulty HTTP/2 servers, and Go with
  # Debian's quic-go builds tests/doq_server offline
  gnutls-bin unbound dnsdist python3-h2
  golang-go golang-github-lucas-clemente-quic-go-dev
  # hardening (issue 5): libFuzzer targets, valgrind memcheck
  clang-14 libclang-rt-14-dev valgrind
)

# Packages whose maintainer scripts start a system service. The demo and the
# tests start their own daemons on loopback ports, so a system one is never
# wanted: it would hold port 53 or 853 and answer in place of the test's.
services=(knot unbound dnsdist prometheus prometheus-node-exporter nats-server)

# ngtcp2 below 1.0 has an unstable API that dnsgate does not build against.
ngtcp2_min=1.0

apt_opts=(-y -qq --no-install-recommends -o DPkg::Lock::Timeout=300)
export DEBIAN_FRONTEND=noninteractive
need_update=0

# --- bookworm-backports, for ngtcp2 only -------------------------------------
# The suite is reached through the mirror this machine's own Debian entry
# already names, so the repository never carries a host name and a machine
# behind a local mirror keeps using it.

# Prints the first URI of the enabled deb822 stanza whose Suites has "bookworm".
debian_uri_deb822() {
  awk '
    function flush() {
      if (types ~ /(^| )deb( |$)/ && suites ~ /(^| )bookworm( |$)/ && enabled != "no" && uri != "" && found == "") found = uri
      types = ""; suites = ""; uri = ""; enabled = ""
    }
    /^[ \t]*$/ { flush(); next }
    /^#/ { next }
    tolower($1) == "types:" { $1 = ""; types = $0 " " }
    tolower($1) == "suites:" { $1 = ""; suites = $0 " " }
    tolower($1) == "uris:" { uri = $2 }
    tolower($1) == "enabled:" { enabled = tolower($2) }
    END { flush(); if (found != "") print found }
  ' "$@" 2>/dev/null
}

# Prints the URI of the first classic one-line "deb [opts] URI bookworm ..." entry.
debian_uri_list() {
  awk '
    $1 != "deb" { next }
    {
      i = 2
      if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) == "bookworm") { print $i; exit }
    }
  ' "$@" 2>/dev/null
}

backports_sources=/etc/apt/sources.list.d/dnsgate-bookworm-backports.sources
backports_prefs=/etc/apt/preferences.d/dnsgate-ngtcp2-backports

# Another entry for the suite (the machine's own, or a hand-made one) is kept
# as it is; a second one would only make apt warn about duplicates.
other_backports=$(grep -ls 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
  /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -vxF "$backports_sources" || true)
if [ -z "$other_backports" ]; then
  uri=$(debian_uri_deb822 /etc/apt/sources.list.d/*.sources | head -n1)
  [ -n "$uri" ] || uri=$(debian_uri_list /etc/apt/sources.list /etc/apt/sources.list.d/*.list | head -n1)
  if [ -z "$uri" ]; then
    echo "install-deps: no Debian 'bookworm' entry in /etc/apt/sources.list{,.d}:" \
      "cannot derive a mirror for bookworm-backports (needed for ngtcp2 >= $ngtcp2_min)" >&2
    exit 1
  fi
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  wanted="# Written by dnsgate's scripts/install-deps.sh from this machine's own Debian
# mirror, for ngtcp2 >= $ngtcp2_min only: see $backports_prefs.
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: $keyring"
  if [ ! -f "$backports_sources" ] || [ "$(cat "$backports_sources")" != "$wanted" ]; then
    echo "install-deps: enabling bookworm-backports from $uri (ngtcp2 only)"
    printf '%s\n' "$wanted" >"$backports_sources"
    need_update=1
  fi
fi

# Backports are NotAutomatic (priority 100): nothing comes from there unless
# asked. Only the ngtcp2 packages are raised above the stable suite; the
# second stanza restates the default for everything else, so a later edit
# cannot widen the pin by accident.
wanted_prefs="# Written by dnsgate's scripts/install-deps.sh: ngtcp2 >= $ngtcp2_min from
# bookworm-backports, every other package from the stable suite as usual.
Package: libngtcp2*
Pin: release n=bookworm-backports
Pin-Priority: 990

Package: *
Pin: release n=bookworm-backports
Pin-Priority: 100"
if [ ! -f "$backports_prefs" ] || [ "$(cat "$backports_prefs")" != "$wanted_prefs" ]; then
  printf '%s\n' "$wanted_prefs" >"$backports_prefs"
fi

# --- packages -----------------------------------------------------------------
# One dpkg-query for all of them keeps a warm run fast.
declare -A installed=()
while read -r name status version; do
  [ "$status" = installed ] && installed[$name]=$version
done < <(dpkg-query -W -f='${Package} ${db:Status-Status} ${Version}\n' "${packages[@]}" 2>/dev/null || true)

missing=()
for p in "${packages[@]}"; do
  [ -n "${installed[$p]:-}" ] || missing+=("$p")
done
# ngtcp2 0.12 from the stable suite counts as missing: installing it again
# upgrades it to the pinned backport.
for p in libngtcp2-dev libngtcp2-crypto-gnutls-dev; do
  v=${installed[$p]:-}
  if [ -n "$v" ] && dpkg --compare-versions "$v" lt "$ngtcp2_min"; then missing+=("$p"); fi
done
# npm may come from outside Debian's package (the machine image ships one).
if [ ${#missing[@]} -gt 0 ] && command -v npm >/dev/null 2>&1; then
  kept=()
  for p in "${missing[@]}"; do [ "$p" = npm ] || kept+=("$p"); done
  missing=("${kept[@]+"${kept[@]}"}")
fi
[ ${#missing[@]} -eq 0 ] || need_update=1

if [ "$need_update" = 1 ]; then
  apt-get update -qq -o DPkg::Lock::Timeout=300
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  # A policy-rc.d that answers 101 ("action forbidden") keeps the maintainer
  # scripts of the service packages from starting their daemons. One that is
  # already there (container images ship one) is the machine's, left alone.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# dnsgate install-deps.sh: start no service while installing\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get install "${apt_opts[@]}" "${missing[@]}" >/dev/null
  if [ "${created_policy:-0}" = 1 ]; then
    rm -f "$policy"
    trap - EXIT
  fi
fi

# apt would have installed 0.12 had the backport not been reachable.
v=$(dpkg-query -W -f='${Version}' libngtcp2-dev 2>/dev/null || true)
if [ -z "$v" ] || dpkg --compare-versions "$v" lt "$ngtcp2_min"; then
  echo "install-deps: libngtcp2-dev is '${v:-absent}', dnsgate needs >= $ngtcp2_min from bookworm-backports" \
    "(see apt-cache policy libngtcp2-dev)" >&2
  exit 1
fi

# --- no system services -------------------------------------------------------
# Stop and disable any of them that runs anyway (installed before this script,
# or by hand), so neither a reboot nor systemd brings one back.
for s in "${services[@]}"; do
  [ -e "/lib/systemd/system/$s.service" ] || [ -e "/etc/init.d/$s" ] || continue
  if [ -d /run/systemd/system ]; then
    if systemctl is-active --quiet "$s" 2>/dev/null; then systemctl stop "$s" || true; fi
  elif [ -x "/etc/init.d/$s" ] && "/etc/init.d/$s" status >/dev/null 2>&1; then
    # Without systemd as init (a container), a daemon started through its
    # init script has only that script to stop it.
    "/etc/init.d/$s" stop >/dev/null 2>&1 || true
  fi
  if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled --quiet "$s" 2>/dev/null; then
    systemctl disable --quiet "$s" 2>/dev/null || true
  fi
done

# The official CloudEvents SDK, used by the integration tests to validate
# every event line in strict mode.
here=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$here/tests/integration/node_modules/cloudevents" ]; then
  (cd "$here/tests/integration" && npm ci --no-audit --no-fund --silent)
fi
