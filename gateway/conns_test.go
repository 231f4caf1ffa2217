package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/flashgate/flashgate/internal/config"
)

// connTestServer serves a gateway without dependencies (the routes it is
// asked for answer from memory) with the given connection limits.
func connTestServer(t *testing.T, limits *connLimits, readTimeout time.Duration) string {
	t.Helper()
	cfg := config.Default()
	cfg.TokenSecret = "conn-test-secret-0123456789"
	s := newTestServer(Config{Config: cfg, ReadTimeout: readTimeout})
	s.largeBodies = newLargeBodySlots(time.Minute)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer()
	go srv.Serve(countingListener{Listener: ln, limits: limits})
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// dialFrom connects from a loopback address of its own (127.0.0.0/8 is all
// loopback on Linux), so that a test can be several peers.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends a raw request on c and reads the answer.
func roundTrip(t *testing.T, c net.Conn, raw string) (*http.Response, string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if raw != "" {
		if _, err := c.Write([]byte(raw)); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const getEvents = "GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n"

// TestConnLimits: with at most 2 connections per peer and 4 in all, a
// peer's third connection is answered 429 and a fifth connection 503, both
// in the API's JSON error shape with Retry-After, before they send a
// request; once a connection closes, its place is free again.
func TestConnLimits(t *testing.T) {
	addr := connTestServer(t, &connLimits{max: 4, perIP: 2}, 0)
	a1, a2 := dialFrom(t, "127.0.0.1", addr), dialFrom(t, "127.0.0.1", addr)
	for _, c := range []net.Conn{a1, a2} {
		if resp, body := roundTrip(t, c, getEvents); resp.StatusCode != 200 {
			t.Fatalf("connection within the limits: %d %s", resp.StatusCode, body)
		}
	}
	resp, body := roundTrip(t, dialFrom(t, "127.0.0.1", addr), "")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, `"code":"rate_limited"`) {
		t.Errorf("third connection of one peer: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	b1, b2 := dialFrom(t, "127.0.0.2", addr), dialFrom(t, "127.0.0.2", addr)
	for _, c := range []net.Conn{b1, b2} {
		if resp, body := roundTrip(t, c, getEvents); resp.StatusCode != 200 {
			t.Fatalf("another peer within the limits: %d %s", resp.StatusCode, body)
		}
	}
	resp, body = roundTrip(t, dialFrom(t, "127.0.0.3", addr), "")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, `"code":"unavailable"`) {
		t.Errorf("fifth connection: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	a1.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dialFrom(t, "127.0.0.3", addr)
		if resp, _ := roundTrip(t, c, getEvents); resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed connection's place never came free")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLargeBodiesBounded: a body declared over 8 KiB is read, for a clean
// 413, only while fewer than largeBodies such bodies are being read; past
// that, one is refused with 413 as soon as its headers are in, without
// waiting for (or buffering) its body. Slots of bodies that never arrive
// come back when the read times out.
func TestLargeBodiesBounded(t *testing.T) {
	addr := connTestServer(t, nil, 500*time.Millisecond)
	const size = 200 << 10
	head := fmt.Sprintf("POST /api/v1/events/1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)

	// largeBodies slow clients: headers and a little of the body.
	for i := 0; i < largeBodies; i++ {
		c := dialFrom(t, "127.0.0.1", addr)
		if _, err := c.Write([]byte(head + "{")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // their headers are in
	// One more: refused at once, though it sends no body at all.
	c := dialFrom(t, "127.0.0.1", addr)
	began := time.Now()
	resp, body := roundTrip(t, c, head)
	if resp.StatusCode != 413 || !strings.Contains(body, `"code":"body_too_large"`) || time.Since(began) > 400*time.Millisecond {
		t.Fatalf("large body past the slots: %d %s after %v, want 413 at once", resp.StatusCode, body, time.Since(began))
	}

	// The slow ones time out (408) and give their slots back: a large body
	// is read again, and refused with a clean 413 once it has all arrived.
	time.Sleep(time.Second)
	c = dialFrom(t, "127.0.0.1", addr)
	c.Write([]byte(head))
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, _ := c.Read(make([]byte, 1)); n != 0 {
		t.Fatal("answered before the body arrived: no slot was free")
	}
	resp, body = roundTrip(t, c, strings.Repeat("x", size))
	if resp.StatusCode != 413 || !strings.Contains(body, `"code":"body_too_large"`) {
		t.Fatalf("large body with a slot: %d %s", resp.StatusCode, body)
	}
}

// A slot whose request vanished without an answer (no handler ran) is taken
// back once it is stale, so no path of fasthttp's can leak them for good.
func TestLargeBodySlotsReclaimStale(t *testing.T) {
	l := newLargeBodySlots(time.Second)
	now := time.Now()
	hs := make([]fasthttp.RequestHeader, largeBodies+1)
	for i := 0; i < largeBodies; i++ {
		if !l.take(&hs[i], now) {
			t.Fatalf("slot %d refused", i)
		}
	}
	if l.take(&hs[largeBodies], now.Add(500*time.Millisecond)) {
		t.Fatal("a slot past the bound was given")
	}
	if !l.take(&hs[largeBodies], now.Add(2*time.Second)) {
		t.Fatal("stale slots were not taken back")
	}
	l.release(&hs[largeBodies])
	if n := len(l.held); n != 0 {
		t.Errorf("%d slots held after the release, want 0", n)
	}
}

// TestHeaderLimit: a request head larger than FLASHGATE_GATEWAY_MAX_HEADER_BYTES
// is answered 400 in the JSON error shape.
func TestHeaderLimit(t *testing.T) {
	addr := connTestServer(t, nil, 0)
	c := dialFrom(t, "127.0.0.1", addr)
	resp, body := roundTrip(t, c, "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 5000)+"\r\n\r\n")
	if resp.StatusCode != 400 || !strings.Contains(body, `"code":"invalid_request"`) {
		t.Errorf("5 KB of headers: %d %s", resp.StatusCode, body)
	}
	c = dialFrom(t, "127.0.0.1", addr)
	if resp, body := roundTrip(t, c, "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nX-Small: "+strings.Repeat("a", 3000)+"\r\n\r\n"); resp.StatusCode != 200 {
		t.Errorf("3 KB of headers: %d %s", resp.StatusCode, body)
	}
}
