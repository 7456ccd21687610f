"""When the upstream fails: timeout, unreachable port, full in-flight table,
and answers that must not be accepted (DESIGN.md §1 rows 5-7, "Timeouts",
"Capacity", "Accepting an upstream response")."""

from __future__ import annotations

import struct
import threading
import time

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from dnsgate_testlib import (
    ABSENT, answer_after, answer_for, assert_synthesized, check_event, closed_udp_port, ede_codes,
    big_buffers, make_query, recv_until, silent, udp_socket, wire_id,
)

ALLOW = ["example.com", "*.example.com"]


def servfail_event(ev, reply, reason, upstream_address, qname="www.example.com"):
    check_event(ev, reply, action="servfail", reasonCode=reason, qname=qname, qtype="A", qclass="IN",
                rcode="SERVFAIL", answerCount=0, upstream=upstream_address, malformedReason=ABSENT)


# ------------------------------------------------------------ timeout


@pytest.mark.parametrize("edns", [True, False])
def test_silent_upstream_gives_servfail_after_the_timeout(dnsgate, upstream, edns):
    upstream.behaviour = silent
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address, timeout_ms=400)
    r = gate.query("www.example.com.", "A", ident=0x7101, edns=edns, timeout=2.0)
    assert r.response is not None, "no SERVFAIL after the upstream timeout"
    assert 0.39 <= r.elapsed < 0.55, f"SERVFAIL after {r.elapsed * 1000:.0f} ms, expected about 400 ms"
    assert_synthesized(r, dns.rcode.SERVFAIL, 22)
    if edns:
        assert ede_codes(r.msg) == [(22, "")]
    assert len(upstream.queries()) == 1
    (ev,) = gate.events(1)
    servfail_event(ev, r, "upstream_timeout", upstream.address)
    assert 390_000 <= ev["data"]["latencyUs"] < 550_000, ev
    stats = gate.stop()
    assert stats["servfailTimeout"] == 1 and stats["forwarded"] == 1 and stats["relayed"] == 0


def test_timeouts_are_per_query(dnsgate, upstream):
    """Queries sent 150 ms apart each time out 300 ms after their own arrival."""
    upstream.behaviour = silent
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address, timeout_ms=300)
    replies = [None, None, None]

    def client(i):
        replies[i] = gate.exchange(make_query(f"q{i}.example.com.", "A", ident=0x7200 + i).to_wire(), timeout=1.0)

    threads = []
    for i in range(3):
        t = threading.Thread(target=client, args=(i,))
        t.start()
        threads.append(t)
        time.sleep(0.15)
    for t in threads:
        t.join(timeout=3)
    for i, r in enumerate(replies):
        assert r is not None and r.response is not None, f"query {i} got no SERVFAIL"
        assert 0.29 <= r.elapsed < 0.45, f"query {i} answered after {r.elapsed * 1000:.0f} ms"
        m = r.msg
        assert m.rcode() == dns.rcode.SERVFAIL and m.id == 0x7200 + i
    evs = gate.events(3)
    assert [e["data"]["reasonCode"] for e in evs] == ["upstream_timeout"] * 3


def test_late_answer_after_timeout_is_not_relayed(dnsgate, upstream):
    upstream.behaviour = answer_after(0.5, "6.6.6.6")
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address, timeout_ms=250)
    r = gate.exchange(make_query("www.example.com.", "A", ident=0x7301).to_wire(), timeout=1.0, linger=0.6)
    assert r.response is not None and r.msg.rcode() == dns.rcode.SERVFAIL
    assert r.extra == [], "the late upstream answer reached the workload after its SERVFAIL"
    (ev,) = gate.events(1)
    servfail_event(ev, r, "upstream_timeout", upstream.address)
    stats = gate.stop()
    assert stats["unsolicitedUpstream"] == 1 and stats["relayed"] == 0


# ------------------------------------------------------------ unreachable


