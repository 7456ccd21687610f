"""The command line: check, version, run, exit codes, signals, the stats
line and the events sinks (DESIGN.md §3, §4, §5 sinks, "Shutdown")."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import dns.rcode
import pytest

from dnsgate_testlib import (
    REPO, STATS_KEYS, ABSENT, check_event, expect_stats, free_port, make_query, parse_stats,
    raw_query, recv_until, render_config, run_cli, silent, answer_after, validate_with_sdk,
)
from tls_peers import tls_certs  # noqa: F401 (a fixture)

ERROR_LINE = re.compile(r"^dnsgate: (?P<file>.+?):(?P<line>\d+): (?P<field>[^\s:]+): (?P<msg>.+)$")


def good_config(tmp_path: Path, **kw) -> str:
    args = dict(cell="clitest", listen_port=free_port(), allowlist=["example.com", "*.example.org"],
                upstream="127.0.0.1:5300", events_path=tmp_path / "events.jsonl")
    args.update(kw)
    return render_config(**args)


def write(tmp_path: Path, text: str, name: str = "dnsgate.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# ------------------------------------------------------------ check


def test_check_ok_prints_one_line(tmp_path):
    cfg = write(tmp_path, good_config(tmp_path))
    r = run_cli(["check", "--config", str(cfg)])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected one summary line, got {r.stdout!r}"
    assert "clitest" in lines[0], "the summary should name the cell"


def test_check_prints_each_resolver(tmp_path, tls_certs):
    """`check` names every resolver with the URI events will carry and how
    its certificate is checked (DESIGN.md §8)."""
    ca = tls_certs.ca
    pin = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    cfg = write(tmp_path, good_config(tmp_path, resolvers=[
        {"protocol": "dot", "address": "127.0.0.1:8853", "tlsServerName": "dns.test",
         "caFile": str(ca), "spkiPins": [pin]},
        {"protocol": "doh", "url": "https://dns.test:8443/dns-query", "address": "127.0.0.1:8443"},
        {"protocol": "doq", "address": "127.0.0.1"},
        {"protocol": "do53-tcp", "address": "127.0.0.1:5300"},
    ], resolver_policy="roundRobin"))
    r = run_cli(["check", "--config", str(cfg)])
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert "upstream roundRobin of 4:" in line, line
    assert f"[0] dot dot://127.0.0.1:8853 (tlsServerName dns.test, caFile {ca}, 1 pin)" in line, line
    assert ("[1] doh https://dns.test:8443/dns-query (via 127.0.0.1:8443, tlsServerName dns.test, "
            "system CAs)") in line, line
    assert "[2] doq doq://127.0.0.1:853 (certificate must name the IP, system CAs)" in line, line
    assert "[3] do53-tcp 127.0.0.1:5300" in line, line


def test_check_refuses_a_ca_file_without_a_certificate(tmp_path):
    """The YAML is fine, but the CA file holds no PEM certificate: `check`
    and `run` say so before anything starts, naming the resolver."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    cfg = write(tmp_path, good_config(tmp_path, resolvers=[
        {"protocol": "dot", "address": "127.0.0.1:8853", "caFile": str(ca)}]))
    for command in ("check", "run"):
        r = run_cli([command, "--config", str(cfg)])
        assert r.returncode == 2, r.stderr
        assert "dnsAuthority.resolvers[0]" in r.stderr and "holds no PEM certificate" in r.stderr, r.stderr


def test_check_accepts_json(tmp_path):
    port = free_port()
    cfg = {
        "cell": "jsoncell",
        "listen": {"udp": f"127.0.0.1:{port}"},
        "dnsAuthority": {"hostnameAllowlist": ["example.com"],
                         "resolvers": [{"protocol": "do53-udp", "address": "127.0.0.1:5300"}]},
        "upstreamTimeoutMs": 1500, "maxInflight": 65535, "denyRcode": "NXDOMAIN",
        "events": {"sink": "stdout"},
    }
    p = write(tmp_path, json.dumps(cfg, indent=2), "dnsgate.json")
    r = run_cli(["check", "--config", str(p)])
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 1


