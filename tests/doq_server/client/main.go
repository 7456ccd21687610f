// Command dnsgate-doq-test-client is the smallest DNS-over-QUIC client that
// can smoke-test dnsgate-doq-test-server (smoke.sh): Debian 12 has no DoQ
// client (its kdig lacks QUIC). It is not dnsgate's DoQ client and proves
// nothing about it; the integration tests do that.
//
// It prints one line per answer: "id=0 rcode=0 answers=N A:192.0.2.1 ...".
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"time"

	quic "github.com/lucas-clemente/quic-go"
)

var qtypes = map[string]uint16{"A": 1, "NS": 2, "SOA": 6, "TXT": 16, "AAAA": 28}

func main() {
	server := flag.String("server", "", "DoQ server, 127.0.0.1:PORT")
	caFile := flag.String("ca", "", "PEM CA that the server's certificate must chain to")
	serverName := flag.String("server-name", "", "name the certificate must carry (SNI)")
	name := flag.String("name", "www.example.com.", "name to query")
	qtype := flag.String("type", "A", "query type: A, AAAA, NS, SOA, TXT")
	id := flag.Uint("id", 0, "DNS message id to send (RFC 9250 wants 0)")
	count := flag.Int("count", 1, "queries per connection, one stream each")
	connections := flag.Int("connections", 1, "connections, one after the other (the later ones resume the TLS session)")
	timeout := flag.Duration("timeout", 5*time.Second, "time for each connection: handshake and all its queries")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("dnsgate-doq-test-client: ")

	t, ok := qtypes[strings.ToUpper(*qtype)]
	if !ok {
		log.Fatalf("unknown --type %q", *qtype)
	}
	query, err := buildQuery(*name, t, uint16(*id))
	if err != nil {
		log.Fatal(err)
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		log.Fatalf("no certificate in %s", *caFile)
	}
	tlsConf := &tls.Config{
		RootCAs:            roots,
		ServerName:         *serverName,
		NextProtos:         []string{"doq"},
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
	}

	for c := 0; c < *connections; c++ {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		conn, err := quic.DialAddrContext(ctx, *server, tlsConf, nil)
		if err != nil {
			log.Fatal(err)
		}
		for i := 0; i < *count; i++ {
			answer, err := exchange(ctx, conn, query)
			if err != nil {
				log.Fatal(err)
			}
			line, err := describe(answer)
			if err != nil {
				log.Fatal(err)
			}
			fmt.Printf("%s resumed=%v\n", line, conn.ConnectionState().TLS.DidResume)
		}
		conn.CloseWithError(0, "")
		cancel()
	}
}

func exchange(ctx context.Context, conn quic.Connection, query []byte) ([]byte, error) {
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	frame := make([]byte, 2+len(query))
	binary.BigEndian.PutUint16(frame, uint16(len(query)))
	copy(frame[2:], query)
	if _, err := str.Write(frame); err != nil {
		return nil, err
	}
	str.Close() // FIN: RFC 9250 §4.2, one query per stream
	deadline, _ := ctx.Deadline()
	str.SetReadDeadline(deadline)
	buf, err := io.ReadAll(str)
	if err != nil {
		return nil, err
	}
	if len(buf) < 2 || len(buf) != 2+int(binary.BigEndian.Uint16(buf)) {
		return nil, fmt.Errorf("answer of %d octets does not match its length prefix", len(buf))
	}
	return buf[2:], nil
}

func buildQuery(name string, qtype, id uint16) ([]byte, error) {
	msg := make([]byte, 12, 512)
	binary.BigEndian.PutUint16(msg[0:], id)
	binary.BigEndian.PutUint16(msg[2:], 0x0100) // RD
	binary.BigEndian.PutUint16(msg[4:], 1)      // QDCOUNT
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if len(label) == 0 || len(label) > 63 {
			return nil, fmt.Errorf("bad name %q", name)
		}
		msg = append(msg, byte(len(label)))
		msg = append(msg, label...)
	}
	msg = append(msg, 0, byte(qtype>>8), byte(qtype), 0, 1) // root, QTYPE, IN
	return msg, nil
}

// describe summarises an answer: its id, rcode and the answer records.
func describe(msg []byte) (string, error) {
	if len(msg) < 12 {
		return "", errors.New("answer shorter than a DNS header")
	}
	id := binary.BigEndian.Uint16(msg)
	rcode := msg[3] & 0x0f
	qd := int(binary.BigEndian.Uint16(msg[4:]))
	an := int(binary.BigEndian.Uint16(msg[6:]))
	out := fmt.Sprintf("id=%d rcode=%d tc=%v answers=%d", id, rcode, msg[2]&0x02 != 0, an)
	off := 12
	var err error
	for i := 0; i < qd; i++ {
		if off, err = skipName(msg, off); err != nil {
			return "", err
		}
		off += 4
	}
	for i := 0; i < an; i++ {
		if off, err = skipName(msg, off); err != nil {
			return "", err
		}
		if off+10 > len(msg) {
			return "", errors.New("answer record cut short")
		}
		rtype := binary.BigEndian.Uint16(msg[off:])
		rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
		off += 10
		if off+rdlen > len(msg) {
			return "", errors.New("rdata cut short")
		}
		rdata := msg[off : off+rdlen]
		off += rdlen
		switch {
		case rtype == 1 && rdlen == 4, rtype == 28 && rdlen == 16:
			out += " " + map[uint16]string{1: "A", 28: "AAAA"}[rtype] + ":" + net.IP(rdata).String()
		default:
			out += fmt.Sprintf(" type%d:%doctets", rtype, rdlen)
		}
	}
	return out, nil
}

func skipName(msg []byte, off int) (int, error) {
	for off < len(msg) {
		l := int(msg[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xc0 == 0xc0:
			return off + 2, nil // a compression pointer ends the name
		default:
			off += 1 + l
		}
	}
	return 0, errors.New("name runs past the message")
}
