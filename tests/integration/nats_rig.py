"""Peers and helpers of the event delivery tests (DESIGN.md §11):

- `NatsServer`: Debian's nats-server with JetStream on loopback, its own
  store dir, stopped, killed (SIGKILL) and restarted by PID on the same
  ports and store;
- `NatsCluster`: three of them as one JetStream cluster (a config file per
  node, routes to the two others, a server_name and a store dir each);
- `SlowProxy`: a TCP relay that holds every server-to-client byte for a
  while, to make JetStream answer (and acknowledge) slowly;
- `nats_tool()`: nats_tool.js (the official `nats` npm client) to create a
  stream (R1 or R3), change its subjects, and read it back (messages,
  distinct Nats-Msg-Id);
- `DeliveryGate`: a DnsGate whose `events:` block is a nats or http sink
  with a spool, and whose events are checked against the peer by the tests
  themselves (not in a local file);
- `HttpReceiver`: http_receiver.js (the official CloudEvents SDK) on a
  loopback port, its scripted faults, the events it accepted;
- `send_load()`: a bounded, paced UDP query sender that times every answer.

Loopback only; every process is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

import pytest

from dnsgate_testlib import (
    HERE, NODE, DnsGate, check_envelope, free_port, gate_factory, make_query, yaml_str,
)

NATS_SERVER = "/usr/sbin/nats-server"
NATS_TOOL = HERE / "nats_tool.js"
EVENTS_DROPPED_TYPE = "dev.dnsgate.events_dropped"
DELIVERY_KEYS = ["delivered", "spooled", "spoolBytes", "backlog", "retried", "rejected", "dropped",
                 "corruptSkipped"]


def require_node_package(name: str) -> None:
    assert (HERE / "node_modules" / name).is_dir(), (
        f"tests/integration/node_modules/{name} missing: run scripts/install-deps.sh (npm ci)")


# ---------------------------------------------------------------- nats-server


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _http_get(port: int, path: str, timeout: float = 1.0) -> Optional[str]:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n")[0] + b" ":
            return None
        return body.decode(errors="replace")
    except OSError:
        return None


class NatsServer:
    """One nats-server with JetStream. Alone: started with `-js -sd DIR` on
    the command line; in a cluster: with a config file (see NatsCluster)."""

    def __init__(self, workdir: Path, name: str = "n1", port: Optional[int] = None):
        if not os.access(NATS_SERVER, os.X_OK):
            raise AssertionError(f"{NATS_SERVER} is missing: install nats-server (scripts/install-deps.sh)")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = port or free_port(tcp_too=True)
        self.monitor_port = free_port(tcp_too=True)
        self.store_dir = workdir / "store"
        self.log_path = workdir / "nats-server.log"
        self.config_path: Optional[Path] = None  # set by NatsCluster
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        if self.config_path is not None:
            return [NATS_SERVER, "-c", str(self.config_path)]
        return [NATS_SERVER, "-js", "-sd", str(self.store_dir), "-a", "127.0.0.1", "-p", str(self.port),
                "-m", str(self.monitor_port), "-n", self.name]

    def start(self, wait: bool = True) -> "NatsServer":
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is already running"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        log.write(f"---- start {self.starts + 1}: {' '.join(self.command())}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.starts += 1
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Client port open and /healthz answering 200 (JetStream up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nats-server {self.name} exited with {self.proc.returncode}:\n{self.log()}")
            if _tcp_open(self.port) and _http_get(self.monitor_port, "/healthz") is not None:
                return
            time.sleep(0.05)
        raise AssertionError(f"nats-server {self.name} not ready within {timeout} s:\n{self.log()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (lame duck is not used: a plain clean stop), then SIGKILL."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye to the clients or the cluster."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=5)

    def restart(self) -> None:
        """Same ports, same store dir."""
        self.start()

    def connections(self) -> list[dict]:
        body = _http_get(self.monitor_port, "/connz")
        return json.loads(body).get("connections") or [] if body else []

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""


class NatsCluster:
    """Three nats-server processes on loopback forming one JetStream cluster."""

    def __init__(self, workdir: Path, size: int = 3, name: str = "dgtest"):
        self.nodes = [NatsServer(workdir / f"n{i + 1}", name=f"n{i + 1}") for i in range(size)]
        self.cluster_ports = [free_port(tcp_too=True) for _ in range(size)]
        for i, node in enumerate(self.nodes):
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for j, p in enumerate(self.cluster_ports) if j != i)
            node.config_path = node.workdir / "nats.conf"
            node.config_path.write_text(
                f"server_name: {node.name}\n"
                f"listen: 127.0.0.1:{node.port}\n"
                f"http: 127.0.0.1:{node.monitor_port}\n"
                f"jetstream {{\n  store_dir: {json.dumps(str(node.store_dir))}\n"
                f"  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n"
                f"cluster {{\n  name: {name}\n  listen: 127.0.0.1:{self.cluster_ports[i]}\n"
                f"  routes: [{routes}]\n}}\n")

    @property
    def urls(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def start(self) -> "NatsCluster":
        for node in self.nodes:
            node.start(wait=False)
        for node in self.nodes:
            node.wait_ready(timeout=30)
        return self

    def node(self, name: str) -> NatsServer:
        (n,) = [n for n in self.nodes if n.name == name]
        return n

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def kill_all(self) -> None:
        for node in self.nodes:
            node.kill()

    def logs(self) -> str:
        return "\n".join(f"== {n.name}\n{n.log()}" for n in self.nodes)


class SlowProxy:
    """127.0.0.1:<port> relaying to 127.0.0.1:<target>; what the server
    sends reaches the client `delay` seconds late (client to server is
    immediate). Threads only; close() ends them and every connection."""

    def __init__(self, target_port: int, delay: float):
        self.target_port = target_port
        self.delay = delay
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self.connections = 0
        self.relayed_to_client = 0
        threading.Thread(target=self._accept, name="slow-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            self.connections += 1
            self._socks += [client, server]
            q: queue.Queue = queue.Queue()
            threading.Thread(target=self._pipe, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, q), daemon=True).start()
            threading.Thread(target=self._late_writer, args=(q, client), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, late: "Optional[queue.Queue]") -> None:
        try:
            while not self._stop.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if late is None:
                    dst.sendall(data)
                else:
                    late.put((time.monotonic() + self.delay, data))
        except OSError:
            pass
        finally:
            if late is not None:
                late.put(None)
            else:
                for sock in (src, dst):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def _late_writer(self, q: "queue.Queue", dst: socket.socket) -> None:
        try:
            while True:
                item = q.get()
                if item is None or self._stop.is_set():
                    break
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                dst.sendall(data)
                self.relayed_to_client += len(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        for sock in self._socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def nats_tool(servers: str, *args: str, timeout: float = 90.0) -> dict:
    """Runs nats_tool.js, returns its JSON answer."""
    require_node_package("nats")
    r = subprocess.run([NODE, str(NATS_TOOL), servers, *[str(a) for a in args]], capture_output=True, text=True,
                       timeout=timeout, cwd=HERE)
    assert r.returncode == 0, f"nats_tool {' '.join(map(str, args))} failed:\n{r.stderr}{r.stdout}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def add_stream(servers: str, name: str, subjects: str, replicas: int = 1,
               duplicate_window_ms: Optional[int] = None) -> dict:
    args = ["add-stream", name, subjects, str(replicas)]
    if duplicate_window_ms:
        args.append(str(duplicate_window_ms))
    return nats_tool(servers, *args)


def stream_count(servers: str, stream: str, out_file: Optional[Path] = None) -> dict:
    """{"messages", "distinctIds", "ids", "missingIdHeader"} of everything in the stream."""
    args = ["count", stream] + ([str(out_file)] if out_file else [])
    return nats_tool(servers, *args)


def stream_messages(servers: str, stream: str) -> int:
    return nats_tool(servers, "info", stream)["messages"]


def wait_stream_messages(servers: str, stream: str, want: int, timeout: float) -> int:
    """Polls the stream's message count until it reaches `want` (or the time is up); returns it."""
    deadline = time.monotonic() + timeout
    got = -1
    while time.monotonic() < deadline:
        got = stream_messages(servers, stream)
        if got >= want:
            return got
        time.sleep(0.5)
    return got


