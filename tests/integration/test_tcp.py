"""TCP/53 (issue 3, DESIGN.md §1 "Over TCP"): the TCP listener with RFC 7766
framing, the same policy per frame, TCP to the upstream with connection
reuse, the listener's limits, and `do53-tcp` for UDP workloads.

Real clients (kdig, dig, raw sockets, dnspython messages) against the real
binary; knotd or a scripted TCP upstream (tcp_lib.ScriptedTcpUpstream)."""

from __future__ import annotations

import re
import signal
import socket
import struct
import subprocess
import threading
import time

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dnsgate_testlib import (
    ABSENT, BIG_TXT_STRINGS, Reply, answer_for, assert_synthesized, big_txt_rdata, check_event, ede_codes,
    event_time, free_port, header, make_query, question_bytes, raw_query, run_cli, wire_id, with_id,
)
from tcp_lib import (
    ScriptedTcpUpstream, TcpGate, big_answer, frame, tcp_silent,
)

ALLOW = ["example.com", "*.example.com", "*.example.org"]
CLIENT_RE = re.compile(r"^127\.0\.0\.1:(\d+)$")


# ------------------------------------------------------------ fixtures


@pytest.fixture
def tcp_upstream():
    """A scripted TCP upstream; set .behaviour, read .received / .connections."""
    up = ScriptedTcpUpstream()
    try:
        yield up
    finally:
        up.stop()
    assert not up.errors, f"scripted TCP upstream failed: {up.errors!r}"


@pytest.fixture
def gate_knot(tcpgate, knotd):
    """UDP and TCP on one port, do53-udp resolver: knotd (UDP and TCP on its port)."""
    return tcpgate(allowlist=ALLOW, upstream=knotd.address)


def tcp_event(ev, reply=None, **expected):
    return check_event(ev, reply, transport="tcp", **expected)


def servfail_frame(reply: Reply, ede: int, edns: bool) -> None:
    assert reply.response is not None, "no SERVFAIL over TCP"
    assert_synthesized(reply, dns.rcode.SERVFAIL, ede)
    assert ede_codes(reply.msg) == ([(ede, "")] if edns else [])


# ------------------------------------------------------------ real clients, knotd


def test_kdig_tcp_allowed_and_denied(gate_knot, knotd):
    out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(gate_knot.port), "+tcp", "+retry=0", "+timeout=3",
                          "www.example.com.", "AAAA", "+short"], capture_output=True, text=True, timeout=15)
    gate_knot.note_datagrams(1)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2001:db8::10"], out.stdout
    out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(gate_knot.port), "+tcp", "+edns", "+retry=0",
                          "+timeout=3", "www.example.net.", "A"], capture_output=True, text=True, timeout=15)
    gate_knot.note_datagrams(1)
    assert out.returncode == 0, out.stderr
    assert "status: REFUSED" in out.stdout and "EDE: 15 (Blocked)" in out.stdout, out.stdout
    assert "(TCP)" in out.stdout, out.stdout
    ok, denied = gate_knot.events(2)
    tcp_event(ok, action="forward", reasonCode="allowed", qname="www.example.com", qtype="AAAA", qclass="IN",
              rcode="NOERROR", answerCount=1, upstream=knotd.address)
    tcp_event(denied, action="refuse", reasonCode="not_allowlisted", qname="www.example.net", qtype="A",
              rcode="REFUSED", answerCount=0, upstream=ABSENT)
    for ev in (ok, denied):
        assert CLIENT_RE.match(ev["data"]["client"]), ev
    stats = gate_knot.stop()
    assert stats["tcpAccepted"] == 2 and stats["tcpRejected"] == 0
    assert stats["forwarded"] == 1 and stats["relayed"] == 1 and stats["refused"] == 1 + gate_knot.probes
    assert stats["received"] == 2 + gate_knot.probes


def test_dig_tcp_allowed_and_denied(gate_knot, knotd):
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(gate_knot.port), "+tcp", "+tries=1", "+time=3",
                          "api.example.org.", "A", "+short"], capture_output=True, text=True, timeout=15)
    gate_knot.note_datagrams(1)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["192.0.2.101"], out.stdout
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(gate_knot.port), "+tcp", "+tries=1", "+time=3",
                          "secret.example.net.", "TXT"], capture_output=True, text=True, timeout=15)
    gate_knot.note_datagrams(1)
    assert out.returncode == 0, out.stderr
    assert "status: REFUSED" in out.stdout and "EDE: 15 (Blocked)" in out.stdout, out.stdout
    assert "(TCP)" in out.stdout, out.stdout
    ok, denied = gate_knot.events(2)
    tcp_event(ok, action="forward", reasonCode="allowed", qname="api.example.org", qtype="A",
              rcode="NOERROR", answerCount=1, upstream=knotd.address)
    tcp_event(denied, action="refuse", reasonCode="not_allowlisted", qname="secret.example.net", qtype="TXT",
              rcode="REFUSED", answerCount=0)


def _txt_strings(dig_stdout: str) -> list[str]:
    return re.findall(r'"([^"]*)"', dig_stdout)


def test_dig_big_txt_over_udp_retries_over_tcp(gate_knot, knotd):
    """dig's UDP answer for the ~3.8 KB TXT has TC=1; dig retries over TCP
    on the same port by itself and gets the whole record."""
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(gate_knot.port), "+tries=1", "+time=3",
                          "big.example.com.", "TXT"], capture_output=True, text=True, timeout=15)
    gate_knot.note_datagrams(2)
    assert out.returncode == 0, out.stderr
    assert "Truncated, retrying in TCP mode" in out.stdout, out.stdout
    assert "status: NOERROR" in out.stdout and "(TCP)" in out.stdout, out.stdout
    want = re.findall(r'"([^"]*)"', big_txt_rdata())
    assert len(want) == BIG_TXT_STRINGS
    assert _txt_strings(out.stdout.split("ANSWER SECTION:")[1]) == want, "the big TXT did not arrive whole"
    udp_ev, tcp_ev = gate_knot.events(2)
    check_event(udp_ev, transport="udp", action="forward", reasonCode="allowed", qname="big.example.com",
                qtype="TXT", rcode="NOERROR", upstream=knotd.address)
    tcp_event(tcp_ev, action="forward", reasonCode="allowed", qname="big.example.com", qtype="TXT",
              rcode="NOERROR", answerCount=1, upstream=knotd.address)
    stats = gate_knot.stop()
    assert stats["forwarded"] == 2 and stats["relayed"] == 2
    assert stats["tcpAccepted"] == 1 and stats["upstreamTcpConnects"] >= 1


