"""DNSSEC validation (DESIGN.md §9), black box, with Unbound as the oracle.

The rig (dnssec_rig.py) signs the test zones once per session: knotd signs
its own (knot1), ldns-signzone makes the broken ones served as they are by a
second knotd (knot2), a lying upstream (dnssec_liar.py) rewrites knot1's
answers, and Unbound 1.17 validates everything with the same trust anchors.

Each case of CASES is three tests:
  test_oracle[case]   Unbound's verdict is the case's (the zone is what we say)
  test_dnsgate[case]  dnsgate, upstream = the same server, reaches the same
                      verdict: rcode, AD, EDE codes, event data.dnssec and
                      action/reasonCode
  test_dnsgate_no_do[case]  the same query without EDNS: no DNSSEC records,
                      no OPT, AD=0
plus the flag rules (AD, CD, DO), the liar's forged AD, refused and
malformed queries (unchecked), and real clients (kdig, dig).

Run: cd tests/integration && /usr/bin/python3 -m pytest -q test_dnssec.py
     (-k oracle for the rig and oracle only)
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Optional

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from dnsgate_testlib import (DnsGate, Reply, check_envelope, ede_codes, make_query, run_cli, wire_id)
from dnssec_liar import FORGED_ADDRESS, Liar
from dnssec_rig import Rig, ask

SECURE, INSECURE, BOGUS, INDETERMINATE = "secure", "insecure", "bogus", "indeterminate"
SERVFAIL = "servfail"  # the oracle's word for bogus and indeterminate: it answers SERVFAIL to both

EDE_UNSUPPORTED_ALG, EDE_UNSUPPORTED_DIGEST, EDE_INDETERMINATE, EDE_BOGUS = 1, 2, 5, 6
EDE_EXPIRED, EDE_NOT_YET_VALID, EDE_DNSKEY_MISSING, EDE_RRSIGS_MISSING, EDE_NSEC_MISSING = 7, 8, 9, 10, 12
EDE_NSEC3_ITERATIONS = 27
DNSSEC_RRTYPES = {dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3}


@dataclass
class Case:
    id: str
    qname: str
    qtype: str
    upstream: str  # knot1 | knot2 | liar | mute: dnsgate's resolver, and the oracle's stub
    verdict: str  # dnsgate's: secure | insecure | bogus | indeterminate
    rcode: str = "NOERROR"  # of a secure or insecure answer
    answer: bool = True  # a secure/insecure answer has records in the answer section
    ede: tuple = ()  # EDE codes dnsgate must send, in any order
    ede_may: frozenset = frozenset()  # further codes it may add (bogus: the more specific one)
    oracle: Optional[str] = None  # Unbound's verdict when it differs by design (see `why`)
    oracle_ede: Optional[int] = None  # the EDE Unbound 1.17 gives (6 also accepted: its bogus cache)
    why: str = ""

    def oracle_verdict(self) -> str:
        v = self.oracle or self.verdict
        return SERVFAIL if v in (BOGUS, INDETERMINATE) else v


CASES = [
    # knot1: zones knotd signs itself
    Case("secure_a", "www.dnssec.test.", "A", "knot1", SECURE),
    Case("secure_wildcard", "foo.wild.dnssec.test.", "A", "knot1", SECURE, why="*.wild.dnssec.test. expanded"),
    Case("nsec_nxdomain", "nope.dnssec.test.", "A", "knot1", SECURE, "NXDOMAIN", answer=False),
    Case("nsec_nodata", "www.dnssec.test.", "AAAA", "knot1", SECURE, answer=False),
    Case("secure_subdelegation", "www.sub.dnssec.test.", "A", "knot1", SECURE, why="DS in dnssec.test."),
    Case("nsec_unsigned_child", "www.unsigned.dnssec.test.", "A", "knot1", INSECURE,
         why="NS without DS, NSEC proves the DS absent"),
    Case("nsec3_answer", "www.nsec3.test.", "A", "knot1", SECURE, why="anchor in DNSKEY form"),
    Case("nsec3_nxdomain", "nope.nsec3.test.", "A", "knot1", SECURE, "NXDOMAIN", answer=False),
    Case("nsec3_nodata", "www.nsec3.test.", "TXT", "knot1", SECURE, answer=False),
    Case("nsec3_wildcard", "foo.wild.nsec3.test.", "A", "knot1", SECURE),
    Case("nsec3_unsigned_child", "www.unsigned.nsec3.test.", "A", "knot1", INSECURE),
    Case("nsec3_optout_child", "www.child.optout.test.", "A", "knot1", INSECURE,
         why="opt-out NSEC3 covers the unsigned delegation"),
    Case("nsec3_optout_nxdomain", "nope.optout.test.", "A", "knot1", INSECURE, "NXDOMAIN", answer=False,
         why="the next closer name is covered by an opt-out NSEC3 (RFC 5155 §8.4): not provably absent"),
    Case("nsec3_iterations_answer", "www.iter.test.", "A", "knot1", SECURE,
         why="200 iterations matter only to denial proofs"),
    Case("nsec3_iterations_nxdomain", "nope.iter.test.", "A", "knot1", INSECURE, "NXDOMAIN", answer=False,
         ede=(EDE_NSEC3_ITERATIONS,), why="RFC 9276: more than 150 iterations"),
    Case("nsec3_iterations_nodata", "www.iter.test.", "TXT", "knot1", INSECURE, answer=False,
         ede=(EDE_NSEC3_ITERATIONS,)),
    Case("outside_anchors_unsigned", "www.plain.test.", "A", "knot1", INSECURE, why="under no trust anchor"),
    Case("outside_anchors_signed", "www.island.test.", "A", "knot1", INSECURE,
         why="signed, but under no trust anchor: an island of security"),
    Case("outside_anchors_nxdomain", "nope.island.test.", "A", "knot1", INSECURE, "NXDOMAIN", answer=False),
    Case("algorithm_8", "www.alg8.test.", "A", "knot1", SECURE, why="RSASHA256"),
    Case("algorithm_8_nxdomain", "nope.alg8.test.", "A", "knot1", SECURE, "NXDOMAIN", answer=False),
    Case("algorithm_14_ds_sha384", "www.alg14.test.", "A", "knot1", SECURE,
         why="ECDSAP384SHA384, anchor DS digest type 4"),
    Case("algorithm_15", "www.alg15.test.", "A", "knot1", SECURE, why="ED25519"),
    Case("algorithm_16", "www.alg16.test.", "A", "knot1", SECURE, why="ED448"),
    # knot2: zones signed by ldns-signzone, served as they are
    Case("expired", "www.expired.test.", "A", "knot2", BOGUS, ede=(EDE_BOGUS, EDE_EXPIRED), oracle_ede=7),
    Case("not_yet_valid", "www.future.test.", "A", "knot2", BOGUS, ede=(EDE_BOGUS, EDE_NOT_YET_VALID),
         oracle_ede=8),
    Case("tampered_rrsig", "www.tampered.test.", "A", "knot2", BOGUS, ede=(EDE_BOGUS,), oracle_ede=6),
    Case("tampered_zone_other_name", "ns1.tampered.test.", "A", "knot2", SECURE,
         why="only www's signature was flipped"),
    Case("dnskey_removed", "www.nokey.test.", "A", "knot2", BOGUS, ede=(EDE_BOGUS,),
         ede_may=frozenset({EDE_DNSKEY_MISSING}), oracle_ede=9,
         why="the data is signed by a ZSK absent from the (validly signed) DNSKEY RRset"),
    Case("wrong_anchor", "www.wronganchor.test.", "A", "knot2", BOGUS, ede=(EDE_BOGUS,),
         ede_may=frozenset({EDE_DNSKEY_MISSING}), oracle_ede=9, why="the anchor's DS matches no key"),
    Case("ds_parent_secure", "www.ds.test.", "A", "knot2", SECURE),
    Case("ds_matches_no_key", "www.badds.ds.test.", "A", "knot2", BOGUS, ede=(EDE_BOGUS,),
         ede_may=frozenset({EDE_DNSKEY_MISSING}), oracle_ede=9, why="ds.test.'s DS for badds. matches no key"),
    Case("unsupported_algorithm", "www.unknownalg.test.", "A", "knot2", INSECURE, ede=(EDE_UNSUPPORTED_ALG,),
         why="algorithm 12 (ECC-GOST), implemented by neither validator"),
    Case("unsupported_digest", "www.unknowndigest.test.", "A", "knot2", INSECURE, ede=(EDE_UNSUPPORTED_DIGEST,),
         why="the anchor is a DS of digest type 3 (GOST) only"),
    Case("rsasha1_algorithm", "www.rsasha1.test.", "A", "knot2", INSECURE, ede=(EDE_UNSUPPORTED_ALG,),
         oracle=SECURE, why="algorithm 5: Unbound validates it, dnsgate implements 8 10 13 14 15 16 only"),
    Case("sha1_digest", "www.sha1ds.test.", "A", "knot2", INSECURE, ede=(EDE_UNSUPPORTED_DIGEST,),
         oracle=SECURE, why="DS digest 1: Unbound accepts SHA-1, dnsgate digests 2 and 4 only"),
    # the liar in front of knot1 (it sets AD=1 on everything it relays)
    Case("liar_secure", "www.liar.test.", "A", "liar", SECURE, why="relayed as is, AD forged by the upstream"),
    Case("liar_rrsigs_stripped", "nosig.liar.test.", "A", "liar", BOGUS, ede=(EDE_BOGUS, EDE_RRSIGS_MISSING),
         oracle_ede=10),
    Case("liar_nsec_removed", "gone.liar.test.", "A", "liar", BOGUS, ede=(EDE_BOGUS,),
         ede_may=frozenset({EDE_NSEC_MISSING}), oracle_ede=9, why="NXDOMAIN with the NSEC proof removed"),
    Case("liar_forged_ad", "forged.liar.test.", "A", "liar", BOGUS, ede=(EDE_BOGUS,), oracle_ede=6,
         why=f"address changed to {FORGED_ADDRESS}, AD=1 from the upstream"),
    # the mute liar: DNSKEY silent.test. never answered
    Case("indeterminate_dnskey_silent", "www.silent.test.", "A", "mute", INDETERMINATE, ede=(EDE_INDETERMINATE,),
         oracle_ede=9, why="the chain cannot be fetched"),
]
CASE_IDS = [c.id for c in CASES]
BY_ID = {c.id: c for c in CASES}
ANSWERING = [c for c in CASES if c.verdict in (SECURE, INSECURE)]

GATE_TIMEOUT_MS = {"knot1": 2000, "knot2": 2000, "liar": 2000, "mute": 1000, "recorder": 2000, "off": 2000}
ALLOWLIST = ["*.test"]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def rig(tmp_path_factory):
    r = Rig(tmp_path_factory.mktemp("dnssec"))
    r.start()
    try:
        yield r
    finally:
        r.stop()
    assert not r.errors(), f"liar failed: {r.errors()!r}"


class GatePool:
    """One dnsgate per upstream kind, started on first use, all with the
    rig's trust anchors; stopped at the end of the module with the suite's
    checks (exit 0, stats line, one valid event per datagram)."""

    def __init__(self, rig: Rig, tmp):
        self.rig = rig
        self.tmp = tmp
        self.gates: dict[str, DnsGate] = {}
        self.failed: dict[str, str] = {}
        # kind -> (upstream port, dnssec block) for gates besides one per rig server
        self.extra: dict[str, tuple[int, dict]] = {}

    def dnssec_config(self) -> dict:
        return {"mode": "validate", "trustAnchors": list(self.rig.anchors), "keyCacheEntries": 1000}

    def get(self, kind: str) -> DnsGate:
        if kind in self.failed:
            pytest.fail(self.failed[kind], pytrace=False)
        if kind not in self.gates:
            port, dnssec = self.extra.get(kind) or (self.rig.upstream_port(kind), self.dnssec_config())
            gate = DnsGate(self.tmp / f"gate-{kind}", allowlist=ALLOWLIST, upstream=f"127.0.0.1:{port}",
                           timeout_ms=GATE_TIMEOUT_MS[kind], dnssec=dnssec)
            try:
                gate.start()
            except AssertionError as e:
                gate.kill()
                self.failed[kind] = f"dnsgate with dnssec: validate did not start ({gate.config_path}): {e}"
                pytest.fail(self.failed[kind], pytrace=False)
            self.gates[kind] = gate
        return self.gates[kind]

    def close(self) -> None:
        problems = []
        for kind, gate in self.gates.items():
            try:
                if gate.returncode is None:
                    gate.stop(sig=signal.SIGTERM)
                gate.check_all_events()
            except AssertionError as e:
                problems.append(f"gate {kind}: {e}")
            finally:
                gate.kill()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def recorder(rig):
    """A plain forwarder to knot1 that records what dnsgate sends upstream."""
    rec = Liar(rig.knot1.port, {}, name="recorder")
    try:
        yield rec
    finally:
        rec.close()
    assert not rec.errors, rec.errors


@pytest.fixture(scope="module")
def gates(rig, recorder, tmp_path_factory):
    pool = GatePool(rig, tmp_path_factory.mktemp("dnssec-gates"))
    pool.extra["recorder"] = (recorder.port, pool.dnssec_config())
    pool.extra["off"] = (rig.knot2.port, {"mode": "off"})
    try:
        yield pool
    finally:
        pool.close()


# ---------------------------------------------------------------- helpers


def new_id() -> int:
    return random.randrange(1, 65535)


def query(gate: DnsGate, qname: str, qtype: str, *, edns: bool = True, do: bool = True, cd: bool = False,
          ad: bool = False, timeout: float = 4.0) -> Reply:
    q = make_query(qname, qtype, ident=new_id(), edns=edns or do, do=do, cd=cd)
    if ad:
        q.flags |= dns.flags.AD
    reply = gate.exchange(q.to_wire(), timeout=timeout)
    assert reply.response is not None, f"dnsgate did not answer {qname} {qtype}:\n{gate.stderr()[-3000:]}"
    return reply


def event_of(gate: DnsGate, reply: Reply, timeout: float = 3.0) -> dict:
    """The event of this exchange (client port and transaction id)."""
    ident = wire_id(reply.query)
    deadline = time.monotonic() + timeout
    while True:
        for ev in gate.all_events():
            d = ev.get("data", {})
            if d.get("client") == reply.client and d.get("transactionId") == ident:
                check_envelope(ev, gate.cell)
                return ev
        if time.monotonic() > deadline:
            raise AssertionError(f"no event for {reply.client} id {ident} in {gate.events_path}")
        time.sleep(0.02)


def check_dnssec_event(ev: dict, case_or_qname, *, dnssec: str, action: str, reason: str, rcode: str,
                       upstream: Optional[str] = None) -> None:
    d = ev["data"]
    qname = case_or_qname.qname if isinstance(case_or_qname, Case) else case_or_qname
    got = {k: d.get(k) for k in ("qname", "dnssec", "action", "reasonCode", "rcode")}
    want = {"qname": qname.rstrip("."), "dnssec": dnssec, "action": action, "reasonCode": reason, "rcode": rcode}
    assert got == want, f"event differs:\n got {got}\nwant {want}\n{json.dumps(ev)}"
    if upstream is not None:
        assert d.get("upstream") == upstream, ev


def ad(msg: dns.message.Message) -> bool:
    return bool(msg.flags & dns.flags.AD)


def dnssec_records(msg: dns.message.Message) -> list:
    return [rr for sec in (msg.answer, msg.authority, msg.additional) for rr in sec if rr.rdtype in DNSSEC_RRTYPES]


def plain_rrsets(rrsets) -> set:
    """RRsets without the DNSSEC types, as comparable text."""
    return {rr.to_text() for rr in rrsets if rr.rdtype not in DNSSEC_RRTYPES}


def direct(rig: Rig, case: Case) -> dns.message.Message:
    """What the case's upstream answers to DO=1 CD=1 (what dnsgate receives)."""
    m = ask(rig.upstream_port(case.upstream), case.qname, case.qtype, do=True, cd=True, rd=True)
    assert m is not None, f"{case.upstream} did not answer {case.qname} {case.qtype}"
    return m


