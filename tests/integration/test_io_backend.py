"""The proxy loop's two I/O backends (config `io`, docs/configuration.md):
epoll and io_uring give the workload the same answers, byte for byte, and
the same events; `auto` falls back to epoll, saying why, where io_uring is
forbidden; `uring` fails the start there; DNSGATE_IO overrides the file;
`run --seccomp`, `dnsgate check`, a SIGHUP reload and `dnsgate supervise`
treat `io` as documented; a stop signal ends an idle proxy at once.

Which backend runs is read from the start-up log line (`io: uring`,
`io: epoll`, `io: epoll (<why>)`) and, as a cross-check, from the
process's descriptors: the io_uring backend holds one `anon_inode:[io_uring]`.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional
from unittest import mock

import dns.edns
import dns.message
import dns.rcode
import pytest

import dnsgate_testlib
from dnsgate_testlib import (
    ABSENT, BIG_TXT_STRINGS, EDE_NETWORK_ERROR, HERE, DnsGate, ScriptedUpstream, answer_after, answer_for,
    answer_normally, assert_servfail, big_buffers, check_event, closed_udp_port, dnsgate_bin, family_of,
    free_port, gate_factory, header, make_query, opt_record, question_bytes, recv_until, render_config, run_cli,
    silent, udp_socket, wire_id, with_id,
)
from hostile_lib import udp_drops
from netns_lib import rig_for_test
from tcp_lib import TcpGate

ALLOW = ["example.com", "*.example.com", "*.example.org"]
BACKENDS = ["epoll", "uring"]
SOURCE = HERE / "deny_io_uring.c"

# "2026-12-06T17:07:04.123+0000 dnsgate info: io: epoll (io_uring_setup: Operation not permitted)"
IO_LINE = re.compile(r" dnsgate info: io: (?P<backend>\S+?)(?: \((?P<why>.*)\))?$")
ERROR_LINE = re.compile(r"^dnsgate: (?P<file>.+?):(?P<line>\d+): (?P<field>[^\s:]+): (?P<msg>.+)$")


@pytest.fixture(autouse=True)
def backend_from_the_file(monkeypatch):
    """Each test names its backend in the file (or sets DNSGATE_IO itself):
    the suite's own DNSGATE_IO (make test runs the normal suite on epoll)
    must not override it."""
    monkeypatch.delenv("DNSGATE_IO", raising=False)


def io_lines(log: str) -> list[tuple[str, Optional[str]]]:
    """The backend each `io:` start-up line names, and its reason if any."""
    out = []
    for line in log.splitlines():
        m = IO_LINE.search(line)
        if m:
            out.append((m["backend"], m["why"]))
    return out


def ring_descriptors(pid: int) -> int:
    """How many io_uring instances process `pid` holds open."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[io_uring]":
                count += 1
        except OSError:
            continue
    return count


def assert_backend(gate: DnsGate, backend: str, why: Optional[str] = None) -> None:
    """One `io:` line naming `backend` (and `why`), and the descriptors to match."""
    log = gate.stderr()
    assert io_lines(log) == [(backend, why)], f"expected one line 'io: {backend}'" + (
        f" ({why})" if why else "") + f":\n{log}"
    rings = ring_descriptors(gate.proc.pid)
    assert rings == (1 if backend == "uring" else 0), f"{rings} io_uring descriptors on {backend}"


# ---------------------------------------------------------------- dnsgate with `io:`, maybe under a wrapper


class IoGate(DnsGate):
    """A DnsGate whose config ends with `io: <io>` (none when io is None),
    run as `wrapper... dnsgate run --config ...` when a wrapper is given
    (the wrapper execs dnsgate: same PID)."""

    def __init__(self, workdir: Path, *, io: Optional[str] = None, wrapper: Optional[list[str]] = None,
                 **kwargs):
        super().__init__(workdir, **kwargs)
        self.io = io
        self.wrapper = wrapper
        if io is not None:
            with open(self.config_path, "a") as f:
                f.write(f"io: {io}\n")

    def start(self) -> "IoGate":
        if not self.wrapper:
            super().start()
            return self
        script = self.workdir / "wrapped-dnsgate.sh"
        script.write_text("#!/bin/sh\nexec " + shlex.join(self.wrapper) + " " + shlex.quote(dnsgate_bin())
                          + ' "$@"\n')
        script.chmod(0o755)
        with mock.patch.object(dnsgate_testlib, "dnsgate_bin", lambda: str(script)):
            super().start()
        return self


@pytest.fixture
def iogate(tmp_path):
    """Factory: iogate(io="uring"|"epoll"|"auto"|None, wrapper=[...], allowlist=..., upstream=..., ...)."""
    yield from gate_factory(tmp_path, cls=IoGate)


rig = pytest.fixture(rig_for_test)  # namespaces, knotd and supervisors of one test (netns_lib)


@pytest.fixture(scope="module")
def deny_io_uring(tmp_path_factory) -> str:
    """deny_io_uring.c built for this run: io_uring_setup fails with EPERM."""
    work = tmp_path_factory.mktemp("deny")
    program = work / "deny_io_uring"
    r = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(program), str(SOURCE), "-lseccomp"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"cannot build {SOURCE.name} (libseccomp-dev, scripts/install-deps.sh):\n{r.stderr}"
    return str(program)


def config_file(tmp_path: Path, io: Optional[str], name: str = "dnsgate.yaml", upstream: str = "127.0.0.1:53") -> Path:
    text = render_config(cell="iotest", listen_port=free_port(), allowlist=ALLOW, upstream=upstream,
                         events_path=tmp_path / "events.jsonl")
    if io is not None:
        text += f"io: {io}\n"
    path = tmp_path / name
    path.write_text(text)
    return path


def knot_answer(knotd, wire: bytes) -> bytes:
    """knotd's own answer to the same bytes (under another id)."""
    return knotd.ask(with_id(wire, (wire_id(wire) + 0x5555) & 0xFFFF))


# ---------------------------------------------------------------- 1. the same answers on both backends


FORWARDED = [
    # name, type, EDNS payload (None: no EDNS), answer records
    ("www.example.com.", "A", None, 1),
    ("www.example.com.", "AAAA", 1232, 1),
    ("multi.example.com.", "A", None, 5),
    ("api.example.org.", "AAAA", 4096, 1),
    ("big.example.com.", "TXT", 4096, 1),  # ~3.9 KB: just under the 4096-octet send slots
    ("nothere.example.com.", "A", 1232, 0),  # NXDOMAIN, relayed as is
]
REFUSED = [("example.net.", "A"), ("www.example.net.", "AAAA"), ("evil.test.", "TXT")]


