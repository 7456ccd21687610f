"""Allowed names: forwarded to the upstream, its answer relayed byte for byte
with the workload's transaction id (DESIGN.md §1 row 1, "Transaction id
binding", "No caching")."""

from __future__ import annotations

import subprocess
import threading
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from dnsgate_testlib import (
    BIG_TXT_STRINGS, answer_for, check_event, event_time, header, make_query, raw_query, recv_until,
    udp_socket, wire_id, with_id,
)

ALLOW = ["example.com", "*.example.com", "*.example.org"]


@pytest.fixture
def gate_knot(dnsgate, knotd):
    return dnsgate(allowlist=ALLOW, upstream=knotd.address)


@pytest.fixture
def gate_scripted(dnsgate, upstream):
    return dnsgate(allowlist=ALLOW, upstream=upstream.address)


# ------------------------------------------------------------ real clients


def test_dnspython_client_gets_knotd_answer(gate_knot, knotd):
    q = make_query("www.example.com.", "A", ident=0x1234)
    sock = udp_socket()
    try:
        client_port = sock.getsockname()[1]
        before = time.time()
        resp = dns.query.udp(q, "127.0.0.1", port=gate_knot.port, timeout=3, sock=sock)
        after = time.time()
    finally:
        sock.close()
    gate_knot.note_datagrams(1)
    assert resp.id == 0x1234
    assert resp.rcode() == dns.rcode.NOERROR
    assert [r.address for r in resp.answer[0]] == ["192.0.2.10"]
    (ev,) = gate_knot.events(1)
    check_event(ev, action="forward", reasonCode="allowed", qname="www.example.com", qtype="A",
                qclass="IN", rcode="NOERROR", answerCount=1, upstream=knotd.address,
                client=f"127.0.0.1:{client_port}", transactionId=0x1234, size=len(q.to_wire()))
    assert before - 0.05 <= event_time(ev) <= after + 0.05
    assert ev["data"]["latencyUs"] < 3_000_000


def test_kdig_client(gate_knot):
    out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(gate_knot.port), "+retry=0", "+timeout=3",
                          "+notcp", "www.example.com.", "AAAA", "+short"],
                         capture_output=True, text=True, timeout=15)
    gate_knot.note_datagrams(1)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2001:db8::10"], out.stdout
    (ev,) = gate_knot.events(1)
    check_event(ev, action="forward", reasonCode="allowed", qname="www.example.com", qtype="AAAA",
                rcode="NOERROR", answerCount=1)


def test_dig_client(gate_knot):
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(gate_knot.port), "+tries=1", "+time=3",
                          "+notcp", "api.example.org.", "A", "+short"],
                         capture_output=True, text=True, timeout=15)
    gate_knot.note_datagrams(1)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["192.0.2.101"], out.stdout
    (ev,) = gate_knot.events(1)
    check_event(ev, action="forward", reasonCode="allowed", qname="api.example.org", qtype="A",
                rcode="NOERROR", answerCount=1)


# ------------------------------------------------------------ byte for byte with knotd


CASES = [
    # name, type, edns, do, expected rcode, expected answer count
    ("example.com.", "A", False, False, "NOERROR", 1),
    ("www.example.com.", "AAAA", True, False, "NOERROR", 1),
    ("multi.example.com.", "A", True, True, "NOERROR", 5),
    ("nothere.example.com.", "A", True, False, "NXDOMAIN", 0),
    ("www.example.com.", "MX", False, False, "NOERROR", 0),  # NODATA
    ("big.example.com.", "TXT", True, False, "NOERROR", 1),  # ~3.9 KB answer, EDNS 4096
]


@pytest.mark.parametrize("name,rdtype,edns,do,rcode,answers", CASES)
def test_response_is_knotd_answer_byte_for_byte(gate_knot, knotd, name, rdtype, edns, do, rcode, answers):
    q = make_query(name, rdtype, ident=0xA1B2, edns=edns, do=do, payload=4096)
    wire = q.to_wire()
    r = gate_knot.exchange(wire, timeout=3)
    assert r.response is not None, "no answer through dnsgate"
    direct = knotd.ask(with_id(wire, 0x0F0F))
    assert wire_id(r.response) == 0xA1B2
    assert r.response[2:] == direct[2:], "dnsgate changed knotd's answer"
    h = header(r.response)
    assert h["ancount"] == answers and not h["tc"]
    (ev,) = gate_knot.events(1)
    check_event(ev, r, action="forward", reasonCode="allowed", qname=name.rstrip("."), qtype=rdtype,
                qclass="IN", rcode=rcode, answerCount=answers, upstream=knotd.address)