def test_big_txt_over_tcp_is_byte_for_byte(gate_knot, knotd):
    wire = make_query("big.example.com.", "TXT", ident=0x0B16).to_wire()
    r = gate_knot.tcp_exchange(wire, timeout=3)
    assert r.response is not None
    direct = knotd.ask(make_query("big.example.com.", "TXT", ident=0x0B16, edns=True, payload=65000).to_wire())
    assert not header(r.response)["tc"] and len(r.response) > 3800, len(r.response)
    assert r.msg.answer and len(r.msg.answer[0][0].strings) == BIG_TXT_STRINGS
    assert r.msg.answer[0] == dns.message.from_wire(direct).answer[0]
    (ev,) = gate_knot.events(1)
    tcp_event(ev, r, action="forward", reasonCode="allowed", rcode="NOERROR", answerCount=1)


# ------------------------------------------------------------ framing, raw sockets


def _mixed_queries(n: int):
    """(wire, expectation) for n queries: two allowed names in three, the rest denied."""
    allowed = [("www.example.com.", "A", ["192.0.2.10"]), ("api.example.org.", "AAAA", ["2001:db8::101"]),
               ("multi.example.com.", "A", [f"192.0.2.{i}" for i in range(21, 26)]),
               ("example.com.", "A", ["192.0.2.1"])]
    denied = [("www.example.net.", "A"), ("example.org.", "A"), ("x.evil.test.", "TXT")]
    out = []
    for i in range(n):
        ident = (i * 7919 + 13) & 0xFFFF
        edns = i % 4 == 1
        if i % 3 == 2:
            name, rdtype = denied[i % len(denied)]
            out.append((make_query(name, rdtype, ident=ident, edns=edns).to_wire(), ("deny", name, edns)))
        else:
            name, rdtype, addrs = allowed[i % len(allowed)]
            out.append((make_query(name, rdtype, ident=ident, edns=edns).to_wire(), ("allow", name, addrs)))
    return out


def test_100_pipelined_queries_on_one_connection(gate_knot, knotd):
    queries = _mixed_queries(100)
    by_id = {wire_id(w): (w, exp) for w, exp in queries}
    assert len(by_id) == 100
    with gate_knot.connect() as c:
        start = time.monotonic()
        c.send_raw(b"".join(frame(w) for w, _ in queries))
        gate_knot.expect_events(100)
        answers = []
        for _ in range(100):
            data = c.recv_frame(timeout=max(0.1, start + 5 - time.monotonic()))
            assert data is not None, f"{len(answers)} of 100 answers within 5 s (eof={c.eof})"
            answers.append(data)
        assert c.recv_frame(timeout=0.2) is None, "more answers than queries"
        client = c.client
    seen = set()
    for data in answers:
        m = dns.message.from_wire(data)
        assert m.id in by_id and m.id not in seen, f"answer with an unknown or repeated id {m.id}"
        seen.add(m.id)
        wire, (kind, name, extra) = by_id[m.id]
        assert data[12:12 + len(question_bytes(wire))] == question_bytes(wire), "another query's answer"
        if kind == "allow":
            assert m.rcode() == dns.rcode.NOERROR
            assert sorted(a.to_text() for a in m.answer[0]) == sorted(extra), m
        else:
            assert_synthesized(Reply(wire, data, 0, 0.0, 0.0), dns.rcode.REFUSED, 15)
    evs = gate_knot.events(100, timeout=5)
    ev_by_id = {e["data"]["transactionId"]: e for e in evs}
    assert set(ev_by_id) == set(by_id)
    for ident, (wire, (kind, name, _)) in by_id.items():
        ev = ev_by_id[ident]
        tcp_event(ev, client=client, size=len(wire), qname=name.rstrip("."),
                  action="forward" if kind == "allow" else "refuse",
                  reasonCode="allowed" if kind == "allow" else "not_allowlisted")
    n_allowed = sum(1 for _, (k, _, _) in queries if k == "allow")
    stats = gate_knot.stop()
    assert stats["received"] == 100 + gate_knot.probes
    assert stats["forwarded"] == n_allowed and stats["relayed"] == n_allowed
    assert stats["refused"] == 100 - n_allowed + gate_knot.probes
    assert stats["tcpAccepted"] == 1 and stats["malformed"] == 0


def test_frame_in_one_byte_writes(gate_knot):
    wire = make_query("www.example.com.", "A", ident=0x0101, edns=True).to_wire()
    with gate_knot.connect() as c:
        wall = time.time()
        start = time.monotonic()
        for b in frame(wire):
            c.send_raw(bytes([b]))
            time.sleep(0.003)
        data = c.recv_frame(timeout=2)
        r = Reply(wire, data, c.port, wall, time.monotonic() - start)
    gate_knot.expect_events(1)
    assert data is not None, "no answer to a frame written one byte at a time"
    assert r.msg.id == 0x0101 and r.msg.rcode() == dns.rcode.NOERROR
    assert [a.address for a in r.msg.answer[0]] == ["192.0.2.10"]
    (ev,) = gate_knot.events(1)
    tcp_event(ev, r, action="forward", reasonCode="allowed", qname="www.example.com", size=len(wire))


def test_two_frames_in_one_write_and_a_frame_across_writes(gate_knot):
    q1 = make_query("www.example.com.", "A", ident=0x0201).to_wire()
    q2 = make_query("www.example.net.", "A", ident=0x0202, edns=True).to_wire()
    q3 = make_query("api.example.org.", "A", ident=0x0203).to_wire()
    q4 = make_query("example.com.", "AAAA", ident=0x0204).to_wire()
    with gate_knot.connect() as c:
        c.send_raw(frame(q1) + frame(q2))
        got = {wire_id(d): d for d in (c.recv_frame(2), c.recv_frame(2)) if d is not None}
        assert set(got) == {0x0201, 0x0202}, f"two frames in one write: answers for {sorted(got)}"
        # one frame and a half, then the rest (the length prefix itself split)
        blob = frame(q3) + frame(q4)
        cut = len(frame(q3)) + 1
        c.send_raw(blob[:cut])
        time.sleep(0.05)
        c.send_raw(blob[cut:])
        more = {wire_id(d): d for d in (c.recv_frame(2), c.recv_frame(2)) if d is not None}
        assert set(more) == {0x0203, 0x0204}
    gate_knot.expect_events(4)
    assert dns.message.from_wire(got[0x0201]).rcode() == dns.rcode.NOERROR
    assert_synthesized(Reply(q2, got[0x0202], 0, 0.0, 0.0), dns.rcode.REFUSED, 15)
    assert [a.address for a in dns.message.from_wire(more[0x0203]).answer[0]] == ["192.0.2.101"]
    assert [a.address for a in dns.message.from_wire(more[0x0204]).answer[0]] == ["2001:db8::1"]
    evs = gate_knot.events(4)
    assert sorted(e["data"]["transactionId"] for e in evs) == [0x0201, 0x0202, 0x0203, 0x0204]
    assert all(e["data"]["transport"] == "tcp" for e in evs)