@pytest.mark.parametrize("edns", [True, False])
def test_closed_upstream_port_gives_servfail_network_error(dnsgate, edns):
    port = closed_udp_port()
    address = f"127.0.0.1:{port}"
    gate = dnsgate(allowlist=ALLOW, upstream=address, timeout_ms=2000)
    replies = []
    for i in range(3):
        r = gate.query("www.example.com.", "A", ident=0x7400 + i, edns=edns, do=(i == 1), timeout=3.0)
        assert r.response is not None
        assert r.elapsed < 0.3, f"SERVFAIL for an unreachable upstream took {r.elapsed * 1000:.0f} ms"
        assert_synthesized(r, dns.rcode.SERVFAIL, 23)
        replies.append(r)
    evs = gate.events(3)
    for ev, r in zip(evs, replies):
        servfail_event(ev, r, "upstream_error", address)
    stats = gate.stop()
    assert stats["servfailError"] == 3 and stats["servfailTimeout"] == 0 and stats["relayed"] == 0


# ------------------------------------------------------------ capacity


def test_full_inflight_table_gives_servfail_overloaded(dnsgate, upstream):
    upstream.behaviour = silent
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address, timeout_ms=800, max_inflight=2)
    s1 = gate.send(make_query("one.example.com.", "A", ident=0x7501).to_wire())
    s2 = gate.send(make_query("two.example.com.", "A", ident=0x7502).to_wire())
    try:
        assert len(upstream.wait_for(2)) == 2
        t_sent = time.monotonic()
        r3 = gate.exchange(make_query("three.example.com.", "A", ident=0x7503, edns=True, do=True).to_wire(),
                           timeout=0.5)
        assert r3.response is not None, "the query past maxInflight got no answer"
        assert r3.elapsed < 0.1, f"overloaded SERVFAIL took {r3.elapsed * 1000:.0f} ms"
        assert_synthesized(r3, dns.rcode.SERVFAIL, None)  # OPT present, no EDE
        assert ede_codes(r3.msg) == []
        # the two in flight still time out normally
        for s, ident in ((s1, 0x7501), (s2, 0x7502)):
            data = recv_until(s, t_sent + 2.0)
            assert data is not None
            m = dns.message.from_wire(data)
            assert m.id == ident and m.rcode() == dns.rcode.SERVFAIL
    finally:
        s1.close()
        s2.close()
    assert len(upstream.queries()) == 2, "the overloaded query reached the upstream"
    # the table drained: new queries are forwarded again
    upstream.behaviour = answer_after(0.0)
    r4 = gate.query("four.example.com.", "A", ident=0x7504)
    assert r4.response is not None and r4.msg.rcode() == dns.rcode.NOERROR
    evs = gate.events(4)
    by_name = {e["data"]["qname"]: e for e in evs}
    check_event(by_name["three.example.com"], r3, action="servfail", reasonCode="overloaded",
                rcode="SERVFAIL", answerCount=0, upstream=ABSENT, qtype="A")
    assert by_name["one.example.com"]["data"]["reasonCode"] == "upstream_timeout"
    assert by_name["two.example.com"]["data"]["reasonCode"] == "upstream_timeout"
    check_event(by_name["four.example.com"], r4, action="forward", reasonCode="allowed")
    stats = gate.stop()
    assert stats["overloaded"] == 1
    assert stats["servfailTimeout"] == 2
    assert stats["forwarded"] == 3 and stats["relayed"] == 1


# ------------------------------------------------------------ answers that must not be accepted

REAL = "192.0.2.1"
FAKE = "6.6.6.6"


def spoof_wrong_id(up, wire, addr):
    up.send(struct.pack("!H", wire_id(wire) ^ 0x5A5A) + answer_for(wire, FAKE)[2:], addr)


def spoof_other_port(up, wire, addr):
    up.send(answer_for(wire, FAKE), addr, via=up.socket_from("127.0.0.1"))


def spoof_other_address(up, wire, addr):
    up.send(answer_for(wire, FAKE), addr, via=up.socket_from("127.0.0.2", up.port))


def _answer_with_question(wire, name, rdtype, rdclass):
    q = dns.message.from_wire(wire)
    other = dns.message.make_query(name, rdtype, rdclass)
    other.id = q.id
    r = dns.message.make_response(other)
    r.flags = (r.flags & ~0x0100) | (q.flags & 0x0100)
    if rdtype == dns.rdatatype.A and rdclass == dns.rdataclass.IN:
        r.answer.append(dns.rrset.from_text(name, 60, "IN", "A", FAKE))
    return r.to_wire()