def test_big_answer_is_relayed_whole(gate_knot):
    r = gate_knot.exchange(make_query("big.example.com.", "TXT", ident=77, edns=True, payload=4096).to_wire(),
                           timeout=3)
    assert r.response is not None and len(r.response) > 3500
    txt = r.msg.answer[0][0]
    assert len(txt.strings) == BIG_TXT_STRINGS and all(len(s) == 255 for s in txt.strings)
    gate_knot.events(1)


def test_truncated_answer_relayed_with_tc(gate_knot, knotd):
    """Without EDNS knotd cannot fit the big TXT in 512 octets: TC=1 reaches the workload as is."""
    wire = make_query("big.example.com.", "TXT", ident=0x0202).to_wire()
    r = gate_knot.exchange(wire, timeout=3)
    assert r.response is not None
    assert header(r.response)["tc"], "TC bit lost"
    assert len(r.response) <= 512
    assert r.response[2:] == knotd.ask(wire)[2:]
    (ev,) = gate_knot.events(1)
    check_event(ev, r, action="forward", reasonCode="allowed", qname="big.example.com", qtype="TXT",
                rcode="NOERROR")


def test_case_of_the_name_is_preserved(gate_knot, knotd):
    wire = make_query("WwW.ExAmPlE.cOm.", "A", ident=0x3131).to_wire()
    r = gate_knot.exchange(wire)
    assert r.response is not None
    assert r.response[2:] == knotd.ask(wire)[2:]
    assert b"\x03WwW\x07ExAmPlE\x03cOm\x00" in r.response
    assert [a.address for a in r.msg.answer[0]] == ["192.0.2.10"]
    (ev,) = gate_knot.events(1)
    assert ev["subject"] == "WwW.ExAmPlE.cOm"
    check_event(ev, r, qname="WwW.ExAmPlE.cOm", action="forward", reasonCode="allowed")


@pytest.mark.parametrize("name,address", [("api.example.org.", "192.0.2.101"), ("a.b.example.org.", "192.0.2.102")])
def test_wildcard_allows_one_and_two_labels(gate_knot, knotd, name, address):
    r = gate_knot.exchange(make_query(name, "A", ident=5).to_wire())
    assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR
    assert [a.address for a in r.msg.answer[0]] == [address]
    (ev,) = gate_knot.events(1)
    check_event(ev, r, action="forward", reasonCode="allowed", qname=name.rstrip("."), upstream=knotd.address)


def test_no_cache_every_query_goes_upstream(gate_scripted, upstream):
    for i in range(3):
        r = gate_scripted.exchange(make_query("www.example.com.", "A", ident=100 + i).to_wire())
        assert r.response is not None and wire_id(r.response) == 100 + i
    assert len(upstream.wait_for(3)) == 3
    gate_scripted.events(3)


# ------------------------------------------------------------ what the upstream sees


def test_upstream_sees_client_bytes_except_id(gate_scripted, upstream):
    sent = []

    def behaviour(up, wire, addr):
        # an answer with unusual details dnsgate must not touch
        q = dns.message.from_wire(wire)
        resp = dns.message.make_response(q)
        resp.flags |= dns.flags.AA | dns.flags.AD
        resp.answer.append(dns.rrset.from_text(q.question[0].name, 12345, "IN", "A", "192.0.2.77", "192.0.2.78"))
        resp.additional.append(dns.rrset.from_text("extra.example.net.", 7, "IN", "TXT", '"hello"'))
        out = resp.to_wire()
        sent.append(out)
        up.send(out, addr)

    upstream.behaviour = behaviour
    wire = make_query("MiXeD.ExAmPlE.com.", "TXT", ident=0x5A5A, edns=True, do=True, cd=True,
                      payload=1400).to_wire()
    r = gate_scripted.exchange(wire)
    assert r.response is not None
    (seen,) = upstream.wait_for(1)
    assert seen[2:] == wire[2:], "the upstream must receive the workload's bytes but for the id"
    assert wire_id(seen) != 0x5A5A, "the workload's id leaked upstream (a fresh random id is expected)"
    assert wire_id(r.response) == 0x5A5A
    assert r.response[2:] == sent[0][2:], "the upstream's answer was changed on the way"
    (ev,) = gate_scripted.events(1)
    check_event(ev, r, action="forward", reasonCode="allowed", qname="MiXeD.ExAmPlE.com", qtype="TXT",
                rcode="NOERROR", answerCount=2, upstream=upstream.address)


