"""The encrypted-upstream test peers themselves (tls_peers.py), proven with
real clients before any dnsgate test relies on them: kdig over DoT and DoH
against Unbound, dnsdist and the scripted servers; the bad certificates
rejected; the SPKI pin accepted by kdig; every scripted misbehaviour seen
from a client; and the resolvers[] rendering of dnsgate_testlib.

None of these tests starts dnsgate."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import ssl
import subprocess

import dns.message
import dns.rcode
import h2.errors
import pytest

from dnsgate_testlib import make_query, render_config
from tls_peers import (  # noqa: F401 (tls_certs, unbound_peer, dnsdist_peer are fixtures)
    CLOSE_AFTER_ANSWER, DNS_MESSAGE, DOH_PATH, GOAWAY, HUGE_LENGTH, KDIG, OUT_OF_ORDER, RESET_STREAM, SERVER_NAME,
    SILENT, STALL_HANDSHAKE, STATUS_404, STATUS_500, WRONG_CONTENT_TYPE, WRONG_ID, WRONG_QUESTION, DohClient,
    DotClient, Dnsdist, ScriptedDohServer, ScriptedDotServer, Unbound, client_context, dnsdist_peer,
    dot_exchange, frame, has_opt, padding_option, spki_pin, tls_certs, unbound_peer,
)

WWW = ("www.example.com.", "192.0.2.10")
API = ("api.example.org.", "192.0.2.101")


def kdig(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
    return subprocess.run([KDIG, "+time=2", "+retry=0", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def kdig_answers(r: subprocess.CompletedProcess) -> list[tuple[str, str, str]]:
    """(owner, type, rdata) of the ANSWER SECTION of kdig's output."""
    out, in_answer = [], False
    for line in r.stdout.splitlines():
        if line.startswith(";; ANSWER SECTION:"):
            in_answer = True
            continue
        if in_answer:
            if not line.strip() or line.startswith(";;"):
                break
            f = line.split()
            out.append((f[0], f[3], " ".join(f[4:])))
    return out


def assert_kdig_answer(r: subprocess.CompletedProcess, name: str, address: str) -> None:
    assert r.returncode == 0, f"kdig failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert "status: NOERROR" in r.stdout, r.stdout
    assert kdig_answers(r) == [(name, "A", address)], r.stdout


def assert_kdig_cert_rejected(r: subprocess.CompletedProcess) -> None:
    assert r.returncode != 0, f"kdig accepted the certificate:\n{r.stdout}"
    assert "handshake failed" in r.stderr and "certificate" in r.stderr.lower(), r.stderr
    assert "ANSWER SECTION" not in r.stdout


def answer_of(wire: bytes, name: str, address: str, ident=None) -> dns.message.Message:
    m = dns.message.from_wire(wire)
    assert m.rcode() == dns.rcode.NOERROR, m
    assert [(str(rr.name), rr[0].to_text()) for rr in m.answer] == [(name, address)], m
    if ident is not None:
        assert m.id == ident
    return m


def q(name: str, ident: int = 0x4242, edns: bool = False) -> bytes:
    return make_query(name, "A", ident=ident, edns=edns).to_wire()


# ---------------------------------------------------------------- certificates


def certtool_info(path) -> str:
    return subprocess.run(["certtool", "-i", "--infile", str(path)], capture_output=True, text=True,
                          check=True, timeout=10).stdout


def test_certificates_carry_what_they_claim(tls_certs):
    c = tls_certs
    info = certtool_info(c.server.cert)
    assert "DNSname: dns.test" in info and "IPAddress: 127.0.0.1" in info and "IPAddress: ::1" in info
    assert "dnsgate test CA" in info  # issuer
    wrong = certtool_info(c.wrong_name.cert)
    assert "DNSname: other.test" in wrong and "IPAddress" not in wrong and "dns.test" not in wrong
    name_only = certtool_info(c.name_only.cert)
    assert "DNSname: dns.test" in name_only and "IPAddress" not in name_only
    assert "Not After: Sat Feb 01 00:00:00 UTC 2020" in certtool_info(c.expired.cert)
    assert "Not Before: Sun Jan 01 00:00:00 UTC 2090" in certtool_info(c.not_yet_valid.cert)
    other = certtool_info(c.other_ca_server.cert)
    assert "unrelated test CA" in other and "DNSname: dns.test" in other
    # Python's verifier (OpenSSL) agrees with kdig (GnuTLS) on the chain
    for ck, ok in ((c.server, True), (c.other_ca_server, False), (c.expired, False)):
        with ScriptedDotServer(ck) as s:
            try:
                dot_exchange(s.port, q(WWW[0]), ca=c.ca, timeout=2.0)
                verified = True
            except ssl.SSLCertVerificationError:
                verified = False
        assert verified == ok, ck


