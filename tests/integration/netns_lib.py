"""Helpers of the supervisor tests (test_supervisor.py, DESIGN.md §10):
network namespaces of the test's own, knotd inside a namespace, clients
whose sockets live inside a namespace, cell files, and the
`dnsgate supervise` process with its log lines and final JSON.

Nothing is routed out of a namespace: each one has only `lo`, and every
query is sent from a socket opened inside it. Namespaces are deleted at the
end (`ip netns del`); every process started here is stopped by its PID.
Built on dnsgate_testlib without changing it.
"""

from __future__ import annotations

import pytest
import contextlib
import ctypes
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import dns.message
import dns.rcode

from dnsgate_testlib import (
    PROBE_NAME, STATS_KEYS, Knotd, Reply, check_envelope, dnsgate_bin, free_port, make_query,
    render_config, udp_exchange, validate_with_sdk, yaml_str,
)

IP = shutil.which("ip") or "/usr/sbin/ip"
KDIG = shutil.which("kdig") or "/usr/bin/kdig"
CLONE_NEWNET = 0x40000000
CLK_TCK = os.sysconf("SC_CLK_TCK")
_libc = ctypes.CDLL(None, use_errno=True)


def require_root() -> None:
    assert os.geteuid() == 0, "the supervisor tests need root (network namespaces, setns, users): run as root"


def nobody_uid() -> int:
    return pwd.getpwnam("nobody").pw_uid


# ---------------------------------------------------------------- namespaces


def netns_id_of_pid(pid: int) -> str:
    """`net:[INODE]` of process `pid` (readlink /proc/PID/ns/net)."""
    return os.readlink(f"/proc/{pid}/ns/net")


def host_netns_id() -> str:
    return os.readlink("/proc/self/ns/net")


class Netns:
    """A network namespace `dg-<random>` with `lo` up and nothing else."""

    def __init__(self, name: Optional[str] = None):
        self.name = name or f"dg-{secrets.token_hex(4)}"
        self.path = Path("/run/netns") / self.name
        self.created = False

    def create(self) -> "Netns":
        require_root()
        r = subprocess.run([IP, "netns", "add", self.name], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, f"ip netns add {self.name} failed: {r.stderr.strip()}"
        self.created = True
        subprocess.run([IP, "-n", self.name, "link", "set", "lo", "up"], check=True, timeout=10)
        return self

    @property
    def inode(self) -> int:
        """What `stat -L /run/netns/NS` says: the namespace's inode."""
        return os.stat(self.path).st_ino

    @property
    def ns_id(self) -> str:
        """The namespace as /proc/PID/ns/net names it: net:[INODE]."""
        return f"net:[{self.inode}]"

    def holds(self, pid: int) -> bool:
        return netns_id_of_pid(pid) == self.ns_id

    @contextlib.contextmanager
    def entered(self):
        """This thread in the namespace: the sockets it opens and the
        processes it starts live there (and stay there afterwards)."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(self.path, os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.name}")
            try:
                yield self
            finally:
                if _libc.setns(home, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back to the host namespace")
        finally:
            os.close(target)
            os.close(home)

    def udp_socket(self) -> socket.socket:
        """A UDP socket bound to 127.0.0.1:<any> inside the namespace."""
        with self.entered():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
        return s

    def free_port(self, tcp_too: bool = True) -> int:
        with self.entered():
            return free_port(tcp_too=tcp_too)

    def argv(self, argv: list[str]) -> list[str]:
        return [IP, "netns", "exec", self.name, *argv]

    def run(self, argv: list[str], timeout: float = 20.0) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(argv), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def kdig(self, port: int, name: str, rdtype: str = "A", *extra: str, timeout: float = 10.0) -> "KdigResult":
        """kdig run inside the namespace, asking 127.0.0.1:port once (1 s, no retry)."""
        r = self.run([KDIG, "@127.0.0.1", "-p", str(port), "+time=1", "+retry=0", *extra, name, rdtype],
                     timeout=timeout)
        return KdigResult(r)

    def delete(self) -> None:
        if self.created:
            subprocess.run([IP, "netns", "del", self.name], capture_output=True, timeout=10)
            self.created = False


class KdigResult:
    def __init__(self, r: subprocess.CompletedProcess):
        self.returncode = r.returncode
        self.stdout = r.stdout
        self.stderr = r.stderr
        m = re.search(r"status: (\w+)", r.stdout)
        self.status = m.group(1) if m else None

    def answers(self, rdtype: str = "A") -> list[str]:
        out = []
        in_answer = False
        for line in self.stdout.splitlines():
            if line.startswith(";; ANSWER SECTION"):
                in_answer = True
                continue
            if in_answer:
                if not line.strip() or line.startswith(";;"):
                    break
                cols = line.split()
                if len(cols) >= 5 and cols[3] == rdtype:
                    out.append(cols[4])
        return out

    def __repr__(self):
        return f"kdig rc={self.returncode} status={self.status}\n{self.stdout}\n{self.stderr}"


class NsKnotd(Knotd):
    """dnsgate_testlib's knotd (example.com. and example.org.), started and
    probed from inside `ns`, listening on the namespace's 127.0.0.1."""

    def __init__(self, ns: Netns, workdir: Path):
        workdir.mkdir(parents=True, exist_ok=True)
        with ns.entered():
            super().__init__(workdir)  # picks a port free inside the namespace
        self.ns = ns

    def start(self) -> None:
        with self.ns.entered():
            super().start()
        assert self.ns.holds(self.proc.pid), "knotd is not in the cell's namespace"

    def ask(self, wire: bytes, timeout: float = 2.0) -> bytes:
        with self.ns.entered():
            return super().ask(wire, timeout)


# ---------------------------------------------------------------- processes


def proc_status(pid: int) -> dict:
    """/proc/PID/status as a dict of raw strings."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def proc_state(pid: int) -> Optional[str]:
    """The state letter of /proc/PID/stat, None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rfind(")") + 2]


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    return proc_state(pid) not in (None, "Z", "X")


