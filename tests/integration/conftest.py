"""Fixtures of the integration suite: a knotd upstream for the session, a
scripted UDP upstream per test, and a factory of dnsgate processes that
checks, at teardown, the exit code, the stats line and every event line."""

from __future__ import annotations

import signal

import pytest

from dnsgate_testlib import DnsGate, Knotd, ScriptedUpstream
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


def _gates(tmp_path, cls):
    """A factory of started `cls` gates; at teardown each one still running
    gets SIGTERM and must exit 0 with the stats JSON as its last stderr
    line; then its events must be one per datagram (or TCP frame) sent and
    each a valid CloudEvent (checked with the SDK)."""
    started: list = []

    def start(**kwargs):
        gate = cls(tmp_path / f"dnsgate{len(started)}", **kwargs)
        started.append(gate)
        gate.start()
        return gate

    yield start

    problems = []
    for gate in started:
        try:
            if gate.returncode is None:
                gate.stop(sig=None if gate.signalled_at else signal.SIGTERM)
            gate.check_all_events()
        except AssertionError as e:
            problems.append(f"{gate.workdir.name}: {e}")
        finally:
            gate.kill()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def dnsgate(tmp_path):
    """Factory: dnsgate(allowlist=[...], upstream="127.0.0.1:P" or resolvers=[{...}],
    timeout_ms=..., max_inflight=..., deny_rcode=..., sink="file"|"stdout") -> a
    started DnsGate (UDP listener)."""
    yield from _gates(tmp_path, DnsGate)


@pytest.fixture
def tcpgate(tmp_path):
    """Factory: tcpgate(allowlist=..., upstream=... or resolvers=[{...}],
    listen_udp=True, listen_tcp=True, protocol="do53-udp", tcp={...limits},
    timeout_ms=..., ...) -> a started TcpGate (UDP and TCP listeners on one
    port), with the TCP counters checked in the stats."""
    yield from _gates(tmp_path, TcpGate)
