"""Test peers for encrypted upstreams (DESIGN.md §8): certificates made at
run time, Unbound and dnsdist serving DoT and DoH on loopback, scripted
misbehaving DoT and DoH servers, and small DoT/DoH clients.

- make_certs(dir) -> TlsCerts: a test CA, a server certificate for
  `dns.test` + 127.0.0.1 + ::1, and the bad ones (wrong name, name only,
  expired, not yet valid, signed by another CA); spki_pin(cert) gives the
  RFC 7858 pin.
- Unbound / Dnsdist: real resolvers serving DoT and DoH (HTTP/2, POST
  /dns-query) with a given certificate, forwarding to knotd.
- ScriptedDotServer / ScriptedDohServer: Python servers (ssl, h2) that
  answer by forwarding to knotd or misbehave on purpose, and record what
  they received (messages, connections, SNI, ALPN, TLS version, requests).
- DotClient / DohClient: minimal clients for the peers' own tests.

Loopback only; every port is picked free at run time; every process is
stopped by its PID, every thread and socket by stop().
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union
from urllib.parse import parse_qs, urlsplit

import dns.exception
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import pytest

from dnsgate_testlib import Knotd, SocketClient, answer_for, endpoint, free_port, make_query, port_held_by

CERTTOOL = "/usr/bin/certtool"
UNBOUND = "/usr/sbin/unbound"
DNSDIST = "/usr/bin/dnsdist"
KDIG = "/usr/bin/kdig"

SERVER_NAME = "dns.test"  # the name on the good server certificates
DOH_PATH = "/dns-query"
DNS_MESSAGE = "application/dns-message"


def _require(path: str, package: str) -> None:
    if not os.access(path, os.X_OK):
        raise AssertionError(f"{path} is missing: install {package} (scripts/install-deps.sh)")


# ---------------------------------------------------------------- certificates


def spki_pin(cert: Path) -> str:
    """RFC 7858 §4.2 pin: base64 of SHA-256 of the DER SubjectPublicKeyInfo."""
    _require(CERTTOOL, "gnutls-bin")
    der = subprocess.run([CERTTOOL, "--pubkey-info", "--load-certificate", str(cert), "--outder"],
                         check=True, capture_output=True, timeout=10).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


@dataclass(frozen=True)
class CertKey:
    """A certificate (PEM, leaf only) and its private key (PEM)."""

    cert: Path
    key: Path

    @property
    def pin(self) -> str:
        return spki_pin(self.cert)


@dataclass(frozen=True)
class TlsCerts:
    """Everything make_certs() wrote. Every certificate is ECDSA P-256 and
    says TLS web server; `server` is the one a good peer presents."""

    dir: Path
    ca: Path  # the test CA's certificate: what a config's caFile names
    ca_key: Path
    server: CertKey  # DNS dns.test, IP 127.0.0.1 and ::1, signed by ca, valid now
    name_only: CertKey  # DNS dns.test only (no IP SAN), signed by ca
    wrong_name: CertKey  # DNS other.test only (no IP SAN), signed by ca
    expired: CertKey  # dns.test + IPs, signed by ca, valid 2020-01-01..2020-02-01 only
    not_yet_valid: CertKey  # dns.test + IPs, signed by ca, valid from 2090 on
    other_ca: Path  # an unrelated CA
    other_ca_key: Path
    other_ca_server: CertKey  # dns.test + IPs, valid now, signed by other_ca
    server_name: str = SERVER_NAME


# The ways an upstream's authentication must fail (DESIGN.md §8), each a
# certificate the server presents and the resolver fields that go with it.
CERTIFICATE_FAILURES = ["wrong_ca", "wrong_name", "expired", "ip_not_in_certificate", "pin_mismatch"]


def certificate_failure(certs: TlsCerts, case: str) -> tuple[CertKey, dict, str]:
    """(the server's certificate, resolver fields to add, the event's
    upstreamError) for one of CERTIFICATE_FAILURES. A field set to None is
    left out of the resolver (ip_not_in_certificate drops tlsServerName)."""
    cert = {"wrong_ca": certs.other_ca_server, "wrong_name": certs.wrong_name, "expired": certs.expired,
            "ip_not_in_certificate": certs.name_only, "pin_mismatch": certs.server}[case]
    extra: dict = {}
    if case == "ip_not_in_certificate":
        extra["tlsServerName"] = None
    if case == "pin_mismatch":
        extra["spkiPins"] = [certs.other_ca_server.pin]
    return cert, extra, "tls_pin_mismatch" if case == "pin_mismatch" else "tls_certificate"


def _certtool(args: list[str]) -> None:
    r = subprocess.run([CERTTOOL, *args], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError(f"certtool {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")


def _key(path: Path) -> Path:
    _certtool(["--generate-privkey", "--key-type=ecdsa", "--curve=secp256r1", "--no-text",
               "--outfile", str(path)])
    return path


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _leaf(d: Path, stem: str, ca: Path, ca_key: Path, *, dns_names: list[str], ips: list[str],
          activation: str, expiration: str) -> CertKey:
    key = _key(d / f"{stem}.key")
    lines = [f'cn = "{dns_names[0] if dns_names else ips[0]}"', f'serial = {int(time.time() * 1000) & 0x7FFFFFFF}']
    lines += [f'dns_name = "{n}"' for n in dns_names]
    lines += [f'ip_address = "{ip}"' for ip in ips]
    lines += ["tls_www_server", "signing_key", "encryption_key",
              f'activation_date = "{activation}"', f'expiration_date = "{expiration}"']
    tmpl = d / f"{stem}.tmpl"
    tmpl.write_text("\n".join(lines) + "\n")
    cert = d / f"{stem}.pem"
    _certtool(["--generate-certificate", "--load-privkey", str(key), "--load-ca-certificate", str(ca),
               "--load-ca-privkey", str(ca_key), "--template", str(tmpl), "--no-text", "--outfile", str(cert)])
    return CertKey(cert, key)


def _ca(d: Path, stem: str, cn: str, activation: str, expiration: str) -> tuple[Path, Path]:
    key = _key(d / f"{stem}.key")
    tmpl = d / f"{stem}.tmpl"
    tmpl.write_text(f'cn = "{cn}"\nca\ncert_signing_key\ncrl_signing_key\n'
                    f'activation_date = "{activation}"\nexpiration_date = "{expiration}"\n')
    cert = d / f"{stem}.pem"
    _certtool(["--generate-self-signed", "--load-privkey", str(key), "--template", str(tmpl), "--no-text",
               "--outfile", str(cert)])
    return cert, key


def make_certs(d: Path) -> TlsCerts:
    """Writes the test PKI into directory `d` (made if missing), with certtool."""
    _require(CERTTOOL, "gnutls-bin")
    d.mkdir(parents=True, exist_ok=True)
    now = time.time()
    since = _utc(now - 86400)  # a day of slack for clocks
    until = _utc(now + 30 * 86400)
    ca, ca_key = _ca(d, "ca", "dnsgate test CA", _utc(now - 10 * 365 * 86400), _utc(now + 100 * 365 * 86400))
    other_ca, other_ca_key = _ca(d, "other-ca", "unrelated test CA", since, until)
    ips = ["127.0.0.1", "::1"]
    return TlsCerts(
        dir=d, ca=ca, ca_key=ca_key,
        server=_leaf(d, "server", ca, ca_key, dns_names=[SERVER_NAME], ips=ips, activation=since, expiration=until),
        name_only=_leaf(d, "name-only", ca, ca_key, dns_names=[SERVER_NAME], ips=[], activation=since,
                        expiration=until),
        wrong_name=_leaf(d, "wrong-name", ca, ca_key, dns_names=["other.test"], ips=[], activation=since,
                         expiration=until),
        expired=_leaf(d, "expired", ca, ca_key, dns_names=[SERVER_NAME], ips=ips,
                      activation="2020-01-01 00:00:00 UTC", expiration="2020-02-01 00:00:00 UTC"),
        not_yet_valid=_leaf(d, "not-yet-valid", ca, ca_key, dns_names=[SERVER_NAME], ips=ips,
                            activation="2090-01-01 00:00:00 UTC", expiration="2091-01-01 00:00:00 UTC"),
        other_ca=other_ca, other_ca_key=other_ca_key,
        other_ca_server=_leaf(d, "other-ca-server", other_ca, other_ca_key, dns_names=[SERVER_NAME], ips=ips,
                              activation=since, expiration=until),
    )


# ---------------------------------------------------------------- wire helpers


def frame(wire: bytes) -> bytes:
    """RFC 7858/7766 framing: the 2-octet length, then the message."""
    return struct.pack("!H", len(wire)) + wire


def has_opt(wire: bytes) -> bool:
    """True when the message carries an OPT record (parsed with dnspython)."""
    return dns.message.from_wire(wire).edns >= 0


def padding_option(wire: bytes) -> Optional[bytes]:
    """The EDNS Padding option's (code 12) content, or None when there is none."""
    msg = dns.message.from_wire(wire)
    for opt in msg.options:
        if int(opt.otype) == 12:
            return bytes(getattr(opt, "data", b""))
    return None


