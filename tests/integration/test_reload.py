"""Hot reload of `dnsgate run` on SIGHUP (DESIGN.md §12, docs/running.md
"Reloading the config"): a new allowlist and new resolvers take effect
between two turns of the loop, queries in flight finish as they began, a
config that fails `check` (or changes what needs a restart) is refused and
the old one stays, and every event carries the policyVersion of the
allowlist that decided it."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import threading
import time

import dns.rcode
import pytest

from dnsgate_testlib import ScriptedUpstream, answer_after, answer_normally, make_query, render_config

def version_of(entries: list[str]) -> str:
    """docs/events.md: the first 48 bits of SHA-256 over the entries,
    lower-cased, without a trailing dot, sorted, deduplicated, one per line."""
    names = sorted({e.lower()[:-1] if len(e) > 1 and e.endswith(".") else e.lower() for e in entries})
    return hashlib.sha256("".join(n + "\n" for n in names).encode()).hexdigest()[:12]


def rewrite(gate, allowlist, upstream=None, resolvers=None, listen_port=None, **extra) -> None:
    """Writes a new config for `gate` in place (same listener and events file
    unless told otherwise), atomically, as an operator's tooling would."""
    text = render_config(cell=gate.cell, listen_port=listen_port or gate.port, allowlist=allowlist,
                         upstream=upstream, resolvers=resolvers, events_path=gate.events_path,
                         timeout_ms=gate.timeout_ms, **extra)
    tmp = gate.config_path.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, gate.config_path)


def reload_and_wait(gate, accepted_before: int) -> None:
    """SIGHUP, then wait (bounded) for the reloader's verdict in the log."""
    gate.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        log = gate.stderr()
        if log.count("reload: ") + log.count("reload refused") > accepted_before:
            return
        time.sleep(0.01)
    raise AssertionError(f"no reload verdict logged within 5 s:\n{gate.stderr()}")


def verdicts(gate) -> int:
    log = gate.stderr()
    return log.count("reload: ") + log.count("reload refused")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rcode_of(gate, name: str) -> int:
    r = gate.query(name)
    assert r.response is not None, f"no answer for {name}"
    return r.msg.rcode()


def wait_until_allowed(gate, name: str, timeout: float = 2.0) -> int:
    """Asks `name` until it is forwarded (the loop takes a reload within one
    turn, at most 50 ms after the reloader hands it over); returns the number
    of queries that took."""
    deadline = time.monotonic() + timeout
    asked = 0
    while True:
        asked += 1
        if rcode_of(gate, name) == dns.rcode.NOERROR:
            return asked
        assert time.monotonic() < deadline, f"{name} still refused {timeout} s after the reload"
        time.sleep(0.02)


def test_new_allowlist_takes_effect_and_events_carry_its_version(dnsgate, knotd):
    first = ["www.example.com"]
    gate = dnsgate(allowlist=first, upstream=knotd.address)
    assert rcode_of(gate, "www.example.com") == dns.rcode.NOERROR
    assert rcode_of(gate, "example.org") == dns.rcode.REFUSED

    second = ["www.example.com", "Example.ORG."]
    rewrite(gate, second, upstream=knotd.address)
    reload_and_wait(gate, verdicts(gate))
    assert f"policyVersion {version_of(second)}" in gate.stderr()
    asked = wait_until_allowed(gate, "example.org")
    assert rcode_of(gate, "www.example.com") == dns.rcode.NOERROR

    evs = gate.events(3 + asked)
    assert {e["data"]["policyVersion"] for e in evs[:2]} == {version_of(first)}
    assert evs[-1]["data"]["policyVersion"] == version_of(second)
    assert evs[-2]["data"]["action"] == "forward" and evs[-2]["data"]["qname"] == "example.org"
    assert evs[-2]["data"]["policyVersion"] == version_of(second)
    # Refusals before the reload carry the old version, the allowed one the new.
    for e in evs:
        if e["data"]["qname"] == "example.org":
            want = version_of(first) if e["data"]["action"] == "refuse" else version_of(second)
            assert e["data"]["policyVersion"] == want, e


