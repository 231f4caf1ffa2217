package ws

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Short listener timeouts for these tests. The idle timeout differs from
// the header timeout so that a test can tell which one closed a connection.
const (
	testHeaderTimeout = 300 * time.Millisecond
	testIdleTimeout   = 600 * time.Millisecond
)

func startWSTimeouts(t *testing.T, mod func(*Config)) *testEnv {
	t.Helper()
	return startWSConfig(t, func(c *Config) {
		c.ReadHeaderTimeout = testHeaderTimeout
		c.IdleTimeout = testIdleTimeout
		if mod != nil {
			mod(c)
		}
	})
}

// rawDial opens a plain TCP connection to the service.
func (e *testEnv) rawDial() net.Conn {
	e.t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func rawWrite(t *testing.T, c net.Conn, s string) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// readToEOF reads from r until the server closes the connection, and fails
// the test if it does not within wait.
func readToEOF(t *testing.T, c net.Conn, r io.Reader) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("after %q: %v, want the server to close the connection", b, err)
	}
	return b
}

// healthzRequest is a complete keep-alive request.
const healthzRequest = "GET /healthz HTTP/1.1\r\nHost: ws.test\r\n\r\n"

// readHealthz reads the answer to healthzRequest, leaving the connection open.
func readHealthz(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the /healthz answer: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("/healthz: %d (close %v), want 200 keep-alive", resp.StatusCode, resp.Close)
	}
}

// A connection on which no request began is closed without a word once
// the header timeout is over, however long it has been open.
func TestTimeoutNothingSent(t *testing.T) {
	e := startWSTimeouts(t, nil)
	c := e.rawDial()
	began := time.Now()
	if b := readToEOF(t, c, c); len(b) != 0 {
		t.Fatalf("got %q, want the connection closed without a reply", b)
	}
	if took := time.Since(began); took < testHeaderTimeout*3/4 {
		t.Fatalf("closed after %v, before the header timeout (%v)", took, testHeaderTimeout)
	}
}

// A request that began but did not arrive in time gets 408 request_timeout
// in the API's error format, then the connection is closed.
func TestTimeoutPartialRequest(t *testing.T) {
	e := startWSTimeouts(t, nil)
	cases := []struct {
		name      string
		keepAlive bool // a complete request first, so the partial one is the second
		partial   string
	}{
		{"request line cut off", false, "GET /heal"},
		{"headers cut off", false, "GET /healthz HTTP/1.1\r\nHost: ws.test\r\n"},
		{"WebSocket handshake cut off", false, "GET /ws?token=" + url.QueryEscape(e.token(1)) +
			" HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"},
		{"second request cut off", true, "GET /healthz HTTP/1.1\r\nHost: ws"},
		// Fewer bytes than net/http waits for before it starts its header
		// timer: the idle timeout ends this one.
		{"second request, two bytes", true, "GE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.rawDial()
			br := bufio.NewReader(c)
			if tc.keepAlive {
				rawWrite(t, c, healthzRequest)
				readHealthz(t, c, br)
			}
			rawWrite(t, c, tc.partial)
			raw := readToEOF(t, c, br)

			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
			if err != nil {
				t.Fatalf("got %q: %v", raw, err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("got %q: %v", raw, err)
			}
			if resp.StatusCode != http.StatusRequestTimeout || resp.Proto != "HTTP/1.1" {
				t.Fatalf("got %q, want HTTP/1.1 408", raw)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			// ReadResponse consumes the header into resp.Close.
			if !resp.Close || !bytes.Contains(raw, []byte("\r\nConnection: close\r\n")) {
				t.Errorf("got %q, want Connection: close", raw)
			}
			var got struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(body, &got); err != nil || got.Error.Code != "request_timeout" || got.Error.Message == "" {
				t.Errorf("body %s, want a request_timeout API error", body)
			}
			if !bytes.HasSuffix(raw, body) {
				t.Errorf("bytes after the response: %q", raw)
			}
		})
	}
}

// A keep-alive connection that stays idle past the idle timeout is closed
// without a word.
func TestTimeoutIdleKeepAlive(t *testing.T) {
	e := startWSTimeouts(t, nil)
	c := e.rawDial()
	br := bufio.NewReader(c)
	for range 2 { // the second request proves the first left the connection usable
		rawWrite(t, c, healthzRequest)
		readHealthz(t, c, br)
	}
	idle := time.Now()
	if b := readToEOF(t, c, br); len(b) != 0 {
		t.Fatalf("got %q after the connection went idle, want nothing", b)
	}
	// Closed by the idle timeout, not the shorter header timeout.
	if took := time.Since(idle); took < testIdleTimeout*3/4 {
		t.Fatalf("closed after %v idle, before the idle timeout (%v)", took, testIdleTimeout)
	}
}

// A malformed request that did arrive still gets net/http's 400.
func TestTimeoutMalformedRequest(t *testing.T) {
	e := startWSTimeouts(t, nil)
	for name, req := range map[string]string{
		"request line": "NOT A REQUEST\r\n\r\n",
		"header":       "GET /healthz HTTP/1.1\r\nHost: ws.test\r\nno colon here\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c := e.rawDial()
			rawWrite(t, c, req)
			raw := readToEOF(t, c, c)
			if !bytes.HasPrefix(raw, []byte("HTTP/1.1 400 ")) || bytes.Contains(raw, []byte("408")) {
				t.Fatalf("got %q, want net/http's 400 alone", raw)
			}
		})
	}
}

