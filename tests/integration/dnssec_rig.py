"""The DNSSEC test rig (DESIGN.md §9): signed zones on two authoritative
knotd servers, a lying upstream in front of the first, and Unbound as the
oracle, all on 127.0.0.1, built at test time in a pytest tmp dir.

  knot1   knotd signing its own zones (dnssec-signing: on, ECDSAP256SHA256,
          keys made beforehand with keymgr so the parent's DS is known):
            dnssec.test.            NSEC, *.wild, secure child sub., unsigned child
            sub.dnssec.test.        NSEC, DS in dnssec.test.
            unsigned.dnssec.test.   unsigned, NS only in the parent (NSEC proves no DS)
            nsec3.test.             NSEC3, 0 iterations, no salt, *.wild, unsigned child
            unsigned.nsec3.test.    unsigned
            optout.test.            NSEC3 opt-out, unsigned child
            child.optout.test.      unsigned
            iter.test.              NSEC3, 200 iterations (RFC 9276: insecure, EDE 27)
            liar.test.              NSEC, reached through the liar (mutations)
            silent.test.            NSEC, reached through the mute liar (DNSKEY dropped)
  knot2   knotd serving zones signed by ldns-signzone, as they are:
            expired.test. future.test. tampered.test. nokey.test.
            wronganchor.test. ds.test. (+ badds.ds.test.) unknownalg.test.
            unknowndigest.test. rsasha1.test. sha1ds.test.
  liar    dnssec_liar.Liar -> knot1: strips RRSIGs, NSEC proofs, forges data and AD
  mute    dnssec_liar.Liar -> knot1: drops DNSKEY queries for silent.test.
  unbound 1.17, validator + iterator, the same trust anchors, stub zones to
          the servers above.

knotd answers a DS query at a child's apex from the parent zone when it
serves both (checked by the rig at start), so one knotd answers every name
a validator needs.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from dnsgate_testlib import free_port, make_query, udp_exchange
from dnssec_liar import DROP, Liar

KNOTD = "/usr/sbin/knotd"
KEYMGR = "/usr/sbin/keymgr"
LDNS_KEYGEN = "/usr/bin/ldns-keygen"
LDNS_SIGNZONE = "/usr/bin/ldns-signzone"
LDNS_KEY2DS = "/usr/bin/ldns-key2ds"
UNBOUND = "/usr/sbin/unbound"
TOOLS = [KNOTD, KEYMGR, LDNS_KEYGEN, LDNS_SIGNZONE, LDNS_KEY2DS, UNBOUND, "/usr/bin/kdig", "/usr/bin/dig"]


def check_tools() -> None:
    missing = [t for t in TOOLS if not os.access(t, os.X_OK)]
    assert not missing, (f"missing {missing}: install knot, knot-dnsutils, ldnsutils, unbound, bind9-dnsutils "
                         "(scripts/install-deps.sh)")


def run(cmd: list[str], cwd: Optional[Path] = None, timeout: float = 30) -> str:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def stop_process(proc: Optional[subprocess.Popen]) -> None:
    """SIGTERM to this PID, SIGKILL after 5 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def ask(port: int, qname: str, qtype: str = "A", *, do: bool = True, edns: bool = True, cd: bool = False,
        ad: bool = False, rd: bool = True, ident: int = 0x5EC5, timeout: float = 3.0) -> Optional[dns.message.Message]:
    """One UDP query to 127.0.0.1:port; the parsed answer or None."""
    q = make_query(qname, qtype, ident=ident, edns=edns or do, do=do, rd=rd, cd=cd)
    if ad:
        q.flags |= dns.flags.AD
    r = udp_exchange(port, q.to_wire(), timeout=timeout)
    return None if r.response is None else r.msg


def soa_zone(origin: str, body: str, ns_addr: str = "192.0.2.53") -> str:
    return (f"$ORIGIN {origin}\n$TTL 3600\n@ SOA ns1 hostmaster 1 7200 3600 1209600 3600\n"
            f"@ NS ns1\nns1 A {ns_addr}\n{body}")