def knotd_answer(upstream: Optional[str], wire: bytes, timeout: float = 2.0) -> bytes:
    """What knotd at `upstream` ("127.0.0.1:PORT") answers to `wire`: over UDP,
    and again over TCP when the UDP answer is truncated. With no upstream, a
    made-up answer (dnsgate_testlib.answer_for: one A 192.0.2.1)."""
    if upstream is None:
        return answer_for(wire)
    host, port = upstream.rsplit(":", 1)
    host = host.strip("[]")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(wire, (host, int(port)))
        answer, _ = s.recvfrom(65535)
    if not answer[2] & 0x02:  # TC
        return answer
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(frame(wire))
        return _recv_frame_blocking(s)


def _recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError(f"end of stream after {len(out)} of {n} octets")
        out += chunk
    return out


def _recv_frame_blocking(s: socket.socket) -> bytes:
    n = struct.unpack("!H", _recv_exact(s, 2))[0]
    return _recv_exact(s, n)


# ---------------------------------------------------------------- clients


def client_context(ca: Optional[Path] = None, *, alpn: Optional[list[str]] = None,
                   verify: bool = True) -> ssl.SSLContext:
    """A TLS >= 1.2 client context trusting `ca` only (verify=False: no checks)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if verify:
        assert ca is not None, "verify=True needs a CA file"
        ctx.load_verify_locations(cafile=str(ca))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


class DotClient(SocketClient):
    """One DoT connection. server_name is both SNI and the checked name."""

    def __init__(self, port: int, *, ca: Optional[Path] = None, server_name: Optional[str] = SERVER_NAME,
                 host: str = "127.0.0.1", verify: bool = True, timeout: float = 3.0):
        ctx = client_context(ca, verify=verify)
        raw = socket.create_connection((host, port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname=server_name)
        self.buf = b""

    def send(self, wire: bytes) -> None:
        self.sock.sendall(frame(wire))

    def recv(self, timeout: float = 3.0) -> Optional[bytes]:
        """One message; None on timeout or end of stream."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                n = struct.unpack("!H", self.buf[:2])[0]
                if len(self.buf) >= 2 + n:
                    out, self.buf = self.buf[2:2 + n], self.buf[2 + n:]
                    return out
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLError, ConnectionError):
                return None
            if not data:
                return None
            self.buf += data

    def exchange(self, wire: bytes, timeout: float = 3.0) -> Optional[bytes]:
        self.send(wire)
        return self.recv(timeout)


