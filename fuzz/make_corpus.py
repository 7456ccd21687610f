#!/usr/bin/python3
"""Writes the seed corpus under fuzz/corpus/<target>/ (checked in; run this
again only to change the seeds). Real client queries are captured from dig
and kdig sent to a socket this script binds on loopback; the rest is built
byte by byte: well-formed queries and responses, and the hostile packets of
the catalogue in docs/hardening.md.

    /usr/bin/python3 fuzz/make_corpus.py            # needs dig and kdig
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import dns.flags
import dns.message
import dns.opcode
import dns.rrset

HERE = Path(__file__).resolve().parent
OUT = HERE / "corpus"


def hdr(ident=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


def name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(x)]) + x for x in labels) + b"\x00"


def opt(payload=1232, do=False, options=b"", owner=b"\x00", version=0) -> bytes:
    return owner + struct.pack("!HHBBHH", 41, payload, 0, version, 0x8000 if do else 0, len(options)) + options


def long_name(total: int) -> bytes:
    """A wire name of exactly `total` octets ending in example.org."""
    tail = [b"example", b"org"]
    left = total - len(name(*tail))
    labels = []
    while left > 0:
        take = min(64, left)
        labels.append(b"x" * (take - 1))
        left -= take
    return name(*labels, *tail)


WWW = name(b"www", b"example", b"com")
Q_A = WWW + b"\x00\x01\x00\x01"


def capture(argv: list[str]) -> bytes | None:
    """Runs a real client against a loopback socket and returns the first datagram it sent."""
    if shutil.which(argv[0]) is None:
        print(f"{argv[0]} not found: capture skipped", file=sys.stderr)
        return None
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.settimeout(3)
    proc = subprocess.Popen([a.replace("PORT", str(port)) for a in argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        data, _ = s.recvfrom(65535)
        return data
    except socket.timeout:
        return None
    finally:
        proc.kill()
        proc.wait(timeout=5)
        s.close()


def captured_queries() -> dict[str, bytes]:
    out = {}
    runs = {
        "dig_www_example_com_a": ["dig", "@127.0.0.1", "-p", "PORT", "+tries=1", "+time=1", "www.example.com", "A"],
        "dig_example_org_aaaa_dnssec": ["dig", "@127.0.0.1", "-p", "PORT", "+tries=1", "+time=1", "+dnssec",
                                        "api.example.org", "AAAA"],
        "dig_noedns_mx": ["dig", "@127.0.0.1", "-p", "PORT", "+tries=1", "+time=1", "+noedns", "example.com", "MX"],
        "kdig_www_example_com_a": ["kdig", "@127.0.0.1", "-p", "PORT", "+retry=0", "+time=1", "www.example.com", "A"],
        "kdig_txt_nsid_cookie": ["kdig", "@127.0.0.1", "-p", "PORT", "+retry=0", "+time=1", "+nsid", "+cookie",
                                 "+edns", "big.example.com", "TXT"],
    }
    for key, argv in runs.items():
        data = capture(argv)
        if data is not None:
            out[key] = data
    return out


def dnspython_query(qname, rdtype, ident=0x4242, **kw) -> bytes:
    q = dns.message.make_query(qname, rdtype, **kw)
    q.id = ident
    return q.to_wire()


def answer(query: bytes, address="192.0.2.1", rcode=0, tc=False) -> bytes:
    q = dns.message.from_wire(query)
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    if tc:
        r.flags |= dns.flags.TC
    if rcode == 0 and q.question[0].rdtype == 1:
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", address))
    return r.to_wire()


def parser_seeds(captured: dict[str, bytes]) -> dict[str, bytes]:
    seeds = dict(captured)
    a_record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 1])
    www_q = dnspython_query("www.example.com.", "A")
    seeds.update({
        "query_a": www_q,
        "query_aaaa_edns": dnspython_query("api.example.org.", "AAAA", use_edns=0),
        "query_do_bit": dnspython_query("example.com.", "DNSKEY", use_edns=0, want_dnssec=True),
        "query_mixed_case": dnspython_query("WwW.ExAmPlE.CoM.", "A"),
        "query_root_ns": hdr() + b"\x00" + b"\x00\x02\x00\x01",
        "query_type65280_class_ch": hdr() + WWW + b"\xff\x00\x00\x03",
        "query_notify_opcode": hdr(flags=0x2000) + Q_A,
        "query_name_255": hdr() + long_name(255) + b"\x00\x01\x00\x01",
        "query_label_with_dot_and_nul": hdr() + name(b"a.b\x00c", b"example", b"com") + b"\x00\x01\x00\x01",
        "query_with_backward_pointer_answer": hdr(an=1, ar=1) + Q_A + a_record + opt(do=True),
        "query_edns_cookie_option": hdr(ar=1) + Q_A + opt(options=struct.pack("!HH", 10, 8) + b"\x01" * 8),
        "query_edns_version_1": hdr(ar=1) + Q_A + opt(do=True, version=1),
        # other opcodes: NOTIMP from the header alone (docs/conformance.md)
        "opcode15_header_only": hdr(flags=0x7800, qd=0),
        "opcode15_no_question_edns_v1": hdr(flags=0x7800, qd=0, ar=1) + opt(version=1),
        "opcode15_two_questions": hdr(flags=0x7800, qd=2) + Q_A + Q_A,
        "dso_keepalive_tlv": hdr(flags=0x3000, qd=0) + struct.pack("!HHII", 1, 8, 0, 0),
        "response_answer": answer(www_q),
        "response_truncated_tc": answer(www_q, tc=True),
        "response_servfail": answer(www_q, rcode=2),
        "response_no_question": hdr(flags=0x8180, qd=0),
        # hostile: the catalogue in docs/hardening.md
        "empty": b"",
        "one_octet": b"\x12",
        "eleven_octets": hdr()[:11],
        "twelve_octets_header_only": hdr(),
        "qdcount_0": hdr(qd=0) + Q_A,
        "qdcount_2": hdr(qd=2) + Q_A + Q_A,
        "qdcount_65535": hdr(qd=65535) + Q_A,
        "ancount_65535_lying": hdr(an=65535) + Q_A + a_record,
        "pointer_to_itself": hdr() + b"\xc0\x0c" + b"\x00\x01\x00\x01",
        "pointer_loop_in_answer": hdr(an=1) + Q_A + b"\x01a\xc0\x1d" + struct.pack("!HHIH", 1, 1, 0, 0),
        "pointer_forward": hdr() + b"\xc0\x12" + b"\x00\x01\x00\x01" + b"\x03www\x00",
        "pointer_into_header": hdr() + b"\xc0\x02" + b"\x00\x01\x00\x01",
        "pointer_into_header_from_answer": hdr(an=1) + Q_A + b"\xc0\x04" + struct.pack("!HHIH", 1, 1, 0, 0),
        "label_type_0x40": hdr() + b"\x41a\x00\x00\x01\x00\x01",
        "label_type_0x80": hdr() + b"\x83www\x00\x00\x01\x00\x01",
        "name_256": hdr() + long_name(256) + b"\x00\x01\x00\x01",
        "half_qclass": hdr() + WWW + b"\x00\x01\x00",
        "rdlength_past_end": hdr(ar=1) + Q_A + b"\x00" + struct.pack("!HHIH", 16, 1, 0, 40) + b"\x05hello",
        "two_opts": hdr(ar=2) + Q_A + opt() + opt(),
        "opt_in_answer_section": hdr(an=1) + Q_A + opt(),
        "opt_owned_by_com": hdr(ar=1) + Q_A + opt(owner=b"\x03com\x00"),
        "trailing_octet": hdr() + Q_A + b"\x00",
    })
    return seeds


SOURCE_OK = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 5300) + socket.inet_aton("127.0.0.1") + b"\x00" * 20
SOURCE_OTHER_PORT = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 5301) + socket.inet_aton("127.0.0.1") + b"\x00" * 20
SOURCE_V6 = struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", 5300, 0) + socket.inet_pton(socket.AF_INET6, "::1") + b"\x00" * 4
assert len(SOURCE_OK) == len(SOURCE_V6) == 28


def upstream_seeds() -> dict[str, bytes]:
    www_q = dnspython_query("www.example.com.", "A")
    www_aaaa = dnspython_query("WwW.ExAmple.COM.", "AAAA")
    root_ns = hdr() + b"\x00" + b"\x00\x02\x00\x01"
    seeds = {
        "answer_www_a": bytes([0]) + SOURCE_OK + answer(www_q),
        "answer_www_a_upper_case": bytes([0]) + SOURCE_OK + answer(dnspython_query("WWW.EXAMPLE.COM.", "A")),
        "answer_aaaa_mixed_case": bytes([1]) + SOURCE_OK + answer(www_aaaa),
        "answer_root_ns": bytes([2]) + SOURCE_OK + with_qr(root_ns),
        "answer_own_question": bytes([4]) + SOURCE_OK + answer(dnspython_query("a.b.example.", "MX")),
        "answer_other_port": bytes([0]) + SOURCE_OTHER_PORT + answer(www_q),
        "answer_from_v6": bytes([0]) + SOURCE_V6 + answer(www_q),
        "answer_truncated_tc": bytes([0]) + SOURCE_OK + answer(www_q, tc=True),
        "answer_servfail": bytes([0]) + SOURCE_OK + answer(www_q, rcode=2),
        "answer_wrong_type": bytes([0]) + SOURCE_OK + answer(dnspython_query("www.example.com.", "AAAA")),
        "answer_no_question": bytes([0]) + SOURCE_OK + hdr(flags=0x8180, qd=0),
        "answer_two_questions": bytes([0]) + SOURCE_OK + hdr(flags=0x8180, qd=2) + Q_A + Q_A,
        "answer_qr_clear": bytes([0]) + SOURCE_OK + www_q,
        "answer_compressed_question": bytes([0]) + SOURCE_OK + hdr(flags=0x8180) + b"\xc0\x0c\x00\x01\x00\x01",
        "answer_cut_in_question": bytes([0]) + SOURCE_OK + answer(www_q)[:20],
        "answer_label_0x80": bytes([0]) + SOURCE_OK + hdr(flags=0x8180) + b"\x83www\x00\x00\x01\x00\x01",
    }
    return seeds


def with_qr(query: bytes) -> bytes:
    return query[:2] + bytes([query[2] | 0x80]) + query[3:]


def allowlist_seeds() -> dict[str, bytes]:
    def wire(*labels: bytes) -> bytes:
        return b"\x00" + name(*labels)  # mode 0: a complete wire name

    def loose(*labels: bytes) -> bytes:
        return b"\x01" + b"".join(bytes([len(x)]) + x for x in labels)  # mode 1: labels, no root needed

    return {
        "literal": wire(b"example", b"com"),
        "literal_upper": wire(b"EXAMPLE", b"COM"),
        "literal_www": wire(b"www", b"example", b"com"),
        "literal_only_not_subdomain": wire(b"x", b"www", b"example", b"com"),
        "wildcard_one_label": wire(b"api", b"example", b"org"),
        "wildcard_many_labels": wire(b"a", b"b", b"c", b"example", b"org"),
        "wildcard_suffix_itself": wire(b"example", b"org"),
        "wildcard_deep": wire(b"q", b"deep", b"x-y", b"z"),
        "wildcard_abc": wire(b"Z", b"A", b"B", b"C"),
        "underscore_label": wire(b"_dmarc", b"example", b"com"),
        "idn_a_label": wire(b"xn--bcher-kva", b"example"),
        "idn_raw_utf8": wire("bücher".encode(), b"example"),
        "label_with_dot": wire(b"www.example", b"com"),
        "label_with_nul": wire(b"example\x00", b"com"),
        "label_star": wire(b"*", b"example", b"org"),
        "label_space": wire(b"a b", b"example", b"org"),
        "root": wire(),
        "single_label_0": wire(b"x", b"0"),
        "name_255_wildcard": b"\x00" + long_name(255),
        "loose_labels": loose(b"www", b"example", b"org"),
        "loose_upper": loose(b"API", b"EXAMPLE", b"NET"),
        "loose_ab": loose(b"zz", b"ab"),
        "loose_high_bytes": loose(b"\xc3\xa9t\xc3\xa9", b"example", b"org"),
    }


def config_seeds() -> dict[str, bytes]:
    minimal = """cell: demo