def describe(msg: dns.message.Message) -> str:
    return f"{dns.rcode.to_text(msg.rcode())} flags={dns.flags.to_text(msg.flags)} ede={ede_codes(msg)}\n{msg}"


# ---------------------------------------------------------------- the oracle


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_oracle(rig, case_id):
    """Unbound 1.17, same anchors, same servers, asked with DO=1: its verdict
    is the case's (secure: AD=1; insecure: AD=0 and the answer; bogus and
    indeterminate: SERVFAIL)."""
    case = BY_ID[case_id]
    m = ask(rig.unbound.port, case.qname, case.qtype, do=True, timeout=10.0)
    assert m is not None, f"unbound did not answer:\n{rig.unbound.log()[-3000:]}"
    want = case.oracle_verdict()
    if m.rcode() == dns.rcode.SERVFAIL:
        got = SERVFAIL
    else:
        got = SECURE if ad(m) else INSECURE
    assert got == want, f"{case.id}: unbound says {got}, the case says {want} ({case.why})\n{describe(m)}"
    codes = [c for c, _ in ede_codes(m)]
    if want == SERVFAIL:
        assert not m.answer
        if case.oracle_ede is not None:
            assert codes and set(codes) <= {case.oracle_ede, EDE_BOGUS}, describe(m)
    else:
        assert dns.rcode.to_text(m.rcode()) == case.rcode, describe(m)
        assert bool(m.answer) == case.answer, describe(m)
        if want == SECURE:
            sigs = [rr for rr in (m.answer if case.answer else m.authority) if rr.rdtype == dns.rdatatype.RRSIG]
            assert sigs, f"DO=1: the RRSIGs belong in the answer\n{describe(m)}"