def der_spki(cert_pem: str) -> bytes:
    """The SubjectPublicKeyInfo of a certificate, walked out of its DER by
    hand (independent of certtool): Certificate > tbsCertificate > the
    field after [0] version, serial, signature, issuer, validity, subject."""
    der = ssl.PEM_cert_to_DER_cert(cert_pem)

    def tlv(buf: bytes, pos: int) -> tuple[int, int, int]:  # tag, start of value, end of value
        tag, n = buf[pos], buf[pos + 1]
        pos += 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(buf[pos:pos + k], "big")
            pos += k
        return tag, pos, pos + n

    _, cert_start, _ = tlv(der, 0)
    _, tbs_start, tbs_end = tlv(der, cert_start)
    pos, fields = tbs_start, []
    while pos < tbs_end:
        tag, start, end = tlv(der, pos)
        fields.append((tag, pos, end))
        pos = end
    if fields[0][0] == 0xA0:  # explicit version
        fields = fields[1:]
    tag, begin, end = fields[5]
    assert tag == 0x30
    return der[begin:end]


def test_spki_pin_is_rfc7858(tls_certs):
    pins = set()
    for ck in (tls_certs.server, tls_certs.wrong_name, tls_certs.expired, tls_certs.other_ca_server):
        spki = der_spki(ck.cert.read_text())
        assert b"\x2a\x86\x48\xce\x3d\x02\x01" in spki  # id-ecPublicKey: it is the key, not the name
        want = base64.b64encode(hashlib.sha256(spki).digest()).decode()
        assert spki_pin(ck.cert) == want == ck.pin
        assert len(base64.b64decode(want)) == 32
        pins.add(want)
    assert len(pins) == 4, "each certificate has its own key"


# ---------------------------------------------------------------- Unbound and dnsdist


@pytest.mark.parametrize("peer_name", ["unbound", "dnsdist"])
def test_peer_serves_dot_and_doh_to_kdig(peer_name, request, tls_certs):
    peer = request.getfixturevalue(f"{peer_name}_peer")
    ca = f"+tls-ca={tls_certs.ca}"
    # DoT with the CA and the name
    r = kdig(ca, f"+tls-hostname={SERVER_NAME}", "@127.0.0.1", "-p", str(peer.dot_port), WWW[0], "A")
    assert_kdig_answer(r, *WWW)
    assert re.search(r"TLS session \(TLS1\.[23]\)", r.stdout), r.stdout
    # DoT with the CA and the IP (the certificate's IP SAN)
    r = kdig(ca, "@127.0.0.1", "-p", str(peer.dot_port), API[0], "A")
    assert_kdig_answer(r, *API)
    # DoH: HTTP/2 POST on /dns-query
    r = kdig(ca, f"+tls-hostname={SERVER_NAME}", f"+https={DOH_PATH}", "@127.0.0.1", "-p", str(peer.doh_port),
             WWW[0], "A")
    assert_kdig_answer(r, *WWW)
    assert "HTTP session (HTTP/2-POST)" in r.stdout and "status: 200" in r.stdout, r.stdout
    # the pin alone authenticates; another key's pin fails
    r = kdig(f"+tls-pin={tls_certs.server.pin}", "@127.0.0.1", "-p", str(peer.dot_port), WWW[0], "A")
    assert_kdig_answer(r, *WWW)
    r = kdig(f"+tls-pin={tls_certs.other_ca_server.pin}", "@127.0.0.1", "-p", str(peer.dot_port), WWW[0], "A")
    assert_kdig_cert_rejected(r)
    # the CA of someone else fails
    r = kdig(f"+tls-ca={tls_certs.other_ca}", f"+tls-hostname={SERVER_NAME}", "@127.0.0.1", "-p",
             str(peer.dot_port), WWW[0], "A")
    assert_kdig_cert_rejected(r)


