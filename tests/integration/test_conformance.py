"""Protocol conformance (RFC 1035, RFC 6891, RFC 7873, RFC 8906): the same
query is sent to knotd directly and through dnsgate forwarding to that
knotd, and both must reach the same verdict. Where dnsgate relays (the name
is allowed) the answers must be equal byte for byte; where dnsgate answers
itself (a denied name, an opcode other than QUERY) the verdict, the header
and the OPT must agree with what knotd answers in the same situation (a
name it is not authoritative for, an opcode it does not implement), and
every difference is named in the test's docstring. docs/conformance.md
lists each behaviour and the test that shows it.

The queries are those of RFC 8906 section 8 (ISC's DNS compliance tester):
plain and EDNS queries, EDNS version 1, unknown EDNS options and flags, DO
and CD, the header flags, unknown opcodes, unknown types, TCP, EDNS over
TCP, truncation, and DNS cookies (RFC 7873).

Every test runs once per upstream protocol in UPSTREAMS (do53-udp,
do53-tcp, dot, doh, doq; the `route` fixture), from workloads on UDP and
TCP (CLIENTS). knotd 3.2 serves neither DoT nor DoH, and DoQ only in XDP
mode, so for dot, doh and doq a transparent front stands between dnsgate
and knotd, started once per module and protocol and stopped (checked) when
the protocol's tests are done: tls_peers.ScriptedDotServer and
ScriptedDohServer (NORMAL) and the quic-go DoQ test server
(tests/doq_server, mode normal) each pass the DNS message they receive to
knotd over UDP, ask again over TCP when the answer is truncated, and hand
back knotd's answer as it is (DoH and DoQ messages carry id 0, which
dnsgate puts back). So knotd is asked directly over the same path
(UDP_THEN_TCP) to compare a relayed answer with, and a comparison through
a front is still byte for byte. What the fronts receive is checked too:
the workload's query but for the id and, over the encrypted transports
only, the RFC 8467 Padding option dnsgate adds to a query with an OPT
(docs/upstreams.md). knotd 3.2 ignores a Padding option in a query (no
echo, no padding of its own), so the padding changes no answer:
assert_sent_as_asked and test_knotd_ignores_padding_in_a_query.

The knotd here is started like the suite's, with mod-cookies added
(Knotd(cookies=True)): knotd answers cookies only with that module, which
the session's knotd leaves out so that the byte-for-byte tests elsewhere
never meet a server cookie, whose value changes every second.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Optional

import dns.rcode
import pytest

from dnsgate_testlib import (
    ABSENT, HERE, Knotd, Reply, check_event, encode_name, endpoint, free_port, header, raw_query,
    render_config, udp_exchange, yaml_str,
)
from tcp_lib import TcpClient, TcpGate
from test_doq import DoqServer
from tls_peers import SERVER_NAME, ScriptedDohServer, ScriptedDotServer, TlsCerts, tls_certs  # noqa: F401 (fixture)

ALLOW = ["example.com", "*.example.com", "*.example.org"]

# How long a UDP exchange waits before calling it silence (loopback; over TCP
# a server that will not answer closes the connection sooner).
SILENCE = 0.3
# How long a test waits for an answer it expects, and dnsgate for knotd
# (upstreamTimeoutMs; the Python DoT and DoH fronts wait FRONT_WAIT). An
# answer comes in milliseconds, and no verdict depends on these: they only
# keep a loaded machine from turning a late answer into a failure (knotd
# has been seen to take 2 s to answer a UDP query while a benchmark holds
# both CPUs). Each is longer than the one it waits on, so that a timeout
# shows where it happened (a SERVFAIL from dnsgate, not silence).
ANSWER_WAIT = 10.0
UPSTREAM_TIMEOUT_MS = 8000
FRONT_WAIT = 6.0


# How knotd is asked directly to compare a relayed answer with: the path
# dnsgate's query takes to knotd. UDP_THEN_TCP is what the DoT, DoH and DoQ
# fronts do: UDP, and TCP again when that answer has TC set.
UDP, TCP, UDP_THEN_TCP = "udp", "tcp", "udp-then-tcp"

# serve(knot, workdir, certs): a context manager that starts whatever stands
# between dnsgate and knotd, yields the cell's `dnsAuthority.resolvers`
# (DESIGN.md §8) and a function giving every query the front received so
# far (None when dnsgate talks to knotd itself), and stops it at exit.
Serve = Callable[[Knotd, Path, Optional[TlsCerts]],
                 ContextManager[tuple[list[dict], Optional[Callable[[], list[bytes]]]]]]


@dataclass(frozen=True)
class Upstream:
    """One upstream protocol: how to serve knotd over it, and the transport
    (UDP, TCP, UDP_THEN_TCP) knotd ends up being asked over for a workload
    on `client` ("udp" or "tcp"), which is how the test asks knotd directly
    when it compares a relayed answer: an answer depends on the transport
    it came over (TC, BADCOOKIE only over UDP). `tls`: the front needs the
    test PKI (tls_peers.make_certs)."""
    serve: Serve
    reference: Callable[[str], str]
    tls: bool = False


def knotd_itself(protocol: str) -> Serve:
    """do53: dnsgate asks knotd with no one in between."""
    @contextlib.contextmanager
    def serve(knot: Knotd, workdir: Path, certs: Optional[TlsCerts]):
        yield [{"protocol": protocol, "address": knot.address}], None
    return serve


@contextlib.contextmanager
def dot_front(knot: Knotd, workdir: Path, certs: TlsCerts):
    """ScriptedDotServer, NORMAL: each frame's DNS message, id included, to
    knotd over UDP (TCP when truncated), and knotd's answer framed back."""
    server = ScriptedDotServer(certs.server, upstream=knot.address)
    server.upstream_timeout = FRONT_WAIT
    try:
        yield ([{"protocol": "dot", "address": server.address, "tlsServerName": SERVER_NAME,
                 "caFile": str(certs.ca)}], server.queries)
    finally:
        server.stop()
    assert not server.errors, f"DoT front failed: {server.errors!r}"


@contextlib.contextmanager
def doh_front(knot: Knotd, workdir: Path, certs: TlsCerts):
    """ScriptedDohServer, NORMAL: each POST body (id 0) to knotd over UDP
    (TCP when truncated), and knotd's answer as the 200 response's body."""
    server = ScriptedDohServer(certs.server, upstream=knot.address)
    server.upstream_timeout = FRONT_WAIT
    try:
        yield ([{"protocol": "doh", "url": server.url, "address": server.address, "caFile": str(certs.ca)}],
               server.queries)
    finally:
        server.stop()
    assert not server.errors, f"DoH front failed: {server.errors!r}"


@contextlib.contextmanager
def doq_front(knot: Knotd, workdir: Path, certs: TlsCerts):
    """The quic-go DoQ test server, mode normal: each stream's DNS message to
    knotd over UDP with a random id (TCP when truncated), and knotd's answer
    back with id 0. It records every query it received (the DoQ wire, id 0)."""
    server = DoqServer(workdir, certs.server, "normal", knot.address)
    try:
        yield ([{"protocol": "doq", "address": server.address, "tlsServerName": SERVER_NAME,
                 "caFile": str(certs.ca)}], lambda: [bytes.fromhex(r["hex"]) for r in server.records()])
    finally:
        server.stop()


UPSTREAMS: dict[str, Upstream] = {
    # UDP workloads over UDP, TCP workloads over TCP (src/upstream/do53.hpp)
    "do53-udp": Upstream(knotd_itself("do53-udp"), lambda client: client),
    "do53-tcp": Upstream(knotd_itself("do53-tcp"), lambda client: TCP),
    # Whatever the workload's transport, the front asks knotd over UDP, then
    # TCP when truncated: a stream upstream for dnsgate (whole answers, which
    # it truncates itself for a UDP workload), but knotd's UDP verdicts
    # (BADCOOKIE for a client cookie alone) where they are not truncated.
    "dot": Upstream(dot_front, lambda client: UDP_THEN_TCP, tls=True),
    "doh": Upstream(doh_front, lambda client: UDP_THEN_TCP, tls=True),
    "doq": Upstream(doq_front, lambda client: UDP_THEN_TCP, tls=True),
}


