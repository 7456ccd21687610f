"""`events.sink: http` against a receiver built on the official CloudEvents
SDK (http_receiver.js, DESIGN.md §11): batched mode
(application/cloudevents-batch+json), every event validated by the SDK on
arrival. 2xx is delivered; 429/5xx and connection failures are retried with
backoff; another 4xx dead-letters that batch; a full or unwritable spool
drops newest and counts; the DNS path is never slowed."""

from __future__ import annotations

import calendar
import json
import time
from pathlib import Path

import pytest

from dnsgate_testlib import validate_with_sdk
from nats_rig import (
    EVENTS_DROPPED_TYPE, HttpReceiver, assert_all_answered, assert_dns_fast, check_events, delivery_gates, receiver,
    send_load,
)

ALLOW = ["example.com", "*.example.com", "*.example.org"]
CELL = "itest"
BATCH_CT = "application/cloudevents-batch+json"
MiB = 1 << 20

__all__ = ["receiver"]  # the fixture, imported for pytest


@pytest.fixture
def gates(tmp_path):
    yield from delivery_gates(tmp_path)


def http_gate(gates, knotd, rx: HttpReceiver, batch_max: int = 500, **kw):
    return gates(allowlist=ALLOW, upstream=knotd.address, cell=CELL,
                 http={"url": rx.url, "batchMax": batch_max}, **kw)


def received(rx: HttpReceiver) -> list[dict]:
    """The receiver's events, each checked (envelope, SDK again on the lines
    as sent), ids unique; no batch was invalid."""
    assert not rx.errors(), f"the receiver found invalid batches: {rx.errors()[:3]}"
    evs = rx.events()
    if evs:
        validate_with_sdk(rx.out)
    check_events(evs, CELL)
    return evs


def dns_events(evs: list[dict]) -> list[dict]:
    return [e for e in evs if e["type"] != EVENTS_DROPPED_TYPE]


def error_lines(gate, *words: str) -> list[str]:
    out = []
    for line in gate.stderr().splitlines():
        if line.startswith("{"):
            continue
        if any(w.lower() in line.lower() for w in words):
            out.append(line)
    return out


def read_dead_letter(path: Path) -> list[dict]:
    """dead-letter.jsonl: one event per line, or one batch (a JSON array) per line."""
    assert path.exists(), f"{path} missing"
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        out += obj if isinstance(obj, list) else [obj]
    return out


# ------------------------------------------------------------ happy path


def test_every_query_arrives_once_in_batches(gates, knotd, receiver):
    receiver.start()
    gate = http_gate(gates, knotd, receiver, batch_max=20)
    res = send_load(gate, 300, rate=1000)
    assert_all_answered(res)
    evs = receiver.wait_events(gate.datagrams, 10)
    assert len(evs) == gate.datagrams, f"{len(evs)} of {gate.datagrams} events at the receiver"
    stats = gate.stop()
    evs = received(receiver)
    assert len(evs) == gate.datagrams == 301
    st = receiver.stats()
    assert set(st["contentTypes"]) == {BATCH_CT}, st["contentTypes"]
    assert 1 <= st["maxBatch"] <= 20, f"a batch of {st['maxBatch']} events with batchMax 20"
    assert st["batches"] == st["posts"], st  # nothing refused, nothing sent twice
    d = gate.delivery
    assert stats["received"] == gate.datagrams
    assert d["delivered"] == d["spooled"] == gate.datagrams, d
    assert d["backlog"] == d["retried"] == d["rejected"] == d["dropped"] == d["corruptSkipped"] == 0, d


# ------------------------------------------------------------ receiver faults


def test_503_for_10_seconds_then_ok(gates, knotd, receiver):
    """The receiver answers 503 for 10 s: DNS answered throughout with low
    latency, the sink retries with backoff (a handful of tries, not a
    storm), and once the receiver is back every event arrives once."""
    receiver.start(fail503_seconds=10)
    gate = http_gate(gates, knotd, receiver)
    res = send_load(gate, 400, rate=40)  # about 10 s, all of it during the outage
    assert_all_answered(res)
    assert_dns_fast(res, "the receiver answers 503")
    evs = receiver.wait_events(gate.datagrams, 15)
    assert len(evs) == gate.datagrams, f"{len(evs)} of {gate.datagrams} events 15 s after the outage began to end"
    gate.stop()
    evs = received(receiver)
    assert len(evs) == gate.datagrams
    st = receiver.stats()
    # backoff 100 ms doubling to 5 s: about 8 tries in 10 s; a retry storm would be hundreds
    assert 3 <= st["answered503"] <= 25, f"{st['answered503']} POSTs during 10 s of 503: {st}"
    d = gate.delivery
    assert d["retried"] > 0, d
    assert d["delivered"] == gate.datagrams and d["backlog"] == 0 and d["rejected"] == 0, d
    assert error_lines(gate, "503"), f"no stderr line tells of the 503 answers:\n{gate.stderr()}"