def test_oracle_ad_needs_do_or_ad(rig):
    """Unbound's flag rules, which dnsgate must share: AD only when the query
    set DO or AD (RFC 6840 §5.7); CD=1 gets the bogus data, AD=0."""
    port = rig.unbound.port
    m = ask(port, "www.dnssec.test.", "A", do=False, edns=False)
    assert m.rcode() == dns.rcode.NOERROR and not ad(m) and not dnssec_records(m), describe(m)
    m = ask(port, "www.dnssec.test.", "A", do=False, edns=False, ad=True)
    assert m.rcode() == dns.rcode.NOERROR and ad(m) and not dnssec_records(m), describe(m)
    m = ask(port, "www.expired.test.", "A", do=True, cd=True)
    assert m.rcode() == dns.rcode.NOERROR and m.answer and not ad(m), describe(m)


def test_oracle_liar_did_lie(rig):
    """The liar really rewrote what it says it did (so a SERVFAIL is the
    validator's, not an upstream failure)."""
    m = ask(rig.liar.port, "nosig.liar.test.", "A", do=True, cd=True)
    assert m.answer and not dnssec_records(m) and ad(m), describe(m)
    m = ask(rig.liar.port, "gone.liar.test.", "A", do=True, cd=True)
    assert m.rcode() == dns.rcode.NXDOMAIN and m.authority, describe(m)
    assert not [rr for rr in m.authority if rr.rdtype in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3)], describe(m)
    m = ask(rig.liar.port, "forged.liar.test.", "A", do=True, cd=True)
    assert FORGED_ADDRESS in m.answer[0].to_text() and ad(m), describe(m)
    m = ask(rig.liar.port, "www.liar.test.", "A", do=True, cd=True)
    assert ad(m) and dnssec_records(m), "the liar forges AD on everything it relays"
    assert ask(rig.mute.port, "silent.test.", "DNSKEY", timeout=0.5) is None, "the mute liar must drop DNSKEY"
    assert ask(rig.mute.port, "www.silent.test.", "A", timeout=2.0) is not None


