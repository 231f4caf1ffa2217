package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flashgate/flashgate/internal/config"
)

// idleServer serves the gateway's HTTP server, with short read and idle
// timeouts, on a loopback listener. Only routes that need no dependency
// are asked for.
func idleServer(t *testing.T) string {
	t.Helper()
	cfg := config.Default()
	s := newTestServer(Config{Config: cfg, ReadTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer()
	go srv.Serve(countingListener{Listener: ln})
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// readAll reads what the server writes until it closes the connection, or
// fails the test after 5 s.
func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("the server did not close the connection: %v (read %q)", err, b)
	}
	return string(b)
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestIdleConnections: over a raw socket, what a connection that sends
// nothing, half a request, or nothing more after a request gets when the
// server's timeouts fire.
func TestIdleConnections(t *testing.T) {
	addr := idleServer(t)

	t.Run("nothing sent: closed without a byte", func(t *testing.T) {
		c := dial(t, addr)
		if got := readAll(t, c); got != "" {
			t.Errorf("the server wrote %q to a connection that sent nothing", got)
		}
	})

	for name, partial := range map[string]string{
		"headers cut off": "GET /healthz HTTP/1.1\r\nHost: x\r\n",
		"body cut off":    "POST /api/v1/dev/token HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{\"user_id\":",
	} {
		t.Run(name+": 408 request_timeout", func(t *testing.T) {
			c := dial(t, addr)
			if _, err := io.WriteString(c, partial); err != nil {
				t.Fatal(err)
			}
			got := readAll(t, c)
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
			if err != nil {
				t.Fatalf("not an HTTP response: %q", got)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 408 || resp.Header.Get("Content-Type") != "application/json" || !resp.Close ||
				!strings.Contains(string(body), `"code":"request_timeout"`) {
				t.Errorf("got %d %v %s, want 408 request_timeout as JSON with Connection: close", resp.StatusCode, resp.Header, body)
			}
		})
	}

	t.Run("keep-alive idle past the idle timeout: closed without a byte", func(t *testing.T) {
		c := dial(t, addr)
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("healthz: %v %v", resp, err)
		}
		io.ReadAll(resp.Body)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		rest, err := io.ReadAll(br)
		if err != nil || len(rest) != 0 {
			t.Errorf("after the idle timeout: %q, %v; want a close and nothing more", rest, err)
		}
	})

	t.Run("malformed request: 400 invalid_request", func(t *testing.T) {
		c := dial(t, addr)
		if _, err := io.WriteString(c, "NOT HTTP AT ALL\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		got := readAll(t, c)
		if !strings.HasPrefix(got, "HTTP/1.1 400") || !strings.Contains(got, `"code":"invalid_request"`) {
			t.Errorf("got %q, want 400 invalid_request", got)
		}
	})
}
