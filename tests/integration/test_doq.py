"""DNS over QUIC upstreams (DESIGN.md §8, RFC 9250): dnsgate's ngtcp2 +
GnuTLS client against the quic-go test server (tests/doq_server), which
forwards to knotd or misbehaves on purpose and records every query it
received (conn, stream, id, bytes, resumed). Each case checks what the
workload gets, the event, the bytes on the wire, and that dnsgate stays
up and exits 0 with its stats on SIGTERM (the fixtures' teardown)."""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import subprocess
import time
from pathlib import Path
from typing import Optional

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from dnsgate_testlib import (
    ABSENT, EDE_NETWORK_ERROR, EDE_NO_REACHABLE_AUTHORITY, REPO, assert_servfail, check_event, endpoint, free_port,
    make_query, raw_query, wire_id,
)
from tls_peers import (  # noqa: F401 (tls_certs is a fixture)
    CERTIFICATE_FAILURES, SERVER_NAME, CertKey, certificate_failure, has_opt, padding_option, tls_certs,
)

ALLOW = ["example.com", "*.example.com", "*.example.org"]


def doq_server_bin() -> str:
    return os.environ.get("DNSGATE_DOQ_SERVER") or str(
        REPO / "build" / "tests" / "doq_server" / "dnsgate-doq-test-server")


# ------------------------------------------------------------ the DoQ test server


class DoqServer:
    """One dnsgate-doq-test-server process on 127.0.0.1:<free port>."""

    def __init__(self, workdir: Path, cert: CertKey, mode: str, upstream: Optional[str], retry: bool = False):
        binary = doq_server_bin()
        assert os.access(binary, os.X_OK), f"DoQ test server not found at {binary} (set DNSGATE_DOQ_SERVER)"
        workdir.mkdir(parents=True, exist_ok=True)
        self.mode = mode
        self.record_path = workdir / "record.jsonl"
        self.log_path = workdir / "server.log"
        cmd = [binary, "--listen", "127.0.0.1:0", "--cert", str(cert.cert), "--key", str(cert.key),
               "--mode", mode, "--record", str(self.record_path)]
        if upstream is not None:
            cmd += ["--upstream", upstream]
        if retry:
            cmd.append("--retry")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        self.port = self._wait_ready()

    def _wait_ready(self) -> int:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 10
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop(check=False)
                raise AssertionError(f"DoQ server not ready ({line!r}):\n{self.log()}")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 1)
                if not chunk:
                    continue
                line += chunk
        word, port = line.decode().split()
        assert word == "ready", line
        return int(port)

    @property
    def address(self) -> str:
        return endpoint("127.0.0.1", self.port)

    @property
    def uri(self) -> str:
        return f"doq://{self.address}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def records(self) -> list[dict]:
        try:
            text = self.record_path.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def wait_records(self, count: int, timeout: float = 3.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.records()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.records()

    def stop(self, check: bool = True) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
                raise AssertionError(f"DoQ server ignored SIGTERM:\n{self.log()}")
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if check:
            assert self.proc.returncode == 0, f"DoQ server exited with {self.proc.returncode}:\n{self.log()}"


@pytest.fixture
def doq(tmp_path, knotd, tls_certs):
    """Factory: doq(mode="normal", cert=tls_certs.server, retry=False) -> a ready DoqServer
    forwarding to knotd. Request it before `dnsgate`/`tcpgate`, so dnsgate
    stops first and the server sees its goodbye."""
    servers: list[DoqServer] = []

    def start(mode: str = "normal", cert: Optional[CertKey] = None, retry: bool = False) -> DoqServer:
        s = DoqServer(tmp_path / f"doq{len(servers)}", cert or tls_certs.server, mode, knotd.address, retry)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def doq_resolver(server: DoqServer, certs, **extra) -> dict:
    resolver = {"protocol": "doq", "address": server.address, "tlsServerName": SERVER_NAME,
                "caFile": str(certs.ca)}
    resolver.update(extra)
    return {k: v for k, v in resolver.items() if v is not None}


def answer_of(knotd, record: dict) -> bytes:
    """What knotd answers to the query the DoQ server received (and forwarded)."""
    return knotd.ask(bytes.fromhex(record["hex"]))


# ------------------------------------------------------------ answers


def test_answers_relayed_byte_for_byte_but_the_id(doq, tcpgate, knotd, tls_certs):
    s = doq()
    gate = tcpgate(allowlist=ALLOW, resolvers=[doq_resolver(s, tls_certs)])
    # dnspython over UDP, without and with EDNS.
    plain = make_query("www.example.com.", "A", ident=0x4242)
    reply = gate.exchange(plain.to_wire())
    assert wire_id(reply.response) == 0x4242
    assert reply.response[2:] == knotd.ask(plain.to_wire())[2:]
    with_opt = make_query("multi.example.com.", "A", ident=0x1111, edns=True)
    reply_opt = gate.exchange(with_opt.to_wire())
    records = s.wait_records(2)
    assert wire_id(reply_opt.response) == 0x1111
    assert reply_opt.response[2:] == answer_of(knotd, records[1])[2:]
    # dnspython over TCP.
    over_tcp = make_query("api.example.org.", "AAAA", ident=0x2222)
    gate.expect_events(1)
    answer = dns.query.tcp(over_tcp, "127.0.0.1", port=gate.port, timeout=3)
    assert answer.id == 0x2222 and answer.to_wire()[2:] == knotd.ask(over_tcp.to_wire())[2:]
    # kdig over UDP and over TCP.
    for transport in ([], ["+tcp"]):
        out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(gate.port), *transport, "+retry=0", "+timeout=3",
                              "www.example.com.", "AAAA", "+short"], capture_output=True, text=True, timeout=15)
        gate.note_datagrams(1)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["2001:db8::10"], out.stdout
    # A name off the allowlist never reaches the server.
    assert gate.query("denied.test.", "A").msg.rcode() == dns.rcode.REFUSED

    events = gate.events(6)
    check_event(events[0], reply, action="forward", reasonCode="allowed", rcode="NOERROR", answerCount=1,
                upstream=s.uri, upstreamError=ABSENT, transport="udp")
    check_event(events[1], reply_opt, action="forward", reasonCode="allowed", rcode="NOERROR", answerCount=5,
                upstream=s.uri)
    assert [e["data"]["transport"] for e in events] == ["udp", "udp", "tcp", "udp", "tcp", "udp"]
    assert all(e["data"]["upstream"] == s.uri for e in events[:5])
    assert events[5]["data"]["action"] == "refuse"
    assert len(s.records()) == 5
    stats = gate.stop()
    (resolver,) = stats["resolvers"]
    assert resolver["uri"] == s.uri
    assert resolver["queries"] == 5 and resolver["answers"] == 5 and resolver["failures"] == 0
    assert resolver["connects"] == 1 and resolver["handshakes"] == 1 and resolver["unsolicited"] == 0


