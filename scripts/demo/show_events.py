"""Part of scripts/demo.sh: prints the events dnsgate wrote (one summary line
each, then the first one in full) and checks them, and the final stats line,
against the queries the demo sent. Exits 1 on any mismatch.

usage: show_events.py EVENTS.jsonl --stats JSON --expect "ACTION REASON QNAME RCODE" ...
       ('-' for a qname or rcode that must be absent / null)
"""

import argparse
import collections
import json
import sys


def load(path):
    events, problems = [], []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        return [], [f"cannot read the events file: {e}"]
    for n, line in enumerate(lines, 1):
        try:
            events.append(json.loads(line))
        except ValueError as e:
            problems.append(f"line {n} is not JSON ({e}): {line[:80]!r}")
    return events, problems


def summary(ev):
    d = ev.get("data", {})
    rcode = d.get("rcode") or "-"
    latency = d.get("latencyUs")
    latency = f"{latency / 1000:.1f} ms" if isinstance(latency, (int, float)) else "-"
    qname = d.get("qname") or f"({d.get('size', '?')} B: {d.get('malformedReason', 'unparsed')})"
    return (f"  {d.get('action', '?'):<10}{d.get('reasonCode', '?'):<18}{qname:<30}"
            f"{d.get('qtype') or '-':<6}{rcode:<10}{d.get('answerCount', '-')!s:<8}{latency:>10}")


def key(ev):
    d = ev.get("data", {})
    return (d.get("action"), d.get("reasonCode"), d.get("qname") or "-", d.get("rcode") or "-")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("events")
    ap.add_argument("--stats", default="")
    ap.add_argument("--expect", action="append", default=[])
    args = ap.parse_args()

    events, problems = load(args.events)
    print(f"  {'action':<10}{'reasonCode':<18}{'qname':<30}{'qtype':<6}{'rcode':<10}{'answers':<8}{'latency':>10}")
    for ev in events:
        print(summary(ev))
    if events:
        print("\n  the first event in full:")
        for line in json.dumps(events[0], indent=2).splitlines():
            print("  " + line)
    print()

    expected = collections.Counter(tuple(e.split()) for e in args.expect)
    got = collections.Counter(key(ev) for ev in events)
    if len(events) != len(args.expect):
        problems.append(f"{len(events)} events for {len(args.expect)} datagrams sent")
    for k in expected - got:
        problems.append("missing event: " + " ".join(k))
    for k in got - expected:
        problems.append("unexpected event: " + " ".join(map(str, k)))
    for ev in events:
        d = ev.get("data", {})
        if d.get("cell") != "demo" or "demo" not in str(ev.get("source", "")):
            problems.append(f"event {ev.get('id')} does not name the cell 'demo'")
        if d.get("qname") and ev.get("subject") != d.get("qname"):
            problems.append(f"event {ev.get('id')}: subject {ev.get('subject')!r} != qname {d.get('qname')!r}")

    try:
        stats = json.loads(args.stats)
    except ValueError:
        stats = None
        problems.append("no stats JSON line on dnsgate's stderr")
    if stats is not None:
        count = collections.Counter((k[0], k[1]) for k in got)
        want = {
            "received": len(events),
            "forwarded": count["forward", "allowed"] + count["servfail", "upstream_timeout"]
            + count["servfail", "upstream_error"],
            "relayed": count["forward", "allowed"],
            "refused": count["refuse", "not_allowlisted"],
            "malformed": count["drop", "malformed_query"],
            "servfailTimeout": count["servfail", "upstream_timeout"],
            "eventsDropped": 0,
        }
        for name, value in want.items():
            if stats.get(name) != value:
                problems.append(f"stats {name} is {stats.get(name)}, expected {value}")

    for p in problems:
        print(f"  FAIL: {p}")
    if not problems:
        print(f"  ok: {len(events)} events, one per datagram, and the stats agree")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
