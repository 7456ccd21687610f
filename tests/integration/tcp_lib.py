"""Helpers of the TCP/53 tests (test_tcp.py): a framed TCP client, a scripted
TCP upstream, and a dnsgate process with a TCP listener.

Built on dnsgate_testlib without changing it: TcpGate is a DnsGate whose
config may carry `listen.tcp`, a `tcp:` block and another resolver
protocol. Loopback only; every thread and socket here is bounded and
stopped by the test that made it.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import dns.message
import dns.rrset

from dnsgate_testlib import (
    PROBE_NAME, DnsGate, Reply, SocketClient, answer_for, check_envelope, dnsgate_bin, endpoint, free_port,
    make_query, port_held_by, render_resolvers, udp_port_bound_by, validate_with_sdk, yaml_str,
)

TCP_STATS_KEYS = ["tcpAccepted", "tcpRejected", "tcpFramesAbandoned", "tcpIdleClosed", "upstreamTcpConnects"]


def frame(wire: bytes) -> bytes:
    """RFC 7766 framing: the 2-octet length, then the message."""
    return struct.pack("!H", len(wire)) + wire


# ---------------------------------------------------------------- TCP client


class TcpClient(SocketClient):
    """One TCP connection to dnsgate, with a frame reader. recv_frame() returns
    None on timeout and on end of stream (then .eof is True)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 2.0):
        self.host = host
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False
        self.reset = False
        self.port = self.sock.getsockname()[1]

    @property
    def client(self) -> str:
        return endpoint(self.host, self.port)

    def send_raw(self, data: bytes) -> float:
        wall = time.time()
        self.sock.sendall(data)
        return wall

    def send_frame(self, wire: bytes) -> float:
        return self.send_raw(frame(wire))

    def _fill(self, deadline: float) -> bool:
        """Reads once more into the buffer; False on timeout or end of stream."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def recv_frame(self, timeout: float = 2.0) -> Optional[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                n = struct.unpack("!H", self.buf[:2])[0]
                if len(self.buf) >= 2 + n:
                    out = self.buf[2:2 + n]
                    self.buf = self.buf[2 + n:]
                    return out
            if not self._fill(deadline):
                return None

    def wait_closed(self, timeout: float) -> Optional[float]:
        """Seconds until the server closed the connection (end of stream or
        reset), or None if it is still open after `timeout`. Frames that
        arrive meanwhile are kept in .buf."""
        start = time.monotonic()
        deadline = start + timeout
        while not self.eof:
            if not self._fill(deadline) and not self.eof:
                return None
        return time.monotonic() - start

    def exchange(self, wire: bytes, timeout: float = 2.0) -> Reply:
        """Sends one frame, waits for one frame (which must be its answer)."""
        wall = time.time()
        start = time.monotonic()
        self.send_frame(wire)
        response = self.recv_frame(timeout)
        return Reply(wire, response, self.port, wall, time.monotonic() - start, host=self.host)


# ---------------------------------------------------------------- scripted TCP upstream


class UpstreamConn:
    """One connection accepted by ScriptedTcpUpstream."""

    def __init__(self, up: "ScriptedTcpUpstream", sock: socket.socket, number: int):
        self.up = up
        self.sock = sock
        self.number = number
        self.buf = b""
        self.closed = False
        self.lock = threading.Lock()

    def send_frame(self, wire: bytes, delay: float = 0.0) -> None:
        if delay > 0:
            t = threading.Timer(delay, lambda: self.send_frame(wire))
            t.daemon = True
            self.up._timers.append(t)
            t.start()
            return
        with self.lock:
            if self.closed or self.up._stopping.is_set():
                return
            try:
                self.sock.sendall(frame(wire))
            except OSError as e:
                self.up.errors.append(e)

    def send_raw(self, data: bytes) -> None:
        """Octets as given (frames split or joined by the behaviour)."""
        with self.lock:
            if self.closed or self.up._stopping.is_set():
                return
            try:
                self.sock.sendall(data)
            except OSError as e:
                self.up.errors.append(e)

    def close(self) -> None:
        """Closes this connection from the upstream side (a FIN to dnsgate)."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


TcpBehaviour = Callable[["ScriptedTcpUpstream", UpstreamConn, bytes], None]


def tcp_answer_normally(up: "ScriptedTcpUpstream", conn: UpstreamConn, wire: bytes) -> None:
    conn.send_frame(answer_for(wire))


def tcp_silent(up: "ScriptedTcpUpstream", conn: UpstreamConn, wire: bytes) -> None:
    return None