@pytest.mark.parametrize("peer_name", ["unbound", "dnsdist"])
def test_peer_reuses_one_connection_and_answers_doh_headers(peer_name, request, tls_certs):
    peer = request.getfixturevalue(f"{peer_name}_peer")
    with DotClient(peer.dot_port, ca=tls_certs.ca) as c:
        for i in range(5):  # pipelined: five queries before the first read
            c.send(q(WWW[0], ident=100 + i))
        ids = sorted(dns.message.from_wire(c.recv()).id for _ in range(5))
        assert ids == [100, 101, 102, 103, 104]
    with DohClient(peer.doh_port, ca=tls_certs.ca) as c:
        sids = [c.send_request(q(API[0], ident=0)) for _ in range(4)]
        for resp in c.wait(sids):
            assert resp.status == 200 and resp.headers["content-type"] == DNS_MESSAGE, resp
            answer_of(resp.body, *API, ident=0)
        wrong_path = c.request(q(API[0], ident=0), path="/elsewhere")
        assert wrong_path.status == 404, wrong_path


def test_unbound_and_dnsdist_present_whatever_certificate_they_are_given(tmp_path, tls_certs, knotd):
    """A peer with the wrong-name certificate: rejected for dns.test, accepted for other.test."""
    for cls in (Unbound, Dnsdist):
        peer = cls(tmp_path / cls.name, tls_certs.wrong_name, knotd.address)
        try:
            peer.start()
            ca = f"+tls-ca={tls_certs.ca}"
            assert_kdig_cert_rejected(kdig(ca, f"+tls-hostname={SERVER_NAME}", "@127.0.0.1", "-p",
                                           str(peer.dot_port), WWW[0], "A"))
            assert_kdig_cert_rejected(kdig(ca, f"+tls-hostname={SERVER_NAME}", "+https", "@127.0.0.1", "-p",
                                           str(peer.doh_port), WWW[0], "A"))
            assert_kdig_answer(kdig(ca, "+tls-hostname=other.test", "@127.0.0.1", "-p", str(peer.dot_port),
                                    WWW[0], "A"), *WWW)
        finally:
            peer.stop()
        assert not peer.running()


# ---------------------------------------------------------------- bad certificates, scripted DoT


@pytest.mark.parametrize("which", ["wrong_name", "expired", "not_yet_valid", "other_ca_server"])
def test_kdig_rejects_bad_certificates(which, tls_certs, knotd):
    with ScriptedDotServer(getattr(tls_certs, which), upstream=knotd.address) as s:
        for extra in ([f"+tls-hostname={SERVER_NAME}"], []):
            r = kdig(f"+tls-ca={tls_certs.ca}", *extra, "@127.0.0.1", "-p", str(s.port), WWW[0], "A")
            assert_kdig_cert_rejected(r)
        conns = s.wait_settled()
        assert len(conns) == 2 and not any(c.handshake_ok for c in conns), conns
        assert s.queries() == []


def test_name_only_certificate_needs_the_name(tls_certs, knotd):
    """kdig with the CA and no hostname checks the IP SAN, as dnsgate without tlsServerName must."""
    with ScriptedDotServer(tls_certs.name_only, upstream=knotd.address) as s:
        assert_kdig_cert_rejected(kdig(f"+tls-ca={tls_certs.ca}", "@127.0.0.1", "-p", str(s.port), WWW[0], "A"))
        assert_kdig_answer(kdig(f"+tls-ca={tls_certs.ca}", f"+tls-hostname={SERVER_NAME}", "@127.0.0.1", "-p",
                                str(s.port), WWW[0], "A"), *WWW)


def test_scripted_dot_answers_kdig_and_records(tls_certs, knotd):
    with ScriptedDotServer(tls_certs.server, upstream=knotd.address) as s:
        r = kdig(f"+tls-ca={tls_certs.ca}", f"+tls-hostname={SERVER_NAME}", "@127.0.0.1", "-p", str(s.port),
                 WWW[0], "A")
        assert_kdig_answer(r, *WWW)
        r = kdig(f"+tls-pin={tls_certs.server.pin}", "@127.0.0.1", "-p", str(s.port), API[0], "A")
        assert_kdig_answer(r, *API)
        queries = s.wait_for(2)
        assert len(queries) == 2 and s.connections == 2 and s.handshakes == 2
        assert s.sni == [SERVER_NAME, None], s.sni  # with a pin only, kdig sends no SNI
        assert all(c.version in ("TLSv1.2", "TLSv1.3") for c in s.conns)
        # kdig pads its TLS queries (RFC 8467): the recording shows the real length
        for wire in queries:
            assert has_opt(wire) and padding_option(wire) is not None
            assert len(wire) % 128 == 0, len(wire)
        # a big answer (over 1232 octets) comes whole over TLS: knotd's TCP answer, not a truncated one
        with DotClient(s.port, ca=tls_certs.ca) as c:
            big = dns.message.from_wire(c.exchange(make_query("big.example.com.", "TXT", edns=True).to_wire()))
            assert not big.flags & dns.flags.TC and big.answer and len(big.to_wire()) > 3000


