package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// TestFlushAllMidSale: Redis loses everything while buyers are buying. The
// worker re-warms the event from MySQL, the sale goes on to sell out, and
// MySQL never holds more orders than stock or two live orders of one user.
func TestFlushAllMidSale(t *testing.T) {
	s := start(t, options{noWS: true})
	const stock = 150
	ev := s.liveEvent(stock)

	var (
		mu       sync.Mutex
		accepted = map[string]int64{} // ticket -> user
		answers  = map[string]int{}
		flushed  atomic.Bool
		after    atomic.Int64 // 202s after the flush
	)
	wave := func(from, count int64, flushAt int64) {
		var wg sync.WaitGroup
		var done atomic.Int64
		for uid := from; uid < from+count; uid++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a, err := s.try("POST", fmt.Sprintf("/api/v1/events/%d/orders", ev), s.token(uid), "{}")
				if err != nil {
					t.Errorf("user %d: %v", uid, err)
					return
				}
				mu.Lock()
				answers[fmt.Sprintf("%d %s", a.Status, a.errCode())]++
				if a.Status == 202 {
					accepted[a.str("ticket")] = uid
					if flushed.Load() {
						after.Add(1)
					}
				}
				mu.Unlock()
				switch {
				case a.Status == 202, a.Status == 409 && a.errCode() == "already_purchased", a.Status == 410 && a.errCode() == "sold_out":
				case a.Status == 503 && a.errCode() == "unavailable":
					// The event is not in Redis until it is re-warmed.
				default:
					t.Errorf("user %d: %d %s", uid, a.Status, a.Raw)
				}
				if done.Add(1) == flushAt {
					if err := s.raw.Do(context.Background(), s.raw.B().Flushall().Build()).Error(); err != nil {
						t.Errorf("FLUSHALL: %v", err)
					}
					flushed.Store(true)
				}
			}()
		}
		wg.Wait()
	}
	wave(1, 400, 60) // FLUSHALL after the 60th answer, with the rest in flight
	if !flushed.Load() {
		t.Fatal("never flushed")
	}
	s.waitFor("event re-warmed", func() bool { _, ok := s.redisStock(ev); return ok })
	// Keep buying until MySQL has sold every unit.
	for round := int64(0); s.count("SELECT COUNT(*) FROM orders WHERE event_id = ? AND active = 1", ev) < stock; round++ {
		if round == 20 {
			t.Fatalf("sale did not sell out after the flush: %d orders", s.count("SELECT COUNT(*) FROM orders WHERE event_id = ?", ev))
		}
		wave(1000+round*200, 200, -1)
		mu.Lock()
		n := len(accepted)
		mu.Unlock()
		s.waitFor("tickets decided", func() bool { return s.count("SELECT COUNT(*) FROM tickets") == n })
	}
	t.Logf("answers: %v; %d accepted after the flush", answers, after.Load())
	if after.Load() == 0 {
		t.Error("no order was accepted after the flush")
	}
	if n := s.count("SELECT COUNT(*) FROM orders WHERE event_id = ?", ev); n != stock {
		t.Errorf("%d orders in MySQL, want exactly %d", n, stock)
	}
	if n := s.count("SELECT stock FROM events WHERE id = ?", ev); n != 0 {
		t.Errorf("MySQL stock %d, want 0", n)
	}
	if n := s.count("SELECT COUNT(*) FROM (SELECT user_id FROM orders WHERE event_id = ? GROUP BY user_id HAVING COUNT(*) > 1) d", ev); n != 0 {
		t.Errorf("%d users hold two orders", n)
	}
	// Every 202 ended succeeded or failed, and succeeded ones are orders.
	mu.Lock()
	defer mu.Unlock()
	if n := s.count("SELECT COUNT(*) FROM tickets"); n != len(accepted) {
		t.Errorf("%d tickets decided, %d accepted", n, len(accepted))
	}
	if n := s.count("SELECT COUNT(*) FROM tickets t JOIN orders o ON o.ticket = t.ticket WHERE t.status = 'succeeded'"); n != stock {
		t.Errorf("%d succeeded tickets with an order, want %d", n, stock)
	}
}