MALFORMED_FRAMES = {
    # name: (message, malformedReason)
    "length_zero": (b"", "too_short"),
    "short_header": (b"\xab\xcd\x01\x00\x00", "too_short"),
    "response_bit": (struct.pack("!HHHHHH", 0x4242, 0x8180, 1, 0, 0, 0) + b"\x00\x00\x01\x00\x01",
                     "response_bit_set"),
    "two_questions": (struct.pack("!HHHHHH", 0x4343, 0x0100, 2, 0, 0, 0) + b"\x00\x00\x01\x00\x01" * 2,
                      "bad_question_count"),
    # opcode 0: garbage whose header names another opcode is answered NOTIMP
    # from the header alone (docs/conformance.md, test_conformance.py)
    "garbage": (b"\x44\x44\x00" + bytes(range(0x41, 0x40 + 30)), None),
}


@pytest.mark.parametrize("kind", list(MALFORMED_FRAMES))
def test_malformed_frame_is_dropped_and_closes_the_connection(gate_knot, kind):
    message, reason = MALFORMED_FRAMES[kind]
    ok = make_query("www.example.com.", "A", ident=0x0301).to_wire()
    with gate_knot.connect() as c:
        first = c.exchange(ok)
        assert first.response is not None and first.msg.rcode() == dns.rcode.NOERROR
        wall = time.time()
        c.send_raw(frame(message))
        closed = c.wait_closed(1.5)
        assert closed is not None, "the connection stayed open after a malformed frame"
        assert c.buf == b"", "something was sent back for a malformed frame"
        client = c.client
    gate_knot.expect_events(2)
    _, ev = gate_knot.events(2)
    d = ev["data"]
    assert d["action"] == "drop" and d["reasonCode"] == "malformed_query" and d["rcode"] is None, ev
    assert d["transport"] == "tcp" and d["client"] == client and d["size"] == len(message), ev
    if reason is not None:
        assert d["malformedReason"] == reason, ev
    if len(message) >= 2:
        assert d["transactionId"] == wire_id(message), ev
    else:
        assert "transactionId" not in d, ev
    assert abs(event_time(ev) - wall) < 0.5
    stats = gate_knot.stop()
    assert stats["malformed"] == 1 and stats["received"] == 2 + gate_knot.probes
    assert stats["tcpFramesAbandoned"] == 0


def test_malformed_frame_behind_a_query_in_flight(tcpgate, tcp_upstream):
    """The connection closes at the malformed frame; the query still in flight
    on it gets its own event when its answer comes: client_gone."""
    tcp_upstream.behaviour = lambda up, conn, wire: conn.send_frame(answer_for(wire), delay=0.2)
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address, timeout_ms=1000)
    wire = make_query("a.example.com.", "A", ident=0x0381).to_wire()
    with gate.connect() as c:
        c.send_raw(frame(wire) + frame(b""))
        assert c.wait_closed(1.0) is not None, "the connection stayed open after a length-0 frame"
        assert c.buf == b""
    gate.expect_events(2)
    evs = gate.events(2)
    by_reason = {e["data"]["reasonCode"]: e for e in evs}
    assert set(by_reason) == {"malformed_query", "client_gone"}, evs
    tcp_event(by_reason["client_gone"], action="drop", rcode=None, qname="a.example.com", transactionId=0x0381)
    assert by_reason["malformed_query"]["data"]["malformedReason"] == "too_short"


def test_notimp_and_refused_over_tcp(tcpgate, tcp_upstream):
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address)
    notify = raw_query([b"www", b"example", b"com"], qtype=6, ident=0x0401, flags=4 << 11,
                       edns={"payload": 1232})
    denied = raw_query([b"WwW", b"Example", b"NET"], ident=0x0402, edns={"payload": 1232, "do": True},
                       flags=0x0110)
    with gate.connect() as c:
        r1 = c.exchange(notify)
        r2 = c.exchange(denied)
    gate.expect_events(2)
    assert_synthesized(r1, dns.rcode.NOTIMP, None, opcode=4)
    assert_synthesized(r2, dns.rcode.REFUSED, 15)
    e1, e2 = gate.events(2)
    tcp_event(e1, r1, action="refuse", reasonCode="unsupported_opcode", rcode="NOTIMP", upstream=ABSENT)
    tcp_event(e2, r2, action="refuse", reasonCode="not_allowlisted", rcode="REFUSED", qname="WwW.Example.NET")
    time.sleep(0.1)
    assert tcp_upstream.connections == 0 and tcp_upstream.queries() == [], "the upstream saw a refused query"
    stats = gate.stop()
    assert stats["upstreamTcpConnects"] == 0 and stats["notimp"] == 1


def test_tcp_only_listener(tcpgate, knotd):
    gate = tcpgate(allowlist=ALLOW, upstream=knotd.address, listen_udp=False)
    assert gate.tcp_probes == 1
    r = gate.tcp_query("www.example.com.", "A", ident=0x0501)
    assert r.response is not None and [a.address for a in r.msg.answer[0]] == ["192.0.2.10"]
    (ev,) = gate.events(1)
    tcp_event(ev, r, action="forward", reasonCode="allowed", upstream=knotd.address)
    stats = gate.stop()
    assert stats["tcpAccepted"] == 2  # the probe's connection and this one


# ------------------------------------------------------------ limits


def test_slow_client_does_not_delay_others_and_frame_timeout_closes_it(tcpgate, knotd):
    gate = tcpgate(allowlist=ALLOW, upstream=knotd.address, tcp={"frameTimeoutMs": 700, "idleTimeoutMs": 10000})
    half = frame(make_query("www.example.com.", "A", ident=0x0601).to_wire())
    slow1 = gate.connect()
    slow2 = gate.connect()
    quitter = gate.connect()
    try:
        t0 = time.monotonic()
        slow1.send_raw(half[:1])  # one octet of the length prefix
        slow2.send_raw(half[:9])  # the length and part of the header
        quitter.send_raw(half[:5])
        quitter.close()  # a client gone mid-frame
        # meanwhile, other clients are answered at once, over TCP and UDP
        for i in range(5):
            r = gate.tcp_query("api.example.org.", "A", ident=0x0610 + i)
            assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR
            assert r.elapsed < 0.25, f"a TCP query took {r.elapsed * 1000:.0f} ms next to a slow client"
            u = gate.query("www.example.com.", "A", ident=0x0620 + i)
            assert u.response is not None and u.elapsed < 0.25
        assert time.monotonic() - t0 < 0.6, "test too slow to observe the frame timeout"
        c1 = slow1.wait_closed(2.0)
        c2 = slow2.wait_closed(2.0)
        t_closed = time.monotonic() - t0
        assert c1 is not None and c2 is not None, "a frame begun was left open past frameTimeoutMs"
        assert 0.6 <= t_closed <= 1.3, f"closed after {t_closed * 1000:.0f} ms, frameTimeoutMs is 700"
        assert slow1.buf == b"" and slow2.buf == b""
    finally:
        for c in (slow1, slow2, quitter):
            c.close()
    evs = gate.events(10)
    assert {e["data"]["transport"] for e in evs} == {"tcp", "udp"}
    stats = gate.stop()
    assert stats["tcpFramesAbandoned"] == 3, stats
    assert stats["tcpIdleClosed"] == 0 and stats["malformed"] == 0
    assert stats["received"] == 10 + gate.probes