# ---------------------------------------------------------------- the HTTP receiver


class HttpReceiver:
    """http_receiver.js on 127.0.0.1:<port>: every batch parsed and validated
    with the CloudEvents SDK; accepted events in `out`, rejected (scripted
    400) ones in `out`.rejected, invalid batches in `out`.errors."""

    RECEIVER = HERE / "http_receiver.js"

    def __init__(self, workdir: Path, port: Optional[int] = None):
        require_node_package("cloudevents")
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = port or free_port(tcp_too=True)
        self.out = workdir / "received.jsonl"
        self.log_path = workdir / "receiver.log"
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def start(self, **faults) -> "HttpReceiver":
        """faults: fail503_seconds, fail400_next, close_next, close_seconds, delay_ms, outage_status."""
        args = [NODE, str(self.RECEIVER), "--out", str(self.out), "--port", str(self.port)]
        for k, v in faults.items():
            args += ["--" + k.replace("_", "-"), str(v)]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, cwd=HERE)
        log.close()
        line = self.proc.stdout.readline().decode().strip()  # "listening PORT" (EOF if it died)
        if not line.startswith("listening "):
            self.proc.wait(timeout=5)
            raise AssertionError(f"http_receiver.js did not start ({self.proc.returncode}): {line}\n"
                                 f"{self.log_path.read_text(errors='replace')}")
        assert int(line.split()[1]) == self.port, line
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def _request(self, method: str, path: str, body: bytes = b"") -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(f"{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
                      .encode() + body)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, payload = data.partition(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0] + b" ", head
        return payload

    def control(self, **faults) -> None:
        """fail503Seconds, fail400Next, closeNext, closeSeconds, delayMs, outageStatus."""
        self._request("POST", "/control", json.dumps(faults).encode())

    def stats(self) -> dict:
        return json.loads(self._request("GET", "/stats"))

    @staticmethod
    def _lines(path: Path) -> list[dict]:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def events(self) -> list[dict]:
        return self._lines(self.out)

    def rejected(self) -> list[dict]:
        return self._lines(Path(str(self.out) + ".rejected"))

    def errors(self) -> list[dict]:
        return self._lines(Path(str(self.out) + ".errors"))

    def wait_events(self, want: int, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        evs = self.events()
        while len(evs) < want and time.monotonic() < deadline:
            time.sleep(0.1)
            evs = self.events()
        return evs


# ---------------------------------------------------------------- dnsgate with a delivering sink


class DeliveryGate(DnsGate):
    """`dnsgate run` with `events.sink: nats` or `http` and a spool. Give
    nats={"url", "subject", "stream"} or http={"url", "batchMax"}, and
    spool_dir / spool_max_bytes. `spool_dir` defaults to workdir/spool; a
    gate restarted with the same spool dir resumes its backlog."""

    def __init__(self, workdir: Path, *, nats: Optional[dict] = None, http: Optional[dict] = None,
                 spool_dir: Optional[Path] = None, spool_max_bytes: int = 64 << 20, **kw):
        assert (nats is None) != (http is None), "give nats= or http="
        super().__init__(workdir, sink="stdout", **kw)
        self.sink = "nats" if nats is not None else "http"
        self.spool_dir = Path(spool_dir) if spool_dir is not None else workdir / "spool"
        base = self.config_path.read_text()
        head = base[: base.rindex("events:\n")]
        lines = ["events:", f"  sink: {self.sink}"]
        if nats is not None:
            lines.append("  nats:")
            lines += [f"    {k}: {yaml_str(str(v))}" for k, v in nats.items() if v is not None]
        else:
            lines.append("  http:")
            lines += [f"    {k}: {v if isinstance(v, int) else yaml_str(str(v))}" for k, v in http.items()
                      if v is not None]
        lines += ["  spool:", f"    dir: {yaml_str(str(self.spool_dir))}", f"    maxBytes: {spool_max_bytes}"]
        self.config_path.write_text(head + "\n".join(lines) + "\n")

    @property
    def delivery(self) -> dict:
        """The stats' "delivery" object (after stop())."""
        assert self.stats is not None, "stop() first"
        d = self.stats.get("delivery")
        assert isinstance(d, dict), f"stats JSON lacks the delivery object: {self.stats}"
        assert d.get("sink") == self.sink, d
        for key in DELIVERY_KEYS:
            assert isinstance(d.get(key), int) and d[key] >= 0, f"delivery.{key} missing or not a count: {d}"
        return d

    def check_all_events(self) -> None:
        """The events went to the peer (each test checks them there); nothing on stdout."""
        lines = [line for line in self.stdout_path.read_text(errors="replace").splitlines() if line.strip()] \
            if self.stdout_path.exists() else []
        assert not lines, f"a {self.sink} sink wrote {len(lines)} lines on stdout: {lines[:3]}"

    def log_lines(self, prefix: str = "events:") -> list[str]:
        return [line for line in self.stderr().splitlines() if line.startswith(prefix)]


def delivery_gates(tmp_path: Path):
    """Fixture body: a factory of DeliveryGate, each stopped (SIGTERM, exit 0,
    stats line) at teardown; 8 s allows the 2 s of last delivery."""
    yield from gate_factory(tmp_path, cls=DeliveryGate, stop_timeout=8.0)


def check_events(evs: list[dict], cell: str, probes: int = 0) -> None:
    """Every event a valid dnsgate event of `cell`, ids unique."""
    ids = [e["id"] for e in evs]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicate event ids"
    for ev in evs:
        if ev.get("type") == EVENTS_DROPPED_TYPE:
            check_dropped_event(ev, cell)
        else:
            check_envelope(ev, cell)


def check_dropped_event(ev: dict, cell: str) -> None:
    assert ev["specversion"] == "1.0" and ev["type"] == EVENTS_DROPPED_TYPE, ev
    assert ev["source"] == f"dnsgate/cells/{cell}", ev
    d = ev["data"]
    assert d["cell"] == cell, ev
    assert isinstance(d["count"], int) and d["count"] > 0, ev
    assert isinstance(d["firstTime"], str) and isinstance(d["lastTime"], str), ev
    assert d["firstTime"] <= d["lastTime"], ev


# ---------------------------------------------------------------- load


class LoadResult:
    def __init__(self):
        self.sent = 0
        self.answered = 0
        self.latencies: list[float] = []  # seconds, one per answer
        self.answer_times: list[float] = []  # monotonic time of each answer
        self.duration = 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("inf")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]

    def summary(self) -> str:
        if not self.latencies:
            return f"sent {self.sent}, answered 0"
        return (f"sent {self.sent}, answered {self.answered} in {self.duration:.1f} s, latency median "
                f"{statistics.median(self.latencies) * 1000:.1f} ms, p99 {self.percentile(99) * 1000:.1f} ms, "
                f"max {max(self.latencies) * 1000:.1f} ms")


