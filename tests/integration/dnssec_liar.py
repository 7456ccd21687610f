"""A lying upstream for the DNSSEC tests: a UDP server on 127.0.0.1 that
forwards every query to an authoritative knotd, then mutates the answer
on the wire before it goes back (RRSIGs stripped, NSEC proofs removed,
an address changed, AD forged) or drops the query altogether.

It is a ScriptedUpstream (dnsgate_testlib) whose behaviour is "forward,
then apply the rule for this (qname, qtype)". One thread, one query at a
time: knotd on loopback answers in well under a millisecond.
"""

from __future__ import annotations

import socket
import time
from typing import Callable, Optional

import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import dns.rrset

from dnsgate_testlib import ScriptedUpstream, recv_until

Mutation = Callable[[dns.message.Message], Optional[dns.message.Message]]

DNSSEC_TYPES = {dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3}


def _sections(msg: dns.message.Message):
    return (msg.answer, msg.authority, msg.additional)


def strip_rrsigs(msg: dns.message.Message) -> dns.message.Message:
    """Every RRSIG removed from every section (EDE 10 RRSIGs Missing)."""
    for sec in _sections(msg):
        sec[:] = [rr for rr in sec if rr.rdtype != dns.rdatatype.RRSIG]
    return msg


def strip_denial(msg: dns.message.Message) -> dns.message.Message:
    """NSEC/NSEC3 records and the RRSIGs that cover them removed from the
    authority section; the SOA and its RRSIG stay (EDE 12 NSEC Missing)."""
    msg.authority[:] = [
        rr for rr in msg.authority
        if rr.rdtype not in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3)
        and not (rr.rdtype == dns.rdatatype.RRSIG and rr.covers in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3))
    ]
    return msg


FORGED_ADDRESS = "198.51.100.66"


def forge_address(msg: dns.message.Message) -> dns.message.Message:
    """The A record's address changed (its RRSIG kept), AD set: a spoofed
    answer that claims to be validated."""
    out = []
    for rr in msg.answer:
        if rr.rdtype == dns.rdatatype.A:
            rr = dns.rrset.from_text(rr.name, rr.ttl, "IN", "A", FORGED_ADDRESS)
        out.append(rr)
    msg.answer[:] = out
    msg.flags |= dns.flags.AD
    return msg


DROP = "drop"  # a rule value: never answer this query

RULES = {"strip_rrsigs": strip_rrsigs, "strip_denial": strip_denial, "forge_address": forge_address}


class Liar:
    """Forwards to 127.0.0.1:`target_port` and lies. `rules` maps
    (qname, qtype) -- qtype None for any type -- to a mutation name of RULES
    or DROP. forge_ad=True sets AD=1 on every answer it relays.

    Records what it did in `log` as (qname, qtype, action)."""

    def __init__(self, target_port: int, rules: dict, forge_ad: bool = False, name: str = "liar"):
        self.target_port = target_port
        self.rules = {(dns.name.from_text(n), t): r for (n, t), r in rules.items()}
        self.forge_ad = forge_ad
        self.name = name
        self.log: list[tuple[str, str, str]] = []
        self.up = ScriptedUpstream()
        self.up.behaviour = self._handle

    @property
    def port(self) -> int:
        return self.up.port

    @property
    def address(self) -> str:
        return self.up.address

    @property
    def errors(self) -> list:
        return self.up.errors

    def _rule_for(self, qname: dns.name.Name, qtype: int):
        return self.rules.get((qname, dns.rdatatype.to_text(qtype))) or self.rules.get((qname, None))

    def _forward(self, wire: bytes) -> Optional[bytes]:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", 0))
            s.sendto(wire, ("127.0.0.1", self.target_port))
            return recv_until(s, time.monotonic() + 2.0)
        finally:
            s.close()

    def _handle(self, up: ScriptedUpstream, wire: bytes, addr: tuple) -> None:
        try:
            q = dns.message.from_wire(wire)
        except Exception:
            return  # not a query we understand: say nothing
        if len(q.question) != 1:
            return
        qname, qtype = q.question[0].name, q.question[0].rdtype
        rule = self._rule_for(qname, qtype)
        entry = (qname.to_text(), dns.rdatatype.to_text(qtype))
        if rule == DROP:
            self.log.append(entry + ("drop",))
            return
        answer = self._forward(wire)
        if answer is None:
            self.log.append(entry + ("upstream silent",))
            return
        if rule is not None:
            msg = dns.message.from_wire(answer)
            msg = RULES[rule](msg)
            answer = msg.to_wire()
        if self.forge_ad:
            answer = answer[:3] + bytes([answer[3] | 0x20]) + answer[4:]
        self.log.append(entry + (rule or "relay",))
        up.send(answer, addr)

    def close(self) -> None:
        self.up.close()