def test_idle_timeout_closes_idle_connections_only(tcpgate, tcp_upstream):
    """idleTimeoutMs 400: a silent connection and one idle after its answer
    are closed; one with a query in flight for 700 ms, or one busy every
    200 ms, is not (until it goes idle in turn)."""
    def behaviour(up, conn, wire):
        slow = dns.message.from_wire(wire).question[0].name.to_text().startswith("slow.")
        conn.send_frame(answer_for(wire), delay=0.7 if slow else 0.0)

    tcp_upstream.behaviour = behaviour
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address, timeout_ms=2000,
                   tcp={"idleTimeoutMs": 400, "frameTimeoutMs": 5000})
    silent_c, answered, inflight, busy = (gate.connect() for _ in range(4))
    try:
        r = answered.exchange(make_query("www.example.com.", "A", ident=0x0701).to_wire())
        assert r.response is not None
        t_slow = time.monotonic()
        inflight.send_frame(make_query("slow.example.com.", "A", ident=0x0702).to_wire())
        for i in range(5):
            rb = busy.exchange(make_query(f"b{i}.example.com.", "A", ident=0x0710 + i).to_wire())
            assert rb.response is not None, f"a connection busy every 200 ms lost answer {i} (eof={busy.eof})"
            time.sleep(0.2)
        assert not busy.eof, "a connection busy every 200 ms was closed as idle"
        assert silent_c.wait_closed(1.0) is not None, "a connection that never sent anything stayed open"
        assert answered.wait_closed(1.0) is not None, "a connection idle after its answer stayed open"
        slow_answer = inflight.recv_frame(timeout=1.0)
        assert slow_answer is not None, "a connection with a query in flight was closed as idle"
        assert wire_id(slow_answer) == 0x0702 and time.monotonic() - t_slow >= 0.65
        assert inflight.wait_closed(1.0) is not None, "idle after its (slow) answer, still open"
        assert busy.wait_closed(1.0) is not None, "idle after its last query, still open"
    finally:
        for c in (silent_c, answered, inflight, busy):
            c.close()
    gate.expect_events(7)
    gate.events(7)
    stats = gate.stop()
    assert stats["tcpIdleClosed"] == 4, stats
    assert stats["tcpFramesAbandoned"] == 0


def test_idle_timeout_timing(tcpgate, knotd):
    gate = tcpgate(allowlist=ALLOW, upstream=knotd.address, tcp={"idleTimeoutMs": 300})
    with gate.connect() as c:
        closed = c.wait_closed(2.0)
    assert closed is not None and 0.25 <= closed <= 0.8, f"idle connection closed after {closed}"
    with gate.connect() as c:
        r = c.exchange(make_query("www.example.com.", "A", ident=0x0801).to_wire())
        assert r.response is not None
        closed = c.wait_closed(2.0)
    gate.expect_events(1)
    assert closed is not None and 0.25 <= closed <= 0.8, f"idle after an answer, closed after {closed}"
    gate.events(1)
    stats = gate.stop()
    assert stats["tcpIdleClosed"] == 2


def test_frame_timeout_counts_from_the_frame_and_idle_does_not_cut_a_frame(tcpgate, knotd):
    """idleTimeoutMs 600, frameTimeoutMs 800: a connection with a frame begun
    is not closed as idle; the frame deadline runs from the frame's first
    octet (dnsgate checks these deadlines every 100 ms or so)."""
    gate = tcpgate(allowlist=ALLOW, upstream=knotd.address, tcp={"idleTimeoutMs": 600, "frameTimeoutMs": 800})
    late = gate.connect()
    early = gate.connect()
    try:
        t0 = time.monotonic()
        early.send_raw(b"\x00")
        time.sleep(0.4)
        late.send_raw(b"\x00")  # its frame begins 400 ms after the other one
        assert early.wait_closed(0.3) is None, "a frame begun was cut by the idle timeout"
        assert early.wait_closed(1.0) is not None
        t_early = time.monotonic() - t0
        assert late.wait_closed(1.0) is not None
        t_late = time.monotonic() - t0
        assert 0.75 <= t_early <= 1.2, f"frame deadline hit after {t_early * 1000:.0f} ms, expected ~800"
        assert 1.15 <= t_late <= 1.6, f"second frame deadline hit after {t_late * 1000:.0f} ms, expected ~1200"
    finally:
        late.close()
        early.close()
    stats = gate.stop()
    assert stats["tcpFramesAbandoned"] == 2 and stats["tcpIdleClosed"] == 0, stats


def test_max_connections(tcpgate, knotd):
    gate = tcpgate(allowlist=ALLOW, upstream=knotd.address, tcp={"maxConnections": 3})
    conns = [gate.connect() for _ in range(3)]
    extra = None
    try:
        for i, c in enumerate(conns):
            r = c.exchange(make_query("www.example.com.", "A", ident=0x0900 + i).to_wire())
            assert r.response is not None, f"connection {i} of 3 not served"
        extra = gate.connect()
        closed = extra.wait_closed(1.0)
        assert closed is not None, "a 4th connection past maxConnections 3 stayed open"
        assert closed < 0.3, f"the 4th connection was closed only after {closed * 1000:.0f} ms"
        for i, c in enumerate(conns):
            r = c.exchange(make_query("api.example.org.", "A", ident=0x0910 + i).to_wire())
            assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR, f"connection {i} broken"
        # a slot freed is a slot usable again
        conns[0].close()
        time.sleep(0.2)
        with gate.connect() as again:
            r = again.exchange(make_query("example.com.", "A", ident=0x0920).to_wire())
            assert r.response is not None, "a new connection was refused after one of the 3 closed"
    finally:
        for c in conns + ([extra] if extra else []):
            c.close()
    gate.expect_events(7)
    gate.events(7)
    stats = gate.stop()
    assert stats["tcpRejected"] == 1, stats
    assert stats["tcpAccepted"] in (4, 5), stats  # whether the rejected one counts as accepted too