def dot_exchange(port: int, wire: bytes, **kw) -> Optional[bytes]:
    """One query on a fresh DoT connection (DotClient's keywords)."""
    timeout = kw.pop("timeout", 3.0)
    with DotClient(port, timeout=timeout, **kw) as c:
        return c.exchange(wire, timeout)


@dataclass
class DohResponse:
    status: Optional[int] = None
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    ended: bool = False
    reset: Optional[int] = None  # the RST_STREAM error code, if the stream was reset
    goaway: bool = False  # the connection got GOAWAY while this stream was open
    closed: bool = False  # the connection closed before the stream ended


class DohClient(SocketClient):
    """One HTTP/2 connection (ALPN h2) with a helper for concurrent POSTs."""

    def __init__(self, port: int, *, ca: Optional[Path] = None, server_name: Optional[str] = SERVER_NAME,
                 host: str = "127.0.0.1", verify: bool = True, timeout: float = 3.0):
        ctx = client_context(ca, alpn=["h2"], verify=verify)
        raw = socket.create_connection((host, port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname=server_name)
        assert self.sock.selected_alpn_protocol() == "h2", self.sock.selected_alpn_protocol()
        self.authority = f"{server_name or host}:{port}"
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        self.sock.sendall(self.h2.data_to_send())
        self.responses: dict[int, DohResponse] = {}
        self.goaway = False
        self.closed = False

    def send_request(self, body: bytes = b"", *, method: str = "POST", path: str = DOH_PATH,
                     content_type: Optional[str] = DNS_MESSAGE) -> int:
        sid = self.h2.get_next_available_stream_id()
        headers = [(":method", method), (":scheme", "https"), (":authority", self.authority), (":path", path),
                   ("accept", DNS_MESSAGE)]
        if method == "POST":
            if content_type is not None:
                headers.append(("content-type", content_type))
            headers.append(("content-length", str(len(body))))
            self.h2.send_headers(sid, headers)
            self.h2.send_data(sid, body, end_stream=True)
        else:
            self.h2.send_headers(sid, headers, end_stream=True)
        self.responses[sid] = DohResponse()
        self.sock.sendall(self.h2.data_to_send())
        return sid

    def wait(self, sids: list[int], timeout: float = 3.0) -> list[DohResponse]:
        deadline = time.monotonic() + timeout
        while not all(self._done(s) for s in sids) and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            except (ssl.SSLError, ConnectionError):
                data = b""
            if not data:
                self.closed = True
                break
            for ev in self.h2.receive_data(data):
                self._event(ev)
            out = self.h2.data_to_send()
            if out:
                try:
                    self.sock.sendall(out)
                except OSError:
                    pass
        if self.closed:
            for s in sids:
                if not self._done(s):
                    self.responses[s].closed = True
        return [self.responses[s] for s in sids]

    def pump(self, seconds: float) -> None:
        """Reads frames for `seconds` or until the connection closes (GOAWAY, EOF)."""
        deadline = time.monotonic() + seconds
        while not self.closed and time.monotonic() < deadline:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return
            except (ssl.SSLError, ConnectionError):
                data = b""
            if not data:
                self.closed = True
                return
            for ev in self.h2.receive_data(data):
                self._event(ev)

    def _done(self, sid: int) -> bool:
        r = self.responses[sid]
        return r.ended or r.reset is not None

    def _event(self, ev) -> None:
        if isinstance(ev, h2.events.ResponseReceived):
            r = self.responses[ev.stream_id]
            r.headers = dict(ev.headers)
            r.status = int(r.headers[":status"])
        elif isinstance(ev, h2.events.DataReceived):
            self.responses[ev.stream_id].body += ev.data
            self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.responses[ev.stream_id].ended = True
        elif isinstance(ev, h2.events.StreamReset):
            if ev.stream_id in self.responses:
                self.responses[ev.stream_id].reset = int(ev.error_code)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = True
            for r in self.responses.values():
                if not (r.ended or r.reset is not None):
                    r.goaway = True

    def request(self, body: bytes, timeout: float = 3.0, **kw) -> DohResponse:
        return self.wait([self.send_request(body, **kw)], timeout)[0]


def doh_exchange(port: int, wire: bytes, **kw) -> DohResponse:
    """One POST on a fresh HTTP/2 connection (DohClient's keywords)."""
    timeout = kw.pop("timeout", 3.0)
    with DohClient(port, timeout=timeout, **kw) as c:
        return c.request(wire, timeout=timeout)


# ---------------------------------------------------------------- Unbound and dnsdist


class _Daemon:
    """A peer process in the foreground, started and stopped by PID."""

    name = "daemon"

    def __init__(self, workdir: Path, cert: CertKey, upstream: str, host: str = "127.0.0.1"):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.cert = cert
        self.upstream = upstream  # knotd, "127.0.0.1:PORT"
        self.host = host
        self.dot_port = free_port(host, tcp_too=True)
        self.doh_port = free_port(host, tcp_too=True)
        while self.doh_port == self.dot_port:
            self.doh_port = free_port(host, tcp_too=True)
        self.log_path = workdir / f"{self.name}.log"
        self.proc: Optional[subprocess.Popen] = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def dot_address(self) -> str:
        return endpoint(self.host, self.dot_port)

    @property
    def doh_address(self) -> str:
        return endpoint(self.host, self.doh_port)

    @property
    def doh_url(self) -> str:
        """The URL with the certificate's name; connect to doh_address."""
        return f"https://{SERVER_NAME}:{self.doh_port}{DOH_PATH}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ports(self) -> list[int]:
        return [self.dot_port, self.doh_port]

    def start(self, timeout: float = 10.0) -> "_Daemon":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while not all(port_held_by(self.proc.pid, p, self.host, "tcp") for p in self._ports()):
            self._check_alive(deadline)
            time.sleep(0.02)
        # listening is not serving yet (dnsdist: the backend must be up): wait for real answers
        probe = make_query("www.example.com.", "A", ident=0x5EED).to_wire()
        last = None
        while True:
            self._check_alive(deadline, last)
            try:
                a = dot_exchange(self.dot_port, probe, host=self.host, verify=False, timeout=1.0)
                if a is not None and dns.message.from_wire(a).answer:
                    r = doh_exchange(self.doh_port, probe, host=self.host, verify=False, timeout=1.0)
                    if r.status == 200 and dns.message.from_wire(r.body).answer:
                        return self
                    last = f"DoH probe: {r}"
                else:
                    last = f"DoT probe answer: {a!r}"
            except (OSError, ssl.SSLError, h2.exceptions.ProtocolError, dns.exception.DNSException) as e:
                last = repr(e)
            time.sleep(0.1)

    def _check_alive(self, deadline: float, last: Optional[str] = None) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode} at start:\n{self.log()}")
        if time.monotonic() > deadline:
            self.stop()
            raise AssertionError(f"{self.name} did not serve DoT and DoH in time (last probe: {last}):\n{self.log()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    close = stop

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Unbound(_Daemon):
    """unbound 1.17 on loopback: DoT on dot_port and DoH (HTTP/2 only, path
    /dns-query) on doh_port, presenting `cert`, forwarding every name to
    knotd at `upstream`. Iterator module only (no DNSSEC validation), no
    chroot, no remote control, cache on, foreground (-d) as root."""

    name = "unbound"

    def __init__(self, workdir: Path, cert: CertKey, upstream: str, host: str = "127.0.0.1"):
        super().__init__(workdir, cert, upstream, host)
        self.config_path = workdir / "unbound.conf"

    def _command(self) -> list[str]:
        _require(UNBOUND, "unbound")
        kh, kp = self.upstream.rsplit(":", 1)
        conf = f"""server:
    username: ""
    chroot: ""
    directory: "{self.workdir}"
    pidfile: "{self.workdir}/unbound.pid"
    use-syslog: no
    logfile: ""
    log-time-ascii: yes
    verbosity: 1
    num-threads: 1
    do-ip6: {"yes" if ":" in self.host else "no"}
    interface: {self.host}@{self.dot_port}
    interface: {self.host}@{self.doh_port}
    tls-port: {self.dot_port}
    https-port: {self.doh_port}
    http-endpoint: "{DOH_PATH}"
    http-notls-downstream: no
    tls-service-key: "{self.cert.key}"
    tls-service-pem: "{self.cert.cert}"
    do-not-query-localhost: no
    module-config: "iterator"
    access-control: 127.0.0.0/8 allow
    access-control: ::1/128 allow
    incoming-num-tcp: 100
    tcp-idle-timeout: 30000
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: {kh.strip("[]")}@{kp}
"""
        self.config_path.write_text(conf)
        return [UNBOUND, "-d", "-c", str(self.config_path)]


class Dnsdist(_Daemon):
    """dnsdist 1.7 on loopback: addTLSLocal on dot_port, addDOHLocal (path
    /dns-query) on doh_port and plain Do53 on do53_port (so it never binds
    :53), presenting `cert`, forwarding to knotd at `upstream` (newServer,
    health-checked with example.com.). No console, no security polling,
    `--supervised --disable-syslog` in the foreground."""

    name = "dnsdist"

    def __init__(self, workdir: Path, cert: CertKey, upstream: str, host: str = "127.0.0.1"):
        super().__init__(workdir, cert, upstream, host)
        self.do53_port = free_port(host, tcp_too=True)
        while self.do53_port in (self.dot_port, self.doh_port):
            self.do53_port = free_port(host, tcp_too=True)
        self.config_path = workdir / "dnsdist.conf"

    def _command(self) -> list[str]:
        _require(DNSDIST, "dnsdist")

        def lua(s: str) -> str:
            return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

        conf = f"""setSecurityPollSuffix("")
setLocal({lua(endpoint(self.host, self.do53_port))})
newServer({{address={lua(self.upstream)}, name="knotd", checkName="example.com.", checkInterval=1}})
addTLSLocal({lua(endpoint(self.host, self.dot_port))}, {lua(str(self.cert.cert))}, {lua(str(self.cert.key))})
addDOHLocal({lua(endpoint(self.host, self.doh_port))}, {lua(str(self.cert.cert))}, {lua(str(self.cert.key))}, {lua(DOH_PATH)})
"""
        self.config_path.write_text(conf)
        return [DNSDIST, "--supervised", "--disable-syslog", "-C", str(self.config_path)]

    def _ports(self) -> list[int]:
        return [self.dot_port, self.doh_port, self.do53_port]


# ---------------------------------------------------------------- scripted servers

NORMAL = "normal"  # forward to knotd (or answer_for without upstream) and answer
SILENT = "silent"  # record, never answer
STALL_HANDSHAKE = "stall_handshake"  # accept TCP, never speak TLS
CLOSE_AFTER_ANSWER = "close_after_answer"  # answer the first query of a connection, then close it
# DoT only
WRONG_ID = "wrong_id"  # the answer with another message id
WRONG_QUESTION = "wrong_question"  # an answer (same id) to another name
HUGE_LENGTH = "huge_length"  # length prefix 0xFFFF, then fewer octets (the answer), then close
HUGE_LENGTH_HOLD = "huge_length_hold"  # the same, but the connection stays open
OUT_OF_ORDER = "out_of_order"  # answers of pipelined queries in reverse order (see ScriptedDotServer)
# DoH only
STATUS_500 = "status_500"
STATUS_404 = "status_404"
WRONG_CONTENT_TYPE = "wrong_content_type"  # 200 with content-type text/plain (and the real answer)
RESET_STREAM = "reset_stream"  # RST_STREAM (INTERNAL_ERROR) instead of an answer
GOAWAY = "goaway"  # answer the first request, then GOAWAY and close the connection

RECV_TICK = 0.02  # how often a connection thread looks at its queued work and at stop()


def wrong_id_answer(answer: bytes) -> bytes:
    return struct.pack("!H", struct.unpack("!H", answer[:2])[0] ^ 0x5A5A) + answer[2:]


def wrong_question_answer(query: bytes) -> bytes:
    """A NOERROR answer with the query's id to `wrong-question.example.com.` A."""
    q = dns.message.from_wire(query)
    r = dns.message.make_response(q)
    other = dns.name.from_text("wrong-question.example.com.")
    r.question = [dns.rrset.RRset(other, dns.rdataclass.IN, dns.rdatatype.A)]
    r.answer = [dns.rrset.from_text(other, 60, "IN", "A", "192.0.2.99")]
    return r.to_wire()


@dataclass
class TlsConnInfo:
    """One accepted TCP connection of a scripted server."""

    number: int  # 1, 2, ... since creation, across restarts
    accepted_at: float  # time.monotonic()
    handshake_ok: bool = False
    handshake_error: Optional[str] = None
    sni: Optional[str] = None
    alpn: Optional[str] = None
    version: Optional[str] = None  # "TLSv1.3"
    session_reused: bool = False


class _ScriptedTlsServer:
    """Listener thread + one thread per connection; TLS 1.2+ with `cert`."""

    kind = "tls"

    def __init__(self, cert: CertKey, behaviour: Union[str, Callable] = NORMAL, *, upstream: Optional[str] = None,
                 host: str = "127.0.0.1", port: Optional[int] = None,
                 max_version: Optional[ssl.TLSVersion] = None, alpn: Optional[list[str]] = None):
        self.cert = cert
        self.behaviour = behaviour
        self.upstream = upstream
        self.upstream_timeout = 2.0  # seconds NORMAL & co. wait for knotd (per UDP or TCP exchange)
        self.host = host
        self.port = port or free_port(host, tcp_too=True)
        self.conns: list[TlsConnInfo] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._workers: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._sni: dict[int, str] = {}
        # one context for the server's life: session tickets survive a restart
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if max_version is not None:
            self.ctx.maximum_version = max_version
        self.ctx.load_cert_chain(str(cert.cert), str(cert.key))
        if alpn:
            self.ctx.set_alpn_protocols(alpn)
        self.ctx.sni_callback = self._on_sni
        self.start()

    # -- recorded data
    @property
    def address(self) -> str:
        return endpoint(self.host, self.port)

    @property
    def connections(self) -> int:
        """TCP connections accepted since creation (across restarts)."""
        with self._lock:
            return len(self.conns)

    @property
    def handshakes(self) -> int:
        """Completed TLS handshakes."""
        with self._lock:
            return sum(1 for c in self.conns if c.handshake_ok)

    @property
    def sni(self) -> list[Optional[str]]:
        """The SNI of each completed handshake, in order (None: no SNI sent)."""
        with self._lock:
            return [c.sni for c in self.conns if c.handshake_ok]

    @property
    def handshake_failures(self) -> list[str]:
        """Why each failed handshake failed (a client that rejects the
        certificate shows here as an alert or an end of stream)."""
        with self._lock:
            return [c.handshake_error for c in self.conns if c.handshake_error is not None]

    def wait_connections(self, count: int, timeout: float = 3.0) -> int:
        deadline = time.monotonic() + timeout
        while self.connections < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.connections

    def wait_settled(self, timeout: float = 3.0) -> list[TlsConnInfo]:
        """Waits until every accepted connection finished its handshake, one
        way or the other (not for STALL_HANDSHAKE); returns conns."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(c.handshake_ok or c.handshake_error is not None for c in self.conns):
                    break
            time.sleep(0.01)
        with self._lock:
            return list(self.conns)

    # -- life
    def start(self) -> None:
        """Listens (again) on the same port."""
        assert self._thread is None, "already running"
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(128)
        s.settimeout(0.05)
        self._listener = s
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept_loop, name=f"scripted-{self.kind}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops listening and closes every connection (peers see EOF/RST)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            assert not self._thread.is_alive(), "scripted server thread did not stop"
            self._thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            socks, self._socks = self._socks, []
            workers, self._workers = self._workers, []
        for s in socks:
            _shutdown(s)
        for w in workers:
            w.join(timeout=2)
            assert not w.is_alive(), "scripted server connection thread did not stop"
        for s in socks:
            try:
                s.close()
            except OSError:
                pass

    close = stop

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _on_sni(self, sslsock, server_name, ctx) -> None:
        with self._lock:
            self._sni[id(sslsock)] = server_name

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                raw, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                info = TlsConnInfo(number=len(self.conns) + 1, accepted_at=time.monotonic())
                self.conns.append(info)
                self._socks.append(raw)
                w = threading.Thread(target=self._serve, args=(raw, info), daemon=True,
                                     name=f"scripted-{self.kind}-conn{info.number}")
                self._workers.append(w)
            w.start()

    def _serve(self, raw: socket.socket, info: TlsConnInfo) -> None:
        sock = raw  # the TLS socket once wrapped (wrapping detaches raw)
        try:
            if self.behaviour == STALL_HANDSHAKE:
                while not self._stopping.wait(0.05):
                    pass
                return
            raw.settimeout(5.0)
            tls = self.ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            sock = tls
            with self._lock:
                self._socks.append(tls)
            try:
                tls.do_handshake()
            except (ssl.SSLError, OSError) as e:
                with self._lock:
                    info.sni = self._sni.pop(id(tls), None)
                    info.handshake_error = f"{type(e).__name__}: {e}"
                return
            with self._lock:
                info.sni = self._sni.pop(id(tls), None)
                info.alpn = tls.selected_alpn_protocol()
                info.version = tls.version()
                info.session_reused = tls.session_reused
                info.handshake_ok = True
            tls.settimeout(RECV_TICK)
            self._session(tls, info)
        except BaseException as e:  # reported to the test through .errors
            if not self._stopping.is_set():
                self.errors.append(e)
        finally:
            _shutdown(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _session(self, tls: ssl.SSLSocket, info: TlsConnInfo) -> None:
        raise NotImplementedError

    def _recv(self, tls: ssl.SSLSocket) -> Optional[bytes]:
        """Some octets; b"" on end of stream; None when nothing came within RECV_TICK."""
        try:
            return tls.recv(65536)
        except socket.timeout:
            return None
        except (ssl.SSLError, ConnectionError, OSError):
            return b""


def _shutdown(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


class _Conn:
    """What every scripted connection has. Only the connection's own thread
    writes to its TLS socket: behaviours run on it, and later() queues work
    that thread runs when due (within ~20 ms)."""

    def __init__(self, server: "_ScriptedTlsServer", tls: ssl.SSLSocket, info: TlsConnInfo):
        self.server = server
        self.tls = tls
        self.info = info
        self.number = info.number
        self.closed = False
        self._due: list[tuple[float, Callable[[], None]]] = []

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        self._due.append((time.monotonic() + delay, fn))

    def run_due(self) -> None:
        now = time.monotonic()
        ready = [item for item in self._due if item[0] <= now]
        if not ready:
            return
        self._due = [item for item in self._due if item[0] > now]
        for _, fn in sorted(ready, key=lambda item: item[0]):
            if not self.closed:
                fn()

    def send_raw(self, data: bytes) -> None:
        if self.closed or self.server._stopping.is_set():
            return
        try:
            self.tls.settimeout(2.0)
            self.tls.sendall(data)
        except OSError:
            pass
        finally:
            try:
                self.tls.settimeout(RECV_TICK)
            except OSError:
                pass

    def close(self) -> None:
        """Closes this connection (no TLS close_notify: a plain FIN)."""
        if self.closed:
            return
        self.closed = True
        _shutdown(self.tls)


class DotConn(_Conn):
    """One DoT connection of a ScriptedDotServer, handed to a callable behaviour."""

    def __init__(self, server: "ScriptedDotServer", tls: ssl.SSLSocket, info: TlsConnInfo):
        super().__init__(server, tls, info)
        self.held: list[tuple[bytes, float]] = []  # out_of_order: answers not yet sent

    def send_frame(self, wire: bytes, delay: float = 0.0) -> None:
        if delay > 0:
            self.later(delay, lambda: self.send_frame(wire))
            return
        self.send_raw(frame(wire))


DotBehaviour = Callable[["ScriptedDotServer", DotConn, bytes], None]


@dataclass
class DotQuery:
    wire: bytes  # the DNS message as received (without the length prefix)
    conn: int  # TlsConnInfo.number
    at: float  # time.monotonic()


class ScriptedDotServer(_ScriptedTlsServer):
    """DNS over TLS (RFC 7858) on host:port, one thread per connection.

    behaviour: one of NORMAL, SILENT, STALL_HANDSHAKE, CLOSE_AFTER_ANSWER,
    WRONG_ID, WRONG_QUESTION, HUGE_LENGTH, HUGE_LENGTH_HOLD, OUT_OF_ORDER, or
    a callable(server, conn: DotConn, wire) that answers with
    conn.send_frame(). It may be changed while running. NORMAL forwards to
    knotd at `upstream` (UDP, TCP when truncated), or answers one A
    192.0.2.1 when upstream is None. `answer_delay` (seconds) delays every
    answer of the built-in behaviours. OUT_OF_ORDER holds each answer until
    the next query of the connection arrives, then sends the newer answer
    first; a held answer goes after 0.3 s alone.

    Recorded: received (DotQuery list), queries(), conn_numbers(), conns
    (TlsConnInfo: SNI, version, session_reused, handshake_error),
    connections, handshakes, sni. stop() then start() listens again on the
    same port."""

    kind = "dot"

    def __init__(self, cert: CertKey, behaviour: Union[str, DotBehaviour] = NORMAL, **kw):
        self.received: list[DotQuery] = []
        self.answer_delay = 0.0
        super().__init__(cert, behaviour, **kw)

    def queries(self) -> list[bytes]:
        with self._lock:
            return [q.wire for q in self.received]

    def conn_numbers(self) -> list[int]:
        with self._lock:
            return [q.conn for q in self.received]

    def wait_for(self, count: int, timeout: float = 3.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.queries()) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.queries()

    def _session(self, tls: ssl.SSLSocket, info: TlsConnInfo) -> None:
        conn = DotConn(self, tls, info)
        buf = b""
        while not self._stopping.is_set() and not conn.closed:
            data = self._recv(tls)
            conn.run_due()
            self._flush_held(conn)
            if data is None:
                continue
            if not data:
                return
            buf += data
            while len(buf) >= 2:
                n = struct.unpack("!H", buf[:2])[0]
                if len(buf) < 2 + n:
                    break
                wire, buf = buf[2:2 + n], buf[2 + n:]
                with self._lock:
                    self.received.append(DotQuery(wire, info.number, time.monotonic()))
                    behaviour = self.behaviour
                if callable(behaviour):
                    behaviour(self, conn, wire)
                else:
                    self._builtin(behaviour, conn, wire)
                if conn.closed:
                    return

    def _builtin(self, behaviour: str, conn: DotConn, wire: bytes) -> None:
        delay = self.answer_delay
        if behaviour == SILENT:
            return
        if behaviour == WRONG_QUESTION:
            conn.send_frame(wrong_question_answer(wire), delay)
            return
        answer = knotd_answer(self.upstream, wire, self.upstream_timeout)
        if behaviour == NORMAL:
            conn.send_frame(answer, delay)
        elif behaviour == WRONG_ID:
            conn.send_frame(wrong_id_answer(answer), delay)
        elif behaviour == CLOSE_AFTER_ANSWER:
            conn.send_frame(answer)
            conn.close()
        elif behaviour in (HUGE_LENGTH, HUGE_LENGTH_HOLD):
            conn.send_raw(b"\xff\xff" + answer)
            if behaviour == HUGE_LENGTH:
                conn.close()
        elif behaviour == OUT_OF_ORDER:
            conn.held.append((answer, time.monotonic()))
            if len(conn.held) >= 2:
                for a, _ in reversed(conn.held):
                    conn.send_frame(a)
                conn.held.clear()
        else:
            raise AssertionError(f"unknown DoT behaviour {behaviour!r}")

    def _flush_held(self, conn: DotConn) -> None:
        if conn.held and time.monotonic() - conn.held[0][1] > 0.3:
            for a, _ in conn.held:
                conn.send_frame(a)
            conn.held.clear()


@dataclass
class DohRequest:
    """One HTTP/2 request a ScriptedDohServer received (complete stream)."""

    conn: int  # TlsConnInfo.number
    stream_id: int
    method: Optional[str]
    path: Optional[str]
    authority: Optional[str]
    scheme: Optional[str]
    content_type: Optional[str]
    accept: Optional[str]
    headers: list  # every (name, value), in order
    body: bytes
    at: float  # time.monotonic()

    @property
    def body_length(self) -> int:
        return len(self.body)

    @property
    def dns_wire(self) -> Optional[bytes]:
        """The DNS query: the POST body, or the GET's ?dns= decoded."""
        if self.method == "GET" and self.path:
            values = parse_qs(urlsplit(self.path).query).get("dns")
            if not values:
                return None
            v = values[0]
            return base64.urlsafe_b64decode(v + "=" * (-len(v) % 4))
        return self.body


class DohConn(_Conn):
    """One HTTP/2 connection of a ScriptedDohServer, handed to a callable behaviour."""

    def __init__(self, server: "ScriptedDohServer", tls: ssl.SSLSocket, info: TlsConnInfo):
        super().__init__(server, tls, info)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.goaway_sent = False  # from then on what the client sends is read and ignored
        self.pending: dict[int, bytes] = {}  # stream -> body still to send (flow control)

    def flush(self) -> None:
        """Sends what flow control allows, then whatever h2 has queued."""
        for sid in list(self.pending):
            data = self.pending[sid]
            try:
                while data:
                    room = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                    if room <= 0:
                        break
                    chunk, data = data[:room], data[room:]
                    self.h2.send_data(sid, chunk, end_stream=not data)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                data = b""
            if data:
                self.pending[sid] = data
            else:
                del self.pending[sid]
        out = self.h2.data_to_send()
        if out:
            self.send_raw(out)

    def respond(self, stream_id: int, status: int, body: bytes = b"",
                content_type: Optional[str] = DNS_MESSAGE, extra: Optional[list] = None) -> None:
        headers = [(":status", str(status))]
        if content_type is not None:
            headers.append(("content-type", content_type))
        headers.append(("content-length", str(len(body))))
        headers += extra or []
        try:
            self.h2.send_headers(stream_id, headers, end_stream=not body)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            return
        if body:
            self.pending[stream_id] = body
        self.flush()

    def reset(self, stream_id: int, code: int = h2.errors.ErrorCodes.INTERNAL_ERROR) -> None:
        try:
            self.h2.reset_stream(stream_id, code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            return
        self.flush()

    def goaway(self, last_stream_id: Optional[int] = None) -> None:
        self.goaway_sent = True
        self.h2.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR, last_stream_id=last_stream_id)
        self.flush()


DohBehaviour = Callable[["ScriptedDohServer", DohConn, DohRequest], None]


class ScriptedDohServer(_ScriptedTlsServer):
    """DNS over HTTPS (RFC 8484) over HTTP/2 with TLS, ALPN h2 only.

    behaviour: one of NORMAL, SILENT, STALL_HANDSHAKE, CLOSE_AFTER_ANSWER,
    STATUS_500, STATUS_404, WRONG_CONTENT_TYPE, RESET_STREAM, GOAWAY, or a
    callable(server, conn: DohConn, req: DohRequest) that answers with
    conn.respond() / conn.reset() / conn.goaway(). NORMAL answers POST and
    GET on `path` (404 elsewhere, 415 for a POST whose content type is not
    application/dns-message, 405 for other methods) by forwarding to knotd
    at `upstream`. CLOSE_AFTER_ANSWER and GOAWAY act once per connection,
    after its first answer; GOAWAY's last stream id is that answer's stream,
    and the connection closes 0.2 s later. `answer_delay` delays answers.

    Recorded: requests (DohRequest: method, path, content_type, body,
    body_length, conn, stream_id), queries() (the DNS messages), conns
    (TlsConnInfo: SNI, ALPN, version), connections, handshakes, sni."""

    kind = "doh"

    def __init__(self, cert: CertKey, behaviour: Union[str, DohBehaviour] = NORMAL, *, path: str = DOH_PATH,
                 **kw):
        self.requests: list[DohRequest] = []
        self.path = path
        self.answer_delay = 0.0
        super().__init__(cert, behaviour, alpn=["h2"], **kw)

    @property
    def url(self) -> str:
        return f"https://{SERVER_NAME}:{self.port}{self.path}"

    def queries(self) -> list[bytes]:
        with self._lock:
            return [r.dns_wire for r in self.requests]

    def conn_numbers(self) -> list[int]:
        with self._lock:
            return [r.conn for r in self.requests]

    def wait_for(self, count: int, timeout: float = 3.0) -> list[DohRequest]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    break
            time.sleep(0.005)
        with self._lock:
            return list(self.requests)

    def _session(self, tls: ssl.SSLSocket, info: TlsConnInfo) -> None:
        if info.alpn != "h2":
            return  # HTTP/2 only: close
        conn = DohConn(self, tls, info)
        conn.h2.initiate_connection()
        conn.flush()
        streams: dict[int, dict] = {}
        while not self._stopping.is_set() and not conn.closed:
            data = self._recv(tls)
            conn.run_due()
            if data is None:
                continue
            if not data:
                return
            if conn.goaway_sent:
                continue
            try:
                events = conn.h2.receive_data(data)
            except h2.exceptions.ProtocolError as e:  # the client broke HTTP/2
                self.errors.append(e)
                conn.flush()
                return
            for ev in events:
                if isinstance(ev, h2.events.RequestReceived):
                    streams[ev.stream_id] = {"headers": list(ev.headers), "body": b""}
                elif isinstance(ev, h2.events.DataReceived):
                    if ev.stream_id in streams:
                        streams[ev.stream_id]["body"] += ev.data
                    conn.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    st = streams.pop(ev.stream_id, None)
                    if st is not None:
                        self._request(conn, ev.stream_id, st)
                elif isinstance(ev, h2.events.StreamReset):
                    streams.pop(ev.stream_id, None)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    conn.flush()
                    return
                if conn.closed:
                    return
            conn.flush()

    def _request(self, conn: DohConn, sid: int, st: dict) -> None:
        hdrs = st["headers"]

        def h(name: str) -> Optional[str]:
            for k, v in hdrs:
                if k == name:
                    return v
            return None

        req = DohRequest(conn=conn.number, stream_id=sid, method=h(":method"), path=h(":path"),
                         authority=h(":authority"), scheme=h(":scheme"), content_type=h("content-type"),
                         accept=h("accept"), headers=hdrs, body=st["body"], at=time.monotonic())
        with self._lock:
            self.requests.append(req)
            behaviour = self.behaviour
        if callable(behaviour):
            behaviour(self, conn, req)
        else:
            self._builtin(behaviour, conn, req)

    def _builtin(self, behaviour: str, conn: DohConn, req: DohRequest) -> None:
        sid = req.stream_id
        if behaviour == SILENT:
            return
        if behaviour == STATUS_500:
            conn.respond(sid, 500, b"internal error\n", "text/plain")
            return
        if behaviour == STATUS_404:
            conn.respond(sid, 404, b"not found\n", "text/plain")
            return
        if behaviour == RESET_STREAM:
            conn.reset(sid)
            return
        if urlsplit(req.path or "").path != self.path:
            conn.respond(sid, 404, b"not found\n", "text/plain")
            return
        if req.method not in ("POST", "GET"):
            conn.respond(sid, 405, b"method not allowed\n", "text/plain")
            return
        if req.method == "POST" and req.content_type != DNS_MESSAGE:
            conn.respond(sid, 415, b"unsupported media type\n", "text/plain")
            return
        wire = req.dns_wire
        if not wire:
            conn.respond(sid, 400, b"bad request\n", "text/plain")
            return
        answer = knotd_answer(self.upstream, wire, self.upstream_timeout)
        ctype = "text/plain" if behaviour == WRONG_CONTENT_TYPE else DNS_MESSAGE
        if behaviour in (NORMAL, WRONG_CONTENT_TYPE):
            if self.answer_delay > 0:
                conn.later(self.answer_delay, lambda: conn.respond(sid, 200, answer, ctype))
            else:
                conn.respond(sid, 200, answer, ctype)
        elif behaviour == CLOSE_AFTER_ANSWER:
            conn.respond(sid, 200, answer)
            conn.close()
        elif behaviour == GOAWAY:
            conn.respond(sid, 200, answer)
            conn.goaway(last_stream_id=sid)
            conn.later(0.2, conn.close)
        else:
            raise AssertionError(f"unknown DoH behaviour {behaviour!r}")


# ---------------------------------------------------------------- pytest fixtures
# Import them into a test module: `from tls_peers import tls_certs, unbound_peer, dnsdist_peer`.


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory) -> TlsCerts:
    """The test PKI (make_certs) for the session."""
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def unbound_peer(tmp_path_factory, tls_certs, knotd: Knotd):
    """Unbound serving DoT and DoH with tls_certs.server, forwarding to knotd."""
    peer = Unbound(tmp_path_factory.mktemp("unbound"), tls_certs.server, knotd.address)
    try:
        peer.start()
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="module")
def dnsdist_peer(tmp_path_factory, tls_certs, knotd: Knotd):
    """dnsdist serving DoT and DoH with tls_certs.server, forwarding to knotd."""
    peer = Dnsdist(tmp_path_factory.mktemp("dnsdist"), tls_certs.server, knotd.address)
    try:
        peer.start()
        yield peer
    finally:
        peer.stop()
