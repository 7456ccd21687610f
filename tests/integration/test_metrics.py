"""The metrics endpoint (DESIGN.md §12, docs/metrics.md): `dnsgate run`
with `metrics: {listen: ...}` serves /metrics (checked by promtool and
scraped by a real Prometheus server), /healthz and /readyz; its counters
match the traffic sent; it is bounded against floods and stuck scrapers
and costs the DNS path nothing; it works under `run --seccomp`; a
supervised cell that asks for it is refused."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

import dns.rcode
import pytest

from dnsgate_testlib import (
    HERE, DnsGate, closed_udp_port, dnsgate_bin, endpoint, free_port, gate_factory, make_query, port_held_by,
    recv_until, run_cli, udp_socket,
)

ALLOW = ["example.com", "*.example.com", "*.example.org"]
PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
CONNECTION_LIMIT = 32  # docs/metrics.md "Limits"
IDLE_TIMEOUT = 5.0


class MetricsGate(DnsGate):
    """`dnsgate run` with a `metrics:` block on a free loopback port."""

    def __init__(self, workdir: Path, metrics_host: str = "127.0.0.1", **kwargs):
        super().__init__(workdir, **kwargs)
        self.metrics_host = metrics_host
        self.metrics_port = free_port(metrics_host, tcp_too=True)
        with open(self.config_path, "a") as f:
            f.write(f'metrics:\n  listen: "{endpoint(metrics_host, self.metrics_port)}"\n')

    def start(self) -> "MetricsGate":
        super().start()
        deadline = time.monotonic() + 10
        while not port_held_by(self.proc.pid, self.metrics_port, self.metrics_host, proto="tcp"):
            assert self.running(), f"dnsgate exited:\n{self.stderr()}"
            assert time.monotonic() < deadline, f"metrics port not listening within 10 s:\n{self.stderr()}"
            time.sleep(0.01)
        return self

    def get(self, path: str, method: str = "GET", timeout: float = 5.0) -> tuple[int, dict, str]:
        conn = http.client.HTTPConnection(self.metrics_host, self.metrics_port, timeout=timeout)
        try:
            conn.request(method, path)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
        finally:
            conn.close()

    def scrape(self) -> str:
        status, headers, body = self.get("/metrics")
        assert status == 200, (status, body)
        assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
        return body

    def wait_metric(self, name: str, want: float, labels: Optional[dict] = None, timeout: float = 3.0) -> dict:
        """Scrapes until `name{labels}` == want (the loop publishes once per turn)."""
        deadline = time.monotonic() + timeout
        while True:
            samples = parse(self.scrape())
            got = value(samples, name, labels)
            if got == want:
                return samples
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}{labels or ''} is {got}, want {want}:\n{dump(samples)}")
            time.sleep(0.02)


@pytest.fixture
def mgate(tmp_path):
    yield from gate_factory(tmp_path, cls=MetricsGate)


# ---------------------------------------------------------------- exposition parsing

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def parse(text: str) -> list[tuple[str, dict, float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = {k: v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                  for k, v in LABEL.findall(m.group(2) or "")}
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def value(samples, name: str, labels: Optional[dict] = None) -> Optional[float]:
    found = [v for n, ls, v in samples if n == name and all(ls.get(k) == w for k, w in (labels or {}).items())]
    assert len(found) <= 1, f"{name}{labels}: several samples {found}"
    return found[0] if found else None


def dump(samples) -> str:
    return "\n".join(f"{n}{ls} {v}" for n, ls, v in samples if not n.endswith("_bucket"))


def promtool_check(text: str) -> None:
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (
        f"promtool check metrics: rc {r.returncode}\n{r.stdout}\n{r.stderr}")


def ask_all(port: int, names: list[str], window: int = 50, timeout: float = 3.0) -> list:
    """Sends every query (at most `window` in flight on one socket) and
    returns the answers by id; every query must be answered."""
    sock = udp_socket()
    answers = {}
    try:
        sent = 0
        while sent < len(names):
            batch = names[sent:sent + window]
            for i, name in enumerate(batch):
                sock.sendto(make_query(name, "A", ident=sent + i).to_wire(), ("127.0.0.1", port))
            deadline = time.monotonic() + timeout
            want = set(range(sent, sent + len(batch)))
            while want:
                data = recv_until(sock, deadline)
                assert data is not None, f"{len(want)} queries of ids {sorted(want)[:5]}... unanswered"
                ident = int.from_bytes(data[:2], "big")
                want.discard(ident)
                answers[ident] = data
            sent += len(batch)
    finally:
        sock.close()
    return [answers[i] for i in range(len(names))]


def rcode_of(wire: bytes) -> int:
    return wire[3] & 0xF


# ---------------------------------------------------------------- counters and formats


def test_counters_match_the_traffic_and_promtool_accepts_the_scrape(mgate, knotd):
    gate = mgate(allowlist=ALLOW, upstream=knotd.address, cell="metrics-cell")
    allowed = ["www.example.com.", "example.com.", "api.example.org.", "multi.example.com.", "www.example.com."]
    refused = ["www.example.net.", "evil.test.", "example.org.evil."]
    answers = ask_all(gate.port, allowed + refused)
    gate.note_datagrams(len(allowed) + len(refused))
    assert [rcode_of(a) for a in answers] == [0] * len(allowed) + [dns.rcode.REFUSED] * len(refused)

    total = gate.probes + len(allowed) + len(refused)
    samples = gate.wait_metric("dnsgate_received_total", total)
    text = gate.scrape()
    promtool_check(text)
    samples = parse(text)
    assert all(ls.get("cell") == "metrics-cell" for _, ls, _ in samples), "a sample without the cell label"
    assert value(samples, "dnsgate_refused_total") == len(refused) + gate.probes
    assert value(samples, "dnsgate_forwarded_total") == len(allowed)
    assert value(samples, "dnsgate_relayed_total") == len(allowed)
    for name in ("dnsgate_malformed_total", "dnsgate_servfail_timeout_total", "dnsgate_servfail_error_total",
                 "dnsgate_events_dropped_total", "dnsgate_notimp_total", "dnsgate_overloaded_total"):
        assert value(samples, name) == 0, name
    assert value(samples, "dnsgate_dnssec_key_cache") == 0
    assert "dnsgate_dnssec_validation_seconds_count" not in text, "validation histogram with dnssec off"

    ups = {ls["upstream"] for n, ls, _ in samples if n == "dnsgate_upstream_queries_total"}
    assert len(ups) == 1 and knotd.address in next(iter(ups)), ups
    up = {"upstream": next(iter(ups))}
    assert value(samples, "dnsgate_upstream_queries_total", up) == len(allowed)
    assert value(samples, "dnsgate_upstream_answers_total", up) == len(allowed)
    assert value(samples, "dnsgate_upstream_failures_total", up) == 0
    assert value(samples, "dnsgate_upstream_up", up) == 1
    assert value(samples, "dnsgate_upstream_latency_seconds_count", up) == len(allowed)
    assert value(samples, "dnsgate_upstream_latency_seconds_bucket", {**up, "le": "+Inf"}) == len(allowed)
    assert 0 < value(samples, "dnsgate_upstream_latency_seconds_sum", up) < len(allowed) * 2.0
    buckets = [v for n, ls, v in samples if n == "dnsgate_upstream_latency_seconds_bucket"]
    assert buckets == sorted(buckets), "buckets are not cumulative"

    policy = [ls for n, ls, _ in samples if n == "dnsgate_policy_info"]
    assert len(policy) == 1 and re.fullmatch(r"[0-9a-f]{12}", policy[0]["policy_version"]), policy
    assert value(samples, "dnsgate_config_reloads_total", {"result": "applied"}) == 0
    assert value(samples, "dnsgate_config_reloads_total", {"result": "refused"}) == 0
    # Reported by a delivering sink (DESIGN §11); present, 0 with the file sink.
    for name in ("dnsgate_events_delivered_total", "dnsgate_events_spooled_total", "dnsgate_spool_bytes",
                 "dnsgate_events_retried_total", "dnsgate_events_rejected_total"):
        assert value(samples, name) == 0, name

    status, _, body = gate.get("/healthz")
    assert (status, body) == (200, "ok\n")
    status, _, body = gate.get("/readyz")
    assert status == 200, body
    assert gate.get("/nope")[0] == 404
    assert gate.get("/metrics", method="POST")[0] == 405
    status, headers, body = gate.get("/metrics", method="HEAD")
    assert status == 200 and body == "", (status, body)
    gate.events(len(allowed) + len(refused))


def test_served_over_ipv6(mgate, knotd):
    gate = mgate(allowlist=ALLOW, upstream=knotd.address, metrics_host="::1")
    gate.wait_metric("dnsgate_received_total", gate.probes)
    assert gate.get("/readyz")[0] == 200
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gate.metrics_port), timeout=1).close()


def test_validation_time_is_a_histogram_while_validating(mgate, knotd):
    # An anchor for a zone the names are not under: every answer is proven
    # insecure by the validator, with no fetch (docs/dnssec.md).
    anchor = "unrelated.test. DS 12345 13 2 " + "AB" * 32
    gate = mgate(allowlist=ALLOW, upstream=knotd.address, dnssec={"mode": "validate", "trustAnchors": [anchor]})
    answers = ask_all(gate.port, ["www.example.com.", "api.example.org.", "example.com."])
    gate.note_datagrams(3)
    assert [rcode_of(a) for a in answers] == [0, 0, 0]
    gate.wait_metric("dnsgate_dnssec_validation_seconds_count", 3)
    # The histogram is recorded as each answer is judged, the counters are
    # published at the end of the loop's turn: wait for both.
    samples = gate.wait_metric("dnsgate_dnssec_insecure_total", 3)
    assert value(samples, "dnsgate_dnssec_validation_seconds_count") == 3
    assert value(samples, "dnsgate_dnssec_validation_seconds_bucket", {"le": "+Inf"}) == 3
    assert value(samples, "dnsgate_dnssec_validation_seconds_sum") < 3.0
    promtool_check(gate.scrape())
    gate.events(3)


def test_a_real_prometheus_scrapes_it(mgate, knotd, tmp_path):
    gate = mgate(allowlist=ALLOW, upstream=knotd.address)
    answers = ask_all(gate.port, ["www.example.com."] * 4 + ["blocked.test."] * 3)
    gate.note_datagrams(len(answers))
    received = gate.probes + len(answers)
    gate.wait_metric("dnsgate_received_total", received)

    web_port = free_port(tcp_too=True)
    conf = tmp_path / "prometheus.yml"
    conf.write_text(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: dnsgate
    static_configs:
      - targets: ["127.0.0.1:{gate.metrics_port}"]
""")
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={conf}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{web_port}", "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    try:
        query = urllib.parse.urlencode({"query": 'dnsgate_received_total{job="dnsgate"}'})
        url = f"http://127.0.0.1:{web_port}/api/v1/query?{query}"
        deadline = time.monotonic() + 15
        result = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"prometheus exited:\n{(tmp_path / 'prometheus.log').read_text()}"
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    body = json.load(r)
                result = body["data"]["result"]
                if result:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert result, f"prometheus has no dnsgate_received_total:\n{(tmp_path / 'prometheus.log').read_text()}"
        assert float(result[0]["value"][1]) == received, result
        assert result[0]["metric"]["cell"] == gate.cell, result
        targets = f"http://127.0.0.1:{web_port}/api/v1/targets"
        with urllib.request.urlopen(targets, timeout=2) as r:
            active = json.load(r)["data"]["activeTargets"]
        assert [t["health"] for t in active] == ["up"], active
        assert all(not t["lastError"] for t in active), active
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# ---------------------------------------------------------------- health and readiness