def test_version_ignores_order_case_and_duplicates(dnsgate, knotd):
    gate = dnsgate(allowlist=["b.example.com", "a.example.com"], upstream=knotd.address)
    rcode_of(gate, "a.example.com")
    rewrite(gate, ["A.example.com.", "b.example.com", "a.example.com"], upstream=knotd.address)
    reload_and_wait(gate, verdicts(gate))
    time.sleep(0.1)
    rcode_of(gate, "a.example.com")
    evs = gate.events(2)
    assert [e["data"]["policyVersion"] for e in evs] == [version_of(["a.example.com", "b.example.com"])] * 2


@pytest.mark.parametrize("breakage", ["yaml", "unknown field", "bad entry", "missing", "directory",
                                      "listen changed", "events changed", "netns"])
def test_bad_config_is_refused_and_the_old_one_stays(dnsgate, knotd, breakage, tmp_path):
    allow = ["www.example.com"]
    gate = dnsgate(allowlist=allow, upstream=knotd.address)
    good = gate.config_path.read_text()
    if breakage == "yaml":
        gate.config_path.write_text(good + "dnsAuthority: [\n")
        why = r"dnsgate\.yaml:\d+"
    elif breakage == "unknown field":
        gate.config_path.write_text(good + "allowEverything: true\n")
        why = "allowEverything"
    elif breakage == "bad entry":
        rewrite(gate, ["www.example.com", "bad..name"], upstream=knotd.address)
        why = r"hostnameAllowlist\[1\]"
    elif breakage == "missing":
        gate.config_path.unlink()
        why = "cannot read"
    elif breakage == "directory":
        gate.config_path.unlink()
        gate.config_path.mkdir()
        why = "cannot read"
    elif breakage == "listen changed":
        rewrite(gate, ["www.example.com", "example.org"], upstream=knotd.address, listen_port=gate.port + 1)
        why = "listen.udp changed, which takes a restart"
    elif breakage == "events changed":
        rewrite(gate, ["www.example.com", "example.org"], upstream=knotd.address)
        text = gate.config_path.read_text().replace(str(gate.events_path), str(tmp_path / "other.jsonl"))
        gate.config_path.write_text(text)
        why = "events changed, which takes a restart"
    else:
        gate.config_path.write_text(good + "netns: cell-a\n")
        why = "netns changed"
    before = verdicts(gate)
    reload_and_wait(gate, before)
    log = gate.stderr()
    refusal = [line for line in log.splitlines() if "reload refused" in line]
    assert len(refusal) == 1, log
    assert re.search(why, refusal[0]), refusal[0]
    assert "the running config stays" in refusal[0]
    assert gate.running()
    # The old policy answers as before: allowed still allowed, the rest refused.
    assert rcode_of(gate, "www.example.com") == dns.rcode.NOERROR
    assert rcode_of(gate, "example.org") == dns.rcode.REFUSED
    evs = gate.events(2)
    assert {e["data"]["policyVersion"] for e in evs} == {version_of(allow)}
    # Fixed and reloaded again: now it is taken.
    if gate.config_path.is_dir():
        gate.config_path.rmdir()
    gate.config_path.write_text(good.replace("www.example.com", "example.org"))
    reload_and_wait(gate, before + 1)
    wait_until_allowed(gate, "example.org")


