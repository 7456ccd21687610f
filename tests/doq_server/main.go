// Command dnsgate-doq-test-server is a DNS-over-QUIC server (RFC 9250) for
// dnsgate's integration tests. No Debian 12 package serves DoQ, so this one
// is built on Debian's quic-go: dnsgate's ngtcp2 client is then checked
// against a QUIC stack that is not its own.
//
// It forwards each query over UDP (TCP when the answer is truncated) to a
// plain DNS server such as knotd, records what it received, and can be told
// to misbehave in the ways a client has to survive (see --mode).
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	quic "github.com/lucas-clemente/quic-go"
)

// DoQ error codes, RFC 9250 §4.3.
const (
	doqNoError          = 0x0
	doqInternalError    = 0x1
	doqProtocolError    = 0x2
	doqRequestCancelled = 0x3
)

const (
	// A client must FIN its stream after the query; one that does not is
	// broken, and the test should see a protocol error rather than a hang.
	queryReadTimeout = 10 * time.Second
	// knotd on a loaded two-CPU machine has been seen to take 2 s; the
	// tests' own timeouts for such answers are longer still.
	upstreamTimeout = 6 * time.Second
	// close-after-answer waits this long before closing the connection:
	// quic-go drops unsent stream data on close, and the point of the mode
	// is a client that got its answer and then lost the connection.
	closeDelay = 100 * time.Millisecond
	// The id every answer carries in nonzero-id mode.
	wrongID = 0x1234
)

var modes = []struct{ name, help string }{
	{"normal", "forward every query and relay the answer"},
	{"nonzero-id", "answers carry id 0x1234 instead of 0 (a protocol error for the client)"},
	{"close-after-answer", "answer one query per connection, then close it with DOQ_NO_ERROR"},
	{"stall-handshake", "read and discard UDP packets, never complete a handshake"},
	{"reset-stream", "reset every stream with DOQ_REQUEST_CANCELLED instead of answering"},
	{"no-answer", "read each query and never answer it"},
}

func modeUsage() string {
	u := "behaviour:"
	for _, m := range modes {
		u += "\n  " + m.name + ": " + m.help
	}
	return u
}

func knownMode(name string) bool {
	for _, m := range modes {
		if m.name == name {
			return true
		}
	}
	return false
}

type server struct {
	mode     string
	upstream string
	rec      *recorder
}

func main() {
	listen := flag.String("listen", "127.0.0.1:853", "UDP address to serve on (port 0: any free port)")
	certFile := flag.String("cert", "", "PEM certificate (chain) file")
	keyFile := flag.String("key", "", "PEM private key file")
	upstream := flag.String("upstream", "", "plain DNS server to forward to, 127.0.0.1:PORT")
	recordFile := flag.String("record", "", "append one JSON line per query received to this file")
	mode := flag.String("mode", "normal", modeUsage())
	retry := flag.Bool("retry", false, "make every client prove its address with a Retry packet")
	flag.Parse()

	log.SetPrefix("dnsgate-doq-test-server: ")
	log.SetFlags(log.Lmicroseconds)
	if !knownMode(*mode) {
		log.Fatalf("unknown --mode %q", *mode)
	}
	answers := *mode == "normal" || *mode == "nonzero-id" || *mode == "close-after-answer"
	if answers && *upstream == "" {
		log.Fatalf("--mode %s needs --upstream", *mode)
	}
	rec, err := openRecorder(*recordFile)
	if err != nil {
		log.Fatal(err)
	}

	// Registered before the socket exists, so that a SIGTERM that comes
	// while the server starts still ends it with status 0.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)

	pc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		log.Fatal(err)
	}

	if *mode == "stall-handshake" {
		// A silent peer: the client's Initial packets arrive and vanish,
		// so its handshake can only time out.
		go func() {
			buf := make([]byte, 65536)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return
				}
			}
		}()
		ready(pc)
		<-stop
		return
	}

	if *certFile == "" || *keyFile == "" {
		log.Fatal("--cert and --key are required")
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatal(err)
	}
	tlsConf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"doq"},
		MinVersion:   tls.VersionTLS13,
	}
	quicConf := &quic.Config{
		// RFC 9250 §4.2: a client never opens unidirectional streams.
		MaxIncomingUniStreams:    -1,
		RequireAddressValidation: func(net.Addr) bool { return *retry },
	}
	// Tests run many servers on one machine; quic-go's warning about the
	// UDP buffer size would only clutter their logs.
	os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	ln, err := quic.Listen(pc, tlsConf, quicConf)
	if err != nil {
		log.Fatal(err)
	}
	ready(pc)

	s := &server{mode: *mode, upstream: *upstream, rec: rec}
	go func() {
		for n := 1; ; n++ {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				if !errors.Is(err, quic.ErrServerClosed) {
					log.Fatal(err)
				}
				return
			}
			go s.serveConn(n, conn)
		}
	}()
	<-stop
	// Closing the listener sends every open connection a CONNECTION_CLOSE,
	// so clients learn at once that the server went away.
	ln.Close()
}

