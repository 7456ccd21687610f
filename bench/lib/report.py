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
TARGETS = ["knotd", "dnsgate", "dnsdist", "dnsmasq"]  # the Do53 targets unless --targets says
LABELS = {"knotd": "knotd direct", "floor": "floor relay", "dnsgate-epoll": "dnsgate (epoll)",
          "dnsgate-uring": "dnsgate (io_uring)", "dnsgate-auto": "dnsgate (io: auto)"}
ENCRYPTED_MODES = ["dot", "doh", "doq"]
ENCRYPTED_TARGETS = {"dot": ["dnsgate", "dnsdist"], "doh": ["dnsgate", "dnsdist"], "doq": ["dnsgate"]}
ENCRYPTED_TEXT = {"dot": "DoT (DNS over TLS)", "doh": "DoH (HTTP/2 POST)", "doq": "DoQ (DNS over QUIC)"}
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


def label(target):
    return LABELS.get(target, target)


def latency_cpu_us(args):
    """(mode, target) -> the proxy's CPU µs per answer of each latency run."""
    lat_cpu = {}
    for row in read_tsv(os.path.join(args.work, "latency_cpu.tsv")):
        try:
            answers = int(row["answers"])
            us = 1e6 / args.ticks_per_second * int(row["cpu_ticks"]) / answers if answers else None
        except ValueError:
            us = None
        lat_cpu.setdefault((row["mode"], row["target"]), []).append(us)
    return lat_cpu


def skipped_lines(args, modes):
    """The loud lines for what run.sh skipped in these modes, and why."""
    out = []
    for row in read_tsv_plain(os.path.join(args.work, "skipped.tsv")):
        if row[0] in modes:
            what = row[0] if not row[1] else f"{row[0]}, {label(row[1])}"
            out.append(f"**SKIPPED ({what})**: {row[2]}")
            out.append("")
    return out


def fmt(value, digits=0):
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0 or a != a or b != b:
        return None
    return a / b


def read_tsv(path):
    if not path or not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def median_or_none(values):
    values = [v for v in values if v is not None and v == v]
    return statistics.median(values) if values else None