# ---------------------------------------------------------------- dnsgate, DO=1


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_dnsgate(rig, gates, case_id):
    """The same query (EDNS, DO=1, RD=1) through dnsgate, upstream = the
    case's server: the same verdict as the oracle's, dnsgate's EDE codes,
    and the event's data.dnssec, action and reasonCode."""
    case = BY_ID[case_id]
    gate = gates.get(case.upstream)
    reply = query(gate, case.qname, case.qtype, do=True)
    m = reply.msg
    codes = [c for c, _ in ede_codes(m)]
    upstream = f"127.0.0.1:{rig.upstream_port(case.upstream)}"
    ev = event_of(gate, reply)
    assert m.edns == 0 and m.ednsflags & dns.flags.DO, f"the OPT as asked (DO=1)\n{describe(m)}"
    assert not m.flags & dns.flags.CD, f"CD=0 as the workload asked (RFC 4035 §3.1.6)\n{describe(m)}"
    if case.verdict in (SECURE, INSECURE):
        assert dns.rcode.to_text(m.rcode()) == case.rcode, describe(m)
        assert ad(m) == (case.verdict == SECURE), f"{case.verdict}: AD must be {case.verdict == SECURE}\n{describe(m)}"
        assert sorted(codes) == sorted(case.ede), f"EDE {codes}, expected {list(case.ede)}\n{describe(m)}"
        # DO=1: the upstream's records as they came (RRSIGs included)
        up = direct(rig, case)
        assert plain_rrsets(m.answer) == plain_rrsets(up.answer), describe(m)
        assert {rr.to_text() for rr in m.answer} == {rr.to_text() for rr in up.answer}, describe(m)
        assert {rr.to_text() for rr in m.authority} == {rr.to_text() for rr in up.authority}, describe(m)
        assert bool(m.answer) == case.answer, describe(m)
        if case.verdict == SECURE:
            sigs = [rr for rr in (m.answer if case.answer else m.authority) if rr.rdtype == dns.rdatatype.RRSIG]
            assert sigs, f"DO=1: RRSIGs must be relayed\n{describe(m)}"
        check_dnssec_event(ev, case, dnssec=case.verdict, action="forward", reason="allowed", rcode=case.rcode,
                           upstream=upstream)
    else:
        assert m.rcode() == dns.rcode.SERVFAIL, f"{case.verdict}: SERVFAIL expected\n{describe(m)}"
        assert not ad(m) and not m.answer and not m.authority, describe(m)
        assert set(case.ede) <= set(codes), f"EDE {codes} must include {list(case.ede)}\n{describe(m)}"
        extra = set(codes) - set(case.ede)
        assert extra <= case.ede_may, f"EDE {codes}: {sorted(extra)} not expected (allowed {sorted(case.ede_may)})"
        assert len(codes) == len(set(codes)), f"an EDE code twice: {codes}"
        reason = "dnssec_bogus" if case.verdict == BOGUS else "dnssec_indeterminate"
        check_dnssec_event(ev, case, dnssec=case.verdict, action="servfail", reason=reason, rcode="SERVFAIL")


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_dnsgate_no_do(rig, gates, case_id):
    """Without EDNS: the same verdict, no RRSIG/NSEC/NSEC3 in any section,
    no OPT in the reply, AD=0 (neither DO nor AD asked)."""
    case = BY_ID[case_id]
    gate = gates.get(case.upstream)
    reply = query(gate, case.qname, case.qtype, edns=False, do=False)
    m = reply.msg
    ev = event_of(gate, reply)
    assert m.edns == -1, f"no OPT when the workload sent none\n{describe(m)}"
    assert not ad(m), f"AD=0 without DO or AD\n{describe(m)}"
    assert not m.flags & dns.flags.CD, f"CD=0 as the workload asked (RFC 4035 §3.1.6)\n{describe(m)}"
    # dnsgate asked upstream with its own OPT; what the workload gets must fit
    # the 512 octets of a query without EDNS (the DNSSEC records removed first)
    assert len(reply.response) <= 512 and not m.flags & dns.flags.TC, (
        f"{len(reply.response)} octets, TC={bool(m.flags & dns.flags.TC)} to a query without EDNS\n{describe(m)}")
    if case.verdict in (SECURE, INSECURE):
        assert dns.rcode.to_text(m.rcode()) == case.rcode, describe(m)
        assert not dnssec_records(m), f"DNSSEC records the workload did not ask for\n{describe(m)}"
        up = direct(rig, case)
        assert plain_rrsets(m.answer) == plain_rrsets(up.answer), describe(m)
        assert plain_rrsets(m.authority) == plain_rrsets(up.authority), describe(m)
        assert bool(m.answer) == case.answer
        check_dnssec_event(ev, case, dnssec=case.verdict, action="forward", reason="allowed", rcode=case.rcode)
        assert ev["data"]["answerCount"] == len([rd for rr in m.answer for rd in rr]), ev
    else:
        assert m.rcode() == dns.rcode.SERVFAIL and not m.answer, describe(m)
        reason = "dnssec_bogus" if case.verdict == BOGUS else "dnssec_indeterminate"
        check_dnssec_event(ev, case, dnssec=case.verdict, action="servfail", reason=reason, rcode="SERVFAIL")