def test_readyz_fails_when_the_only_resolver_is_down(mgate):
    dead = f"127.0.0.1:{closed_udp_port()}"
    gate = mgate(allowlist=ALLOW, upstream=dead, timeout_ms=300)
    assert gate.get("/readyz")[0] == 200, "ready before any failure"
    answers = ask_all(gate.port, ["www.example.com."] * 3, window=1)
    gate.note_datagrams(3)
    assert [rcode_of(a) for a in answers] == [dns.rcode.SERVFAIL] * 3
    samples = gate.wait_metric("dnsgate_upstream_up", 0)
    assert value(samples, "dnsgate_upstream_times_down_total") >= 1
    assert value(samples, "dnsgate_upstream_failures_total") >= 1
    status, _, body = gate.get("/readyz")
    assert status == 503 and "no resolver" in body, (status, body)
    assert value(parse(gate.scrape()), "dnsgate_ready") == 0
    # The loop itself still turns: alive, just not ready.
    status, _, body = gate.get("/healthz")
    assert (status, body) == (200, "ok\n")
    gate.events(3)


def test_metrics_port_in_use_is_a_clear_start_failure(tmp_path, knotd):
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        gate = DnsGate(tmp_path / "g", allowlist=ALLOW, upstream=knotd.address)
        with open(gate.config_path, "a") as f:
            f.write(f"metrics:\n  listen: 127.0.0.1:{port}\n")
        r = subprocess.run([dnsgate_bin(), "run", "--config", str(gate.config_path)], capture_output=True,
                           text=True, timeout=10, stdin=subprocess.DEVNULL)
        assert r.returncode == 1, r  # a run-time failure (docs/cli.md)
        assert re.search(rf"metrics: .*127\.0\.0\.1:{port}: Address already in use", r.stderr), r.stderr
    finally:
        taken.close()


