#!/usr/bin/python3
"""Writes the seeds of fuzz/dnssec_validator_fuzz.cpp (fuzz/corpus/
dnssec_validator_fuzz/) and the DNSSEC unit test vectors
(tests/unit/dnssec_test_vectors.hpp), and puts the new trust anchor into
the harness's kAnchor. Run it again only to change the seeds: new keys make
new signatures and a new anchor.

Two zones are signed once by ldns-signzone (inception 2025-01-01,
expiration 2090-01-01) and served as they are by knotd on loopback; the
answers are what knotd sends to DO=1 queries:

  fuzz.test.      ECDSA P-256 KSK + ZSK, NSEC; the trust anchor (DS of the KSK)
  sub.fuzz.test.  RSASHA256 KSK + ZSK, NSEC3 (1 iteration, salt aabbccdd);
                  signed delegation (DS in fuzz.test.)
  unsigned.fuzz.test.  a delegation without DS (NSEC proves it)

A seed is chunks (2-octet length, then the octets): the workload's answer,
then the chain material in the order the validator asks for it.

    /usr/bin/python3 fuzz/make_dnssec_corpus.py     # needs ldnsutils, knotd
"""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORPUS = HERE / "corpus" / "dnssec_validator_fuzz"
HARNESS = HERE / "dnssec_validator_fuzz.cpp"
VECTORS = ROOT / "tests" / "unit" / "dnssec_test_vectors.hpp"

INCEPTION = "20250101000000"
EXPIRATION = "20900101000000"
INCEPTION_EPOCH = 1735689600
EXPIRATION_EPOCH = 3786912000  # calendar.timegm((2090, 1, 1, 0, 0, 0))
NOW = 1767225600  # 2026-01-01

PARENT = """$ORIGIN fuzz.test.
$TTL 3600
@ SOA ns1 hostmaster 1 7200 3600 1209600 3600
@ NS ns1
ns1 A 192.0.2.53
www A 192.0.2.1
www AAAA 2001:db8::1
Mixed MX 10 Mail.Fuzz.TEST.
alias CNAME www
*.wild A 192.0.2.7
txt TXT "hello"
sub NS ns1.sub
ns1.sub A 192.0.2.54
unsigned NS ns1.unsigned
ns1.unsigned A 192.0.2.55
"""

CHILD = """$ORIGIN sub.fuzz.test.
$TTL 3600
@ SOA ns1 hostmaster 1 7200 3600 1209600 3600
@ NS ns1
ns1 A 192.0.2.54
www A 192.0.2.2
*.wild TXT "w"
"""


def run(cmd: list[str], cwd: Path) -> str:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout.strip()


def keygen(work: Path, zone: str, algorithm: str, ksk: bool) -> str:
    args = ["ldns-keygen", "-a", algorithm] + (["-k"] if ksk else []) + (["-b", "2048"] if "RSA" in algorithm else [])
    return run(args + [zone], work)