def test_id_zero_and_padding_on_the_wire(doq, dnsgate, tls_certs):
    s = doq()
    gate = dnsgate(allowlist=ALLOW, resolvers=[doq_resolver(s, tls_certs)])
    with_opt = make_query("www.example.com.", "A", ident=0x5151, edns=True)
    plain = make_query("www.example.com.", "AAAA", ident=0x5252)
    assert gate.exchange(with_opt.to_wire()).msg.rcode() == dns.rcode.NOERROR
    assert gate.exchange(plain.to_wire()).msg.rcode() == dns.rcode.NOERROR
    padded, unpadded = s.wait_records(2)
    for r in (padded, unpadded):
        assert r["id"] == 0 and bytes.fromhex(r["hex"])[:2] == b"\0\0", r
        assert r["len"] == len(bytes.fromhex(r["hex"]))
    wire = bytes.fromhex(padded["hex"])
    assert padded["len"] % 128 == 0 and padded["len"] == 128, padded
    assert has_opt(wire) and padding_option(wire) == b"\0" * (128 - len(with_opt.to_wire()) - 4)
    # Apart from the id and the padding, the server saw the workload's bytes
    # (the OPT's RDLENGTH, the last two octets before the option, grew).
    original = with_opt.to_wire()
    assert wire[2:len(original) - 2] == original[2:len(original) - 2]
    assert bytes.fromhex(unpadded["hex"])[2:] == plain.to_wire()[2:], "a query without OPT goes as it came"
    assert (padded["stream"], unpadded["stream"]) == (0, 4)
    gate.events(2)


