"""Log rotation of the file sink (docs/cli.md, SIGUSR1): the file is moved
away, dnsgate is signalled, and the next events go to a new file at the
configured path; no event is lost or written twice across the move."""

from __future__ import annotations

import json
import os
import signal
import time


def lines_of(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_sigusr1_reopens_the_events_file(dnsgate, knotd):
    gate = dnsgate(allowlist=["www.example.com"], upstream=knotd.address)
    for i in range(20):
        assert gate.query("www.example.com", ident=i).response is not None
    gate.events(20)
    rotated = gate.events_path.with_name("events.jsonl.1")
    os.rename(gate.events_path, rotated)
    # Written after the move, before the signal: into the moved file.
    assert gate.query("www.example.com", ident=100).response is not None
    deadline = time.monotonic() + 3
    while len(lines_of(rotated)) < 21 + gate.probes and time.monotonic() < deadline:
        time.sleep(0.02)
    gate.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.3)
    for i in range(30):
        assert gate.query("www.example.com", ident=200 + i).response is not None
    deadline = time.monotonic() + 3
    while len(lines_of(gate.events_path)) < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    old, new = lines_of(rotated), lines_of(gate.events_path)
    assert len(new) == 30, f"{len(new)} events in the reopened file"
    assert {e["data"]["transactionId"] for e in new} == set(range(200, 230))
    assert len(old) == 21 + gate.probes
    assert not {e["id"] for e in old} & {e["id"] for e in new}
    assert (os.stat(gate.events_path).st_mode & 0o777) == 0o640
    # The suite's teardown counts events in the configured path only: put
    # the rotated ones back in front, as a log reader would see them all.
    gate.events_path.write_text(rotated.read_text() + gate.events_path.read_text())
    assert gate.running()


def test_sigusr1_with_an_unopenable_path_keeps_the_old_file(dnsgate, knotd, tmp_path):
    gate = dnsgate(allowlist=["www.example.com"], upstream=knotd.address)
    assert gate.query("www.example.com", ident=1).response is not None
    gate.events(1)
    moved = tmp_path / "moved.jsonl"
    os.rename(gate.events_path, moved)
    gate.events_path.mkdir()  # the path is now a directory: cannot be opened for writing
    gate.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.2)
    assert gate.query("www.example.com", ident=2).response is not None
    deadline = time.monotonic() + 3
    while len(lines_of(moved)) < 2 + gate.probes and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [e["data"]["transactionId"] for e in lines_of(moved)][-1] == 2
    assert "cannot reopen" in gate.stderr()
    gate.events_path.rmdir()
    os.rename(moved, gate.events_path)
    assert gate.running()
