package gateway

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/testenv"
)

// Request logs carry the request id, route and user, and never a token, a
// signature or a secret, even at debug level.
func TestRequestLogsHoldNoSecrets(t *testing.T) {
	var buf testenv.SyncBuffer
	cfg := config.Default()
	cfg.TokenSecret = "log-test-secret-0123456789"
	cfg.PaySecret = "log-test-pay-secret"
	s := newTestServer(Config{Config: cfg})
	s.log = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	admin := s.signer.Sign(7, auth.RoleUser, time.Hour) // a user token on an admin route: 403 after verification
	sig := strings.Repeat("ab", 32)
	for _, req := range []struct {
		method, path, authz, sigHdr, rid string
		internal                         bool
	}{
		{"POST", "/api/v1/admin/events", "Bearer " + admin, "", "client-req-1", true},
		{"POST", "/api/v1/events/1/orders", "Bearer " + admin + "x", "", "", false},
		{"GET", "/api/v1/nope", "Bearer " + admin, sig, "", false},
	} {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(req.method)
		ctx.Request.SetRequestURI(req.path)
		ctx.Request.Header.Set("Authorization", req.authz)
		if req.sigHdr != "" {
			ctx.Request.Header.Set("X-Signature", req.sigHdr)
		}
		if req.rid != "" {
			ctx.Request.Header.Set("X-Request-Id", req.rid)
		}
		if req.internal {
			s.InternalHandler(&ctx)
		} else {
			s.Handler(&ctx)
		}
		if got := string(ctx.Response.Header.Peek("X-Request-Id")); got == "" || (req.rid != "" && got != req.rid) {
			t.Errorf("%s %s: X-Request-Id %q", req.method, req.path, got)
		}
	}
	logs := buf.String()
	for _, secret := range []string{admin, sig, cfg.TokenSecret, cfg.PaySecret, strings.SplitN(admin, ".", 2)[1]} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a secret %q:\n%s", secret, logs)
		}
	}
	for _, want := range []string{`"request_id":"client-req-1"`, `"route":"/api/v1/admin/events"`, `"user":7`, `"status":403`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}

// TestFasthttpLogsHoldNoSecrets: requests fasthttp itself cannot parse
// (never reaching the handler) carry a bearer token and an X-Signature.
// Served by the real HTTPServer on a TCP listener, each gets a JSON 400, and
// fasthttp's own log lines go through the service's logger without the
// token, the signature or any raw header.
func TestFasthttpLogsHoldNoSecrets(t *testing.T) {
	var buf testenv.SyncBuffer
	cfg := config.Default()
	cfg.TokenSecret = "log-test-secret-0123456789"
	s := newTestServer(Config{Config: cfg})
	s.log = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tok := s.signer.Sign(7, auth.RoleAdmin, time.Hour)
	sig := strings.Repeat("cd", 32)
	srv := s.HTTPServer()
	srv.Logger.(*fasthttpLogger).every = 0 // every line, for the test
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown()

	for _, raw := range []string{
		"POST /api/v1/events/1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\nContent-Length: abc\r\n\r\n{}",
		"POST /api/v1/pay/notify HTTP/1.1\r\nHost: x\r\nX-Signature: " + sig + "\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
		"GET /api/v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\nX-Signature: " + sig + "\r\nbroken header line\r\n\r\n",
	} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(raw)); err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(c)
		c.Close()
		if !bytes.HasPrefix(answer, []byte("HTTP/1.1 400")) || !bytes.Contains(answer, []byte(`"code":"invalid_request"`)) {
			t.Errorf("malformed request %q answered:\n%s", raw[:30], answer)
		}
	}
	// fasthttp logs after the answer is written: wait for its lines.
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(buf.String(), "error when serving connection") < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	logs := buf.String()
	if n := strings.Count(logs, "error when serving connection"); n < 3 {
		t.Fatalf("%d of fasthttp's 3 error lines reached the service's logger:\n%s", n, logs)
	}
	for _, secret := range []string{tok, sig, strings.SplitN(tok, ".", 2)[1], "Bearer", "Authorization", "X-Signature", "contents:"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs)
		}
	}
}

func TestScrubFasthttpMessage(t *testing.T) {
	for in, want := range map[string]string{
		`error when serving connection "a"<->"b": error when reading request headers: bad, contents: "GET / HTTP/1.1\r\nAuthorization: Bearer x"`: `error when serving connection "a"<->"b": error when reading request headers: bad, contents: (omitted)`,
		`oops: authorization: bearer abc`: `oops: (omitted)`,
		`x-signature=abab`:                `(omitted)`,
		`The number of connections from 1.2.3.4 exceeds MaxConnsPerIP=5`: `The number of connections from 1.2.3.4 exceeds MaxConnsPerIP=5`,
	} {
		if got := scrubFasthttp(in); got != want {
			t.Errorf("scrubFasthttp(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestFasthttpLoggerSamples: any client can make fasthttp log a line, so at
// most one a second goes out, and the next one says how many were dropped.
func TestFasthttpLoggerSamples(t *testing.T) {
	var buf testenv.SyncBuffer
	l := newFasthttpLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	for i := 0; i < 100; i++ {
		l.Printf("error when serving connection %q<->%q: %v", "a", "b", "cannot parse")
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Fatalf("%d lines for 100 malformed requests within a second, want 1:\n%s", n, buf.String())
	}
	l.mu.Lock()
	l.next = time.Now()
	l.mu.Unlock()
	l.Printf("The number of connections from %s exceeds MaxConnsPerIP=%d", "10.0.0.1", 5)
	if out := buf.String(); !strings.Contains(out, `"suppressed_before":99`) || !strings.Contains(out, `"level":"WARN"`) {
		t.Errorf("the line after the burst: %s", out)
	}
}