@pytest.mark.parametrize("io", BACKENDS)
def test_backend_is_logged_and_answers_are_knotd_s(iogate, knotd, io):
    gate = iogate(io=io, allowlist=ALLOW, upstream=knotd.address)
    assert_backend(gate, io)
    replies = []
    for i, (name, rdtype, payload, answers) in enumerate(FORWARDED):
        wire = make_query(name, rdtype, ident=0x4100 + i, edns=payload is not None, payload=payload or 1232).to_wire()
        r = gate.exchange(wire, timeout=3)
        assert r.response is not None, f"{io}: no answer for {name} {rdtype}"
        assert wire_id(r.response) == 0x4100 + i
        assert r.response[2:] == knot_answer(knotd, wire)[2:], f"{io}: {name} {rdtype} differs from knotd's answer"
        assert header(r.response)["ancount"] == answers and not header(r.response)["tc"]
        replies.append(r)
    for i, (name, rdtype) in enumerate(REFUSED):
        r = gate.query(name, rdtype, ident=0x4200 + i)
        assert r.response is not None, f"{io}: no answer for the refused {name}"
        assert r.msg.rcode() == dns.rcode.REFUSED and not r.msg.answer, r.msg
        replies.append(r)
    evs = gate.events(len(FORWARDED) + len(REFUSED))
    for ev, r, (name, rdtype, _payload, answers) in zip(evs, replies, FORWARDED):
        check_event(ev, r, action="forward", reasonCode="allowed", qname=name.rstrip("."), qtype=rdtype,
                    answerCount=answers, upstream=knotd.address)
    for ev, r, (name, rdtype) in zip(evs[len(FORWARDED):], replies[len(FORWARDED):], REFUSED):
        check_event(ev, r, action="refuse", reasonCode="not_allowlisted", qname=name.rstrip("."), qtype=rdtype,
                    rcode="REFUSED", upstream=ABSENT)


BURST_SOCKETS = 8
BURST_PER_SOCKET = 250  # 2,000 queries in all
BURST_WINDOW = 16  # queries in flight per socket
BURST_MIX = [  # (name, type, allowed)
    ("www.example.com.", "A", True),
    ("www.example.com.", "AAAA", True),
    ("multi.example.com.", "A", True),
    ("api.example.org.", "A", True),
    ("a.b.example.org.", "A", True),
    ("example.net.", "A", False),
    ("blocked.test.", "AAAA", False),
]


def burst_client(port: int, offset: int, expected: dict, failures: list) -> None:
    """BURST_PER_SOCKET queries from one socket, BURST_WINDOW at a time; each
    answer must be the expected bytes (knotd's, or REFUSED) for its id."""
    sock = udp_socket()
    big_buffers(sock, 1 << 20)
    try:
        outstanding: dict[int, int] = {}
        sent = 0
        while sent < BURST_PER_SOCKET or outstanding:
            while sent < BURST_PER_SOCKET and len(outstanding) < BURST_WINDOW:
                ident = offset + sent
                kind = ident % len(BURST_MIX)
                sock.sendto(with_id(expected[kind][0], ident), ("127.0.0.1", port))
                outstanding[ident] = kind
                sent += 1
            sock.settimeout(5)
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                failures.append(f"socket {offset}: {len(outstanding)} queries unanswered after 5 s "
                                f"({sent} sent)")
                return
            ident = wire_id(data)
            if ident not in outstanding:
                failures.append(f"socket {offset}: answer for id {ident} not in flight")
                return
            kind = outstanding.pop(ident)
            want = expected[kind][1]
            if want is not None:
                if data[2:] != want[2:]:
                    failures.append(f"socket {offset}: id {ident} {BURST_MIX[kind][:2]}: not knotd's answer")
                    return
            elif header(data)["rcode"] != dns.rcode.REFUSED or header(data)["ancount"] != 0:
                failures.append(f"socket {offset}: id {ident} {BURST_MIX[kind][:2]}: not REFUSED: {data.hex()}")
                return
    except BaseException as e:  # reported by the test
        failures.append(f"socket {offset}: {e!r}")
    finally:
        sock.close()