@dataclass(frozen=True)
class Route:
    """An upstream protocol being served in front of the knotd: the
    resolvers for a cell, the reference transport, and what the front has
    received (`received` None: none, dnsgate talks to knotd itself)."""
    protocol: str
    resolvers: list[dict]
    reference: Callable[[str], str]
    received: Optional[Callable[[], list[bytes]]] = None


def knotd_route(knot: Knotd) -> Route:
    """do53-udp straight to `knot`, for the tests that need one protocol only."""
    return Route("do53-udp", [{"protocol": "do53-udp", "address": knot.address}], UPSTREAMS["do53-udp"].reference)


CLIENTS = ["udp", "tcp"]


OPT_COOKIE = 10
OPT_NSID = 3
OPT_ECS = 8
OPT_EXPIRE = 9
OPT_EDE = 15
OPT_PADDING = 12
PADDING_BLOCK = 128  # RFC 8467 4.1: a padded query is a multiple of 128 octets


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def knot(tmp_path_factory):
    """knotd with mod-cookies, serving example.com. and example.org."""
    server = Knotd(tmp_path_factory.mktemp("knot-conformance"), cookies=True)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", params=list(UPSTREAMS))
def route(request, tmp_path_factory, knot):
    """Each upstream protocol in turn, served in front of the knotd: the
    front (if any) starts once per module and protocol, and stops (checked)
    when pytest moves on to the next protocol, after every dnsgate that
    used it (they depend on this fixture, so they are torn down first)."""
    upstream = UPSTREAMS[request.param]
    certs = request.getfixturevalue("tls_certs") if upstream.tls else None
    with upstream.serve(knot, tmp_path_factory.mktemp(f"front-{request.param}"), certs) as (resolvers, received):
        yield Route(request.param, resolvers, upstream.reference, received)


class ConformanceGate(TcpGate):
    """dnsgate listening on UDP and TCP at one port, forwarding to `resolvers`."""

    def __init__(self, workdir, *, resolvers: list[dict], allowlist: list[str], deny_rcode: Optional[str] = None,
                 port: Optional[int] = None):
        super().__init__(workdir, allowlist=allowlist, upstream=resolvers[0].get("address", "127.0.0.1:1"),
                         deny_rcode=deny_rcode, timeout_ms=UPSTREAM_TIMEOUT_MS)
        if port is not None:
            self.port = port
        text = render_config(cell=self.cell, listen_port=self.port, allowlist=allowlist, resolvers=resolvers,
                             deny_rcode=deny_rcode, events_path=self.events_path, timeout_ms=UPSTREAM_TIMEOUT_MS)
        udp_line = f"  udp: {yaml_str(endpoint(self.host, self.port))}\n"
        assert udp_line in text
        text = text.replace(udp_line, udp_line + f"  tcp: {yaml_str(endpoint(self.host, self.port))}\n")
        self.config_path.write_text(text)
        self.resolvers = resolvers
        self.consumed = 0  # event lines the tests have read

    def exchange(self, wire: bytes, timeout: float = ANSWER_WAIT, **kwargs) -> Reply:
        return super().exchange(wire, timeout=timeout, **kwargs)

    def tcp_exchange(self, wire: bytes, timeout: float = ANSWER_WAIT) -> Reply:
        return super().tcp_exchange(wire, timeout=timeout)

    def mark(self, timeout: float = ANSWER_WAIT) -> None:
        """At the start of a test: wait until every datagram and frame sent
        so far has its event, and count them as read, so that what one test
        left unread never shifts the next test's events."""
        deadline = time.monotonic() + timeout
        while len(self.event_lines()) < self.datagrams and time.monotonic() < deadline:
            time.sleep(0.01)
        self.consumed = len(self.event_lines())

    def events(self, n: int, timeout: float = ANSWER_WAIT) -> list[dict]:
        """The next `n` events since mark() or the last call, and no more."""
        want = self.consumed + n
        deadline = time.monotonic() + timeout
        lines = self.event_lines()
        while len(lines) < want and time.monotonic() < deadline:
            time.sleep(0.01)
            lines = self.event_lines()
        assert len(lines) == want, f"expected {n} events, found {len(lines) - self.consumed}: {lines[self.consumed:]}"
        evs = [json.loads(line) for line in lines[self.consumed:want]]
        self.consumed = want
        return evs


def started_gate(workdir, route: Route, **kwargs) -> ConformanceGate:
    g = ConformanceGate(workdir, resolvers=route.resolvers, allowlist=ALLOW, **kwargs)
    g.route = route
    g.start()
    g.mark()
    return g


def finish(g: ConformanceGate) -> None:
    """Exit 0 on SIGTERM with the stats line, one valid event per datagram
    or frame sent, then the process is gone whatever happened."""
    try:
        if g.returncode is None:
            g.stop(sig=signal.SIGTERM)
        g.check_all_events()
    finally:
        g.kill()


@pytest.fixture(scope="module")
def module_gate(tmp_path_factory, route):
    """One dnsgate per upstream protocol for the whole module: a process per
    test would spend most of the suite starting processes and validating
    event files. Checked at teardown like the suite's `dnsgate` fixture."""
    g = started_gate(tmp_path_factory.mktemp(f"dnsgate-{route.protocol}"), route)
    try:
        yield g
    finally:
        finish(g)


@pytest.fixture
def gate(module_gate):
    module_gate.mark()
    return module_gate


# ---------------------------------------------------------------- exchanges


def tcp_exchange(port: int, wire: bytes, timeout: float = ANSWER_WAIT) -> Optional[bytes]:
    with TcpClient(port, timeout=timeout) as c:
        return c.exchange(wire, timeout).response


def direct(knot: Knotd, wire: bytes, transport: str, timeout: float = ANSWER_WAIT) -> Optional[bytes]:
    """knotd's answer to `wire` over `transport` (None: silence): UDP, TCP,
    or UDP_THEN_TCP (UDP, and TCP again when the answer has TC set)."""
    if transport in (UDP, UDP_THEN_TCP):
        answer = udp_exchange(knot.port, wire, timeout=timeout).response
        if transport == UDP or answer is None or not header(answer)["tc"]:
            return answer
    return tcp_exchange(knot.port, wire, timeout)


def via(gate: ConformanceGate, wire: bytes, client: str, timeout: float = ANSWER_WAIT) -> Reply:
    """dnsgate's answer to `wire` over the client's transport; one event."""
    if client == "udp":
        return gate.exchange(wire, timeout=timeout)
    return gate.tcp_exchange(wire, timeout=timeout)


def both(gate, knot, wire: bytes, client: str, timeout: float = ANSWER_WAIT) -> tuple[Optional[bytes], Reply]:
    """The same bytes to knotd directly and through dnsgate, both over the
    client's transport: for answers dnsgate writes itself."""
    return direct(knot, wire, client, timeout), via(gate, wire, client, timeout)


def relayed(gate, knot, wire: bytes, client: str) -> tuple[Optional[bytes], Reply]:
    """The same bytes through dnsgate, and to knotd directly over the
    transport dnsgate forwards them on: for answers dnsgate relays."""
    return direct(knot, wire, gate.route.reference(client)), via(gate, wire, client)


def query(name: str = "example.com.", qtype: int = 6, *, ident: int = 0x4E53, flags: int = 0,
          edns: Optional[dict] = None, qclass: int = 1) -> bytes:
    """One question; edns = {payload, version, do, z, options} (all optional)."""
    labels = [label.encode() for label in name.rstrip(".").split(".")] if name != "." else []
    wire = raw_query(labels, qtype=qtype, qclass=qclass, ident=ident, flags=flags)
    if edns is None:
        return wire
    return wire[:10] + struct.pack("!H", 1) + wire[12:] + opt(**edns)


def opt(payload: int = 1232, version: int = 0, do: bool = False, z: int = 0, options: bytes = b"",
        ext_rcode: int = 0) -> bytes:
    return b"\x00" + struct.pack("!HHBBHH", 41, payload, ext_rcode, version, (0x8000 if do else 0) | z,
                                 len(options)) + options