def test_check_accepts_limits_at_their_bounds(tmp_path):
    for timeout, inflight in ((1, 1), (60000, 65535)):
        cfg = write(tmp_path, good_config(tmp_path, timeout_ms=timeout, max_inflight=inflight))
        r = run_cli(["check", "--config", str(cfg)])
        assert r.returncode == 0, f"timeout {timeout} maxInflight {inflight}: {r.stderr}"


# Each bad config: its lines (">>" marks the line the error must name, or
# none when any line is fine) and the field path the error must name.
BAD = {
    "unknown_top_level_field": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
>>upstreamTimeotMs: 500
""", "upstreamTimeotMs"),
    "unknown_nested_field": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
>>  hostnameAllowList: [example.com]
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
""", "dnsAuthority.hostnameAllowList"),
    "unknown_resolver_field": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
>>      weight: 3
""", "dnsAuthority.resolvers[0].weight"),
    "wildcard_in_the_middle": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist:
    - example.com
    - "*.example.org"
>>    - a.*.com
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
""", "dnsAuthority.hostnameAllowlist[2]"),
    "partial_wildcard": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist:
    - example.com
>>    - "*foo.com"
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
""", "dnsAuthority.hostnameAllowlist[1]"),
    "bare_star": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist:
>>    - "*"
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
""", "dnsAuthority.hostnameAllowlist[0]"),
    "empty_label": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist:
    - example.com
    - ok.example.com
    - more.example.com
>>    - a..example.com
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
""", "dnsAuthority.hostnameAllowlist[3]"),
    "label_too_long": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist:
>>    - %s.example.com
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
""" % ("a" * 64), "dnsAuthority.hostnameAllowlist[0]"),
    "bad_byte_in_entry": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist:
    - example.com
>>    - "exa mple.com"
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
""", "dnsAuthority.hostnameAllowlist[1]"),
    "listen_tcp_not_an_address": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
>>  tcp: localhost:53
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
""", "listen.tcp"),
    "tcp_limit_out_of_range": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
tcp:
>>  maxConnections: 0
""", "tcp.maxConnections"),
    "dot_unreadable_ca": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: dot
      address: 127.0.0.1:853
>>      caFile: /nonexistent/ca.pem
""", "dnsAuthority.resolvers[0].caFile"),
    "same_resolver_twice": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
    - protocol: do53-udp
>>      address: 127.0.0.1:5300
""", "dnsAuthority.resolvers[1]"),
    "unknown_protocol": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
>>    - protocol: carrier-pigeon
      address: 127.0.0.1:853
""", "dnsAuthority.resolvers[0].protocol"),
    "bad_resolver_address": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
>>      address: 127.0.0.1
""", "dnsAuthority.resolvers[0].address"),
    "bad_listen_address": ("""
cell: t
listen:
>>  udp: localhost:99999
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
""", "listen.udp"),
    "timeout_zero": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
>>upstreamTimeoutMs: 0
""", "upstreamTimeoutMs"),
    "timeout_too_big": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
>>upstreamTimeoutMs: 60001
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
""", "upstreamTimeoutMs"),
    "timeout_not_a_number": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
>>upstreamTimeoutMs: soon
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
""", "upstreamTimeoutMs"),
    "inflight_zero": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
>>maxInflight: 0
""", "maxInflight"),
    "inflight_too_big": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
>>maxInflight: 65536
""", "maxInflight"),
    "deny_rcode_servfail": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
>>denyRcode: SERVFAIL
""", "denyRcode"),
    "unknown_sink": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
events:
>>  sink: syslog
""", "events.sink"),
    "unknown_events_field": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
events:
  sink: stdout