# ---------------------------------------------------------------- dnsgate, the flag rules


FLAG_CASES = ["secure_a", "nsec_nxdomain", "nsec3_nodata", "nsec_unsigned_child", "liar_secure"]


@pytest.mark.parametrize("case_id", FLAG_CASES)
def test_dnsgate_edns_without_do(rig, gates, case_id):
    """EDNS with DO=0: the OPT comes back (DO=0), the DNSSEC records do not, AD=0."""
    case = BY_ID[case_id]
    gate = gates.get(case.upstream)
    reply = query(gate, case.qname, case.qtype, edns=True, do=False)
    m = reply.msg
    assert m.edns == 0 and not m.ednsflags & dns.flags.DO, describe(m)
    assert dns.rcode.to_text(m.rcode()) == case.rcode and not ad(m) and not dnssec_records(m), describe(m)
    check_dnssec_event(event_of(gate, reply), case, dnssec=case.verdict, action="forward", reason="allowed",
                       rcode=case.rcode)


@pytest.mark.parametrize("case_id", FLAG_CASES)
def test_dnsgate_ad_without_do(rig, gates, case_id):
    """AD=1 in the query, no EDNS: AD=1 back for a secure answer (RFC 6840
    §5.7), AD=0 for an insecure one; no DNSSEC records either way."""
    case = BY_ID[case_id]
    gate = gates.get(case.upstream)
    reply = query(gate, case.qname, case.qtype, edns=False, do=False, ad=True)
    m = reply.msg
    assert m.edns == -1 and dns.rcode.to_text(m.rcode()) == case.rcode, describe(m)
    assert ad(m) == (case.verdict == SECURE), describe(m)
    assert not dnssec_records(m), describe(m)
    check_dnssec_event(event_of(gate, reply), case, dnssec=case.verdict, action="forward", reason="allowed",
                       rcode=case.rcode)


