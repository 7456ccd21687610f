"""`dnsgate report` (DESIGN.md §12 "Audit report", docs/cli.md "report"):
the events files of real dnsgate runs summed up, as text and JSON, from
files and stdin; bad lines counted; exit codes; and a generated file of
200,000 lines read in bounded memory."""

from __future__ import annotations

import json
import math
import mmap
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from dnsgate_testlib import PROBE_NAME, closed_udp_port, dnsgate_bin

ALLOW = ["example.com", "www.example.com", "*.example.org"]
PROBE = PROBE_NAME.rstrip(".")


def report(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([dnsgate_bin(), "report", *args], input=stdin, capture_output=True,
                          timeout=120)


def report_json(*args: str, stdin: bytes | None = None) -> dict:
    done = report("--json", *args, stdin=stdin)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    out = done.stdout.decode()
    assert out.endswith("\n") and out.count("\n") == 1, "one JSON object on one line"
    return json.loads(out)


def nearest_rank(values: list[int], p: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def assert_percentile(reported: int, values: list[int], p: float) -> None:
    """The histogram's documented precision: never below, at most 1/16 above."""
    exact = nearest_rank(values, p)
    assert exact <= reported <= exact + exact // 16, (p, reported, exact)


@pytest.fixture
def logs(dnsgate, knotd):
    """Two stopped dnsgates and their events files: `main` (cell itest,
    upstream knotd) with allowed, refused and malformed queries, `failing`
    (cell other, an upstream nobody listens on)."""
    main = dnsgate(allowlist=ALLOW, upstream=knotd.address)
    for name, rdtype in [("www.example.com.", "A")] * 3 + [("example.com.", "AAAA")] * 2:
        assert main.query(name, rdtype).response is not None
    for name in ["Blocked.Example.NET.", "blocked.example.net.", "BLOCKED.EXAMPLE.NET.",
                 "other.example.net.", "OTHER.example.net.", "third.example.net."]:
        assert main.query(name, "A").response is not None
    for wire in [b"\x12", b"\x00\x01\x02"]:  # too_short: dropped, no answer
        main.send(wire).close()
    main.events(13)
    main.stop()

    dead = f"127.0.0.1:{closed_udp_port()}"
    failing = dnsgate(allowlist=ALLOW, upstream=dead, cell="other")
    for _ in range(2):
        assert failing.query("www.example.com.", "A").response is not None
    failing.events(2)
    failing.stop()
    return main, failing, knotd.address, dead


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_report_json_matches_what_was_sent(logs):
    main, _, knot, _ = logs
    got = report_json(str(main.events_path))
    assert list(got) == ["events", "badLines", "firstTime", "lastTime", "byAction", "byReason",
                         "topRefused", "upstreams"]
    # 5 allowed, 6 refused and the readiness probe (refused too), 2 malformed.
    assert got["events"] == 14
    assert got["badLines"] == 0
    assert got["byAction"] == {"forward": 5, "refuse": 7, "drop": 2}
    assert got["byReason"] == {"allowed": 5, "not_allowlisted": 7, "malformed_query": 2}

    events = lines_of(main.events_path)
    times = sorted(e["time"] for e in events)
    assert (got["firstTime"], got["lastTime"]) == (times[0], times[-1])

    top = got["topRefused"]
    assert [(t["qname"], t["count"]) for t in top] == [
        ("Blocked.Example.NET", 3), ("other.example.net", 2), (PROBE, 1), ("third.example.net", 1)]
    for row in top:
        assert list(row) == ["qname", "count", "firstSeen", "lastSeen", "clients"]
        assert row["clients"] == ["127.0.0.1"]
        mine = sorted(e["time"] for e in events if e["data"].get("qname", "").lower() == row["qname"].lower())
        assert (row["firstSeen"], row["lastSeen"]) == (mine[0], mine[-1])

    (up,) = got["upstreams"]
    assert list(up) == ["upstream", "count", "p50Us", "p99Us", "errors"]
    assert up["upstream"] == knot and up["count"] == 5 and up["errors"] == {}
    latencies = [e["data"]["latencyUs"] for e in events if e["data"].get("upstream") == knot]
    assert_percentile(up["p50Us"], latencies, 50)
    assert_percentile(up["p99Us"], latencies, 99)


def test_report_text_summary(logs):
    main, _, knot, _ = logs
    done = report(str(main.events_path))
    assert done.returncode == 0, done.stderr.decode()
    text = done.stdout.decode()
    for part in ["14 events, 0 bad lines", "time:", "forward 5", "refuse 7", "drop 2",
                 "not_allowlisted 7", "malformed_query 2", "top refused names (4 of 7 refused queries)",
                 "Blocked.Example.NET", "127.0.0.1", "upstreams:", knot]:
        assert part in text, f"{part!r} missing from:\n{text}"
    # Sections in the order a person reads them.
    order = [text.index(s) for s in ["time:", "actions:", "reasons:", "top refused names", "upstreams:"]]
    assert order == sorted(order), text


def test_report_from_stdin_is_the_same(logs):
    main, _, _, _ = logs
    assert report_json("-", stdin=main.events_path.read_bytes()) == report_json(str(main.events_path))


def test_report_on_two_files_and_filters(logs):
    main, failing, knot, dead = logs
    both = report_json(str(main.events_path), str(failing.events_path))
    assert both["events"] == 14 + 3  # two forwarded that failed, and the probe
    assert both["byAction"] == {"forward": 5, "refuse": 8, "drop": 2, "servfail": 2}
    assert both["byReason"]["upstream_error"] == 2
    by_upstream = {u["upstream"]: u for u in both["upstreams"]}
    assert set(by_upstream) == {knot, dead}
    assert by_upstream[dead]["count"] == 2
    errors = [e["data"]["upstreamError"] for e in lines_of(failing.events_path)
              if e["data"]["reasonCode"] == "upstream_error"]
    assert by_upstream[dead]["errors"] == {errors[0]: 2}
    assert [u["upstream"] for u in both["upstreams"]] == [knot, dead], "by count"
    assert {t["qname"]: t["count"] for t in both["topRefused"]}[PROBE] == 2

    # The order of the files does not change the sums; stdin mixes with files.
    swapped = report_json(str(failing.events_path), "-", stdin=main.events_path.read_bytes())
    assert swapped == both

    assert report_json("--cell", "other", str(main.events_path), str(failing.events_path))["events"] == 3
    only_main = report_json("--cell", "itest", str(main.events_path), str(failing.events_path))
    assert only_main == report_json(str(main.events_path))

    events = lines_of(main.events_path) + lines_of(failing.events_path)
    times = sorted(e["time"] for e in events)
    since = times[len(times) // 2]
    got = report_json("--since", since, str(main.events_path), str(failing.events_path))
    assert got["events"] == sum(1 for t in times if t >= since)
    assert got["firstTime"] == since

    top2 = report_json("--top", "2", str(main.events_path))["topRefused"]
    assert [t["qname"] for t in top2] == ["Blocked.Example.NET", "other.example.net"]


def test_bad_lines_are_counted_never_fatal(logs, tmp_path):
    main, _, _, _ = logs
    mixed = tmp_path / "mixed.jsonl"
    good = main.events_path.read_text()
    first, rest = good.split("\n", 1)
    bad = [
        "not json",
        '{"type":"dev.dnsgate.other","time":"2026-11-26T09:00:00Z","data":{}}',
        '{"specversion":"1.0","type":"dev.dnsgate.dns_query","time":"2026-11-26T09:00:00Z"}',
        first[: len(first) // 2],  # a line cut short
        "[]",
    ]
    mixed.write_text(first + "\n" + "\n".join(bad) + "\n\n" + rest + "x" * (2 << 20) + "\n")
    got = report_json(str(mixed))
    assert got["badLines"] == len(bad) + 1  # and the 2 MiB line
    assert got["events"] == 14
    text = report(str(mixed))
    assert text.returncode == 0 and b"14 events, 6 bad lines" in text.stdout


def test_exit_codes(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    got = report_json(str(empty))
    assert got["events"] == 0 and got["firstTime"] is None and got["topRefused"] == []
    assert report(str(empty)).returncode == 0

    missing = report(str(empty), str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1 and missing.stdout == b""
    assert b"nope.jsonl" in missing.stderr
    assert report(str(tmp_path)).returncode == 1  # a folder
    assert report().returncode == 2  # no FILE
    assert report("--since", "yesterday", str(empty)).returncode == 2
    assert report("--top", "0", str(empty)).returncode == 2
    assert report("--bogus", str(empty)).returncode == 2


def max_rss_kib(args: list[str]) -> tuple[int, bytes]:
    """Runs dnsgate, returns its peak resident memory (KiB) and stdout.
    Through /usr/bin/time -v when there is one: rusage seen from this
    process would carry Python's own size across the exec. Otherwise the
    kernel's high-water mark, VmHWM, read while it runs."""
    out_path = Path(args[-1] + ".out")
    with open(out_path, "wb") as out:
        if os.access("/usr/bin/time", os.X_OK):
            done = subprocess.run(["/usr/bin/time", "-v", dnsgate_bin(), *args], stdout=out,
                                  stderr=subprocess.PIPE, timeout=120)
            assert done.returncode == 0, done.stderr.decode()
            (rss,) = re.findall(rb"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
            return int(rss), out_path.read_bytes()
        proc = subprocess.Popen([dnsgate_bin(), *args], stdout=out, stderr=subprocess.DEVNULL)
        peak = 0
        while proc.poll() is None:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                peak = max(peak, int(re.search(r"VmHWM:\s+(\d+)", status).group(1)))
            except (OSError, AttributeError):
                pass
            time.sleep(0.005)
    assert proc.returncode == 0
    return peak, out_path.read_bytes()


def sanitized() -> bool:
    with open(dnsgate_bin(), "rb") as f:
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as image:
            return image.find(b"__asan_init") >= 0


def write_events(path: Path, count: int) -> None:
    """`count` events: every tenth a refused heavy.example.net, the others
    refused names seen once each (more than the refused table holds) or
    forwarded to one of three upstreams."""
    template = ('{"specversion":"1.0","id":"%08d","source":"dnsgate/cells/big",'
                '"type":"dev.dnsgate.dns_query","time":"2026-11-26T%02d:%02d:%02d.%06dZ",'
                '"data":{"cell":"big","client":"10.0.%d.%d:%d","qname":"%s","action":"%s",'
                '"reasonCode":"%s","latencyUs":%d%s}}\n')
    with open(path, "w") as f:
        for i in range(count):
            t = i // 100
            clock = (9 + t // 3600, t // 60 % 60, t % 60, i % 1000000)
            client = (i % 7, i % 250, 1024 + i % 60000)
            if i % 10 == 0:
                row = ("heavy.example.net", "refuse", "not_allowlisted", 3, "")
            elif i % 2:
                row = (f"n{i}.example.net", "refuse", "not_allowlisted", 3, "")
            else:
                row = ("www.example.com", "forward", "allowed", 100 + i % 900,
                       ',"upstream":"127.0.0.%d:53"' % (i % 3))
            f.write(template % (i, *clock, *client, row[0], row[1], row[2], row[3], row[4]))


def test_bounded_memory_on_a_large_file(tmp_path):
    small = tmp_path / "small.jsonl"
    big = tmp_path / "big.jsonl"
    write_events(small, 20_000)
    write_events(big, 200_000)
    start = time.monotonic()
    small_rss, _ = max_rss_kib(["report", "--json", str(small)])
    big_rss, out = max_rss_kib(["report", "--json", str(big)])
    elapsed = time.monotonic() - start

    got = json.loads(out)
    assert got["events"] == 200_000 and got["badLines"] == 0
    assert got["byReason"] == {"not_allowlisted": 120_000, "allowed": 80_000}
    heavy = got["topRefused"][0]
    assert heavy["qname"] == "heavy.example.net" and heavy["count"] == 20_000
    assert len(heavy["clients"]) == 10
    assert all(t["count"] == 1 for t in got["topRefused"][1:]), "counts are never overstated"
    assert sorted(u["upstream"] for u in got["upstreams"]) == [f"127.0.0.{n}:53" for n in range(3)]
    assert sum(u["count"] for u in got["upstreams"]) == 80_000
    if sanitized():
        return  # AddressSanitizer's quarantine keeps freed memory (256 MiB)
    # Ten times the lines (both past the refused table's 10,000 names): the
    # same memory, give or take the allocator.
    assert big_rss < small_rss + 4096, (small_rss, big_rss)
    assert big_rss < 64 * 1024, big_rss
    print(f"report: 200,000 lines ({big.stat().st_size >> 20} MiB), max RSS {big_rss} KiB "
          f"(20,000 lines: {small_rss} KiB), {elapsed:.1f} s for both")