def test_scripted_dot_pipelining_reuse_and_padding_record(tls_certs, knotd):
    with ScriptedDotServer(tls_certs.server, upstream=knotd.address) as s:
        with DotClient(s.port, ca=tls_certs.ca) as c:
            c.send(q(WWW[0], 1, edns=True))
            for i in range(2, 11):
                c.send(q(API[0], i))
            got = {dns.message.from_wire(c.recv()).id for _ in range(10)}
            assert got == set(range(1, 11))
        assert s.connections == 1 and s.conn_numbers() == [1] * 10
        first = s.queries()[0]
        assert has_opt(first) and len(first) % 128 != 0  # the client did not pad: the recording is raw
        assert not has_opt(s.queries()[1])


def test_scripted_dot_behaviours(tls_certs, knotd):
    s = ScriptedDotServer(tls_certs.server, upstream=knotd.address)
    try:
        s.behaviour = WRONG_ID
        a = dot_exchange(s.port, q(WWW[0], 0x1111), ca=tls_certs.ca)
        assert dns.message.from_wire(a).id != 0x1111 and a[2:] == knotd.ask(q(WWW[0], 0x1111))[2:]

        s.behaviour = WRONG_QUESTION
        m = dns.message.from_wire(dot_exchange(s.port, q(WWW[0], 0x2222), ca=tls_certs.ca))
        assert m.id == 0x2222 and str(m.question[0].name) == "wrong-question.example.com."

        s.behaviour = CLOSE_AFTER_ANSWER
        with DotClient(s.port, ca=tls_certs.ca) as c:
            c.send(q(WWW[0], 1))
            c.send(q(WWW[0], 2))
            answer_of(c.recv(), *WWW, ident=1)
            assert c.recv(timeout=1.0) is None  # closed after the first answer

        s.behaviour = HUGE_LENGTH
        with DotClient(s.port, ca=tls_certs.ca) as c:
            c.send(q(WWW[0], 3))
            assert c.recv(timeout=1.0) is None
            assert c.buf[:2] == b"\xff\xff" and 2 < len(c.buf) < 0xFFFF + 2

        s.behaviour = SILENT
        before = len(s.queries())
        with DotClient(s.port, ca=tls_certs.ca) as c:
            c.send(q(WWW[0], 4))
            assert c.recv(timeout=0.5) is None and s.wait_for(before + 1)[before:] == [q(WWW[0], 4)]

        s.behaviour = OUT_OF_ORDER
        with DotClient(s.port, ca=tls_certs.ca) as c:
            c.sock.sendall(frame(q(WWW[0], 5)) + frame(q(API[0], 6)))
            assert [dns.message.from_wire(c.recv()).id for _ in range(2)] == [6, 5]
            c.send(q(WWW[0], 7))  # alone: flushed after 0.3 s
            answer_of(c.recv(timeout=2.0), *WWW, ident=7)

        s.behaviour = STALL_HANDSHAKE
        before = s.connections
        raw = socket.create_connection(("127.0.0.1", s.port), timeout=0.5)
        try:
            tls = client_context(tls_certs.ca).wrap_socket(raw, server_hostname=SERVER_NAME,
                                                            do_handshake_on_connect=False)
            with pytest.raises((socket.timeout, TimeoutError)):
                tls.do_handshake()
        finally:
            raw.close()
        assert s.wait_connections(before + 1) == before + 1
        assert s.handshakes == before  # the stalled one never completed
        assert not s.errors, s.errors
    finally:
        s.stop()


def test_scripted_dot_restarts_on_the_same_port(tls_certs, knotd):
    s = ScriptedDotServer(tls_certs.server, upstream=knotd.address)
    try:
        port = s.port
        c = DotClient(port, ca=tls_certs.ca)
        answer_of(c.exchange(q(WWW[0], 1)), *WWW)
        s.stop()
        assert c.recv(timeout=1.0) is None  # the old connection is gone
        c.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        s.start()
        assert s.port == port
        answer_of(dot_exchange(port, q(API[0], 2), ca=tls_certs.ca), *API)
        assert s.connections == 2 and s.conn_numbers() == [1, 2]
    finally:
        s.stop()


