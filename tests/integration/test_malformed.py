"""Packets the parser rejects are dropped: no answer, nothing upstream, one
drop/malformed_query event saying why (DESIGN.md §1 row 3, §5 "Every
datagram is an observed query")."""

from __future__ import annotations

import struct

import dns.rcode
import pytest

from dnsgate_testlib import ABSENT, check_event, encode_name, make_query, opt_record, raw_query

ALLOW = ["example.com", "www.example.com", "*.example.com"]
WWW = [b"www", b"example", b"com"]
QUESTION = encode_name(WWW) + struct.pack("!HH", 1, 1)


def hdr(ident=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


def name_of_octets(total: int) -> list[bytes]:
    """Labels ending in example.com whose wire form is exactly `total` octets."""
    tail = [b"example", b"com"]
    left = total - len(encode_name(tail))
    labels = []
    while left > 0:
        take = min(64, left)
        assert take >= 2, "cannot build that length"
        labels.append(b"x" * (take - 1))
        left -= take
    out = labels + tail
    assert len(encode_name(out)) == total
    return out


A_RECORD = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 1])

CASES = {
    "empty": (b"", "too_short"),
    "one_octet": (b"\x12", "too_short"),
    "eleven_octets": (hdr()[:11], "too_short"),
    "qr_set": (hdr(flags=0x8100) + QUESTION, "response_bit_set"),
    "qdcount_0": (hdr(qd=0), "bad_question_count"),
    "qdcount_0_with_question": (hdr(qd=0) + QUESTION, "bad_question_count"),
    "qdcount_2": (hdr(qd=2) + QUESTION + QUESTION, "bad_question_count"),
    "pointer_to_itself": (hdr() + b"\xc0\x0c" + b"\x00\x01\x00\x01", "pointer_not_backward"),
    "pointer_loop_after_label": (hdr() + b"\x03www\xc0\x0c" + b"\x00\x01\x00\x01", "pointer_not_backward"),
    "pointer_forward": (hdr() + b"\xc0\x12" + b"\x00\x01\x00\x01" + b"\x03www\x00", "pointer_not_backward"),
    "pointer_into_header": (hdr() + b"\xc0\x00" + b"\x00\x01\x00\x01", "pointer_into_header"),
    "pointer_to_offset_11": (hdr() + b"\x03www\xc0\x0b" + b"\x00\x01\x00\x01", "pointer_into_header"),
    "label_type_0x40": (hdr() + b"\x41" + b"a" * 1 + b"\x00\x00\x01\x00\x01", "bad_label_type"),
    "label_type_0x80": (hdr() + b"\x83www\x00\x00\x01\x00\x01", "bad_label_type"),
    "no_question_at_all": (hdr(), "truncated_question"),
    "cut_inside_label": (hdr() + b"\x07exam", "truncated_question"),
    "no_root_label": (hdr() + b"\x03www\x07example\x03com", "truncated_question"),
    "no_qtype_qclass": (hdr() + encode_name(WWW), "truncated_question"),
    "half_qclass": (hdr() + encode_name(WWW) + b"\x00\x01\x00", "truncated_question"),
    "name_256_octets": (hdr() + encode_name(name_of_octets(256)) + b"\x00\x01\x00\x01", "name_too_long"),
    "name_300_octets": (hdr() + encode_name(name_of_octets(300)) + b"\x00\x01\x00\x01", "name_too_long"),
    "arcount_without_record": (hdr(ar=1) + QUESTION, "truncated_record"),
    "half_an_answer": (hdr(an=1) + QUESTION + A_RECORD[:7], "truncated_record"),
    "rdlength_past_end": (hdr(ar=1) + QUESTION + b"\x00" + struct.pack("!HHIH", 16, 1, 0, 40) + b"\x05hello",
                          "truncated_record"),
    "opt_not_owned_by_root": (hdr(ar=1) + QUESTION + opt_record(owner=b"\x03com\x00"), "bad_opt_record"),
    "two_opts": (hdr(ar=2) + QUESTION + opt_record() + opt_record(), "bad_opt_record"),
    "one_trailing_octet": (hdr() + QUESTION + b"\x00", "trailing_data"),
    "garbage_after_opt": (hdr(ar=1) + QUESTION + opt_record() + b"junkjunk", "trailing_data"),
}


@pytest.fixture
def gate(dnsgate, upstream):
    return dnsgate(allowlist=ALLOW, upstream=upstream.address)


def assert_dropped(gate, upstream, wire: bytes, reason: str):
    r = gate.exchange(wire, timeout=0.3)
    assert r.response is None, f"dnsgate answered a malformed packet: {r.response.hex()}"
    (ev,) = gate.events(1)
    expected = dict(action="drop", reasonCode="malformed_query", malformedReason=reason, rcode=None,
                    qname=ABSENT, qtype=ABSENT, qclass=ABSENT, upstream=ABSENT, answerCount=0,
                    size=len(wire))
    if len(wire) >= 2:
        expected["transactionId"] = struct.unpack("!H", wire[:2])[0]
    else:
        expected["transactionId"] = ABSENT
    check_event(ev, r, **expected)
    assert "subject" not in ev
    return ev


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_packet_dropped(gate, upstream, case):
    wire, reason = CASES[case]
    assert_dropped(gate, upstream, wire, reason)
    assert upstream.queries() == [], "a malformed packet reached the upstream"
    # and dnsgate still serves
    r = gate.query("www.example.com.", "A", ident=0x7E57)
    assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR
    gate.events(2)


def test_all_malformed_in_a_row_then_still_serving(gate, upstream):
    for case, (wire, _reason) in CASES.items():
        gate.exchange(wire, timeout=0.05)
    r = gate.query("www.example.com.", "A", ident=0x600D, edns=True)
    assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR
    evs = gate.events(len(CASES) + 1)
    got = [e["data"].get("malformedReason") for e in evs[:-1]]
    assert got == [reason for _w, reason in CASES.values()]
    assert len(upstream.wait_for(1)) == 1
    stats = gate.stop()
    assert stats["malformed"] == len(CASES)
    assert stats["received"] == len(CASES) + 1 + gate.probes
    assert stats["forwarded"] == 1 and stats["relayed"] == 1


# ------------------------------------------------------------ what is not malformed


def test_name_of_exactly_255_octets_is_accepted(gate, upstream):
    labels = name_of_octets(255)
    wire = raw_query(labels, ident=0x00FF)
    r = gate.exchange(wire)
    assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR
    (seen,) = upstream.wait_for(1)
    assert seen[2:] == wire[2:]
    (ev,) = gate.events(1)
    check_event(ev, r, action="forward", reasonCode="allowed",
                qname=".".join(label.decode() for label in labels))


def test_records_after_the_question_may_use_backward_pointers(gate, upstream):
    """An answer-section record whose owner points back at the question is well formed."""
    wire = hdr(ident=0x0C0C, an=1, ar=1) + QUESTION + A_RECORD + opt_record(1232, True)
    r = gate.exchange(wire)
    assert r.response is not None
    (seen,) = upstream.wait_for(1)
    assert seen[2:] == wire[2:], "the upstream must get the query bytes unchanged"
    (ev,) = gate.events(1)
    check_event(ev, r, action="forward", reasonCode="allowed", qname="www.example.com")


def test_query_id_zero_is_legal(gate, upstream):
    r = gate.exchange(make_query("www.example.com.", "A", ident=0).to_wire())
    assert r.response is not None and struct.unpack("!H", r.response[:2])[0] == 0
    (ev,) = gate.events(1)
    check_event(ev, r, transactionId=0, action="forward")