@pytest.mark.parametrize("do", [True, False], ids=["do", "no_edns"])
@pytest.mark.parametrize("case_id", ["expired", "tampered_rrsig", "liar_forged_ad", "secure_a"])
def test_dnsgate_cd(rig, gates, case_id, do):
    """CD=1 from the workload: the upstream's answer unvalidated (bogus data
    included), AD=0, data.dnssec unchecked; without DO still no DNSSEC records."""
    case = BY_ID[case_id]
    gate = gates.get(case.upstream)
    reply = query(gate, case.qname, case.qtype, edns=do, do=do, cd=True)
    m = reply.msg
    assert m.rcode() == dns.rcode.NOERROR and m.answer, f"CD=1: the data, not SERVFAIL\n{describe(m)}"
    assert not ad(m), f"CD=1: AD=0\n{describe(m)}"
    assert m.flags & dns.flags.CD, f"CD copied\n{describe(m)}"
    if do:
        assert [rr for rr in m.answer if rr.rdtype == dns.rdatatype.RRSIG], describe(m)
    else:
        assert m.edns == -1 and not dnssec_records(m), describe(m)
    assert plain_rrsets(m.answer) == plain_rrsets(direct(rig, case).answer), describe(m)
    check_dnssec_event(event_of(gate, reply), case, dnssec="unchecked", action="forward", reason="allowed",
                       rcode="NOERROR")


def test_dnsgate_upstream_ad_not_passed_on(rig, gates):
    """The liar sets AD=1 on everything; dnsgate's AD is its own verdict."""
    gate = gates.get("liar")
    # secure, but the workload asked neither DO nor AD
    m = query(gate, "www.liar.test.", "A", edns=True, do=False).msg
    assert m.rcode() == dns.rcode.NOERROR and not ad(m), describe(m)
    # bogus, with AD forged on it
    m = query(gate, "forged.liar.test.", "A", do=True, ad=True).msg
    assert m.rcode() == dns.rcode.SERVFAIL and not ad(m) and not m.answer, describe(m)
    # CD=1: unvalidated, and never the upstream's AD
    m = query(gate, "forged.liar.test.", "A", do=True, cd=True, ad=True).msg
    assert not ad(m), describe(m)


