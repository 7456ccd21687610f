"""Helpers shared by the integration tests: ports, raw UDP exchanges, the
knotd upstream, a scripted upstream, the dnsgate process, event checks.

Everything here talks to loopback only and stops what it starts by PID.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
KNOTD = "/usr/sbin/knotd"
NODE = shutil.which("node") or "/usr/bin/node"


def dnsgate_bin() -> str:
    return os.environ.get("DNSGATE_BIN") or str(REPO / "build" / "dnsgate")


# ---------------------------------------------------------------- ports


def family_of(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def endpoint(host: str, port: int) -> str:
    """As the config and the events write it: 127.0.0.1:53 or [::1]:53."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def free_port(host: str = "127.0.0.1", tcp_too: bool = False) -> int:
    """A port nobody listens on right now (bound, read, closed)."""
    for _ in range(50):
        u = socket.socket(family_of(host), socket.SOCK_DGRAM)
        u.bind((host, 0))
        port = u.getsockname()[1]
        if not tcp_too:
            u.close()
            return port
        t = socket.socket(family_of(host), socket.SOCK_STREAM)
        try:
            t.bind((host, port))
        except OSError:
            continue
        finally:
            t.close()
            u.close()
        return port
    raise RuntimeError("no free port found in 50 tries")


def closed_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port that was bound and closed: datagrams to it get ICMP port unreachable."""
    return free_port(host)


# ---------------------------------------------------------------- wire helpers


def header(wire: bytes) -> dict:
    ident, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", wire[:12])
    return {
        "id": ident,
        "flags": flags,
        "qr": bool(flags & 0x8000),
        "opcode": (flags >> 11) & 0xF,
        "aa": bool(flags & 0x0400),
        "tc": bool(flags & 0x0200),
        "rd": bool(flags & 0x0100),
        "ra": bool(flags & 0x0080),
        "ad": bool(flags & 0x0020),
        "cd": bool(flags & 0x0010),
        "rcode": flags & 0xF,
        "qdcount": qd,
        "ancount": an,
        "nscount": ns,
        "arcount": ar,
    }


def with_id(wire: bytes, ident: int) -> bytes:
    return struct.pack("!H", ident) + wire[2:]


def wire_id(wire: bytes) -> int:
    return struct.unpack("!H", wire[:2])[0]


def encode_name(labels: list[bytes]) -> bytes:
    """Uncompressed wire name from raw labels (no escaping, any bytes)."""
    out = b""
    for label in labels:
        out += bytes([len(label)]) + label
    return out + b"\x00"


def raw_query(
    labels: list[bytes],
    qtype: int = 1,
    qclass: int = 1,
    ident: int = 0x1234,
    flags: int = 0x0100,
    edns: Optional[dict] = None,
) -> bytes:
    """A query built byte by byte. edns: {"payload": 1232, "do": False}."""
    arcount = 1 if edns is not None else 0
    out = struct.pack("!HHHHHH", ident, flags, 1, 0, 0, arcount)
    out += encode_name(labels) + struct.pack("!HH", qtype, qclass)
    if edns is not None:
        out += opt_record(edns.get("payload", 1232), edns.get("do", False), edns.get("options", b""))
    return out


def opt_record(payload: int = 1232, do: bool = False, options: bytes = b"", owner: bytes = b"\x00") -> bytes:
    return owner + struct.pack("!HHBBHH", 41, payload, 0, 0, 0x8000 if do else 0, len(options)) + options


def question_bytes(query_wire: bytes) -> bytes:
    """QNAME QTYPE QCLASS of an uncompressed single-question query."""
    pos = 12
    while query_wire[pos] != 0:
        pos += 1 + query_wire[pos]
    return query_wire[12 : pos + 1 + 4]


def make_query(name: str, rdtype="A", ident: int = 0x1234, edns: bool = False, do: bool = False,
               payload: int = 1232, rd: bool = True, cd: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns else False,
                               want_dnssec=do, payload=payload)
    q.id = ident
    if not rd:
        q.flags &= ~dns.flags.RD
    if cd:
        q.flags |= dns.flags.CD
    return q


def ede_codes(msg: dns.message.Message) -> list[tuple[int, str]]:
    out = []
    for opt in msg.options:
        if opt.otype == dns.edns.OptionType.EDE:
            out.append((int(opt.code), opt.text or ""))
    return out


EDE_NO_REACHABLE_AUTHORITY = 22
EDE_NETWORK_ERROR = 23


def assert_servfail(reply: "Reply", ede: int) -> None:
    """The workload got SERVFAIL carrying exactly the Extended DNS Error `ede`."""
    assert reply.response is not None, "the workload got nothing"
    msg = reply.msg
    assert msg.rcode() == dns.rcode.SERVFAIL, msg
    assert [code for code, _ in ede_codes(msg)] == [ede], msg


def expected_synth_opt(do: bool, ede: Optional[int]) -> bytes:
    """The OPT record dnsgate must append to a synthesized answer for an EDNS query."""
    options = b"" if ede is None else struct.pack("!HHH", 15, 2, ede)
    return opt_record(1232, do, options)


def assert_synthesized(reply, rcode: int, ede, opcode: int = 0):
    """Byte-level check of a response dnsgate wrote itself."""
    q, r = reply.query, reply.response
    assert r is not None, "no response"
    qh, rh = header(q), header(r)
    assert rh["id"] == qh["id"]
    assert rh["qr"], "QR must be 1"
    assert rh["opcode"] == opcode
    assert not rh["aa"] and not rh["tc"] and not rh["ad"] and not rh["flags"] & 0x0040, "AA TC AD Z must be 0"
    if opcode == 0:
        assert rh["rd"] == qh["rd"], "RD must be copied"
        assert rh["cd"] == qh["cd"], "CD must be copied"
        assert rh["ra"], "RA must be 1"
    else:
        # docs/conformance.md: the flags are defined for QUERY only
        assert not rh["rd"] and not rh["cd"] and not rh["ra"], "only QR and the opcode for another opcode"
    assert rh["rcode"] == rcode
    assert (rh["qdcount"], rh["ancount"], rh["nscount"]) == (1, 0, 0)
    question = question_bytes(q)
    assert r[12:12 + len(question)] == question, "the question must be the one asked, case included"
    rest = r[12 + len(question):]
    query_has_edns = qh["arcount"] == 1
    if not query_has_edns:
        assert rh["arcount"] == 0 and rest == b"", "no OPT when the query had none"
    else:
        do = _query_do(q)
        assert rh["arcount"] == 1
        assert rest == expected_synth_opt(do, ede), f"OPT differs: {rest.hex()}"


def _query_do(q: bytes) -> bool:
    """DO bit of the query's OPT, which the tests always put last, with no options."""
    opt = q[-11:]
    assert opt[0] == 0 and struct.unpack("!H", opt[1:3])[0] == 41 and opt[-2:] == b"\0\0", q.hex()
    return bool(struct.unpack("!H", opt[7:9])[0] & 0x8000)


