"""Turns the raw figures bench/run.sh collected into the tables of
docs/performance.md: prints them, and (unless told not to) replaces the block
between the make-bench markers in the document with them."""

import argparse
import csv
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys

BEGIN = "<!-- make-bench:begin (written by bench/run.sh; edits here are overwritten) -->"
END = "<!-- make-bench:end -->"
MODES = ["allowed", "denied", "mixed"]
MODE_TEXT = {
    "allowed": "all allowed (forward path)",
    "denied": "all denied (refuse path)",
    "mixed": "50/50, 10,000-entry allowlist",
}
TARGETS = ["knotd", "dnsgate", "dnsdist", "dnsmasq"]
PROXIES = ["dnsgate", "dnsdist", "dnsmasq"]
WARMUP_SAMPLES = 100  # latency samples dropped at the start of each run


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, int(round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def machine():
    model = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    distro = ""
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    distro = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    mem_gib = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kib = int(f.readline().split()[1])
            mem_gib = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{distro}, kernel {platform.release()}, {os.cpu_count()} CPUs ({model}){mem_gib}"


def versions(dnsgate):
    def first_line(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            text = (out.stdout or out.stderr).strip().splitlines()
            return text[0] if text else "?"
        except OSError:
            return "?"

    return {
        "dnsgate": first_line([dnsgate, "version"]),
        "dnsdist": first_line(["dnsdist", "--version"]),
        "dnsmasq": first_line(["dnsmasq", "--version"]).split("  ")[0],
        "knotd": first_line(["knotd", "--version"]),
        "dnsperf": next(
            (l for l in (lambda r: r.stdout + r.stderr)(subprocess.run(
                ["dnsperf", "-h"], capture_output=True, text=True, check=False)).splitlines()
             if l.startswith("Version")),
            "?"),
    }


def fmt(value, digits=0):
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0 or a != a or b != b:
        return None
    return a / b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--rounds", type=int, required=True)
    ap.add_argument("--seconds", type=int, required=True)
    ap.add_argument("--latency-seconds", type=int, required=True)
    ap.add_argument("--latency-qps", type=int, required=True)
    ap.add_argument("--ticks-per-second", type=int, required=True)
    ap.add_argument("--pinning", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--dnsgate", required=True)
    ap.add_argument("--load", default="")
    ap.add_argument("--started", default="")
    ap.add_argument("--commit", default="")
    ap.add_argument("--micro", default="")
    ap.add_argument("--alloc", default="")
    ap.add_argument("--doc", required=True)
    ap.add_argument("--write-doc", default="1")
    args = ap.parse_args()
    work = args.work

    # --- throughput and CPU ---------------------------------------------------
    runs = {}  # (mode, target) -> list of dicts
    with open(os.path.join(work, "throughput.tsv"), encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            try:
                qps = float(row["qps"])
                completed = int(row["completed"])
                ticks = int(row["cpu_ticks"])
                writer = int(row["writer_ticks"])
            except ValueError:
                qps, completed, ticks, writer = float("nan"), 0, 0, 0
            per_query = 1e6 / args.ticks_per_second / completed if completed else float("nan")
            runs.setdefault((row["mode"], row["target"]), []).append(
                {"qps": qps, "cpu_us": ticks * per_query, "writer_us": writer * per_query,
                 "lost": row["lost"], "rcodes": row["rcodes"]})

    def agg(mode, target):
        rs = runs.get((mode, target), [])
        qps = [r["qps"] for r in rs if r["qps"] == r["qps"]]
        cpu = [r["cpu_us"] for r in rs if r["cpu_us"] == r["cpu_us"]]
        writer = [r["writer_us"] for r in rs if r["writer_us"] == r["writer_us"]]
        return {
            "writer_med": statistics.median(writer) if writer else None,
            "qps_med": statistics.median(qps) if qps else None,
            "qps_min": min(qps) if qps else None,
            "qps_max": max(qps) if qps else None,
            "cpu_med": statistics.median(cpu) if cpu else None,
            "cpu_min": min(cpu) if cpu else None,
            "cpu_max": max(cpu) if cpu else None,
            "lost": sum(int(r["lost"]) for r in rs if r["lost"].isdigit()),
            "rcodes": rs[-1]["rcodes"] if rs else "",
        }

    # --- latency ----------------------------------------------------------------
    latency = {}
    for mode in MODES:
        for target in TARGETS:
            samples = []
            rcodes = {}
            for rnd in range(1, args.rounds + 1):
                path = os.path.join(work, mode, f"lat-{target}-{rnd}.txt")
                if not os.path.exists(path):
                    continue
                with open(path, encoding="utf-8") as f:
                    lines = f.read().split("\n")
                for line in lines[WARMUP_SAMPLES:]:
                    parts = line.split()
                    if len(parts) != 2:
                        continue
                    rcodes[parts[0]] = rcodes.get(parts[0], 0) + 1
                    samples.append(float(parts[1]) * 1e6)
            samples.sort()
            latency[(mode, target)] = {
                "n": len(samples),
                "p50": percentile(samples, 0.50) if samples else None,
                "p99": percentile(samples, 0.99) if samples else None,
                "rcodes": rcodes,
            }

    # --- dnsgate's own accounting and memory ------------------------------------
    gate = []
    with open(os.path.join(work, "dnsgate.tsv"), encoding="utf-8") as f:
        gate = list(csv.DictReader(f, delimiter="\t"))
    memory = {}
    with open(os.path.join(work, "memory.tsv"), encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            try:
                memory.setdefault((row["mode"], row["target"]), []).append(int(row["hwm_kib"]))
            except ValueError:
                pass

    out = []
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    v = versions(args.dnsgate)
    load = args.load.split()
    load_text = (f" Load average {load[0]} at the start, {load[1]} at the end "
                 "(near 0 before the start means nothing else was running)." if len(load) == 2 else "")
    started = args.started or now
    try:
        commit = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(args.doc)), "rev-parse",
                                 "--short", "HEAD"], capture_output=True, text=True,
                                check=False).stdout.strip() or "?"
    except OSError:
        commit = "?"
    if args.commit:
        commit = args.commit
    out.append(f"Run of {started} on {machine()}, repository at commit {commit}.{load_text}")
    out.append("")
    out.append("```sh")
    out.append(f"{args.command.strip()}      # make bench: bench/run.sh build/dnsgate, after make build")
    out.append("```")
    out.append("")
    out.append(
        f"{args.rounds} rounds; in each, for each mode, the four targets in an order "
        f"that rotates every round: a {args.seconds} s throughput run (dnsperf, 10 clients, "
        f"100 queries in flight) then a {args.latency_seconds} s latency run at "
        f"{args.latency_qps:,} queries/s. CPU pinning: {args.pinning}. "
        f"Versions: {v['dnsgate']}; {v['dnsdist']}; {v['dnsmasq']}; {v['knotd']}; "
        f"dnsperf {v['dnsperf'].replace('Version ', '')}.")
    out.append("")
    out.append("qps: median (min–max) over the rounds. CPU: the proxy's utime+stime "
               "(all threads) per query completed, median over the rounds; for knotd "
               "direct it is knotd's own; *writer* is the share of dnsgate's event "
               "writer thread (JSON formatting and write(2)). Latency: dnsperf's per-query figures at "
               f"{args.latency_qps:,} qps, all rounds pooled; *added* is over knotd "
               "direct in the same mode.")
    out.append("")
    out.append("| mode | target | qps median (min–max) | CPU µs/query | p50 µs | p99 µs "
               "| added p50 µs | added p99 µs |")
    out.append("|---|---|---|---|---|---|---|---|")
    for mode in MODES:
        base = latency[(mode, "knotd")]
        for target in TARGETS:
            a = agg(mode, target)
            lat = latency[(mode, target)]
            added50 = added99 = None
            if target != "knotd" and lat["p50"] is not None and base["p50"] is not None:
                added50 = lat["p50"] - base["p50"]
                added99 = lat["p99"] - base["p99"]
            label = "knotd direct" if target == "knotd" else target
            cpu_cell = fmt(a["cpu_med"], 1)
            if target == "dnsgate" and a["writer_med"] is not None:
                cpu_cell += f" (writer {fmt(a['writer_med'], 1)})"
            out.append(
                f"| {MODE_TEXT[mode] if target == 'knotd' else ''} | {label} "
                f"| {fmt(a['qps_med'])} ({fmt(a['qps_min'])}–{fmt(a['qps_max'])}) "
                f"| {cpu_cell} | {fmt(lat['p50'])} | {fmt(lat['p99'])} "
                f"| {fmt(added50) if target != 'knotd' else '—'} "
                f"| {fmt(added99) if target != 'knotd' else '—'} |")
    out.append("")

    # --- ratios and targets -----------------------------------------------------
    out.append("dnsgate / dnsdist, same runs:")
    out.append("")
    out.append("| mode | qps ratio | CPU-per-query ratio | dnsgate / knotd direct qps |")
    out.append("|---|---|---|---|")
    ratios = {}
    for mode in MODES:
        g, d, k = agg(mode, "dnsgate"), agg(mode, "dnsdist"), agg(mode, "knotd")
        ratios[mode] = (ratio(g["qps_med"], d["qps_med"]), ratio(g["cpu_med"], d["cpu_med"]))
        out.append(f"| {MODE_TEXT[mode]} | {fmt(ratios[mode][0], 2)}x "
                   f"| {fmt(ratios[mode][1], 2)}x | {fmt(ratio(g['qps_med'], k['qps_med']), 2)}x |")
    out.append("")

    def verdict(ok):
        if ok is None:
            return "n/a"
        return "**met**" if ok else "**not met**"

    fwd_lat = latency[("allowed", "dnsgate")]
    fwd_base = latency[("allowed", "knotd")]
    add50 = (fwd_lat["p50"] - fwd_base["p50"]) if fwd_lat["p50"] is not None and fwd_base["p50"] is not None else None
    add99 = (fwd_lat["p99"] - fwd_base["p99"]) if fwd_lat["p99"] is not None and fwd_base["p99"] is not None else None
    hwm = max(memory.get(("mixed", "dnsgate"), [0])) / 1024 or None
    rows = [
        ("CPU per query ≤ 0.5x dnsdist, forward path",
         f"{fmt(ratios['allowed'][1], 2)}x",
         None if ratios["allowed"][1] is None else ratios["allowed"][1] <= 0.5),
        ("CPU per query ≤ 0.5x dnsdist, refuse path",
         f"{fmt(ratios['denied'][1], 2)}x",
         None if ratios["denied"][1] is None else ratios["denied"][1] <= 0.5),
        ("forward throughput ≥ 1.3x dnsdist",
         f"{fmt(ratios['allowed'][0], 2)}x",
         None if ratios["allowed"][0] is None else ratios["allowed"][0] >= 1.3),
        ("refuse throughput ≥ 1.0x dnsdist",
         f"{fmt(ratios['denied'][0], 2)}x",
         None if ratios["denied"][0] is None else ratios["denied"][0] >= 1.0),
        (f"added latency p50 ≤ 15 µs at {args.latency_qps:,} qps (forward)",
         f"{fmt(add50)} µs", None if add50 is None else add50 <= 15),
        (f"added latency p99 ≤ 50 µs at {args.latency_qps:,} qps (forward)",
         f"{fmt(add99)} µs", None if add99 is None else add99 <= 50),
        ("RSS < 20 MiB, 10,000-entry allowlist, full load (peak, VmHWM)",
         f"{fmt(hwm, 1)} MiB", None if hwm is None else hwm < 20),
    ]

    micro_rows = []
    if args.micro and os.path.exists(args.micro):
        with open(args.micro, encoding="utf-8") as f:
            micro = json.load(f)
        # With repetitions, the median of each; without, the one run.
        bench = {b["name"]: b for b in micro.get("benchmarks", [])
                 if b.get("run_type", "iteration") == "iteration"}
        bench.update({b["run_name"]: b for b in micro.get("benchmarks", [])
                      if b.get("run_type") == "aggregate" and b.get("aggregate_name") == "median"})

        def ns(name):
            b = bench.get(name)
            if not b:
                return None
            scale = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
            # CPU time, not wall time: other work on the machine then costs
            # the benchmark its cache, not also its time slices.
            return b["cpu_time"] * scale

        parse_only = ns("BM_ParseOnly")
        micro_rows.append("| allowlist entries | hit, names over the whole list | miss, same "
                          "| hit, 64 hot names | miss, 64 hot names "
                          "| hit, whole list, batches of 32 | miss, same |")
        micro_rows.append("|---|---|---|---|---|---|---|")

        def spread(kinds):
            worst = None
            for kind in kinds:
                values = [ns(f"BM_ParseMatch{kind}/{n}") for n in (10, 10000, 1000000)]
                if all(values):
                    s = max(values) / min(values)
                    worst = s if worst is None else max(worst, s)
            return worst

        for n in (10, 10000, 1000000):
            cells = " | ".join(fmt(ns(f"BM_ParseMatch{k}/{n}"), 0)
                               for k in ("Hit", "Miss", "HitHot", "MissHot",
                                         "HitBatched", "MissBatched"))
            micro_rows.append(f"| {n:,} | {cells} |")
        build_ms = ns("BM_AllowlistBuild/1000000/iterations:1")
        build_ms = build_ms / 1e6 if build_ms else None
        micro_rows.append("")
        micro_rows.append(f"ns of CPU per query. parse_query alone: {fmt(parse_only, 0)} ns/query. "
                          f"Allowlist::build of 1,000,000 entries: {fmt(build_ms, 0)} ms of CPU. "
                          "(Google Benchmark, `build/bench/parse_match_bench`, median of 5 repetitions, "
                          "run on the proxy's CPU after the load runs.)")
        worst = spread(("Hit", "Miss"))
        rows.append(("parse + match cost flat (within 20%) from 10 to 1,000,000 entries, "
                     "names over the whole list",
                     f"largest/smallest {fmt(worst, 2)}x",
                     None if worst is None else worst <= 1.2))
        worst_batched = spread(("HitBatched", "MissBatched"))
        rows.append(("the same, names matched in batches of 32 with `Allowlist::allows_batch` "
                     "(memory loads overlapped; the proxy does not batch its matches yet)",
                     f"largest/smallest {fmt(worst_batched, 2)}x",
                     None if worst_batched is None else worst_batched <= 1.2))
        worst_hot = spread(("HitHot", "MissHot"))
        rows.append(("the same, 64 hot names (the algorithm without cache misses)",
                     f"largest/smallest {fmt(worst_hot, 2)}x",
                     None if worst_hot is None else worst_hot <= 1.2))
        rows.append(("1,000,000-entry allowlist loads in < 2 s",
                     f"{fmt(build_ms, 0)} ms", None if build_ms is None else build_ms < 2000))
    if args.alloc:
        # "[hot path, X] N queries (F forwarded, R refused) on the proxy thread:
        #  A allocations (B bytes), D deallocations", once per emitter.
        found = re.findall(r"\[hot path, ([^\]]+)\] (\d+) queries \((\d+) forwarded, (\d+) refused\)"
                           r"[^:]*: (\d+) allocations \(\d+ bytes\), (\d+) deallocations", args.alloc)
        if found:
            value = "; ".join(f"{e}: {int(a):,} allocations, {int(d):,} frees over {int(n):,} queries "
                              f"({int(f):,} forwarded, {int(r):,} refused)"
                              for e, n, f, r, a, d in found)
        else:
            value = args.alloc.replace("|", "/")
        rows.append(("no heap allocation per query, UDP forward and refuse paths "
                     "(tests/alloc, counting allocator on the proxy thread)",
                     value, args.alloc.startswith("passed")))

    out.append("Issue 4's targets, from this run:")
    out.append("")
    out.append("| target | measured | verdict |")
    out.append("|---|---|---|")
    for name, value, ok in rows:
        out.append(f"| {name} | {value} | {verdict(ok)} |")
    out.append("")

    if micro_rows:
        out.append("Parse + match micro-benchmark (one query = `parse_query` + "
                   "`Allowlist::allows`; names drawn at random from the whole list):")
        out.append("")
        out.extend(micro_rows)
        out.append("")

    # --- sanity: what each target answered, dnsgate's events --------------------
    out.append("Checks: responses of the last throughput run per target (so a proxy that "
               "answers the wrong thing shows), queries lost, peak RSS, dnsgate's events.")
    out.append("")
    out.append("| mode | target | response codes | lost (all runs) | peak RSS MiB |")
    out.append("|---|---|---|---|---|")
    for mode in MODES:
        for target in TARGETS:
            a = agg(mode, target)
            rss = memory.get((mode, target))
            rcodes = re.sub(r"\s*\([0-9.]+%\)", "", a["rcodes"]).strip()
            out.append(f"| {mode} | {target} | {rcodes} | {a['lost']} "
                       f"| {fmt(max(rss) / 1024, 1) if rss else '—'} |")
    out.append("")
    total_received = sum(int(g["received"]) for g in gate if g["received"].isdigit())
    total_events = sum(int(g["events"]) for g in gate if g["events"].isdigit())
    total_dropped = sum(int(g["eventsDropped"]) for g in gate if g["eventsDropped"].isdigit())
    out.append(f"dnsgate's events file: {total_events:,} lines for {total_received:,} queries "
               f"received ({total_dropped:,} dropped, `eventsDropped`).")

    text = "\n".join(out) + "\n"
    print(text)

    if args.write_doc == "1":
        with open(args.doc, encoding="utf-8") as f:
            doc = f.read()
        block = f"{BEGIN}\n{text}{END}"
        if BEGIN in doc and END in doc:
            start = doc.index(BEGIN)
            end = doc.index(END) + len(END)
            doc = doc[:start] + block + doc[end:]
        else:
            doc = doc.rstrip("\n") + "\n\n## Side by side: `make bench`\n\n" + block + "\n"
        with open(args.doc, "w", encoding="utf-8") as f:
            f.write(doc)
        print(f"bench: wrote the tables to {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