def wait_dead(pid: int, timeout: float = 5.0) -> bool:
    """Until `pid` is gone or a zombie; False on timeout."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (its own, not its children's), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    cols = data[data.rfind(")") + 2:].split()
    # cols[0] is field 3 (state): utime is field 14, stime field 15
    return (int(cols[11]) + int(cols[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    return int(proc_status(pid)["VmRSS"].split()[0])


def kill_pid(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


# ---------------------------------------------------------------- cells


@dataclass
class Cell:
    """One cell file and what the test sent to its proxy."""
    name: str
    path: Path
    ns: Netns
    port: int
    allowlist: list
    upstream: str
    events_path: Optional[Path]
    datagrams: int = 0  # datagrams the test sent to this cell's listener (one event each)
    probes: int = 0
    _sock: Optional[socket.socket] = None
    extra: dict = field(default_factory=dict)

    def sock(self) -> socket.socket:
        if self._sock is None:
            self._sock = self.ns.udp_socket()
        return self._sock

    def exchange(self, wire: bytes, timeout: float = 2.0) -> Reply:
        """One datagram from inside the cell's namespace, one answer (or None)."""
        self.datagrams += 1
        return udp_exchange(self.port, wire, timeout=timeout, sock=self.sock())

    def query(self, name: str, rdtype: str = "A", timeout: float = 2.0, ident: Optional[int] = None) -> Reply:
        ident = secrets.randbelow(65536) if ident is None else ident
        return self.exchange(make_query(name, rdtype, ident=ident).to_wire(), timeout=timeout)

    def probe(self, timeout: float = 5.0) -> Reply:
        """The refused readiness probe; the proxy must answer it."""
        self.probes += 1
        return self.exchange(make_query(PROBE_NAME, "A", ident=0xBEEF).to_wire(), timeout=timeout)

    def kdig(self, name: str, rdtype: str = "A") -> KdigResult:
        self.datagrams += 1
        return self.ns.kdig(self.port, name, rdtype)

    def event_lines(self) -> list[str]:
        assert self.events_path is not None
        try:
            text = self.events_path.read_text()
        except FileNotFoundError:
            return []
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        return [line for line in text.split("\n") if line]

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.event_lines()]

    def wait_events(self, n: int, timeout: float = 3.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        lines = self.event_lines()
        while len(lines) < n and time.monotonic() < deadline:
            time.sleep(0.02)
            lines = self.event_lines()
        return [json.loads(line) for line in lines]

    def check_all_events(self) -> list[dict]:
        """After the proxy stopped: one valid CloudEvent per datagram sent, ids unique."""
        assert self.events_path is not None
        raw = self.events_path.read_bytes() if self.events_path.exists() else b""
        assert raw == b"" or raw.endswith(b"\n"), f"cell {self.name}: the events file ends in half a line"
        evs = self.events()
        for ev in evs:
            check_envelope(ev, self.name)
        ids = [e["id"] for e in evs]
        assert len(ids) == len(set(ids)), f"cell {self.name}: event ids are not unique"
        assert len(evs) == self.datagrams, (
            f"cell {self.name}: {len(evs)} events for {self.datagrams} datagrams sent")
        if evs:
            validate_with_sdk(self.events_path)
        return evs

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def cell_text(*, name: str, netns: str, port: int, allowlist: list, upstream: str,
              events_path: Optional[Path], sink: str = "file", user: Optional[str] = None,
              extra_lines: tuple = (), host: str = "127.0.0.1") -> str:
    """A cell file: a dnsgate config (dnsgate_testlib.render_config, `cell:`
    set to `name`) plus `netns:` and, when given, `user:`."""
    text = render_config(cell=name, listen_port=port, listen_host=host, allowlist=allowlist, upstream=upstream,
                         sink=sink, events_path=events_path)
    text += f"netns: {yaml_str(netns)}\n"
    if user is not None:
        text += f"user: {yaml_str(user)}\n"
    for line in extra_lines:
        text += line + "\n"
    return text


def write_cell(cells_dir: Path, name: str, ns: Netns, *, port: int, allowlist: list, upstream: str,
               events_dir: Optional[Path] = None, sink: str = "file", user: Optional[str] = None,
               netns: Optional[str] = None, extra_lines: tuple = ()) -> Cell:
    """Writes DIR/NAME.yaml for a cell listening on 127.0.0.1:port inside `ns`
    (or the `netns:` value given) and returns its Cell."""
    cells_dir.mkdir(parents=True, exist_ok=True)
    events_path = None
    if sink == "file":
        events_path = (events_dir or cells_dir.parent / "events") / f"{name}.jsonl"
        events_path.parent.mkdir(parents=True, exist_ok=True)
    path = cells_dir / f"{name}.yaml"
    path.write_text(cell_text(name=name, netns=netns or ns.name, port=port, allowlist=allowlist,
                              upstream=upstream, events_path=events_path, sink=sink, user=user,
                              extra_lines=extra_lines))
    return Cell(name=name, path=path, ns=ns, port=port, allowlist=list(allowlist), upstream=upstream,
                events_path=events_path)


# ---------------------------------------------------------------- the supervisor

CELL = r"cell (?P<cell>[^\s:\[\]]+): "
RE_STARTED = re.compile(CELL + r"proxy (?P<pid>\d+) started")
RE_EXITED = re.compile(CELL + r"proxy (?P<pid>\d+) exited with status (?P<status>\d+)")
RE_KILLED = re.compile(CELL + r"proxy (?P<pid>\d+) killed by signal (?P<sig>\S+)(?P<rest>.*)")
RE_RESTART = re.compile(CELL + r"restart (?P<n>\d+) in (?P<ms>\d+) ms")
RE_REFUSED = re.compile(CELL + r"refused: (?P<reason>.*)")
RE_STOPPED = re.compile(CELL + r"stopped")


@dataclass
class LogEvent:
    kind: str
    cell: str
    line: str
    match: re.Match
    index: int


class Supervisor:
    """`dnsgate supervise --cells DIR` as a child of the test, its stderr
    (log lines, then the final JSON) and stdout in files."""

    def __init__(self, workdir: Path, cells_dir: Path, env: Optional[dict] = None, binary: Optional[str] = None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.cells_dir = cells_dir
        self.binary = binary or dnsgate_bin()
        self.env = {**os.environ, **(env or {})}
        self.stdout_path = workdir / "supervise.stdout"
        self.stderr_path = workdir / "supervise.stderr"
        self.proc: Optional[subprocess.Popen] = None
        self.returncode: Optional[int] = None
        self.final: Optional[dict] = None

    def start(self) -> "Supervisor":
        require_root()
        assert os.access(self.binary, os.X_OK), f"dnsgate binary not found at {self.binary} (set DNSGATE_BIN)"
        out = open(self.stdout_path, "wb")
        err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([self.binary, "supervise", "--cells", str(self.cells_dir)], stdout=out,
                                     stderr=err, stdin=subprocess.DEVNULL, env=self.env)
        out.close()
        err.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log(self) -> list[LogEvent]:
        out = []
        for i, line in enumerate(self.stderr().splitlines()):
            for kind, rx in (("started", RE_STARTED), ("exited", RE_EXITED), ("killed", RE_KILLED),
                             ("restart", RE_RESTART), ("refused", RE_REFUSED), ("stopped", RE_STOPPED)):
                m = rx.search(line)
                if m:
                    out.append(LogEvent(kind, m.group("cell"), line, m, i))
                    break
        return out

    def events_of(self, cell: str, kind: Optional[str] = None) -> list[LogEvent]:
        return [e for e in self.log() if e.cell == cell and (kind is None or e.kind == kind)]

    def wait_for(self, cell: str, kind: str, count: int = 1, timeout: float = 10.0,
                 what: str = "") -> list[LogEvent]:
        """Until the log holds `count` lines of `kind` for `cell`; returns them all.
        Fails (with the log) on timeout or if the supervisor exits."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.events_of(cell, kind)
            if len(got) >= count:
                return got
            if not self.running():
                raise AssertionError(f"the supervisor exited ({self.proc.returncode}) while waiting for "
                                     f"{count} '{kind}' line(s) of cell {cell} {what}:\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} '{kind}' line(s) of cell {cell} within {timeout} s {what}:\n"
                                     f"{self.stderr()}")
            time.sleep(0.01)

    def wait_line(self, rx: re.Pattern, count: int = 1, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            got = [line for line in self.stderr().splitlines() if rx.search(line)]
            if len(got) >= count:
                return got
            if time.monotonic() > deadline or not self.running():
                raise AssertionError(f"no {count} line(s) matching {rx.pattern!r}:\n{self.stderr()}")
            time.sleep(0.01)

    def pids(self, cell: str) -> list[int]:
        """Every proxy PID logged as started for `cell`, in order."""
        return [int(e.match.group("pid")) for e in self.events_of(cell, "started")]

    def current_pid(self, cell: str, timeout: float = 10.0) -> int:
        """The cell's latest proxy, waiting (bounded) until one is logged and alive."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids(cell)
            if pids and alive(pids[-1]):
                return pids[-1]
            if time.monotonic() > deadline or not self.running():
                raise AssertionError(f"no live proxy for cell {cell} within {timeout} s:\n{self.stderr()}")
            time.sleep(0.005)

    def wait_new_pid(self, cell: str, old: int, timeout: float = 10.0) -> int:
        """The first proxy of `cell` started after `old`, alive."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids(cell)
            if old in pids and pids[-1] != old and alive(pids[-1]):
                return pids[-1]
            if time.monotonic() > deadline or not self.running():
                raise AssertionError(f"cell {cell}: no new proxy after {old} within {timeout} s:\n{self.stderr()}")
            time.sleep(0.002)

    def hup(self) -> None:
        assert self.running(), self.stderr()
        self.proc.send_signal(signal.SIGHUP)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> dict:
        """Signals the supervisor, waits for it, checks exit 0 and returns its
        final JSON (the last stderr line)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"the supervisor did not exit within {timeout} s of signal {sig}:\n"
                                     f"{self.stderr()}")
        self.returncode = self.proc.returncode
        assert self.returncode == 0, f"the supervisor exited with {self.returncode}:\n{self.stderr()}"
        self.final = parse_final(self.stderr())
        return self.final

    def kill(self) -> None:
        """Last resort at teardown: the supervisor and every proxy it logged, by PID."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for e in self.log():
            if e.kind == "started":
                pid = int(e.match.group("pid"))
                if alive(pid) and _parent_of(pid) in (1, self.pid):
                    kill_pid(pid)


def _parent_of(pid: int) -> Optional[int]:
    try:
        return int(proc_status(pid)["PPid"])
    except (OSError, KeyError, ValueError):
        return None


def parse_final(stderr: str) -> dict:
    """The supervisor's last stderr line: {"cells":[{"cell","starts","restarts","crashes","stats"}...]}."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "the supervisor printed nothing on stderr (expected its final JSON last)"
    try:
        final = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise AssertionError(f"the supervisor's last stderr line is not JSON ({e}): {lines[-1]!r}\n{stderr}") from None
    assert isinstance(final, dict) and isinstance(final.get("cells"), list), final
    for c in final["cells"]:
        for key in ("cell", "starts", "restarts", "crashes", "stats"):
            assert key in c, f"final JSON cell entry lacks {key}: {c}"
        for key in ("starts", "restarts", "crashes"):
            assert isinstance(c[key], int) and c[key] >= 0, c
    return final


def final_cell(final: dict, name: str) -> dict:
    got = [c for c in final["cells"] if c["cell"] == name]
    assert len(got) == 1, f"cell {name} appears {len(got)} times in the final JSON: {final}"
    return got[0]


def check_proxy_stats(stats, cell: Cell) -> None:
    """The proxy's last stats object, as `dnsgate run` prints it."""
    assert isinstance(stats, dict), f"cell {cell.name}: stats is not an object: {stats!r}"
    for key in STATS_KEYS:
        assert key in stats, f"cell {cell.name}: stats lacks {key}: {stats}"
        assert isinstance(stats[key], int) and stats[key] >= 0, stats


# ---------------------------------------------------------------- load


@dataclass
class LoadResult:
    sent: int
    answered: int
    wrong: list
    rcodes: dict
    seconds: float
    unanswered_ids: list

    @property
    def lost(self) -> int:
        return self.sent - self.answered


class PacedLoad:
    """`count` queries at `rate`/s from one socket inside `ns` to 127.0.0.1:port,
    each with its own id (count <= 65536), a thread sending and one
    receiving. `names` cycles: (qname, expected rcode)."""

    def __init__(self, ns: Netns, port: int, names: list, count: int, rate: float, grace: float = 3.0):
        assert count <= 65536
        self.ns, self.port, self.names, self.count, self.rate, self.grace = ns, port, names, count, rate, grace
        self.sock = ns.udp_socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.expect: dict = {}
        self.answers: dict = {}
        self.wrong: list = []
        self.sent = 0
        self._done_sending = threading.Event()
        self._stop = threading.Event()
        self._threads: list = []
        self.started_at = 0.0
        self.ended_at = 0.0

    def start(self) -> "PacedLoad":
        self.started_at = time.monotonic()
        for target in (self._send, self._recv):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _send(self):
        for i in range(self.count):
            due = self.started_at + i / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            name, rcode = self.names[i % len(self.names)]
            wire = make_query(name, "A", ident=i).to_wire()
            self.expect[i] = (wire, rcode)
            self.sock.sendto(wire, ("127.0.0.1", self.port))
            self.sent += 1
        self._done_sending.set()

    def _recv(self):
        self.sock.settimeout(0.05)
        end = None
        while not self._stop.is_set():
            if end is None and self._done_sending.is_set():
                end = time.monotonic() + self.grace
            if end is not None and (time.monotonic() > end or len(self.answers) >= self.count):
                break
            try:
                data, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except ConnectionRefusedError:
                continue
            try:
                msg = dns.message.from_wire(data)
            except Exception as e:  # noqa: BLE001 - recorded, reported by the test
                self.wrong.append(f"unparsable answer: {e}")
                continue
            exp = self.expect.get(msg.id)
            if exp is None:
                self.wrong.append(f"answer with an id never sent: {msg.id}")
                continue
            q = dns.message.from_wire(exp[0])
            if msg.question != q.question:
                self.wrong.append(f"id {msg.id}: question {msg.question} for {q.question}")
            elif msg.rcode() != exp[1]:
                self.wrong.append(f"id {msg.id}: {dns.rcode.to_text(msg.rcode())}, expected "
                                  f"{dns.rcode.to_text(exp[1])}")
            if msg.id in self.answers:
                self.wrong.append(f"id {msg.id} answered twice")
            self.answers[msg.id] = time.monotonic()
        self.ended_at = time.monotonic()

    def wait(self, timeout: float) -> LoadResult:
        for t in self._threads:
            t.join(timeout=timeout)
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self.sock.close()
        rcodes: dict = {}
        for i in self.answers:
            r = self.expect[i][1]
            rcodes[dns.rcode.to_text(r)] = rcodes.get(dns.rcode.to_text(r), 0) + 1
        missing = sorted(set(self.expect) - set(self.answers))
        return LoadResult(self.sent, len(self.answers), self.wrong, rcodes, self.ended_at - self.started_at,
                          missing)


# ---------------------------------------------------------------- the rig


class Rig:
    """What one test starts, stopped in order at the end: supervisors (and
    the proxies they logged, by PID), knotds, namespaces."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.namespaces: list = []
        self.knotds: list = []
        self.supervisors: list = []
        self.cells: list = []

    def netns(self) -> Netns:
        ns = Netns()
        self.namespaces.append(ns)
        return ns.create()

    def knotd(self, ns: Netns) -> NsKnotd:
        k = NsKnotd(ns, self.tmp / f"knot-{ns.name}-{len(self.knotds)}")
        self.knotds.append(k)
        k.start()
        return k

    def cell(self, name: str, ns: Netns, **kw) -> Cell:
        c = write_cell(self.tmp / "cells", name, ns, **kw)
        self.cells.append(c)
        return c

    @property
    def cells_dir(self) -> Path:
        d = self.tmp / "cells"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def supervisor(self, env: Optional[dict] = None, cells_dir: Optional[Path] = None,
                   binary: Optional[str] = None) -> Supervisor:
        s = Supervisor(self.tmp / f"supervisor{len(self.supervisors)}", cells_dir or self.cells_dir, env=env,
                       binary=binary)
        self.supervisors.append(s)
        return s.start()

    def close(self) -> list:
        problems = []
        for s in self.supervisors:
            try:
                if s.running():
                    s.proc.send_signal(signal.SIGTERM)
                    try:
                        s.proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        problems.append(f"supervisor {s.pid} ignored SIGTERM for 10 s")
            finally:
                s.kill()
        for c in self.cells:
            c.close()
        for k in self.knotds:
            with contextlib.suppress(Exception):
                k.stop()
        for ns in self.namespaces:
            ns.delete()
            if ns.path.exists():
                problems.append(f"namespace {ns.name} still exists")
        return problems


def rig_for_test(tmp_path):
    """The body of the test modules' `rig` fixture
    (`rig = pytest.fixture(rig_for_test)`): a Rig for one test; at the end
    every problem its close() found fails the test."""
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        problems = r.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