def spoof_other_name(up, wire, addr):
    up.send(_answer_with_question(wire, "www.example.net.", dns.rdatatype.A, dns.rdataclass.IN), addr)


def spoof_other_type(up, wire, addr):
    up.send(_answer_with_question(wire, "www.example.com.", dns.rdatatype.AAAA, dns.rdataclass.IN), addr)


def spoof_other_class(up, wire, addr):
    up.send(_answer_with_question(wire, "www.example.com.", dns.rdatatype.A, dns.rdataclass.CH), addr)


def spoof_not_a_response(up, wire, addr):
    up.send(wire, addr)  # the query itself, QR=0


def spoof_no_question(up, wire, addr):
    up.send(wire[:2] + struct.pack("!HHHHH", 0x8180, 0, 0, 0, 0), addr)


def spoof_garbage(up, wire, addr):
    up.send(wire[:2] + b"\x81", addr)


SPOOFS = {
    "wrong_id": spoof_wrong_id,
    "other_port": spoof_other_port,
    "other_address": spoof_other_address,
    "other_name": spoof_other_name,
    "other_type": spoof_other_type,
    "other_class": spoof_other_class,
    "not_a_response": spoof_not_a_response,
    "no_question": spoof_no_question,
    "garbage": spoof_garbage,
}
FROM_ELSEWHERE = {"other_port", "other_address"}


@pytest.mark.parametrize("kind", list(SPOOFS))
def test_spoofed_answer_never_reaches_the_workload(dnsgate, upstream, kind):
    def behaviour(up, wire, addr):
        SPOOFS[kind](up, wire, addr)
        up.send(answer_for(wire, REAL), addr, delay=0.15)

    upstream.behaviour = behaviour
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address, timeout_ms=1000)
    r = gate.exchange(make_query("www.example.com.", "A", ident=0x7601).to_wire(), timeout=1.5, linger=0.3)
    assert r.response is not None
    assert r.msg.rcode() == dns.rcode.NOERROR
    assert [a.address for a in r.msg.answer[0]] == [REAL], "the spoofed answer was relayed"
    assert r.extra == [], "more than one answer reached the workload"
    assert r.elapsed >= 0.14, "answered before the real upstream answer was sent"
    (ev,) = gate.events(1)
    check_event(ev, r, action="forward", reasonCode="allowed", rcode="NOERROR", answerCount=1)
    stats = gate.stop()
    # dnsgate's upstream socket is connected to the resolver: the kernel
    # drops what comes from elsewhere before dnsgate could count it.
    counted = 0 if kind in FROM_ELSEWHERE else 1
    assert stats["unsolicitedUpstream"] == counted, f"{kind}: discarded answer miscounted: {stats}"
    assert stats["relayed"] == 1


def test_only_spoofs_then_timeout(dnsgate, upstream):
    def behaviour(up, wire, addr):
        for spoof in SPOOFS.values():
            spoof(up, wire, addr)

    upstream.behaviour = behaviour
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address, timeout_ms=400)
    r = gate.exchange(make_query("www.example.com.", "A", ident=0x7701, edns=True).to_wire(), timeout=1.0)
    assert r.response is not None
    assert_synthesized(r, dns.rcode.SERVFAIL, 22)
    assert r.elapsed >= 0.39
    (ev,) = gate.events(1)
    servfail_event(ev, r, "upstream_timeout", upstream.address)
    stats = gate.stop()
    assert stats["unsolicitedUpstream"] == len(SPOOFS) - len(FROM_ELSEWHERE)


def test_answer_for_an_id_not_in_flight_is_counted(dnsgate, upstream):
    """Stray datagrams from the upstream address with nothing in flight."""
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address)
    r = gate.query("www.example.com.", "A", ident=0x7801)
    assert r.response is not None
    (seen,) = upstream.wait_for(1)
    # the upstream knows dnsgate's upstream socket now; replay its answer twice more
    addr = upstream.received[0][1]
    stale = answer_for(seen, REAL)
    upstream.send(stale, addr)
    upstream.send(stale, addr)
    time.sleep(0.2)
    gate.events(1)
    stats = gate.stop()
    assert stats["unsolicitedUpstream"] == 2 and stats["relayed"] == 1