def test_dnsgate_mixed_case_qname(rig, gates):
    """Canonical form (RFC 4034 §6.2): a qname in mixed case, echoed by knotd
    into the answer's owner name, still validates."""
    gate = gates.get("knot1")
    for qname, qtype, rcode in (("wWw.DnsSec.TeSt.", "A", "NOERROR"), ("NoPe.NSEC3.test.", "A", "NXDOMAIN"),
                                ("FOO.wild.DNSSEC.test.", "A", "NOERROR")):
        reply = query(gate, qname, qtype, do=True)
        m = reply.msg
        assert dns.rcode.to_text(m.rcode()) == rcode and ad(m), describe(m)
        check_dnssec_event(event_of(gate, reply), qname, dnssec=SECURE, action="forward", reason="allowed",
                           rcode=rcode)


def test_dnsgate_asked_for_dnssec_types(rig, gates):
    """Without DO, a type the workload asked for stays (DNSKEY, NSEC), the
    RRSIGs go."""
    gate = gates.get("knot1")
    for qname, qtype in (("dnssec.test.", "DNSKEY"), ("www.dnssec.test.", "NSEC"), ("sub.dnssec.test.", "DS")):
        reply = query(gate, qname, qtype, edns=False, do=False)
        m = reply.msg
        assert m.rcode() == dns.rcode.NOERROR, describe(m)
        types = {rr.rdtype for rr in m.answer}
        assert types == {dns.rdatatype.from_text(qtype)}, f"{qname} {qtype}: only the type asked\n{describe(m)}"
        assert not [rr for rr in m.authority if rr.rdtype in DNSSEC_RRTYPES], describe(m)
        check_dnssec_event(event_of(gate, reply), qname, dnssec=SECURE, action="forward", reason="allowed",
                           rcode="NOERROR")


def test_dnsgate_refused_and_malformed_unchecked(rig, gates):
    """Queries answered locally or dropped are not validated: data.dnssec unchecked."""
    gate = gates.get("knot1")
    reply = query(gate, "www.example.com.", "A", do=True)
    assert reply.msg.rcode() == dns.rcode.REFUSED
    check_dnssec_event(event_of(gate, reply), "www.example.com.", dnssec="unchecked", action="refuse",
                       reason="not_allowlisted", rcode="REFUSED")
    sock_reply = gate.exchange(b"\x4d\x21\x01", timeout=0.3)  # 3 octets: too short, dropped
    assert sock_reply.response is None
    ev = event_of(gate, sock_reply)
    assert ev["data"]["action"] == "drop" and ev["data"].get("dnssec") == "unchecked", ev


def test_dnsgate_upstream_gets_do_cd(rig, gates, recorder):
    """Every query dnsgate sends upstream (the workload's and the chain's
    DS/DNSKEY fetches) carries an OPT with DO=1 and CD=1, whatever the
    workload's EDNS."""
    gate = gates.get("recorder")
    asked = {"www.dnssec.test.": dict(edns=False, do=False), "foo.wild.dnssec.test.": dict(edns=True, do=False),
             "www.sub.dnssec.test.": dict(edns=True, do=True)}
    for qname, kw in asked.items():
        m = query(gate, qname, "A", **kw).msg
        assert m.rcode() == dns.rcode.NOERROR and m.answer, describe(m)
    seen = {}
    for wire, _addr in recorder.up.received:
        q = dns.message.from_wire(wire)
        key = (q.question[0].name.to_text().lower(), dns.rdatatype.to_text(q.question[0].rdtype))
        seen.setdefault(key, []).append(q)
        assert q.edns == 0 and q.ednsflags & dns.flags.DO, f"upstream query without DO=1: {q}"
        assert q.flags & dns.flags.CD, f"upstream query without CD=1: {q}"
    for qname in asked:
        assert (qname, "A") in seen, f"{qname} never reached the upstream: {sorted(seen)}"
    for chain in (("dnssec.test.", "DNSKEY"), ("sub.dnssec.test.", "DNSKEY"), ("sub.dnssec.test.", "DS")):
        assert chain in seen, f"chain material {chain} not fetched through the upstream: {sorted(seen)}"


def test_dnsgate_key_cache_not_answer_cache(rig, gates, recorder):
    """The same question twice: both go upstream (no answer cache), the
    validated DNSKEY RRset is fetched once (the key cache)."""
    gate = gates.get("recorder")

    def count(qname: str, qtype: str) -> int:
        want = (dns.name.from_text(qname), dns.rdatatype.from_text(qtype))
        questions = [dns.message.from_wire(wire).question[0] for wire, _addr in list(recorder.up.received)]
        return sum(1 for q in questions if (q.name, q.rdtype) == want)

    before = count("www.nsec3.test.", "A")
    for _ in range(3):
        m = query(gate, "www.nsec3.test.", "A", do=True).msg
        assert m.rcode() == dns.rcode.NOERROR and ad(m), describe(m)
    assert count("www.nsec3.test.", "A") == before + 3, "every workload query goes upstream"
    assert count("nsec3.test.", "DNSKEY") == 1, "the validated DNSKEY RRset comes from the key cache"