def sign(work: Path, zone: str, text: str, keys: list[str], nsec3: bool) -> Path:
    src = work / f"{zone}zone"
    src.write_text(text)
    out = work / f"{zone}signed"
    extra = ["-n", "-a", "1", "-t", "1", "-s", "aabbccdd"] if nsec3 else []
    run(["ldns-signzone", "-e", EXPIRATION, "-i", INCEPTION, *extra, "-f", str(out), str(src), *keys], work)
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Knotd:
    def __init__(self, work: Path, zones: dict[str, Path]):
        self.port = free_port()
        for d in ("run", "db"):
            (work / d).mkdir(exist_ok=True)
        zone_items = "".join(f"  - domain: {z}\n    file: {p}\n" for z, p in zones.items())
        conf = work / "knot.conf"
        conf.write_text(f"""server:
    rundir: "{work}/run"
    listen: 127.0.0.1@{self.port}
    udp-max-payload: 4096
database:
    storage: "{work}/db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
{zone_items}""")
        self.log = open(work / "knotd.log", "wb")
        self.proc = subprocess.Popen(["knotd", "-c", str(conf)], stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        for zone in zones:
            while True:
                r = self.ask(zone, "SOA", timeout=0.3)
                if r is not None and r.rcode() == 0 and r.answer:
                    break
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise SystemExit(f"knotd does not serve {zone}: see {work}/knotd.log")
                time.sleep(0.05)

    def ask_wire(self, qname: str, qtype: str, timeout: float = 3.0) -> bytes | None:
        q = dns.message.make_query(qname, qtype, want_dnssec=True, payload=4096)
        q.id = 0x5EC5
        q.flags |= dns.flags.CD
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(q.to_wire(), ("127.0.0.1", self.port))
            try:
                data, _ = s.recvfrom(65535)
            except socket.timeout:
                return None
        return data

    def ask(self, qname: str, qtype: str, timeout: float = 3.0) -> dns.message.Message | None:
        data = self.ask_wire(qname, qtype, timeout)
        return None if data is None else dns.message.from_wire(data)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def without_rrsigs(wire: bytes) -> bytes:
    m = dns.message.from_wire(wire)
    m.answer = [r for r in m.answer if r.rdtype != dns.rdatatype.RRSIG]
    return m.to_wire()


def unsigned_answer(qname: str, address: str) -> bytes:
    q = dns.message.make_query(qname, "A", want_dnssec=True, payload=4096)
    q.id = 0x5EC5
    r = dns.message.make_response(q)
    r.flags |= dns.flags.RA
    r.answer.append(dns.rrset.from_text(qname, 300, "IN", "A", address))
    return r.to_wire()


def chunks(*parts: bytes) -> bytes:
    return b"".join(struct.pack("!H", len(p)) + p for p in parts)


def cpp_bytes(name: str, data: bytes) -> str:
    lines = []
    for i in range(0, len(data), 16):
        lines.append("    " + ", ".join(f"0x{b:02x}" for b in data[i:i + 16]) + ",")
    return f"inline const std::vector<std::uint8_t> {name} = {{\n" + "\n".join(lines) + "\n};\n"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dnsgate-dnssec-corpus.") as tmp:
        work = Path(tmp)
        parent_ksk = keygen(work, "fuzz.test.", "ECDSAP256SHA256", True)
        parent_zsk = keygen(work, "fuzz.test.", "ECDSAP256SHA256", False)
        child_ksk = keygen(work, "sub.fuzz.test.", "RSASHA256", True)
        child_zsk = keygen(work, "sub.fuzz.test.", "RSASHA256", False)
        child_ds = run(["ldns-key2ds", "-n", "-2", f"{child_ksk}.key"], work)
        parent_ds = run(["ldns-key2ds", "-n", "-2", f"{parent_ksk}.key"], work)
        parent_ksk_text = (work / f"{parent_ksk}.key").read_text().strip()
        child_signed = sign(work, "sub.fuzz.test.", CHILD, [child_ksk, child_zsk], nsec3=True)
        parent_signed = sign(work, "fuzz.test.", PARENT + child_ds + "\n", [parent_ksk, parent_zsk], nsec3=False)

        knot = Knotd(work, {"fuzz.test.": parent_signed, "sub.fuzz.test.": child_signed})
        try:
            def get(qname: str, qtype: str) -> bytes:
                data = knot.ask_wire(qname, qtype)
                assert data is not None, f"no answer to {qname} {qtype}"
                return data

            dnskey = get("fuzz.test.", "DNSKEY")
            sub_ds = get("sub.fuzz.test.", "DS")
            sub_dnskey = get("sub.fuzz.test.", "DNSKEY")
            unsigned_ds = get("unsigned.fuzz.test.", "DS")
            www_ds = get("www.fuzz.test.", "DS")
            www_a = get("www.fuzz.test.", "A")
            www_sub_a = get("www.sub.fuzz.test.", "A")
            www_unsigned_a = unsigned_answer("www.unsigned.fuzz.test.", "192.0.2.99")
            nxdomain = get("nope.fuzz.test.", "A")
            nodata = get("www.fuzz.test.", "TXT")
            wildcard = get("x.wild.fuzz.test.", "A")
            wildcard_owner = get("*.wild.fuzz.test.", "A")  # the wildcard asked for itself
            assert any(r.rdtype == dns.rdatatype.RRSIG for r in dns.message.from_wire(sub_ds).answer), \
                "knotd did not answer the DS from the parent"
            parent_chain = [dnskey]
            child_chain = [sub_ds, dnskey, sub_dnskey]
            seeds = {
                "www_a": chunks(www_a, *parent_chain),
                "www_aaaa": chunks(get("www.fuzz.test.", "AAAA"), *parent_chain),
                "mixed_mx": chunks(get("mixed.fuzz.test.", "MX"), *parent_chain),
                "alias_cname": chunks(get("alias.fuzz.test.", "A"), *parent_chain),
                "wildcard": chunks(wildcard, *parent_chain),
                "wildcard_owner": chunks(wildcard_owner, *parent_chain),
                "nxdomain_nsec": chunks(nxdomain, *parent_chain),
                "nodata_nsec": chunks(nodata, *parent_chain),
                "dnskey_query": chunks(dnskey, *parent_chain),
                "ds_query": chunks(sub_ds, *parent_chain),
                "sub_www_a": chunks(www_sub_a, *child_chain),
                "sub_nxdomain_nsec3": chunks(get("nope.sub.fuzz.test.", "A"), *child_chain),
                "sub_nodata_nsec3": chunks(get("www.sub.fuzz.test.", "TXT"), *child_chain),
                "sub_wildcard_nsec3": chunks(get("a.wild.sub.fuzz.test.", "TXT"), *child_chain),
                "unsigned_delegation": chunks(www_unsigned_a, unsigned_ds, dnskey),
                "stripped_rrsig": chunks(without_rrsigs(www_a), www_ds, dnskey),
                "fetch_failed": chunks(www_a, b""),
                "no_chain": chunks(www_a),
            }
        finally:
            knot.stop()

    CORPUS.mkdir(parents=True, exist_ok=True)
    for old in CORPUS.iterdir():
        old.unlink()
    for name, data in seeds.items():
        (CORPUS / name).write_bytes(data)

    anchor = " ".join(parent_ds.split())
    harness = HARNESS.read_text()
    harness, n = re.subn(r'(constexpr std::string_view kAnchor =\s*)(?:"[^"]*"\s*)+;', rf'\1"{anchor}";', harness)
    assert n == 1, "kAnchor not found in the harness"
    HARNESS.write_text(harness)

    dnskey_anchor = " ".join(parent_ksk_text.split(";")[0].split())
    VECTORS.write_text(
        "// DNSSEC test vectors written by fuzz/make_dnssec_corpus.py (do not edit): knotd's\n"
        "// answers from two zones signed once by ldns-signzone, valid from\n"
        "// 2025-01-01 to 2090-01-01. fuzz.test. (ECDSA P-256, NSEC) is the anchor;\n"
        "// sub.fuzz.test. (RSASHA256, NSEC3) is its signed child, unsigned.fuzz.test.\n"
        "// its unsigned one.\n"
        "#pragma once\n\n#include <cstdint>\n#include <string_view>\n#include <vector>\n\n"
        "namespace dnsgate::dnssec::vectors {\n\n"
        f"inline constexpr std::uint32_t kInception = {INCEPTION_EPOCH};\n"
        f"inline constexpr std::uint32_t kExpiration = {EXPIRATION_EPOCH};\n"
        f"inline constexpr std::uint32_t kNow = {NOW};\n"
        f'inline constexpr std::string_view kAnchorDs = "{anchor}";\n'
        f'inline constexpr std::string_view kAnchorDnskey = "{dnskey_anchor}";\n\n'
        + cpp_bytes("kFuzzDnskey", dnskey)
        + cpp_bytes("kWwwA", www_a)
        + cpp_bytes("kWwwDs", www_ds)
        + cpp_bytes("kSubDs", sub_ds)
        + cpp_bytes("kSubDnskey", sub_dnskey)
        + cpp_bytes("kWwwSubA", www_sub_a)
        + cpp_bytes("kUnsignedDs", unsigned_ds)
        + cpp_bytes("kWwwUnsignedA", www_unsigned_a)
        + cpp_bytes("kNxdomain", nxdomain)
        + cpp_bytes("kNodata", nodata)
        + cpp_bytes("kWildcard", wildcard)
        + cpp_bytes("kWildcardOwner", wildcard_owner)
        + "\n}  // namespace dnsgate::dnssec::vectors\n")
    if shutil.which("clang-format"):
        subprocess.run(["clang-format", "-i", str(VECTORS), str(HARNESS)], check=True)
    print(f"{len(seeds)} seeds in {CORPUS}; anchor: {anchor}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