def test_max_inflight_per_connection_backpressure(tcpgate, tcp_upstream):
    tcp_upstream.behaviour = tcp_silent
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address, timeout_ms=400,
                   tcp={"maxInflightPerConnection": 2})
    wires = [make_query(f"q{i}.example.com.", "A", ident=0x0A00 + i, edns=True).to_wire() for i in range(5)]
    with gate.connect() as c:
        wall = time.time()
        t0 = time.monotonic()
        c.send_raw(b"".join(frame(w) for w in wires))
        gate.expect_events(5)
        tcp_upstream.wait_for(2, timeout=0.3)
        time.sleep(max(0.0, t0 + 0.3 - time.monotonic()))
        assert len(tcp_upstream.queries()) == 2, (
            f"{len(tcp_upstream.queries())} queries reached the upstream with maxInflightPerConnection 2")
        answers = {}
        times = {}
        while len(answers) < 5 and time.monotonic() < t0 + 4:
            data = c.recv_frame(timeout=t0 + 4 - time.monotonic())
            if data is None:
                break
            answers[wire_id(data)] = data
            times[wire_id(data)] = time.monotonic() - t0
        assert len(answers) == 5, f"{len(answers)} of 5 answered (eof={c.eof})"
    for w in wires:
        servfail_frame(Reply(w, answers[wire_id(w)], c.port, wall, 0.0), 22, True)
    got = sorted(times.values())
    assert got[2] >= 0.7, f"the 3rd answer came {got[2] * 1000:.0f} ms after sending: no backpressure"
    assert len(tcp_upstream.wait_for(5)) == 5, "queries past the limit were never forwarded"
    # the 3rd and 4th left only when the first two timed out (400 ms), the 5th after the next two
    arrivals = sorted(t - t0 for _, _, t in tcp_upstream.received)
    assert arrivals[2] >= 0.35 and arrivals[4] >= 0.75, f"upstream arrivals {arrivals}: limit not enforced"
    evs = gate.events(5)
    assert all(e["data"]["reasonCode"] == "upstream_timeout" and e["data"]["transport"] == "tcp" for e in evs)
    stats = gate.stop()
    assert stats["servfailTimeout"] == 5 and stats["overloaded"] == 0


# ------------------------------------------------------------ TCP to the upstream


def test_upstream_sees_the_client_bytes_but_the_id(tcpgate, tcp_upstream):
    sent = []

    def behaviour(up, conn, wire):
        ans = bytearray(answer_for(wire, "192.0.2.77", ttl=1234))
        ans[3] |= 0x20  # AD, to see that flags pass unchanged
        sent.append(bytes(ans))
        conn.send_frame(bytes(ans))

    tcp_upstream.behaviour = behaviour
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address)
    wire = raw_query([b"WwW", b"ExAmple", b"CoM"], ident=0x0B01, flags=0x0110, edns={"payload": 4096, "do": True})
    r = gate.tcp_exchange(wire)
    assert r.response is not None
    (seen,) = tcp_upstream.queries()
    assert seen[2:] == wire[2:], "the upstream did not get the workload's bytes"
    assert wire_id(r.response) == 0x0B01
    assert r.response[2:] == sent[0][2:], "the upstream's answer was changed on the way"
    (ev,) = gate.events(1)
    tcp_event(ev, r, action="forward", reasonCode="allowed", qname="WwW.ExAmple.CoM", rcode="NOERROR",
              answerCount=1, upstream=tcp_upstream.address)
    stats = gate.stop()
    assert stats["upstreamTcpConnects"] == 1


def test_upstream_connection_is_reused_and_pipelined(tcpgate, tcp_upstream):
    """Two clients with 5 queries each, the same 5 ids: the upstream holds
    all 10, then answers them in reverse; twice. One upstream connection
    carries all, each client gets its own answers."""
    held = []
    lock = threading.Lock()

    def behaviour(up, conn, wire):
        with lock:
            held.append((conn, wire))
            if len(held) < 10:
                return
            batch, held[:] = list(reversed(held)), []
        for cn, w in batch:
            i = int(dns.message.from_wire(w).question[0].name.labels[0][1:])
            cn.send_frame(answer_for(w, f"10.9.0.{i}"))

    tcp_upstream.behaviour = behaviour
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address, timeout_ms=3000)
    for rnd in range(2):
        clients = [gate.connect(), gate.connect()]
        try:
            for k, c in enumerate(clients):
                base = rnd * 100 + k * 10
                # both clients use the same ids at once: the proxy tells them apart
                c.send_raw(b"".join(frame(make_query(f"h{base + j}.example.com.", "A", ident=0x3000 + j)
                                          .to_wire()) for j in range(5)))
            gate.expect_events(10)
            for k, c in enumerate(clients):
                base = rnd * 100 + k * 10
                got = set()
                for _ in range(5):
                    data = c.recv_frame(timeout=3)
                    assert data is not None, f"round {rnd} client {k}: answer missing"
                    m = dns.message.from_wire(data)
                    j = m.id - 0x3000
                    assert 0 <= j < 5, f"client {k} got an answer with id {m.id:#x}"
                    assert [a.address for a in m.answer[0]] == [f"10.9.0.{base + j}"], "another query's answer"
                    got.add(j)
                assert got == set(range(5))
        finally:
            for c in clients:
                c.close()
    assert tcp_upstream.connections == 1, f"{tcp_upstream.connections} upstream connections for 20 queries"
    ids = [wire_id(w) for w in tcp_upstream.queries()]
    assert len(set(ids[:10])) == 10 and len(set(ids[10:])) == 10, "two queries in flight shared an upstream id"
    gate.events(20)
    stats = gate.stop()
    assert stats["upstreamTcpConnects"] == 1 and stats["relayed"] == 20


def test_upstream_closing_after_each_answer(tcpgate, tcp_upstream):
    def behaviour(up, conn, wire):
        conn.send_frame(answer_for(wire))
        conn.close()

    tcp_upstream.behaviour = behaviour
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address)
    with gate.connect() as c:
        for i in range(5):
            r = c.exchange(make_query(f"r{i}.example.com.", "A", ident=0x0C00 + i).to_wire())
            assert r.response is not None, f"query {i} unanswered after the upstream closed its connection"
            assert r.msg.rcode() == dns.rcode.NOERROR and r.msg.id == 0x0C00 + i
            time.sleep(0.05)
    gate.expect_events(5)
    assert tcp_upstream.connections == 5
    evs = gate.events(5)
    assert all(e["data"]["action"] == "forward" for e in evs)
    stats = gate.stop()
    assert stats["upstreamTcpConnects"] == 5 and stats["relayed"] == 5


def test_upstream_closing_after_each_answer_with_pipelined_queries(tcpgate, tcp_upstream):
    """An upstream that answers one query per connection (RFC 1035 style; RFC
    7766 §6.2.1 asks clients to cope with it): queries pipelined on the
    connection it closed are sent again on a new one, within their deadline."""
    def behaviour(up, conn, wire):
        conn.send_frame(answer_for(wire))
        conn.close()

    tcp_upstream.behaviour = behaviour
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address, timeout_ms=2000)
    with gate.connect() as c:
        c.send_raw(b"".join(frame(make_query(f"p{i}.example.com.", "A", ident=0x0C40 + i).to_wire())
                            for i in range(10)))
        gate.expect_events(10)
        rcodes = {}
        for _ in range(10):
            data = c.recv_frame(timeout=3)
            assert data is not None, f"{len(rcodes)} of 10 answered"
            m = dns.message.from_wire(data)
            rcodes[m.id - 0x0C40] = dns.rcode.to_text(m.rcode())
    assert rcodes == {i: "NOERROR" for i in range(10)}, (
        f"pipelined queries lost when the upstream closed after each answer: {rcodes}")
    assert tcp_upstream.connections == 10
    gate.events(10)


