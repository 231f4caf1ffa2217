package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// fasthttpLogger is the fasthttp server's logger. fasthttp logs a line for
// each connection it could not serve (most often a request it could not
// parse, which the client was already answered 400 for) and for connection
// limits and accept errors. Its default logger writes to stderr, outside
// the service's log format, and prints the raw header bytes of a request it
// cannot parse: bearer tokens and payment signatures included. So the lines
// go through slog instead, scrubbed (with SecureErrorLogMessage fasthttp
// leaves the contents out already; the scrub is for any message that still
// names a header), at most one a second, since any client can make one:
// lines about a malformed request at debug, the others at warn.
type fasthttpLogger struct {
	log   *slog.Logger
	every time.Duration // at most one line per this; zero logs all

	mu      sync.Mutex
	next    time.Time
	dropped int
}

func newFasthttpLogger(log *slog.Logger) *fasthttpLogger {
	return &fasthttpLogger{log: log.With("source", "fasthttp"), every: time.Second}
}

// Printf implements fasthttp.Logger.
func (l *fasthttpLogger) Printf(format string, args ...any) {
	level := slog.LevelWarn
	if strings.HasPrefix(format, "error when serving connection") {
		level = slog.LevelDebug
	}
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.mu.Lock()
	now := time.Now()
	if l.every > 0 && now.Before(l.next) {
		l.dropped++
		l.mu.Unlock()
		return
	}
	l.next = now.Add(l.every)
	dropped := l.dropped
	l.dropped = 0
	l.mu.Unlock()
	l.log.Log(context.Background(), level, scrubFasthttp(fmt.Sprintf(format, args...)), "suppressed_before", dropped)
}

// scrubFasthttp cuts a fasthttp message where it starts quoting a request:
// at "contents:" (the raw buffer of a request it could not parse) or at a
// header that carries a secret.
func scrubFasthttp(msg string) string {
	if i := strings.Index(msg, "contents:"); i >= 0 {
		msg = msg[:i] + "contents: (omitted)"
	}
	lower := strings.ToLower(msg)
	cut := len(msg)
	for _, h := range []string{"authorization", "x-signature", "bearer "} {
		if i := strings.Index(lower, h); i >= 0 && i < cut {
			cut = i
		}
	}
	if cut < len(msg) {
		msg = msg[:cut] + "(omitted)"
	}
	return msg
}