def test_upstream_ids_are_fresh_and_random(gate_scripted, upstream):
    n = 64
    for i in range(n):
        ident = 0x4242 if i < n // 2 else i  # the same id over and over, then a sequence
        r = gate_scripted.exchange(make_query("www.example.com.", "A", ident=ident).to_wire())
        assert r.response is not None and wire_id(r.response) == ident
    seen = upstream.wait_for(n)
    assert len(seen) == n
    up_ids = [wire_id(w) for w in seen]
    client_ids = [0x4242 if i < n // 2 else i for i in range(n)]
    same = sum(1 for u, c in zip(up_ids, client_ids) if u == c)
    assert same <= 2, f"upstream ids copy the workload's: {up_ids}"
    assert len(set(up_ids)) >= n - 3, f"upstream ids repeat: {up_ids}"
    steps = {(b - a) & 0xFFFF for a, b in zip(up_ids, up_ids[1:])}
    assert len(steps) > n // 2, f"upstream ids look sequential: {up_ids}"
    offsets = {(u - c) & 0xFFFF for u, c in zip(up_ids, client_ids)}
    assert len(offsets) > n // 2, f"upstream ids are the workload's plus a constant: {up_ids}"
    gate_scripted.events(n)


def test_tc_from_upstream_is_relayed(gate_scripted, upstream):
    def behaviour(up, wire, addr):
        q = dns.message.from_wire(wire)
        resp = dns.message.make_response(q)
        resp.flags |= dns.flags.TC
        up.send(resp.to_wire(), addr)

    upstream.behaviour = behaviour
    wire = make_query("www.example.com.", "TXT", ident=0x0ABC).to_wire()
    r = gate_scripted.exchange(wire)
    assert r.response is not None
    h = header(r.response)
    assert h["tc"] and h["qr"] and h["id"] == 0x0ABC and h["ancount"] == 0
    (ev,) = gate_scripted.events(1)
    check_event(ev, r, action="forward", reasonCode="allowed", rcode="NOERROR", answerCount=0)


def test_two_clients_same_id_at_once(gate_scripted, upstream):
    """Both queries are in flight together (the upstream holds them), both use id 0x7777."""
    held = []
    lock = threading.Lock()
    addresses = {"one.example.com.": "192.0.2.111", "two.example.com.": "192.0.2.222"}

    def behaviour(up, wire, addr):
        with lock:
            held.append((wire, addr))
            if len(held) < 2:
                return
            pending = list(reversed(held))  # answer the second first
        for w, a in pending:
            name = dns.message.from_wire(w).question[0].name.to_text()
            up.send(answer_for(w, addresses[name]), a)

    upstream.behaviour = behaviour
    q1 = make_query("one.example.com.", "A", ident=0x7777).to_wire()
    q2 = make_query("two.example.com.", "A", ident=0x7777).to_wire()
    s1 = gate_scripted.send(q1)
    s2 = gate_scripted.send(q2)
    try:
        deadline = time.monotonic() + 3
        r1 = recv_until(s1, deadline)
        r2 = recv_until(s2, deadline)
        assert r1 is not None and r2 is not None, "a client got no answer"
        m1, m2 = dns.message.from_wire(r1), dns.message.from_wire(r2)
        assert m1.id == m2.id == 0x7777
        assert m1.question[0].name.to_text() == "one.example.com."
        assert [a.address for a in m1.answer[0]] == ["192.0.2.111"]
        assert m2.question[0].name.to_text() == "two.example.com."
        assert [a.address for a in m2.answer[0]] == ["192.0.2.222"]
        # and nothing else arrives at either client
        assert recv_until(s1, time.monotonic() + 0.2) is None
        assert recv_until(s2, time.monotonic() + 0.2) is None
    finally:
        s1.close()
        s2.close()
    seen = upstream.queries()
    assert len(seen) == 2 and wire_id(seen[0]) != wire_id(seen[1])
    evs = gate_scripted.events(2)
    assert sorted(e["data"]["qname"] for e in evs) == ["one.example.com", "two.example.com"]
    for e in evs:
        check_event(e, action="forward", reasonCode="allowed", transactionId=0x7777, rcode="NOERROR",
                    answerCount=1, upstream=upstream.address)


def test_upstream_answer_with_other_name_case_is_accepted(gate_scripted, upstream):
    """The question must match case-insensitively; the answer is relayed byte for byte."""
    sent = []

    def behaviour(up, wire, addr):
        resp = bytearray(answer_for(wire, "192.0.2.9"))
        qlen = len(b"\x03www\x07example\x03com\x00")
        resp[12:12 + qlen] = b"\x03WWW\x07EXAMPLE\x03COM\x00"
        sent.append(bytes(resp))
        up.send(bytes(resp), addr)

    upstream.behaviour = behaviour
    r = gate_scripted.exchange(make_query("www.example.com.", "A", ident=0x0909).to_wire())
    assert r.response is not None, "an answer whose question differs only in case was discarded"
    assert r.response[2:] == sent[0][2:]
    (ev,) = gate_scripted.events(1)
    check_event(ev, r, action="forward", reasonCode="allowed", rcode="NOERROR", answerCount=1)


def test_upstream_rcode_is_reported(gate_scripted, upstream):
    upstream.behaviour = lambda up, wire, addr: up.send(answer_for(wire, rcode=dns.rcode.NXDOMAIN), addr)
    r = gate_scripted.exchange(make_query("gone.example.com.", "AAAA", ident=0x0101, edns=True).to_wire())
    assert r.response is not None and r.msg.rcode() == dns.rcode.NXDOMAIN
    (ev,) = gate_scripted.events(1)
    check_event(ev, r, action="forward", reasonCode="allowed", qname="gone.example.com", qtype="AAAA",
                rcode="NXDOMAIN", answerCount=0, upstream=upstream.address)


def test_unknown_type_and_class_names(gate_scripted, upstream):
    wire = raw_query([b"www", b"example", b"com"], qtype=65280, qclass=1, ident=0x2222)
    upstream.behaviour = lambda up, w, addr: up.send(answer_for(w), addr)
    r = gate_scripted.exchange(wire)
    assert r.response is not None
    (ev,) = gate_scripted.events(1)
    check_event(ev, r, qtype="TYPE65280", qclass="IN", action="forward")


def test_ipv6_listener_and_upstream(dnsgate):
    """[::1] on both sides: the config's IPv6 form, and the event's client/upstream in brackets."""
    from dnsgate_testlib import ScriptedUpstream
    up6 = ScriptedUpstream(host="::1")
    try:
        gate = dnsgate(allowlist=ALLOW, upstream=up6.address, listen_host="::1")
        r = gate.exchange(make_query("www.example.com.", "A", ident=0x0606).to_wire())
        assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR
        (seen,) = up6.wait_for(1)
        assert seen[2:] == r.query[2:]
        (ev,) = gate.events(1)
        assert r.client.startswith("[::1]:")
        check_event(ev, r, action="forward", reasonCode="allowed", upstream=up6.address)
        assert up6.address.startswith("[::1]:")
    finally:
        up6.close()
    assert not up6.errors


def test_large_query_forwarded_intact(gate_scripted, upstream):
    """A query padded to about 3 KB (EDNS padding option) reaches the upstream unchanged."""
    import struct as _s
    padding = _s.pack("!HH", 12, 3000) + b"\x00" * 3000
    wire = raw_query([b"www", b"example", b"com"], ident=0x3000,
                     edns={"payload": 4096, "do": True, "options": padding})
    r = gate_scripted.exchange(wire)
    assert r.response is not None
    (seen,) = upstream.wait_for(1)
    assert len(seen) == len(wire) and seen[2:] == wire[2:]
    (ev,) = gate_scripted.events(1)
    check_event(ev, r, size=len(wire), action="forward", reasonCode="allowed")


def test_burst_from_one_socket(gate_scripted, upstream):
    """300 datagrams sent back to back (allowed, denied, malformed): every one gets its due."""
    sock = udp_socket()
    try:
        kinds = []
        for i in range(300):
            kind = ("allowed", "denied", "malformed")[i % 3]
            kinds.append(kind)
            if kind == "allowed":
                wire = make_query(f"h{i}.example.com.", "A", ident=i).to_wire()
            elif kind == "denied":
                wire = make_query(f"h{i}.example.net.", "A", ident=i).to_wire()
            else:
                wire = bytes([i >> 8, i & 0xFF]) + b"\x80"
            gate_scripted.send(wire, sock=sock)
        answers = {}
        deadline = time.monotonic() + 5
        while len(answers) < 200:
            data = recv_until(sock, deadline)
            if data is None:
                break
            answers[wire_id(data)] = dns.message.from_wire(data).rcode()
    finally:
        sock.close()
    assert len(answers) == 200, f"{len(answers)} answers for 200 answerable queries"
    for i, kind in enumerate(kinds):
        if kind == "allowed":
            assert answers[i] == dns.rcode.NOERROR
        elif kind == "denied":
            assert answers[i] == dns.rcode.REFUSED
        else:
            assert i not in answers
    evs = gate_scripted.events(300)
    assert sorted(e["data"]["action"] for e in evs) == sorted(
        {"allowed": "forward", "denied": "refuse", "malformed": "drop"}[k] for k in kinds)
    stats = gate_scripted.stop()
    assert stats["received"] == 300 + gate_scripted.probes and stats["malformed"] == 100


def test_latency_is_the_upstream_round_trip(gate_scripted, upstream):
    from dnsgate_testlib import answer_after
    upstream.behaviour = answer_after(0.2)
    r = gate_scripted.exchange(make_query("www.example.com.", "A", ident=0x1A7E).to_wire())
    assert r.response is not None and r.elapsed >= 0.2
    (ev,) = gate_scripted.events(1)
    assert 195_000 <= ev["data"]["latencyUs"] <= r.elapsed * 1e6 + 5_000, ev
    check_event(ev, r, action="forward", reasonCode="allowed")
