"""Names off the allowlist are answered locally and never reach the
upstream; other opcodes get NOTIMP (DESIGN.md §1 rows 2 and 4,
"Allowlist matching", "Synthesized responses", denyRcode in §3)."""

from __future__ import annotations

import struct

import dns.message
import dns.opcode
import dns.rcode
import dns.update
import pytest

from dnsgate_testlib import (
    ABSENT, assert_synthesized, check_event, ede_codes, header, question_bytes, raw_query,
    wire_id,
)

ALLOW = ["example.com", "www.example.com", "*.example.org"]


@pytest.fixture
def gate(dnsgate, upstream):
    return dnsgate(allowlist=ALLOW, upstream=upstream.address)


def refuse_event(ev, reply, qname, rcode="REFUSED", qtype="A"):
    check_event(ev, reply, action="refuse", reasonCode="not_allowlisted", qname=qname, qtype=qtype,
                qclass="IN", rcode=rcode, answerCount=0, upstream=ABSENT, malformedReason=ABSENT)
    assert ev["data"]["latencyUs"] < 1_000_000


# ------------------------------------------------------------ REFUSED


@pytest.mark.parametrize("rd,cd,do", [(True, False, False), (False, True, True), (True, True, False),
                                      (False, False, True)])
def test_denied_with_edns_gets_refused_and_ede_15(gate, upstream, rd, cd, do):
    flags = (0x0100 if rd else 0) | (0x0010 if cd else 0)
    wire = raw_query([b"NoT", b"AlLoWeD", b"example", b"NET"], qtype=28, ident=0xD00D, flags=flags,
                     edns={"payload": 4096, "do": do})
    r = gate.exchange(wire)
    assert_synthesized(r, dns.rcode.REFUSED, 15)
    msg = r.msg
    assert ede_codes(msg) == [(15, "")]
    assert bool(msg.ednsflags & 0x8000) == do
    assert msg.payload == 1232
    (ev,) = gate.events(1)
    refuse_event(ev, r, "NoT.AlLoWeD.example.NET", qtype="AAAA")
    assert upstream.queries() == [], "the upstream saw a denied name"


def test_denied_without_edns_gets_bare_refused(gate, upstream):
    wire = raw_query([b"blocked", b"example", b"net"], ident=0x0001)
    r = gate.exchange(wire)
    assert_synthesized(r, dns.rcode.REFUSED, None)
    assert len(r.response) == len(wire), "header + question and nothing else"
    (ev,) = gate.events(1)
    refuse_event(ev, r, "blocked.example.net")
    assert upstream.queries() == []


@pytest.mark.parametrize("name", [
    "example.org.",          # bare suffix of *.example.org
    "EXAMPLE.ORG.",
    "badexample.org.",       # string suffix, not a label suffix
    "wwwexample.com.",
    "mail.example.com.",     # literal example.com does not allow its children
    "example.com.evil.net.",
    "www.example.co.",
    "com.",
])
def test_names_off_the_list_refused(gate, upstream, name):
    r = gate.query(name, "A", ident=0x0BAD, edns=True)
    assert_synthesized(r, dns.rcode.REFUSED, 15)
    (ev,) = gate.events(1)
    refuse_event(ev, r, name.rstrip("."))
    assert upstream.queries() == []


def test_root_name_refused(gate, upstream):
    wire = raw_query([], qtype=2, ident=0x0002)
    r = gate.exchange(wire)
    assert_synthesized(r, dns.rcode.REFUSED, None)
    (ev,) = gate.events(1)
    refuse_event(ev, r, ".", qtype="NS")
    assert upstream.queries() == []


def test_deny_rcode_nxdomain(dnsgate, upstream):
    gate = dnsgate(allowlist=ALLOW, upstream=upstream.address, deny_rcode="NXDOMAIN")
    r = gate.query("denied.example.net.", "A", ident=0x4E58, edns=True)
    assert_synthesized(r, dns.rcode.NXDOMAIN, 15)
    r2 = gate.query("denied.example.net.", "A", ident=0x4E59)
    assert_synthesized(r2, dns.rcode.NXDOMAIN, None)
    evs = gate.events(2)
    refuse_event(evs[0], r, "denied.example.net", rcode="NXDOMAIN")
    refuse_event(evs[1], r2, "denied.example.net", rcode="NXDOMAIN")
    # allowed names still go through
    r3 = gate.query("www.example.com.", "A", ident=0x4E5A)
    assert r3.response is not None and r3.msg.rcode() == dns.rcode.NOERROR
    assert len(upstream.wait_for(1)) == 1
    gate.events(3)
    stats = gate.stop()
    assert stats["refused"] == 2 + gate.probes


