"""DNS over TLS upstreams (DESIGN.md §8): real peers (Unbound, dnsdist) and
scripted servers for every fault. Each case checks what the workload gets,
the event, and that dnsgate stays up and exits cleanly."""

from __future__ import annotations

import time

import dns.flags
import dns.message
import dns.rcode
import pytest

from dnsgate_testlib import (
    ABSENT, BIG_TXT_STRINGS, EDE_NETWORK_ERROR, EDE_NO_REACHABLE_AUTHORITY, assert_servfail, check_event, free_port,
    make_query, wire_id,
)
from tls_peers import (  # noqa: F401 (tls_certs, unbound_peer, dnsdist_peer are fixtures)
    CERTIFICATE_FAILURES, certificate_failure, CLOSE_AFTER_ANSWER, HUGE_LENGTH, OUT_OF_ORDER, SERVER_NAME,
    SILENT, STALL_HANDSHAKE, WRONG_ID, WRONG_QUESTION, ScriptedDotServer, dnsdist_peer, has_opt,
    padding_option, tls_certs, unbound_peer,
)

ALLOW = ["example.com", "*.example.com", "*.example.org"]


def dot(server_address: str, certs, **extra) -> dict:
    resolver = {"protocol": "dot", "address": server_address, "tlsServerName": SERVER_NAME,
                "caFile": str(certs.ca)}
    resolver.update(extra)
    return {k: v for k, v in resolver.items() if v is not None}


def server(cert, behaviour, knotd, **kw) -> ScriptedDotServer:
    return ScriptedDotServer(cert, behaviour, upstream=knotd.address, **kw)  # listening already


# ------------------------------------------------------------ real peers


@pytest.mark.parametrize("peer_name", ["unbound", "dnsdist"])
def test_real_peer_answers_byte_for_byte_but_the_id(request, dnsgate, knotd, tls_certs, peer_name):
    peer = request.getfixturevalue(f"{peer_name}_peer")
    gate = dnsgate(allowlist=ALLOW, resolvers=[dot(peer.dot_address, tls_certs)])
    reply = gate.query("www.example.com.", "A", ident=0x4242)
    assert reply.response is not None
    msg = reply.msg
    assert msg.id == 0x4242 and msg.rcode() == dns.rcode.NOERROR
    assert [r.address for r in msg.answer[0]] == ["192.0.2.10"]
    (ev,) = gate.events(1)
    check_event(ev, reply, action="forward", reasonCode="allowed", rcode="NOERROR", answerCount=1,
                upstream=f"dot://{peer.dot_address}", transport="udp", upstreamError=ABSENT)
    # A denied name never reaches the peer.
    assert gate.query("denied.test.", "A").msg.rcode() == dns.rcode.REFUSED
    stats = gate.stop()
    (resolver,) = stats["resolvers"]
    assert resolver["uri"] == f"dot://{peer.dot_address}"
    assert resolver["queries"] == 1 and resolver["answers"] == 1 and resolver["failures"] == 0
    assert resolver["connects"] == 1 and resolver["handshakes"] == 1


def test_one_connection_carries_many_queries_pipelined(dnsgate, knotd, tls_certs):
    with server(tls_certs.server, OUT_OF_ORDER, knotd) as s:
        gate = dnsgate(allowlist=ALLOW, resolvers=[dot(s.address, tls_certs)])
        socks = []
        for i in range(40):
            socks.append((i, gate.send(make_query(f"host{i}.example.com.", "A", ident=i).to_wire())))
        answered = 0
        for i, sock in socks:
            sock.settimeout(3)
            data, _ = sock.recvfrom(4096)
            sock.close()
            assert wire_id(data) == i
            answered += 1
        assert answered == 40
        gate.events(40)
        assert s.connections == 1, "every query should share one TLS connection"
        stats = gate.stop()
        assert stats["resolvers"][0]["connects"] == 1


def test_queries_with_opt_are_padded_to_128_octets_others_are_not(dnsgate, knotd, tls_certs):
    with server(tls_certs.server, "normal", knotd) as s:
        gate = dnsgate(allowlist=ALLOW, resolvers=[dot(s.address, tls_certs)])
        with_opt = make_query("www.example.com.", "A", edns=True)
        plain = make_query("www.example.com.", "AAAA")
        assert gate.exchange(with_opt.to_wire()).response is not None
        assert gate.exchange(plain.to_wire()).response is not None
        padded, unpadded = s.wait_for(2)
        assert len(padded) % 128 == 0 and has_opt(padded) and padding_option(padded) is not None
        # Apart from the id and the padding, the resolver saw the workload's bytes.
        original = with_opt.to_wire()
        assert padded[2:len(original) - 2] == original[2:len(original) - 2]
        assert unpadded[2:] == plain.to_wire()[2:], "a query without OPT goes as it came"
        gate.events(2)