def test_429_is_retried_not_dead_lettered(gates, knotd, receiver):
    """429 (Too Many Requests) is the one 4xx that is transient: retried,
    never dead-lettered, everything delivered once the receiver takes it."""
    receiver.start(fail503_seconds=2, outage_status=429)
    gate = http_gate(gates, knotd, receiver)
    res = send_load(gate, 100, rate=100)
    assert_all_answered(res)
    evs = receiver.wait_events(gate.datagrams, 10)
    assert len(evs) == gate.datagrams, f"{len(evs)} of {gate.datagrams} events"
    gate.stop()
    assert len(received(receiver)) == gate.datagrams
    assert receiver.stats()["answered503"] >= 1, "the receiver never answered 429"
    d = gate.delivery
    assert d["rejected"] == 0 and d["retried"] > 0 and d["delivered"] == gate.datagrams, d
    assert not (gate.spool_dir / "dead-letter.jsonl").exists() or \
        not (gate.spool_dir / "dead-letter.jsonl").read_text().strip(), "a 429 batch was dead-lettered"


def test_400_for_one_batch_is_dead_lettered(gates, knotd, receiver):
    """One batch refused with 400: that batch lands in
    <spool>/dead-letter.jsonl, `rejected` is its size, it is not retried,
    and every other event is delivered."""
    receiver.start()
    gate = http_gate(gates, knotd, receiver, batch_max=50)
    assert len(receiver.wait_events(1, 5)) == 1, "the readiness probe's event did not arrive"
    receiver.control(fail400Next=1)
    res = send_load(gate, 200, rate=1000)
    assert_all_answered(res)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(receiver.events()) + len(receiver.rejected()) < gate.datagrams:
        time.sleep(0.1)
    time.sleep(0.5)  # a retry of the refused batch would show now
    gate.stop()
    evs = received(receiver)
    refused = receiver.rejected()
    st = receiver.stats()
    assert st["answered400"] == 1, st
    assert 1 <= len(refused) <= 50, len(refused)
    refused_ids = {e["id"] for e in refused}
    got_ids = {e["id"] for e in evs}
    assert not refused_ids & got_ids, "events of the refused batch were sent again and accepted"
    assert len(evs) + len(refused) == gate.datagrams, (len(evs), len(refused), gate.datagrams)
    dead = read_dead_letter(gate.spool_dir / "dead-letter.jsonl")
    assert {e["id"] for e in dead} == refused_ids, "dead-letter.jsonl is not the refused batch"
    assert len(dead) == len(refused)
    d = gate.delivery
    assert d["rejected"] == len(refused), d
    assert d["delivered"] == len(evs) and d["backlog"] == 0, d
    assert error_lines(gate, "400", "dead-letter"), f"no stderr line tells of the refused batch:\n{gate.stderr()}"


def test_connections_closed_without_answer(gates, knotd, receiver):
    """The receiver reads the next 3 POSTs and closes the connection without
    an answer: retried, then every event arrives exactly once."""
    receiver.start(close_next=3)
    gate = http_gate(gates, knotd, receiver)
    res = send_load(gate, 100, rate=500)
    assert_all_answered(res)
    assert_dns_fast(res, "the receiver drops connections")
    evs = receiver.wait_events(gate.datagrams, 10)
    assert len(evs) == gate.datagrams, f"{len(evs)} of {gate.datagrams} events"
    gate.stop()
    evs = received(receiver)
    assert len(evs) == gate.datagrams
    assert receiver.stats()["closed"] == 3, receiver.stats()
    d = gate.delivery
    assert d["retried"] > 0 and d["delivered"] == gate.datagrams and d["backlog"] == 0, d


def test_slow_receiver(gates, knotd, receiver):
    """Every answer 700 ms late: DNS is not slowed, events pile up in the
    spool and go in bigger batches, every event arrives once."""
    receiver.start(delay_ms=700)
    gate = http_gate(gates, knotd, receiver)
    res = send_load(gate, 600, rate=300)
    assert_all_answered(res)
    assert_dns_fast(res, "the receiver is slow")
    evs = receiver.wait_events(gate.datagrams, 15)
    assert len(evs) == gate.datagrams, f"{len(evs)} of {gate.datagrams} events"
    gate.stop()
    evs = received(receiver)
    assert len(evs) == gate.datagrams
    st = receiver.stats()
    assert st["posts"] <= 15, f"{st['posts']} POSTs for {gate.datagrams} events in ~3 s at 700 ms each: not batching"
    assert st["maxBatch"] >= 50, st
    d = gate.delivery
    assert d["delivered"] == gate.datagrams and d["backlog"] == 0, d


