package gateway

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/config"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Request logs carry the request id, route and user, and never a token, a
// signature or a secret, even at debug level.
func TestRequestLogsHoldNoSecrets(t *testing.T) {
	var buf syncBuffer
	cfg := config.Default()
	cfg.TokenSecret = "log-test-secret-0123456789"
	cfg.PaySecret = "log-test-pay-secret"
	s := &Server{cfg: Config{Config: cfg}, log: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		signer: auth.NewSigner(cfg.TokenSecret), limiter: allowAll{}, inflight: newInflight(cfg.InflightBudgets(), cfg.InflightWait), now: time.Now}
	admin := s.signer.Sign(7, auth.RoleUser, time.Hour) // a user token on an admin route: 403 after verification
	sig := strings.Repeat("ab", 32)
	for _, req := range []struct{ method, path, authz, sigHdr, rid string }{
		{"POST", "/api/v1/admin/events", "Bearer " + admin, "", "client-req-1"},
		{"POST", "/api/v1/events/1/orders", "Bearer " + admin + "x", "", ""},
		{"GET", "/api/v1/nope", "Bearer " + admin, sig, ""},
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
		s.Handler(&ctx)
		if got := string(ctx.Response.Header.Peek("X-Request-Id")); got == "" || (req.rid != "" && got != req.rid) {
			t.Errorf("%s %s: X-Request-Id %q", req.method, req.path, got)
		}
	}
	logs := buf.b.String()
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