def test_sni_is_the_server_name_and_absent_for_an_ip_certificate(dnsgate, knotd, tls_certs):
    with server(tls_certs.server, "normal", knotd) as s:
        by_name = dnsgate(allowlist=ALLOW, resolvers=[dot(s.address, tls_certs)])
        assert by_name.query("www.example.com.").response is not None
        by_ip = dnsgate(allowlist=ALLOW,
                        resolvers=[dot(s.address, tls_certs, tlsServerName=None)])
        assert by_ip.query("www.example.com.").response is not None
        by_name.events(1)
        by_ip.events(1)
        assert s.sni == [SERVER_NAME, None]


def test_spki_pin_that_matches_is_accepted(dnsgate, knotd, tls_certs):
    with server(tls_certs.server, "normal", knotd) as s:
        gate = dnsgate(allowlist=ALLOW, resolvers=[dot(s.address, tls_certs, spkiPins=[tls_certs.server.pin])])
        assert gate.query("www.example.com.").msg.rcode() == dns.rcode.NOERROR
        gate.events(1)


def test_session_is_resumed_on_reconnect(dnsgate, knotd, tls_certs):
    with server(tls_certs.server, CLOSE_AFTER_ANSWER, knotd) as s:
        gate = dnsgate(allowlist=ALLOW, resolvers=[dot(s.address, tls_certs)])
        for i in range(3):
            assert gate.query(f"r{i}.example.com.").msg.rcode() == dns.rcode.NXDOMAIN
            time.sleep(0.1)  # let the close arrive before the next query
        gate.events(3)
        stats = gate.stop()
        r = stats["resolvers"][0]
        assert r["connects"] == 3 and r["handshakes"] == 3
        assert r["resumed"] >= 1, stats
        assert any(c.session_reused for c in s.wait_settled()), "the server saw no resumed session"


# ------------------------------------------------------------ authentication


@pytest.mark.parametrize("case", CERTIFICATE_FAILURES)
def test_certificate_failures_get_servfail_at_once(dnsgate, knotd, tls_certs, case):
    cert, extra, want = certificate_failure(tls_certs, case)
    with server(cert, "normal", knotd) as s:
        gate = dnsgate(allowlist=ALLOW, timeout_ms=3000, resolvers=[dot(s.address, tls_certs, **extra)])
        reply = gate.query("www.example.com.", edns=True, timeout=3)
        assert reply.elapsed < 1.5, "a certificate failure must not wait for the timeout"
        assert_servfail(reply, EDE_NETWORK_ERROR)
        (ev,) = gate.events(1)
        check_event(ev, reply, action="servfail", reasonCode="upstream_error", upstreamError=want,
                    upstream=f"dot://{s.address}")
        assert s.queries() == [], "nothing may be sent over an unauthenticated connection"


def test_server_stalling_in_the_handshake_fails_at_half_the_timeout(dnsgate, knotd, tls_certs):
    """A connection and its handshake get half of upstreamTimeoutMs, so the
    other half is left for the next resolver (see the failover test)."""
    with server(tls_certs.server, STALL_HANDSHAKE, knotd) as s:
        gate = dnsgate(allowlist=ALLOW, timeout_ms=800, resolvers=[dot(s.address, tls_certs)])
        reply = gate.query("www.example.com.", edns=True, timeout=3)
        assert_servfail(reply, EDE_NETWORK_ERROR)
        assert 0.35 <= reply.elapsed < 0.75, reply.elapsed
        (ev,) = gate.events(1)
        check_event(ev, reply, action="servfail", reasonCode="upstream_error", upstreamError="connect_timeout")
        assert gate.running()