# ------------------------------------------------------------ the spool


def test_spool_dir_unwritable(gates, knotd, receiver, tmp_path):
    """The spool dir lies under a regular file (ENOTDIR, even for root):
    dnsgate keeps answering DNS, counts the events it cannot spool as
    dropped, and says why on stderr, naming the path."""
    receiver.start()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file\n")
    spool = blocker / "spool"
    try:
        gate = http_gate(gates, knotd, receiver, spool_dir=spool)
    except AssertionError as e:
        pytest.fail("dnsgate did not come up with an unwritable spool dir (the expected behaviour: it keeps "
                    f"answering DNS, counts the drops and logs the error):\n{e}", pytrace=False)
    res = send_load(gate, 100, rate=500)
    assert_all_answered(res)
    time.sleep(1.0)
    stats = gate.stop()
    evs = dns_events(received(receiver))
    d = gate.delivery
    assert stats["eventsDropped"] > 0, f"nothing counted as dropped: {stats}"
    assert stats["eventsDropped"] + len(evs) == gate.datagrams, (stats["eventsDropped"], len(evs), gate.datagrams)
    assert d["dropped"] == stats["eventsDropped"], d
    assert error_lines(gate, str(blocker)), f"no stderr line names the spool path {spool}:\n{gate.stderr()}"


def test_spool_full_drops_newest_then_one_events_dropped_event(gates, knotd, tmp_path):
    """Receiver away, spool capped at 1 MiB, 5,000 queries: the spool fills,
    the newest events are dropped and counted; once the receiver is there,
    the spooled events arrive, then exactly one dev.dnsgate.events_dropped
    event with the count and the time range."""
    rx = HttpReceiver(tmp_path / "receiver")  # port reserved, nothing listening yet
    try:
        gate = http_gate(gates, knotd, rx, spool_max_bytes=1 * MiB)
        t0 = time.time()
        res = send_load(gate, 5000, rate=2500)
        t1 = time.time()
        assert_all_answered(res)
        assert_dns_fast(res, "the spool is full")
        rx.start()
        # the backlog drains; then a few new events, after which the drop is reported
        deadline = time.monotonic() + 15
        last, stable = -1, 0
        while time.monotonic() < deadline and stable < 4:
            n = len(rx.events())
            stable = stable + 1 if n == last and n > 0 else 0
            last = n
            time.sleep(0.5)
        for i in range(5):
            assert gate.query("www.example.com.", ident=i, timeout=3.0).response is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not [e for e in rx.events() if e["type"] == EVENTS_DROPPED_TYPE]:
            time.sleep(0.2)
        time.sleep(0.5)
        stats = gate.stop()
        evs = received(rx)
    finally:
        rx.stop()
    dropped_events = [e for e in evs if e["type"] == EVENTS_DROPPED_TYPE]
    dropped = stats["eventsDropped"]
    assert dropped > 0, f"5,000 events fit in a 1 MiB spool? {stats}"
    assert len(dropped_events) == 1, f"{len(dropped_events)} events_dropped events: {dropped_events}"
    (ev,) = dropped_events
    assert ev["data"]["count"] == dropped, (ev, dropped)
    first = calendar.timegm(time.strptime(ev["data"]["firstTime"][:19], "%Y-%m-%dT%H:%M:%S"))
    last_t = calendar.timegm(time.strptime(ev["data"]["lastTime"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert t0 - 2 <= first <= last_t <= t1 + 2, (ev["data"], t0, t1)
    dns = dns_events(evs)
    assert len(dns) == gate.datagrams - dropped, (len(dns), gate.datagrams, dropped)
    d = gate.delivery
    assert d["dropped"] == dropped and d["backlog"] == 0, d
    # newest dropped: of the load's queries (ids 5..4999 are unambiguous), a prefix was kept
    kept = sorted(e["data"]["transactionId"] for e in dns
                  if e["subject"] == "www.example.com" and 5 <= e["data"]["transactionId"] < 5000)
    assert kept == list(range(5, 5 + len(kept))), "the oldest events must be kept and the newest dropped"
