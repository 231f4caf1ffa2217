package e2e

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flashgate/flashgate/internal/testenv"
	"github.com/flashgate/flashgate/ws"
)

// listenWS takes ws's listeners, so that its address is known before
// anything starts.
func (s *system) listenWS() {
	s.wsLn, s.wsILn = testenv.Listener(s.t), testenv.Listener(s.t)
	s.ws = "ws://" + s.wsLn.Addr().String()
	s.wsInternal = "http://" + s.wsILn.Addr().String()
}

// startWS runs ws on the listeners of listenWS, under a context of its own
// so that restartWS can stop it alone.
func (s *system) startWS() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.stopWS, s.wsDone = cancel, done
	cfg := s.cfg
	ln, iln := s.wsLn, s.wsILn
	s.wsLn, s.wsILn = nil, nil
	s.run("ws", func() error {
		defer close(done)
		return ws.Run(ctx, ws.Config{Config: cfg, Listener: ln, InternalListener: iln})
	})
}

// restartWS shuts ws down, which closes every WebSocket from the server's
// side (1001, going away), and starts it again on the same addresses, as a
// rolling restart does. It returns once the new ws is ready.
func (s *system) restartWS() {
	s.t.Helper()
	s.stopWS()
	<-s.wsDone
	var err error
	if s.wsLn, err = net.Listen("tcp", strings.TrimPrefix(s.ws, "ws://")); err != nil {
		s.t.Fatalf("cannot listen on ws's address again: %v", err)
	}
	if s.wsILn, err = net.Listen("tcp", strings.TrimPrefix(s.wsInternal, "http://")); err != nil {
		s.t.Fatalf("cannot listen on ws's internal address again: %v", err)
	}
	s.startWS()
	s.waitReady("http" + strings.TrimPrefix(s.ws, "ws"))
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
