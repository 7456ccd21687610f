"""DNS over HTTPS upstreams (DESIGN.md §8, RFC 8484): Unbound and dnsdist as
real peers, a scripted HTTP/2 server for every fault. Each case checks what
the workload gets, the event, and that other queries are unaffected."""

from __future__ import annotations

import time

import dns.flags
import dns.message
import dns.rcode
import pytest

from dnsgate_testlib import (
    ABSENT, EDE_NETWORK_ERROR, EDE_NO_REACHABLE_AUTHORITY, assert_servfail, check_event, make_query, wire_id,
)
from tls_peers import (  # noqa: F401 (tls_certs, unbound_peer, dnsdist_peer are fixtures)
    CERTIFICATE_FAILURES, certificate_failure, CLOSE_AFTER_ANSWER, GOAWAY, RESET_STREAM, SERVER_NAME, SILENT,
    STALL_HANDSHAKE, STATUS_404, STATUS_500, WRONG_CONTENT_TYPE, ScriptedDohServer, dnsdist_peer, has_opt,
    padding_option, tls_certs, unbound_peer,
)

ALLOW = ["example.com", "*.example.com", "*.example.org"]


def doh(url: str, address: str, certs, **extra) -> dict:
    resolver = {"protocol": "doh", "url": url, "address": address, "caFile": str(certs.ca)}
    resolver.update(extra)
    return {k: v for k, v in resolver.items() if v is not None}


def server(cert, behaviour, knotd, **kw) -> ScriptedDohServer:
    return ScriptedDohServer(cert, behaviour, upstream=knotd.address, **kw)  # listening already


@pytest.mark.parametrize("peer_name", ["unbound", "dnsdist"])
def test_real_peer_answers_byte_for_byte_but_the_id(request, dnsgate, knotd, tls_certs, peer_name):
    peer = request.getfixturevalue(f"{peer_name}_peer")
    gate = dnsgate(allowlist=ALLOW, resolvers=[doh(peer.doh_url, peer.doh_address, tls_certs)])
    reply = gate.query("www.example.com.", "A", ident=0x5151)
    msg = reply.msg
    assert msg.id == 0x5151 and msg.rcode() == dns.rcode.NOERROR
    assert [r.address for r in msg.answer[0]] == ["192.0.2.10"]
    (ev,) = gate.events(1)
    check_event(ev, reply, action="forward", reasonCode="allowed", rcode="NOERROR", answerCount=1,
                upstream=peer.doh_url, upstreamError=ABSENT)
    stats = gate.stop()
    (r,) = stats["resolvers"]
    assert r["uri"] == peer.doh_url and r["answers"] == 1 and r["connects"] == 1 and r["handshakes"] == 1


def test_requests_are_http2_posts_with_id_0_and_padding_on_one_connection(dnsgate, knotd, tls_certs):
    with server(tls_certs.server, "normal", knotd) as s:
        gate = dnsgate(allowlist=ALLOW, resolvers=[doh(s.url, s.address, tls_certs)])
        socks = [(i, gate.send(make_query(f"p{i}.example.com.", "A", ident=100 + i, edns=True).to_wire()))
                 for i in range(20)]
        for i, sock in socks:
            sock.settimeout(3)
            data, _ = sock.recvfrom(4096)
            sock.close()
            assert wire_id(data) == 100 + i
        gate.events(20)
        requests = s.wait_for(20)
        assert {r.conn for r in requests} == {1}, "every query should share one HTTP/2 connection"
        for r in requests:
            assert r.method == "POST" and r.path == "/dns-query" and r.scheme == "https"
            assert r.authority == f"{SERVER_NAME}:{s.port}"
            assert r.content_type == "application/dns-message" and r.accept == "application/dns-message"
            assert wire_id(r.dns_wire) == 0, "RFC 8484 4.1: id 0"
            assert len(r.dns_wire) % 128 == 0 and padding_option(r.dns_wire) is not None
        assert s.sni == [SERVER_NAME]
        assert s.conns[0].alpn == "h2"


def test_a_query_without_opt_goes_unpadded(dnsgate, knotd, tls_certs):
    with server(tls_certs.server, "normal", knotd) as s:
        gate = dnsgate(allowlist=ALLOW, resolvers=[doh(s.url, s.address, tls_certs)])
        q = make_query("www.example.com.", "A")
        assert gate.exchange(q.to_wire()).msg.rcode() == dns.rcode.NOERROR
        (r,) = s.wait_for(1)
        assert not has_opt(r.dns_wire) and r.dns_wire[2:] == q.to_wire()[2:]
        gate.events(1)


@pytest.mark.parametrize("behaviour,word", [
    (STATUS_500, "http_status_500"),
    (STATUS_404, "http_status_404"),
    (WRONG_CONTENT_TYPE, "http_content_type"),
    (RESET_STREAM, "http_stream_reset"),
])
def test_a_failed_request_fails_that_query_at_once(dnsgate, knotd, tls_certs, behaviour, word):
    with server(tls_certs.server, behaviour, knotd) as s:
        gate = dnsgate(allowlist=ALLOW, timeout_ms=3000, resolvers=[doh(s.url, s.address, tls_certs)])
        reply = gate.query("www.example.com.", edns=True, timeout=3)
        assert_servfail(reply, EDE_NETWORK_ERROR)
        assert reply.elapsed < 1.0
        (ev,) = gate.events(1)
        check_event(ev, reply, action="servfail", reasonCode="upstream_error", upstreamError=word,
                    upstream=s.url)
        # The connection stays: the server answers again and the next query works.
        s.behaviour = "normal"
        assert gate.query("api.example.org.").msg.rcode() == dns.rcode.NOERROR
        gate.events(2)
        assert s.connections == 1