def test_upstream_restart_in_the_middle(tcpgate, tcp_upstream):
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address, timeout_ms=1000)
    r = gate.tcp_query("a.example.com.", "A", ident=0x0D01)
    assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR
    tcp_upstream.stop()
    time.sleep(0.1)
    down = gate.tcp_query("b.example.com.", "A", ident=0x0D02, edns=True)
    servfail_frame(down, 23, True)
    assert down.elapsed < 0.3, f"SERVFAIL for an upstream that is down took {down.elapsed * 1000:.0f} ms"
    tcp_upstream.start()
    with gate.connect() as c:
        for i in range(3):
            r2 = c.exchange(make_query(f"c{i}.example.com.", "A", ident=0x0D10 + i).to_wire())
            assert r2.response is not None and r2.msg.rcode() == dns.rcode.NOERROR, "no answer after the restart"
    gate.expect_events(3)
    assert tcp_upstream.connections == 2
    evs = gate.events(5)
    assert [e["data"]["reasonCode"] for e in evs] == ["allowed", "upstream_error"] + ["allowed"] * 3
    stats = gate.stop()
    assert stats["servfailError"] == 1 and stats["relayed"] == 4
    assert stats["upstreamTcpConnects"] in (2, 3), stats  # whether the refused attempt counts


@pytest.mark.parametrize("edns", [True, False])
def test_upstream_tcp_timeout(tcpgate, tcp_upstream, edns):
    tcp_upstream.behaviour = tcp_silent
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address, timeout_ms=400)
    r = gate.tcp_query("www.example.com.", "A", ident=0x0E01, edns=edns, timeout=2)
    servfail_frame(r, 22, edns)
    assert 0.39 <= r.elapsed < 0.6, f"SERVFAIL after {r.elapsed * 1000:.0f} ms, expected about 400 ms"
    assert len(tcp_upstream.queries()) == 1
    (ev,) = gate.events(1)
    tcp_event(ev, r, action="servfail", reasonCode="upstream_timeout", rcode="SERVFAIL", answerCount=0,
              upstream=tcp_upstream.address)
    stats = gate.stop()
    assert stats["servfailTimeout"] == 1


@pytest.mark.parametrize("edns", [True, False])
def test_upstream_tcp_connect_refused(tcpgate, edns):
    address = f"127.0.0.1:{free_port(tcp_too=True)}"
    gate = tcpgate(allowlist=ALLOW, upstream=address, timeout_ms=2000)
    r = gate.tcp_query("www.example.com.", "A", ident=0x0F01, edns=edns, timeout=3)
    servfail_frame(r, 23, edns)
    assert r.elapsed < 0.3, f"SERVFAIL for a refused connect took {r.elapsed * 1000:.0f} ms"
    (ev,) = gate.events(1)
    tcp_event(ev, r, action="servfail", reasonCode="upstream_error", rcode="SERVFAIL", upstream=address)
    stats = gate.stop()
    assert stats["servfailError"] == 1 and stats["servfailTimeout"] == 0


@pytest.mark.parametrize("kind", ["wrong_id", "other_name"])
def test_upstream_tcp_answer_not_matching_is_discarded(tcpgate, tcp_upstream, kind):
    def behaviour(up, conn, wire):
        if kind == "wrong_id":
            bad = struct.pack("!H", wire_id(wire) ^ 0x5A5A) + answer_for(wire, "6.6.6.6")[2:]
        else:
            other = make_query("www.example.net.", "A", ident=wire_id(wire)).to_wire()
            bad = answer_for(other, "6.6.6.6")
        conn.send_frame(bad)
        conn.send_frame(answer_for(wire, "192.0.2.1"), delay=0.1)

    tcp_upstream.behaviour = behaviour
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address)
    with gate.connect() as c:
        r = c.exchange(make_query("www.example.com.", "A", ident=0x1001).to_wire())
        assert c.recv_frame(timeout=0.2) is None, "a second answer reached the workload"
    gate.expect_events(1)
    assert r.response is not None and [a.address for a in r.msg.answer[0]] == ["192.0.2.1"]
    gate.events(1)
    stats = gate.stop()
    assert stats["unsolicitedUpstream"] == 1 and stats["relayed"] == 1


# ------------------------------------------------------------ do53-tcp resolver, UDP workload


def test_do53_tcp_resolver_answers_udp_clients(tcpgate, tcp_upstream):
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address, listen_tcp=False, protocol="do53-tcp")
    wire = make_query("www.example.com.", "A", ident=0x1101, edns=True).to_wire()
    r = gate.exchange(wire)
    assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR
    (seen,) = tcp_upstream.queries()
    assert seen[2:] == wire[2:]
    (ev,) = gate.events(1)
    check_event(ev, r, transport="udp", action="forward", reasonCode="allowed", upstream=tcp_upstream.address)
    stats = gate.stop()
    assert stats["upstreamTcpConnects"] == 1 and stats["tcpAccepted"] == 0


@pytest.mark.parametrize("edns", [True, False])
def test_do53_tcp_silent_upstream_gives_udp_client_servfail(tcpgate, tcp_upstream, edns):
    tcp_upstream.behaviour = tcp_silent
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address, listen_tcp=False, protocol="do53-tcp",
                   timeout_ms=300)
    r = gate.query("www.example.com.", "A", ident=0x1102, edns=edns)
    servfail_frame(r, 22, edns)
    assert 0.29 <= r.elapsed < 0.5, f"SERVFAIL after {r.elapsed * 1000:.0f} ms, expected about 300 ms"
    (ev,) = gate.events(1)
    check_event(ev, r, transport="udp", action="servfail", reasonCode="upstream_timeout",
                upstream=tcp_upstream.address)


def test_do53_tcp_refused_connect_gives_udp_client_servfail_23(tcpgate):
    address = f"127.0.0.1:{free_port(tcp_too=True)}"
    gate = tcpgate(allowlist=ALLOW, upstream=address, listen_tcp=False, protocol="do53-tcp")
    r = gate.query("www.example.com.", "A", ident=0x1103, edns=True)
    servfail_frame(r, 23, True)
    assert r.elapsed < 0.3
    (ev,) = gate.events(1)
    check_event(ev, r, transport="udp", action="servfail", reasonCode="upstream_error", upstream=address)