# ---------------------------------------------------------------- scripted DoH


def test_scripted_doh_answers_kdig_and_records(tls_certs, knotd):
    with ScriptedDohServer(tls_certs.server, upstream=knotd.address) as s:
        r = kdig(f"+tls-ca={tls_certs.ca}", f"+tls-hostname={SERVER_NAME}", f"+https={DOH_PATH}", "@127.0.0.1",
                 "-p", str(s.port), WWW[0], "A")
        assert_kdig_answer(r, *WWW)
        r = kdig(f"+tls-ca={tls_certs.ca}", f"+tls-hostname={SERVER_NAME}", f"+https={DOH_PATH}", "+https-get",
                 "@127.0.0.1", "-p", str(s.port), API[0], "A")
        assert_kdig_answer(r, *API)
        post, get = s.wait_for(2)
        assert (post.method, post.path, post.content_type) == ("POST", DOH_PATH, DNS_MESSAGE)
        assert post.body_length == len(post.body) > 12
        assert post.authority.startswith(SERVER_NAME), post.authority
        assert get.method == "GET" and get.path.startswith(DOH_PATH + "?dns=") and get.body_length == 0
        assert str(dns.message.from_wire(get.dns_wire).question[0].name) == API[0]
        assert s.sni == [SERVER_NAME, SERVER_NAME] and [c.alpn for c in s.conns] == ["h2", "h2"]


def test_scripted_doh_streams_share_one_connection(tls_certs, knotd):
    with ScriptedDohServer(tls_certs.server, upstream=knotd.address) as s:
        with DohClient(s.port, ca=tls_certs.ca) as c:
            sids = [c.send_request(q(WWW[0], 0, edns=True)) for _ in range(8)]
            for resp in c.wait(sids):
                assert resp.status == 200 and resp.headers["content-type"] == DNS_MESSAGE
                answer_of(resp.body, *WWW, ident=0)
            # a big answer crosses DATA frames and flow control windows whole
            big = c.request(make_query("big.example.com.", "TXT", ident=0, edns=True).to_wire())
            assert big.status == 200 and len(dns.message.from_wire(big.body).answer[0]) == 1
        assert s.connections == 1 and set(s.conn_numbers()) == {1} and len(s.requests) == 9
        assert [r.stream_id for r in s.requests][:8] == sids
        # a client that does not offer h2 is closed without a word
        raw = socket.create_connection(("127.0.0.1", s.port), timeout=2)
        tls = client_context(tls_certs.ca, alpn=["http/1.1"]).wrap_socket(raw, server_hostname=SERVER_NAME)
        tls.settimeout(2)
        try:
            assert tls.recv(100) == b""
        except (ssl.SSLError, ConnectionError):
            pass
        finally:
            tls.close()
        assert len(s.requests) == 9


def test_scripted_doh_behaviours(tls_certs, knotd):
    s = ScriptedDohServer(tls_certs.server, upstream=knotd.address)
    try:
        with DohClient(s.port, ca=tls_certs.ca) as c:
            s.behaviour = STATUS_500
            assert c.request(q(WWW[0], 0)).status == 500
            s.behaviour = STATUS_404
            assert c.request(q(WWW[0], 0)).status == 404
            s.behaviour = WRONG_CONTENT_TYPE
            r = c.request(q(WWW[0], 0))
            assert r.status == 200 and r.headers["content-type"] == "text/plain"
            answer_of(r.body, *WWW)
            s.behaviour = RESET_STREAM
            r = c.request(q(WWW[0], 0))
            assert r.reset == h2.errors.ErrorCodes.INTERNAL_ERROR and r.status is None
            s.behaviour = SILENT
            assert c.request(q(WWW[0], 0), timeout=0.5).status is None
            # the connection survived all of it
            s.behaviour = "normal"
            assert c.request(q(WWW[0], 0)).status == 200
            # a POST with another content type is refused like a real server would
            assert c.request(q(WWW[0], 0), content_type="application/octet-stream").status == 415
        assert s.connections == 1

        s.behaviour = GOAWAY
        with DohClient(s.port, ca=tls_certs.ca) as c:
            first = c.request(q(WWW[0], 0))
            assert first.status == 200
            c.pump(1.0)
            assert c.goaway, "no GOAWAY after the first answer"
            assert c.closed, "the connection stays open after GOAWAY"

        s.behaviour = CLOSE_AFTER_ANSWER
        with DohClient(s.port, ca=tls_certs.ca) as c:
            sids = [c.send_request(q(WWW[0], 0)), c.send_request(q(API[0], 0))]
            one, two = c.wait(sids, timeout=2.0)
            assert one.status == 200 and two.status is None and two.closed and c.closed

        s.behaviour = STALL_HANDSHAKE
        with pytest.raises((socket.timeout, TimeoutError, ssl.SSLError)):
            DohClient(s.port, ca=tls_certs.ca, timeout=0.5)
        assert s.connections == 4 and s.handshakes == 3
        assert not s.errors, s.errors
    finally:
        s.stop()