// ready tells the test which port to use; it reads stdout line by line, and
// os.Stdout is unbuffered, so the line is there at once.
func ready(pc net.PacketConn) {
	fmt.Printf("ready %d\n", pc.LocalAddr().(*net.UDPAddr).Port)
}

// conn is one client connection.
type conn struct {
	quic.Connection
	n       int // 1 for the first connection the server accepted, and so on
	resumed bool
	// Set once close-after-answer has given its one answer: queries that
	// arrive after it die with the connection, however fast the client is.
	closing atomic.Bool
}

func (s *server) serveConn(n int, qc quic.Connection) {
	c := &conn{Connection: qc, n: n, resumed: qc.ConnectionState().TLS.DidResume}
	for {
		str, err := c.AcceptStream(context.Background())
		if err != nil {
			return // the connection is gone
		}
		go s.serveStream(c, str)
	}
}

func (s *server) serveStream(c *conn, str quic.Stream) {
	query, err := readQuery(str)
	if err != nil {
		var serr *quic.StreamError
		if errors.As(err, &serr) {
			return // the client cancelled the query: its right
		}
		log.Printf("conn %d stream %d: %v", c.n, str.StreamID(), err)
		c.CloseWithError(doqProtocolError, err.Error())
		return
	}
	id := binary.BigEndian.Uint16(query)
	s.rec.record(c.n, str.StreamID(), query, c.resumed)
	if id != 0 {
		// RFC 9250 §4.2.1: the server MUST treat it as a protocol error.
		c.CloseWithError(doqProtocolError, "message id is not 0")
		return
	}

	switch s.mode {
	case "no-answer":
		return // the stream stays open until the client or the idle timeout ends it
	case "reset-stream":
		str.CancelWrite(doqRequestCancelled)
		return
	}

	if s.mode == "close-after-answer" && !c.closing.CompareAndSwap(false, true) {
		return // another query took this connection's one answer
	}
	answer, err := forward(s.upstream, query)
	if err != nil {
		log.Printf("conn %d stream %d: upstream: %v", c.n, str.StreamID(), err)
		str.CancelWrite(doqInternalError)
		return
	}
	if s.mode == "nonzero-id" {
		binary.BigEndian.PutUint16(answer, wrongID)
	} else {
		binary.BigEndian.PutUint16(answer, 0)
	}
	frame := make([]byte, 2+len(answer))
	binary.BigEndian.PutUint16(frame, uint16(len(answer)))
	copy(frame[2:], answer)
	if _, err := str.Write(frame); err != nil {
		log.Printf("conn %d stream %d: write: %v", c.n, str.StreamID(), err)
		return
	}
	str.Close() // FIN: the answer is complete

	if s.mode == "close-after-answer" {
		time.Sleep(closeDelay)
		c.CloseWithError(doqNoError, "")
	}
}