# ---------------------------------------------------------------- raw UDP client


@dataclass
class Reply:
    query: bytes
    response: Optional[bytes]
    client_port: int
    sent_wall: float  # time.time() just before sending
    elapsed: float  # seconds until the response (or the timeout)
    extra: list = field(default_factory=list)  # further datagrams seen within `linger`
    host: str = "127.0.0.1"

    @property
    def msg(self) -> dns.message.Message:
        assert self.response is not None, "no response received"
        return dns.message.from_wire(self.response)

    @property
    def client(self) -> str:
        return endpoint(self.host, self.client_port)


def udp_socket(host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    s.bind((host, 0))
    return s


def udp_exchange(port: int, wire: bytes, timeout: float = 2.0, linger: float = 0.0,
                 sock: Optional[socket.socket] = None, host: str = "127.0.0.1") -> Reply:
    """Sends one datagram and waits for one answer (None on timeout). With
    linger > 0, keeps listening that long after the first answer and records
    any further datagrams in Reply.extra."""
    own = sock is None
    s = sock or udp_socket(host)
    try:
        client_port = s.getsockname()[1]
        sent_wall = time.time()
        start = time.monotonic()
        s.sendto(wire, (host, port))
        response = recv_until(s, start + timeout)
        elapsed = time.monotonic() - start
        extra = []
        if response is not None and linger > 0:
            end = time.monotonic() + linger
            while True:
                more = recv_until(s, end)
                if more is None:
                    break
                extra.append(more)
        return Reply(wire, response, client_port, sent_wall, elapsed, extra, host)
    finally:
        if own:
            s.close()


def recv_until(s: socket.socket, deadline: float) -> Optional[bytes]:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            data, _addr = s.recvfrom(65535)
            return data
        except socket.timeout:
            return None
        except ConnectionRefusedError:
            # ICMP port unreachable from an earlier send on this socket
            continue


def big_buffers(s: socket.socket, size: int = 16 << 20) -> None:
    """Room for thousands of queued datagrams (SO_RCVBUFFORCE needs root, as the tests run)."""
    try:
        s.setsockopt(socket.SOL_SOCKET, 33, size)  # SO_RCVBUFFORCE
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


# ---------------------------------------------------------------- knotd


BIG_TXT_STRINGS = 15  # 15 x 255 octets: about 3.8 KB of rdata


def big_txt_rdata() -> str:
    parts = []
    for i in range(BIG_TXT_STRINGS):
        s = (f"chunk{i:02d}-" * 40)[:255]
        parts.append('"' + s + '"')
    return " ".join(parts)


EXAMPLE_COM_ZONE = """$ORIGIN example.com.
$TTL 3600
@       SOA   ns1 hostmaster 2026112601 7200 3600 1209600 3600
@       NS    ns1
ns1     A     192.0.2.53
@       A     192.0.2.1
@       AAAA  2001:db8::1
www     A     192.0.2.10
www     AAAA  2001:db8::10
multi   A     192.0.2.21
multi   A     192.0.2.22
multi   A     192.0.2.23
multi   A     192.0.2.24
multi   A     192.0.2.25
big     TXT   {big}
""".format(big=big_txt_rdata())

EXAMPLE_ORG_ZONE = """$ORIGIN example.org.
$TTL 3600
@       SOA   ns1 hostmaster 2026112601 7200 3600 1209600 3600
@       NS    ns1
ns1     A     192.0.2.153
@       A     192.0.2.100
api     A     192.0.2.101
api     AAAA  2001:db8::101
a.b     A     192.0.2.102
"""


class SocketClient:
    """A test client that owns `self.sock`: close() and `with` close it."""

    sock: socket.socket

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Knotd:
    """knotd serving example.com. and example.org. on 127.0.0.1:<port>.
    cookies=True loads knotd's mod-cookies for every query (RFC 7873 server
    cookies, RFC 9018 format); off by default, so answers carry no cookie."""

    def __init__(self, workdir: Path, cookies: bool = False):
        self.workdir = workdir
        self.cookies = cookies
        self.port = free_port(tcp_too=True)
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = workdir / "knotd.log"

    def start(self) -> None:
        if not os.path.exists(KNOTD):
            raise AssertionError(f"{KNOTD} is missing: install knot (scripts/install-deps.sh)")
        for d in ("run", "db", "zones"):
            (self.workdir / d).mkdir(parents=True, exist_ok=True)
        (self.workdir / "zones" / "example.com.zone").write_text(EXAMPLE_COM_ZONE)
        (self.workdir / "zones" / "example.org.zone").write_text(EXAMPLE_ORG_ZONE)
        cookies = "    global-module: mod-cookies\n" if self.cookies else ""
        conf = f"""server:
    rundir: "{self.workdir}/run"
    user: root:root
    listen: 127.0.0.1@{self.port}
    udp-workers: 2
    tcp-workers: 1
    background-workers: 1
    udp-max-payload: 4096
control:
    listen: "{self.workdir}/run/knot.sock"
database:
    storage: "{self.workdir}/db"
log:
  - target: stderr
    any: info
template:
  - id: default
    storage: "{self.workdir}/zones"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
{cookies}zone:
  - domain: example.com.
    file: example.com.zone
  - domain: example.org.
    file: example.org.zone
"""
        conf_path = self.workdir / "knot.conf"
        conf_path.write_text(conf)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([KNOTD, "-c", str(conf_path)], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 10
        probe = make_query("www.example.com.", "A", ident=7)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"knotd exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            r = udp_exchange(self.port, probe.to_wire(), timeout=0.2)
            if r.response is not None and r.msg.rcode() == dns.rcode.NOERROR and r.msg.answer:
                # both zones must be loaded
                r2 = udp_exchange(self.port, make_query("api.example.org.", "A", ident=8).to_wire(), timeout=0.2)
                if r2.response is not None and r2.msg.answer:
                    return
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"knotd did not answer within 10 s:\n{self.log_path.read_text()}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ask(self, wire: bytes, timeout: float = 2.0) -> bytes:
        """Sends the same bytes to knotd directly; returns its answer."""
        r = udp_exchange(self.port, wire, timeout=timeout)
        assert r.response is not None, "knotd did not answer a direct query"
        return r.response

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


# ---------------------------------------------------------------- scripted upstream


def answer_for(query_wire: bytes, address: str = "192.0.2.1", ttl: int = 60,
               rcode: int = dns.rcode.NOERROR) -> bytes:
    """A response to `query_wire` with one A record (same id, same question)."""
    q = dns.message.from_wire(query_wire)
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    if q.question and q.question[0].rdtype == dns.rdatatype.A and rcode == dns.rcode.NOERROR:
        r.answer.append(dns.rrset.from_text(q.question[0].name, ttl, "IN", "A", address))
    return r.to_wire()


Behaviour = Callable[["ScriptedUpstream", bytes, tuple], None]


class ScriptedUpstream:
    """A UDP 'resolver' on 127.0.0.1:<port> run by a thread. Each datagram is
    recorded (bytes exactly as received) and handed to `behaviour`, which
    may answer through send()."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.sock = socket.socket(family_of(host), socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        big_buffers(self.sock)
        self.port = self.sock.getsockname()[1]
        self.received: list[tuple[bytes, tuple]] = []
        self.behaviour: Behaviour = answer_normally
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timers: list[threading.Timer] = []
        self._extra_socks: list[socket.socket] = []
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="scripted-upstream", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return endpoint(self.host, self.port)

    def _run(self):
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            with self._lock:
                self.received.append((data, addr))
                behaviour = self.behaviour
            try:
                behaviour(self, data, addr)
            except BaseException as e:  # reported by the fixture at teardown
                self.errors.append(e)

    def queries(self) -> list[bytes]:
        with self._lock:
            return [d for d, _ in self.received]

    def wait_for(self, count: int, timeout: float = 2.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.queries()
            if len(got) >= count:
                return got
            time.sleep(0.01)
        return self.queries()

    def socket_from(self, host: str, port: int = 0) -> socket.socket:
        s = socket.socket(family_of(host), socket.SOCK_DGRAM)
        s.bind((host, port))
        self._extra_socks.append(s)
        return s

    def send(self, wire: bytes, addr: tuple, delay: float = 0.0, via: Optional[socket.socket] = None) -> None:
        sock = via or self.sock
        if delay <= 0:
            sock.sendto(wire, addr)
            return
        t = threading.Timer(delay, lambda: self._send_quietly(sock, wire, addr))
        t.daemon = True
        self._timers.append(t)
        t.start()

    def _send_quietly(self, sock, wire, addr):
        if self._stop.is_set():
            return
        try:
            sock.sendto(wire, addr)
        except OSError as e:
            self.errors.append(e)

    def close(self):
        self._stop.set()
        for t in self._timers:
            t.cancel()
        self._thread.join(timeout=2)
        self.sock.close()
        for s in self._extra_socks:
            s.close()


def answer_normally(up: ScriptedUpstream, wire: bytes, addr: tuple) -> None:
    up.send(answer_for(wire), addr)


def silent(up: ScriptedUpstream, wire: bytes, addr: tuple) -> None:
    return None


def answer_after(delay: float, address: str = "192.0.2.1") -> Behaviour:
    def behaviour(up, wire, addr):
        up.send(answer_for(wire, address), addr, delay=delay)
    return behaviour


# ---------------------------------------------------------------- events


UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
POLICY_VERSION_RE = re.compile(r"^[0-9a-f]{12}$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
ACTIONS = {"forward", "refuse", "drop", "servfail"}
REASONS = {"allowed", "not_allowlisted", "malformed_query", "unsupported_opcode", "upstream_timeout",
           "upstream_error", "overloaded", "shutdown", "dnssec_bogus", "dnssec_indeterminate"}
MALFORMED_REASONS = {"too_short", "response_bit_set", "bad_question_count", "truncated_question",
                     "bad_label_type", "pointer_into_header", "pointer_not_backward", "name_too_long",
                     "truncated_record", "bad_opt_record", "trailing_data"}
STATS_KEYS = ["received", "forwarded", "relayed", "refused", "notimp", "malformed", "servfailTimeout",
              "servfailError", "overloaded", "unsolicitedUpstream", "eventsDropped", "eventBacklogWaits", "droppedAtShutdown",
              "sendFailed"]


def event_time(ev: dict) -> float:
    t = _dt.datetime.strptime(ev["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=_dt.timezone.utc)
    return t.timestamp()


def check_envelope(ev: dict, cell: str) -> None:
    """What every event line must satisfy, whatever happened to the query."""
    assert ev["specversion"] == "1.0", ev
    assert UUID4.match(ev["id"]), f"id is not a lower-case UUID v4: {ev['id']!r}"
    assert ev["source"] == f"dnsgate/cells/{cell}", ev
    assert ev["type"] == "dev.dnsgate.dns_query", ev
    assert TIME_RE.match(ev["time"]), f"time not RFC 3339 UTC with microseconds: {ev['time']!r}"
    assert ev["datacontenttype"] == "application/json", ev
    d = ev["data"]
    assert isinstance(d, dict), ev
    assert d["cell"] == cell, ev
    assert d["transport"] == "udp", ev
    assert re.match(r"^(127\.0\.0\.1|\[::1\]):\d+$", d["client"]), ev
    assert isinstance(d["size"], int) and d["size"] >= 0, ev
    assert d["action"] in ACTIONS, ev
    assert d["reasonCode"] in REASONS, ev
    assert isinstance(d["latencyUs"], int) and d["latencyUs"] >= 0, ev
    assert POLICY_VERSION_RE.match(d["policyVersion"]), f"policyVersion not 12 hex digits: {ev}"
    assert isinstance(d["answerCount"], int) and d["answerCount"] >= 0, ev
    assert "rcode" in d, f"rcode must be present (null when nothing was sent): {ev}"
    if d["reasonCode"] == "malformed_query":
        assert d["action"] == "drop", ev
        assert d["malformedReason"] in MALFORMED_REASONS, ev
        assert "subject" not in ev and "qname" not in d and "qtype" not in d and "qclass" not in d, ev
        assert d["rcode"] is None, ev
    else:
        assert "malformedReason" not in d, ev
        if "qname" in d or d["reasonCode"] != "unsupported_opcode":
            assert ev["subject"] == d["qname"], ev
            assert isinstance(d["qtype"], str) and isinstance(d["qclass"], str), ev
        else:  # another opcode without a question (docs/conformance.md)
            assert "subject" not in ev and "qtype" not in d and "qclass" not in d, ev
        assert isinstance(d["transactionId"], int) and 0 <= d["transactionId"] <= 65535, ev
    if d["reasonCode"] == "unsupported_opcode":
        assert re.match(r"^(IQUERY|STATUS|NOTIFY|UPDATE|DSO|OPCODE\d+)$", d["opcode"]), ev
    else:
        assert "opcode" not in d, ev
    if d["action"] == "drop":
        assert d["rcode"] is None, ev
    else:
        assert isinstance(d["rcode"], str), ev
    if "transactionId" not in d:
        assert d["size"] < 2, f"transactionId missing although {d['size']} octets arrived: {ev}"
    else:
        assert d["size"] >= 2, ev


def check_event(ev: dict, reply: Optional[Reply] = None, **expected) -> dict:
    """Field-by-field check of one event. `expected` maps data keys to their
    values; a value of ABSENT means the key must not be there. When `reply`
    is given, client, size, transactionId and time are checked against it."""
    d = ev["data"]
    if reply is not None:
        assert d["client"] == reply.client, (d["client"], reply.client)
        assert d["size"] == len(reply.query), (d["size"], len(reply.query))
        if len(reply.query) >= 2:
            assert d["transactionId"] == wire_id(reply.query), ev
        else:
            assert "transactionId" not in d, ev
        t = event_time(ev)
        assert reply.sent_wall - 0.05 <= t <= reply.sent_wall + reply.elapsed + 0.05, (
            f"event time {ev['time']} is not when the query was received "
            f"(sent at {reply.sent_wall:.6f}, +{reply.elapsed:.3f}s)")
    for key, value in expected.items():
        if value is ABSENT:
            assert key not in d, f"data.{key} should be absent: {ev}"
        else:
            assert key in d, f"data.{key} missing: {ev}"
            assert d[key] == value, f"data.{key} = {d[key]!r}, expected {value!r}: {ev}"
    if "qname" in expected and expected["qname"] is not ABSENT:
        assert ev["subject"] == expected["qname"], ev
    if "qname" in expected and expected["qname"] is ABSENT:
        assert "subject" not in ev, ev
    return ev


class _Absent:
    def __repr__(self):
        return "ABSENT"


ABSENT = _Absent()


def validate_with_sdk(path: Path) -> None:
    """Feeds every line of `path` to the official CloudEvents SDK (strict)."""
    script = HERE / "validate_events.js"
    assert (HERE / "node_modules" / "cloudevents").is_dir(), (
        "tests/integration/node_modules/cloudevents missing: run scripts/install-deps.sh")
    r = subprocess.run([NODE, str(script), str(path)], capture_output=True, text=True, timeout=60, cwd=HERE)
    assert r.returncode == 0, f"CloudEvents SDK rejected {path}:\n{r.stdout}\n{r.stderr}"


# ---------------------------------------------------------------- dnsgate


PROBE_NAME = "dnsgate-ready.probe.invalid."


def yaml_str(s: str) -> str:
    return json.dumps(s)


RESOLVER_KEYS = ["protocol", "address", "url", "tlsServerName", "caFile", "spkiPins"]


def yaml_value(v) -> str:
    """A scalar or a list as YAML (JSON flow style, which YAML reads as is)."""
    if isinstance(v, Path):
        v = str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(yaml_value(x) for x in v) + "]"
    return json.dumps(v)


def render_resolvers(resolvers: list[dict]) -> list[str]:
    """`dnsAuthority.resolvers` lines (DESIGN.md §8): each dict's keys in the
    order protocol, address, url, tlsServerName, caFile, spkiPins, then any
    other key as given; a None value leaves its key out."""
    lines = ["  resolvers:"]
    for r in resolvers:
        assert "protocol" in r, f"a resolver needs a protocol: {r}"
        keys = [k for k in RESOLVER_KEYS if k in r] + [k for k in r if k not in RESOLVER_KEYS]
        first = True
        for k in keys:
            if r[k] is None:
                continue
            lines.append(f"    {'- ' if first else '  '}{k}: {yaml_value(r[k])}")
            first = False
    return lines


def render_config(*, cell: str, listen_port: int, allowlist: list[str], upstream: Optional[str] = None,
                  listen_host: str = "127.0.0.1",
                  timeout_ms: Optional[int] = 2000, max_inflight: Optional[int] = 10000,
                  deny_rcode: Optional[str] = None, sink: str = "file",
                  events_path: Optional[Path] = None,
                  resolvers: Optional[list[dict]] = None, resolver_policy: Optional[str] = None,
                  dnssec: Optional[dict] = None) -> str:
    """The YAML of one cell. The resolver is `upstream` (one do53-udp), or,
    when `resolvers` is given, that list instead (dicts with protocol,
    address, url, tlsServerName, caFile, spkiPins; DESIGN.md §8);
    resolver_policy renders the top-level `resolverPolicy`; dnssec the
    top-level `dnssec:` block (DESIGN.md §9: mode, trustAnchors,
    keyCacheEntries; keys left out when absent)."""
    assert upstream is not None or resolvers is not None, "give upstream or resolvers"
    lines = [f"cell: {cell}", "listen:", f"  udp: {yaml_str(endpoint(listen_host, listen_port))}", "dnsAuthority:"]
    if allowlist:
        lines.append("  hostnameAllowlist:")
        lines += [f"    - {yaml_str(e)}" for e in allowlist]
    else:
        lines.append("  hostnameAllowlist: []")
    if resolvers is None:
        lines += ["  resolvers:", "    - protocol: do53-udp", f"      address: {yaml_str(upstream)}"]
    else:
        lines += render_resolvers(resolvers)
    if resolver_policy is not None:
        lines.append(f"resolverPolicy: {resolver_policy}")
    if timeout_ms is not None:
        lines.append(f"upstreamTimeoutMs: {timeout_ms}")
    if max_inflight is not None:
        lines.append(f"maxInflight: {max_inflight}")
    if deny_rcode is not None:
        lines.append(f"denyRcode: {deny_rcode}")
    if dnssec is not None:
        lines += render_dnssec(dnssec)
    lines += ["events:", f"  sink: {sink}"]
    if sink == "file":
        lines.append(f"  path: {yaml_str(str(events_path))}")
    return "\n".join(lines) + "\n"


DNSSEC_KEYS = ["mode", "trustAnchors", "keyCacheEntries"]


def render_dnssec(dnssec: dict) -> list[str]:
    """The `dnssec:` block: mode, trustAnchors (a block list of strings),
    keyCacheEntries, then any other key as given; None leaves a key out."""
    lines = ["dnssec:"]
    keys = [k for k in DNSSEC_KEYS if k in dnssec] + [k for k in dnssec if k not in DNSSEC_KEYS]
    for k in keys:
        v = dnssec[k]
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            lines.append(f"  {k}:" + ("" if v else " []"))
            lines += [f"    - {yaml_value(x)}" for x in v]
        else:
            lines.append(f"  {k}: {yaml_value(v)}")
    return lines


def socket_inodes_of(pid: int) -> set:
    """The inodes of the sockets process `pid` holds open."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        pass
    return inodes


def port_held_by(pid: int, port: int, host: str = "127.0.0.1", proto: str = "udp") -> bool:
    """True when process `pid` holds a socket on host:port (127.0.0.1 or ::1):
    bound, for "udp"; listening, for "tcp"."""
    inodes = socket_inodes_of(pid)
    if not inodes:
        return False
    if host == "::1":
        want, table = f"00000000000000000000000001000000:{port:04X}", f"/proc/net/{proto}6"
    else:
        want, table = f"0100007F:{port:04X}", f"/proc/net/{proto}"
    listening = "0A"  # TCP_LISTEN in /proc/net/tcp's st column
    try:
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[1] == want and cols[9] in inodes and (proto == "udp" or cols[3] == listening):
                    return True
    except OSError:
        return False
    return False


def udp_port_bound_by(pid: int, port: int, host: str = "127.0.0.1") -> bool:
    return port_held_by(pid, port, host, "udp")


class DnsGate:
    """One `dnsgate run` process, its config, its events and its stats."""

    def __init__(self, workdir: Path, *, allowlist: list[str], upstream: Optional[str] = None, cell: str = "itest",
                 timeout_ms: Optional[int] = 2000, max_inflight: Optional[int] = 10000,
                 deny_rcode: Optional[str] = None, sink: str = "file", probe: bool = True,
                 listen_host: str = "127.0.0.1", resolvers: Optional[list[dict]] = None,
                 resolver_policy: Optional[str] = None, dnssec: Optional[dict] = None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.cell = cell
        self.host = listen_host
        self.port = free_port(listen_host)
        self.upstream = upstream
        self.resolvers = resolvers
        self.sink = sink
        self.timeout_ms = timeout_ms
        self.config_path = workdir / "dnsgate.yaml"
        self.stdout_path = workdir / "stdout.txt"
        self.stderr_path = workdir / "stderr.txt"
        self.events_path = (workdir / "events.jsonl") if sink == "file" else self.stdout_path
        self.config_path.write_text(render_config(
            cell=cell, listen_port=self.port, listen_host=listen_host, allowlist=allowlist, upstream=upstream,
            timeout_ms=timeout_ms, max_inflight=max_inflight, deny_rcode=deny_rcode, sink=sink,
            events_path=self.events_path, resolvers=resolvers, resolver_policy=resolver_policy, dnssec=dnssec))
        self.proc: Optional[subprocess.Popen] = None
        self.returncode: Optional[int] = None
        self.stop_seconds: Optional[float] = None
        self.stats: Optional[dict] = None
        self.datagrams = 0  # datagrams tests sent to dnsgate (each one is one event)
        self.probes = 0  # readiness probes among them
        self.probe = probe
        self.signalled_at: Optional[float] = None

    # -- process
    def start(self) -> "DnsGate":
        binary = dnsgate_bin()
        assert os.access(binary, os.X_OK), f"dnsgate binary not found at {binary} (set DNSGATE_BIN)"
        out = open(self.stdout_path, "wb")
        err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([binary, "run", "--config", str(self.config_path)],
                                     stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        out.close()
        err.close()
        deadline = time.monotonic() + 10
        while not udp_port_bound_by(self.proc.pid, self.port, self.host):
            if self.proc.poll() is not None:
                raise AssertionError(f"dnsgate exited with {self.proc.returncode} at start:\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"dnsgate did not bind {endpoint(self.host, self.port)} within 10 s:\n{self.stderr()}")
            time.sleep(0.01)
        if self.probe:
            # One refused query proves the loop answers; its event is filtered out by events().
            r = self.exchange(make_query(PROBE_NAME, "A", ident=0xBEEF).to_wire(), timeout=3.0)
            self.probes += 1
            assert r.response is not None, f"dnsgate did not answer its readiness probe:\n{self.stderr()}"
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        """Signals dnsgate without waiting; a second SIGTERM/SIGINT may be fatal,
        so follow with stop(sig=None)."""
        assert self.proc is not None
        self.signalled_at = time.monotonic()
        self.proc.send_signal(sig)

    def stop(self, sig: Optional[int] = signal.SIGTERM, timeout: float = 3.0) -> dict:
        """Stops dnsgate with `sig` (None: it was already signalled, just wait);
        returns the stats JSON of its last stderr line."""
        assert self.proc is not None
        if self.proc.poll() is None:
            start = self.signalled_at if sig is None and self.signalled_at else time.monotonic()
            if sig is not None:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
                self.returncode = self.proc.returncode
                raise AssertionError(f"dnsgate did not exit within {timeout} s of signal {sig}:\n{self.stderr()}")
            self.stop_seconds = time.monotonic() - start
        elif self.stop_seconds is None and self.signalled_at is not None:
            self.stop_seconds = time.monotonic() - self.signalled_at  # an upper bound
        self.returncode = self.proc.returncode
        assert self.returncode == 0, f"dnsgate exited with {self.returncode}:\n{self.stderr()}"
        self.stats = parse_stats(self.stderr())
        return self.stats

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- traffic
    def exchange(self, wire: bytes, timeout: float = 2.0, linger: float = 0.0,
                 sock: Optional[socket.socket] = None) -> Reply:
        self.datagrams += 1
        return udp_exchange(self.port, wire, timeout=timeout, linger=linger, sock=sock, host=self.host)

    def query(self, name: str, rdtype="A", timeout: float = 2.0, **kw) -> Reply:
        return self.exchange(make_query(name, rdtype, **kw).to_wire(), timeout=timeout)

    def send(self, wire: bytes, sock: Optional[socket.socket] = None) -> socket.socket:
        """Sends without waiting; returns the socket to read the answer from."""
        s = sock or udp_socket(self.host)
        self.datagrams += 1
        s.sendto(wire, (self.host, self.port))
        return s

    def note_datagrams(self, n: int) -> None:
        """Counts datagrams an external client (dig, kdig) sent."""
        self.datagrams += n

    # -- events
    def event_lines(self) -> list[str]:
        try:
            data = self.events_path.read_bytes()
        except FileNotFoundError:
            return []
        text = data.decode("utf-8")
        # the sink never writes half a line: whatever is there ends with a newline
        if text and not text.endswith("\n"):
            # the writer may be mid-write of a line right now; only complete lines count
            text = text[: text.rfind("\n") + 1]
        return [line for line in text.split("\n") if line]

    def all_events(self) -> list[dict]:
        return [json.loads(line) for line in self.event_lines()]

    def events(self, n: int, timeout: float = 3.0) -> list[dict]:
        """Waits (bounded) until the sink holds the probe's event(s) plus `n`,
        returns the `n` test events in order, and checks there are no more."""
        want = self.probes + n
        deadline = time.monotonic() + timeout
        lines = self.event_lines()
        while len(lines) < want and time.monotonic() < deadline:
            time.sleep(0.02)
            lines = self.event_lines()
        evs = [json.loads(line) for line in lines]
        mine = [e for e in evs if e.get("subject") != PROBE_NAME.rstrip(".")]
        assert len(evs) - len(mine) == self.probes, f"expected {self.probes} probe events: {evs}"
        assert len(mine) == n, f"expected {n} events, found {len(mine)}: {json.dumps(mine, indent=1)}"
        return mine

    def check_all_events(self) -> None:
        """After exit: one valid event per datagram, every line a valid CloudEvent."""
        lines = self.event_lines()
        raw = self.events_path.read_bytes() if self.events_path.exists() else b""
        assert raw == b"" or raw.endswith(b"\n"), "the events sink left half a line at exit"
        evs = [json.loads(line) for line in lines]
        ids = [e["id"] for e in evs]
        assert len(ids) == len(set(ids)), "event ids are not unique"
        for ev in evs:
            check_envelope(ev, self.cell)
        assert len(evs) == self.datagrams, (
            f"{len(evs)} events for {self.datagrams} datagrams sent: {json.dumps(evs, indent=1)}")
        if lines:
            validate_with_sdk(self.events_path)


def parse_stats(stderr: str) -> dict:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "dnsgate printed nothing on stderr at exit (expected the stats JSON)"
    try:
        stats = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise AssertionError(f"last stderr line is not JSON ({e}): {lines[-1]!r}") from None
    assert isinstance(stats, dict), stats
    for key in STATS_KEYS:
        assert key in stats, f"stats JSON lacks {key}: {stats}"
        assert isinstance(stats[key], int) and stats[key] >= 0, stats
    return stats


def expect_stats(stats: dict, **nonzero) -> None:
    """Every counter is 0 except those given, which must match exactly."""
    want = {k: 0 for k in STATS_KEYS}
    want.update(nonzero)
    got = {k: stats[k] for k in STATS_KEYS}
    assert got == want, f"stats differ:\n got {got}\nwant {want}"


def run_cli(args: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess:
    return subprocess.run([dnsgate_bin(), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def gate_factory(tmp_path: Path, cls=DnsGate, stop_timeout: float = 3.0, **defaults):
    """The body of the suite's gate fixtures (conftest's `dnsgate` and
    `tcpgate`, test_valgrind's `vgate`): yields start(**kwargs), which
    starts a `cls` in its own folder; at teardown each instance still
    running gets SIGTERM and must exit 0 with its stats line, then its
    events must be one per datagram (or TCP frame) sent, each a valid
    CloudEvent (checked with the SDK)."""
    started: list[DnsGate] = []

    def start(**kwargs) -> DnsGate:
        gate = cls(tmp_path / f"gate{len(started)}", **{**defaults, **kwargs})
        started.append(gate)
        gate.start()
        return gate

    try:
        yield start
    finally:
        problems = []
        for gate in started:
            try:
                if gate.returncode is None:
                    gate.stop(sig=None if gate.signalled_at else signal.SIGTERM, timeout=stop_timeout)
                gate.check_all_events()
            except AssertionError as e:
                problems.append(f"{gate.workdir.name}: {e}")
            finally:
                gate.kill()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)