def test_reloads_are_counted_and_the_policy_version_follows(mgate, knotd):
    gate = mgate(allowlist=ALLOW, upstream=knotd.address)
    samples = parse(gate.scrape())
    (first,) = [ls["policy_version"] for n, ls, _ in samples if n == "dnsgate_policy_info"]
    # A longer allowlist is applied: counted, and the version follows it.
    base = gate.config_path.read_text()
    gate.config_path.write_text(base.replace("  hostnameAllowlist:\n", '  hostnameAllowlist:\n    - "www.example.net"\n'))
    assert gate.config_path.read_text() != base, "the test did not change the allowlist"
    gate.proc.send_signal(signal.SIGHUP)
    samples = gate.wait_metric("dnsgate_config_reloads_total", 1, {"result": "applied"})
    (second,) = [ls["policy_version"] for n, ls, _ in samples if n == "dnsgate_policy_info"]
    assert second != first and re.fullmatch(r"[0-9a-f]{12}", second), (first, second)
    # Moving the endpoint needs a restart: refused, counted, still served where it was.
    changed = gate.config_path.read_text().replace(f"127.0.0.1:{gate.metrics_port}", f"127.0.0.1:{free_port()}")
    gate.config_path.write_text(changed)
    gate.proc.send_signal(signal.SIGHUP)
    samples = gate.wait_metric("dnsgate_config_reloads_total", 1, {"result": "refused"})
    assert value(samples, "dnsgate_config_reloads_total", {"result": "applied"}) == 1
    assert [ls["policy_version"] for n, ls, _ in samples if n == "dnsgate_policy_info"] == [second]
    assert gate.running()
    assert gate.get("/healthz")[0] == 200


