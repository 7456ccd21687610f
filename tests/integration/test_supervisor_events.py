"""The audit trail survives a crash (DESIGN.md §10 ★): a supervised proxy
queues its events in memory the supervisor maps too, and after `kill -9`
the supervisor writes the events the proxy had queued but not written.

The proxy's events go to the supervisor's stdout, a pipe the test does not
read until the proxy is dead: the proxy's event writer blocks on the full
pipe, so the events of the queries it answered pile up in its queue. Every
answered query must then still have its event, written once by the proxy
or by the supervisor (a line the proxy had begun may appear twice, with
one id).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from dnsgate_testlib import dnsgate_bin, make_query, udp_exchange
from netns_lib import require_root, rig_for_test, wait_dead

QUERIES = 1500
rig = pytest.fixture(rig_for_test)


def wait_for(path, pattern: re.Pattern, timeout: float = 10.0) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        found = pattern.search(text)
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"no line matching {pattern.pattern!r} within {timeout} s:\n{text}")


def test_kill9_with_events_queued_loses_none(rig, tmp_path):
    require_root()
    ns = rig.netns()
    knot = rig.knotd(ns)
    cell = rig.cell("trail", ns, port=5353, allowlist=["*.example.com"], upstream=knot.address,
                    sink="stdout")
    stderr_path = tmp_path / "supervise.stderr"
    read_end, write_end = os.pipe()
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen([dnsgate_bin(), "supervise", "--cells", str(rig.cells_dir)],
                                stdout=write_end, stderr=err, stdin=subprocess.DEVNULL)
    os.close(write_end)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(read_end, 65536), b"")))
    try:
        pid = int(wait_for(stderr_path, re.compile(r"cell trail: proxy (\d+) started")).group(1))
        sock = cell.sock()
        answered = set()
        for i in range(QUERIES):
            name = f"h{i}.example.com."
            reply = udp_exchange(cell.port, make_query(name, "A", ident=i).to_wire(), timeout=2.0, sock=sock)
            assert reply.response is not None, f"query {i} unanswered"
            answered.add(name.rstrip("."))
        # The writer is blocked on the pipe: most of those events are queued.
        os.kill(pid, signal.SIGKILL)
        assert wait_dead(pid, 3)
        reader.start()
        recovered = wait_for(stderr_path, re.compile(r"cell trail: wrote (\d+) events? proxy \d+ had queued"))
        print(f"the supervisor wrote {recovered.group(1)} events the proxy had queued")
        assert int(recovered.group(1)) > 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        if not reader.is_alive() and not chunks:
            reader.start()
        reader.join(timeout=10)
        os.close(read_end)
    assert proc.returncode == 0, stderr_path.read_text()

    lines = b"".join(chunks).decode().split("\n")
    events, torn = [], []
    for line in lines:
        if not line:
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            torn.append(line)
    # At most the one line the kill cut short.
    assert len(torn) <= 1, torn
    names = [e["data"].get("qname") for e in events if e["data"].get("qname", "").endswith("example.com")]
    missing = answered - set(names)
    assert not missing, f"{len(missing)} answered queries have no event, e.g. {sorted(missing)[:5]}"
    # A duplicate is the same event (one id), never a second one.
    by_name: dict = {}
    for e in events:
        by_name.setdefault(e["data"].get("qname"), set()).add(e["id"])
    twice = {n: ids for n, ids in by_name.items() if n in answered and len(ids) > 1}
    assert not twice, f"queries with two different event ids: {twice}"