>>  colour: blue
""", "events.colour"),
}

# Errors about something missing or about a whole list: the field is named,
# the line may be the parent's.
BAD_LOOSE = {
    "no_resolver": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers: []
""", "dnsAuthority.resolvers"),
    "file_sink_without_path": ("""
cell: t
listen:
  udp: 127.0.0.1:PORT
dnsAuthority:
  hostnameAllowlist: [example.com]
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
events:
  sink: file
""", "events"),
}


def materialize(tmp_path: Path, text: str) -> tuple[Path, int]:
    lines = text.lstrip("\n").rstrip("\n").split("\n")
    marked = [i + 1 for i, line in enumerate(lines) if line.startswith(">>")]
    lines = [line[2:] if line.startswith(">>") else line for line in lines]
    body = "\n".join(lines).replace("PORT", str(free_port())) + "\n"
    return write(tmp_path, body), (marked[0] if marked else 0)


def assert_config_error(r: subprocess.CompletedProcess, path: Path, field_prefix: str, line: int, exact=True):
    assert r.returncode == 2, f"exit {r.returncode}, expected 2; stderr: {r.stderr}"
    errors = [m for m in (ERROR_LINE.match(x) for x in r.stderr.splitlines()) if m]
    assert errors, f"no 'dnsgate: <file>:<line>: <field>: message' line on stderr: {r.stderr!r}"
    m = errors[0]
    assert m["file"] in (str(path), path.name), r.stderr
    if exact:
        assert m["field"] == field_prefix, f"field {m['field']!r}, expected {field_prefix!r}: {r.stderr}"
    else:
        assert m["field"].startswith(field_prefix), f"field {m['field']!r}, expected {field_prefix}...: {r.stderr}"
    if line:
        assert int(m["line"]) == line, f"line {m['line']}, expected {line}: {r.stderr}"


@pytest.mark.parametrize("case", list(BAD))
def test_check_rejects_bad_config(tmp_path, case):
    text, field = BAD[case]
    path, line = materialize(tmp_path, text)
    assert line, "test bug: no marked line"
    r = run_cli(["check", "--config", str(path)])
    assert_config_error(r, path, field, line)
    assert r.stdout == "", "nothing on stdout for a bad config"


@pytest.mark.parametrize("case", list(BAD_LOOSE))
def test_check_rejects_bad_config_loose_line(tmp_path, case):
    text, field = BAD_LOOSE[case]
    path, _ = materialize(tmp_path, text)
    r = run_cli(["check", "--config", str(path)])
    assert_config_error(r, path, field, 0, exact=False)


def test_check_rejects_yaml_syntax_error(tmp_path):
    path = write(tmp_path, "cell: t\nlisten:\n  udp: [127.0.0.1:53\ndnsAuthority: {\n")
    r = run_cli(["check", "--config", str(path)])
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("dnsgate: ") and str(path.name) in r.stderr, r.stderr


def test_check_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    r = run_cli(["check", "--config", str(path)])
    assert r.returncode == 2, r.stderr
    assert "nope.yaml" in r.stderr


def test_run_with_bad_config_exits_2(tmp_path):
    text, field = BAD["wildcard_in_the_middle"]
    path, line = materialize(tmp_path, text)
    r = run_cli(["run", "--config", str(path)], timeout=10)
    assert_config_error(r, path, field, line)


@pytest.mark.parametrize("args", [[], ["run"], ["check"], ["frobnicate"], ["run", "--config"],
                                  ["run", "--bogus-flag", "x"]])
def test_bad_usage_exits_2(args):
    r = run_cli(args)
    assert r.returncode == 2, f"{args}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"


def test_version():
    r = run_cli(["version"])
    assert r.returncode == 0, r.stderr
    m = re.search(r"project\(dnsgate VERSION ([0-9.]+)", (REPO / "CMakeLists.txt").read_text())
    assert m, "test bug: project version not found in CMakeLists.txt"
    assert len(r.stdout.splitlines()) == 1 and m.group(1) in r.stdout, r.stdout


# ------------------------------------------------------------ run: runtime failures