def test_stalled_resolver_fails_over_within_the_timeout(dnsgate, knotd, tls_certs, unbound_peer):
    with server(tls_certs.server, STALL_HANDSHAKE, knotd) as s:
        gate = dnsgate(allowlist=ALLOW, timeout_ms=1000,
                       resolvers=[dot(s.address, tls_certs), dot(unbound_peer.dot_address, tls_certs)])
        reply = gate.query("www.example.com.", timeout=3)
        assert reply.msg.rcode() == dns.rcode.NOERROR and reply.elapsed < 0.9
        (ev,) = gate.events(1)
        check_event(ev, reply, action="forward", upstream=f"dot://{unbound_peer.dot_address}")


def test_nobody_listening_is_connect_refused(dnsgate, tls_certs):
    port = free_port(tcp_too=True)
    gate = dnsgate(allowlist=ALLOW, resolvers=[dot(f"127.0.0.1:{port}", tls_certs)])
    reply = gate.query("www.example.com.", edns=True)
    assert_servfail(reply, EDE_NETWORK_ERROR)
    (ev,) = gate.events(1)
    check_event(ev, reply, action="servfail", reasonCode="upstream_error", upstreamError="connect_refused")


# ------------------------------------------------------------ misbehaving servers


def test_server_closing_after_every_answer_still_answers_everything(dnsgate, knotd, tls_certs):
    with server(tls_certs.server, CLOSE_AFTER_ANSWER, knotd) as s:
        gate = dnsgate(allowlist=ALLOW, resolvers=[dot(s.address, tls_certs)])
        socks = [gate.send(make_query(f"c{i}.example.com.", "A", ident=i).to_wire()) for i in range(10)]
        for i, sock in enumerate(socks):
            sock.settimeout(4)
            data, _ = sock.recvfrom(4096)
            sock.close()
            msg = dns.message.from_wire(data)
            assert msg.id == i and msg.rcode() == dns.rcode.NXDOMAIN  # knotd's answer
        events = gate.events(10)
        assert all(e["data"]["action"] == "forward" for e in events)


@pytest.mark.parametrize("behaviour", [WRONG_ID, WRONG_QUESTION])
def test_answers_to_other_queries_are_discarded_and_counted(dnsgate, knotd, tls_certs, behaviour):
    with server(tls_certs.server, behaviour, knotd) as s:
        gate = dnsgate(allowlist=ALLOW, timeout_ms=500, resolvers=[dot(s.address, tls_certs)])
        reply = gate.query("www.example.com.", edns=True, timeout=2)
        assert_servfail(reply, EDE_NO_REACHABLE_AUTHORITY)
        (ev,) = gate.events(1)
        check_event(ev, reply, action="servfail", reasonCode="upstream_timeout")
        stats = gate.stop()
        discarded = stats["unsolicitedUpstream"]
        assert discarded == 1, stats


def test_a_length_prefix_longer_than_what_follows_is_survived(dnsgate, knotd, tls_certs):
    """The server claims a 65,535-octet answer, sends less and closes: the
    bytes are never taken for an answer; the query is sent again once and
    then fails; a later query on a good server works."""
    with server(tls_certs.server, HUGE_LENGTH, knotd) as s:
        gate = dnsgate(allowlist=ALLOW, timeout_ms=2000, resolvers=[dot(s.address, tls_certs)])
        reply = gate.query("www.example.com.", edns=True, timeout=3)
        assert_servfail(reply, EDE_NETWORK_ERROR)
        (ev,) = gate.events(1)
        check_event(ev, reply, action="servfail", reasonCode="upstream_error", upstreamError="connection_closed")
        s.behaviour = "normal"
        time.sleep(0.3)  # past the reconnect backoff
        assert gate.query("api.example.org.").msg.rcode() == dns.rcode.NOERROR
        gate.events(2)


def test_server_restarted_mid_load_loses_no_query(dnsgate, knotd, tls_certs):
    with server(tls_certs.server, "normal", knotd) as s:
        gate = dnsgate(allowlist=ALLOW, timeout_ms=3000, resolvers=[dot(s.address, tls_certs)])
        assert gate.query("www.example.com.").response is not None
        s.answer_delay = 0.3
        socks = [gate.send(make_query(f"m{i}.example.com.", "A", ident=i).to_wire()) for i in range(5)]
        time.sleep(0.1)
        s.stop()
        s.answer_delay = 0.0
        s.start()
        rcodes = []
        for sock in socks:
            sock.settimeout(4)
            data, _ = sock.recvfrom(4096)
            sock.close()
            rcodes.append(dns.message.from_wire(data).rcode())
        assert rcodes == [dns.rcode.NXDOMAIN] * 5  # knotd's answers, none lost
        gate.events(6)