def test_server_asking_for_address_validation_with_retry(doq, dnsgate, tls_certs):
    """A server that sends a Retry first (QUIC address validation): the
    handshake starts again with its token and the query is answered."""
    s = doq(retry=True)
    gate = dnsgate(allowlist=ALLOW, resolvers=[doq_resolver(s, tls_certs)])
    assert gate.query("www.example.com.", edns=True).msg.rcode() == dns.rcode.NOERROR
    gate.events(1)
    assert [r["conn"] for r in s.wait_records(1)] == [1]
    r = gate.stop()["resolvers"][0]
    assert r["connects"] == 1 and r["handshakes"] == 1


def test_many_queries_share_one_connection(doq, dnsgate, tls_certs):
    s = doq()
    gate = dnsgate(allowlist=ALLOW, resolvers=[doq_resolver(s, tls_certs)])
    socks = [(i, gate.send(make_query(f"host{i}.example.com.", "A", ident=1000 + i).to_wire()))
             for i in range(60)]
    for i, sock in socks:
        sock.settimeout(3)
        data, _ = sock.recvfrom(4096)
        sock.close()
        msg = dns.message.from_wire(data)
        assert msg.id == 1000 + i and msg.rcode() == dns.rcode.NXDOMAIN
        assert str(msg.question[0].name) == f"host{i}.example.com."
    gate.events(60)
    records = s.wait_records(60)
    assert {r["conn"] for r in records} == {1}, "every query should share one QUIC connection"
    assert sorted(r["stream"] for r in records) == [4 * i for i in range(60)], "one stream per query"
    assert all(r["id"] == 0 for r in records)
    stats = gate.stop()
    r = stats["resolvers"][0]
    assert r["connects"] == 1 and r["handshakes"] == 1 and r["answers"] == 60


def test_session_resumed_after_the_server_closes(doq, dnsgate, tls_certs):
    s = doq("close-after-answer")
    gate = dnsgate(allowlist=ALLOW, resolvers=[doq_resolver(s, tls_certs, spkiPins=[tls_certs.server.pin])])
    for i in range(3):
        reply = gate.query(f"r{i}.example.com.", ident=70 + i)
        assert reply.msg.rcode() == dns.rcode.NXDOMAIN and reply.msg.id == 70 + i
        time.sleep(0.25)  # the server closes 100 ms after its answer
    gate.events(3)
    records = s.wait_records(3)
    assert [r["conn"] for r in records] == [1, 2, 3]
    assert [r["resumed"] for r in records] == [False, True, True], records
    stats = gate.stop()
    r = stats["resolvers"][0]
    assert r["connects"] == 3 and r["handshakes"] == 3 and r["resumed"] == 2, r
    assert r["failures"] == 0


def test_queries_stranded_by_a_close_are_sent_again(doq, dnsgate, tls_certs):
    """close-after-answer answers one query per connection: the others go
    again on the next connection until every one is answered."""
    s = doq("close-after-answer")
    gate = dnsgate(allowlist=ALLOW, timeout_ms=4000, resolvers=[doq_resolver(s, tls_certs)])
    socks = [(i, gate.send(make_query(f"s{i}.example.com.", "A", ident=300 + i).to_wire())) for i in range(5)]
    for i, sock in socks:
        sock.settimeout(4)
        data, _ = sock.recvfrom(4096)
        sock.close()
        assert wire_id(data) == 300 + i and dns.message.from_wire(data).rcode() == dns.rcode.NXDOMAIN
    events = gate.events(5)
    assert all(e["data"]["action"] == "forward" for e in events)
    conns = {r["conn"] for r in s.records()}
    assert len(conns) >= 5, s.records()
    stats = gate.stop()
    assert stats["resolvers"][0]["answers"] == 5 and stats["resolvers"][0]["failures"] == 0


# ------------------------------------------------------------ authentication


@pytest.mark.parametrize("case", CERTIFICATE_FAILURES)
def test_certificate_failures_get_servfail_at_once(doq, dnsgate, tls_certs, case):
    cert, extra, want = certificate_failure(tls_certs, case)
    s = doq(cert=cert)
    gate = dnsgate(allowlist=ALLOW, timeout_ms=3000, resolvers=[doq_resolver(s, tls_certs, **extra)])
    reply = gate.query("www.example.com.", edns=True, timeout=3)
    assert reply.elapsed < 1.5, "a certificate failure must not wait for the timeout"
    assert_servfail(reply, EDE_NETWORK_ERROR)
    (ev,) = gate.events(1)
    check_event(ev, reply, action="servfail", reasonCode="upstream_error", upstreamError=want, upstream=s.uri)
    assert s.records() == [], "nothing may be sent over an unauthenticated connection"
    assert gate.running()
    stats = gate.stop()
    assert stats["resolvers"][0]["handshakes"] == 0


