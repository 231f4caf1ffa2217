package e2e

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/store"
	"github.com/flashgate/flashgate/internal/testenv"
)

// TestNoOversell: 2,000 distinct buyers and 500 repeats race for 100 units.
// Exactly 100 orders exist afterwards, no user has two, Redis stock is 0, and
// every other answer is 409 already_purchased (with the user's ticket) or
// 410 sold_out.
func TestNoOversell(t *testing.T) {
	s := start(t, options{noWS: true})
	const stock, buyers, repeats = 100, 2000, 500
	ev := s.liveEvent(stock)

	type res struct {
		user int64
		a    answer
		err  error
	}
	results := make(chan res, buyers+repeats)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := 0; i < buyers+repeats; i++ {
		uid := int64(i%buyers + 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			a, err := s.try("POST", fmt.Sprintf("/api/v1/events/%d/orders", ev), s.token(uid), "{}")
			results <- res{uid, a, err}
		}()
	}
	close(gate)
	wg.Wait()
	close(results)

	accepted := map[int64]string{}
	var conflicts []res
	codes := map[string]int{}
	for r := range results {
		if r.err != nil {
			t.Fatalf("user %d: %v", r.user, r.err)
		}
		switch {
		case r.a.Status == 202:
			if _, dup := accepted[r.user]; dup {
				t.Errorf("user %d got two 202s", r.user)
			}
			accepted[r.user] = r.a.str("ticket")
			if r.a.str("status") != "pending" || r.a.str("ticket") == "" {
				t.Errorf("202 body %s", r.a.Raw)
			}
			codes["202"]++
		case r.a.Status == 409 && r.a.errCode() == "already_purchased":
			conflicts = append(conflicts, r)
			codes["409 already_purchased"]++
		case r.a.Status == 410 && r.a.errCode() == "sold_out":
			codes["410 sold_out"]++
		default:
			t.Errorf("user %d: unexpected answer %d %s", r.user, r.a.Status, r.a.Raw)
		}
	}
	t.Logf("answers: %v", codes)
	if resp, err := s.client.Get(s.gatewayInternal + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "flashgate_kafka_produce_seconds") || strings.HasPrefix(l, "flashgate_gateway_lua_seconds") {
				t.Log(l)
			}
		}
	}
	if len(accepted) != stock {
		t.Fatalf("%d orders accepted, want exactly %d", len(accepted), stock)
	}
	for _, c := range conflicts {
		if got, want := c.a.str("ticket"), accepted[c.user]; got == "" || got != want {
			t.Errorf("user %d: 409 carries ticket %q, want the user's ticket %q", c.user, got, want)
		}
	}

	s.waitFor("all tickets decided", func() bool {
		return s.count("SELECT COUNT(*) FROM tickets") == stock
	})
	if n := s.count("SELECT COUNT(*) FROM orders WHERE event_id = ?", ev); n != stock {
		t.Errorf("%d orders in MySQL, want %d", n, stock)
	}
	if n := s.count("SELECT COUNT(*) FROM tickets WHERE status = 'succeeded'"); n != stock {
		t.Errorf("%d succeeded tickets, want %d", n, stock)
	}
	if n := s.count("SELECT COUNT(*) FROM (SELECT user_id FROM orders WHERE event_id = ? GROUP BY user_id HAVING COUNT(*) > 1) d", ev); n != 0 {
		t.Errorf("%d users have more than one order", n)
	}
	if n := s.count("SELECT stock FROM events WHERE id = ?", ev); n != 0 {
		t.Errorf("MySQL stock %d, want 0", n)
	}
	if st, _ := s.redisStock(ev); st != 0 {
		t.Errorf("Redis stock %d, want 0", st)
	}
	// Every accepted buyer reads a succeeded ticket with an order number.
	n := 0
	for uid, ticket := range accepted {
		a := s.waitTicket(uid, ticket)
		if a.str("status") != "succeeded" || a.str("order_no") == "" || a.str("kind") != "order" {
			t.Errorf("ticket %s: %s", ticket, a.Raw)
		}
		if n++; n == 10 {
			break
		}
	}
}

// TestKafkaUnreachable: when the broker cannot be reached at produce time the
// buyer gets 503 with Retry-After, and stock and buyer record are as before.
func TestKafkaUnreachable(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true, mutate: func(c *config.Config) {
		ln := testenv.Listener(t) // a port that accepts nothing once closed
		c.KafkaBrokers = []string{ln.Addr().String()}
		ln.Close()
		c.ProduceTimeout = 500 * time.Millisecond
	}})
	ev := s.liveEvent(10)
	for i := 0; i < 3; i++ {
		a := s.order(ev, 42)
		if a.Status != 503 || a.errCode() != "unavailable" || a.Header.Get("Retry-After") == "" {
			t.Fatalf("order with Kafka down: %d %s (Retry-After %q)", a.Status, a.Raw, a.Header.Get("Retry-After"))
		}
	}
	if st, _ := s.redisStock(ev); st != 10 {
		t.Errorf("Redis stock %d after failed produces, want 10", st)
	}
	if b := s.buyerTicket(ev, 42); b != "" {
		t.Errorf("buyer record %q left behind", b)
	}
	if n, _ := s.raw.Do(context.Background(), s.raw.B().Zcard().Key(store.PendingKey(ev)).Build()).AsInt64(); n != 0 {
		t.Errorf("%d pending reservations left behind", n)
	}
	// A concurrent repeat with the same Idempotency-Key may have been told
	// 202 with the ticket the failed request then undid: it reads failed.
	ctx := context.Background()
	ticket := store.NewOrderTicket(ev)
	if r, err := s.redis.Reserve(ctx, ev, 43, ticket, "k"); err != nil || r.Status != store.Reserved {
		t.Fatalf("reserve: %+v %v", r, err)
	}
	if undone, err := s.redis.Compensate(ctx, ev, 43, ticket); err != nil || !undone {
		t.Fatalf("compensate: %v %v", undone, err)
	}
	if a := s.do("GET", "/api/v1/tickets/"+ticket, s.token(43), ""); a.Status != 200 || a.str("status") != "failed" || a.str("reason") != "aborted" {
		t.Errorf("undone ticket: %d %s", a.Status, a.Raw)
	}
}