@pytest.mark.parametrize("records,payload,truncated", [
    (20, None, False),     # ~370 octets: fits 512
    (100, None, True),     # ~1.7 KB, no EDNS: 512
    (100, 1232, True),     # past the client's EDNS size
    (100, 4096, False),    # within it
    (4000, 4096, True),    # ~64 KB, the largest a TCP frame holds
])
def test_do53_tcp_large_answer_to_udp_client(tcpgate, tcp_upstream, records, payload, truncated):
    sent = []

    def behaviour(up, conn, wire):
        ans = big_answer(wire, records)
        sent.append(ans)
        conn.send_frame(ans)

    tcp_upstream.behaviour = behaviour
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address, listen_tcp=False, protocol="do53-tcp")
    wire = make_query("multi.example.com.", "A", ident=0x1201, edns=payload is not None,
                      payload=payload or 1232).to_wire()
    r = gate.exchange(wire)
    assert r.response is not None
    (up_answer,) = sent
    if not truncated:
        assert r.response[2:] == up_answer[2:] and wire_id(r.response) == 0x1201
        answer_count = records
    else:
        h, uh = header(r.response), header(up_answer)
        q = question_bytes(wire)
        assert h["id"] == 0x1201 and h["tc"], "no TC on an answer too large for the UDP client"
        assert h["flags"] == uh["flags"] | 0x0200, "the truncated answer's header is not the upstream's"
        assert (h["qdcount"], h["ancount"], h["nscount"]) == (1, 0, 0)
        assert r.response[12:12 + len(q)] == q, "the truncated answer must keep the question as asked"
        # ... and the upstream's OPT, nothing else (RFC 6891 7).
        m, um = dns.message.from_wire(r.response), dns.message.from_wire(up_answer)
        assert h["arcount"] == (1 if um.edns >= 0 else 0)
        assert (m.edns, m.payload, m.ednsflags, m.options) == (um.edns, um.payload, um.ednsflags, um.options)
        answer_count = 0
    (ev,) = gate.events(1)
    check_event(ev, r, transport="udp", action="forward", reasonCode="allowed", rcode="NOERROR",
                answerCount=answer_count)


def test_do53_tcp_with_knotd_dig_retries_over_tcp(tcpgate, knotd):
    """do53-tcp upstream, UDP+TCP listener: dig's UDP query gets the minimal TC
    answer, its TCP retry the whole ~3.8 KB TXT."""
    gate = tcpgate(allowlist=ALLOW, upstream=knotd.address, protocol="do53-tcp")
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(gate.port), "+tries=1", "+time=3", "+noedns",
                          "big.example.com.", "TXT"], capture_output=True, text=True, timeout=15)
    gate.note_datagrams(2)
    assert out.returncode == 0, out.stderr
    assert "Truncated, retrying in TCP mode" in out.stdout, out.stdout
    want = re.findall(r'"([^"]*)"', big_txt_rdata())
    assert _txt_strings(out.stdout.split("ANSWER SECTION:")[1]) == want
    udp_ev, tcp_ev = gate.events(2)
    check_event(udp_ev, transport="udp", action="forward", rcode="NOERROR", answerCount=0)
    tcp_event(tcp_ev, action="forward", rcode="NOERROR", answerCount=1)


# ------------------------------------------------------------ client gone


@pytest.mark.parametrize("upstream_answers", [False, True])
def test_client_gone_with_a_query_in_flight(tcpgate, tcp_upstream, upstream_answers):
    if upstream_answers:
        tcp_upstream.behaviour = lambda up, conn, wire: conn.send_frame(answer_for(wire), delay=0.2)
    else:
        tcp_upstream.behaviour = tcp_silent
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address, timeout_ms=300)
    c = gate.connect()
    wire = make_query("gone.example.com.", "A", ident=0x1301).to_wire()
    c.send_frame(wire)
    client = c.client
    gate.expect_events(1)
    assert len(tcp_upstream.wait_for(1)) == 1
    c.close()
    (ev,) = gate.events(1, timeout=2)
    tcp_event(ev, action="drop", reasonCode="client_gone", rcode=None, answerCount=0, client=client,
              qname="gone.example.com", transactionId=0x1301, size=len(wire))
    time.sleep(0.4)
    gate.events(1)  # exactly one, also after the timeout has passed
    stats = gate.stop()
    assert stats["tcpFramesAbandoned"] == 0


def test_client_gone_right_after_sending(tcpgate, tcp_upstream):
    tcp_upstream.behaviour = tcp_silent
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address, timeout_ms=300)
    wires = [make_query(f"g{i}.example.com.", "A", ident=0x1400 + i).to_wire() for i in range(3)]
    c = gate.connect()
    c.send_raw(b"".join(frame(w) for w in wires))
    c.close()
    gate.expect_events(3)
    evs = gate.events(3, timeout=2)
    assert sorted(e["data"]["transactionId"] for e in evs) == [0x1400, 0x1401, 0x1402]
    for ev in evs:
        tcp_event(ev, action="drop", reasonCode="client_gone", rcode=None)
    stats = gate.stop()
    assert stats["received"] == 3 + gate.probes


# ------------------------------------------------------------ robustness


def test_shutdown_with_a_tcp_query_in_flight(tcpgate, tcp_upstream):
    tcp_upstream.behaviour = tcp_silent
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address, timeout_ms=5000)
    c = gate.connect()
    idle = gate.connect()
    try:
        wire = make_query("www.example.com.", "A", ident=0x1501).to_wire()
        c.send_frame(wire)
        gate.expect_events(1)
        assert len(tcp_upstream.wait_for(1)) == 1
        stats = gate.stop()
        assert gate.stop_seconds < 1.0, f"shutdown took {gate.stop_seconds:.2f} s"
        assert c.wait_closed(1.0) is not None and idle.wait_closed(1.0) is not None
        assert c.buf == b"", f"half an answer or garbage at shutdown: {c.buf!r}"
    finally:
        c.close()
        idle.close()
    (ev,) = gate.events(1)
    tcp_event(ev, action="drop", reasonCode="shutdown", rcode=None, qname="www.example.com")
    assert stats["droppedAtShutdown"] == 1


def test_upstream_answer_in_pieces_and_two_answers_in_one_write(tcpgate, tcp_upstream):
    held = []

    def behaviour(up, conn, wire):
        name = dns.message.from_wire(wire).question[0].name.to_text()
        if name.startswith("split."):
            data = frame(answer_for(wire, "192.0.2.9"))
            for i in range(len(data)):
                conn.send_raw(data[i:i + 1])
                time.sleep(0.002)
            return
        held.append((conn, wire))
        if len(held) == 2:
            (c0, w0), (c1, w1) = held
            assert c0 is c1, "two pipelined queries went out on two upstream connections"
            c1.send_raw(frame(answer_for(w1, "192.0.2.2")) + frame(answer_for(w0, "192.0.2.1")))

    tcp_upstream.behaviour = behaviour
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address)
    with gate.connect() as c:
        r = c.exchange(make_query("split.example.com.", "A", ident=0x1601).to_wire())
        assert r.response is not None and [a.address for a in r.msg.answer[0]] == ["192.0.2.9"]
        c.send_raw(frame(make_query("p0.example.com.", "A", ident=0x1610).to_wire()) +
                   frame(make_query("p1.example.com.", "A", ident=0x1611).to_wire()))
        got = {}
        for _ in range(2):
            data = c.recv_frame(2)
            assert data is not None
            m = dns.message.from_wire(data)
            got[m.id] = m.answer[0][0].address
    gate.expect_events(3)
    assert got == {0x1610: "192.0.2.1", 0x1611: "192.0.2.2"}
    gate.events(3)
    stats = gate.stop()
    assert stats["relayed"] == 3 and stats["unsolicitedUpstream"] == 0