def test_goaway_moves_unanswered_queries_to_a_new_connection(dnsgate, knotd, tls_certs):
    with server(tls_certs.server, GOAWAY, knotd) as s:
        gate = dnsgate(allowlist=ALLOW, resolvers=[doh(s.url, s.address, tls_certs)])
        rcodes = []
        for i in range(4):
            rcodes.append(gate.query(f"g{i}.example.com.", timeout=3).msg.rcode())
            time.sleep(0.05)
        assert rcodes == [dns.rcode.NXDOMAIN] * 4  # knotd's answers, none lost
        events = gate.events(4)
        assert all(e["data"]["action"] == "forward" for e in events)
        assert s.connections >= 2


def test_server_closing_after_every_answer_still_answers_everything(dnsgate, knotd, tls_certs):
    with server(tls_certs.server, CLOSE_AFTER_ANSWER, knotd) as s:
        gate = dnsgate(allowlist=ALLOW, resolvers=[doh(s.url, s.address, tls_certs)])
        socks = [gate.send(make_query(f"c{i}.example.com.", "A", ident=i).to_wire()) for i in range(6)]
        for i, sock in enumerate(socks):
            sock.settimeout(4)
            data, _ = sock.recvfrom(4096)
            sock.close()
            assert wire_id(data) == i and dns.message.from_wire(data).rcode() == dns.rcode.NXDOMAIN
        gate.events(6)


# Not ip_not_in_certificate: the URL names the host, so the name is what is checked.
@pytest.mark.parametrize("case", [c for c in CERTIFICATE_FAILURES if c != "ip_not_in_certificate"])
def test_certificate_failures_get_servfail_at_once(dnsgate, knotd, tls_certs, case):
    cert, extra, want = certificate_failure(tls_certs, case)
    with server(cert, "normal", knotd) as s:
        gate = dnsgate(allowlist=ALLOW, timeout_ms=3000, resolvers=[doh(s.url, s.address, tls_certs, **extra)])
        reply = gate.query("www.example.com.", edns=True, timeout=3)
        assert reply.elapsed < 1.5
        assert_servfail(reply, EDE_NETWORK_ERROR)
        (ev,) = gate.events(1)
        check_event(ev, reply, action="servfail", reasonCode="upstream_error", upstreamError=want)
        assert s.requests == []


def test_a_server_without_h2_is_a_handshake_failure(dnsgate, knotd, tls_certs):
    """ALPN h2 is required: a TLS server that offers only http/1.1 fails."""
    from tls_peers import ScriptedDotServer
    with ScriptedDotServer(tls_certs.server, "normal", upstream=knotd.address, alpn=["http/1.1"]) as s:
        gate = dnsgate(allowlist=ALLOW, resolvers=[doh(f"https://{SERVER_NAME}:{s.port}/dns-query", s.address,
                                                       tls_certs)])
        reply = gate.query("www.example.com.", edns=True)
        assert_servfail(reply, EDE_NETWORK_ERROR)
        (ev,) = gate.events(1)
        check_event(ev, reply, action="servfail", upstreamError="tls_handshake")


def test_stalled_handshake_fails_and_silent_server_times_out(dnsgate, knotd, tls_certs):
    for behaviour, ede, reason in ((STALL_HANDSHAKE, EDE_NETWORK_ERROR, "upstream_error"),
                                   (SILENT, EDE_NO_REACHABLE_AUTHORITY, "upstream_timeout")):
        with server(tls_certs.server, behaviour, knotd) as s:
            gate = dnsgate(allowlist=ALLOW, timeout_ms=500, resolvers=[doh(s.url, s.address, tls_certs)])
            reply = gate.query("www.example.com.", edns=True, timeout=3)
            assert_servfail(reply, ede)
            (ev,) = gate.events(1)
            check_event(ev, reply, action="servfail", reasonCode=reason,
                        upstreamError="connect_timeout" if behaviour == STALL_HANDSHAKE else ABSENT)


def test_failover_from_doh_errors_to_dot(dnsgate, knotd, tls_certs, unbound_peer):
    with server(tls_certs.server, STATUS_500, knotd) as s:
        gate = dnsgate(allowlist=ALLOW, resolvers=[
            doh(s.url, s.address, tls_certs),
            {"protocol": "dot", "address": unbound_peer.dot_address, "tlsServerName": SERVER_NAME,
             "caFile": str(tls_certs.ca)}])
        reply = gate.query("www.example.com.")
        assert reply.msg.rcode() == dns.rcode.NOERROR
        (ev,) = gate.events(1)
        check_event(ev, reply, action="forward", upstream=f"dot://{unbound_peer.dot_address}")


def test_large_answer_reaches_a_udp_client_truncated(dnsgate, knotd, tls_certs, unbound_peer):
    gate = dnsgate(allowlist=ALLOW, resolvers=[doh(unbound_peer.doh_url, unbound_peer.doh_address, tls_certs)])
    msg = gate.exchange(make_query("big.example.com.", "TXT").to_wire()).msg
    assert msg.flags & dns.flags.TC and not msg.answer
    gate.events(1)
