package e2e

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flashgate/flashgate/internal/testenv"
	"github.com/flashgate/flashgate/ws"
)

func (s *system) startWS(ctx context.Context) {
	ln, iln := testenv.Listener(s.t), testenv.Listener(s.t)
	s.ws = "ws://" + ln.Addr().String()
	s.wsInternal = "http://" + iln.Addr().String()
	cfg := s.cfg
	s.run("ws", func() error { return ws.Run(ctx, ws.Config{Config: cfg, Listener: ln, InternalListener: iln}) })
}

// dialWS connects to ws with a token in the query string.
func (s *system) dialWS(token string) (*websocket.Conn, *http.Response, error) {
	return websocket.DefaultDialer.Dial(s.ws+"/ws?token="+url.QueryEscape(token), nil)
}

// readUntil reads frames until one satisfies match or the deadline passes.
func readUntil(t *testing.T, c *websocket.Conn, d time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	for {
		var m map[string]any
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("no matching WebSocket message: %v", err)
		}
		if match(m) {
			return m
		}
	}
}