listen:
  udp: 127.0.0.1:5353
dnsAuthority:
  hostnameAllowlist:
    - example.com
    - "*.example.org"
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:5300
events:
  sink: file
  path: /var/log/dnsgate/events.jsonl
"""
    full = """cell: demo
listen:
  udp: 127.0.0.1:5353
  tcp: 127.0.0.1:5353
dnsAuthority:
  hostnameAllowlist:
    - example.com
    - "*.example.org"
    - bücher.example
  resolvers:
    - protocol: do53-udp
      address: "[::1]:5300"
upstreamTimeoutMs: 2000
maxInflight: 10000
denyRcode: NXDOMAIN
tcp:
  maxConnections: 512
  maxInflightPerConnection: 100
  idleTimeoutMs: 10000
  frameTimeoutMs: 5000
events:
  sink: stdout
"""
    as_json = ('{"cell":"j","listen":{"udp":"127.0.0.1:53"},"dnsAuthority":{"hostnameAllowlist":["a.b"],'
               '"resolvers":[{"protocol":"do53-udp","address":"127.0.0.1:5300"}]},"events":{"sink":"stdout"}}')
    seeds = {
        "minimal": minimal,
        "full": full,
        "json": as_json,
        "unknown_field_typo": minimal.replace("cell:", "cel:"),
        "unquoted_wildcard_alias": minimal.replace('"*.example.org"', "*.example.org"),
        "anchor_and_alias": minimal.replace("cell: demo", "cell: &c demo\nx: *c"),
        "duplicate_key": minimal + "cell: again\n",
        "two_documents": minimal + "---\n" + minimal,
        "tab_indent": minimal.replace("  udp", "\tudp"),
        "bad_wildcard": minimal.replace('"*.example.org"', '"a.*.com"'),
        "huge_numbers": minimal + "upstreamTimeoutMs: 99999999999999999999\nmaxInflight: -1\n",
        "deep_nesting": "cell: [" * 200 + "]" * 200 + "\n",
        "deep_maps": "a:\n" + "".join("  " * i + "b:\n" for i in range(1, 60)),
        "empty": "",
        "only_comment": "# nothing\n",
        "binary": "\x00\xff\xfe key: \x01",
        "ipv6_listen": minimal.replace("127.0.0.1:5353", '"[::1]:5353"'),
        "tag_and_merge": "base: &b {sink: stdout}\nevents:\n  <<: *b\n",
        "long_label": minimal.replace("example.com", "a" * 64 + ".com"),
        "resolvers_every_protocol": minimal.replace(
            "    - protocol: do53-udp\n      address: 127.0.0.1:5300\n",
            "    - {protocol: dot, address: 127.0.0.1, tlsServerName: dns.test,"
            " spkiPins: [\"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"]}\n"
            "    - {protocol: doh, url: \"https://dns.test:8443/dns-query?x=1\", address: \"[::1]:8443\"}\n"
            "    - {protocol: doq, address: \"[::1]\"}\n"
            "    - {protocol: doh, url: \"https://127.0.0.2/q\"}\n"
            "    - {protocol: do53-tcp, address: 127.0.0.1:5300}\n") + "resolverPolicy: roundRobin\n",
        "resolver_bad_url": minimal.replace(
            "    - protocol: do53-udp\n      address: 127.0.0.1:5300\n",
            "    - {protocol: doh, url: \"https://[::1:443/\\\"q\"}\n"),
    }
    return {k: v.encode() for k, v in seeds.items()}


def write(target: str, seeds: dict[str, bytes]) -> None:
    folder = OUT / target
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for key, data in seeds.items():
        (folder / key).write_bytes(data)
    print(f"{target}: {len(seeds)} seeds")


def main() -> int:
    captured = captured_queries()
    write("parser_fuzz", parser_seeds(captured))
    write("upstream_response_fuzz", upstream_seeds())
    write("allowlist_fuzz", allowlist_seeds())
    write("config_fuzz", config_seeds())
    return 0


if __name__ == "__main__":
    sys.exit(main())