def test_certificate_for_the_ip_without_a_name(doq, dnsgate, tls_certs):
    s = doq()
    gate = dnsgate(allowlist=ALLOW, resolvers=[doq_resolver(s, tls_certs, tlsServerName=None)])
    assert gate.query("www.example.com.").msg.rcode() == dns.rcode.NOERROR
    gate.events(1)


# ------------------------------------------------------------ faults


def test_stalled_handshake(doq, dnsgate, tls_certs):
    """A connection and its handshake get half of upstreamTimeoutMs: the
    query fails then (connect_timeout, EDE 23), leaving the other half for
    another resolver; a query during the backoff that follows fails at once."""
    s = doq("stall-handshake")
    gate = dnsgate(allowlist=ALLOW, timeout_ms=800, resolvers=[doq_resolver(s, tls_certs)])
    first = gate.query("www.example.com.", "A", ident=1, edns=True, timeout=3)
    assert_servfail(first, EDE_NETWORK_ERROR)
    assert 0.35 <= first.elapsed < 0.75, first.elapsed
    second = gate.query("api.example.org.", "A", ident=2, edns=True, timeout=3)
    assert_servfail(second, EDE_NETWORK_ERROR)
    assert second.elapsed < 0.75
    ev_first, ev_second = gate.events(2)
    for ev, reply in ((ev_first, first), (ev_second, second)):
        check_event(ev, reply, action="servfail", reasonCode="upstream_error", upstreamError="connect_timeout",
                    upstream=s.uri)
    assert gate.running()
    stats = gate.stop()
    assert stats["resolvers"][0]["handshakes"] == 0


def test_nonzero_answer_id_is_a_protocol_error(doq, dnsgate, tls_certs):
    s = doq("nonzero-id")
    gate = dnsgate(allowlist=ALLOW, resolvers=[doq_resolver(s, tls_certs)])
    reply = gate.query("www.example.com.", edns=True)
    assert reply.elapsed < 1.0
    assert_servfail(reply, EDE_NETWORK_ERROR)
    (record,) = s.wait_records(1)
    assert record["id"] == 0
    # Still up: a denied name is refused, and a new connection is tried later.
    assert gate.query("denied.test.").msg.rcode() == dns.rcode.REFUSED
    time.sleep(0.3)  # past the 100 ms backoff
    again = gate.query("api.example.org.", edns=True)
    assert_servfail(again, EDE_NETWORK_ERROR)
    ev, denied, ev_again = gate.events(3)
    check_event(ev, reply, action="servfail", reasonCode="upstream_error", upstreamError="doq_protocol_error",
                upstream=s.uri)
    check_event(denied, action="refuse", reasonCode="not_allowlisted")
    check_event(ev_again, again, action="servfail", upstreamError="doq_protocol_error")
    assert [r["conn"] for r in s.wait_records(2)] == [1, 2]
    stats = gate.stop()
    r = stats["resolvers"][0]
    assert r["connects"] == 2 and r["handshakes"] == 2 and r["answers"] == 0 and r["failures"] == 2


def test_reset_stream_fails_that_query_only(doq, dnsgate, tls_certs):
    s = doq("reset-stream")
    gate = dnsgate(allowlist=ALLOW, resolvers=[doq_resolver(s, tls_certs)])
    replies = [gate.query(f"x{i}.example.com.", edns=True) for i in range(3)]
    for reply in replies:
        assert reply.elapsed < 1.0
        assert_servfail(reply, EDE_NETWORK_ERROR)
    for ev, reply in zip(gate.events(3), replies):
        check_event(ev, reply, action="servfail", reasonCode="upstream_error", upstreamError="doq_stream_reset",
                    upstream=s.uri)
    records = s.wait_records(3)
    assert [r["conn"] for r in records] == [1, 1, 1], "a reset stream leaves the connection up"
    stats = gate.stop()
    assert stats["resolvers"][0]["connects"] == 1


