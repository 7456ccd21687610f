"""Helpers of the hostile-input catalogue (test_hostile.py) and the valgrind
run (test_valgrind.py): hostile packet builders, the accounting check that
ties datagrams, events and stats together, the kernel's per-socket drop
counter, a bounded flooder, and a dnsgate started under a wrapper command
(valgrind) without changing dnsgate_testlib's behaviour.

Loopback only; every process started here is stopped by its PID.
"""

from __future__ import annotations

import shlex
import socket
import struct
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable
from unittest import mock

import dnsgate_testlib
from dnsgate_testlib import DnsGate, encode_name, recv_until

# ---------------------------------------------------------------- packets


def hdr(ident: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


def rr_fixed(rtype: int = 1, rclass: int = 1, ttl: int = 0, rdata: bytes = b"") -> bytes:
    """TYPE CLASS TTL RDLENGTH RDATA: what follows a record's owner name."""
    return struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def labels_of_octets(total: int, tail: Iterable[bytes] = (b"example", b"com")) -> list[bytes]:
    """Labels ending in `tail` whose uncompressed wire form is exactly `total` octets."""
    tail = list(tail)
    left = total - len(encode_name(tail))
    labels = []
    while left > 0:
        take = min(64, left)
        assert take >= 2, f"cannot make a name of {total} octets this way"
        labels.append(b"x" * (take - 1))
        left -= take
    out = labels + tail
    assert len(encode_name(out)) == total, (total, len(encode_name(out)))
    return out


# ---------------------------------------------------------------- the kernel's view


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped for the UDP socket(s) bound to `port`,
    whatever their address (a full receive buffer): the last column of
    /proc/net/udp and /proc/net/udp6."""
    drops, found = 0, False
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[1].endswith(f":{port:04X}"):
                    drops += int(cols[-1])
                    found = True
    assert found, f"no UDP socket bound to port {port}"
    return drops


def nothing_arrives(sock: socket.socket, seconds: float) -> list[bytes]:
    """Every datagram that reaches `sock` within `seconds` (bounded)."""
    got = []
    deadline = time.monotonic() + seconds
    while len(got) < 1000:
        data = recv_until(sock, deadline)
        if data is None:
            break
        got.append(data)
    return got


class Flooder:
    """Sends `count` datagrams made by `make(i)` from `sock` to `dest`, in
    bursts of `burst` every `interval` seconds, on a thread; bounded by the
    count and by `max_seconds`."""

    def __init__(self, sock: socket.socket, dest: tuple, make: Callable[[int], bytes], count: int,
                 burst: int = 50, interval: float = 0.01, max_seconds: float = 10.0):
        self.sock, self.dest, self.make, self.count = sock, dest, make, count
        self.burst, self.interval, self.max_seconds = burst, interval, max_seconds
        self.sent = 0
        self.errors: list[BaseException] = []
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, name="flooder", daemon=True)

    def start(self) -> "Flooder":
        self._thread.start()
        return self

    def _run(self) -> None:
        start = time.monotonic()
        try:
            while self.sent < self.count and time.monotonic() - start < self.max_seconds:
                for _ in range(min(self.burst, self.count - self.sent)):
                    self.sock.sendto(self.make(self.sent), self.dest)
                    self.sent += 1
                time.sleep(self.interval)
        except BaseException as e:  # reported by join()
            self.errors.append(e)
        self.seconds = time.monotonic() - start

    def join(self, timeout: float = 15.0) -> None:
        self._thread.join(timeout=timeout)
        assert not self._thread.is_alive(), "the flooder did not finish"
        assert not self.errors, f"the flooder failed: {self.errors!r}"


# ---------------------------------------------------------------- accounting

# Each datagram ends in exactly one of these; the event's reasonCode names it.
OUTCOME_STATS = {
    "allowed": "relayed",
    "not_allowlisted": "refused",
    "malformed_query": "malformed",
    "unsupported_opcode": "notimp",
    "upstream_timeout": "servfailTimeout",
    "upstream_error": "servfailError",
    "overloaded": "overloaded",
    "shutdown": "droppedAtShutdown",
}


def check_accounting(gate: DnsGate, stats: dict) -> Counter:
    """After dnsgate exited: every datagram the test sent is counted once in
    `received`, ends in exactly one outcome counter, and has exactly one
    event whose reasonCode agrees with that counter. Returns the events'
    reasonCode counts."""
    evs = gate.all_events()
    assert len(evs) == gate.datagrams, f"{len(evs)} events for {gate.datagrams} datagrams"
    assert stats["received"] == gate.datagrams, f"received={stats['received']}, sent {gate.datagrams}: {stats}"
    outcomes = sum(stats[key] for key in OUTCOME_STATS.values())
    assert outcomes == stats["received"], f"outcome counters add up to {outcomes}, not received: {stats}"
    reasons = Counter(e["data"]["reasonCode"] for e in evs)
    for reason, key in OUTCOME_STATS.items():
        assert reasons.get(reason, 0) == stats[key], f"{reasons.get(reason, 0)} {reason} events, {key}={stats[key]}"
    assert stats["relayed"] + stats["servfailTimeout"] + stats["droppedAtShutdown"] <= stats["forwarded"], stats
    assert stats["eventsDropped"] == 0 and stats["sendFailed"] == 0, stats
    return reasons


# ---------------------------------------------------------------- dnsgate under a wrapper


class WrappedGate(DnsGate):
    """A DnsGate whose process is `wrapper... dnsgate run --config ...`
    (valgrind, for one). The wrapper must run dnsgate in its own process
    (valgrind does), so the PID the harness watches holds dnsgate's sockets."""

    def __init__(self, workdir: Path, *, wrapper: list[str], **kwargs):
        super().__init__(workdir, **kwargs)
        self.wrapper = wrapper

    def start(self) -> "WrappedGate":
        script = self.workdir / "wrapped-dnsgate.sh"
        real = dnsgate_testlib.dnsgate_bin()
        script.write_text("#!/bin/sh\nexec " + shlex.join(self.wrapper) + " " + shlex.quote(real) + ' "$@"\n')
        script.chmod(0o755)
        # DnsGate.start looks dnsgate_bin() up at call time: point it at the script.
        with mock.patch.object(dnsgate_testlib, "dnsgate_bin", lambda: str(script)):
            super().start()
        return self


def valgrind_command(log_path: Path) -> list[str]:
    return ["valgrind", "--tool=memcheck", "--error-exitcode=99", "--leak-check=full",
            "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite", "--track-origins=yes",
            "--num-callers=30", f"--log-file={log_path}"]