def test_queries_in_flight_finish_with_the_resolver_they_began_with(dnsgate):
    old = ScriptedUpstream()
    new = ScriptedUpstream()
    try:
        old.behaviour = answer_after(0.6, address="192.0.2.1")
        new.behaviour = answer_normally
        gate = dnsgate(allowlist=["slow.example", "fast.example"], upstream=old.address)
        socks = [gate.send(make_query("slow.example", "A", ident=0x100 + i).to_wire()) for i in range(5)]
        old.wait_for(5)
        rewrite(gate, ["slow.example", "fast.example"], upstream=new.address)
        reload_and_wait(gate, verdicts(gate))
        time.sleep(0.1)
        # New queries go to the new resolver at once ...
        r = gate.query("fast.example")
        assert r.msg.rcode() == dns.rcode.NOERROR
        assert len(new.queries()) == 1 and len(old.queries()) == 5
        # ... while the five sent before the reload are answered by the old one.
        for s in socks:
            s.settimeout(3)
            data, _ = s.recvfrom(4096)
            assert data[3] & 0x0F == 0
            s.close()
        evs = gate.events(6)
        slow = [e for e in evs if e["data"]["qname"] == "slow.example"]
        fast = [e for e in evs if e["data"]["qname"] == "fast.example"]
        assert len(slow) == 5 and len(fast) == 1
        assert {e["data"]["upstream"] for e in slow} == {old.address}
        assert {e["data"]["action"] for e in slow} == {"forward"}
        assert fast[0]["data"]["upstream"] == new.address
        # The old resolver retires once its queries are done. A late datagram
        # from it to the (caller-owned) upstream socket it used must not wake
        # the loop again and again: dnsgate stays idle.
        time.sleep(0.3)
        with old._lock:
            proxy_side = old.received[0][1]
        for _ in range(3):
            old.sock.sendto(b"\x12\x34late answer", proxy_side)
        time.sleep(0.2)
        before = cpu_seconds(gate.proc.pid)
        time.sleep(1.0)
        busy = cpu_seconds(gate.proc.pid) - before
        assert busy < 0.2, f"dnsgate used {busy:.2f} s of CPU in 1 s idle after the reload"
        stats = gate.stop()
        assert stats["relayed"] == 6 and stats["servfailTimeout"] == 0
        # Per resolver: those of the config in force.
        assert [r["uri"] for r in stats["resolvers"]] == [new.address]
    finally:
        old.close()
        new.close()


def test_hundred_reloads_in_ten_seconds_under_load_lose_nothing(dnsgate, knotd):
    """Two configs, swapped 100 times in 10 s while clients ask without
    pause. v1 allows www.example.com through knotd and refuses example.org; v2 the
    reverse through a second resolver. Every query is answered, and each
    event's decision, resolver and version come from one and the same
    config."""
    other = ScriptedUpstream()
    other.behaviour = answer_normally
    try:
        v1 = (["www.example.com"], knotd.address)
        v2 = (["example.org"], other.address)
        gate = dnsgate(allowlist=v1[0], upstream=v1[1])
        stop = threading.Event()
        lost: list[str] = []
        asked = [0]
        lock = threading.Lock()

        def client(n: int) -> None:
            i = 0
            while not stop.is_set() and i < 20000:
                name = "www.example.com" if (i + n) % 2 == 0 else "example.org"
                r = gate.query(name, timeout=2.0)
                with lock:
                    asked[0] += 1
                    if r.response is None:
                        lost.append(name)
                i += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        started = time.monotonic()
        for k in range(100):
            allow, up = v2 if k % 2 == 0 else v1
            rewrite(gate, allow, upstream=up)
            gate.proc.send_signal(signal.SIGHUP)
            time.sleep(max(0.0, started + (k + 1) * 0.1 - time.monotonic()))
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(timeout=10)
        assert not lost, f"{len(lost)} of {asked[0]} queries got no answer"
        log = gate.stderr()
        assert "reload refused" not in log
        # Coalesced SIGHUPs may be fewer reads, never fewer than half.
        assert log.count("reload: ") >= 50, log.count("reload: ")
        # The last config written was v1 (k = 99).
        time.sleep(0.2)
        assert rcode_of(gate, "www.example.com") == dns.rcode.NOERROR
        assert rcode_of(gate, "example.org") == dns.rcode.REFUSED
        stats = gate.stop()
        evs = gate.events(asked[0] + 2)
        versions = {version_of(v1[0]): ("www.example.com", knotd.address),
                    version_of(v2[0]): ("example.org", other.address)}
        seen = set()
        for e in evs:
            d = e["data"]
            allowed_name, resolver = versions[d["policyVersion"]]
            seen.add(d["policyVersion"])
            if d["action"] == "forward":
                assert d["qname"] == allowed_name and d["upstream"] == resolver, e
            else:
                assert d["action"] == "refuse" and d["qname"] != allowed_name, e
        assert seen == set(versions)
        assert stats["servfailTimeout"] == 0 and stats["servfailError"] == 0
        assert stats["eventsDropped"] == 0
        print(f"100 reloads in {time.monotonic() - started:.1f} s: {asked[0]} queries, 0 lost, "
              f"{log.count('reload: ')} configs read")
    finally:
        other.close()
