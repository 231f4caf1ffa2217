package worker

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/flashgate/flashgate/internal/config"
)

// TestNewRefusesSandboxOutsideDev: outside dev mode, a worker with no payout
// provider of its own refuses to start unless FLASHGATE_SANDBOX_PAYMENTS=1
// says the sandbox, which marks withdrawals paid out without sending money,
// is meant. It refuses before it dials anything.
func TestNewRefusesSandboxOutsideDev(t *testing.T) {
	cfg := config.Default()
	cfg.TokenSecret = "a-random-token-secret-of-32-byte"
	cfg.RedisAddr = "127.0.0.1:1" // never reached
	_, err := New(context.Background(), Config{Config: cfg}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "FLASHGATE_SANDBOX_PAYMENTS") || !strings.Contains(err.Error(), "without sending any money") {
		t.Fatalf("New outside dev mode with the sandbox: %v, want a refusal naming FLASHGATE_SANDBOX_PAYMENTS", err)
	}
}