def test_port_in_use_exits_1(tmp_path):
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", 0))
    port = squatter.getsockname()[1]
    try:
        cfg = write(tmp_path, good_config(tmp_path, listen_port=port))
        r = run_cli(["run", "--config", str(cfg)], timeout=10)
    finally:
        squatter.close()
    assert r.returncode == 1, f"exit {r.returncode}: {r.stderr}"
    assert str(port) in r.stderr, "the error should say which address is taken"


def test_unwritable_events_file_exits_1(tmp_path):
    cfg = write(tmp_path, good_config(tmp_path, events_path=tmp_path / "no" / "such" / "dir" / "ev.jsonl"))
    r = run_cli(["run", "--config", str(cfg)], timeout=10)
    assert r.returncode == 1, f"exit {r.returncode}: {r.stderr}"
    assert "ev.jsonl" in r.stderr


# ------------------------------------------------------------ run: signals, stats, shutdown


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_promptly_with_matching_stats(dnsgate, knotd, sig):
    gate = dnsgate(allowlist=["www.example.com", "*.example.org"], upstream=knotd.address)
    for name in ("www.example.com.", "api.example.org."):
        r = gate.query(name, "A", ident=0x0101)
        assert r.response is not None and r.msg.rcode() == dns.rcode.NOERROR
    r = gate.query("denied.example.net.", "A", ident=0x0202)
    assert r.msg.rcode() == dns.rcode.REFUSED
    gate.exchange(b"\x00\x01\x02", timeout=0.2)  # malformed
    r = gate.exchange(raw_query([b"www", b"example", b"com"], flags=4 << 11, qtype=6), timeout=1)
    assert r.msg.rcode() == dns.rcode.NOTIMP
    gate.events(5)
    stats = gate.stop(sig=sig)
    assert gate.stop_seconds < 1.0, f"took {gate.stop_seconds:.2f} s to stop"
    expect_stats(stats, received=5 + gate.probes, forwarded=2, relayed=2, refused=1 + gate.probes,
                 malformed=1, notimp=1)


def test_idle_proxy_stops_within_a_second(dnsgate, upstream):
    gate = dnsgate(allowlist=["example.com"], upstream=upstream.address)
    time.sleep(0.3)
    stats = gate.stop()
    assert gate.stop_seconds < 1.0
    expect_stats(stats, received=gate.probes, refused=gate.probes)


def test_query_in_flight_at_shutdown_is_dropped_with_event(dnsgate, upstream):
    upstream.behaviour = silent
    gate = dnsgate(allowlist=["example.com"], upstream=upstream.address, timeout_ms=5000)
    s = gate.send(make_query("example.com.", "A", ident=0x5D5D).to_wire())
    try:
        assert len(upstream.wait_for(1)) == 1
        stats = gate.stop()
        assert gate.stop_seconds < 1.0, f"took {gate.stop_seconds:.2f} s to stop"
        assert recv_until(s, time.monotonic() + 0.2) is None, "a half-done query got an answer at shutdown"
    finally:
        s.close()
    expect_stats(stats, received=1 + gate.probes, refused=gate.probes, forwarded=1, droppedAtShutdown=1)
    (ev,) = gate.events(1)
    check_event(ev, action="drop", reasonCode="shutdown", rcode=None, qname="example.com", qtype="A",
                transactionId=0x5D5D, upstream=upstream.address, malformedReason=ABSENT)


def test_answer_within_shutdown_grace_is_relayed(dnsgate, upstream):
    upstream.behaviour = answer_after(0.08)
    gate = dnsgate(allowlist=["example.com"], upstream=upstream.address, timeout_ms=5000)
    s = gate.send(make_query("example.com.", "A", ident=0x6A6A).to_wire())
    try:
        assert len(upstream.wait_for(1)) == 1
        gate.send_signal(signal.SIGTERM)
        data = recv_until(s, time.monotonic() + 1.0)
        assert data is not None, "an answer arriving within the 200 ms grace was not relayed"
    finally:
        s.close()
    stats = gate.stop(sig=None)
    assert gate.stop_seconds < 1.0
    expect_stats(stats, received=1 + gate.probes, refused=gate.probes, forwarded=1, relayed=1)
    (ev,) = gate.events(1)
    check_event(ev, action="forward", reasonCode="allowed", rcode="NOERROR")