def test_dnsgate_mode_off(rig, gates):
    """mode: off: no validation, the bogus zone's answer relayed, data.dnssec unchecked."""
    gate = gates.get("off")
    reply = query(gate, "www.expired.test.", "A", do=True)
    m = reply.msg
    assert m.rcode() == dns.rcode.NOERROR and m.answer and not ad(m), describe(m)
    check_dnssec_event(event_of(gate, reply), "www.expired.test.", dnssec="unchecked", action="forward",
                       reason="allowed", rcode="NOERROR")


def test_dnsgate_check_config(rig, tmp_path):
    """`dnsgate check` accepts the rig's dnssec block and rejects a broken anchor (exit 2)."""
    gate = DnsGate(tmp_path / "ok", allowlist=ALLOWLIST, upstream=f"127.0.0.1:{rig.knot1.port}",
                   dnssec={"mode": "validate", "trustAnchors": list(rig.anchors), "keyCacheEntries": 10})
    r = run_cli(["check", "--config", str(gate.config_path)])
    assert r.returncode == 0, f"{r.stdout}{r.stderr}\n{gate.config_path.read_text()}"
    # no trustAnchors: the root's, from dns-root-data
    gate = DnsGate(tmp_path / "root", allowlist=ALLOWLIST, upstream=f"127.0.0.1:{rig.knot1.port}",
                   dnssec={"mode": "validate"})
    r = run_cli(["check", "--config", str(gate.config_path)])
    assert r.returncode == 0, f"{r.stdout}{r.stderr}\n{gate.config_path.read_text()}"
    for bad in ({"mode": "validate", "trustAnchors": ["dnssec.test. DS 1 13 2 zz"]},
                {"mode": "validate", "trustAnchors": ["dnssec.test. A 192.0.2.1"]},
                {"mode": "maybe", "trustAnchors": list(rig.anchors)},
                {"mode": "validate", "trustAnchors": list(rig.anchors), "keyCacheEntries": 0}):
        gate = DnsGate(tmp_path / f"bad{len(str(bad))}", allowlist=ALLOWLIST,
                       upstream=f"127.0.0.1:{rig.knot1.port}", dnssec=bad)
        r = run_cli(["check", "--config", str(gate.config_path)])
        assert r.returncode == 2, f"{bad} accepted?\n{r.stdout}{r.stderr}"


# ---------------------------------------------------------------- real clients


def run_client(cmd: list[str]) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL)
    return r.stdout + r.stderr


def kdig(port: int, qname: str, qtype: str) -> str:
    return run_client(["/usr/bin/kdig", "@127.0.0.1", "-p", str(port), "+dnssec", "+retry=0", "+timeout=5",
                       qname, qtype])


def dig(port: int, qname: str, qtype: str) -> str:
    return run_client(["/usr/bin/dig", "@127.0.0.1", "-p", str(port), "+dnssec", "+tries=1", "+time=5",
                       qname, qtype])


def client_view(out: str) -> dict:
    """status, flags and EDE codes from kdig's or dig's output."""
    status = re.search(r"status: (\w+)", out)
    flags = re.search(r"[Ff]lags: ([a-z ]+?)[;]", out)
    return {"status": status.group(1) if status else None,
            "flags": set(flags.group(1).split()) if flags else set(),
            "ede": {int(x) for x in re.findall(r"EDE: (\d+)", out)},
            "rrsig": bool(re.search(r"\sRRSIG\s", out))}


CLIENT_CASES = ["secure_a", "nsec3_nxdomain", "nsec_unsigned_child", "expired", "unsupported_algorithm"]


@pytest.mark.parametrize("client", ["kdig", "dig"])
@pytest.mark.parametrize("case_id", CLIENT_CASES)
def test_client_oracle(rig, client, case_id):
    case = BY_ID[case_id]
    out = (kdig if client == "kdig" else dig)(rig.unbound.port, case.qname, case.qtype)
    _check_client(case, client_view(out), out, oracle=True)


@pytest.mark.parametrize("client", ["kdig", "dig"])
@pytest.mark.parametrize("case_id", CLIENT_CASES)
def test_client_dnsgate(rig, gates, client, case_id):
    case = BY_ID[case_id]
    gate = gates.get(case.upstream)
    gate.note_datagrams(1)
    out = (kdig if client == "kdig" else dig)(gate.port, case.qname, case.qtype)
    view = client_view(out)
    _check_client(case, view, out, oracle=False)
    if case.verdict == BOGUS:
        assert set(case.ede) <= view["ede"], out
    elif case.verdict == INSECURE:
        assert view["ede"] == set(case.ede), out


def _check_client(case: Case, view: dict, out: str, oracle: bool) -> None:
    verdict = case.oracle_verdict() if oracle else case.verdict
    if verdict in (SECURE, INSECURE):
        assert view["status"] == case.rcode, out
        assert ("ad" in view["flags"]) == (verdict == SECURE), out
        if verdict == SECURE:
            assert view["rrsig"], out
    else:
        assert view["status"] == "SERVFAIL" and "ad" not in view["flags"], out