# ---------------------------------------------------------------- config rendering


def test_render_config_with_resolvers(tmp_path, tls_certs):
    resolvers = [
        {"protocol": "dot", "address": "127.0.0.1:8853", "tlsServerName": SERVER_NAME, "caFile": tls_certs.ca,
         "spkiPins": [tls_certs.server.pin, tls_certs.other_ca_server.pin]},
        {"protocol": "doh", "url": f"https://{SERVER_NAME}:8443/dns-query", "address": "127.0.0.1:8443",
         "caFile": str(tls_certs.ca)},
        {"protocol": "doq", "address": "[::1]:8853", "tlsServerName": SERVER_NAME, "caFile": None},
        {"protocol": "do53-udp", "address": "127.0.0.1:5300"},
    ]
    text = render_config(cell="c1", listen_port=5353, allowlist=["example.com"], resolvers=resolvers,
                         resolver_policy="roundRobin", events_path=tmp_path / "e.jsonl")
    pins = ", ".join(f'"{p}"' for p in (tls_certs.server.pin, tls_certs.other_ca_server.pin))
    assert (f'  resolvers:\n    - protocol: "dot"\n      address: "127.0.0.1:8853"\n'
            f'      tlsServerName: "{SERVER_NAME}"\n      caFile: "{tls_certs.ca}"\n      spkiPins: [{pins}]\n'
            f'    - protocol: "doh"\n      address: "127.0.0.1:8443"\n') in text, text
    assert "\nresolverPolicy: roundRobin\n" in text and "None" not in text and "null" not in text
    try:
        import yaml
    except ImportError:  # python3-yaml is not one of the suite's packages: the string checks above stand
        return
    doc = yaml.safe_load(text)
    assert doc["resolverPolicy"] == "roundRobin"
    assert doc["dnsAuthority"]["hostnameAllowlist"] == ["example.com"]
    got = doc["dnsAuthority"]["resolvers"]
    assert got == [
        {"protocol": "dot", "address": "127.0.0.1:8853", "tlsServerName": SERVER_NAME, "caFile": str(tls_certs.ca),
         "spkiPins": [tls_certs.server.pin, tls_certs.other_ca_server.pin]},
        {"protocol": "doh", "address": "127.0.0.1:8443", "url": f"https://{SERVER_NAME}:8443/dns-query",
         "caFile": str(tls_certs.ca)},
        {"protocol": "doq", "address": "[::1]:8853", "tlsServerName": SERVER_NAME},
        {"protocol": "do53-udp", "address": "127.0.0.1:5300"},
    ]
    assert doc["upstreamTimeoutMs"] == 2000 and doc["events"]["path"] == str(tmp_path / "e.jsonl")
    # pins are base64 with '+', '/' and '=': they must come back unchanged
    assert all(isinstance(p, str) and len(base64.b64decode(p)) == 32 for p in got[0]["spkiPins"])


def test_render_config_without_resolvers_is_unchanged(tmp_path):
    text = render_config(cell="c1", listen_port=5353, allowlist=["example.com"], upstream="127.0.0.1:5300",
                         events_path=tmp_path / "e.jsonl")
    assert text == (
        "cell: c1\nlisten:\n  udp: \"127.0.0.1:5353\"\ndnsAuthority:\n  hostnameAllowlist:\n"
        "    - \"example.com\"\n  resolvers:\n    - protocol: do53-udp\n      address: \"127.0.0.1:5300\"\n"
        "upstreamTimeoutMs: 2000\nmaxInflight: 10000\nevents:\n  sink: file\n"
        f"  path: \"{tmp_path / 'e.jsonl'}\"\n")
    assert "resolverPolicy" not in text
