"""Fixtures of the integration suite: a knotd upstream for the session, a
scripted UDP upstream per test, and a factory of dnsgate processes that
checks, at teardown, the exit code, the stats line and every event line."""

from __future__ import annotations

import pytest

from dnsgate_testlib import DnsGate, Knotd, ScriptedUpstream, gate_factory
from tcp_lib import TcpGate


@pytest.fixture(scope="session")
def knotd(tmp_path_factory):
    """knotd on 127.0.0.1:<free port> serving example.com. and example.org."""
    server = Knotd(tmp_path_factory.mktemp("knot"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def upstream():
    """A scripted upstream; set .behaviour, read .received."""
    up = ScriptedUpstream()
    try:
        yield up
    finally:
        up.close()
    assert not up.errors, f"scripted upstream failed: {up.errors!r}"


@pytest.fixture
def dnsgate(tmp_path):
    """Factory: dnsgate(allowlist=[...], upstream="127.0.0.1:P" or resolvers=[{...}],
    timeout_ms=..., max_inflight=..., deny_rcode=..., sink="file"|"stdout") -> a
    started DnsGate (UDP listener)."""
    yield from gate_factory(tmp_path, cls=DnsGate)


@pytest.fixture
def tcpgate(tmp_path):
    """Factory: tcpgate(allowlist=..., upstream=... or resolvers=[{...}],
    listen_udp=True, listen_tcp=True, protocol="do53-udp", tcp={...limits},
    timeout_ms=..., ...) -> a started TcpGate (UDP and TCP listeners on one
    port), with the TCP counters checked in the stats."""
    yield from gate_factory(tmp_path, cls=TcpGate)