// readQuery reads one length-prefixed DNS message up to the stream's FIN.
func readQuery(str quic.Stream) ([]byte, error) {
	str.SetReadDeadline(time.Now().Add(queryReadTimeout))
	buf, err := io.ReadAll(io.LimitReader(str, 2+65535+1))
	if err != nil {
		var nerr net.Error
		if errors.As(err, &nerr) && nerr.Timeout() {
			return nil, fmt.Errorf("no FIN within %v", queryReadTimeout)
		}
		return nil, err
	}
	if len(buf) < 2 {
		return nil, fmt.Errorf("stream ended after %d octets, before the length prefix", len(buf))
	}
	if want := 2 + int(binary.BigEndian.Uint16(buf)); len(buf) != want {
		return nil, fmt.Errorf("length prefix says %d octets, stream carried %d", want-2, len(buf)-2)
	}
	if len(buf) < 2+12 {
		return nil, fmt.Errorf("message of %d octets is shorter than a DNS header", len(buf)-2)
	}
	return buf[2:], nil
}

// forward sends the query with a fresh random id, as a stub resolver would,
// and returns the upstream's answer (with that id; the caller rewrites it).
func forward(upstream string, query []byte) ([]byte, error) {
	q := append([]byte(nil), query...)
	if _, err := rand.Read(q[:2]); err != nil {
		return nil, err
	}
	answer, err := exchangeUDP(upstream, q)
	if err != nil {
		return nil, err
	}
	// DoQ has no size limit of its own, so a truncated UDP answer is asked
	// again over TCP: the client gets the whole of it.
	if answer[2]&0x02 != 0 {
		return exchangeTCP(upstream, q)
	}
	return answer, nil
}

func exchangeUDP(upstream string, q []byte) ([]byte, error) {
	c, err := net.Dial("udp", upstream)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(upstreamTimeout))
	if _, err := c.Write(q); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		// Anything but the answer to this id is a stray; wait on.
		if n >= 12 && buf[0] == q[0] && buf[1] == q[1] {
			return buf[:n], nil
		}
	}
}

func exchangeTCP(upstream string, q []byte) ([]byte, error) {
	c, err := net.DialTimeout("tcp", upstream, upstreamTimeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(upstreamTimeout))
	frame := make([]byte, 2+len(q))
	binary.BigEndian.PutUint16(frame, uint16(len(q)))
	copy(frame[2:], q)
	if _, err := c.Write(frame); err != nil {
		return nil, err
	}
	var size [2]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return nil, err
	}
	answer := make([]byte, binary.BigEndian.Uint16(size[:]))
	if _, err := io.ReadFull(c, answer); err != nil {
		return nil, err
	}
	if len(answer) < 12 || answer[0] != q[0] || answer[1] != q[1] {
		return nil, errors.New("TCP answer does not match the query")
	}
	return answer, nil
}

// recorder appends one JSON line per query, so a test can check what
// dnsgate really put on the wire: id 0, padding, queries per connection.
type recorder struct {
	mu sync.Mutex
	f  *os.File
}

type recordLine struct {
	Conn    int    `json:"conn"`
	Stream  int64  `json:"stream"`
	Len     int    `json:"len"`
	ID      uint16 `json:"id"`
	Hex     string `json:"hex"`
	Resumed bool   `json:"resumed"`
}

func openRecorder(path string) (*recorder, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &recorder{f: f}, nil
}

func (r *recorder) record(conn int, stream quic.StreamID, msg []byte, resumed bool) {
	if r == nil {
		return
	}
	line, _ := json.Marshal(recordLine{
		Conn:    conn,
		Stream:  int64(stream),
		Len:     len(msg),
		ID:      binary.BigEndian.Uint16(msg),
		Hex:     hex.EncodeToString(msg),
		Resumed: resumed,
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	// An unbuffered file: the line is in the file when the test looks.
	if _, err := r.f.Write(append(line, '\n')); err != nil {
		log.Printf("record: %v", err)
	}
}