def test_duplicate_answer_is_relayed_once(dnsgate, upstream):
    def behaviour(up, wire, addr):
        up.send(answer_for(wire, REAL), addr)
        up.send(answer_for(wire, REAL), addr, delay=0.05)

    upstream.behaviour = behaviour
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address)
    r = gate.exchange(make_query("www.example.com.", "A", ident=0x7901).to_wire(), linger=0.3)
    assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR
    assert r.extra == [], "the duplicate answer was relayed too"
    (ev,) = gate.events(1)
    check_event(ev, r, action="forward", reasonCode="allowed")
    stats = gate.stop()
    assert stats["relayed"] == 1 and stats["unsolicitedUpstream"] == 1


def test_many_queries_in_flight_at_once(dnsgate, upstream):
    """200 queries held by the upstream, then answered in reverse: each client gets its own."""
    n = 200
    held = []
    lock = threading.Lock()

    def behaviour(up, wire, addr):
        with lock:
            held.append((wire, addr))
            if len(held) < n:
                return
            batch = list(reversed(held))
        for w, a in batch:
            name = dns.message.from_wire(w).question[0].name.to_text()
            i = int(name.split(".")[0][1:])
            up.send(answer_for(w, f"10.0.{i // 256}.{i % 256}"), a)

    upstream.behaviour = behaviour
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address, timeout_ms=5000)
    socks = [gate.send(make_query(f"h{i}.example.com.", "A", ident=0x1000).to_wire()) for i in range(n)]
    try:
        deadline = time.monotonic() + 5
        for i, s in enumerate(socks):
            data = recv_until(s, deadline)
            assert data is not None, f"client {i} got no answer"
            m = dns.message.from_wire(data)
            assert m.id == 0x1000
            assert [a.address for a in m.answer[0]] == [f"10.0.{i // 256}.{i % 256}"], f"client {i} got another's answer"
    finally:
        for s in socks:
            s.close()
    assert len({wire_id(w) for w in upstream.queries()}) == n, "two queries in flight shared an upstream id"
    evs = gate.events(n)
    assert all(e["data"]["action"] == "forward" for e in evs)


def test_ten_thousand_in_flight_by_default(dnsgate, upstream):
    """The default maxInflight holds 10,000 queries at once; each times out with its own event."""
    n = 10000
    upstream.behaviour = silent
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address, max_inflight=None, timeout_ms=4000)
    client = udp_socket()
    big_buffers(client)
    try:
        start = time.monotonic()
        for burst in range(0, n, 500):
            for i in range(burst, min(n, burst + 500)):
                client.sendto(make_query(f"h{i}.example.com.", "A", ident=i).to_wire(), ("127.0.0.1", gate.port))
            gate.note_datagrams(min(n, burst + 500) - burst)
            got = upstream.wait_for(min(n, burst + 500), timeout=3)
            assert len(got) == min(n, burst + 500), f"the upstream saw {len(got)} of {burst + 500} queries"
        assert time.monotonic() - start < 3.5, "test too slow to keep 10,000 in flight at once"
        # nothing came back before the timeout: none was overloaded
        early = recv_until(client, start + 3.5)
        assert early is None or dns.message.from_wire(early).rcode() == dns.rcode.SERVFAIL
        assert early is None, "a query was answered before the timeout (overloaded?)"
        answers = 0
        deadline = time.monotonic() + 8
        while answers < n and time.monotonic() < deadline:
            data = recv_until(client, deadline)
            if data is None:
                break
            answers += 1
        assert answers == n, f"{answers} SERVFAILs for {n} queries"
    finally:
        client.close()
    evs = gate.events(n, timeout=10)
    assert all(e["data"]["reasonCode"] == "upstream_timeout" for e in evs)
    stats = gate.stop()
    assert stats["overloaded"] == 0 and stats["eventsDropped"] == 0
    assert stats["servfailTimeout"] == n