def option(code: int, data: bytes = b"") -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def hdr(ident: int, flags: int, qd: int = 0, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


@dataclass
class Opt:
    payload: int
    ext_rcode: int
    version: int
    flags: int  # DO and the Z bits
    options: list[tuple[int, bytes]]


@dataclass
class Answer:
    """What a verdict is made of, read from the wire independently of dnspython."""
    flags: int
    opcode: int
    rcode: int  # the whole rcode: header and OPT's EXTENDED-RCODE
    counts: tuple[int, int, int, int]
    question: bytes
    opt: Optional[Opt]

    def flag(self, mask: int) -> bool:
        return bool(self.flags & mask)


QR, AA, TC, RD, RA, Z, AD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0040, 0x0020, 0x0010
DO = 0x8000


def skip_name(wire: bytes, at: int) -> int:
    while True:
        length = wire[at]
        if length & 0xC0 == 0xC0:
            return at + 2
        if length == 0:
            return at + 1
        at += 1 + length


def read(wire: bytes) -> Answer:
    h = header(wire)
    at = 12
    for _ in range(h["qdcount"]):
        at = skip_name(wire, at) + 4
    question = wire[12:at]
    found = None
    records = h["ancount"] + h["nscount"] + h["arcount"]
    for _ in range(records):
        at = skip_name(wire, at)
        rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", wire[at:at + 10])
        rdata = wire[at + 10:at + 10 + rdlen]
        at += 10 + rdlen
        if rtype == 41:
            options, i = [], 0
            while i < len(rdata):
                code, length = struct.unpack("!HH", rdata[i:i + 4])
                options.append((code, rdata[i + 4:i + 4 + length]))
                i += 4 + length
            found = Opt(rclass, ttl >> 24, (ttl >> 16) & 0xFF, ttl & 0xFFFF, options)
    assert at == len(wire), f"trailing octets in an answer: {wire.hex()}"
    rcode = h["rcode"] | ((found.ext_rcode << 4) if found else 0)
    return Answer(h["flags"], h["opcode"], rcode, (h["qdcount"], h["ancount"], h["nscount"], h["arcount"]),
                  question, found)


def server_cookie_masked(wire: bytes) -> bytes:
    """`wire` with the server half of any COOKIE option zeroed: knotd's
    server cookie (RFC 9018) holds the time in seconds, so two answers a
    moment apart may differ there and nowhere else."""
    a = read(wire)
    if a.opt is None:
        return wire
    for code, data in a.opt.options:
        if code == OPT_COOKIE and len(data) > 8:
            needle = option(OPT_COOKIE, data)
            at = wire.rindex(needle)
            return wire[:at + 12] + bytes(len(data) - 8) + wire[at + 4 + len(data):]
    return wire


def assert_relayed(knot_answer: Optional[bytes], reply: Reply) -> None:
    """dnsgate relays: its answer is knotd's, byte for byte (the id is the query's in both)."""
    assert knot_answer is not None, "knotd did not answer"
    assert reply.response is not None, "dnsgate did not answer"
    assert server_cookie_masked(reply.response) == server_cookie_masked(knot_answer), (
        f"dnsgate changed knotd's answer:\n knotd   {knot_answer.hex()}\n dnsgate {reply.response.hex()}")


def padded(wire: bytes) -> bytes:
    """`wire` as dnsgate sends it over dot, doh and doq but for the id (RFC
    8467 4.1, docs/upstreams.md): when it ends with an OPT that has no
    Padding option, an RFC 7830 Padding option of zeros appended to that OPT
    (its RDLENGTH grown to match) so that the message is a multiple of 128
    octets; anything else as it is."""
    q = read(wire)
    if q.opt is None or OPT_PADDING in {code for code, _ in q.opt.options}:
        return wire
    rdlength_at = len(wire) - sum(4 + len(data) for _, data in q.opt.options) - 2
    assert struct.unpack("!H", wire[rdlength_at:rdlength_at + 2])[0] == len(wire) - rdlength_at - 2, "OPT is last"
    pad = (-(len(wire) + 4)) % PADDING_BLOCK
    rdlength = len(wire) - rdlength_at - 2 + 4 + pad
    return (wire[:rdlength_at] + struct.pack("!H", rdlength) + wire[rdlength_at + 2:]
            + option(OPT_PADDING, bytes(pad)))


def assert_sent_as_asked(sent: list[bytes], wire: bytes) -> None:
    """What a front received for the workload's query `wire` (one message):
    padded(wire) but for the id (DoT: dnsgate's random id; DoH, DoQ: 0).
    Nothing else: no option of the workload's dropped or reordered, no flag
    changed.

    The padding is where the query knotd gets differs on the encrypted
    transports, and on purpose (RFC 8467: a client pads what it sends over
    an encrypted transport). It would reach the answer if the resolver
    padded its answer in return, as RFC 7830 3 asks of a responder to a
    padded query (RFC 8467: to 468-octet blocks; Unbound does on DoT): the
    workload would then get a padded answer to a query it did not pad, which
    dnsgate relays as it is (docs/upstreams.md). knotd 3.2 pads no answer
    (test_knotd_ignores_padding_in_a_query), so through the fronts the
    relayed answers are still knotd's own byte for byte."""
    assert len(sent) == 1, f"the front received {len(sent)} messages for one query"
    (got,) = sent
    expected = padded(wire)
    assert got[2:] == expected[2:], f"the front got {got.hex()} for {wire.hex()}, not {expected.hex()}"
    assert expected == wire or len(got) % PADDING_BLOCK == 0


def event_upstream(resolver: dict) -> str:
    """How events name a resolver (docs/events.md)."""
    if resolver["protocol"] in ("do53-udp", "do53-tcp"):
        return resolver["address"]
    if resolver["protocol"] == "doh":
        return resolver["url"]
    return f"{resolver['protocol']}://{resolver['address']}"


def forward_event(ev: dict, reply: Reply, client: str, gate, **expected) -> None:
    check_event(ev, reply, transport=client, action="forward", reasonCode="allowed",
                upstream=event_upstream(gate.resolvers[0]), **expected)


# ---------------------------------------------------------------- relayed: RFC 8906 8.1 and 8.2

# (id, query, what RFC 8906 checks); all for names knotd serves and dnsgate allows.
RELAYED = [
    ("zone_soa_noedns", query(), "8.1.1 zone existence: +noedns +noad +norec soa"),
    ("zone_a_rd", query("www.example.com.", 1, flags=RD), "a stub's query: RD=1, no EDNS"),
    ("unknown_type_1000", query(qtype=1000), "8.1.2 unknown types: type1000"),
    ("unknown_type_65280_class_ch", query("www.example.com.", 65280, qclass=3), "RFC 3597 type, class CH"),
    ("header_cd", query(flags=CD), "8.1.3.1 +cd"),
    ("header_ad", query(flags=AD), "8.1.3.2 +ad"),
    ("header_z", query(flags=Z), "8.1.3.3 +zflag: Z must not come back"),
    ("header_tc", query(flags=TC), "TC in a query: ignored, not echoed"),
    ("header_all_flags", query(flags=AA | TC | RD | RA | Z | AD | CD | 0x000F), "every flag and a query RCODE"),
    ("edns0_minimal", query(edns={}), "8.2.1 +edns=0 +nocookie +noad +norec soa"),
    ("edns0_payload_512", query(edns={"payload": 512}), "EDNS with a 512-octet payload"),
    ("edns_unknown_option_100", query(edns={"options": option(100)}), "8.2.3 +ednsopt=100: not echoed"),
    ("edns_unknown_flags", query(edns={"z": 0x0040}), "8.2.4 +ednsflags=0x40: not echoed"),
    ("edns_all_z_flags_do", query(edns={"z": 0x7FFF, "do": True}), "every unassigned EDNS flag, DO"),
    ("edns_version_1", query(edns={"version": 1}), "8.2.2 +edns=1 +noednsneg: BADVERS, version 0"),
    ("edns_version_1_option", query(edns={"version": 1, "options": option(100)}), "8.2.5 version 1 + option"),
    ("edns_version_1_flags", query(edns={"version": 1, "z": 0x0040}), "8.2.6 version 1 + flag"),
    ("edns_version_1_flags_option", query(edns={"version": 1, "z": 0x0040, "options": option(100)}),
     "8.2.7 version 1 + flag + option"),
    ("edns_version_255_do", query(edns={"version": 255, "do": True}), "the highest version, DO copied"),
    ("do_bit", query(edns={"do": True}), "8.2.9 +dnssec: DO"),
    ("do_and_cd", query("www.example.com.", 1, flags=RD | CD, edns={"do": True}), "DO and CD together"),
    ("multiple_options", query(edns={"options": option(OPT_NSID) + option(OPT_ECS, b"\x00\x01\x00\x00")
                                     + option(OPT_EXPIRE)}), "8.2.10 +nsid +subnet=0.0.0.0/0 +expire"),
    ("edns_ext_rcode_in_query", query(edns={"ext_rcode": 1}), "an EXTENDED-RCODE in a query: ignored"),
    ("nxdomain", query("nothere.example.com.", 1, flags=RD, edns={}), "NXDOMAIN with SOA"),
    ("big_answer_edns_4096", query("big.example.com.", 16, edns={"payload": 4096}), "3.9 KB over UDP, EDNS"),
]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("wire", [w for _, w, _ in RELAYED], ids=[i for i, _, _ in RELAYED])
def test_relayed_queries_get_knotds_answer_byte_for_byte(gate, knot, client, wire):
    """RFC 8906 section 8's checks on names dnsgate allows: whatever knotd
    does with the header flags, EDNS flags, options and versions reaches
    the workload unchanged (DESIGN.md §1: the upstream sees the workload's
    bytes but for the id, and every byte of its answer comes back).
    knotd's own behaviour is checked too, so a knotd that stopped being a
    good reference would fail here rather than make dnsgate look right.
    Over dot, doh and doq the front's record shows the query knotd got:
    the workload's, padded (assert_sent_as_asked says why that changes no
    answer)."""
    received = gate.route.received
    before = len(received()) if received else 0
    knot_answer, reply = relayed(gate, knot, wire, client)
    assert_relayed(knot_answer, reply)
    if received:
        assert_sent_as_asked(received()[before:], wire)
    a, q = read(reply.response), header(wire)
    # RFC 1035 4.1.1, RFC 8906 3.1.3, 8.1.3.3: Z never set in an answer; RD copied.
    assert not a.flag(Z) and a.flag(RD) == bool(q["rd"])
    if q["arcount"]:
        # RFC 6891 6.1.1, 6.1.3, 7: an OPT comes back, version 0, no unknown
        # option and no unassigned flag; DO as asked (RFC 3225).
        assert a.opt is not None and a.opt.version == 0
        assert a.opt.flags & 0x7FFF == 0
        assert {code for code, _ in a.opt.options} <= {OPT_NSID, OPT_ECS, OPT_EXPIRE, OPT_COOKIE, OPT_EDE}
        asked = read(wire).opt
        assert bool(a.opt.flags & DO) == bool(asked.flags & DO)
        if asked.version > 0:
            assert a.rcode == dns.rcode.BADVERS and a.counts[1] == 0
    else:
        assert a.opt is None
    (ev,) = gate.events(1)
    forward_event(ev, reply, client, gate, answerCount=a.counts[1])
    if a.rcode < 16:  # extended rcodes: test_relayed_badvers_event_says_badvers
        assert ev["data"]["rcode"] == dns.rcode.to_text(a.rcode), ev


@pytest.mark.parametrize("transport", [UDP, TCP])
def test_knotd_ignores_padding_in_a_query(knot, transport):
    """The reference behind the dot, doh and doq comparisons: knotd 3.2
    answers a query padded as dnsgate pads it exactly as it answers the
    query unpadded, over UDP and TCP (the transports the fronts ask it
    over): it neither echoes the Padding option nor pads its answer (its
    answer's OPT gets NSID, ECS, EDE and EXPIRE only). A knotd that started
    to pad would fail here first, and the relayed comparisons over the
    encrypted upstreams would then have to compare with its answer to the
    padded query (assert_sent_as_asked)."""
    checked = 0
    for name, wire, _ in RELAYED:
        if padded(wire) == wire:
            continue
        plain, with_padding = direct(knot, wire, transport), direct(knot, padded(wire), transport)
        assert server_cookie_masked(with_padding) == server_cookie_masked(plain), (
            f"{name}: knotd answers the padded query differently:\n {plain.hex()}\n {with_padding.hex()}")
        checked += 1
    assert checked, "RELAYED has no query with an OPT"


def test_tcp_gets_the_whole_answer_that_udp_truncates(gate, knot):
    """8.1.5 and EDNS over TCP: the big TXT that does not fit 512 octets over
    UDP comes whole over TCP, EDNS or not, as knotd sends it directly."""
    for wire in (query("big.example.com.", 16), query("big.example.com.", 16, edns={"payload": 512})):
        over_udp = via(gate, wire, "udp")
        assert read(over_udp.response).flag(TC)
        knot_answer, reply = relayed(gate, knot, wire, "tcp")
        assert not read(knot_answer).flag(TC) and len(knot_answer) > 3500
        assert_relayed(knot_answer, reply)
    evs = gate.events(4)
    assert [e["data"]["transport"] for e in evs] == ["udp", "tcp", "udp", "tcp"]


@pytest.mark.parametrize("do", [False, True])
def test_answer_too_big_for_a_udp_client_comes_with_tc(gate, knot, do):
    """RFC 8906 8.2.8 (+bufsize=512 +ignore): the big TXT does not fit the
    512 octets the workload offers, so TC=1. Over a datagram upstream
    knotd's own TC answer is relayed byte for byte. Over a stream upstream
    (do53-tcp; dot, doh and doq, whose fronts ask knotd again over TCP)
    dnsgate has the whole answer and truncates it for the workload itself
    (DESIGN.md §8): knotd's header with TC=1, the question and knotd's OPT
    (RFC 6891 7), nothing else."""
    wire = query("big.example.com.", 16, edns={"payload": 512, "do": do})
    reply = via(gate, wire, "udp")
    knot_answer = direct(knot, wire, gate.route.reference("udp"))
    if gate.route.reference("udp") == UDP:
        assert_relayed(knot_answer, reply)
    else:
        k = read(knot_answer)
        assert not k.flag(TC) and len(knot_answer) > 3500
        # knotd's OPT is its answer's last record: root owner, 10 octets, options.
        opt_size = 11 + sum(4 + len(data) for _, data in k.opt.options) if k.opt is not None else 0
        opt = knot_answer[len(knot_answer) - opt_size:]
        assert reply.response == (knot_answer[:2] + struct.pack("!HHHHH", k.flags | TC, 1, 0, 0, 1 if opt else 0)
                                  + k.question + opt)
    assert read(reply.response).flag(TC) and len(reply.response) <= 512
    (ev,) = gate.events(1)
    forward_event(ev, reply, "udp", gate, rcode="NOERROR")


def test_tc_answer_from_a_stream_upstream_keeps_the_opt(gate, knot, request):
    """RFC 6891 7 (an OPT in the query, an OPT in the answer) and RFC 8906
    8.2.8 (the TC answer to +bufsize=512 has an OPT, version 0): knotd's own
    TC answer has it, and so does the one dnsgate makes from a stream
    upstream's whole answer: the answer's OPT is copied into it."""
    wire = query("big.example.com.", 16, edns={"payload": 512, "do": True})
    reply = via(gate, wire, "udp")
    gate.events(1)
    a = read(reply.response)
    assert a.flag(TC) and a.opt is not None and a.opt.version == 0 and a.opt.flags == DO


@pytest.mark.parametrize("client", CLIENTS)
def test_relayed_badvers_event_says_badvers(gate, knot, client):
    wire = query(edns={"version": 1})
    knot_answer, reply = relayed(gate, knot, wire, client)
    assert_relayed(knot_answer, reply)
    (ev,) = gate.events(1)
    assert ev["data"]["rcode"] == "BADVERS", ev


# ---------------------------------------------------------------- cookies (RFC 7873)


def cookie_of(wire: bytes) -> bytes:
    (cookie,) = [data for code, data in read(wire).opt.options if code == OPT_COOKIE]
    return cookie


@pytest.mark.parametrize("client", CLIENTS)
def test_cookies_reach_knotd_and_its_server_cookie_comes_back(gate, knot, client):
    """RFC 7873 through dnsgate: the client cookie reaches knotd (it echoes
    it), knotd's server cookie comes back unchanged, and that server cookie
    is accepted when the workload sends it back through dnsgate, so the
    exchange a cookie-aware stub makes works across the proxy. knotd
    answers a client cookie alone with BADCOOKIE over UDP (RFC 7873 5.2.3
    lets it; over TCP it answers), and a valid pair with the answer. The
    DoT, DoH and DoQ fronts ask knotd over UDP first, so over them the
    workload gets knotd's BADCOOKIE too: knotd's verdict on how it was
    asked, relayed unchanged. knotd computes its server cookie over the
    address it sees (127.0.0.1, whoever asks on loopback), so the cookie
    is valid whichever path brings it back. Server cookies hold the time
    in seconds, so the direct and relayed answers are compared with that
    half masked."""
    client_cookie = bytes.fromhex("0123456789abcdef")
    first = query("www.example.com.", 1, flags=RD, edns={"options": option(OPT_COOKIE, client_cookie)})
    knot_answer, reply = relayed(gate, knot, first, client)
    assert_relayed(knot_answer, reply)
    upstream_udp = gate.route.reference(client) in (UDP, UDP_THEN_TCP)  # knotd asked over UDP
    assert read(reply.response).rcode == (23 if upstream_udp else dns.rcode.NOERROR)  # 23: BADCOOKIE
    cookie = cookie_of(reply.response)
    assert cookie[:8] == client_cookie, "the client cookie did not reach knotd (or did not come back)"
    assert len(cookie) == 24 and cookie[8] == 1, "an RFC 9018 server cookie"

    again = query("www.example.com.", 1, flags=RD, ident=0x4E54, edns={"options": option(OPT_COOKIE, cookie)})
    knot_again, reply2 = relayed(gate, knot, again, client)
    assert_relayed(knot_again, reply2)
    b = read(reply2.response)
    assert b.rcode == dns.rcode.NOERROR and b.counts[1] == 1, "knotd rejected its own server cookie via dnsgate"
    assert cookie_of(reply2.response)[:8] == client_cookie
    evs = gate.events(2)
    assert [e["data"]["action"] for e in evs] == ["forward", "forward"]
    assert evs[1]["data"]["rcode"] == "NOERROR"


@pytest.mark.parametrize("client", CLIENTS)
def test_cookie_in_a_denied_query_is_not_answered(gate, knot, client):
    """dnsgate is not a cookie server: for a name it refuses itself it
    ignores the COOKIE option (RFC 7873 5.2: a server without cookies
    ignores it), so the answer's OPT has the EDE and no cookie. knotd with
    mod-cookies adds its server cookie to its own REFUSED (and EDE 20 Not
    Authoritative). The cookie sent is one knotd issued, as a stub that
    talked to it would send: with a client cookie alone knotd answers
    BADCOOKIE over UDP before it looks at the name, where dnsgate, not
    checking cookies, answers REFUSED."""
    client_cookie = bytes.fromhex("0123456789abcdef")
    probe = query("www.example.net.", 1, edns={"options": option(OPT_COOKIE, client_cookie)})
    pair = cookie_of(direct(knot, probe, client))
    wire = query("www.example.net.", 1, flags=RD, edns={"options": option(OPT_COOKIE, pair)})
    knot_answer, reply = both(gate, knot, wire, client)
    k, d = read(knot_answer), read(reply.response)
    assert k.rcode == d.rcode == dns.rcode.REFUSED
    assert OPT_COOKIE in {c for c, _ in k.opt.options}
    assert d.opt.options == [(OPT_EDE, struct.pack("!H", 15))]
    (ev,) = gate.events(1)
    check_event(ev, reply, transport=client, action="refuse", reasonCode="not_allowlisted", rcode="REFUSED",
                qname="www.example.net", upstream=ABSENT)


# ---------------------------------------------------------------- denied names: answered by dnsgate


def assert_same_local_verdict(knot_answer: bytes, reply: Reply, *, rcode: int, query_wire: bytes) -> Answer:
    """dnsgate's own answer and knotd's own answer (for a name it does not
    serve) agree on: the rcode (extended included), QR, the opcode, AA TC Z
    AD clear, RD copied, the question as asked, no answer or authority
    records, an OPT exactly when the query had one, at version 0, DO copied,
    no unassigned EDNS flag, no option of the query's echoed. They differ by
    design on: RA (dnsgate is the workload's resolver, knotd an authority),
    CD (dnsgate copies it, as a resolver does, RFC 6840 5.9; knotd clears
    it), the advertised payload (1232 and knotd's 4096), and the EDE
    (dnsgate's 15 Blocked, knotd's 20 Not Authoritative)."""
    assert knot_answer is not None and reply.response is not None
    k, d, q = read(knot_answer), read(reply.response), header(query_wire)
    assert k.rcode == d.rcode == rcode, (k.rcode, d.rcode)
    for a in (k, d):
        assert a.flag(QR) and a.opcode == q["opcode"]
        assert not (a.flag(AA) or a.flag(TC) or a.flag(Z) or a.flag(AD))
        assert a.flag(RD) == bool(q["rd"])
        assert a.question == query_wire[12:12 + len(a.question)] and a.counts[:3] == (1, 0, 0)
    assert d.flag(RA) and d.flag(CD) == bool(q["cd"])
    asked = read(query_wire).opt
    if asked is None:
        assert k.opt is None and d.opt is None and d.counts[3] == 0
    else:
        for a in (k, d):
            assert a.opt is not None and a.opt.version == 0
            assert a.opt.flags == (asked.flags & DO), "only DO, copied"
        assert d.opt.payload == 1232
        if rcode == dns.rcode.BADVERS:
            assert d.opt.options == [], "BADVERS carries no EDE"
        else:
            assert d.opt.options == [(OPT_EDE, struct.pack("!H", 15))]
    return d


DENIED = [
    ("noedns", dict(flags=RD)),
    ("norec", dict(flags=0)),
    ("edns0", dict(flags=RD, edns={})),
    ("do", dict(flags=RD, edns={"do": True})),
    ("all_flags", dict(flags=AA | TC | RD | RA | Z | AD | CD | 0x000F, edns={"z": 0x7FFF, "do": True})),
    ("unknown_option", dict(flags=RD, edns={"options": option(100, b"x")})),
    ("unknown_type", dict(flags=RD, qtype=65280)),
]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("kw", [kw for _, kw in DENIED], ids=[i for i, _ in DENIED])
def test_denied_name_gets_the_refusal_knotd_gives_a_name_it_does_not_serve(gate, knot, client, kw):
    """A name off the allowlist: dnsgate answers REFUSED itself and knotd,
    asked for a zone it does not serve, answers REFUSED too. The header
    flag rules (TC AD Z cleared, RD copied), the OPT rules (version 0, DO
    copied, nothing of the query's options or flags) agree; see
    assert_same_local_verdict for the differences and why."""
    kw = dict(kw)
    wire = query("Www.Example.NET.", kw.pop("qtype", 1), **kw)
    knot_answer, reply = both(gate, knot, wire, client)
    assert_same_local_verdict(knot_answer, reply, rcode=dns.rcode.REFUSED, query_wire=wire)
    (ev,) = gate.events(1)
    check_event(ev, reply, transport=client, action="refuse", reasonCode="not_allowlisted", rcode="REFUSED",
                qname="Www.Example.NET", upstream=ABSENT)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("version,do", [(1, False), (1, True), (255, False)])
def test_denied_name_with_edns_version_above_0_gets_badvers(gate, knot, client, version, do):
    """RFC 6891 6.1.3 (RFC 8906 8.2.2): dnsgate speaks EDNS version 0 only,
    so its own answer to a higher version is BADVERS (16: 0 in the header,
    1 in the OPT's EXTENDED-RCODE), OPT version 0, DO copied, no EDE, as
    knotd answers for a zone it does not serve. The event keeps the policy
    verdict (refuse / not_allowlisted: the upstream saw nothing) and its
    rcode says BADVERS."""
    wire = query("denied.example.net.", 1, flags=RD, edns={"version": version, "do": do,
                                                           "options": option(100)})
    knot_answer, reply = both(gate, knot, wire, client)
    d = assert_same_local_verdict(knot_answer, reply, rcode=dns.rcode.BADVERS, query_wire=wire)
    assert header(reply.response)["rcode"] == 0 and d.opt.ext_rcode == 1
    assert reply.response == hdr(0x4E53, QR | RD | RA, qd=1, ar=1) + wire[12:12 + len(d.question)] + opt(
        1232, ext_rcode=1, do=do), "byte for byte as docs/conformance.md writes it"
    (ev,) = gate.events(1)
    check_event(ev, reply, transport=client, action="refuse", reasonCode="not_allowlisted", rcode="BADVERS",
                qname="denied.example.net", upstream=ABSENT)


def test_deny_rcode_nxdomain_follows_the_same_rules(tmp_path, knot):
    """denyRcode NXDOMAIN: the same flag and OPT rules, and BADVERS wins
    over NXDOMAIN for EDNS version 1. (knotd has no NXDOMAIN for a zone it
    does not serve, so this is checked against the rules alone.)"""
    g = started_gate(tmp_path / "nx", knotd_route(knot), deny_rcode="NXDOMAIN")
    try:
        r1 = g.exchange(query("denied.example.net.", 1, flags=RD | CD | AD | Z, edns={"do": True}))
        r2 = g.exchange(query("denied.example.net.", 1, flags=RD, edns={"version": 1}))
        a1, a2 = read(r1.response), read(r2.response)
        assert a1.rcode == dns.rcode.NXDOMAIN and a1.flags & 0x7FF0 == RD | RA | CD
        assert a1.opt.options == [(OPT_EDE, struct.pack("!H", 15))] and a1.opt.flags == DO
        assert a2.rcode == dns.rcode.BADVERS and a2.opt.options == []
        e1, e2 = g.events(2)
        assert (e1["data"]["rcode"], e2["data"]["rcode"]) == ("NXDOMAIN", "BADVERS")
        stats = g.stop()
        assert stats["refused"] == 2 + g.probes and stats["forwarded"] == 0
    finally:
        finish(g)


def test_upstream_failure_for_edns_version_1_is_badvers(tmp_path, route):
    """An allowed query at EDNS version 1 whose resolver cannot be reached:
    the SERVFAIL dnsgate writes itself becomes BADVERS (RFC 6891 6.1.3:
    dnsgate's own answer, in a version it does not speak), without EDE 23.
    The event keeps servfail / upstream_error and says rcode BADVERS; a
    version-0 query gets SERVFAIL with EDE 23 Network Error. (The resolver
    is the protocol's, pointed at a port nobody listens on: refused at
    once over TCP, ICMP port unreachable over UDP and QUIC.)"""
    unreachable = f"127.0.0.1:{free_port(tcp_too=True)}"
    resolvers = [dict(r, address=unreachable) for r in route.resolvers]
    g = ConformanceGate(tmp_path / "down", resolvers=resolvers, allowlist=ALLOW)
    try:
        g.start()
        g.mark()
        v1 = query("www.example.com.", 1, flags=RD, edns={"version": 1, "do": True})
        r1 = g.exchange(v1)
        r0 = g.exchange(query("www.example.com.", 1, flags=RD, edns={}))
        assert r1.response == hdr(0x4E53, QR | RD | RA, qd=1, ar=1) + v1[12:12 + len(read(v1).question)] + opt(
            ext_rcode=1, do=True)
        a0 = read(r0.response)
        assert a0.rcode == dns.rcode.SERVFAIL and a0.opt.options == [(OPT_EDE, struct.pack("!H", 23))]
        e1, e0 = g.events(2)
        for ev, rcode in ((e1, "BADVERS"), (e0, "SERVFAIL")):
            assert (ev["data"]["action"], ev["data"]["reasonCode"], ev["data"]["rcode"]) == (
                "servfail", "upstream_error", rcode), ev
    finally:
        finish(g)


# ---------------------------------------------------------------- opcodes other than QUERY

OPCODE_NAMES = {1: "IQUERY", 2: "STATUS", 3: "OPCODE3", 4: "NOTIFY", 5: "UPDATE", 6: "DSO", 7: "OPCODE7",
                15: "OPCODE15"}


def opcode_event(ev: dict, reply: Reply, client: str, opcode: int, rcode: str = "NOTIMP", **expected) -> None:
    check_event(ev, reply, transport=client, action="refuse", reasonCode="unsupported_opcode", rcode=rcode,
                opcode=OPCODE_NAMES.get(opcode, f"OPCODE{opcode}"), answerCount=0, upstream=ABSENT, **expected)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("opcode", [1, 2, 3, 6, 7, 15])
def test_unknown_opcode_without_question_is_knotds_answer_byte_for_byte(gate, knot, client, opcode):
    """RFC 8906 3.1.4 and 8.1.4, `dig +noedns +noad +norec +header-only
    +opcode=15`: NOTIMP, the header alone, QR and the opcode the only flags.
    dnsgate used to drop this (QDCOUNT 0), and the client timed out."""
    wire = hdr(0x0F0F, opcode << 11)
    knot_answer, reply = both(gate, knot, wire, client)
    assert reply.response == knot_answer == hdr(0x0F0F, QR | opcode << 11 | dns.rcode.NOTIMP)
    (ev,) = gate.events(1)
    opcode_event(ev, reply, client, opcode, qname=ABSENT, qtype=ABSENT)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("opcode", [1, 2, 3, 7, 15])
def test_unknown_opcode_with_question_is_knotds_answer_byte_for_byte(gate, knot, client, opcode):
    """NOTIMP with the question echoed as asked (case kept); with RD=0, as
    the RFC 8906 test sends it, byte for byte as knotd."""
    wire = query("WwW.Example.COM.", 1, flags=opcode << 11)
    knot_answer, reply = both(gate, knot, wire, client)
    assert reply.response == knot_answer
    assert read(reply.response).rcode == dns.rcode.NOTIMP and read(reply.response).question == wire[12:]
    (ev,) = gate.events(1)
    opcode_event(ev, reply, client, opcode, qname="WwW.Example.COM", qtype="A")


@pytest.mark.parametrize("client", CLIENTS)
def test_unknown_opcode_clears_every_flag_knotd_copies_rd(gate, knot, client):
    """Deliberate difference: with every flag set in the query, knotd's
    NOTIMP copies RD and dnsgate's does not. RD, like AA TC RA Z AD CD, is
    defined for QUERY (RFC 6895 2; RFC 8906 3.1.3: what a server does not
    understand it must not set in the answer), and a server cannot know
    what a bit means for an opcode it does not implement: QR and the
    opcode are all dnsgate sets. Every other octet is knotd's."""
    wire = query("www.example.com.", 1, flags=15 << 11 | AA | TC | RD | RA | Z | AD | CD | 0x000F)
    knot_answer, reply = both(gate, knot, wire, client)
    assert read(knot_answer).flag(RD) and not read(reply.response).flag(RD)
    assert reply.response[:2] + reply.response[4:] == knot_answer[:2] + knot_answer[4:]
    assert struct.unpack("!H", reply.response[2:4])[0] == QR | 15 << 11 | dns.rcode.NOTIMP
    assert struct.unpack("!H", knot_answer[2:4])[0] == QR | 15 << 11 | RD | dns.rcode.NOTIMP
    (ev,) = gate.events(1)
    opcode_event(ev, reply, client, 15, qname="www.example.com")


def opcode_15(with_question: bool, opt_record: bytes) -> bytes:
    """Opcode 15, with or without www.example.com A IN, then `opt_record`."""
    question = encode_name([b"www", b"example", b"com"]) + b"\x00\x01\x00\x01" if with_question else b""
    return hdr(0x4E53, 15 << 11, qd=1 if with_question else 0, ar=1) + question + opt_record


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("with_question", [False, True])
def test_unknown_opcode_with_edns(gate, knot, client, with_question):
    """An OPT in the query, an OPT in the NOTIMP (RFC 6891 7): version 0,
    DO copied, neither the query's Z flags nor its unknown option echoed,
    no EDE. The advertised payload is the one octet pair that differs from
    knotd's (1232 and knotd's 4096). (No cookie here: knotd with mod-cookies
    checks a cookie before the opcode and may answer BADCOOKIE.)"""
    wire = opcode_15(with_question, opt(do=True, z=0x1234, options=option(100, b"x")))
    knot_answer, reply = both(gate, knot, wire, client)
    k, d = read(knot_answer), read(reply.response)
    assert d.rcode == k.rcode == dns.rcode.NOTIMP and d.flags == k.flags
    assert d.question == k.question == wire[12:12 + len(d.question)] and d.counts == k.counts
    assert (d.opt.version, d.opt.flags, d.opt.options) == (k.opt.version, k.opt.flags, k.opt.options) == (0, DO, [])
    assert d.opt.payload == 1232
    (ev,) = gate.events(1)
    opcode_event(ev, reply, client, 15)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("with_question", [False, True])
def test_unknown_opcode_with_edns_version_1_gets_badvers(gate, knot, client, with_question):
    """EDNS version 1 and opcode 15: BADVERS before NOTIMP, as knotd does
    (the version is checked before the message is understood); the event
    says unsupported_opcode and rcode BADVERS."""
    wire = opcode_15(with_question, opt(version=1))
    knot_answer, reply = both(gate, knot, wire, client)
    k, d = read(knot_answer), read(reply.response)
    assert d.rcode == k.rcode == dns.rcode.BADVERS
    assert d.flags == k.flags and d.question == k.question and d.counts == k.counts
    assert (d.opt.version, d.opt.flags, d.opt.options) == (k.opt.version, k.opt.flags, k.opt.options)
    (ev,) = gate.events(1)
    opcode_event(ev, reply, client, 15, rcode="BADVERS")


NOT_A_QUERY_LAYOUT = [
    ("qdcount_2", hdr(0x5151, 15 << 11, qd=2) + encode_name([b"a", b"example"]) + b"\x00\x01\x00\x01"
     + encode_name([b"b", b"example"]) + b"\x00\x01\x00\x01"),
    ("dso_keepalive_tlv", hdr(0x5151, 6 << 11) + struct.pack("!HHII", 1, 8, 0, 0)),
    ("trailing_octets", hdr(0x5151, 15 << 11) + b"\x01\x02\x03"),
    ("question_cut_short", hdr(0x5151, 15 << 11, qd=1) + b"\x03www\x07exa"),
    ("announced_record_missing", hdr(0x5151, 15 << 11, an=1)),
]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("wire", [w for _, w in NOT_A_QUERY_LAYOUT], ids=[i for i, _ in NOT_A_QUERY_LAYOUT])
def test_unknown_opcode_not_laid_out_as_a_query_gets_notimp_from_its_header(gate, knot, client, wire):
    """Deliberate difference: knotd does not answer these (it parses every
    message as a query first), dnsgate answers NOTIMP with the header alone,
    counts 0. RFC 8906 3.1.4: a new opcode need not use the query layout,
    nothing but the header need match, and NOTIMP is the expected answer;
    RFC 8490 5.1 (DSO) wants NOTIMP from a server without DSO; and RFC 8906
    6 asks middleboxes not to drop what they do not understand. The answer
    (12 octets) is never longer than the query, so this reflects nothing."""
    knot_answer, reply = direct(knot, wire, client, timeout=SILENCE), via(gate, wire, client)
    assert knot_answer is None, "knotd answers this now: compare with it instead"
    opcode = header(wire)["opcode"]
    assert reply.response == hdr(0x5151, QR | opcode << 11 | dns.rcode.NOTIMP)
    (ev,) = gate.events(1)
    opcode_event(ev, reply, client, opcode, qname=ABSENT)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("opcode", [4, 5])
def test_notify_and_update_get_notimp_where_knotd_implements_them(gate, knot, client, opcode):
    """Deliberate difference: knotd implements NOTIFY and UPDATE (and
    answers NOTAUTH here, having no ACL for the test); dnsgate is no
    primary, secondary or update server, so NOTIMP, the question echoed.
    The upstream never sees either message."""
    wire = query("example.com.", 6, flags=opcode << 11 | (AA if opcode == 4 else 0))
    knot_answer, reply = both(gate, knot, wire, client)
    assert read(knot_answer).rcode == dns.rcode.NOTAUTH
    d = read(reply.response)
    assert d.rcode == dns.rcode.NOTIMP and d.flags & 0x07F0 == 0 and d.question == wire[12:]
    (ev,) = gate.events(1)
    opcode_event(ev, reply, client, opcode, qname="example.com", qtype="SOA")


# ---------------------------------------------------------------- QUERY without exactly one question


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("qdcount,with_opt", [(0, False), (0, True), (2, False)])
def test_query_without_exactly_one_question_is_dropped(gate, knot, client, qdcount, with_opt):
    """DESIGN.md §1: a QUERY with QDCOUNT other than 1 is malformed and
    dropped. knotd drops QDCOUNT 2 too, and answers FORMERR to QDCOUNT 0
    (deliberate difference): RFC 8906 does not test it, no stub sends it,
    and its one defined use, RFC 7873 5.4's server-cookie query, is for a
    server that implements cookies, which dnsgate does not (it relays the
    upstream's); forwarding a message with no name would carry data to the
    upstream past the allowlist. The event says malformed_query /
    bad_question_count, and over TCP the connection is closed."""
    body = b""
    if qdcount == 2:
        body = (encode_name([b"www", b"example", b"com"]) + b"\x00\x01\x00\x01") * 2
    ar = 0
    if with_opt:
        body += opt(options=option(OPT_COOKIE, bytes.fromhex("0123456789abcdef")))
        ar = 1
    wire = hdr(0x6060, RD, qd=qdcount, ar=ar) + body
    knot_answer = direct(knot, wire, client, timeout=ANSWER_WAIT if qdcount == 0 else SILENCE)
    if qdcount == 0:
        assert knot_answer is not None and read(knot_answer).rcode == dns.rcode.FORMERR
    else:
        assert knot_answer is None
    reply = via(gate, wire, client, timeout=SILENCE)
    assert reply.response is None
    (ev,) = gate.events(1)
    check_event(ev, reply, transport=client, action="drop", reasonCode="malformed_query",
                malformedReason="bad_question_count", rcode=None)


# ---------------------------------------------------------------- stats


def test_stats_count_notimp_and_badvers_verdicts(tmp_path, route):
    """The stats count verdicts (DESIGN.md §1): NOTIMP answers in `notimp`,
    whatever the rcode (BADVERS included); a refused name in `refused`
    whatever was sent; an allowed EDNS-1 query in forwarded/relayed."""
    g = started_gate(tmp_path / "stats", route)
    try:
        g.exchange(hdr(1, 15 << 11))
        g.exchange(hdr(2, 15 << 11, ar=1) + opt(version=1))
        g.exchange(query("denied.example.net.", 1, edns={"version": 1}))
        g.exchange(query(edns={"version": 1}))
        g.mark()
        evs = [json.loads(line) for line in g.event_lines()[g.probes:]]
        assert [e["data"]["rcode"] for e in evs[:3]] == ["NOTIMP", "BADVERS", "BADVERS"]
        stats = g.stop()
        assert stats["notimp"] == 2 and stats["refused"] == 1 + g.probes
        assert stats["forwarded"] == 1 and stats["relayed"] == 1 and stats["malformed"] == 0
    finally:
        finish(g)


# ---------------------------------------------------------------- real stub resolvers
#
# glibc (getent: gethostbyname2 and getaddrinfo) and musl (a static
# getaddrinfo program) resolving through dnsgate in a network namespace of
# the test's own, whose resolv.conf (/etc/netns/<ns>/resolv.conf, mounted
# over /etc/resolv.conf by `ip netns exec`) points at dnsgate on
# 127.0.0.1:53 there, with search lists. knotd runs in the namespace too.

IP = shutil.which("ip") or "/usr/sbin/ip"
CLONE_NEWNET = 0x40000000
STUB_SOURCE = HERE / "stub_getaddrinfo.c"


class Netns:
    """A network namespace with lo up, and the /etc files `ip netns exec`
    mounts over the host's: resolv.conf (set per test), hosts with
    localhost only, nsswitch.conf with `hosts: files dns`, so nothing of
    the host's resolver configuration leaks in."""

    def __init__(self, name: str):
        self.name = name
        self.etc = Path("/etc/netns") / name
        self.created = False
        self.made_etc_netns = False

    def create(self) -> None:
        r = subprocess.run([IP, "netns", "add", self.name], capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            pytest.skip(f"cannot create a network namespace here ({r.stderr.strip()}): stub resolver tests skipped")
        self.created = True
        subprocess.run([IP, "-n", self.name, "link", "set", "lo", "up"], check=True, timeout=10)
        self.made_etc_netns = not self.etc.parent.exists()
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")
        (self.etc / "nsswitch.conf").write_text("hosts: files dns\n")

    def resolv_conf(self, text: str) -> None:
        (self.etc / "resolv.conf").write_text(text)

    def run(self, argv: list[str], timeout: float = 20.0) -> subprocess.CompletedProcess:
        return subprocess.run([IP, "netns", "exec", self.name, *argv], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    @contextlib.contextmanager
    def entered(self):
        """This thread in the namespace: the sockets it opens and the
        processes it starts (knotd, dnsgate) live there."""
        libc = ctypes.CDLL(None, use_errno=True)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the test namespace")
            try:
                yield self
            finally:
                if libc.setns(home, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back home")
        finally:
            os.close(target)
            os.close(home)

    def delete(self) -> None:
        if self.created:
            subprocess.run([IP, "netns", "del", self.name], capture_output=True, timeout=10)
        shutil.rmtree(self.etc, ignore_errors=True)
        if self.made_etc_netns:
            with contextlib.suppress(OSError):
                self.etc.parent.rmdir()  # only if no one else put a namespace's files there since


@pytest.fixture(scope="module")
def stub_ns(tmp_path_factory):
    """A namespace with knotd on 127.0.0.1 in it, and the musl program."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root: stub resolver tests skipped")
    musl_gcc = shutil.which("musl-gcc")
    assert musl_gcc, "musl-gcc is missing: install musl-tools (scripts/install-deps.sh)"
    work = tmp_path_factory.mktemp("stubs")
    program = work / "stub_getaddrinfo"
    subprocess.run([musl_gcc, "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(program),
                    str(STUB_SOURCE)], check=True, timeout=60)
    ns = Netns(f"dgconf{os.getpid()}")
    server = None
    try:
        ns.create()
        with ns.entered():
            server = Knotd(work / "knot")
            server.start()
        ns.knot, ns.musl_program, ns.work = server, program, work
        yield ns
    finally:
        if server is not None:
            server.stop()
        ns.delete()


def ns_gate(ns: Netns, deny_rcode: str) -> ConformanceGate:
    """dnsgate on 127.0.0.1:53 in the namespace (resolv.conf has no port)."""
    workdir = ns.work / f"dnsgate-{deny_rcode}-{time.monotonic_ns()}"
    with ns.entered():
        g = ConformanceGate(workdir, resolvers=knotd_route(ns.knot).resolvers, allowlist=["*.example.org"],
                            deny_rcode=deny_rcode, port=53)
        g.start()
    g.mark()
    return g


def finish_ns_gate(g: ConformanceGate) -> list[dict]:
    """Stops the gate and returns its events but the probe's. A stub sends
    as many queries as it likes (A and AAAA, each search candidate), so the
    event count is whatever arrived, each still checked as a CloudEvent."""
    try:
        g.stop(sig=signal.SIGTERM)
        g.datagrams = len(g.event_lines())
        g.check_all_events()
        return [json.loads(line) for line in g.event_lines()[g.probes:]]
    finally:
        g.kill()


# What each stub prints on success (an address of api.example.org), and on failure.
STUBS = {
    "glibc-gethostbyname": (["getent", "hosts"], "2001:db8::101"),
    "glibc-getaddrinfo": (["getent", "ahosts"], "192.0.2.101"),
    "musl-getaddrinfo": (None, "192.0.2.101"),
}

# {timeout}: see test_stub_resolvers_with_search_lists.
SEARCH_SHORT = "nameserver 127.0.0.1\nsearch corp.example example.org\noptions timeout:{timeout} attempts:1\n"
KUBERNETES = ("nameserver 127.0.0.1\nsearch cell.svc.cluster.local svc.cluster.local cluster.local\n"
              "options ndots:5 timeout:{timeout} attempts:1\n")

# (id, resolv.conf, name asked, {(stub kind, denyRcode): resolves?})
STUB_CASES = [
    # The case: the allowed name is behind a denied search candidate.
    ("short_name_second_search_domain", SEARCH_SHORT, "api",
     {("glibc", "REFUSED"): False, ("glibc", "NXDOMAIN"): True, ("musl", "REFUSED"): False,
      ("musl", "NXDOMAIN"): True}),
    # Kubernetes: every name with fewer than 5 dots tries the (denied) cluster suffixes first.
    ("kubernetes_ndots5_external_name", KUBERNETES, "api.example.org",
     {("glibc", "REFUSED"): True, ("glibc", "NXDOMAIN"): True, ("musl", "REFUSED"): False,
      ("musl", "NXDOMAIN"): True}),
    # A trailing dot: no search list at all.
    ("kubernetes_absolute_name", KUBERNETES, "api.example.org.",
     {("glibc", "REFUSED"): True, ("glibc", "NXDOMAIN"): True, ("musl", "REFUSED"): True,
      ("musl", "NXDOMAIN"): True}),
    # A denied name stays denied whatever the setting.
    ("kubernetes_denied_name", KUBERNETES, "www.example.net",
     {("glibc", "REFUSED"): False, ("glibc", "NXDOMAIN"): False, ("musl", "REFUSED"): False,
      ("musl", "NXDOMAIN"): False}),
]


@pytest.mark.parametrize("deny_rcode", ["REFUSED", "NXDOMAIN"])
@pytest.mark.parametrize("stub", list(STUBS))
@pytest.mark.parametrize("case", STUB_CASES, ids=[c[0] for c in STUB_CASES])
def test_stub_resolvers_with_search_lists(stub_ns, case, stub, deny_rcode):
    """Which denyRcode a workload needs (docs/running.md §7). glibc 2.36
    stops walking the search list at a REFUSED (res_search counts it as
    final) and then tries only the name as it was typed; musl ignores a
    REFUSED answer, waits out its timeout and fails the lookup with
    EAI_AGAIN ("Try again"). So with a search list whose denied candidates
    come first, REFUSED breaks short names in both libcs, and under a
    Kubernetes ndots:5 list it breaks every name for musl, while glibc's
    try-as-typed rescues fully qualified names. With NXDOMAIN both walk on
    to the candidate that is allowed. The events show which names each
    stub asked for. The resolver timeout is 1 s where musl must wait it out
    (a REFUSED that fails the lookup: that wait is the behaviour shown);
    every other lookup is answered in milliseconds, and its 5 s only keep a
    busy machine (a knotd that answers a second late) from failing it."""
    _, resolv_conf, name, outcomes = case
    argv, success_text = STUBS[stub]
    kind = stub.split("-")[0]
    expected = outcomes[(kind, deny_rcode)]
    waits_out_its_timeout = kind == "musl" and deny_rcode == "REFUSED" and not expected
    stub_ns.resolv_conf(resolv_conf.format(timeout=1 if waits_out_its_timeout else 5))
    gate = ns_gate(stub_ns, deny_rcode)
    try:
        command = [str(stub_ns.musl_program), name] if argv is None else [*argv, name]
        started = time.monotonic()
        r = stub_ns.run(command)
        elapsed = time.monotonic() - started
        gate.mark()
    finally:
        evs = finish_ns_gate(gate)
    asked = [(e["data"]["qname"], e["data"]["action"]) for e in evs]
    if expected:
        assert r.returncode == 0 and success_text in r.stdout, (r.returncode, r.stdout, r.stderr, asked)
    else:
        assert r.returncode == 2, (r.returncode, r.stdout, r.stderr, asked)
        assert success_text not in r.stdout
        if kind == "musl":
            # musl: REFUSED is no answer (timeout, EAI_AGAIN); NXDOMAIN is "no such name"
            want = "error -3 Try again" if deny_rcode == "REFUSED" else "error -2 Name does not resolve"
            assert r.stdout.strip() == want, (r.stdout, asked)
            if deny_rcode == "REFUSED":
                assert elapsed >= 0.9, "musl gave up before its timeout: it did not ignore the REFUSED"
    forwarded = {q for q, action in asked if action == "forward"}
    refused = {q for q, action in asked if action == "refuse"}
    assert all(e["data"]["rcode"] == deny_rcode for e in evs if e["data"]["action"] == "refuse"), asked
    case_id = case[0]
    if case_id == "short_name_second_search_domain":
        assert "api.corp.example" in refused, asked
        # REFUSED: the allowed candidate is never asked; NXDOMAIN: it is.
        assert ("api.example.org" in forwarded) == (deny_rcode == "NXDOMAIN"), asked
    elif case_id == "kubernetes_ndots5_external_name":
        assert "api.example.org.cell.svc.cluster.local" in refused, asked
        if deny_rcode == "REFUSED":
            # glibc skips the other cluster suffixes and asks the name as typed; musl stops.
            assert "api.example.org.svc.cluster.local" not in refused, asked
            assert ("api.example.org" in forwarded) == (kind == "glibc"), asked
        else:
            assert {"api.example.org.svc.cluster.local", "api.example.org.cluster.local"} <= refused, asked
            assert "api.example.org" in forwarded, asked
    elif case_id == "kubernetes_absolute_name":
        assert forwarded == {"api.example.org"} and not refused, asked
    else:
        assert not forwarded, asked
