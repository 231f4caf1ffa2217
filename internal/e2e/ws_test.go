package e2e

import (
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestWebSocketTicket: a connected buyer receives its ticket's outcome on
// every one of its connections; a bad token is refused with 401 before the
// upgrade.
func TestWebSocketTicket(t *testing.T) {
	s := start(t, options{})
	ev := s.liveEvent(3)
	c1, _, err := s.dialWS(s.token(5))
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, _, err := s.dialWS(s.token(5))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	other, _, err := s.dialWS(s.token(6))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// c1 also watches the event's stock.
	if err := c1.WriteJSON(map[string]any{"type": "watch", "event_id": ev}); err != nil {
		t.Fatal(err)
	}

	a := s.order(ev, 5)
	if a.Status != 202 {
		t.Fatalf("order: %d %s", a.Status, a.Raw)
	}
	ticket := a.str("ticket")
	for i, c := range []*websocket.Conn{c1, c2} {
		m := readUntil(t, c, 20*time.Second, func(m map[string]any) bool { return m["type"] == "ticket" })
		if m["ticket"] != ticket || m["status"] != "succeeded" || m["kind"] != "order" || m["order_no"] == "" {
			b, _ := json.Marshal(m)
			t.Errorf("connection %d got %s", i+1, b)
		}
	}
	// By now the watch is registered; the next sale reaches the watcher,
	// at once or as the trailing once-a-second update.
	if a := s.order(ev, 9); a.Status != 202 {
		t.Fatalf("order: %d %s", a.Status, a.Raw)
	}
	m := readUntil(t, c1, 20*time.Second, func(m map[string]any) bool { return m["type"] == "stock" && m["stock_left"] == float64(1) })
	if m["event_id"] != float64(ev) || m["status"] != "live" {
		b, _ := json.Marshal(m)
		t.Errorf("stock message %s", b)
	}
	other.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var got map[string]any
	if err := other.ReadJSON(&got); err == nil {
		t.Errorf("another user received %v", got)
	}

	for _, tok := range []string{"", "garbage", s.signer.Sign(5, "user", -time.Second)} {
		_, resp, err := s.dialWS(tok)
		if err == nil {
			t.Fatalf("token %q: upgraded", tok)
		}
		if resp == nil || resp.StatusCode != 401 {
			t.Fatalf("token %q: response %v, want 401", tok, resp)
		}
		body, _ := io.ReadAll(resp.Body)
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		if json.Unmarshal(body, &e); e.Error.Code != "unauthorized" {
			t.Errorf("token %q: body %s", tok, body)
		}
	}
}