# ------------------------------------------------------------ label sequences, not strings


@pytest.mark.parametrize("labels,presentation", [
    ([b"example.com"], r"example\.com"),                    # one label "example.com"
    ([b"www.example", b"com"], r"www\.example.com"),
    ([b"a.b", b"example", b"org"], r"a\.b.example.org"),   # would match *.example.org as a string
    ([b"www", b"example.com"], r"www.example\.com"),
    ([b"a\x00", b"example", b"org"], r"a\000.example.org"),
    ([b"*", b"example", b"org"], "*.example.org"),
    ([b"a b", b"example", b"org"], r"a\032b.example.org"),
    ([b"caf\xc3\xa9", b"example", b"org"], r"caf\195\169.example.org"),
    ([b'q"uote', b"example", b"org"], r'q\"uote.example.org'),
    ([b"back\\slash", b"example", b"org"], r"back\\slash.example.org"),
    ([b"semi;colon", b"example", b"org"], r"semi\;colon.example.org"),
    ([b"del\x7f", b"example", b"org"], r"del\127.example.org"),
])
def test_wire_labels_with_odd_bytes_match_nothing(gate, upstream, labels, presentation):
    wire = raw_query(labels, ident=0x2E2E, edns={"payload": 1232})
    r = gate.exchange(wire)
    assert_synthesized(r, dns.rcode.REFUSED, 15)
    (ev,) = gate.events(1)
    refuse_event(ev, r, presentation)
    assert upstream.queries() == [], "a name with an odd label reached the upstream"


# ------------------------------------------------------------ what is allowed


@pytest.mark.parametrize("entries,name", [
    (["Mixed.Example.COM."], "mixed.EXAMPLE.com."),   # case-insensitive, trailing dot ignored
    (["example.com"], "EXAMPLE.COM."),
    (["*.example.com"], "_dmarc.example.com."),
    (["*.example.com"], "my-host.a-b.example.com."),
    (["bücher.example"], "xn--bcher-kva.example."),     # IDN entry stored as an A-label
    (["bücher.example"], "XN--BCHER-KVA.Example."),
    (["*.xn--bcher-kva.example"], "www.xn--bcher-kva.example."),
])
def test_allowed_forms(dnsgate, upstream, entries, name):
    gate = dnsgate(allowlist=entries, upstream=upstream.address)
    r = gate.query(name, "A", ident=0x0A0A)
    assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR
    (seen,) = upstream.wait_for(1)
    assert seen[2:] == r.query[2:]
    (ev,) = gate.events(1)
    check_event(ev, r, action="forward", reasonCode="allowed", qname=name.rstrip("."),
                upstream=upstream.address)


def test_empty_allowlist_refuses_everything(dnsgate, upstream):
    gate = dnsgate(allowlist=[], upstream=upstream.address)
    r = gate.query("www.example.com.", "A", ident=1)
    assert_synthesized(r, dns.rcode.REFUSED, None)
    gate.events(1)
    assert upstream.queries() == []


# ------------------------------------------------------------ opcodes


OPCODE_NAMES = {1: "IQUERY", 2: "STATUS", 4: "NOTIFY", 5: "UPDATE", 6: "DSO", 15: "OPCODE15"}


@pytest.mark.parametrize("opcode", [1, 2, 4, 6, 15])
@pytest.mark.parametrize("edns", [False, True])
def test_other_opcodes_get_notimp(gate, upstream, opcode, edns):
    """NOTIMP with the question echoed; RD is not copied for another opcode
    (docs/conformance.md): assert_synthesized checks the flags."""
    flags = (opcode << 11) | 0x0100 | (0x0400 if opcode == 4 else 0)  # NOTIFY carries AA
    wire = raw_query([b"www", b"example", b"com"], qtype=6 if opcode == 4 else 1, ident=0x0C0C, flags=flags,
                     edns={"payload": 1232, "do": True} if edns else None)
    r = gate.exchange(wire)
    assert_synthesized(r, dns.rcode.NOTIMP, None, opcode=opcode)
    (ev,) = gate.events(1)
    check_event(ev, r, action="refuse", reasonCode="unsupported_opcode", qname="www.example.com",
                qtype="SOA" if opcode == 4 else "A", qclass="IN", rcode="NOTIMP", answerCount=0,
                upstream=ABSENT, opcode=OPCODE_NAMES[opcode])
    assert upstream.queries() == [], "the upstream saw a non-QUERY message"