// wsHandshake upgrades a raw connection and returns the reader holding the
// rest of the stream.
func (e *testEnv) wsHandshake(c net.Conn, uid int64) *bufio.Reader {
	e.t.Helper()
	rawWrite(e.t, c, "GET /ws?token="+url.QueryEscape(e.token(uid))+" HTTP/1.1\r\nHost: ws.test\r\n"+
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		e.t.Fatalf("handshake: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		e.t.Fatalf("handshake: %s", resp.Status)
	}
	return br
}

// wsOpcodes parses a server → client byte stream as WebSocket frames and
// returns their opcodes; it fails on anything else, such as raw HTTP.
func wsOpcodes(t *testing.T, raw []byte) []byte {
	t.Helper()
	if bytes.Contains(raw, []byte("HTTP/")) {
		t.Fatalf("raw HTTP in the WebSocket stream: %q", raw)
	}
	var ops []byte
	r := bytes.NewReader(raw)
	for r.Len() > 0 {
		var h [2]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			t.Fatalf("truncated frame in %q", raw)
		}
		op := h[0] & 0x0f
		if h[0]&0x70 != 0 || h[1]&0x80 != 0 || (op > 2 && op < 8) || op > 10 {
			t.Fatalf("not a server WebSocket frame at byte %d of %q", len(raw)-r.Len()-2, raw)
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var l uint16
			err := binary.Read(r, binary.BigEndian, &l)
			if err != nil {
				t.Fatalf("truncated frame in %q", raw)
			}
			n = uint64(l)
		case 127:
			if err := binary.Read(r, binary.BigEndian, &n); err != nil {
				t.Fatalf("truncated frame in %q", raw)
			}
		}
		if uint64(r.Len()) < n {
			t.Fatalf("truncated frame in %q", raw)
		}
		r.Seek(int64(n), io.SeekCurrent)
		ops = append(ops, op)
	}
	return ops
}

// An upgraded connection is not HTTP any more: when gorilla's read
// deadline fires (a client that does not answer pings), well after the
// header timeout, the connection ends with WebSocket frames only, never a
// stray 408; and a client that answers pings keeps working however long it
// stays idle.
func TestTimeoutWebSocket(t *testing.T) {
	t.Run("pong timeout", func(t *testing.T) {
		e := startWSTimeouts(t, func(c *Config) {
			c.pingPeriod = 100 * time.Millisecond
			c.pongWait = 400 * time.Millisecond // read deadline 500 ms after connecting
		})
		const series = `flashgate_ws_dropped_connections_total{reason="pong_timeout"}`
		before := e.metricValue(series)
		c := e.rawDial()
		br := e.wsHandshake(c, 60)
		raw := readToEOF(t, c, br) // never answering a ping
		ops := wsOpcodes(t, raw)
		if len(ops) == 0 || ops[0] != 0x9 {
			t.Fatalf("frames %x, want pings", ops)
		}
		if got := e.metricValue(series); got != before+1 {
			t.Fatalf("%s went from %v to %v: the read deadline did not end the connection", series, before, got)
		}
	})

	t.Run("idle but alive", func(t *testing.T) {
		e := startWSTimeouts(t, func(c *Config) {
			c.pingPeriod = 150 * time.Millisecond
			c.pongWait = time.Second // generous: the client answers from a goroutine
		})
		c := e.dial(61) // its reader answers pings
		time.Sleep(5 * testHeaderTimeout)
		rec, want := ticketRec(t, 61, "T-idle")
		e.produce(rec)
		c.expect(want)
		c.sync()
		select {
		case err := <-c.errc:
			t.Fatalf("connection ended: %v", err)
		default:
		}
	})
}