def test_silent_server_gets_timeouts_and_other_resolvers_take_over(dnsgate, knotd, tls_certs, unbound_peer):
    """failover: 3 timeouts in a row put the first resolver down; the
    second answers the rest."""
    with server(tls_certs.server, SILENT, knotd) as s:
        gate = dnsgate(allowlist=ALLOW, timeout_ms=300,
                       resolvers=[dot(s.address, tls_certs), dot(unbound_peer.dot_address, tls_certs)])
        for i in range(3):
            assert_servfail(gate.query(f"t{i}.example.com.", edns=True, timeout=2), EDE_NO_REACHABLE_AUTHORITY)
        reply = gate.query("www.example.com.")
        assert reply.msg.rcode() == dns.rcode.NOERROR
        events = gate.events(4)
        check_event(events[-1], reply, action="forward", upstream=f"dot://{unbound_peer.dot_address}")
        stats = gate.stop()
        first, second = stats["resolvers"]
        assert first["timesDown"] == 1 and first["failures"] == 3
        assert second["answers"] == 1


def test_failed_connection_fails_over_at_once(dnsgate, knotd, tls_certs, unbound_peer):
    with server(tls_certs.wrong_name, "normal", knotd) as s:
        gate = dnsgate(allowlist=ALLOW, timeout_ms=2000,
                       resolvers=[dot(s.address, tls_certs), dot(unbound_peer.dot_address, tls_certs)])
        reply = gate.query("www.example.com.")
        assert reply.msg.rcode() == dns.rcode.NOERROR and reply.elapsed < 1.0
        (ev,) = gate.events(1)
        check_event(ev, reply, action="forward", upstream=f"dot://{unbound_peer.dot_address}")
        # The broken resolver is down: the next query goes straight to the second.
        assert gate.query("api.example.org.").msg.rcode() == dns.rcode.NOERROR
        gate.events(2)
        stats = gate.stop()
        assert stats["resolvers"][0]["queries"] == 1 and stats["resolvers"][0]["timesDown"] == 1
        assert stats["resolvers"][1]["answers"] == 2
        assert stats["forwarded"] == 2, "a query that failed over counts once"


def test_round_robin_spreads_queries(dnsgate, knotd, tls_certs, unbound_peer, dnsdist_peer):
    gate = dnsgate(allowlist=ALLOW, resolver_policy="roundRobin",
                   resolvers=[dot(unbound_peer.dot_address, tls_certs), dot(dnsdist_peer.dot_address, tls_certs)])
    for i in range(6):
        assert gate.query(f"rr{i}.example.com.").response is not None
    upstreams = [e["data"]["upstream"] for e in gate.events(6)]
    assert upstreams == [f"dot://{unbound_peer.dot_address}", f"dot://{dnsdist_peer.dot_address}"] * 3


def test_large_answer_over_dot_reaches_a_udp_client_truncated(dnsgate, knotd, tls_certs, unbound_peer):
    gate = dnsgate(allowlist=ALLOW, resolvers=[dot(unbound_peer.dot_address, tls_certs)])
    q = make_query("big.example.com.", "TXT", ident=7)
    reply = gate.exchange(q.to_wire())
    msg = reply.msg
    assert msg.flags & dns.flags.TC and not msg.answer, msg
    gate.events(1)



def test_a_tcp_workload_gets_the_whole_large_answer_over_dot(tcpgate, knotd, tls_certs, unbound_peer):
    """The workload retries over TCP/53 after TC=1; over DoT it then gets
    the whole answer, and its events say `tcp` whatever the upstream."""
    gate = tcpgate(allowlist=ALLOW, resolvers=[dot(unbound_peer.dot_address, tls_certs)])
    udp = gate.exchange(make_query("big.example.com.", "TXT", ident=9).to_wire())
    assert udp.msg.flags & dns.flags.TC
    r = gate.tcp_query("big.example.com.", "TXT", ident=10)
    msg = r.msg
    assert msg.id == 10 and not msg.flags & dns.flags.TC and len(r.response) > 3000, msg
    assert len(msg.answer[0][0].strings) == BIG_TXT_STRINGS
    events = gate.events(2)
    assert [e["data"]["transport"] for e in events] == ["udp", "tcp"]
    assert all(e["data"]["upstream"] == f"dot://{unbound_peer.dot_address}" for e in events)
