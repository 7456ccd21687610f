#!/usr/bin/env bash
# Installs the peers `make bench` compares dnsgate with (dnsdist, dnsmasq)
# and what its encrypted modes need (unbound as the DoT/DoH server, certtool
# from gnutls-bin for the test certificate; scripts/install-deps.sh installs
# both for the tests already, so usually nothing happens). Idempotent and
# non-interactive. The Debian packages of dnsdist, dnsmasq and unbound ship
# a system service that would take port 53; it is kept from starting
# (policy-rc.d during the install) and stopped/disabled if it runs.
set -euo pipefail

packages=(dnsdist dnsmasq unbound gnutls-bin)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "bench: installing ${missing[*]}" >&2
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
  fi
  restore_policy() { [ "$own_policy" = 1 ] && rm -f "$policy"; return 0; }
  trap restore_policy EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  restore_policy
  trap - EXIT
fi

# Whatever happened at install time (a machine with systemd and no
# policy-rc.d, or an earlier install), the system services must not run.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  for service in dnsdist dnsmasq unbound; do
    if systemctl is-enabled --quiet "$service" 2>/dev/null; then
      systemctl disable --now "$service" >/dev/null 2>&1 || true
    fi
    if systemctl is-active --quiet "$service" 2>/dev/null; then
      systemctl stop "$service" || true
    fi
  done
fi