def stamp(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y%m%d%H%M%S")


# ---------------------------------------------------------------- knotd


@dataclass
class KnotZone:
    domain: str  # with the trailing dot
    text: str  # zone file contents
    policy: Optional[str] = None  # a policy id, or None: served unsigned / as is


class AuthKnotd:
    """An authoritative knotd on 127.0.0.1:<port> serving `zones`; with
    `policies` (knot.conf policy items) it signs the zones that name one."""

    def __init__(self, workdir: Path, zones: list[KnotZone], policies: str = "", name: str = "knotd"):
        self.workdir = workdir
        self.zones = zones
        self.policies = policies
        self.name = name
        self.port = free_port(tcp_too=True)
        self.proc: Optional[subprocess.Popen] = None
        self.conf_path = workdir / "knot.conf"
        self.log_path = workdir / "knotd.log"
        for d in ("run", "db", "zones"):
            (workdir / d).mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self._conf())

    def _conf(self) -> str:
        zones = []
        for z in self.zones:
            zones.append(f"  - domain: {z.domain}\n    file: {z.domain}zone\n")
            if z.policy:
                zones.append(f"    dnssec-signing: on\n    dnssec-policy: {z.policy}\n")
        policy = f"policy:\n{self.policies}" if self.policies else ""
        return f"""server:
    rundir: "{self.workdir}/run"
    user: root:root
    listen: 127.0.0.1@{self.port}
    udp-workers: 2
    tcp-workers: 1
    background-workers: 1
    udp-max-payload: 4096
control:
    listen: "{self.workdir}/run/knot.sock"
database:
    storage: "{self.workdir}/db"
log:
  - target: stderr
    any: info
{policy}template:
  - id: default
    storage: "{self.workdir}/zones"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
{''.join(zones)}"""

    def keymgr(self, zone: str, *args: str) -> str:
        return run([KEYMGR, "-c", str(self.conf_path), zone, *args])

    def write_zone(self, zone: KnotZone) -> None:
        (self.workdir / "zones" / f"{zone.domain}zone").write_text(zone.text)

    def start(self) -> None:
        for z in self.zones:
            self.write_zone(z)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([KNOTD, "-c", str(self.conf_path)], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 15
        pending = [z.domain for z in self.zones]
        while pending:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{self.name}: zones {pending} not served within 15 s:\n{self.log()}")
            m = ask(self.port, pending[0], "SOA", timeout=0.2)
            # a signed zone must answer with its RRSIG: signing is done
            if m is not None and m.rcode() == dns.rcode.NOERROR and m.answer and m.flags & dns.flags.AA:
                signed = any(rr.rdtype == dns.rdatatype.RRSIG for rr in m.answer)
                z = next(z for z in self.zones if z.domain == pending[0])
                if signed or not z.policy:
                    pending.pop(0)
                    continue
            time.sleep(0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        stop_process(self.proc)


# ---------------------------------------------------------------- ldns


class Ldns:
    """Keys and signed zone files made with ldns-keygen / ldns-signzone in `workdir`."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)

    def keygen(self, zone: str, alg: str = "ECDSAP256SHA256", ksk: bool = True, bits: Optional[int] = None) -> str:
        """Returns the key's base name (K<zone>+alg+tag)."""
        cmd = [LDNS_KEYGEN, "-a", alg] + (["-k"] if ksk else []) + (["-b", str(bits)] if bits else []) + [zone]
        return run(cmd, cwd=self.workdir).strip()

    def dnskey(self, base: str) -> str:
        """The DNSKEY record of a key, presentation form, no comment."""
        text = (self.workdir / f"{base}.key").read_text()
        return " ".join(text.split(";")[0].split())

    def ds(self, base: str, digest: int = 2) -> str:
        """'zone. DS tag alg digest hex' from ldns-key2ds."""
        out = run([LDNS_KEY2DS, "-n", "-f", f"-{digest}", f"{base}.key"], cwd=self.workdir)
        fields = out.split()
        # owner ttl class DS tag alg digesttype digest
        i = fields.index("DS")
        return f"{fields[0]} DS {' '.join(fields[i + 1:])}"

    def sign(self, zone: str, text: str, keys: list[str], inception: Optional[float] = None,
             expiration: Optional[float] = None, extra: tuple = ()) -> list[str]:
        """Signs `text` with `keys`; returns the signed zone's lines (comments stripped)."""
        src = self.workdir / f"{zone}zone"
        dst = self.workdir / f"{zone}zone.signed.{len(keys)}"
        src.write_text(text)
        cmd = [LDNS_SIGNZONE, "-o", zone, "-f", str(dst)]
        if inception is not None:
            cmd += ["-i", stamp(inception)]
        if expiration is not None:
            cmd += ["-e", stamp(expiration)]
        cmd += list(extra) + [str(src)] + keys
        run(cmd, cwd=self.workdir)
        return [line.split(";")[0].rstrip() for line in dst.read_text().splitlines()
                if line.split(";")[0].strip()]


def rr_fields(line: str) -> tuple[str, str, str]:
    """(owner, type, rdata) of one ldns-signzone output line: owner ttl IN TYPE rdata."""
    f = line.split(None, 4)
    return f[0].lower(), f[3].upper(), f[4] if len(f) > 4 else ""


def is_rrset(line: str, owner: str, rtype: str) -> bool:
    """The line is an `rtype` record at `owner`, or an RRSIG over it."""
    o, t, rdata = rr_fields(line)
    if o != owner.lower():
        return False
    return t == rtype or (t == "RRSIG" and rdata.split()[0].upper() == rtype)


def tamper_rrsig(lines: list[str], owner: str, covered: str) -> list[str]:
    """Flips one bit in the signature of the RRSIG over owner/covered."""
    out, done = [], False
    for line in lines:
        o, t, rdata = rr_fields(line)
        if not done and o == owner and t == "RRSIG" and rdata.split()[0].upper() == covered:
            parts = rdata.split()
            raw = bytearray(base64.b64decode("".join(parts[8:])))
            raw[len(raw) // 2] ^= 0x01
            prefix = line[: line.index(rdata)]
            line = prefix + " ".join(parts[:8]) + " " + base64.b64encode(bytes(raw)).decode()
            done = True
        out.append(line)
    assert done, f"no RRSIG {covered} at {owner} to tamper with"
    return out


# ---------------------------------------------------------------- unbound


class Unbound:
    """The oracle: Unbound 1.17 validating (validator iterator) with the
    given trust anchors, stub zones to the rig's servers, EDE on."""

    def __init__(self, workdir: Path, anchors: list[str], stubs: dict[str, int]):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port(tcp_too=True)
        self.anchors = anchors
        self.stubs = stubs
        self.proc: Optional[subprocess.Popen] = None
        self.conf_path = workdir / "unbound.conf"
        self.log_path = workdir / "unbound.log"

    def _conf(self) -> str:
        anchors = "".join(f'    trust-anchor: "{a}"\n' for a in self.anchors)
        stubs = "".join(f'stub-zone:\n    name: "{z}"\n    stub-addr: 127.0.0.1@{p}\n    stub-first: no\n'
                        for z, p in self.stubs.items())
        return f"""server:
    interface: 127.0.0.1@{self.port}
    port: {self.port}
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "validator iterator"
    username: ""
    chroot: ""
    directory: "{self.workdir}"
    pidfile: "{self.workdir}/unbound.pid"
    use-syslog: no
    logfile: "{self.log_path}"
    verbosity: 1
    val-log-level: 2
    log-servfail: yes
    ede: yes
    num-threads: 1
    so-reuseport: no
    qname-minimisation: no
    target-fetch-policy: "0 0 0 0 0"
    harden-referral-path: no
    prefetch: no
    outgoing-range: 64
    infra-host-ttl: 60
    infra-keep-probing: yes
    infra-cache-max-rtt: 400
    val-bogus-ttl: 1
    local-zone: "test." nodefault
{anchors}remote-control:
    control-enable: no
{stubs}"""

    def start(self) -> None:
        self.conf_path.write_text(self._conf())
        r = subprocess.run([UNBOUND + "-checkconf", str(self.conf_path)], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, f"unbound-checkconf:\n{r.stdout}{r.stderr}\n{self.conf_path.read_text()}"
        err = open(self.workdir / "unbound.stderr", "wb")
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", str(self.conf_path)], stdout=err, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        err.close()
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"unbound exited with {self.proc.returncode}:\n{self.log()}")
            q = dns.message.make_query("version.bind.", "TXT", "CH")
            r = udp_exchange(self.port, q.to_wire(), timeout=0.2)
            if r.response is not None:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"unbound did not answer within 10 s:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        out = []
        for p in (self.log_path, self.workdir / "unbound.stderr"):
            try:
                out.append(p.read_text(errors="replace"))
            except FileNotFoundError:
                pass
        return "\n".join(out)

    def stop(self) -> None:
        stop_process(self.proc)


# ---------------------------------------------------------------- the rig


KNOT1_POLICIES = """  - id: nsec
    algorithm: ecdsap256sha256
    single-type-signing: on
    manual: on
  - id: nsec3
    algorithm: ecdsap256sha256
    single-type-signing: on
    manual: on
    nsec3: on
    nsec3-iterations: 0
    nsec3-salt-length: 0
  - id: optout
    algorithm: ecdsap256sha256
    single-type-signing: on
    manual: on
    nsec3: on
    nsec3-opt-out: on
    nsec3-iterations: 0
    nsec3-salt-length: 0
  - id: iter
    algorithm: ecdsap256sha256
    single-type-signing: on
    manual: on
    nsec3: on
    nsec3-iterations: 200
    nsec3-salt-length: 8
""" + "".join(f"""  - id: {alg}
    algorithm: {alg}
    single-type-signing: on
    manual: on
""" for alg in ("rsasha256", "ecdsap384sha384", "ed25519", "ed448"))

# the other algorithms dnsgate implements (DESIGN §9), one zone each
ALGORITHM_ZONES = {"alg8.test.": "rsasha256", "alg14.test.": "ecdsap384sha384", "alg15.test.": "ed25519",
                   "alg16.test.": "ed448"}
# the anchor of these zones is a DS of digest type 4 (SHA-384), the others' type 2
SHA384_ANCHORED = ["alg14.test."]

# knot1's anchored zones (each a trust anchor; the others hang below them)
KNOT1_ANCHORED = ["dnssec.test.", "nsec3.test.", "optout.test.", "iter.test.", "liar.test.", "silent.test.",
                  *ALGORITHM_ZONES]
# knot1's zones under no trust anchor: plain.test. unsigned, island.test. signed (an island of security)
KNOT1_UNANCHORED = ["plain.test.", "island.test."]
# knot2's anchored zones (badds.ds.test. hangs below ds.test.)
KNOT2_ANCHORED = ["expired.test.", "future.test.", "tampered.test.", "nokey.test.", "wronganchor.test.",
                  "ds.test.", "unknownalg.test.", "unknowndigest.test.", "rsasha1.test.", "sha1ds.test."]
# zones the liar rewrites and the one the mute liar starves of its DNSKEY
LIAR_ZONES = ["liar.test."]
MUTE_ZONES = ["silent.test."]

LIAR_RULES = {
    ("nosig.liar.test.", "A"): "strip_rrsigs",
    ("gone.liar.test.", "A"): "strip_denial",
    ("forged.liar.test.", "A"): "forge_address",
}
MUTE_RULES = {("silent.test.", "DNSKEY"): DROP}

FAKE_ALG = 12  # ECC-GOST: deprecated (RFC 8624), implemented by neither validator here
FAKE_DIGEST = 3  # GOST R 34.11-94: likewise


@dataclass
class Rig:
    workdir: Path
    knot1: Optional[AuthKnotd] = None
    knot2: Optional[AuthKnotd] = None
    liar: Optional[Liar] = None
    mute: Optional[Liar] = None
    unbound: Optional[Unbound] = None
    anchors: list[str] = field(default_factory=list)  # trust anchors, presentation form
    notes: list[str] = field(default_factory=list)  # what the rig found out at start

    # -- knot1: zones knotd signs itself
    def _build_knot1(self) -> None:
        zones = [
            KnotZone("dnssec.test.", soa_zone("dnssec.test.", "www A 192.0.2.10\n*.wild A 192.0.2.20\n"
                                                             "www TXT \"secure\"\n"
                                                             "sub NS ns1.sub\nns1.sub A 192.0.2.54\n"
                                                             "unsigned NS ns1.unsigned\nns1.unsigned A 192.0.2.55\n"),
                     "nsec"),
            KnotZone("sub.dnssec.test.", soa_zone("sub.dnssec.test.", "www A 192.0.2.30\n", "192.0.2.54"), "nsec"),
            KnotZone("unsigned.dnssec.test.", soa_zone("unsigned.dnssec.test.", "www A 192.0.2.40\n", "192.0.2.55")),
            KnotZone("nsec3.test.", soa_zone("nsec3.test.", "www A 192.0.2.50\n*.wild A 192.0.2.51\n"
                                                           "unsigned NS ns1.unsigned\nns1.unsigned A 192.0.2.57\n"),
                     "nsec3"),
            KnotZone("unsigned.nsec3.test.", soa_zone("unsigned.nsec3.test.", "www A 192.0.2.52\n", "192.0.2.57")),
            KnotZone("optout.test.", soa_zone("optout.test.", "www A 192.0.2.60\n"
                                                             "child NS ns1.child\nns1.child A 192.0.2.58\n"),
                     "optout"),
            KnotZone("child.optout.test.", soa_zone("child.optout.test.", "www A 192.0.2.61\n", "192.0.2.58")),
            KnotZone("iter.test.", soa_zone("iter.test.", "www A 192.0.2.70\n"), "iter"),
            KnotZone("liar.test.", soa_zone("liar.test.", "www A 192.0.2.80\nnosig A 192.0.2.81\n"
                                                         "forged A 192.0.2.82\n"), "nsec"),
            KnotZone("silent.test.", soa_zone("silent.test.", "www A 192.0.2.90\n"), "nsec"),
            KnotZone("plain.test.", soa_zone("plain.test.", "www A 192.0.2.91\n")),
            KnotZone("island.test.", soa_zone("island.test.", "www A 192.0.2.92\n"), "nsec"),
        ]
        zones += [KnotZone(z, soa_zone(z, "www A 192.0.2.93\n"), alg) for z, alg in ALGORITHM_ZONES.items()]
        knot = AuthKnotd(self.workdir / "knot1", zones, KNOT1_POLICIES, name="knot1")
        ds = {}
        for z in zones:
            if z.policy:
                alg = ALGORITHM_ZONES.get(z.domain, "ecdsap256sha256")
                size = ["size=2048"] if alg.startswith("rsa") else []
                knot.keymgr(z.domain, "generate", f"algorithm={alg}", "ksk=yes", "zsk=yes", *size)
                lines = [line for line in knot.keymgr(z.domain, "ds").splitlines() if " DS " in line]
                digest = "4" if z.domain in SHA384_ANCHORED else "2"
                mine = [line for line in lines if line.split()[4] == digest]
                assert len(mine) == 1, lines
                ds[z.domain] = " ".join(mine[0].split())
        # the secure delegation: sub.'s DS in dnssec.test.
        parent = zones[0]
        parent.text += ds["sub.dnssec.test."].replace("sub.dnssec.test.", "sub", 1) + "\n"
        knot.start()
        self.knot1 = knot
        for zone in KNOT1_ANCHORED:
            if zone == "nsec3.test.":
                # one anchor in DNSKEY form, from what knotd serves
                m = ask(knot.port, zone, "DNSKEY")
                keys = [rd for rr in m.answer if rr.rdtype == dns.rdatatype.DNSKEY for rd in rr]
                assert len(keys) == 1 and keys[0].flags == 257, m
                k = keys[0]
                b64 = base64.b64encode(k.key).decode()
                self.anchors.append(f"{zone} DNSKEY {k.flags} {k.protocol} {int(k.algorithm)} {b64}")
            else:
                self.anchors.append(ds[zone])
        self.knot1_ds = ds

    # -- knot2: zones signed by ldns-signzone, broken on purpose
    def _build_knot2(self) -> None:
        ldns = Ldns(self.workdir / "ldns")
        now = time.time()
        day = 86400.0
        zones: list[KnotZone] = []

        def simple(zone: str) -> str:
            return soa_zone(zone, "www A 192.0.2.100\n")

        def add(zone: str, lines: list[str]) -> None:
            zones.append(KnotZone(zone, "\n".join(lines) + "\n"))

        # expired: valid 60 to 30 days ago
        k = ldns.keygen("expired.test.")
        add("expired.test.", ldns.sign("expired.test.", simple("expired.test."), [k], now - 60 * day, now - 30 * day))
        self.anchors.append(ldns.ds(k))
        # not yet valid: from 30 days on
        k = ldns.keygen("future.test.")
        add("future.test.", ldns.sign("future.test.", simple("future.test."), [k], now + 30 * day, now + 60 * day))
        self.anchors.append(ldns.ds(k))
        # tampered: one bit of www's A RRSIG flipped
        k = ldns.keygen("tampered.test.")
        lines = ldns.sign("tampered.test.", simple("tampered.test."), [k], now - day, now + 30 * day)
        add("tampered.test.", tamper_rrsig(lines, "www.tampered.test.", "A"))
        self.anchors.append(ldns.ds(k))
        # nokey: the data is signed by a ZSK that is not in the DNSKEY RRset; the DNSKEY
        # RRset (KSK only) is validly self-signed and matches the anchor
        ksk = ldns.keygen("nokey.test.")
        zsk = ldns.keygen("nokey.test.", ksk=False)
        both = ldns.sign("nokey.test.", simple("nokey.test."), [ksk, zsk], now - day, now + 30 * day)
        ksk_only = ldns.sign("nokey.test.", simple("nokey.test."), [ksk], now - day, now + 30 * day)
        lines = [line for line in both if not is_rrset(line, "nokey.test.", "DNSKEY")]
        lines += [line for line in ksk_only if is_rrset(line, "nokey.test.", "DNSKEY")]
        assert any(rr_fields(line)[1] == "DNSKEY" for line in lines)
        add("nokey.test.", lines)
        self.anchors.append(ldns.ds(ksk))
        # wrong anchor: a correctly signed zone, anchored to a key that is not there
        k = ldns.keygen("wronganchor.test.")
        stray = ldns.keygen("wronganchor.test.")
        add("wronganchor.test.", ldns.sign("wronganchor.test.", simple("wronganchor.test."), [k],
                                           now - day, now + 30 * day))
        self.anchors.append(ldns.ds(stray))
        self.wrong_anchor_real_ds = ldns.ds(k)
        # ds.test.: a good parent whose DS for badds.ds.test. matches no key of the child
        kp = ldns.keygen("ds.test.")
        kc = ldns.keygen("badds.ds.test.")
        kx = ldns.keygen("badds.ds.test.")
        bad_ds = ldns.ds(kx).replace("badds.ds.test.", "badds", 1)
        parent = soa_zone("ds.test.", "www A 192.0.2.110\nbadds NS ns1.badds\nns1.badds A 192.0.2.111\n"
                                      f"{bad_ds}\n")
        add("ds.test.", ldns.sign("ds.test.", parent, [kp], now - day, now + 30 * day))
        add("badds.ds.test.", ldns.sign("badds.ds.test.", soa_zone("badds.ds.test.", "www A 192.0.2.112\n"), [kc],
                                        now - day, now + 30 * day))
        self.anchors.append(ldns.ds(kp))
        # unknown algorithm: DNSKEY and RRSIGs of algorithm 12, random bytes
        add("unknownalg.test.", fake_alg_zone("unknownalg.test.", now))
        self.anchors.append(self._fake_anchor)
        # unknown digest: a good zone, anchored by a DS of digest type 3 only
        k = ldns.keygen("unknowndigest.test.")
        add("unknowndigest.test.", ldns.sign("unknowndigest.test.", simple("unknowndigest.test."), [k],
                                             now - day, now + 30 * day))
        good = ldns.ds(k).split()
        fake_digest = hashlib.sha256(b"digest type 3 " + good[-1].encode()).hexdigest()
        self.anchors.append(" ".join(good[:4] + [str(FAKE_DIGEST), fake_digest]))
        # RSASHA1 (algorithm 5): supported by Unbound, not by dnsgate (DESIGN §9)
        k = ldns.keygen("rsasha1.test.", alg="RSASHA1", bits=1024)
        add("rsasha1.test.", ldns.sign("rsasha1.test.", simple("rsasha1.test."), [k], now - day, now + 30 * day))
        self.anchors.append(ldns.ds(k))
        # SHA-1 DS only (digest type 1): supported by Unbound, not by dnsgate
        k = ldns.keygen("sha1ds.test.")
        add("sha1ds.test.", ldns.sign("sha1ds.test.", simple("sha1ds.test."), [k], now - day, now + 30 * day))
        self.anchors.append(ldns.ds(k, digest=1))

        knot = AuthKnotd(self.workdir / "knot2", zones, name="knot2")
        knot.start()
        self.knot2 = knot

    @property
    def _fake_anchor(self) -> str:
        key = dns.rdata.from_text("IN", "DNSKEY", f"257 3 {FAKE_ALG} {FAKE_KEY_B64}")
        ds = dns.dnssec.make_ds("unknownalg.test.", key, "SHA256")
        return f"unknownalg.test. DS {ds.to_text()}"

    def _check_ds_from_parent(self) -> None:
        """knotd answers DS at a child apex from the parent zone it also serves."""
        for port, child in ((self.knot1.port, "sub.dnssec.test."), (self.knot2.port, "badds.ds.test.")):
            m = ask(port, child, "DS", cd=True)
            sigs = [rr for rr in m.answer if rr.rdtype == dns.rdatatype.RRSIG]
            parent = child.split(".", 1)[1]
            assert m.rcode() == dns.rcode.NOERROR and sigs and sigs[0][0].signer == dns.name.from_text(parent), m
        m = ask(self.knot1.port, "unsigned.dnssec.test.", "DS")
        assert not m.answer and any(rr.rdtype == dns.rdatatype.NSEC for rr in m.authority), m
        self.notes.append("knotd answers DS at a child apex from the parent zone (AA, parent's RRSIG; "
                          "NODATA + the parent's NSEC/NSEC3 for an unsigned child)")

    def start(self) -> "Rig":
        check_tools()
        try:
            self._build_knot1()
            self._build_knot2()
            self._check_ds_from_parent()
            self.liar = Liar(self.knot1.port, LIAR_RULES, forge_ad=True, name="liar")
            self.mute = Liar(self.knot1.port, MUTE_RULES, name="mute")
            stubs = {z: self.knot1.port for z in KNOT1_ANCHORED + KNOT1_UNANCHORED
                     if z not in LIAR_ZONES + MUTE_ZONES}
            stubs.update({z: self.knot2.port for z in KNOT2_ANCHORED})
            stubs.update({z: self.liar.port for z in LIAR_ZONES})
            stubs.update({z: self.mute.port for z in MUTE_ZONES})
            self.unbound = Unbound(self.workdir / "unbound", self.anchors, stubs)
            self.unbound.start()
        except BaseException:
            self.stop()
            raise
        return self

    def upstream_port(self, kind: str) -> int:
        return {"knot1": self.knot1.port, "knot2": self.knot2.port, "liar": self.liar.port,
                "mute": self.mute.port}[kind]

    def errors(self) -> list:
        return [*(self.liar.errors if self.liar else []), *(self.mute.errors if self.mute else [])]

    def stop(self) -> None:
        for part in (self.unbound, self.liar, self.mute, self.knot2, self.knot1):
            if part is None:
                continue
            try:
                (part.close if isinstance(part, Liar) else part.stop)()
            except Exception:
                pass

    def describe(self) -> str:
        return ("trust anchors:\n" + "\n".join(f"  {a}" for a in self.anchors) +
                f"\nknot1 127.0.0.1:{self.knot1.port}  knot2 127.0.0.1:{self.knot2.port}  "
                f"liar 127.0.0.1:{self.liar.port}  mute 127.0.0.1:{self.mute.port}  "
                f"unbound 127.0.0.1:{self.unbound.port}\nworkdir {self.workdir}")


# 64 octets, the size of an ECC-GOST public key; the bytes themselves mean nothing
FAKE_KEY_B64 = base64.b64encode(hashlib.sha512(b"dnsgate unknown algorithm key").digest()).decode()


def fake_alg_zone(zone: str, now: float) -> list[str]:
    """A zone 'signed' with algorithm 12: a DNSKEY and RRSIGs whose bytes mean
    nothing. A validator that does not implement the algorithm treats the
    zone as insecure without looking at them."""
    key = dns.rdata.from_text("IN", "DNSKEY", f"257 3 {FAKE_ALG} {FAKE_KEY_B64}")
    tag = dns.dnssec.key_id(key)
    inc, exp = stamp(now - 86400), stamp(now + 30 * 86400)
    z = dns.name.from_text(zone)
    records = [
        (zone, "SOA", f"ns1.{zone} hostmaster.{zone} 1 7200 3600 1209600 3600"),
        (zone, "NS", f"ns1.{zone}"),
        (zone, "DNSKEY", key.to_text()),
        (zone, "NSEC", f"ns1.{zone} NS SOA RRSIG NSEC DNSKEY"),
        (f"ns1.{zone}", "A", "192.0.2.120"),
        (f"ns1.{zone}", "NSEC", f"www.{zone} A RRSIG NSEC"),
        (f"www.{zone}", "A", "192.0.2.100"),
        (f"www.{zone}", "NSEC", f"{zone} A RRSIG NSEC"),
    ]
    lines = []
    for owner, rtype, rdata in records:
        labels = len(dns.name.from_text(owner)) - 1
        sig = base64.b64encode(hashlib.sha512(f"{owner}/{rtype}".encode()).digest()).decode()
        lines.append(f"{owner} 3600 IN {rtype} {rdata}")
        lines.append(f"{owner} 3600 IN RRSIG {rtype} {FAKE_ALG} {labels} 3600 {exp} {inc} {tag} {z} {sig}")
    return lines
