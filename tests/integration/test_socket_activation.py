"""systemd socket activation and sd_notify for `dnsgate run` (DESIGN.md §10,
"Without the supervisor"; docs/running.md, "systemd: socket activation").

systemd-socket-activate stands in for PID 1: it binds the listeners, waits
for the first packet and execs dnsgate with LISTEN_FDS, LISTEN_PID and
LISTEN_FDNAMES (same PID: in its default mode it execs, it does not fork).
It opens sockets of one type per invocation, so the UDP and TCP listeners
come from two of them chained: the outer one binds UDP (-d), the inner one
passes that descriptor through and adds the TCP listener. A unix datagram
socket of the test is NOTIFY_SOCKET (given with -E, so only dnsgate sees
it): READY=1, WATCHDOG=1 and STOPPING=1 arrive there, with the sender's
PID as SCM_CREDENTIALS. The upstream is the session's real knotd.
Loopback only; every process is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import dns.message
import dns.query
import dns.rcode
import pytest

from dnsgate_testlib import (
    REPO, dnsgate_bin, endpoint, free_port, make_query, parse_stats, port_held_by, socket_inodes_of, udp_exchange,
    yaml_str,
)

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"
WATCHDOG_USEC = 400_000  # so dnsgate pings every 200 ms
SD_LISTEN_FDS_START = 3

pytestmark = pytest.mark.skipif(not os.access(SOCKET_ACTIVATE, os.X_OK),
                                reason="systemd-socket-activate is missing: install systemd (scripts/install-deps.sh)")


def render(tmp: Path, *, upstream: str, udp: Optional[str], tcp: Optional[str]) -> Path:
    lines = ["cell: sdtest", "listen:"]
    if udp:
        lines.append(f"  udp: {yaml_str(udp)}")
    if tcp:
        lines.append(f"  tcp: {yaml_str(tcp)}")
    lines += ["dnsAuthority:", "  hostnameAllowlist:", "    - www.example.com", "  resolvers:",
              "    - protocol: do53-udp", f"      address: {yaml_str(upstream)}",
              "events:", "  sink: file", f"  path: {yaml_str(str(tmp / 'events.jsonl'))}"]
    path = tmp / "dnsgate.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class NotifySocket:
    """A unix datagram socket standing in for systemd's notify socket; a
    thread records (monotonic time, sender pid, message) for each datagram."""

    def __init__(self):
        # sun_path holds 108 bytes: a short directory of its own, not tmp_path.
        self.dir = tempfile.mkdtemp(prefix="dg-notify-", dir="/tmp")
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, int, str]] = []
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        creds_size = struct.calcsize("3i")
        while not self.done:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(creds_size))
            except socket.timeout:
                continue
            except OSError:
                return
            pid = -1
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[:creds_size])[0]
            with self.lock:
                self.messages.append((time.monotonic(), pid, data.decode()))

    def received(self) -> list[tuple[float, int, str]]:
        with self.lock:
            return list(self.messages)

    def wait_for(self, line: str, timeout: float = 5.0) -> tuple[float, int, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.received():
                if line in m[2].split("\n"):
                    return m
            time.sleep(0.02)
        raise AssertionError(f"no {line!r} on NOTIFY_SOCKET within {timeout} s: {self.received()!r}")

    def close(self) -> None:
        self.done = True
        self.thread.join(timeout=2)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify_socket():
    n = NotifySocket()
    try:
        yield n
    finally:
        n.close()


class Activated:
    """dnsgate run under systemd-socket-activate: `udp` and `tcp` are the
    addresses the launcher binds (None: not that kind)."""

    def __init__(self, tmp: Path, config: Path, *, udp: Optional[str], tcp: Optional[str],
                 env: Optional[dict] = None):
        self.tmp = tmp
        self.udp, self.tcp = udp, tcp
        self.stderr_path = tmp / "stderr.txt"
        names = [n for n, a in (("dns-udp", udp), ("dns-tcp", tcp)) if a]
        setenv = [f"-E{k}={v}" for k, v in (env or {}).items()]
        dnsgate = [dnsgate_bin(), "run", "--config", str(config)]
        inner = ["--fdname=" + ":".join(names), *setenv, "--", *dnsgate]
        if udp and tcp:
            self.argv = [SOCKET_ACTIVATE, "-d", f"-l{udp}", "--", SOCKET_ACTIVATE, f"-l{tcp}", *inner]
        elif udp:
            self.argv = [SOCKET_ACTIVATE, "-d", f"-l{udp}", *inner]
        else:
            self.argv = [SOCKET_ACTIVATE, f"-l{tcp}", *inner]
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Activated":
        # The launcher gets no NOTIFY_SOCKET of its own (it would send its own
        # READY=1); dnsgate gets only what -E gives it, PATH and the LISTEN_*.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "LISTEN_", "WATCHDOG_"))}
        err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
        err.close()
        first = self.udp or self.tcp
        host, port = split(first)
        deadline = time.monotonic() + 10
        while not port_held_by(self.proc.pid, port, host, "udp" if self.udp else "tcp"):
            assert self.proc.poll() is None, f"the launcher exited with {self.proc.returncode}:\n{self.stderr()}"
            assert time.monotonic() < deadline, f"the launcher did not bind {first}:\n{self.stderr()}"
            time.sleep(0.01)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            assert self.proc.poll() is None or text in self.stderr(), (
                f"exited with {self.proc.returncode} before logging {text!r}:\n{self.stderr()}")
            assert time.monotonic() < deadline, f"no {text!r} in stderr within {timeout} s:\n{self.stderr()}"
            time.sleep(0.02)

    def wait(self, timeout: float = 5.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pid {self.proc.pid} did not exit within {timeout} s:\n{self.stderr()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


def split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


@pytest.fixture
def activate(tmp_path):
    """Factory: activate(config, udp=..., tcp=..., env=...) -> a started Activated.
    Whatever still runs at teardown is killed by its PID."""
    started: list[Activated] = []

    def start(config: Path, **kw) -> Activated:
        return adopt(Activated(tmp_path, config, **kw))

    def adopt(a: Activated) -> Activated:
        """Starts an Activated built by the test (to add arguments)."""
        started.append(a)
        return a.start()

    start.adopt = adopt
    try:
        yield start
    finally:
        for a in started:
            a.kill()


def fd_inode(pid: int, fd: int) -> str:
    link = os.readlink(f"/proc/{pid}/fd/{fd}")
    assert link.startswith("socket:["), link
    return link[8:-1]


def sockets_on(pid: int, port: int, proto: str) -> set:
    """Inodes among `pid`'s sockets bound to 127.0.0.1:port (listening, for tcp)."""
    mine = socket_inodes_of(pid)
    found = set()
    with open(f"/proc/net/{proto}") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[1] == f"0100007F:{port:04X}" and cols[9] in mine and (proto == "udp" or cols[3] == "0A"):
                found.add(cols[9])
    return found


