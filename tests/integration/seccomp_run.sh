#!/bin/sh
# dnsgate with `run --seccomp`: ctest's integration.seccomp runs the protocol
# suites through this, so every system call the proxy makes on its DNS path
# (Do53, TCP, DoT, DoH, DoQ, DNSSEC) is proven to be on the allow-list that
# `dnsgate supervise` installs (src/spawn/seccomp_policy.cpp). A call off it
# kills the process with SIGSYS and the test that ran it fails.
real=${DNSGATE_REAL_BIN:?DNSGATE_REAL_BIN: the dnsgate to run}
if [ "$1" = run ]; then
  shift
  exec "$real" run --seccomp "$@"
fi
exec "$real" "$@"