def resolver_stats(stats_line):
    """The first resolver's counters from a dnsgate stats line, or None."""
    try:
        return json.loads(stats_line)["resolvers"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def encrypted_section(args, modes, runs, latency, gate, memory):
    """The tables of issue 9: dnsgate and dnsdist over DoT and DoH to the same
    TLS server, dnsgate alone over DoQ, dnsgate's connections and memory."""
    out = []
    lat_cpu = latency_cpu_us(args)

    nodelay = (" TCP_NODELAY set on its DoT sockets by an LD_PRELOAD shim (1.17 sets it on "
               "DoH only; `bench/lib/tls_upstream.sh` says why)" if args.unbound_nodelay == "1" else
               " as packaged (no TCP_NODELAY on its DoT sockets: Nagle holds answers on a pipelined "
               "connection)")
    upstream = {"unbound": "Unbound 1.17 (one thread, cache on;" + nodelay + ")",
                "dnsdist": "dnsdist 1.7 (addTLSLocal with maxInFlight=1000, addDOHLocal; no cache)"}
    out.append("")
    out.append("**Encrypted upstreams (issue 9).** The same dnsperf load over UDP to the proxy; "
               f"the proxy forwards every query (all allowed, `*.bench.test`) over DoT or DoH to "
               f"{upstream.get(args.tls_upstream, args.tls_upstream)} in front of the same knotd, "
               "with a certificate made for the run (certtool, ECDSA P-256), or over DoQ to the "
               "DoQ test server (`tests/doq_server`, quic-go) in front of knotd. The TLS server and "
               "the DoQ server run on CPU 0 with dnsperf and knotd; their CPU is not the proxy's "
               "(*upstream CPU* shows it, % of one CPU). dnsdist uses its outgoing DoT "
               "(`newServer{tls=\"openssl\", subjectName=..., caStore=..., validateCertificates=true, "
               "maxInFlight=100}`) and DoH (the same with `dohPath=\"/dns-query\"`). Every proxy verifies "
               "the certificate. *CPU at "
               f"{args.latency_qps:,} qps* is the proxy's CPU per answer during the latency run (a "
               f"fixed rate every target sustains; dnsperf allows {args.latency_inflight_tls:,} in "
               "flight there); *conns* is the proxy's TCP connections to the upstream open at the "
               "end of each throughput run.")
    out.append("")
    out.extend(skipped_lines(args, modes))

    def agg(mode, target):
        rs = runs.get((mode, target), [])
        qps = [r["qps"] for r in rs if r["qps"] == r["qps"]]
        cpu = [r["cpu_us"] for r in rs if r["cpu_us"] == r["cpu_us"]]
        return {
            "n": len(rs),
            "qps_med": median_or_none(qps), "qps_min": min(qps) if qps else None,
            "qps_max": max(qps) if qps else None,
            "cpu_med": median_or_none(cpu), "cpu_min": min(cpu) if cpu else None,
            "cpu_max": max(cpu) if cpu else None,
            "writer_med": median_or_none([r["writer_us"] for r in rs]),
            "lat_cpu": median_or_none(lat_cpu.get((mode, target), [])),
            "up_pct": median_or_none([r.get("upstream_pct") for r in rs]),
            "cpu0": median_or_none([r.get("cpu0_busy") for r in rs]),
            "cpu1": median_or_none([r.get("cpu1_busy") for r in rs]),
            "lost": sum(int(r["lost"]) for r in rs if r["lost"].isdigit()),
            "conns": "/".join(r["conns"] for r in rs if r["conns"] != "") or "—",
            "rcodes": re.sub(r"\s*\([0-9.]+%\)", "", rs[-1]["rcodes"]).strip() if rs else "",
        }

    out.append(f"| mode | target | qps median (min–max) | CPU µs/query, full load, median (min–max) "
               f"| CPU µs/query at {args.latency_qps:,} qps | p50 µs | p99 µs | upstream CPU % "
               "| CPU 0 / CPU 1 busy % | lost | conns | responses (last run) |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    table = {}
    for mode in modes:
        for i, target in enumerate(ENCRYPTED_TARGETS[mode]):
            a = agg(mode, target)
            table[(mode, target)] = a
            if a["n"] == 0:
                out.append(f"| {ENCRYPTED_TEXT[mode] if i == 0 else ''} | {target} | not measured "
                           "| | | | | | | | | |")
                continue
            lat = latency.get((mode, target), {})
            cpu_cell = f"{fmt(a['cpu_med'], 1)} ({fmt(a['cpu_min'], 1)}–{fmt(a['cpu_max'], 1)})"
            if target == "dnsgate" and a["writer_med"] is not None:
                cpu_cell += f", writer {fmt(a['writer_med'], 1)}"
            out.append(
                f"| {ENCRYPTED_TEXT[mode] if i == 0 else ''} | {target} "
                f"| {fmt(a['qps_med'])} ({fmt(a['qps_min'])}–{fmt(a['qps_max'])}) | {cpu_cell} "
                f"| {fmt(a['lat_cpu'], 1)} | {fmt(lat.get('p50'))} | {fmt(lat.get('p99'))} "
                f"| {fmt(a['up_pct'])} | {fmt(a['cpu0'])} / {fmt(a['cpu1'])} | {a['lost']} "
                f"| {a['conns']} | {a['rcodes']} |")
    out.append("")

    # dnsgate's own counters over each mode's runs (warm-up, throughput and
    # latency runs of every round; one fresh dnsgate per round).
    counters = {}
    for g in gate:
        if g["mode"] not in modes:
            continue
        r = resolver_stats(g.get("stats", ""))
        if r is None:
            continue
        c = counters.setdefault(g["mode"], {"queries": 0, "answers": 0, "failures": 0, "connects": 0,
                                            "handshakes": 0, "resumed": 0, "unsolicited": 0,
                                            "rounds": 0})
        c["rounds"] += 1
        for k in list(c):
            if k != "rounds":
                c[k] += int(r.get(k, 0))
    if counters:
        out.append("dnsgate's counters for its resolver (the stats line at SIGTERM), summed over "
                   "the rounds (one fresh dnsgate per round and mode):")
        out.append("")
        out.append("| mode | rounds | queries | answers | failures | connects | handshakes | resumed "
                   "| unsolicited | queries per connect |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for mode in modes:
            c = counters.get(mode)
            if not c:
                continue
            per = f"{c['queries'] / c['connects']:,.0f}" if c["connects"] else "—"
            out.append(f"| {mode} | {c['rounds']} | {c['queries']:,} | {c['answers']:,} "
                       f"| {c['failures']:,} | {c['connects']:,} | {c['handshakes']:,} "
                       f"| {c['resumed']:,} | {c['unsolicited']:,} | {per} |")
        out.append("")

    ratio_rows = []
    for mode in modes:
        if "dnsdist" not in ENCRYPTED_TARGETS[mode]:
            continue
        g, d = table.get((mode, "dnsgate")), table.get((mode, "dnsdist"))
        if not g or not d or not g["n"] or not d["n"]:
            continue  # a skipped target: said loudly above
        ratio_rows.append((mode, ratio(g["cpu_med"], d["cpu_med"]), ratio(g["lat_cpu"], d["lat_cpu"]),
                           ratio(g["qps_med"], d["qps_med"])))
    if ratio_rows:
        out.append("dnsgate / dnsdist, same runs:")
        out.append("")
        out.append(f"| mode | CPU-per-query ratio, full load | CPU-per-query ratio at "
                   f"{args.latency_qps:,} qps | qps ratio, full load |")
        out.append("|---|---|---|---|")
        for mode, full, fixed, q in ratio_rows:
            out.append(f"| {ENCRYPTED_TEXT[mode]} | {fmt(full, 2)}x | {fmt(fixed, 2)}x | {fmt(q, 2)}x |")
        out.append("")

    # --- the soak: connections per query and memory, per protocol -------------
    soak = read_tsv(args.soak)
    flat_kib = 512
    soak_verdicts = {}
    if soak:
        secs = soak[0]["seconds"]
        rate = int(soak[0]["qps_target"])
        out.append(f"Steady load (`bench/upstream_soak.sh`): per protocol a fresh dnsgate, one "
                   f"resolver of that protocol, dnsperf at {rate:,} queries/s of allowed names for "
                   f"{secs} s; RSS from `/proc/PID/status` every second; *connects* from its stats "
                   f"line. Flat: RSS at the end at most {flat_kib} KiB above the sample at 10 s.")
        out.append("")
        out.append(f"| protocol | queries | lost | connects | handshakes / resumed | queries per connect "
                   f"| CPU µs/query at {rate:,} qps | RSS KiB start / 10 s / end / max | verdict |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for r in soak:
            if r["status"] != "ok":
                out.append(f"| {r['protocol']} | **SKIPPED**: {r['reason']} | | | | | | | |")
                soak_verdicts[r["protocol"]] = None
                continue
            try:
                queries, connects = int(r["queries"]), int(r["connects"])
            except ValueError:
                queries, connects = 0, -1
            growth = int(r["rss_end"]) - int(r["rss_10s"])
            problems = []
            if r["lost"] != "0":
                problems.append(f"{r['lost']} lost")
            if connects < 0:
                problems.append("no stats line")
            elif connects * 10000 > max(queries, 1):
                problems.append("more than 1 connect per 10,000 queries")
            if growth > flat_kib:
                problems.append(f"RSS +{growth} KiB after 10 s")
            soak_verdicts[r["protocol"]] = (connects, queries, growth, not problems)
            per = f"{queries / connects:,.0f}" if connects > 0 else "— (none opened)"
            out.append(f"| {r['protocol']} | {queries:,} | {r['lost']} | {r['connects']} "
                       f"| {r['handshakes']} / {r['resumed']} | {per} | {r['cpu_us']} "
                       f"| {r['rss_start']} / {r['rss_10s']} / {r['rss_end']} / {r['rss_max']} "
                       f"| {'ok' if not problems else '**' + '; '.join(problems) + '**'} |")
        out.append("")

    # --- issue 9's targets --------------------------------------------------------
    def verdict(ok):
        if ok is None:
            return "n/a"
        return "**met**" if ok else "**not met**"

    rows = []
    for mode, full, fixed, _ in ratio_rows:
        g, d = table[(mode, "dnsgate")], table[(mode, "dnsdist")]
        rows.append((f"{mode}: CPU per query ≤ dnsdist's, full load",
                     f"{fmt(g['cpu_med'], 1)} vs {fmt(d['cpu_med'], 1)} µs ({fmt(full, 2)}x)",
                     None if full is None else full <= 1.0))
        rows.append((f"{mode}: CPU per query ≤ dnsdist's, at {args.latency_qps:,} qps",
                     f"{fmt(g['lat_cpu'], 1)} vs {fmt(d['lat_cpu'], 1)} µs ({fmt(fixed, 2)}x)",
                     None if fixed is None else fixed <= 1.0))
    for mode in modes:
        g = table.get((mode, "dnsgate"))
        if g and g["n"]:
            rows.append((f"{mode}: 0 lost (dnsgate, every throughput run)", f"{g['lost']}", g["lost"] == 0))
    for mode in modes:
        if (mode, "dnsgate") in table and table[(mode, "dnsgate")]["n"]:
            if mode == "doq":
                g = table[(mode, "dnsgate")]
                rows.append(("doq: CPU per query and qps (dnsgate alone)",
                             f"{fmt(g['cpu_med'], 1)} µs at {fmt(g['qps_med'])} qps (full load); "
                             f"{fmt(g['lat_cpu'], 1)} µs at {args.latency_qps:,} qps", None))
        else:
            rows.append((f"{mode}: measured", "skipped (see above)", False))
    for proto, v in soak_verdicts.items():
        if v is None:
            rows.append((f"{proto}: connections and memory at steady load", "skipped (see above)", None))
            continue
        connects, queries, growth, ok = v
        rows.append((f"{proto}: ≤ 1 connection opened per 10,000 queries, steady load",
                     f"{connects} for {queries:,} queries", connects * 10000 <= max(queries, 1)))
        rows.append((f"{proto}: RSS flat over the steady run", f"{growth:+,} KiB from 10 s to the end",
                     growth <= flat_kib))
    if rows:
        out.append("Issue 9's targets, from this run:")
        out.append("")
        out.append("| target | measured | verdict |")
        out.append("|---|---|---|")
        for name, value, ok in rows:
            out.append(f"| {name} | {value} | {verdict(ok) if ok is not None else '—'} |")
        out.append("")
    hwm = {m: memory.get((m, "dnsgate")) for m in modes}
    hwm_text = ", ".join(f"{m} {max(v) / 1024:.1f} MiB" for m, v in hwm.items() if v)
    hwm_dd = ", ".join(f"{m} {max(memory[(m, 'dnsdist')]) / 1024:.1f} MiB" for m in modes
                       if memory.get((m, "dnsdist")))
    if hwm_text:
        out.append(f"Peak RSS (VmHWM) at full load: dnsgate {hwm_text}"
                   + (f"; dnsdist {hwm_dd}." if hwm_dd else "."))
    return out


def read_tsv_plain(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


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
    ap.add_argument("--targets", default=" ".join(TARGETS),
                    help="the Do53 modes' targets, skipped ones included, in run.sh's order")
    ap.add_argument("--load", default="")
    ap.add_argument("--started", default="")
    ap.add_argument("--commit", default="")
    ap.add_argument("--micro", default="")
    ap.add_argument("--alloc", default="")
    ap.add_argument("--doc", required=True)
    ap.add_argument("--write-doc", default="1")
    ap.add_argument("--encrypted-modes", default="")
    ap.add_argument("--tls-upstream", default="unbound")
    ap.add_argument("--latency-inflight-tls", type=int, default=1000)
    ap.add_argument("--soak", default="")
    ap.add_argument("--unbound-nodelay", default="0")
    args = ap.parse_args()
    work = args.work
    targets = args.targets.split()
    proxies = [t for t in targets if t != "knotd"]
    gates = [t for t in targets if t.startswith("dnsgate")]

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
            extra = {}
            try:  # columns added with the encrypted modes; absent from older work dirs
                wall = int(row.get("wall_ms") or 0) / 1000
                extra["upstream_pct"] = (100 * int(row["upstream_ticks"]) / args.ticks_per_second / wall
                                         if wall else None)
                extra["cpu0_busy"] = int(row["cpu0_busy"])
                extra["cpu1_busy"] = int(row["cpu1_busy"])
            except (KeyError, TypeError, ValueError):
                pass
            extra["conns"] = row.get("upstream_conns") or ""
            runs.setdefault((row["mode"], row["target"]), []).append(
                {"qps": qps, "cpu_us": ticks * per_query, "writer_us": writer * per_query,
                 "lost": row["lost"], "rcodes": row["rcodes"], **extra})

    def agg(mode, target):
        rs = runs.get((mode, target), [])
        qps = [r["qps"] for r in rs if r["qps"] == r["qps"]]
        cpu = [r["cpu_us"] for r in rs if r["cpu_us"] == r["cpu_us"]]
        writer = [r["writer_us"] for r in rs if r["writer_us"] == r["writer_us"]]
        return {
            "n": len(rs),
            "lat_cpu": median_or_none(lat_cpu.get((mode, target), [])),
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

    lat_cpu = latency_cpu_us(args)

    # --- latency ----------------------------------------------------------------
    encrypted = [m for m in args.encrypted_modes.split() if m in ENCRYPTED_MODES]
    latency = {}
    for mode in MODES + encrypted:
        for target in targets if mode in MODES else ENCRYPTED_TARGETS[mode]:
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
        f"{args.rounds} rounds; in each, for each mode, the {len(targets)} targets in an order "
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
               "direct in the same mode."
               + (" The floor relay (`bench/floor_relay.cpp`) is the least a UDP forwarder does: "
                  "recvmmsg/sendmmsg with dnsgate's batch sizes and a query-id map; no parsing, no "
                  "policy, no events. It forwards every query in every mode (knotd refuses the "
                  "denied names), so it is the floor of the forward path: the allowed mode is the "
                  "like-for-like one." if "floor" in targets else "")
               + (" dnsgate runs once per I/O backend (`io:` in its config)"
                  + ("; with every backend skipped (see below), *dnsgate* is one without the `io` "
                     "key." if "dnsgate" in gates else ".")
                  if len(gates) > 1 else ""))
    out.append("")
    out.extend(skipped_lines(args, MODES))
    out.append("| mode | target | qps median (min–max) | CPU µs/query | p50 µs | p99 µs "
               "| added p50 µs | added p99 µs |")
    out.append("|---|---|---|---|---|---|---|---|")
    for mode in MODES:
        base = latency[(mode, "knotd")]
        for i, target in enumerate(targets):
            a = agg(mode, target)
            first = MODE_TEXT[mode] if i == 0 else ""
            if a["n"] == 0:
                out.append(f"| {first} | {label(target)} | not measured | | | | | |")
                continue
            lat = latency[(mode, target)]
            added50 = added99 = None
            if target != "knotd" and lat["p50"] is not None and base["p50"] is not None:
                added50 = lat["p50"] - base["p50"]
                added99 = lat["p99"] - base["p99"]
            cpu_cell = fmt(a["cpu_med"], 1)
            if target in gates and a["writer_med"] is not None:
                cpu_cell += f" (writer {fmt(a['writer_med'], 1)})"
            out.append(
                f"| {first} | {label(target)} "
                f"| {fmt(a['qps_med'])} ({fmt(a['qps_min'])}–{fmt(a['qps_max'])}) "
                f"| {cpu_cell} | {fmt(lat['p50'])} | {fmt(lat['p99'])} "
                f"| {fmt(added50) if target != 'knotd' else '—'} "
                f"| {fmt(added99) if target != 'knotd' else '—'} |")
    out.append("")

    # --- ratios and targets -----------------------------------------------------
    def times(value):
        return f"{fmt(value, 2)}x" if value is not None else "n/a"

    floor_text = (f"*÷ floor* is CPU per query over the floor relay's, at full load and at "
                  f"{args.latency_qps:,} qps (outside the allowed mode the floor still forwards "
                  "everything, so a proxy that refuses itself can come in under 1.00x); "
                  if "floor" in targets else "")
    out.append(f"Ratios, same runs: {floor_text}*÷ dnsdist* is CPU per query and qps over "
               "dnsdist's; *÷ knotd* is qps over knotd direct's.")
    out.append("")
    out.append(f"| mode | proxy | CPU ÷ floor, full load | CPU ÷ floor at {args.latency_qps:,} qps "
               "| CPU ÷ dnsdist | qps ÷ dnsdist | qps ÷ knotd |")
    out.append("|---|---|---|---|---|---|---|")
    ratios = {}  # (mode, target) -> (qps ÷ dnsdist, CPU ÷ dnsdist)
    for mode in MODES:
        f, d, k = agg(mode, "floor"), agg(mode, "dnsdist"), agg(mode, "knotd")
        for i, target in enumerate(proxies):
            a = agg(mode, target)
            ratios[(mode, target)] = (ratio(a["qps_med"], d["qps_med"]),
                                      ratio(a["cpu_med"], d["cpu_med"]))
            floor_cells = ("— | —" if target == "floor" else
                           f"{times(ratio(a['cpu_med'], f['cpu_med']))} "
                           f"| {times(ratio(a['lat_cpu'], f['lat_cpu']))}")
            dnsdist_cells = ("— | —" if target == "dnsdist" else
                             f"{times(ratios[(mode, target)][1])} | {times(ratios[(mode, target)][0])}")
            out.append(f"| {MODE_TEXT[mode] if i == 0 else ''} | {label(target)} | {floor_cells} "
                       f"| {dnsdist_cells} | {times(ratio(a['qps_med'], k['qps_med']))} |")
    out.append("")

    def verdict(ok):
        if ok is None:
            return "n/a"
        return "**met**" if ok else "**not met**"

    def added(mode, target, key):
        got, base = latency[(mode, target)][key], latency[(mode, "knotd")][key]
        return got - base if got is not None and base is not None else None

    rows = []
    for gate_target in gates:
        # With one dnsgate the rows read as before; with several, each says which.
        who = f" ({label(gate_target)})" if len(gates) > 1 else ""
        if not any(agg(mode, gate_target)["n"] for mode in MODES):
            rows.append((f"{label(gate_target)}: measured", "skipped (see above)", None))
            continue
        fwd_q, fwd_cpu = ratios[("allowed", gate_target)]
        ref_q, ref_cpu = ratios[("denied", gate_target)]
        add50 = added("allowed", gate_target, "p50")
        add99 = added("allowed", gate_target, "p99")
        hwm = max(memory.get(("mixed", gate_target), [0])) / 1024 or None
        rows += [
            (f"CPU per query ≤ 0.5x dnsdist, forward path{who}", times(fwd_cpu),
             None if fwd_cpu is None else fwd_cpu <= 0.5),
            (f"CPU per query ≤ 0.5x dnsdist, refuse path{who}", times(ref_cpu),
             None if ref_cpu is None else ref_cpu <= 0.5),
            (f"forward throughput ≥ 1.3x dnsdist{who}", times(fwd_q),
             None if fwd_q is None else fwd_q >= 1.3),
            (f"refuse throughput ≥ 1.0x dnsdist{who}", times(ref_q),
             None if ref_q is None else ref_q >= 1.0),
            (f"added latency p50 ≤ 15 µs at {args.latency_qps:,} qps (forward){who}",
             f"{fmt(add50)} µs", None if add50 is None else add50 <= 15),
            (f"added latency p99 ≤ 50 µs at {args.latency_qps:,} qps (forward){who}",
             f"{fmt(add99)} µs", None if add99 is None else add99 <= 50),
            (f"RSS < 20 MiB, 10,000-entry allowlist, full load (peak, VmHWM){who}",
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
        for target in targets:
            a = agg(mode, target)
            rss = memory.get((mode, target))
            rcodes = re.sub(r"\s*\([0-9.]+%\)", "", a["rcodes"]).strip()
            out.append(f"| {mode} | {label(target)} | {rcodes} | {a['lost']} "
                       f"| {fmt(max(rss) / 1024, 1) if rss else '—'} |")
    out.append("")
    total_received = sum(int(g["received"]) for g in gate if g["received"].isdigit())
    total_events = sum(int(g["events"]) for g in gate if g["events"].isdigit())
    total_dropped = sum(int(g["eventsDropped"]) for g in gate if g["eventsDropped"].isdigit())
    out.append(f"dnsgate's events file: {total_events:,} lines for {total_received:,} queries "
               f"received ({total_dropped:,} dropped, `eventsDropped`).")

    if encrypted:
        out.extend(encrypted_section(args, encrypted, runs, latency, gate, memory))

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
