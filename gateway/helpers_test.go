package gateway

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/flashgate/flashgate/internal/auth"
)

// newTestServer returns a Server for tests that drive the handler without
// Redis, MySQL or Kafka: what New would set up for cfg but the clients, a
// limiter that allows everything, and a logger that discards. Tests set the
// other fields they need (a logger to read, memory limiters, the large-body
// slots) on the result.
func newTestServer(cfg Config) *Server {
	return &Server{cfg: cfg, log: discardLogger(), signer: auth.NewSigner(cfg.TokenSecret),
		limiter: allowAll{}, inflight: newInflight(cfg.InflightBudgets(), cfg.InflightWait), now: time.Now}
}

// allowAll is a Limiter that never limits.
type allowAll struct{}

func (allowAll) Allow(context.Context, int64, RateClass) (time.Duration, error) { return 0, nil }

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