# ---------------------------------------------------------------- bounds


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_many_connections_are_bounded_and_dns_keeps_answering(mgate, knotd):
    gate = mgate(allowlist=ALLOW, upstream=knotd.address)
    before = open_fds(gate.proc.pid)
    conns = []
    try:
        for _ in range(200):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(2)
            s.connect(("127.0.0.1", gate.metrics_port))
            conns.append(s)
        time.sleep(0.3)
        held = open_fds(gate.proc.pid) - before
        assert held <= CONNECTION_LIMIT + 2, f"{held} descriptors for 200 idle connections"
        answers = ask_all(gate.port, ["www.example.com."] * 50 + ["no.test."] * 10)
        gate.note_datagrams(60)
        assert [rcode_of(a) for a in answers] == [0] * 50 + [dns.rcode.REFUSED] * 10
    finally:
        for s in conns:
            s.close()
    # Once the flood is gone the endpoint serves again.
    deadline = time.monotonic() + 5
    while True:
        try:
            if gate.get("/metrics", timeout=1)[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "no scrape served within 5 s of the flood closing"
        time.sleep(0.05)
    gate.wait_metric("dnsgate_received_total", gate.probes + 60)
    gate.events(60)


def test_a_stuck_scraper_blocks_nobody_and_is_dropped(mgate, knotd):
    gate = mgate(allowlist=ALLOW, upstream=knotd.address)
    stuck = socket.create_connection(("127.0.0.1", gate.metrics_port), timeout=2)
    try:
        stuck.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Half")
        t0 = time.monotonic()
        for _ in range(20):
            gate.scrape()
        assert time.monotonic() - t0 < 2.0, "scrapes were slowed by a stuck one"
        # The idle timeout closes it: the server sends nothing but the close.
        stuck.settimeout(IDLE_TIMEOUT + 3)
        t1 = time.monotonic()
        try:
            data = stuck.recv(4096)
        except ConnectionResetError:
            data = b""
        assert data == b"" or b"HTTP/1.1 4" in data, data
        assert time.monotonic() - t1 < IDLE_TIMEOUT + 2.5, "the stuck scraper was never dropped"
    finally:
        stuck.close()


def test_scrapes_under_load_lose_no_query(mgate, knotd):
    gate = mgate(allowlist=ALLOW, upstream=knotd.address)
    stop = threading.Event()
    seen = [[], []]  # received_total per scrape, per scraper thread
    errors = []

    def scraper(mine: list):
        while not stop.is_set():
            try:
                text = gate.scrape()
                mine.append(value(parse(text), "dnsgate_received_total"))
            except Exception as e:  # noqa: BLE001 -- reported by the test below
                errors.append(repr(e))
                return

    threads = [threading.Thread(target=scraper, args=(mine,)) for mine in seen]
    for t in threads:
        t.start()
    try:
        names = ["www.example.com.", "api.example.org.", "denied.test."] * 2000
        answers = ask_all(gate.port, names, window=100)
        gate.note_datagrams(len(names))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not errors, errors
    assert sum(len(mine) for mine in seen) >= 10, f"only {seen} scrapes during the load"
    for mine in seen:
        assert mine == sorted(mine), f"a counter went backwards between scrapes: {mine}"
    want = [0, 0, dns.rcode.REFUSED] * 2000
    assert [rcode_of(a) for a in answers] == want
    total = gate.probes + len(names)
    samples = gate.wait_metric("dnsgate_received_total", total)
    assert value(samples, "dnsgate_forwarded_total") == 4000
    assert value(samples, "dnsgate_refused_total") == 2000 + gate.probes
    assert value(samples, "dnsgate_events_dropped_total") == 0
    # Every query has its event in the file, none twice.
    events = gate.events(len(names), timeout=5)
    assert len({e["id"] for e in events}) == len(names)


# ---------------------------------------------------------------- seccomp and the supervisor


def test_run_seccomp_serves_metrics(mgate, knotd, monkeypatch):
    real = os.environ.get("DNSGATE_REAL_BIN") or dnsgate_bin()
    monkeypatch.setenv("DNSGATE_REAL_BIN", real)
    monkeypatch.setenv("DNSGATE_BIN", str(HERE / "seccomp_run.sh"))
    if "ASAN_OPTIONS" in os.environ:
        # Under scripts/sanitize-test.sh: LeakSanitizer's exit-time check
        # needs ptrace, which no seccomp allow-list has; every other check stays.
        monkeypatch.setenv("ASAN_OPTIONS", os.environ["ASAN_OPTIONS"] + ":detect_leaks=0")
    gate = mgate(allowlist=ALLOW, upstream=knotd.address)
    assert "seccomp: confined" in gate.stderr(), gate.stderr()
    answers = ask_all(gate.port, ["www.example.com."] * 5)
    gate.note_datagrams(5)
    assert [rcode_of(a) for a in answers] == [0] * 5
    samples = gate.wait_metric("dnsgate_received_total", gate.probes + 5)
    promtool_check(gate.scrape())
    assert value(samples, "dnsgate_forwarded_total") == 5
    assert gate.get("/healthz")[0] == 200
    assert gate.get("/readyz")[0] == 200
    assert gate.get("/x")[0] == 404
    assert gate.get("/metrics", method="POST")[0] == 405
    conns = [socket.create_connection(("127.0.0.1", gate.metrics_port), timeout=2) for _ in range(40)]
    for s in conns:
        s.close()
    half = socket.create_connection(("127.0.0.1", gate.metrics_port), timeout=2)
    half.sendall(b"GET /met")
    half.close()
    time.sleep(0.2)
    assert gate.running(), f"dnsgate died under seccomp:\n{gate.stderr()}"
    assert gate.get("/metrics")[0] == 200
    # The server's thread may first run after the filter is installed (it
    # names itself then): a few more starts to meet that race.
    for _ in range(6):
        more = mgate(allowlist=ALLOW, upstream=knotd.address)
        assert more.get("/healthz")[0] == 200
        more.stop()


def test_supervised_cell_with_metrics_is_refused(tmp_path):
    from netns_lib import Supervisor, cell_text

    cells = tmp_path / "cells"
    cells.mkdir()
    text = cell_text(name="m", netns=f"dg-metrics-{os.getpid()}", port=5353, allowlist=ALLOW,
                     upstream="127.0.0.1:53", events_path=tmp_path / "m.jsonl")
    (cells / "m.yaml").write_text(text + "metrics:\n  listen: 127.0.0.1:9153\n")
    sup = Supervisor(tmp_path / "sup", cells).start()
    try:
        reason = sup.wait_for("m", "refused")[0].line
        assert "metrics: is not supported in a supervised cell yet" in reason, reason
        assert "m.yaml" in reason, reason
        assert sup.pids("m") == [], "a proxy was started for a cell with metrics:"
        sup.stop()
    finally:
        sup.kill()
    # `dnsgate check` still accepts the file: only the supervisor refuses it.
    r = run_cli(["check", "--config", str(cells / "m.yaml")])
    assert r.returncode == 0, r