def test_listeners_from_systemd_ready_watchdog_stopping(tmp_path, knotd, activate, notify_socket):
    """The listeners are the launcher's sockets (dnsgate binds none of its
    own), a query is answered through each, READY=1 comes once serving,
    WATCHDOG=1 every WATCHDOG_USEC / 2, STOPPING=1 on SIGTERM, exit 0 with
    the stats line."""
    port = free_port(tcp_too=True)
    addr = endpoint("127.0.0.1", port)
    config = render(tmp_path, upstream=knotd.address, udp=addr, tcp=addr)
    gate = activate(config, udp=addr, tcp=addr,
                    env={"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    # Before any packet only the launcher exists, holding the UDP socket.
    udp_before = sockets_on(gate.pid, port, "udp")
    assert len(udp_before) == 1, udp_before
    assert notify_socket.received() == [], "nothing may be notified before dnsgate runs"

    # The first query wakes the launcher, which execs dnsgate; the datagram
    # waits in the passed socket and dnsgate answers it.
    reply = udp_exchange(port, make_query("www.example.com.", "A", ident=0x5D01).to_wire(), timeout=5.0)
    assert reply.response is not None, f"no answer through the activated UDP socket:\n{gate.stderr()}"
    msg = reply.msg
    assert msg.rcode() == dns.rcode.NOERROR and msg.id == 0x5D01
    assert [rr.address for rr in msg.answer[0]] == ["192.0.2.10"], msg

    ready_at, ready_pid, ready = notify_socket.wait_for("READY=1")
    assert ready_pid == gate.pid, "READY=1 must come from dnsgate itself"
    assert f"STATUS=serving cell sdtest on udp {addr} and tcp {addr}" in ready.split("\n"), ready
    gate.wait_for_log(f'listeners from systemd (socket activation): udp {addr} (fd 3 "dns-udp"), '
                      f'tcp {addr} (fd 4 "dns-tcp")')

    # Over TCP through the other passed socket.
    tcp_answer = dns.query.tcp(make_query("www.example.com.", "A", ident=0x5D02), "127.0.0.1", port=port,
                               timeout=3.0)
    assert tcp_answer.rcode() == dns.rcode.NOERROR and tcp_answer.id == 0x5D02
    # A name off the allowlist is refused there as well: the policy applies.
    refused = udp_exchange(port, make_query("www.example.org.", "A", ident=0x5D03).to_wire(), timeout=3.0)
    assert refused.msg.rcode() == dns.rcode.REFUSED

    # The listeners are exactly the passed descriptors: the UDP socket is
    # the one the launcher bound before dnsgate existed, and each port has
    # one socket only, the one at the descriptor systemd's protocol gives it.
    assert sockets_on(gate.pid, port, "udp") == udp_before == {fd_inode(gate.pid, SD_LISTEN_FDS_START)}
    assert sockets_on(gate.pid, port, "tcp") == {fd_inode(gate.pid, SD_LISTEN_FDS_START + 1)}
    environ = open(f"/proc/{gate.pid}/environ", "rb").read().split(b"\0")
    assert b"LISTEN_FDS=2" in environ, "the test should have launched dnsgate with two descriptors"

    # Watchdog pings at about half of WATCHDOG_USEC, from dnsgate.
    time.sleep(1.5)
    pings = [(t, pid) for t, pid, m in notify_socket.received() if "WATCHDOG=1" in m.split("\n")]
    assert all(pid == gate.pid for _, pid in pings), pings
    assert len(pings) >= 6, f"expected a ping every {WATCHDOG_USEC / 2e6} s, got {len(pings)}: {pings}"
    gaps = [b[0] - a[0] for a, b in zip(pings, pings[1:])]
    interval = WATCHDOG_USEC / 2e6
    # No bursts and no holes; the typical gap is the interval (a loaded
    # machine may delay one ping, not the pace).
    assert all(0.25 * interval <= g <= 3 * interval for g in gaps), f"ping gaps {gaps}, want about {interval} s"
    median = sorted(gaps)[len(gaps) // 2]
    assert 0.75 * interval <= median <= 1.25 * interval, f"median ping gap {median} s, want {interval} s: {gaps}"

    gate.proc.send_signal(signal.SIGTERM)
    _, stop_pid, _ = notify_socket.wait_for("STOPPING=1", timeout=2.0)
    assert stop_pid == gate.pid
    assert gate.wait() == 0, gate.stderr()
    stats = parse_stats(gate.stderr())
    assert stats["relayed"] == 2 and stats["refused"] == 1 and stats["tcpAccepted"] == 1, stats
    stopping = [m for _, _, m in notify_socket.received() if "STOPPING=1" in m.split("\n")]
    assert len(stopping) == 1, "STOPPING=1 is sent once"
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["data"]["action"] for e in events].count("forward") == 2, events


def test_udp_only_no_watchdog(tmp_path, knotd, activate, notify_socket):
    """One passed UDP socket for a config without listen.tcp; READY=1 but no
    WATCHDOG=1 when the service has no watchdog."""
    port = free_port()
    addr = endpoint("127.0.0.1", port)
    config = render(tmp_path, upstream=knotd.address, udp=addr, tcp=None)
    gate = activate(config, udp=addr, tcp=None, env={"NOTIFY_SOCKET": notify_socket.path})
    reply = udp_exchange(port, make_query("www.example.com.", "A").to_wire(), timeout=5.0)
    assert reply.response is not None and reply.msg.rcode() == dns.rcode.NOERROR, gate.stderr()
    notify_socket.wait_for("READY=1")
    time.sleep(0.5)
    assert not [m for _, _, m in notify_socket.received() if "WATCHDOG=1" in m], notify_socket.received()
    gate.proc.send_signal(signal.SIGTERM)
    assert gate.wait() == 0, gate.stderr()
    assert f'listeners from systemd (socket activation): udp {addr} (fd 3 "dns-udp")' in gate.stderr()


def expect_refusal(gate: Activated, trigger_port: int, *needles: str) -> str:
    """dnsgate, woken by a datagram, must exit 1 with one error line holding every needle."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(make_query("www.example.com.", "A").to_wire(), ("127.0.0.1", trigger_port))
    assert gate.wait() == 1, gate.stderr()
    lines = [line for line in gate.stderr().splitlines() if "socket activation:" in line]
    assert len(lines) == 1, gate.stderr()
    assert " dnsgate error: socket activation: " in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def test_address_mismatch_is_an_error(tmp_path, knotd, activate):
    """The config's listen.udp names another port than the passed socket: exit
    1, the message names both, and dnsgate binds nothing of its own."""
    passed, configured = free_port(), free_port()
    config = render(tmp_path, upstream=knotd.address, udp=endpoint("127.0.0.1", configured), tcp=None)
    gate = activate(config, udp=endpoint("127.0.0.1", passed), tcp=None)
    expect_refusal(gate, passed, f"udp 127.0.0.1:{passed}", f"listen.udp is 127.0.0.1:{configured}", '"dns-udp"')
    assert "stopped" not in gate.stderr(), "no proxy may have run"


def test_passed_kind_the_config_does_not_listen_on(tmp_path, knotd, activate):
    port = free_port(tcp_too=True)
    addr = endpoint("127.0.0.1", port)
    config = render(tmp_path, upstream=knotd.address, udp=addr, tcp=None)
    gate = activate(config, udp=addr, tcp=addr)
    expect_refusal(gate, port, f"systemd passed tcp {addr} (fd 4 \"dns-tcp\")", "the config has no listen.tcp")


def test_config_listener_not_passed(tmp_path, knotd, activate):
    port = free_port(tcp_too=True)
    addr = endpoint("127.0.0.1", port)
    config = render(tmp_path, upstream=knotd.address, udp=addr, tcp=addr)
    gate = activate(config, udp=addr, tcp=None)
    expect_refusal(gate, port, f"the config's listen.tcp is {addr} but systemd passed no tcp socket")


def test_listen_fds_for_another_process_are_ignored(tmp_path, knotd, notify_socket):
    """LISTEN_PID names someone else: dnsgate binds its own listener as
    always, and with NOTIFY_SOCKET (Type=notify without a .socket unit) it
    still says READY=1 and STOPPING=1."""
    port = free_port()
    addr = endpoint("127.0.0.1", port)
    config = render(tmp_path, upstream=knotd.address, udp=addr, tcp=None)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "LISTEN_", "WATCHDOG_"))}
    env.update(LISTEN_PID="1", LISTEN_FDS="1", LISTEN_FDNAMES="bogus", NOTIFY_SOCKET=notify_socket.path)
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([dnsgate_bin(), "run", "--config", str(config)], stdin=subprocess.DEVNULL,
                                stdout=err, stderr=err, env=env)
    try:
        _, pid, ready = notify_socket.wait_for("READY=1")
        assert pid == proc.pid
        assert port_held_by(proc.pid, port, "127.0.0.1", "udp"), err_path.read_text()
        reply = udp_exchange(port, make_query("www.example.com.", "A").to_wire(), timeout=3.0)
        assert reply.msg.rcode() == dns.rcode.NOERROR
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0, err_path.read_text()
        notify_socket.wait_for("STOPPING=1")
        assert "socket activation" not in err_path.read_text()
        assert not [m for _, _, m in notify_socket.received() if "WATCHDOG=1" in m]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


# ------------------------------------------------------------ the shipped units


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def unit_values(path: Path, key: str) -> list[str]:
    return [line.split("=", 1)[1].strip() for line in path.read_text().splitlines()
            if line.startswith(key + "=")]


def test_example_config_matches_the_socket_unit():
    """The example config installs next to the units; its listeners are the
    socket unit's defaults, as dnsgate requires, and it passes `check`."""
    dist = REPO / "dist" / "systemd"
    example = dist / "example.yaml"
    socket_unit = dist / "dnsgate@.socket"
    text = example.read_text()
    for key, proto in (("ListenDatagram", "udp"), ("ListenStream", "tcp")):
        [address] = unit_values(socket_unit, key)
        assert f"\n  {proto}: {address}\n" in text, f"{example}: listen.{proto} must be {address}"
    r = subprocess.run([dnsgate_bin(), "check", "--config", str(example)], capture_output=True, text=True,
                       timeout=10, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr


def test_make_install_and_systemd_analyze_verify(tmp_path):
    """`make install` into a scratch PREFIX (no DESTDIR, so ExecStart= names
    the copied binary); the installed units pass `systemd-analyze verify`
    as the instance dnsgate@web (it needs no running systemd)."""
    prefix = tmp_path / "prefix"
    build_dir = Path(dnsgate_bin()).parent
    r = subprocess.run(["make", "-s", "-C", str(REPO), "install", f"PREFIX={prefix}", f"BUILD_DIR={build_dir}"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    binary = prefix / "bin" / "dnsgate"
    units = prefix / "lib" / "systemd" / "system"
    assert os.access(binary, os.X_OK)
    assert (prefix / "share" / "doc" / "dnsgate" / "example.yaml").is_file()
    service = units / "dnsgate@.service"
    assert unit_values(service, "ExecStart") == [f"{binary} run --config /etc/dnsgate/%i.yaml"]
    assert unit_values(service, "Type") == ["notify"]
    assert unit_values(service, "WatchdogSec"), "the service must have a watchdog"
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze is missing")
    verify = tmp_path / "verify"
    verify.mkdir()
    for kind in ("service", "socket"):
        shutil.copy(units / f"dnsgate@.{kind}", verify / f"dnsgate@.{kind}")
        shutil.copy(units / f"dnsgate@.{kind}", verify / f"dnsgate@web.{kind}")
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", "./dnsgate@web.socket", "./dnsgate@web.service"],
                       cwd=verify, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and "dnsgate@" not in r.stderr, r.stderr


def test_activation_and_notify_under_seccomp(tmp_path, knotd, activate, notify_socket):
    """`run --seccomp` (the supervisor's allow-list, installed before the loop
    serves) leaves sd_notify working: the notifier thread's AF_UNIX sends
    are allowed, so READY=1, the pings and STOPPING=1 still arrive."""
    port = free_port()
    addr = endpoint("127.0.0.1", port)
    config = render(tmp_path, upstream=knotd.address, udp=addr, tcp=None)
    env = {"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    if "ASAN_OPTIONS" in os.environ:
        # Under scripts/sanitize-test.sh: LeakSanitizer's exit-time check
        # needs ptrace, which no seccomp allow-list has; every other check stays.
        env["ASAN_OPTIONS"] = os.environ["ASAN_OPTIONS"] + ":detect_leaks=0"
    gate = Activated(tmp_path, config, udp=addr, tcp=None, env=env)
    gate.argv.append("--seccomp")
    gate = activate.adopt(gate)
    reply = udp_exchange(port, make_query("www.example.com.", "A").to_wire(), timeout=5.0)
    assert reply.response is not None and reply.msg.rcode() == dns.rcode.NOERROR, gate.stderr()
    notify_socket.wait_for("READY=1")
    time.sleep(0.7)
    assert len([m for _, _, m in notify_socket.received() if m == "WATCHDOG=1"]) >= 3, notify_socket.received()
    gate.proc.send_signal(signal.SIGTERM)
    notify_socket.wait_for("STOPPING=1", timeout=2.0)
    assert gate.wait() == 0, gate.stderr()
    assert "seccomp: confined" in gate.stderr()