def test_no_answer_times_out_and_the_connection_lives_on(doq, dnsgate, tls_certs):
    s = doq("no-answer")
    gate = dnsgate(allowlist=ALLOW, timeout_ms=500, resolvers=[doq_resolver(s, tls_certs)])
    replies = [gate.query(f"n{i}.example.com.", edns=True, timeout=3) for i in range(2)]
    for reply in replies:
        assert 0.45 <= reply.elapsed < 1.5
        assert_servfail(reply, EDE_NO_REACHABLE_AUTHORITY)
    for ev, reply in zip(gate.events(2), replies):
        check_event(ev, reply, action="servfail", reasonCode="upstream_timeout", upstream=s.uri)
    assert [r["conn"] for r in s.wait_records(2)] == [1, 1]
    stats = gate.stop()
    assert stats["resolvers"][0]["connects"] == 1


def test_nobody_listening_is_connect_refused(dnsgate, tls_certs):
    port = free_port()
    resolver = {"protocol": "doq", "address": f"127.0.0.1:{port}", "tlsServerName": SERVER_NAME,
                "caFile": str(tls_certs.ca)}
    gate = dnsgate(allowlist=ALLOW, resolvers=[resolver])
    reply = gate.query("www.example.com.", edns=True)
    assert reply.elapsed < 1.0
    assert_servfail(reply, EDE_NETWORK_ERROR)
    (ev,) = gate.events(1)
    check_event(ev, reply, action="servfail", reasonCode="upstream_error", upstreamError="connect_refused",
                upstream=f"doq://127.0.0.1:{port}")


def test_a_failing_doq_resolver_fails_over_to_the_next(doq, dnsgate, knotd, tls_certs):
    s = doq("reset-stream")
    gate = dnsgate(allowlist=ALLOW, resolvers=[doq_resolver(s, tls_certs),
                                               {"protocol": "do53-udp", "address": knotd.address}])
    reply = gate.query("www.example.com.", "A", ident=0x7777)
    assert reply.msg.rcode() == dns.rcode.NOERROR and reply.msg.id == 0x7777
    (ev,) = gate.events(1)
    check_event(ev, reply, action="forward", reasonCode="allowed", upstream=knotd.address)
    assert len(s.wait_records(1)) == 1
    stats = gate.stop()
    doq_stats, do53_stats = stats["resolvers"]
    assert doq_stats["failures"] == 1 and do53_stats["answers"] == 1


def test_large_answer_and_large_query_span_many_packets(doq, tcpgate, knotd, tls_certs):
    s = doq()
    gate = tcpgate(allowlist=ALLOW, resolvers=[doq_resolver(s, tls_certs)])
    # ~3.8 KB of TXT: several QUIC packets on one stream; whole over TCP...
    big = make_query("big.example.com.", "TXT", ident=0x3333)
    gate.expect_events(1)
    answer = dns.query.tcp(big, "127.0.0.1", port=gate.port, timeout=3)
    direct = dns.query.tcp(big, "127.0.0.1", port=knotd.port, timeout=3)
    assert answer.id == 0x3333 and answer.to_wire()[2:] == direct.to_wire()[2:]
    assert len(answer.to_wire()) > 3000
    # ...and header + question with TC=1 for a UDP workload without EDNS.
    truncated = gate.query("big.example.com.", "TXT", ident=0x3434)
    assert truncated.msg.flags & dns.flags.TC and not truncated.msg.answer
    # A query larger than a QUIC packet (a 2000-octet EDNS option) goes whole, padded.
    original = raw_query([b"www", b"example", b"com"], ident=0x3535,
                         edns={"options": struct.pack("!HH", 65001, 2000) + b"\x5a" * 2000})
    reply = gate.tcp_exchange(original, timeout=3)
    assert reply.response is not None and wire_id(reply.response) == 0x3535
    records = s.wait_records(3)
    assert records[2]["len"] % 128 == 0 and records[2]["len"] > 2000
    sent = bytes.fromhex(records[2]["hex"])
    rdlength_at = len(original) - 2004 - 2  # the OPT's RDLENGTH, before its one option
    assert sent[2:rdlength_at] == original[2:rdlength_at]
    assert sent[rdlength_at + 2:len(original)] == original[rdlength_at + 2:]
    assert sent[len(original):len(original) + 2] == b"\x00\x0c", "then a Padding option"
    events = gate.events(3)
    assert [e["data"]["action"] for e in events] == ["forward"] * 3
    assert gate.stop()["resolvers"][0]["connects"] == 1