def test_64k_answer_relayed_whole_over_tcp(tcpgate, tcp_upstream):
    sent = []

    def behaviour(up, conn, wire):
        sent.append(big_answer(wire, 4000))
        conn.send_frame(sent[-1])

    tcp_upstream.behaviour = behaviour
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address)
    r = gate.tcp_query("multi.example.com.", "A", ident=0x1701, timeout=3)
    assert r.response is not None
    assert len(sent[0]) > 64000 and r.response[2:] == sent[0][2:] and wire_id(r.response) == 0x1701
    (ev,) = gate.events(1)
    tcp_event(ev, r, action="forward", rcode="NOERROR", answerCount=4000)


def test_200_connections_at_once(tcpgate, knotd):
    gate = tcpgate(allowlist=ALLOW, upstream=knotd.address)
    conns = []
    try:
        for i in range(200):
            conns.append(gate.connect())
        for i, c in enumerate(conns):
            c.send_frame(make_query("www.example.com." if i % 2 else "www.example.net.", "A", ident=i).to_wire())
        gate.expect_events(200)
        deadline = time.monotonic() + 5
        for i, c in enumerate(conns):
            data = c.recv_frame(timeout=max(0.05, deadline - time.monotonic()))
            assert data is not None, f"connection {i} of 200 unanswered"
            m = dns.message.from_wire(data)
            assert m.id == i and m.rcode() == (dns.rcode.NOERROR if i % 2 else dns.rcode.REFUSED)
    finally:
        for c in conns:
            c.close()
    evs = gate.events(200, timeout=5)
    assert len({e["data"]["client"] for e in evs}) == 200
    stats = gate.stop()
    assert stats["tcpAccepted"] == 200 and stats["tcpRejected"] == 0


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_client_that_never_reads_costs_bounded_memory(tcpgate, tcp_upstream):
    """A client pipelines 1000 queries whose answers are ~60 KB each and
    never reads: dnsgate must stop reading it (maxInflightPerConnection
    counts until the answer is written), keep its memory bounded, and keep
    answering others at once."""
    query = make_query("multi.example.com.", "A", ident=0).to_wire()
    big = big_answer(query, 3700)  # built once: ~60 KB

    def behaviour(up, conn, wire):
        if wire[2:] == query[2:]:
            conn.send_frame(wire[:2] + big[2:])
        else:
            conn.send_frame(answer_for(wire))

    tcp_upstream.behaviour = behaviour
    gate = tcpgate(allowlist=ALLOW, upstream=tcp_upstream.address, timeout_ms=3000,
                   tcp={"maxInflightPerConnection": 10})
    blob = b"".join(frame(with_id(query, i)) for i in range(1000))
    rss0 = vm_rss_kib(gate.proc.pid)
    hog = gate.connect()
    stop = threading.Event()

    def pump():
        view = memoryview(blob)
        hog.sock.settimeout(0.1)
        while view and not stop.is_set():
            try:
                n = hog.sock.send(view[:65536])
                view = view[n:]
            except socket.timeout:
                continue
            except OSError:
                return

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        time.sleep(0.3)
        for i in range(8):
            r = gate.tcp_query("www.example.com.", "A", ident=0x1800 + i)
            assert r.response is not None and r.elapsed < 0.2, (
                f"another client waited {r.elapsed * 1000:.0f} ms next to a client that never reads")
            time.sleep(0.1)
        rss1 = vm_rss_kib(gate.proc.pid)
        seen = len(tcp_upstream.queries()) - 8
        assert seen < 600, f"dnsgate forwarded {seen} of the non-reader's 1000 queries: it never stopped reading"
        assert rss1 - rss0 < 24 * 1024, f"dnsgate grew by {(rss1 - rss0) // 1024} MB for a client that never reads"
    finally:
        stop.set()
        t.join(timeout=2)
        hog.close()
    time.sleep(0.3)
    stats = gate.stop()
    # every frame dnsgate read from the non-reader has its event (client_gone for those in flight)
    gate.datagrams = stats["received"]
    evs = [e for e in gate.all_events() if e["data"]["transactionId"] < 1000]
    assert all(e["data"]["reasonCode"] in ("allowed", "client_gone") for e in evs)


def test_ipv6_tcp_listener(tcpgate, knotd):
    gate = tcpgate(allowlist=ALLOW, upstream=knotd.address, listen_host="::1")
    r = gate.tcp_query("www.example.com.", "A", ident=0x1901)
    assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR
    (ev,) = gate.events(1)
    tcp_event(ev, r, action="forward", reasonCode="allowed")
    assert ev["data"]["client"].startswith("[::1]:")


# ------------------------------------------------------------ configuration


def _check(tmp_path, body: str) -> subprocess.CompletedProcess:
    p = tmp_path / "c.yaml"
    p.write_text(body)
    return run_cli(["check", "--config", str(p)])


BASE = """cell: c
listen:
{listen}
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: {protocol}
      address: 127.0.0.1:5300
{extra}"""


@pytest.mark.parametrize("listen,protocol,extra,field", [
    ("  tcp: 127.0.0.1:5353", "do53-tcp", "tcp:\n  maxConnections: 1\n  frameTimeoutMs: 3600000\n", None),
    ("  udp: 127.0.0.1:5353\n  tcp: 127.0.0.1:5353", "do53-udp",
     "tcp:\n  maxInflightPerConnection: 65535\n  idleTimeoutMs: 1\n", None),
    ("  tcp: 127.0.0.1:5353", "do53-udp", "tcp:\n  maxConnections: 0\n", "tcp.maxConnections"),
    ("  tcp: 127.0.0.1:5353", "do53-udp", "tcp:\n  maxConnections: 65536\n", "tcp.maxConnections"),
    ("  tcp: 127.0.0.1:5353", "do53-udp", "tcp:\n  maxInflightPerConnection: 0\n",
     "tcp.maxInflightPerConnection"),
    ("  tcp: 127.0.0.1:5353", "do53-udp", "tcp:\n  idleTimeoutMs: 3600001\n", "tcp.idleTimeoutMs"),
    ("  tcp: 127.0.0.1:5353", "do53-udp", "tcp:\n  frameTimeoutMs: 0\n", "tcp.frameTimeoutMs"),
    ("  tcp: 127.0.0.1:5353", "do53-udp", "tcp:\n  maxConections: 5\n", "tcp.maxConections"),
    ("  tcp: 127.0.0.1:5300", "do53-tcp", "", "dnsAuthority.resolvers[0].address"),  # loops into itself
    ("  {}", "do53-udp", "", "listen"),
])
def test_tcp_config(tmp_path, listen, protocol, extra, field):
    r = _check(tmp_path, BASE.format(listen=listen, protocol=protocol, extra=extra))
    if field is None:
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
        assert field in r.stderr, r.stderr