@pytest.mark.parametrize("io", BACKENDS)
def test_burst_from_several_sockets_all_answered_one_event_each(iogate, knotd, io):
    gate = iogate(io=io, allowlist=ALLOW, upstream=knotd.address)
    assert_backend(gate, io)
    expected = {}
    for kind, (name, rdtype, allowed) in enumerate(BURST_MIX):
        wire = make_query(name, rdtype, ident=0).to_wire()
        expected[kind] = (wire, knot_answer(knotd, wire) if allowed else None)
    failures: list[str] = []
    threads = [threading.Thread(target=burst_client, args=(gate.port, s * 1000, expected, failures))
               for s in range(BURST_SOCKETS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    seconds = time.monotonic() - start
    total = BURST_SOCKETS * BURST_PER_SOCKET
    gate.note_datagrams(total)
    assert not any(t.is_alive() for t in threads), "burst clients did not finish"
    assert not failures, "\n".join(failures)
    print(f"\n{io}: {total} queries from {BURST_SOCKETS} sockets answered in {seconds:.2f} s")
    allowed = sum(1 for s in range(BURST_SOCKETS) for i in range(BURST_PER_SOCKET)
                  if BURST_MIX[(s * 1000 + i) % len(BURST_MIX)][2])
    evs = gate.events(total, timeout=15)
    actions = [e["data"]["action"] for e in evs]
    assert actions.count("forward") == allowed and actions.count("refuse") == total - allowed, (
        f"{actions.count('forward')} forward, {actions.count('refuse')} refuse; "
        f"expected {allowed} and {total - allowed}")
    assert len({e["id"] for e in evs}) == total
    stats = gate.stop()
    assert stats["received"] == total + gate.probes, stats
    assert stats["forwarded"] == allowed and stats["relayed"] == allowed, stats
    assert stats["refused"] == total - allowed + gate.probes, stats
    for key in ("malformed", "servfailTimeout", "servfailError", "overloaded", "unsolicitedUpstream",
                "eventsDropped", "droppedAtShutdown", "sendFailed"):
        assert stats[key] == 0, f"{key}: {stats}"


def sized_answer(query: bytes, total: int) -> bytes:
    """An answer to `query` (one question, EDNS) of exactly `total` octets:
    one TXT record whose strings fill it, each octet depending on its place."""
    question = question_bytes(query)
    opt = opt_record(4096)
    rdlength = total - (12 + len(question) + 12 + len(opt))
    assert 1 <= rdlength <= 65535, total
    rdata = b""
    while len(rdata) < rdlength:
        n = min(255, rdlength - len(rdata) - 1)
        rdata += bytes([n]) + bytes((len(rdata) + i) % 251 for i in range(n))
    out = struct.pack("!HHHHHH", wire_id(query), 0x8180, 1, 1, 0, 1) + question
    out += b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 60, rdlength) + rdata + opt
    assert len(out) == total
    return out


def answer_sized_by_name(up, wire: bytes, addr: tuple) -> None:
    """s<N>.example.com. TXT gets an answer of N octets."""
    label = dns.message.from_wire(wire).question[0].name.labels[0].decode()
    up.send(sized_answer(wire, int(label[1:])), addr)


# Around the 4096-octet send slots, and far beyond them.
SIZES = [4000, 4096, 4097, 12_000, 65_000]


@pytest.mark.parametrize("io", BACKENDS)
def test_answer_over_4096_octets_arrives_whole(iogate, upstream, io):
    """knotd sends no UDP answer over 4096 octets, so a scripted resolver
    gives them: the uring backend sends those larger than a send slot
    (4096 octets) directly. Each must arrive whole, the resolver's bytes
    under the workload's id, alone and several in one turn."""
    upstream.behaviour = answer_sized_by_name
    gate = iogate(io=io, allowlist=ALLOW, upstream=upstream.address)
    assert_backend(gate, io)

    def query(size: int, ident: int) -> bytes:
        return make_query(f"s{size}.example.com.", "TXT", ident=ident, edns=True, payload=65000).to_wire()

    for i, size in enumerate(SIZES):
        wire = query(size, 0x5100 + i)
        r = gate.exchange(wire, timeout=3)
        assert r.response is not None, f"{io}: no answer of {size} octets"
        assert len(r.response) == size, f"{io}: {len(r.response)} octets arrived of {size}"
        assert r.response == with_id(sized_answer(wire, size), 0x5100 + i), f"{io}: the {size}-octet answer differs"
    # All at once, twice over, from one socket: small and big in the same turns.
    sock = udp_socket()
    big_buffers(sock, 4 << 20)
    want = {}
    try:
        for i, size in enumerate(SIZES * 2):
            wire = query(size, 0x5200 + i)
            want[0x5200 + i] = with_id(sized_answer(wire, size), 0x5200 + i)
            gate.send(wire, sock=sock)
        got = {}
        deadline = time.monotonic() + 5
        while len(got) < len(want):
            data = recv_until(sock, deadline)
            assert data is not None, f"{io}: {len(want) - len(got)} answers missing: have {sorted(got)}"
            got[wire_id(data)] = data
    finally:
        sock.close()
    for ident, data in got.items():
        assert data == want[ident], f"{io}: answer {ident:#x} ({len(data)} of {len(want[ident])} octets) differs"
    evs = gate.events(len(SIZES) * 3)
    assert [e["data"]["action"] for e in evs] == ["forward"] * len(evs)
    stats = gate.stop()
    assert stats["relayed"] == len(SIZES) * 3 and stats["sendFailed"] == 0, stats


@pytest.mark.parametrize("io", BACKENDS)
def test_malformed_datagrams_are_dropped_with_their_events(iogate, knotd, io):
    gate = iogate(io=io, allowlist=ALLOW, upstream=knotd.address)
    bad = [
        (b"", "too_short"),  # a datagram of no octets at all
        (b"\x12", "too_short"),
        (bytes.fromhex("abcd81000001000000000000") + b"\x03www\x07example\x03com\x00\x00\x01\x00\x01",
         "response_bit_set"),
        (bytes.fromhex("abce01000001000000000000") + b"\x03www\x07exam", "truncated_question"),
    ]
    sock = udp_socket()
    try:
        for wire, _ in bad:
            gate.send(wire, sock=sock)
        good = make_query("www.example.com.", "A", ident=0x6100).to_wire()
        r = gate.exchange(good, sock=sock, timeout=3, linger=0.3)
    finally:
        sock.close()
    assert r.response is not None, f"{io}: no answer after the malformed datagrams"
    assert wire_id(r.response) == 0x6100 and r.response[2:] == knot_answer(knotd, good)[2:]
    assert r.extra == [], f"{io}: something answered a malformed datagram: {r.extra}"
    evs = gate.events(len(bad) + 1)
    for ev, (wire, reason) in zip(evs, bad):
        check_event(ev, action="drop", reasonCode="malformed_query", malformedReason=reason, size=len(wire),
                    client=r.client)
    check_event(evs[-1], action="forward", qname="www.example.com", upstream=knotd.address)
    stats = gate.stop()
    assert stats["malformed"] == len(bad) and stats["relayed"] == 1, stats


@pytest.mark.parametrize("io", BACKENDS)
def test_ipv6_client(iogate, knotd, io):
    gate = iogate(io=io, allowlist=ALLOW, upstream=knotd.address, listen_host="::1")
    assert_backend(gate, io)
    wire = make_query("www.example.com.", "AAAA", ident=0x6600, edns=True).to_wire()
    r = gate.exchange(wire, timeout=3)
    assert r.response is not None, f"{io}: no answer over IPv6"
    assert r.response[2:] == knot_answer(knotd, wire)[2:]
    refused = gate.query("example.net.", "A", ident=0x6601)
    assert refused.response is not None and refused.msg.rcode() == dns.rcode.REFUSED
    ev, ev2 = gate.events(2)
    check_event(ev, r, action="forward", qname="www.example.com", qtype="AAAA")
    assert ev["data"]["client"].startswith("[::1]:")
    check_event(ev2, refused, action="refuse", rcode="REFUSED")


AT_ONCE = 1500


@pytest.mark.parametrize("io", BACKENDS)
def test_burst_sent_at_once_beyond_the_receive_buffers(iogate, upstream, io):
    """1,500 queries written without waiting, from one socket: far more
    datagrams than the ring has receive buffers (128), on the listener and
    on the resolver's socket at once. Every one is answered, right, once."""
    gate = iogate(io=io, allowlist=ALLOW, upstream=upstream.address, timeout_ms=5000)
    names = [(f"n{i}.example.com.", True) if i % 3 else (f"n{i}.example.net.", False) for i in range(AT_ONCE)]
    sock = udp_socket()
    big_buffers(sock)
    drops_before = udp_drops(gate.port)
    try:
        for i, (name, _) in enumerate(names):
            gate.send(make_query(name, "A", ident=i).to_wire(), sock=sock)
        got: dict[int, bytes] = {}
        deadline = time.monotonic() + 10
        while len(got) < AT_ONCE:
            data = recv_until(sock, deadline)
            if data is None:
                break
            assert wire_id(data) not in got, f"{io}: two answers for id {wire_id(data)}"
            got[wire_id(data)] = data
    finally:
        sock.close()
    drops = udp_drops(gate.port) - drops_before
    assert len(got) == AT_ONCE, (f"{io}: {AT_ONCE - len(got)} of {AT_ONCE} queries unanswered "
                                 f"(the kernel dropped {drops} at the listener)")
    for ident, data in got.items():
        name, allowed = names[ident]
        msg = dns.message.from_wire(data)
        assert msg.question[0].name.to_text() == name, (ident, msg)
        if allowed:
            assert msg.rcode() == dns.rcode.NOERROR and [r.address for r in msg.answer[0]] == ["192.0.2.1"], msg
        else:
            assert msg.rcode() == dns.rcode.REFUSED and not msg.answer, msg
    allowed = sum(1 for _, a in names if a)
    assert len(upstream.queries()) == allowed, f"the resolver got {len(upstream.queries())} of {allowed} queries"
    evs = gate.events(AT_ONCE, timeout=10)
    assert sorted(e["data"]["transactionId"] for e in evs) == list(range(AT_ONCE))
    stats = gate.stop()
    assert stats["relayed"] == allowed and stats["refused"] == AT_ONCE - allowed + gate.probes, stats
    assert stats["sendFailed"] == 0 and stats["unsolicitedUpstream"] == 0, stats


class IoTcpGate(TcpGate):
    """A TcpGate (UDP and TCP listeners on one port) whose config ends with `io: <io>`."""

    def __init__(self, workdir: Path, *, io: str, **kwargs):
        super().__init__(workdir, **kwargs)
        with open(self.config_path, "a") as f:
            f.write(f"io: {io}\n")


@pytest.fixture
def iotcpgate(tmp_path):
    yield from gate_factory(tmp_path, cls=IoTcpGate)


@pytest.mark.parametrize("io", BACKENDS)
def test_tcp_beside_udp(iotcpgate, knotd, io):
    """TCP stays on epoll, whose descriptor the ring watches: a TCP client
    and a UDP client of the same proxy are both answered, the TC answer
    over UDP and the whole one over TCP (to knotd over TCP)."""
    gate = iotcpgate(io=io, allowlist=ALLOW, upstream=knotd.address)
    assert_backend(gate, io)
    wire = make_query("big.example.com.", "TXT", ident=0xC100).to_wire()  # no EDNS: TC over UDP
    r = gate.exchange(wire, timeout=3)
    assert r.response is not None and header(r.response)["tc"], f"{io}: no TC answer over UDP"
    assert r.response[2:] == knot_answer(knotd, wire)[2:]
    t = gate.tcp_exchange(wire, timeout=3)
    assert t.response is not None, f"{io}: no answer over TCP"
    assert not header(t.response)["tc"] and len(t.msg.answer[0][0].strings) == BIG_TXT_STRINGS
    # Both at once: a TCP connection left open while UDP queries come and go.
    with gate.connect() as c:
        for i in range(5):
            u = gate.query("www.example.com.", "AAAA", ident=0xC200 + i)
            assert u.response is not None and u.msg.rcode() == dns.rcode.NOERROR
            gate.expect_events(1)
            tr = c.exchange(make_query("api.example.org.", "A", ident=0xC300 + i).to_wire(), timeout=3)
            assert tr.response is not None and [a.address for a in tr.msg.answer[0]] == ["192.0.2.101"], io
    evs = gate.events(12)
    assert [e["data"]["transport"] for e in evs[:2]] == ["udp", "tcp"]
    assert all(e["data"]["action"] == "forward" for e in evs)


@pytest.mark.parametrize("io", BACKENDS)
@pytest.mark.parametrize("shape", ["tcp listener only", "do53-tcp resolver"])
def test_tcp_shapes(iotcpgate, knotd, io, shape):
    """The ring with nothing of its own to carry: no UDP listener, or a
    resolver reached over TCP only."""
    if shape == "tcp listener only":
        gate = iotcpgate(io=io, allowlist=ALLOW, upstream=knotd.address, listen_udp=False)
    else:
        gate = iotcpgate(io=io, allowlist=ALLOW, upstream=knotd.address, protocol="do53-tcp")
        u = gate.query("api.example.org.", "AAAA", ident=0xC500)
        assert u.response is not None and u.msg.rcode() == dns.rcode.NOERROR, f"{io}: UDP client not answered"
    assert_backend(gate, io)
    for i in range(3):
        t = gate.tcp_query("www.example.com.", "A", ident=0xC400 + i, timeout=3)
        assert t.response is not None and [a.address for a in t.msg.answer[0]] == ["192.0.2.10"], io
    gate.events(3 if shape == "tcp listener only" else 4)


@pytest.mark.parametrize("io", BACKENDS)
def test_clients_gone_before_their_answers(iogate, knotd, io):
    """Clients that close their socket right after asking: the answers go
    to closed ports (ICMP port unreachable comes back to the listener);
    the proxy goes on answering the others."""
    gate = iogate(io=io, allowlist=ALLOW, upstream=knotd.address)
    for i in range(30):
        gate.send(make_query("www.example.com.", "A", ident=0xD100 + i).to_wire()).close()
    time.sleep(0.2)
    for i in range(3):
        wire = make_query("api.example.org.", "A", ident=0xD200 + i).to_wire()
        r = gate.exchange(wire, timeout=3)
        assert r.response is not None and r.response[2:] == knot_answer(knotd, wire)[2:], f"{io}: not answered"
    evs = gate.events(33)
    assert [e["data"]["action"] for e in evs] == ["forward"] * 33
    assert gate.running()


@pytest.mark.parametrize("io", BACKENDS)
def test_query_over_4096_octets_goes_upstream_intact(iogate, upstream, io):
    """A query larger than a send slot (EDNS padding to 5,000 octets) goes to
    the resolver as the workload wrote it, but for the id."""
    gate = iogate(io=io, allowlist=ALLOW, upstream=upstream.address)
    q = make_query("www.example.com.", "A", ident=0xE100, edns=True, payload=4096)
    base = len(q.to_wire())
    q.use_edns(0, payload=4096, options=[dns.edns.GenericOption(12, b"\0" * (5000 - base - 4))])
    wire = q.to_wire(max_size=65535)
    assert len(wire) == 5000
    r = gate.exchange(wire, timeout=3)
    assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR, f"{io}: no answer"
    (sent,) = upstream.queries()
    assert len(sent) == 5000 and sent[2:] == wire[2:], f"{io}: the resolver got {len(sent)} other octets"
    gate.events(1)


# ---------------------------------------------------------------- 2. failing resolvers: ICMP errors, timeouts


@pytest.mark.parametrize("io", BACKENDS)
def test_unreachable_upstream_answers_servfail_at_once(iogate, io):
    address = f"127.0.0.1:{closed_udp_port()}"
    gate = iogate(io=io, allowlist=ALLOW, upstream=address, timeout_ms=3000)
    replies = []
    for i in range(3):
        r = gate.query("www.example.com.", "A", ident=0x7100 + i, edns=(i != 1), timeout=5)
        assert r.response is not None, f"{io}: no answer"
        replies.append(r)
    times = [round(r.elapsed * 1000) for r in replies]
    print(f"\n{io}: SERVFAIL for an unreachable upstream after {times} ms (timeout 3000 ms)")
    for r in replies:
        assert r.elapsed < 1.0, f"{io}: SERVFAIL took {times} ms: the ICMP error was not seen"
    for r in (replies[0], replies[2]):
        assert_servfail(r, EDE_NETWORK_ERROR)
    assert replies[1].msg.rcode() == dns.rcode.SERVFAIL
    for ev, r in zip(gate.events(3), replies):
        check_event(ev, r, action="servfail", reasonCode="upstream_error", upstreamError="connect_refused",
                    rcode="SERVFAIL", upstream=address)
    stats = gate.stop()
    assert stats["servfailError"] == 3 and stats["servfailTimeout"] == 0, stats


@pytest.mark.parametrize("io", BACKENDS)
def test_silent_upstream_times_out_on_time(iogate, upstream, io):
    upstream.behaviour = silent
    gate = iogate(io=io, allowlist=ALLOW, upstream=upstream.address, timeout_ms=300)
    r = gate.query("www.example.com.", "A", ident=0x7200, timeout=3)
    assert r.response is not None and r.msg.rcode() == dns.rcode.SERVFAIL, f"{io}: no SERVFAIL"
    print(f"\n{io}: SERVFAIL after {r.elapsed * 1000:.0f} ms for upstreamTimeoutMs 300")
    assert 0.29 <= r.elapsed < 1.0, f"{io}: SERVFAIL after {r.elapsed * 1000:.0f} ms, the timeout is 300 ms"
    (ev,) = gate.events(1)
    check_event(ev, r, action="servfail", reasonCode="upstream_timeout", rcode="SERVFAIL", upstream=upstream.address)


class Responder:
    """A resolver on a port chosen beforehand (one that was closed until
    now): answers every query with answer_for (A 192.0.2.1)."""

    def __init__(self, host: str, port: int):
        self.sock = socket.socket(family_of(host), socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.05)
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            self.count += 1
            self.sock.sendto(answer_for(data), addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.mark.parametrize("io", BACKENDS)
def test_burst_to_an_unreachable_upstream(iogate, io):
    """200 queries at once to a closed port: 200 ICMP errors; every query
    gets its SERVFAIL at once, not at the timeout."""
    address = f"127.0.0.1:{closed_udp_port()}"
    gate = iogate(io=io, allowlist=ALLOW, upstream=address, timeout_ms=3000)
    sock = udp_socket()
    big_buffers(sock)
    start = time.monotonic()
    try:
        for i in range(200):
            gate.send(make_query(f"q{i}.example.com.", "A", ident=i).to_wire(), sock=sock)
        got = {}
        deadline = start + 5
        while len(got) < 200:
            data = recv_until(sock, deadline)
            if data is None:
                break
            got[wire_id(data)] = header(data)["rcode"]
    finally:
        sock.close()
    seconds = time.monotonic() - start
    print(f"\n{io}: 200 SERVFAIL for an unreachable upstream in {seconds * 1000:.0f} ms")
    assert len(got) == 200, f"{io}: {200 - len(got)} of 200 unanswered"
    assert set(got.values()) == {dns.rcode.SERVFAIL}
    assert seconds < 1.5, f"{io}: {seconds:.2f} s for the 200 SERVFAIL: some waited for the 3 s timeout"
    evs = gate.events(200)
    errors = {e["data"].get("upstreamError") for e in evs}
    reasons = {e["data"]["reasonCode"] for e in evs}
    assert reasons == {"upstream_error"} and errors == {"connect_refused"}, (reasons, errors)


@pytest.mark.parametrize("io", BACKENDS)
def test_upstream_back_after_icmp_errors(iogate, io):
    """The resolver's port is closed (ICMP errors on its socket), then a
    resolver starts there: its answers must be read again."""
    port = closed_udp_port()
    gate = iogate(io=io, allowlist=ALLOW, upstream=f"127.0.0.1:{port}", timeout_ms=1500)
    for i in range(3):
        r = gate.query("www.example.com.", "A", ident=0x7300 + i, timeout=3)
        assert r.response is not None and r.msg.rcode() == dns.rcode.SERVFAIL
    responder = Responder("127.0.0.1", port)
    try:
        r = gate.query("www.example.com.", "A", ident=0x7310, timeout=3)
        assert r.response is not None, f"{io}: no answer"
        assert r.msg.rcode() == dns.rcode.NOERROR, (
            f"{io}: {dns.rcode.to_text(r.msg.rcode())} after {r.elapsed * 1000:.0f} ms from a resolver that "
            f"answers ({responder.count} queries reached it)")
        assert [a.address for a in r.msg.answer[0]] == ["192.0.2.1"]
    finally:
        responder.close()
    evs = gate.events(4)
    assert [e["data"]["action"] for e in evs] == ["servfail"] * 3 + ["forward"]


@pytest.mark.parametrize("io", BACKENDS)
def test_failover_after_an_icmp_error(iogate, upstream, io):
    """Two do53-udp resolvers, the first on a closed port: its ICMP error
    sends the query on to the second at once, whose answer is relayed."""
    dead = f"127.0.0.1:{closed_udp_port()}"
    gate = iogate(io=io, allowlist=ALLOW, timeout_ms=3000, resolvers=[
        {"protocol": "do53-udp", "address": dead}, {"protocol": "do53-udp", "address": upstream.address}])
    r = gate.query("www.example.com.", "A", ident=0x7400, timeout=4)
    assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR, f"{io}: no answer via the second"
    assert r.elapsed < 1.0, f"{io}: {r.elapsed * 1000:.0f} ms: the failover waited for a timeout"
    for i in range(3):
        again = gate.query("www.example.com.", "A", ident=0x7401 + i, timeout=4)
        assert again.response is not None and again.msg.rcode() == dns.rcode.NOERROR
    evs = gate.events(4)
    assert {e["data"]["upstream"] for e in evs} == {upstream.address}, evs
    assert len(upstream.queries()) == 4


@pytest.mark.parametrize("io", BACKENDS)
def test_ipv6_resolver(iogate, io):
    """[::1] on both sides, and an unreachable [::1] resolver (IPV6_RECVERR)."""
    up6 = ScriptedUpstream(host="::1")
    try:
        gate = iogate(io=io, allowlist=ALLOW, upstream=up6.address, listen_host="::1")
        assert_backend(gate, io)
        for i in range(3):
            r = gate.query("www.example.com.", "A", ident=0x7500 + i)
            assert r.response is not None and [a.address for a in r.msg.answer[0]] == ["192.0.2.1"], io
        evs = gate.events(3)
        assert {e["data"]["upstream"] for e in evs} == {up6.address}
    finally:
        up6.close()
    dead = f"[::1]:{closed_udp_port('::1')}"
    gate = iogate(io=io, allowlist=ALLOW, upstream=dead, listen_host="::1", timeout_ms=3000)
    r = gate.query("www.example.com.", "A", ident=0x7510, timeout=4)
    assert r.response is not None and r.msg.rcode() == dns.rcode.SERVFAIL
    assert r.elapsed < 1.0, f"{io}: {r.elapsed * 1000:.0f} ms: the ICMPv6 error was not seen"
    (ev,) = gate.events(1)
    check_event(ev, r, action="servfail", upstreamError="connect_refused", upstream=dead)


# ---------------------------------------------------------------- 3. DNSGATE_IO


@pytest.mark.parametrize("file_io,env_io", [("uring", "epoll"), ("epoll", "uring"), ("auto", "epoll")])
def test_dnsgate_io_overrides_the_file(iogate, knotd, monkeypatch, file_io, env_io):
    monkeypatch.setenv("DNSGATE_IO", env_io)
    gate = iogate(io=file_io, allowlist=ALLOW, upstream=knotd.address)
    assert_backend(gate, env_io)
    wire = make_query("www.example.com.", "A", ident=0x8100).to_wire()
    r = gate.exchange(wire)
    assert r.response is not None and r.response[2:] == knot_answer(knotd, wire)[2:]
    gate.events(1)


def test_bad_dnsgate_io_exits_2(tmp_path, monkeypatch):
    path = config_file(tmp_path, "auto")
    monkeypatch.setenv("DNSGATE_IO", "bogus")
    r = run_cli(["run", "--config", str(path)])
    assert r.returncode == 2, f"exit {r.returncode}: {r.stderr}"
    assert "DNSGATE_IO=bogus: valid: auto, epoll, uring" in r.stderr, r.stderr
    # `check` reads the file only.
    r = run_cli(["check", "--config", str(path)])
    assert r.returncode == 0 and r.stdout.rstrip().endswith(", io auto"), r


# ---------------------------------------------------------------- 4. io_uring forbidden (a container's seccomp profile)


def test_auto_falls_back_to_epoll_where_io_uring_is_forbidden(iogate, knotd, deny_io_uring):
    gate = iogate(io="auto", wrapper=[deny_io_uring], allowlist=ALLOW, upstream=knotd.address)
    assert_backend(gate, "epoll", "io_uring_setup: Operation not permitted")
    wire = make_query("www.example.com.", "AAAA", ident=0x9100).to_wire()
    r = gate.exchange(wire)
    assert r.response is not None and r.response[2:] == knot_answer(knotd, wire)[2:]
    refused = gate.query("example.net.", "A")
    assert refused.response is not None and refused.msg.rcode() == dns.rcode.REFUSED
    gate.events(2)


def test_auto_uses_uring_where_it_is_allowed(iogate, knotd):
    gate = iogate(io="auto", allowlist=ALLOW, upstream=knotd.address)
    assert_backend(gate, "uring")
    assert gate.query("www.example.com.").msg.rcode() == dns.rcode.NOERROR
    gate.events(1)


def test_the_default_is_epoll_even_where_io_uring_is_allowed(iogate, knotd):
    # docs/configuration.md, `io`: epoll took less CPU per query in make bench.
    gate = iogate(io=None, allowlist=ALLOW, upstream=knotd.address)
    assert_backend(gate, "epoll")
    assert gate.query("www.example.com.").msg.rcode() == dns.rcode.NOERROR
    gate.events(1)


def test_uring_required_fails_the_start_where_it_is_forbidden(tmp_path, deny_io_uring):
    path = config_file(tmp_path, "uring")
    r = subprocess.run([deny_io_uring, dnsgate_bin(), "run", "--config", str(path)], capture_output=True,
                       text=True, timeout=10, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, f"exit {r.returncode}, expected 1:\n{r.stderr}"
    assert re.search(r" dnsgate error: io: uring: io_uring_setup: Operation not permitted$", r.stderr, re.M), r.stderr
    assert io_lines(r.stderr) == [], "an io: line for a start that failed"


# ---------------------------------------------------------------- 5. run --seccomp


@pytest.mark.parametrize("where", ["file", "env"])
def test_run_seccomp_refuses_uring(tmp_path, monkeypatch, where):
    path = config_file(tmp_path, "uring" if where == "file" else "auto")
    if where == "env":
        monkeypatch.setenv("DNSGATE_IO", "uring")
    r = run_cli(["run", "--seccomp", "--config", str(path)])
    assert r.returncode == 2, f"exit {r.returncode}: {r.stderr}"
    assert "io: uring is not supported with --seccomp" in r.stderr, r.stderr


def test_run_seccomp_with_auto_runs_epoll(iogate, knotd, monkeypatch):
    real = os.environ.get("DNSGATE_REAL_BIN") or dnsgate_bin()
    monkeypatch.setenv("DNSGATE_REAL_BIN", real)
    monkeypatch.setenv("DNSGATE_BIN", str(HERE / "seccomp_run.sh"))
    if "ASAN_OPTIONS" in os.environ:
        # LeakSanitizer's exit-time check needs ptrace, which no seccomp allow-list has.
        monkeypatch.setenv("ASAN_OPTIONS", os.environ["ASAN_OPTIONS"] + ":detect_leaks=0")
    gate = iogate(io="auto", allowlist=ALLOW, upstream=knotd.address)
    assert "seccomp: confined" in gate.stderr(), gate.stderr()
    assert_backend(gate, "epoll", "io_uring is not used under seccomp")
    for i in range(3):
        wire = make_query("www.example.com.", "A", ident=0xA100 + i).to_wire()
        r = gate.exchange(wire)
        assert r.response is not None and r.response[2:] == knot_answer(knotd, wire)[2:]
    gate.events(3)
    assert gate.running(), f"dnsgate died under seccomp:\n{gate.stderr()}"


# ---------------------------------------------------------------- 6. dnsgate check


@pytest.mark.parametrize("io,shown", [(None, "epoll"), ("auto", "auto"), ("epoll", "epoll"), ("uring", "uring")])
def test_check_prints_the_backend(tmp_path, io, shown):
    path = config_file(tmp_path, io)
    r = run_cli(["check", "--config", str(path)])
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith("config ok: ") and line.endswith(f", io {shown}"), line


@pytest.mark.parametrize("value", ["iouring", "EPOLL", '""'])
def test_unknown_backend_is_refused_naming_the_line(tmp_path, value):
    path = config_file(tmp_path, value)
    line = len(path.read_text().splitlines())  # `io:` is the last line
    shown = "" if value == '""' else value
    for command in ("check", "run"):
        r = run_cli([command, "--config", str(path)])
        assert r.returncode == 2, f"{command}: exit {r.returncode}: {r.stderr}"
        errors = [m for m in (ERROR_LINE.match(x) for x in r.stderr.splitlines()) if m]
        assert errors, f"{command}: no 'dnsgate: <file>:<line>: <field>: message' line: {r.stderr!r}"
        m = errors[0]
        assert m["file"] in (str(path), path.name) and int(m["line"]) == line and m["field"] == "io", r.stderr
        assert m["msg"] == f'unknown I/O backend "{shown}"; valid: auto, epoll, uring', r.stderr
        assert r.stdout == "", r.stdout


# ---------------------------------------------------------------- 7. SIGHUP


def verdicts(gate) -> int:
    log = gate.stderr()
    return log.count("reload: ") + log.count("reload refused")


def reload_and_wait(gate, before: int) -> str:
    """SIGHUP, then the reloader's verdict line (bounded wait)."""
    gate.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if verdicts(gate) > before:
            return [line for line in gate.stderr().splitlines() if "reload" in line][-1]
        time.sleep(0.01)
    raise AssertionError(f"no reload verdict logged within 5 s:\n{gate.stderr()}")


def rewrite(gate, allowlist: list[str], io: Optional[str]) -> None:
    text = render_config(cell=gate.cell, listen_port=gate.port, allowlist=allowlist, upstream=gate.upstream,
                         events_path=gate.events_path, timeout_ms=gate.timeout_ms)
    if io is not None:
        text += f"io: {io}\n"
    tmp = gate.config_path.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, gate.config_path)


RELOADS = 6


@pytest.mark.parametrize("io", BACKENDS)
def test_reload_is_in_force_at_once(iogate, knotd, io):
    """docs/running.md: an accepted reload is in force from the loop's next
    turn. On an idle proxy, the first query sent 150 ms after the
    `reload: ... accepted` line must be decided by the new allowlist. Before
    the stop eventfd the loop turned every 50 ms; its idle wait is now
    400 ms, so something must end that wait (or the config be looked at
    after it) for the log line to hold for the next query. A query answered
    just before each SIGHUP starts the loop's wait afresh; six reloads,
    alternating two allowlists, must all be in force in time."""
    first, second = ["www.example.com"], ["www.example.com", "example.org"]
    gate = iogate(io=io, allowlist=first, upstream=knotd.address)
    stale = []
    for n in range(RELOADS):
        allowed = n % 2 == 0  # example.org: allowed by `second`
        rewrite(gate, second if allowed else first, io)
        before = gate.query("www.example.com.", "A", ident=0xB100 + n)
        assert before.response is not None and before.msg.rcode() == dns.rcode.NOERROR
        verdict = reload_and_wait(gate, verdicts(gate))
        assert "accepted" in verdict, verdict
        time.sleep(0.15)
        r = gate.query("example.org.", "A", ident=0xB200 + n)
        assert r.response is not None, f"{io}: no answer"
        if (r.msg.rcode() == dns.rcode.NOERROR) != allowed:
            stale.append(n)
    evs = gate.events(2 * RELOADS)
    assert not stale, (
        f"{io}: after {len(stale)} of {RELOADS} accepted reloads (number {stale}), the first query 150 ms after "
        f"the 'reload: ... accepted' line was decided by the old allowlist: "
        + ", ".join(f"{evs[2 * n + 1]['data']['action']} (policyVersion {evs[2 * n + 1]['data']['policyVersion']})"
                    for n in stale))


@pytest.mark.parametrize("old,new", [("uring", "epoll"), ("epoll", "uring"), ("uring", None)])
def test_reload_that_changes_io_is_refused(iogate, knotd, old, new):
    first = ["www.example.com"]
    second = ["www.example.com", "example.org"]
    gate = iogate(io=old, allowlist=first, upstream=knotd.address)
    assert_backend(gate, old)
    # The new file also allows example.org: refused as a whole, that must not be in force.
    rewrite(gate, second, new)
    verdict = reload_and_wait(gate, verdicts(gate))
    assert "reload refused, the running config stays" in verdict and "io changed, which takes a restart" in verdict, (
        verdict)
    assert gate.running()
    assert_backend(gate, old)
    wire = make_query("www.example.com.", "A", ident=0xB100).to_wire()
    r = gate.exchange(wire)
    assert r.response is not None and r.response[2:] == knot_answer(knotd, wire)[2:]
    assert gate.query("example.org.").msg.rcode() == dns.rcode.REFUSED
    # The same change with io as it was: taken, on the same backend.
    rewrite(gate, second, old)
    verdict = reload_and_wait(gate, verdicts(gate))
    assert "reload: " in verdict and "accepted" in verdict, verdict
    deadline = time.monotonic() + 2
    asked = 0
    while True:
        asked += 1
        if gate.query("example.org.").msg.rcode() == dns.rcode.NOERROR:
            break
        assert time.monotonic() < deadline, "example.org still refused 2 s after the accepted reload"
        time.sleep(0.02)
    assert_backend(gate, old)
    evs = gate.events(2 + asked)
    assert [e["data"]["action"] for e in evs[:2]] == ["forward", "refuse"], evs[:2]
    assert evs[-1]["data"]["action"] == "forward" and evs[-1]["data"]["qname"] == "example.org"


# ---------------------------------------------------------------- 8. prompt stop


@pytest.mark.parametrize("io", BACKENDS)
def test_idle_proxy_stops_at_once_on_sigterm(iogate, knotd, io):
    """The loop's idle wait is 400 ms; the stop signal must cut it short.
    Each try first has a query answered, so the loop has just begun a
    fresh idle wait when SIGTERM comes: a loop that waited that wait out
    would take about 400 ms every time."""
    figures = []
    for attempt in range(3):
        gate = iogate(io=io, allowlist=ALLOW, upstream=knotd.address)
        assert_backend(gate, io)
        assert gate.query("example.net.").response is not None
        time.sleep(0.01)
        gate.stop(timeout=3)
        figures.append(gate.stop_seconds)
        if gate.stop_seconds < 0.25:
            break
    print(f"\n{io}: SIGTERM to exit: " + ", ".join(f"{s * 1000:.0f} ms" for s in figures))
    assert max(figures) < 1.0, f"{io}: an idle proxy took {figures} s to stop"
    assert min(figures) < 0.25, f"{io}: every try took at least {min(figures) * 1000:.0f} ms to stop"


# ---------------------------------------------------------------- queries in flight at SIGTERM and SIGHUP


@pytest.mark.parametrize("io", BACKENDS)
def test_answers_within_the_shutdown_grace_are_relayed(iogate, upstream, io):
    """SIGTERM with queries in flight: answers within the 200 ms grace still
    reach the workload; a query whose answer never comes ends with its event."""
    upstream.behaviour = answer_after(0.05)
    gate = iogate(io=io, allowlist=ALLOW, upstream=upstream.address, timeout_ms=5000)
    socks = [gate.send(make_query("www.example.com.", "A", ident=0xF100 + i).to_wire()) for i in range(4)]
    try:
        assert len(upstream.wait_for(4)) == 4
        gate.send_signal(signal.SIGTERM)
        for s in socks:
            data = recv_until(s, time.monotonic() + 1.0)
            assert data is not None, f"{io}: an answer within the shutdown grace was not relayed"
            assert header(data)["rcode"] == dns.rcode.NOERROR
    finally:
        for s in socks:
            s.close()
    stats = gate.stop(sig=None)
    assert gate.stop_seconds < 1.0, f"{io}: {gate.stop_seconds:.2f} s to stop"
    assert stats["relayed"] == 4 and stats["droppedAtShutdown"] == 0, stats
    assert [e["data"]["action"] for e in gate.events(4)] == ["forward"] * 4


@pytest.mark.parametrize("io", BACKENDS)
def test_reload_to_another_resolver(iogate, io):
    """A reload that changes the resolver: the new one's socket joins the
    backend (new queries go there and are answered), queries already sent
    are answered by the old one."""
    old, new = ScriptedUpstream(), ScriptedUpstream()
    try:
        old.behaviour = answer_after(0.4, address="192.0.2.1")
        new.behaviour = answer_normally
        gate = iogate(io=io, allowlist=ALLOW, upstream=old.address)
        socks = [gate.send(make_query("slow.example.com.", "A", ident=0xF200 + i).to_wire()) for i in range(3)]
        assert len(old.wait_for(3)) == 3
        text = render_config(cell=gate.cell, listen_port=gate.port, allowlist=ALLOW, upstream=new.address,
                             events_path=gate.events_path, timeout_ms=gate.timeout_ms) + f"io: {io}\n"
        gate.config_path.write_text(text)
        verdict = reload_and_wait(gate, verdicts(gate))
        assert "accepted" in verdict, verdict
        # When the reload is in force is test_reload_is_in_force_at_once's
        # matter: here, ask until the new resolver gets a query (bounded).
        asked = 0
        deadline = time.monotonic() + 2
        while not new.queries():
            asked += 1
            r = gate.query("fast.example.com.", "A", ident=0xF300 + asked, timeout=3)
            assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR, f"{io}: no answer"
            assert time.monotonic() < deadline, f"{io}: the new resolver got no query 2 s after the reload"
        for i in range(3):
            r = gate.query("fast.example.com.", "A", ident=0xF310 + i, timeout=3)
            assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR, f"{io}: the new resolver's answer"
        assert len(new.queries()) == 4, f"{io}: the new resolver got {len(new.queries())} queries, not 4"
        for s in socks:
            data = recv_until(s, time.monotonic() + 3)
            assert data is not None and header(data)["rcode"] == dns.rcode.NOERROR, f"{io}: the old resolver's answer"
            s.close()
        evs = gate.events(6 + asked)
        slow = {e["data"]["upstream"] for e in evs if e["data"]["qname"] == "slow.example.com"}
        fast = [e["data"]["upstream"] for e in evs if e["data"]["qname"] == "fast.example.com"]
        assert slow == {old.address}, slow
        assert fast[-4:] == [new.address] * 4, fast
        assert_backend(gate, io)
        gate.stop()
    finally:
        old.close()
        new.close()
    assert not old.errors and not new.errors


# ---------------------------------------------------------------- dnsgate supervise


def test_supervised_cell_with_uring_is_refused(tmp_path):
    from netns_lib import Supervisor, cell_text

    cells = tmp_path / "cells"
    cells.mkdir()
    text = cell_text(name="u", netns=f"dg-io-{os.getpid()}", port=5353, allowlist=ALLOW,
                     upstream="127.0.0.1:53", events_path=tmp_path / "u.jsonl")
    (cells / "u.yaml").write_text(text + "io: uring\n")
    sup = Supervisor(tmp_path / "sup", cells).start()
    try:
        reason = sup.wait_for("u", "refused")[0].line
        assert "uring is not supported in a supervised cell" in reason and "u.yaml" in reason, reason
        assert sup.pids("u") == [], "a proxy was started for a cell with io: uring"
        sup.stop()
    finally:
        sup.kill()
    r = run_cli(["check", "--config", str(cells / "u.yaml")])
    assert r.returncode == 0 and ", io uring" in r.stdout, r



def test_supervised_cell_with_auto_runs_epoll(rig):
    """A cell's proxy runs under the supervisor's seccomp allow-list, which
    has no io_uring_setup: `io: auto` means epoll there, said once, and the
    cell answers."""
    ns = rig.netns()
    k = rig.knotd(ns)
    cell = rig.cell("auto", ns, port=5353, allowlist=ALLOW, upstream=k.address, extra_lines=("io: auto",))
    sup = rig.supervisor()
    pid = sup.current_pid("auto")
    assert cell.probe().response is not None, f"the cell did not answer its probe:\n{sup.stderr()}"
    r = cell.query("www.example.com.", "A")
    assert r.response is not None and [a.address for a in r.msg.answer[0]] == ["192.0.2.10"], sup.stderr()
    lines = [line for line in sup.stderr().splitlines() if IO_LINE.search(line)]
    assert len(lines) == 1 and lines[0].endswith("io: epoll (io_uring is not used under seccomp)"), (
        f"expected one 'io: epoll (io_uring is not used under seccomp)' line:\n{sup.stderr()}")
    assert ring_descriptors(pid) == 0, "the cell's proxy holds an io_uring"