def test_stats_line_is_last_and_complete(dnsgate, upstream):
    gate = dnsgate(allowlist=["example.com"], upstream=upstream.address)
    gate.query("example.com.", "A")
    gate.events(1)
    gate.stop()
    last = [line for line in gate.stderr().splitlines() if line.strip()][-1]
    stats = json.loads(last)
    assert set(STATS_KEYS) <= set(stats), stats
    assert parse_stats(gate.stderr()) == stats


# ------------------------------------------------------------ events sinks


def test_file_sink_flushes_while_running(dnsgate, upstream):
    gate = dnsgate(allowlist=["example.com"], upstream=upstream.address)
    r = gate.query("example.com.", "A", ident=0x0F0F)
    assert r.response is not None
    start = time.monotonic()
    while len(gate.event_lines()) < gate.probes + 1 and time.monotonic() - start < 1.0:
        time.sleep(0.01)
    waited = time.monotonic() - start
    assert len(gate.event_lines()) == gate.probes + 1, "event not written within 1 s"
    assert waited < 0.3, f"event reached the file after {waited * 1000:.0f} ms (flush every 100 ms)"
    assert gate.running()


def test_stdout_sink_carries_only_events(dnsgate, knotd):
    gate = dnsgate(allowlist=["www.example.com"], upstream=knotd.address, sink="stdout")
    gate.query("www.example.com.", "A", ident=1)
    gate.query("nope.example.com.", "A", ident=2)
    gate.exchange(b"\xff" * 5, timeout=0.2)
    gate.stop()
    out = gate.stdout_path.read_text()
    lines = out.splitlines()
    assert len(lines) == 3 + gate.probes, out
    for line in lines:
        ev = json.loads(line)  # raises on anything that is not an event line
        assert ev["type"] == "dev.dnsgate.dns_query"
    validate_with_sdk(gate.stdout_path)
    actions = [json.loads(line)["data"]["action"] for line in lines][gate.probes:]
    assert actions == ["forward", "refuse", "drop"]
    assert "dnsgate" in gate.stderr(), "logs belong on stderr"


def test_events_validated_by_the_sdk_cover_every_kind(dnsgate, upstream, tmp_path):
    """One of each action in one file, fed to the SDK (a sanity check of the validator too)."""
    gate = dnsgate(allowlist=["example.com"], upstream=upstream.address, timeout_ms=200)
    gate.query("example.com.", "A")
    gate.query("denied.example.net.", "A")
    gate.exchange(b"", timeout=0.2)
    upstream.behaviour = silent
    gate.query("example.com.", "A", timeout=1)
    gate.events(4)
    validate_with_sdk(gate.events_path)
    bad = tmp_path / "bad.jsonl"
    line = gate.event_lines()[0]
    ev = json.loads(line)
    del ev["source"]
    bad.write_text(line + "\n" + json.dumps(ev) + "\n")
    with pytest.raises(AssertionError):
        validate_with_sdk(bad)


def test_crash_loses_nothing_already_flushed(dnsgate, upstream):
    """SIGKILL 300 ms after the last query: every event is in the file, whole lines only."""
    gate = dnsgate(allowlist=["example.com"], upstream=upstream.address)
    for i in range(5):
        gate.query("example.com.", "A", ident=i)
        gate.query("denied.example.net.", "A", ident=i)
    time.sleep(0.3)
    gate.proc.kill()
    gate.proc.wait(timeout=5)
    gate.returncode = gate.proc.returncode  # the fixture then checks the file as it was left
    assert gate.returncode == -signal.SIGKILL
    raw = gate.events_path.read_bytes()
    assert raw.endswith(b"\n"), "half a line left in the events file"
    assert len(gate.event_lines()) == 10 + gate.probes