@pytest.mark.parametrize("opcode", [1, 2, 15])
def test_other_opcodes_without_question_get_notimp(gate, upstream, opcode):
    """RFC 8906 3.1.4 (`dig +noedns +norec +header-only +opcode=15`): the
    header alone comes back, NOTIMP; the event has no qname."""
    wire = struct.pack("!HHHHHH", 0x0D0D, opcode << 11, 0, 0, 0, 0)
    r = gate.exchange(wire)
    assert r.response == struct.pack("!HHHHHH", 0x0D0D, 0x8000 | opcode << 11 | dns.rcode.NOTIMP, 0, 0, 0, 0)
    (ev,) = gate.events(1)
    check_event(ev, r, action="refuse", reasonCode="unsupported_opcode", qname=ABSENT, qtype=ABSENT,
                rcode="NOTIMP", answerCount=0, upstream=ABSENT, opcode=OPCODE_NAMES[opcode])
    assert upstream.queries() == []
    stats = gate.stop()
    assert stats["notimp"] == 1 and stats["malformed"] == 0


def test_update_gets_notimp(gate, upstream):
    upd = dns.update.UpdateMessage("example.com.", id=0x5005)
    upd.add("host.example.com.", 300, "A", "192.0.2.5")
    upd.delete("old.example.com.")
    wire = upd.to_wire()
    assert header(wire)["nscount"] == 2
    r = gate.exchange(wire)
    assert r.response is not None
    rh = header(r.response)
    assert rh["opcode"] == dns.opcode.UPDATE and rh["rcode"] == dns.rcode.NOTIMP and rh["qr"]
    assert (rh["qdcount"], rh["ancount"], rh["nscount"], rh["arcount"]) == (1, 0, 0, 0)
    assert r.response[12:] == question_bytes(wire)
    assert wire_id(r.response) == 0x5005
    (ev,) = gate.events(1)
    check_event(ev, r, action="refuse", reasonCode="unsupported_opcode", qname="example.com", qtype="SOA",
                rcode="NOTIMP", answerCount=0, upstream=ABSENT, opcode="UPDATE")
    assert upstream.queries() == []
    stats = gate.stop()
    assert stats["notimp"] == 1 and stats["forwarded"] == 0


def test_stats_count_refusals(gate, upstream):
    for i in range(5):
        gate.query(f"n{i}.example.net.", "A", ident=i)
    gate.query("www.example.com.", "A", ident=99)
    gate.events(6)
    stats = gate.stop()
    assert stats["refused"] == 5 + gate.probes
    assert stats["received"] == 6 + gate.probes
    assert stats["forwarded"] == 1 and stats["relayed"] == 1


def test_denied_query_with_edns_options_gets_only_ede(gate, upstream):
    """A cookie and padding in the query are not echoed: the OPT carries the EDE alone."""
    import struct as _s
    cookie = _s.pack("!HH", 10, 8) + b"\x01\x02\x03\x04\x05\x06\x07\x08"
    padding = _s.pack("!HH", 12, 40) + b"\x00" * 40
    wire = raw_query([b"denied", b"example", b"net"], ident=0x0C00,
                     edns={"payload": 1232, "do": False, "options": cookie + padding})
    r = gate.exchange(wire)
    assert r.response is not None
    rh = header(r.response)
    assert rh["rcode"] == dns.rcode.REFUSED and rh["arcount"] == 1
    q_len = len(wire) - 11 - len(cookie) - len(padding)
    assert r.response[12:q_len] == wire[12:q_len]
    assert r.response[q_len:] == b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x06\x00\x0f\x00\x02\x00\x0f"
    (ev,) = gate.events(1)
    refuse_event(ev, r, "denied.example.net")


@pytest.mark.parametrize("qtype,qclass,tname,cname", [(255, 1, "ANY", "IN"), (16, 3, "TXT", "CH"),
                                                      (1, 254, "A", "NONE"), (1, 4, "A", "HS"),
                                                      (1, 7, "A", "CLASS7"), (0, 1, "TYPE0", "IN")])
def test_type_and_class_names_in_events(gate, upstream, qtype, qclass, tname, cname):
    r = gate.exchange(raw_query([b"denied", b"example", b"net"], qtype=qtype, qclass=qclass, ident=3))
    assert r.response is not None and header(r.response)["rcode"] == dns.rcode.REFUSED
    (ev,) = gate.events(1)
    check_event(ev, r, qtype=tname, qclass=cname, action="refuse", reasonCode="not_allowlisted")
