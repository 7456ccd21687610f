"""`events.sink: nats` against a real JetStream (DESIGN.md §11): Debian's
nats-server started by the tests on loopback, the stream read back with the
official `nats` client (nats_tool.js). Each query is one event; every event
must end up in the stream exactly once after dedup (`Nats-Msg-Id` = the
event id), whatever happens to the server, and the DNS path never waits for
it. The three-node cluster test is the distributed proof."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

from dnsgate_testlib import validate_with_sdk
from nats_rig import (
    NatsCluster, SlowProxy, add_stream, assert_all_answered, assert_dns_fast, check_events, delivery_gates,
    nats_server, nats_tool, send_load, stream_count, stream_messages, wait_stream_messages,
)

ALLOW = ["example.com", "*.example.com", "*.example.org"]
STREAM = "DNSGATE"
SUBJECTS = "dnsgate.events.>"
CELL = "itest"
SUBJECT = f"dnsgate.events.{CELL}"

__all__ = ["nats_server"]  # the fixture, imported for pytest


@pytest.fixture
def gates(tmp_path):
    yield from delivery_gates(tmp_path)


def nats_gate(gates, knotd, servers: str, stream: str = STREAM, **kw):
    return gates(allowlist=ALLOW, upstream=knotd.address, cell=CELL,
                 nats={"url": servers, "subject": "dnsgate.events.{cell}", "stream": stream}, **kw)


def read_stream(servers: str, tmp_path: Path, name: str = "stream.jsonl") -> tuple[dict, list[dict]]:
    """Everything in the stream: the count answer and the events (bodies) in
    stream order, each checked: JSON, a valid dnsgate event (envelope), the
    CloudEvents SDK accepts it, its Nats-Msg-Id is its id, its subject ours."""
    out = tmp_path / name
    got = stream_count(servers, STREAM, out)
    lines = [line for line in out.read_text().splitlines() if line]
    assert len(lines) == got["messages"], (len(lines), got["messages"])
    assert got["missingIdHeader"] == 0, f"{got['missingIdHeader']} messages without Nats-Msg-Id"
    evs = [json.loads(line) for line in lines]
    for ev, msg_id in zip(evs, got["ids"]):
        assert ev["id"] == msg_id, f"Nats-Msg-Id {msg_id} is not the event id {ev['id']}"
    if evs:
        assert set(got["subjects"]) == {SUBJECT}, got["subjects"]
        validate_with_sdk(out)
    check_events(evs, CELL)
    return got, evs


def failure_lines(gate, *words: str) -> list[str]:
    """stderr lines (the stats JSON left out) that mention nats and any of `words`."""
    out = []
    for line in gate.stderr().splitlines():
        low = line.lower()
        if line.startswith("{") or "nats" not in low:
            continue
        if not words or any(w.lower() in low for w in words):
            out.append(line)
    return out


# ------------------------------------------------------------ happy path


def test_every_query_is_one_message_with_its_id(gates, knotd, nats_server, tmp_path):
    nats_server.start()
    add_stream(nats_server.url, STREAM, SUBJECTS, 1)
    gate = nats_gate(gates, knotd, nats_server.url)
    for i in range(50):
        r = gate.query("www.example.com.", ident=1000 + i, timeout=3.0)
        assert r.response is not None, f"query {i} unanswered"
    assert wait_stream_messages(nats_server.url, STREAM, gate.datagrams, 10) == gate.datagrams
    stats = gate.stop()
    got, evs = read_stream(nats_server.url, tmp_path)
    assert got["messages"] == got["distinctIds"] == gate.datagrams == 51
    assert sorted(e["data"]["transactionId"] for e in evs if e["subject"] == "www.example.com") == \
        list(range(1000, 1050))
    d = gate.delivery
    assert stats["received"] == gate.datagrams
    assert d["delivered"] == gate.datagrams and d["spooled"] == gate.datagrams, d
    assert d["backlog"] == 0 and d["dropped"] == 0 and d["rejected"] == 0 and d["corruptSkipped"] == 0, d
    assert stats["eventsDropped"] == 0


# ------------------------------------------------------------ the server away


def test_server_down_at_start_then_started(gates, knotd, nats_server, tmp_path):
    """Nothing listens on the URL when dnsgate starts: it answers DNS, says
    so on stderr, spools; once the server and the stream are there, every
    event arrives."""
    gate = nats_gate(gates, knotd, nats_server.url)
    res = send_load(gate, 300, rate=300)
    assert_all_answered(res)
    assert_dns_fast(res, "the server is away")
    time.sleep(1.0)
    nats_server.start()
    add_stream(nats_server.url, STREAM, SUBJECTS, 1)
    got_n = wait_stream_messages(nats_server.url, STREAM, gate.datagrams, 20)
    assert got_n == gate.datagrams, f"{got_n} of {gate.datagrams} events in the stream 20 s after the server came"
    gate.stop()
    got, _ = read_stream(nats_server.url, tmp_path)
    assert got["messages"] == got["distinctIds"] == gate.datagrams
    d = gate.delivery
    assert d["delivered"] >= gate.datagrams and d["backlog"] == 0 and d["dropped"] == 0, d
    assert failure_lines(gate), f"no stderr line tells that nats delivery failed:\n{gate.stderr()}"


def test_server_killed_mid_load_and_restarted(gates, knotd, nats_server, tmp_path):
    """SIGKILL of nats-server during 6,000 queries, restart on the same store
    1.5 s later: every event in the stream exactly once (dedup by
    Nats-Msg-Id), none lost, and the DNS path never waited."""
    nats_server.start()
    add_stream(nats_server.url, STREAM, SUBJECTS, 1)
    gate = nats_gate(gates, knotd, nats_server.url)
    events = []

    def chaos():
        time.sleep(1.2)
        nats_server.kill()
        events.append(("killed", time.monotonic()))
        time.sleep(1.5)
        nats_server.restart()
        events.append(("restarted", time.monotonic()))

    t = threading.Thread(target=chaos)
    t.start()
    try:
        res = send_load(gate, 6000, rate=1500)
    finally:
        t.join()
    assert [e for e, _ in events] == ["killed", "restarted"]
    assert_all_answered(res)
    assert_dns_fast(res, "the server died and came back")
    got_n = wait_stream_messages(nats_server.url, STREAM, gate.datagrams, 30)
    assert got_n == gate.datagrams, f"{got_n} of {gate.datagrams} events in the stream 30 s after the restart"
    gate.stop()
    got, _ = read_stream(nats_server.url, tmp_path)
    assert got["messages"] == got["distinctIds"] == gate.datagrams
    d = gate.delivery
    assert d["backlog"] == 0 and d["dropped"] == 0 and d["delivered"] >= gate.datagrams, d
    assert failure_lines(gate), f"no stderr line tells that the nats connection was lost:\n{gate.stderr()}"


def test_stream_not_capturing_the_subject(gates, knotd, nats_server, tmp_path):
    """The stream exists but captures other subjects: publish errors are
    logged clearly and counted, DNS keeps being answered, the events stay in
    the spool (backlog at exit); once the stream captures the subject, a
    restart with the same spool delivers them."""
    nats_server.start()
    add_stream(nats_server.url, STREAM, "other.>", 1)
    spool = tmp_path / "spool"
    gate1 = nats_gate(gates, knotd, nats_server.url, spool_dir=spool)
    res = send_load(gate1, 100, rate=200)
    assert_all_answered(res)
    assert_dns_fast(res, "the stream refuses the subject")
    time.sleep(1.5)
    assert gate1.running()
    gate1.stop()
    assert gate1.stop_seconds < 4.5, f"SIGTERM to exit took {gate1.stop_seconds:.1f} s (2 s of last delivery expected)"
    d1 = gate1.delivery
    assert d1["delivered"] == 0, d1
    assert d1["retried"] > 0, f"the refused publishes are not counted: {d1}"
    assert d1["backlog"] == gate1.datagrams, f"the events must stay spooled: {d1}"
    assert stream_messages(nats_server.url, STREAM) == 0
    clear = failure_lines(gate1, SUBJECT, STREAM)
    assert clear, f"no stderr line names the subject {SUBJECT} or the stream {STREAM}:\n{gate1.stderr()}"

    nats_tool(nats_server.url, "set-subjects", STREAM, "other.>," + SUBJECTS)
    gate2 = nats_gate(gates, knotd, nats_server.url, spool_dir=spool)
    for i in range(10):
        assert gate2.query("www.example.com.", ident=i, timeout=3.0).response is not None
    want = gate1.datagrams + gate2.datagrams
    got_n = wait_stream_messages(nats_server.url, STREAM, want, 15)
    assert got_n == want, f"{got_n} of {want} events after the stream was fixed"
    gate2.stop()
    got, _ = read_stream(nats_server.url, tmp_path)
    assert got["messages"] == got["distinctIds"] == want
    assert gate2.delivery["backlog"] == 0, gate2.delivery


def test_jetstream_answering_slowly(gates, knotd, nats_server, tmp_path):
    """Every byte from the server (acks included) 400 ms late, through a
    relay: the DNS path is not slowed, every event arrives once."""
    nats_server.start()
    add_stream(nats_server.url, STREAM, SUBJECTS, 1)
    proxy = SlowProxy(nats_server.port, delay=0.4)
    try:
        gate = nats_gate(gates, knotd, proxy.url)
        res = send_load(gate, 1500, rate=750)
        assert_all_answered(res)
        assert_dns_fast(res, "JetStream acknowledges slowly")
        got_n = wait_stream_messages(nats_server.url, STREAM, gate.datagrams, 20)
        assert got_n == gate.datagrams, f"{got_n} of {gate.datagrams} events with slow acks"
        gate.stop()
        assert proxy.connections >= 1, "dnsgate never went through the slow relay"
    finally:
        proxy.close()
    got, _ = read_stream(nats_server.url, tmp_path)
    assert got["messages"] == got["distinctIds"] == gate.datagrams
    assert gate.delivery["backlog"] == 0, gate.delivery


def test_dnsgate_killed_resumes_from_its_spool(gates, knotd, nats_server, tmp_path):
    """dnsgate itself dies by SIGKILL: first 300 events delivered normally
    (their acknowledged position persisted at most once a second), then 300
    more while a relay holds JetStream's acks for 3 s, and the kill.
    A new dnsgate on the same spool sends what was not acknowledged; resends
    of what was are removed by the duplicate window: every event of both
    runs is in the stream exactly once."""
    nats_server.start()
    add_stream(nats_server.url, STREAM, SUBJECTS, 1)
    spool = tmp_path / "spool"
    proxy = SlowProxy(nats_server.port, delay=0.0)
    try:
        gate1 = nats_gate(gates, knotd, proxy.url, spool_dir=spool)
        assert_all_answered(send_load(gate1, 300, rate=1000))
        time.sleep(0.1)  # acknowledged by now, but the position persists at most once a second
        proxy.delay = 3.0
        assert_all_answered(send_load(gate1, 300, rate=1000))
        time.sleep(0.2)  # the event writer has appended the last lines (at most 5 ms after each event)
        gate1.proc.kill()
        gate1.returncode = gate1.proc.wait(timeout=5)
        before = stream_messages(nats_server.url, STREAM)
        assert before < gate1.datagrams, "no backlog when dnsgate was killed: the test proves nothing"
    finally:
        proxy.close()
    gate2 = nats_gate(gates, knotd, nats_server.url, spool_dir=spool)
    for i in range(10):
        assert gate2.query("www.example.com.", ident=i, timeout=3.0).response is not None
    want = gate1.datagrams + gate2.datagrams
    got_n = wait_stream_messages(nats_server.url, STREAM, want, 20)
    assert got_n == want, f"{got_n} of {want} events after the restart ({before} were in before the kill)"
    gate2.stop()
    got, _ = read_stream(nats_server.url, tmp_path)
    assert got["messages"] == got["distinctIds"] == want
    d2 = gate2.delivery
    assert d2["backlog"] == 0 and d2["delivered"] >= want - before, d2


# ------------------------------------------------------------ the spool


def _segment_files(spool: Path) -> list[Path]:
    return sorted((p for p in spool.rglob("*") if p.is_file() and p.stat().st_size > 0
                   and "dead-letter" not in p.name), key=lambda p: p.stat().st_size, reverse=True)


def test_corrupt_spool_segment_is_skipped_and_counted(gates, knotd, nats_server, tmp_path):
    """A stopped dnsgate left 300 events in its spool (the server was down);
    garbage is written into the middle of the segment; the restarted dnsgate
    delivers every record before the damage and every new event, sends
    nothing that was never an event, and each record of the first run is
    either delivered or counted in corruptSkipped (none vanishes uncounted)."""
    spool = tmp_path / "spool"
    gate1 = nats_gate(gates, knotd, nats_server.url, spool_dir=spool)
    res = send_load(gate1, 300, rate=600)
    assert_all_answered(res)
    gate1.stop()
    assert gate1.delivery["backlog"] == gate1.datagrams, gate1.delivery
    segments = _segment_files(spool)
    assert segments, f"no segment file in {spool}: {list(spool.rglob('*'))}"
    seg = segments[0]
    data = bytearray(seg.read_bytes())
    offset = len(data) // 2
    garbage = b"\xde\xad\xbe\xef GARBAGE \x00\xff" * 8
    data[offset:offset + len(garbage)] = garbage
    seg.write_bytes(bytes(data))
    # the records whose text lies wholly before the damage must be delivered
    starts = [m.start() for m in re.finditer(rb'\{"specversion"', data)]
    ids = [re.search(rb'"id":"([0-9a-f-]{36})"', data[s:s + 400]) for s in starts]
    intact = {m.group(1).decode() for s, nxt, m in zip(starts, starts[1:] + [len(data)], ids)
              if m is not None and nxt <= offset}

    nats_server.start()
    add_stream(nats_server.url, STREAM, SUBJECTS, 1)
    gate2 = nats_gate(gates, knotd, nats_server.url, spool_dir=spool)
    for i in range(20):
        assert gate2.query("www.example.com.", ident=i, timeout=3.0).response is not None
    time.sleep(3.0)
    stats2 = gate2.stop()
    got, evs = read_stream(nats_server.url, tmp_path)
    d2 = gate2.delivery
    assert d2["corruptSkipped"] >= 1, f"the corrupt segment was not counted: {d2}"
    delivered = {e["id"] for e in evs}
    assert got["messages"] == got["distinctIds"]
    if starts:  # the segment holds the lines as text: check record by record
        assert len(intact) >= 50, f"only {len(intact)} records located before the damage"
        lost = intact - delivered
        assert not lost, f"{len(lost)} intact records before the damage were not delivered"
    # everything of the second run arrived; nothing beyond the two runs' events
    assert stats2["received"] == gate2.datagrams
    assert got["messages"] >= gate2.datagrams + len(intact)
    assert got["messages"] < gate1.datagrams + gate2.datagrams, "the damaged records cannot all have arrived"
    assert d2["backlog"] == 0, d2
    # every record of the first run is delivered or counted as skipped: nothing vanishes uncounted
    run1_delivered = got["messages"] - gate2.datagrams
    after = sum(1 for st in starts if st >= offset + len(garbage))
    assert run1_delivered + d2["corruptSkipped"] == gate1.datagrams, (
        f"of the {gate1.datagrams} events the first run spooled, {run1_delivered} were delivered and "
        f"corruptSkipped counts {d2['corruptSkipped']}: {gate1.datagrams - run1_delivered - d2['corruptSkipped']} "
        f"vanished uncounted ({after} records lie intact after the damage in {seg.name})")
    assert [line for line in gate2.stderr().splitlines() if "spool" in line.lower() and not line.startswith("{")], \
        f"no stderr line tells of the corrupt spool segment:\n{gate2.stderr()}"


# ------------------------------------------------------------ the distributed proof


def test_distributed_proof_three_node_cluster_loses_a_node(gates, knotd, tmp_path):
    """Three nats-server processes as one JetStream cluster, an R3 stream,
    dnsgate given all three URLs; 20,000 queries over about 10 s; the stream
    leader is killed (SIGKILL) 3 s in and restarted 3 s later. Every event is
    in the stream exactly once after dedup: messages == distinct ids ==
    queries."""
    cluster = NatsCluster(tmp_path / "cluster")
    try:
        cluster.start()
        add_stream(cluster.urls, STREAM, SUBJECTS, 3)
        info = nats_tool(cluster.urls, "info", STREAM)
        assert info["replicas"] == 3 and info["leader"], info
        victim = cluster.node(info["leader"])
        gate = nats_gate(gates, knotd, cluster.urls)
        timeline = []

        def chaos():
            time.sleep(3.0)
            victim.kill()
            timeline.append("killed " + victim.name)
            time.sleep(3.0)
            victim.restart()
            timeline.append("restarted " + victim.name)

        t = threading.Thread(target=chaos)
        t.start()
        try:
            res = send_load(gate, 20000, rate=2000)
        finally:
            t.join()
        assert timeline == [f"killed {victim.name}", f"restarted {victim.name}"], timeline
        assert_all_answered(res)
        assert_dns_fast(res, "a cluster node died and came back")
        got_n = wait_stream_messages(cluster.urls, STREAM, gate.datagrams, 45)
        assert got_n == gate.datagrams, (
            f"{got_n} of {gate.datagrams} events in the R3 stream 45 s after the load\n{cluster.logs()[-3000:]}")
        gate.stop()
        got, _ = read_stream(cluster.urls, tmp_path)
        assert got["messages"] == gate.datagrams, got["messages"]
        assert got["distinctIds"] == gate.datagrams, got["distinctIds"]
        d = gate.delivery
        assert d["backlog"] == 0 and d["dropped"] == 0 and d["delivered"] >= gate.datagrams, d
        after = nats_tool(cluster.urls, "info", STREAM)
        assert after["messages"] == gate.datagrams and after["replicas"] == 3, after
    finally:
        cluster.stop()
