"""The hostile-input catalogue (issue 5, docs/hardening.md): packets a
hostile workload can send, and what a hostile or broken network can do on
the upstream side. Each case states its expected outcome; for every one,
dnsgate keeps running and serving, nothing reaches the upstream that should
not, nothing is reflected to a sender that should get nothing, every
datagram has exactly one event, and the stats counters agree with the
events (hostile_lib.check_accounting).

test_malformed.py holds one case per `malformedReason`; this file is the
reference list of hostile shapes, with the variants a fuzzer-minded
attacker tries first (pointers reached through other pointers, names that
only grow too long once decompressed, the largest datagram, floods).
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time

import dns.message
import dns.rcode
import pytest

from dnsgate_testlib import (
    ABSENT, answer_for, assert_synthesized, big_buffers, check_event, encode_name, make_query, raw_query,
    recv_until, silent, udp_socket, wire_id,
)
from hostile_lib import Flooder, check_accounting, hdr, labels_of_octets, nothing_arrives, rr_fixed, udp_drops

ALLOW = ["example.com", "*.example.com"]
WWW = encode_name([b"www", b"example", b"com"])
Q_A = WWW + struct.pack("!HH", 1, 1)  # 21 octets at offset 12: the answer section starts at 33
ANSWERS_AT = 12 + len(Q_A)
assert ANSWERS_AT == 33

REAL = "192.0.2.1"
FAKE = "6.6.6.6"

# ------------------------------------------------------------ the packets

DROP, REFUSE, FORWARD = "drop", "refuse", "forward"


def _null_record(owner: bytes, rdata: bytes) -> bytes:
    return owner + rr_fixed(rtype=10, rdata=rdata)  # NULL: any octets as rdata


def _largest_allowed_query(total: int = 65507) -> bytes:
    """A well-formed allowed query of exactly `total` octets: one NULL record
    in the additional section carries the bulk."""
    head = hdr(ident=0xB16, ar=1) + Q_A + b"\x00"
    rdata = bytes(range(256)) * 256
    rdata = rdata[: total - len(head) - 10]
    wire = head + rr_fixed(rtype=10, rdata=rdata)
    assert len(wire) == total
    return wire


def _name_growing_past_255_through_a_pointer() -> bytes:
    """The question name is 200 octets (legal); an answer's owner is 60
    octets of labels then a pointer back to it: 259 octets decompressed."""
    question_labels = labels_of_octets(200)
    prefix = b"".join(bytes([len(x)]) + x for x in [b"p" * 29, b"q" * 29])  # 60 octets of labels
    return (hdr(an=1) + encode_name(question_labels) + struct.pack("!HH", 1, 1) + prefix + b"\xc0\x0c"
            + rr_fixed())


# Two records: the first one's rdata holds `inner` (a label and a pointer);
# the second's owner points back into that rdata, so the walk reaches
# `inner` only through a pointer. rdata starts at 33 + 2 + 10 = 45.
def _via_backward_pointer(inner_target: int) -> bytes:
    rec1 = _null_record(b"\xc0\x0c", b"\x01b\xc0" + bytes([inner_target]))
    rec2 = b"\xc0\x2d" + rr_fixed()
    return hdr(an=2) + Q_A + rec1 + rec2


CATALOGUE: dict[str, tuple[bytes, str, str]] = {
    # -- compression pointers: every jump must go strictly backwards, never into the header
    "ptr_to_itself_in_answer": (hdr(an=1) + Q_A + b"\xc0\x21" + rr_fixed(), DROP, "pointer_not_backward"),
    "ptr_to_own_label_in_answer": (hdr(an=1) + Q_A + b"\x01a\xc0\x21" + rr_fixed(), DROP, "pointer_not_backward"),
    "ptr_loop_between_two_records": (
        hdr(an=2) + Q_A + b"\x01x\xc0\x2f" + rr_fixed() + b"\x01y\xc0\x21" + rr_fixed(), DROP,
        "pointer_not_backward"),
    "ptr_loop_reached_through_backward_ptr": (_via_backward_pointer(49), DROP, "pointer_not_backward"),
    "ptr_forward_in_additional": (
        hdr(ar=1) + Q_A + b"\xc0\x2d" + rr_fixed(rtype=16, rdata=b"\x03abc\x00"), DROP, "pointer_not_backward"),
    "ptr_in_question_to_its_own_label": (
        hdr() + b"\x03www\x07example\xc0\x10" + b"\x00\x01\x00\x01", DROP, "pointer_not_backward"),
    "ptr_into_header_from_answer": (hdr(an=1) + Q_A + b"\xc0\x06" + rr_fixed(), DROP, "pointer_into_header"),
    "ptr_into_header_through_backward_ptr": (_via_backward_pointer(3), DROP, "pointer_into_header"),
    "ptr_cut_after_first_octet": (hdr(an=1) + Q_A + b"\xc0", DROP, "truncated_record"),
    # -- label types 0x40 and 0x80 (reserved / obsolete extended)
    "label_0x40_in_question": (hdr() + b"\x40" + b"\x00\x01\x00\x01", DROP, "bad_label_type"),
    "label_0x80_after_a_label": (hdr() + b"\x03www\x80" + b"\x00\x01\x00\x01", DROP, "bad_label_type"),
    "label_0x7f_in_answer": (hdr(an=1) + Q_A + b"\x7f" + b"z" * 63 + b"\x00" + rr_fixed(), DROP, "bad_label_type"),
    "label_0xbf_in_additional": (hdr(ar=1) + Q_A + b"\xbf\x00" + rr_fixed(), DROP, "bad_label_type"),
    # -- names of 255 and 256 octets
    "name_255_not_allowlisted_edns": (
        raw_query(labels_of_octets(255, (b"example", b"net")), ident=0x0255, edns={"payload": 4096}), REFUSE, ""),
    "name_256_in_additional": (
        hdr(ar=1) + Q_A + encode_name(labels_of_octets(256)) + rr_fixed(), DROP, "name_too_long"),
    "name_259_once_decompressed": (_name_growing_past_255_through_a_pointer(), DROP, "name_too_long"),
    # -- QDCOUNT 0, 2, 65535
    "qdcount_0_header_only": (hdr(qd=0), DROP, "bad_question_count"),
    "qdcount_2_one_question": (hdr(qd=2) + Q_A, DROP, "bad_question_count"),
    "qdcount_65535": (hdr(qd=65535) + Q_A * 4, DROP, "bad_question_count"),
    # -- responses (QR=1) sent to the listener: never reflected
    "qr_full_response": (answer_for(make_query("www.example.com.", "A", ident=0x0E1).to_wire()), DROP,
                         "response_bit_set"),
    "qr_notify_response": (hdr(flags=0xA400) + Q_A, DROP, "response_bit_set"),
    "qr_header_only": (hdr(flags=0x8000), DROP, "response_bit_set"),
    # -- sizes: 0, 1, 11, 12 and the largest UDP payload IPv4 loopback carries
    "size_0": (b"", DROP, "too_short"),
    "size_1": (b"\xff", DROP, "too_short"),
    "size_11": (hdr()[:11], DROP, "too_short"),
    "size_12_header_announcing_a_question": (hdr(), DROP, "truncated_question"),
    "size_65507_query_then_zeros": (hdr() + Q_A + bytes(65507 - 12 - len(Q_A)), DROP, "trailing_data"),
    "size_65507_all_ones": (b"\xff" * 65507, DROP, "response_bit_set"),
    "size_65507_allowed": (_largest_allowed_query(), FORWARD, ""),
}


@pytest.fixture
def gate(dnsgate, upstream):
    return dnsgate(allowlist=ALLOW, upstream=upstream.address)


def _check_outcome(gate, upstream, wire: bytes, outcome: str, reason: str, ev: dict, r) -> None:
    if outcome == DROP:
        assert r.response is None, f"dnsgate answered a packet it must drop: {r.response[:64].hex()}"
        expected = dict(action="drop", reasonCode="malformed_query", malformedReason=reason, rcode=None,
                        qname=ABSENT, upstream=ABSENT, answerCount=0, size=len(wire))
        expected["transactionId"] = wire_id(wire) if len(wire) >= 2 else ABSENT
        check_event(ev, r, **expected)
    elif outcome == REFUSE:
        assert_synthesized(r, dns.rcode.REFUSED, 15)
        check_event(ev, r, action="refuse", reasonCode="not_allowlisted", rcode="REFUSED", upstream=ABSENT,
                    size=len(wire))
    else:
        assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR
        assert wire_id(r.response) == wire_id(wire)
        check_event(ev, r, action="forward", reasonCode="allowed", rcode="NOERROR", size=len(wire))


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_hostile_packet(gate, upstream, case):
    wire, outcome, reason = CATALOGUE[case]
    r = gate.exchange(wire, timeout=0.4 if outcome == DROP else 2.0, linger=0.2)
    assert r.extra == [], "more than one datagram came back"
    (ev,) = gate.events(1)
    _check_outcome(gate, upstream, wire, outcome, reason, ev, r)
    if outcome == FORWARD:
        (seen,) = upstream.wait_for(1)
        assert len(seen) == len(wire) and seen[2:] == wire[2:], "the upstream must get the query's bytes but the id"
    else:
        assert upstream.queries() == [], "a packet that must not leave dnsgate reached the upstream"
    # and dnsgate still serves
    ok = gate.query("www.example.com.", "A", ident=0x600D)
    assert ok.response is not None and ok.msg.rcode() == dns.rcode.NOERROR
    gate.events(2)
    stats = gate.stop()
    check_accounting(gate, stats)
    assert stats["unsolicitedUpstream"] == 0


def test_whole_catalogue_from_one_socket_without_waiting(gate, upstream):
    """Every hostile packet back to back from one socket, then a real query:
    exactly the expected answers come back, and the counters add up."""
    client = udp_socket()
    big_buffers(client)
    try:
        for wire, _outcome, _reason in CATALOGUE.values():
            gate.send(wire, sock=client)
        gate.send(make_query("www.example.com.", "A", ident=0x1A57).to_wire(), sock=client)
        answers = nothing_arrives(client, 1.5)
    finally:
        client.close()
    answered = [wire for wire, outcome, _ in CATALOGUE.values() if outcome != DROP]
    assert len(answers) == len(answered) + 1, f"{len(answers)} datagrams came back, expected {len(answered) + 1}"
    assert sorted(wire_id(a) for a in answers) == sorted([wire_id(w) for w in answered] + [0x1A57])
    evs = gate.events(len(CATALOGUE) + 1)
    drops = sorted(e["data"]["malformedReason"] for e in evs if e["data"]["action"] == "drop")
    assert drops == sorted(reason for _w, outcome, reason in CATALOGUE.values() if outcome == DROP)
    forwarded = sum(1 for _w, outcome, _r in CATALOGUE.values() if outcome == FORWARD) + 1
    assert len(upstream.wait_for(forwarded)) == forwarded
    stats = gate.stop()
    reasons = check_accounting(gate, stats)
    assert reasons["malformed_query"] == len(drops)


def test_answer_sent_to_the_listener_is_not_reflected(gate, upstream):
    """An upstream (or anyone) that sends a response to the listener: dropped
    as response_bit_set, with its event, and nothing goes back to it."""
    r = gate.query("www.example.com.", "A", ident=0x2001)
    assert r.response is not None
    (query_seen,) = upstream.wait_for(1)
    upstream.sock.sendto(answer_for(query_seen), ("127.0.0.1", gate.port))
    gate.note_datagrams(1)
    evs = gate.events(2)
    ev = next(e for e in evs if e["data"]["action"] == "drop")
    assert ev["data"]["malformedReason"] == "response_bit_set"
    assert ev["data"]["client"] == f"127.0.0.1:{upstream.port}"
    time.sleep(0.2)
    assert len(upstream.queries()) == 1, "dnsgate sent something back to the sender of a response"
    stats = gate.stop()
    check_accounting(gate, stats)


# ------------------------------------------------------------ the upstream side


def test_flood_of_unsolicited_answers_while_real_queries_are_answered(dnsgate, upstream):
    """5,000 unsolicited datagrams in about a second from the resolver's own
    address and port (stale ids, names never asked, garbage, queries): none
    reaches a workload, each is counted or was dropped by the kernel, and
    100 real queries sent meanwhile all get their own answer."""
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address, timeout_ms=3000)
    first = gate.query("first.example.com.", "A", ident=0x3000)
    assert first.response is not None and first.msg.rcode() == dns.rcode.NOERROR
    (query_seen,) = upstream.wait_for(1)
    proxy_side = upstream.received[0][1]  # dnsgate's upstream socket
    stale = answer_for(query_seen, FAKE)
    rng = random.Random(5000)

    def make(i: int) -> bytes:
        kind = i % 5
        ident = rng.randrange(65536)
        if kind == 0:
            return stale  # the answer already relayed, again
        if kind == 1:
            q = make_query(f"never-asked-{i}.example.com.", "A", ident=ident).to_wire()
            return answer_for(q, FAKE)
        if kind == 2:
            return struct.pack("!H", ident) + answer_for(query_seen, FAKE)[2:]  # right question, random id
        if kind == 3:
            return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        return make_query("www.example.com.", "A", ident=ident).to_wire()  # QR=0

    packets = [make(i) for i in range(5000)]  # built first, so the flood runs at its rate
    flood = Flooder(upstream.sock, proxy_side, packets.__getitem__, count=len(packets), burst=100,
                    interval=0.018).start()
    client = udp_socket()
    try:
        for i in range(100):
            ident = 0x3100 + i
            r = gate.exchange(make_query(f"r{i}.example.com.", "A", ident=ident).to_wire(), sock=client,
                              timeout=2.0)
            assert r.response is not None, f"real query {i} got no answer during the flood"
            m = r.msg
            assert m.id == ident and m.rcode() == dns.rcode.NOERROR
            assert m.question[0].name.to_text() == f"r{i}.example.com."
            assert [a.address for a in m.answer[0]] == [REAL], f"query {i} got a flooded answer"
        flood.join()
        time.sleep(0.3)  # let dnsgate read what is queued
        strays = nothing_arrives(client, 0.2)
    finally:
        client.close()
    assert strays == [], f"{len(strays)} unsolicited datagrams reached the workload"
    assert flood.sent == 5000 and flood.seconds < 2.0, f"the flood took {flood.seconds:.2f} s"
    dropped_by_kernel = udp_drops(proxy_side[1])
    seen = upstream.queries()
    assert len(seen) == 101, f"the upstream saw {len(seen)} datagrams, expected the 101 real queries"
    stats = gate.stop()
    print(f"flood: {flood.sent} sent in {flood.seconds:.2f} s, {stats['unsolicitedUpstream']} counted, "
          f"{dropped_by_kernel} dropped by the kernel")
    check_accounting(gate, stats)
    assert stats["relayed"] == 101
    assert stats["unsolicitedUpstream"] + dropped_by_kernel == 5000, (stats, dropped_by_kernel)


def test_answer_replayed_after_timeout_is_never_relayed(dnsgate, upstream):
    """The upstream holds a query past the timeout, then replays that answer:
    once after the SERVFAIL, and again while a new query for the same name
    from the same socket and id is in flight. Neither reaches the workload;
    the new query gets its own answer."""
    held: list[bytes] = []
    lock = threading.Lock()

    def behaviour(up, wire, addr):
        with lock:
            held.append(wire)
            n = len(held)
        if n == 1:
            return  # silent: the query times out
        first = held[0]
        if wire_id(first) != wire_id(wire):  # 1 in 65,536 they are equal: the replay would be a valid answer
            up.send(answer_for(first, FAKE), addr)
        up.send(answer_for(wire, REAL), addr, delay=0.15)

    upstream.behaviour = behaviour
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address, timeout_ms=300)
    client = udp_socket()
    try:
        q = make_query("replay.example.com.", "A", ident=0x4444).to_wire()
        r1 = gate.exchange(q, sock=client, timeout=2.0)
        assert r1.response is not None and r1.msg.rcode() == dns.rcode.SERVFAIL
        (first,) = upstream.wait_for(1)
        addr = upstream.received[0][1]
        upstream.send(answer_for(first, FAKE), addr)  # the replay after the timeout
        assert nothing_arrives(client, 0.3) == [], "the late answer reached the workload"
        r2 = gate.exchange(q, sock=client, timeout=2.0, linger=0.3)
        assert r2.response is not None
        assert [a.address for a in r2.msg.answer[0]] == [REAL], "the replayed answer was relayed"
        assert r2.msg.id == 0x4444 and r2.extra == []
    finally:
        client.close()
    seen = upstream.queries()
    assert len(seen) == 2
    stats = gate.stop()
    check_accounting(gate, stats)
    replays = 2 if wire_id(seen[0]) != wire_id(seen[1]) else 1
    assert stats["unsolicitedUpstream"] == replays and stats["relayed"] == 1 and stats["servfailTimeout"] == 1


def test_answers_from_other_ports_and_addresses_are_never_relayed(dnsgate, upstream):
    """For each query the right answer (right id, right question) comes first
    from 20 other ports and from 127.0.0.2 at the resolver's port; only the
    one from the resolver's own address and port, 150 ms later, is relayed.
    The upstream socket is connected, so the kernel drops the others before
    dnsgate reads them: none is counted as unsolicited."""
    others = [upstream.socket_from("127.0.0.1") for _ in range(20)]
    others.append(upstream.socket_from("127.0.0.2", upstream.port))

    def behaviour(up, wire, addr):
        for s in others:
            up.send(answer_for(wire, FAKE), addr, via=s)
        up.send(answer_for(wire, REAL), addr, delay=0.15)

    upstream.behaviour = behaviour
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address, timeout_ms=2000)
    for i in range(3):
        r = gate.exchange(make_query(f"p{i}.example.com.", "A", ident=0x5000 + i).to_wire(), timeout=2.0,
                          linger=0.2)
        assert r.response is not None and r.extra == []
        assert [a.address for a in r.msg.answer[0]] == [REAL], "an answer from another port was relayed"
        assert r.elapsed >= 0.14
    stats = gate.stop()
    check_accounting(gate, stats)
    assert stats["unsolicitedUpstream"] == 0 and stats["relayed"] == 3


# ------------------------------------------------------------ the workload side


def test_same_id_from_many_sockets_at_a_high_rate(dnsgate, upstream):
    """2,000 queries, all with id 1234, from 8 sockets, all in flight at
    once: the upstream sees 2,000 distinct random ids, and each socket gets
    exactly the answers to its own names, with id 1234."""
    n, sockets_n, ident = 2000, 8, 1234
    held: list[tuple[bytes, tuple]] = []
    lock = threading.Lock()
    released = threading.Event()

    def address_of(i: int) -> str:
        return f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}"

    def behaviour(up, wire, addr):
        with lock:
            held.append((wire, addr))
            if len(held) < n:
                return
            batch = list(held)
        random.Random(1234).shuffle(batch)
        for k, (w, a) in enumerate(batch):  # paced: a loopback buffer holds a few hundred at once
            i = int(dns.message.from_wire(w).question[0].name.labels[0][1:])
            up.sock.sendto(answer_for(w, address_of(i)), a)
            if k % 100 == 99:
                time.sleep(0.005)
        released.set()

    upstream.behaviour = behaviour
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address, timeout_ms=15000)
    clients = [udp_socket() for _ in range(sockets_n)]
    for c in clients:
        big_buffers(c)
    try:
        wires = [make_query(f"h{i}.example.com.", "A", ident=ident).to_wire() for i in range(n)]
        for i, wire in enumerate(wires):  # about 10,000 a second: a rate, not a buffer overflow test
            gate.send(wire, sock=clients[i % sockets_n])
            if i % 50 == 49:
                time.sleep(0.005)
        assert released.wait(timeout=15), f"the upstream saw only {len(upstream.queries())} of {n} queries"
        for k, c in enumerate(clients):
            mine = set(range(k, n, sockets_n))
            deadline = time.monotonic() + 10
            got = set()
            while len(got) < len(mine):
                data = recv_until(c, deadline)
                assert data is not None, f"socket {k} got {len(got)} of {len(mine)} answers"
                m = dns.message.from_wire(data)
                assert m.id == ident
                i = int(m.question[0].name.labels[0][1:])
                assert i in mine, f"socket {k} got the answer to another socket's query h{i}"
                assert i not in got, f"socket {k} got two answers for h{i}"
                assert [a.address for a in m.answer[0]] == [address_of(i)], f"h{i} got another query's answer"
                got.add(i)
            assert nothing_arrives(c, 0.05) == []
    finally:
        for c in clients:
            c.close()
    ids = [wire_id(w) for w in upstream.queries()]
    assert len(ids) == n
    assert len(set(ids)) == n, f"{n - len(set(ids))} upstream ids reused among queries in flight at once"
    assert ids.count(ident) <= 1 and ids != sorted(ids), "upstream ids are not fresh random ids"
    stats = gate.stop()
    check_accounting(gate, stats)
    assert stats["relayed"] == n and stats["unsolicitedUpstream"] == 0


def test_identical_datagrams_from_one_socket_each_get_an_answer(dnsgate, upstream):
    """20 byte-identical queries (same socket, id, name) in a burst: 20
    answers, 20 events, 20 distinct upstream ids."""
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address)
    client = udp_socket()
    wire = make_query("same.example.com.", "A", ident=0x7777).to_wire()
    try:
        for _ in range(20):
            gate.send(wire, sock=client)
        answers = nothing_arrives(client, 1.0)
    finally:
        client.close()
    assert len(answers) == 20 and all(wire_id(a) == 0x7777 for a in answers)
    ids = [wire_id(w) for w in upstream.wait_for(20)]
    assert len(set(ids)) == 20, "two queries in flight shared an upstream id"
    stats = gate.stop()
    check_accounting(gate, stats)


def test_silent_upstream_under_a_burst_every_query_ends_once(dnsgate, upstream):
    """A burst larger than maxInflight against a silent upstream: the first
    50 are forwarded and time out, the other 70 are overloaded at once; each
    query ends exactly once, never both, never lost."""
    upstream.behaviour = silent
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address, timeout_ms=1000, max_inflight=50)
    client = udp_socket()
    big_buffers(client)
    wires = [make_query(f"s{i}.example.com.", "A", ident=i).to_wire() for i in range(120)]
    try:
        start = time.monotonic()
        for wire in wires:
            gate.send(wire, sock=client)
        burst = time.monotonic() - start
        answers = nothing_arrives(client, 2.5)
    finally:
        client.close()
    assert burst < 0.5, f"sending the burst took {burst:.2f} s: no slot could have been freed by a timeout"
    assert sorted(wire_id(a) for a in answers) == list(range(120)), "a query got no answer or two"
    assert all(dns.message.from_wire(a).rcode() == dns.rcode.SERVFAIL for a in answers)
    stats = gate.stop()
    reasons = check_accounting(gate, stats)
    assert reasons["upstream_timeout"] == 50 and reasons["overloaded"] == 70, reasons
    assert len(upstream.queries()) == stats["forwarded"] == 50


def test_clients_that_vanish_cost_nothing(dnsgate, upstream):
    """A client that vanishes (its port closed) before its answer arrives
    costs nothing: dnsgate keeps serving others."""
    upstream.behaviour = lambda up, wire, addr: up.send(answer_for(wire, REAL), addr, delay=0.1)
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address)
    for i in range(10):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        gate.send(make_query(f"gone{i}.example.com.", "A", ident=i).to_wire(), sock=s)
        s.close()  # the answer will meet a closed port
    time.sleep(0.3)
    r = gate.query("www.example.com.", "A", ident=0x600D)
    assert r.response is not None and [a.address for a in r.msg.answer[0]] == [REAL]
    stats = gate.stop()
    # An answer to a closed port is still sent (the kernel accepts it); sendFailed stays 0.
    check_accounting(gate, stats)
    assert stats["relayed"] == 11