# The DNS path never waits for the sink: waiting on it would show as seconds (connect and ack
# timeouts, backoff); the bounds leave room for a shared, busy machine (and the sender's own pauses).
DNS_P99_MAX = 0.5
DNS_MEDIAN_MAX = 0.02


def assert_all_answered(res: LoadResult) -> None:
    assert res.answered == res.sent, f"DNS queries lost: {res.summary()}"


def assert_dns_fast(res: LoadResult, what: str) -> None:
    assert res.latencies, f"no DNS answer at all while {what}"
    assert statistics.median(res.latencies) < DNS_MEDIAN_MAX and res.percentile(99) < DNS_P99_MAX, (
        f"DNS slowed while {what}: {res.summary()}")


def send_load(gate: DnsGate, count: int, rate: float, name: str = "www.example.com.", window: int = 64,
              on_progress=None, answer_wait: float = 3.0) -> LoadResult:
    """Sends `count` queries at about `rate` per second with at most `window`
    unanswered, each with its own transaction id, never resending; waits up to
    `answer_wait` s for the last answers. on_progress(sent) is called every
    100 queries (from this thread). Counts the datagrams on `gate`."""
    res = LoadResult()
    wires = [make_query(name, "A", ident=i % 65536).to_wire() for i in range(min(count, 65536))]
    sent_at: dict[int, float] = {}
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setblocking(False)
    addr = (gate.host, gate.port)
    start = time.monotonic()
    next_progress = 100

    def drain(until: float) -> None:
        while True:
            try:
                data, _ = s.recvfrom(65535)
            except BlockingIOError:
                if time.monotonic() >= until:
                    return
                time.sleep(0.0005)
                continue
            except ConnectionRefusedError:
                continue
            now = time.monotonic()
            ident = int.from_bytes(data[:2], "big")
            t = sent_at.pop(ident, None)
            if t is not None:
                res.answered += 1
                res.latencies.append(now - t)
                res.answer_times.append(now)
            if time.monotonic() >= until:
                return

    try:
        for i in range(count):
            due = start + i / rate
            while True:
                now = time.monotonic()
                if len(sent_at) < window and now >= due:
                    break
                drain(min(due, now + 0.002) if len(sent_at) < window else now + 0.002)
                if len(sent_at) >= window and time.monotonic() - start > count / rate + 30:
                    raise AssertionError(f"load stuck: {len(sent_at)} queries unanswered; {res.summary()}")
            wire = wires[i % len(wires)]
            ident = i % 65536
            if ident in sent_at:  # wrapped around onto an unanswered id: wait for it (bounded)
                deadline = time.monotonic() + answer_wait
                while ident in sent_at and time.monotonic() < deadline:
                    drain(time.monotonic() + 0.002)
                sent_at.pop(ident, None)
            sent_at[ident] = time.monotonic()
            s.sendto(wire, addr)
            gate.datagrams += 1
            res.sent += 1
            if on_progress is not None and res.sent >= next_progress:
                on_progress(res.sent)
                next_progress += 100
        deadline = time.monotonic() + answer_wait
        while sent_at and time.monotonic() < deadline:
            drain(time.monotonic() + 0.01)
    finally:
        s.close()
    res.duration = time.monotonic() - start
    return res


# ---------------------------------------------------------------- fixtures shared by the two files


@pytest.fixture
def nats_server(tmp_path):
    """One JetStream server on free loopback ports (not started: call .start())."""
    server = NatsServer(tmp_path / "nats")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def receiver(tmp_path):
    """An HttpReceiver on a free port (not started: call .start(**faults))."""
    rx = HttpReceiver(tmp_path / "receiver")
    try:
        yield rx
    finally:
        rx.stop()