class ScriptedTcpUpstream:
    """A TCP 'resolver' on 127.0.0.1:<port>, one thread with a selector.
    Every frame is recorded (bytes as received, connection number, arrival
    time) and handed to `behaviour`, which may answer with conn.send_frame().
    stop() closes the listener and every connection; start() listens again
    on the same port."""

    def __init__(self, host: str = "127.0.0.1", port: Optional[int] = None):
        self.host = host
        self.port = port or free_port(host, tcp_too=True)
        self.behaviour: TcpBehaviour = tcp_answer_normally
        self.received: list[tuple[bytes, int, float]] = []
        self.connections = 0  # accepted since creation, across restarts
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._listener: Optional[socket.socket] = None
        self._conns: list[UpstreamConn] = []
        self.start()

    @property
    def address(self) -> str:
        return endpoint(self.host, self.port)

    def start(self) -> None:
        assert self._thread is None, "already running"
        s = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(128)
        s.setblocking(False)
        self._listener = s
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="scripted-tcp-upstream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, None)
        try:
            while not self._stopping.is_set():
                for key, _ in sel.select(timeout=0.05):
                    if key.data is None:
                        self._accept(sel)
                    else:
                        self._read(sel, key.data)
        except BaseException as e:  # reported by the fixture
            self.errors.append(e)
        finally:
            sel.close()

    def _accept(self, sel) -> None:
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, OSError):
            return
        sock.setblocking(True)
        sock.settimeout(2.0)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self.connections += 1
            conn = UpstreamConn(self, sock, self.connections)
            self._conns.append(conn)
        sel.register(sock, selectors.EVENT_READ, conn)

    def _read(self, sel, conn: UpstreamConn) -> None:
        try:
            data = conn.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            sel.unregister(conn.sock)
            with conn.lock:
                conn.closed = True
                conn.sock.close()
            return
        conn.buf += data
        while len(conn.buf) >= 2:
            n = struct.unpack("!H", conn.buf[:2])[0]
            if len(conn.buf) < 2 + n:
                break
            wire, conn.buf = conn.buf[2:2 + n], conn.buf[2 + n:]
            with self._lock:
                self.received.append((wire, conn.number, time.monotonic()))
                behaviour = self.behaviour
            try:
                behaviour(self, conn, wire)
            except BaseException as e:
                self.errors.append(e)

    def queries(self) -> list[bytes]:
        with self._lock:
            return [w for w, _, _ in self.received]

    def conn_numbers(self) -> list[int]:
        with self._lock:
            return [c for _, c, _ in self.received]

    def wait_for(self, count: int, timeout: float = 2.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.queries()
            if len(got) >= count:
                return got
            time.sleep(0.005)
        return self.queries()

    def stop(self) -> None:
        """Stops listening and closes every connection (dnsgate sees FIN)."""
        self._stopping.set()
        for t in self._timers:
            t.cancel()
        if self._thread is not None:
            self._thread.join(timeout=2)
            assert not self._thread.is_alive(), "scripted TCP upstream thread did not stop"
            self._thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            c.close()
            try:
                c.sock.close()
            except OSError:
                pass

    close = stop


# ---------------------------------------------------------------- answers


def big_answer(query_wire: bytes, count: int, base: str = "10.1") -> bytes:
    """A NOERROR answer to an A query with `count` A records (~16 octets each)."""
    q = dns.message.from_wire(query_wire)
    r = dns.message.make_response(q)
    name = q.question[0].name
    rrset = dns.rrset.from_text_list(name, 60, "IN", "A",
                                     [f"{base}.{i // 250}.{i % 250 + 1}" for i in range(count)])
    r.answer.append(rrset)
    return r.to_wire(max_size=65535)  # not limited by the query's EDNS size


# ---------------------------------------------------------------- dnsgate with TCP


def tcp_port_listened_by(pid: int, port: int, host: str = "127.0.0.1") -> bool:
    return port_held_by(pid, port, host, "tcp")


def render_tcp_config(*, cell: str, port: int, host: str, listen_udp: bool, listen_tcp: bool,
                      allowlist: list[str], upstream: Optional[str], protocol: str, timeout_ms: Optional[int],
                      max_inflight: Optional[int], tcp: Optional[dict], events_path: Path,
                      resolvers: Optional[list[dict]] = None) -> str:
    lines = [f"cell: {cell}", "listen:"]
    if listen_udp:
        lines.append(f"  udp: {yaml_str(endpoint(host, port))}")
    if listen_tcp:
        lines.append(f"  tcp: {yaml_str(endpoint(host, port))}")
    lines.append("dnsAuthority:")
    if allowlist:
        lines.append("  hostnameAllowlist:")
        lines += [f"    - {yaml_str(e)}" for e in allowlist]
    else:
        lines.append("  hostnameAllowlist: []")
    if resolvers is None:
        lines += ["  resolvers:", f"    - protocol: {protocol}", f"      address: {yaml_str(upstream)}"]
    else:
        lines += render_resolvers(resolvers)
    if timeout_ms is not None:
        lines.append(f"upstreamTimeoutMs: {timeout_ms}")
    if max_inflight is not None:
        lines.append(f"maxInflight: {max_inflight}")
    if tcp:
        lines.append("tcp:")
        lines += [f"  {k}: {v}" for k, v in tcp.items()]
    lines += ["events:", "  sink: file", f"  path: {yaml_str(str(events_path))}"]
    return "\n".join(lines) + "\n"


def check_envelope_any_transport(ev: dict, cell: str) -> None:
    """dnsgate_testlib.check_envelope, widened for TCP: transport `tcp` and
    the reason `client_gone` (a drop: rcode null, nothing sent) are valid."""
    d = ev["data"]
    assert d.get("transport") in ("udp", "tcp"), ev
    data = dict(d, transport="udp")
    if d.get("reasonCode") == "client_gone":
        assert d["action"] == "drop" and d["rcode"] is None and d["answerCount"] == 0, ev
        data["reasonCode"] = "shutdown"  # the other drop with a parsed question
    check_envelope(dict(ev, data=data), cell)


class TcpGate(DnsGate):
    """A dnsgate process listening on UDP and/or TCP at the same port.
    `datagrams` counts every event the test expects: datagrams and complete
    TCP frames alike."""

    def __init__(self, workdir: Path, *, allowlist: list[str], upstream: Optional[str] = None,
                 listen_udp: bool = True, listen_tcp: bool = True, protocol: str = "do53-udp",
                 tcp: Optional[dict] = None, resolvers: Optional[list[dict]] = None, **kwargs):
        super().__init__(workdir, allowlist=allowlist, upstream=upstream, resolvers=resolvers, **kwargs)
        assert self.sink == "file"
        self.listen_udp = listen_udp
        self.listen_tcp = listen_tcp
        self.port = free_port(self.host, tcp_too=True)
        self.tcp_probes = 0  # TCP connections the readiness probe opened
        self.config_path.write_text(render_tcp_config(
            cell=self.cell, port=self.port, host=self.host, listen_udp=listen_udp, listen_tcp=listen_tcp,
            allowlist=allowlist, upstream=upstream, protocol=protocol, timeout_ms=self.timeout_ms,
            max_inflight=kwargs.get("max_inflight", 10000), tcp=tcp, events_path=self.events_path,
            resolvers=resolvers))

    def start(self) -> "TcpGate":
        binary = dnsgate_bin()
        assert os.access(binary, os.X_OK), f"dnsgate binary not found at {binary} (set DNSGATE_BIN)"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([binary, "run", "--config", str(self.config_path)],
                                         stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            ready = ((not self.listen_udp or udp_port_bound_by(self.proc.pid, self.port, self.host)) and
                     (not self.listen_tcp or tcp_port_listened_by(self.proc.pid, self.port, self.host)))
            if ready:
                break
            if self.proc.poll() is not None:
                raise AssertionError(f"dnsgate exited with {self.proc.returncode} at start:\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"dnsgate did not bind port {self.port} within 10 s:\n{self.stderr()}")
            time.sleep(0.01)
        if self.probe:
            probe = make_query(PROBE_NAME, "A", ident=0xBEEF).to_wire()
            if self.listen_udp:
                r = self.exchange(probe, timeout=3.0)
            else:
                self.datagrams += 1
                self.tcp_probes += 1
                with TcpClient(self.port, self.host) as c:
                    r = c.exchange(probe, timeout=3.0)
            self.probes += 1
            assert r.response is not None, f"dnsgate did not answer its readiness probe:\n{self.stderr()}"
        return self

    # -- TCP traffic
    def connect(self) -> TcpClient:
        return TcpClient(self.port, self.host)

    def tcp_exchange(self, wire: bytes, timeout: float = 2.0) -> Reply:
        """One query on a fresh connection; counts one expected event."""
        self.datagrams += 1
        with self.connect() as c:
            return c.exchange(wire, timeout)

    def tcp_query(self, name: str, rdtype="A", timeout: float = 2.0, **kw) -> Reply:
        return self.tcp_exchange(make_query(name, rdtype, **kw).to_wire(), timeout=timeout)

    def expect_events(self, n: int) -> None:
        """Counts frames sent on connections the test manages itself."""
        self.datagrams += n

    def stop(self, *args, **kwargs) -> dict:
        stats = super().stop(*args, **kwargs)
        for key in TCP_STATS_KEYS:
            assert key in stats, f"stats JSON lacks {key}: {stats}"
            assert isinstance(stats[key], int) and stats[key] >= 0, stats
        return stats

    def check_all_events(self) -> None:
        lines = self.event_lines()
        raw = self.events_path.read_bytes() if self.events_path.exists() else b""
        assert raw == b"" or raw.endswith(b"\n"), "the events sink left half a line at exit"
        evs = [json.loads(line) for line in lines]
        ids = [e["id"] for e in evs]
        assert len(ids) == len(set(ids)), "event ids are not unique"
        for ev in evs:
            check_envelope_any_transport(ev, self.cell)
        assert len(evs) == self.datagrams, (
            f"{len(evs)} events for {self.datagrams} datagrams/frames sent: {json.dumps(evs, indent=1)}")
        if lines:
            validate_with_sdk(self.events_path)
