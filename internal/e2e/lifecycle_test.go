package e2e

import (
	"sync"
	"testing"
	"time"

	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/worker"
)

// TestRedelivery: the same order records consumed twice (a worker that died
// before committing offsets) leave one order each and take stock once.
func TestRedelivery(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true})
	ev := s.liveEvent(100)
	const n = 20
	tickets := map[string]int64{}
	for uid := int64(1); uid <= n; uid++ {
		a := s.order(ev, uid)
		if a.Status != 202 {
			t.Fatalf("order: %d %s", a.Status, a.Raw)
		}
		tickets[a.str("ticket")] = uid
	}

	s.crashAndRedeliver(s.cfg.OrdersTopic(), worker.GroupName(s.cfg), n, (*worker.Worker).ProcessRecords, (*worker.Worker).ConsumeOrders)

	if got := s.count("SELECT COUNT(*) FROM orders WHERE event_id = ?", ev); got != n {
		t.Errorf("%d orders after redelivery, want %d", got, n)
	}
	if got := s.count("SELECT stock FROM events WHERE id = ?", ev); got != 100-n {
		t.Errorf("MySQL stock %d, want %d", got, 100-n)
	}
	if got := s.count("SELECT COUNT(*) FROM tickets WHERE status = 'succeeded'"); got != n {
		t.Errorf("%d succeeded tickets, want %d", got, n)
	}
	if st, _ := s.redisStock(ev); st != 100-n {
		t.Errorf("Redis stock %d, want %d", st, 100-n)
	}
	for ticket, uid := range tickets {
		if a := s.waitTicket(uid, ticket); a.str("status") != "succeeded" {
			t.Errorf("ticket %s: %s", ticket, a.Raw)
		}
	}
}

// TestExpiry: an unpaid order with a 1 s TTL expires, its unit is back on
// sale in MySQL and Redis, and the same user buys again.
func TestExpiry(t *testing.T) {
	s := start(t, options{noWS: true, mutate: func(c *config.Config) { c.OrderTTL = time.Second }})
	ev := s.liveEvent(1)
	const uid = 7
	a := s.order(ev, uid)
	if a.Status != 202 {
		t.Fatalf("order: %d %s", a.Status, a.Raw)
	}
	tk := s.waitTicket(uid, a.str("ticket"))
	orderNo := tk.str("order_no")
	if tk.str("status") != "succeeded" || orderNo == "" {
		t.Fatalf("ticket: %s", tk.Raw)
	}
	if a := s.order(ev, 8); a.Status != 410 {
		t.Fatalf("second buyer while the unit is held: %d %s, want 410", a.Status, a.Raw)
	}
	s.waitFor("order expired", func() bool {
		o := s.do("GET", "/api/v1/orders/"+orderNo, s.token(uid), "")
		return o.str("status") == "expired"
	})
	if got := s.count("SELECT stock FROM events WHERE id = ?", ev); got != 1 {
		t.Errorf("MySQL stock after expiry %d, want 1", got)
	}
	// The unit goes back in Redis just after MySQL commits the expiry (the
	// same pass, or the next one if Redis was unreachable), so wait for it.
	s.waitFor("the unit back on sale in Redis", func() bool {
		st, ok := s.redisStock(ev)
		return ok && st == 1
	})
	if p := s.do("POST", "/api/v1/orders/"+orderNo+"/pay", s.token(uid), ""); p.Status != 409 || p.errCode() != "invalid_state" {
		t.Errorf("paying an expired order: %d %s", p.Status, p.Raw)
	}
	var again answer
	s.waitFor("the same user buys again", func() bool {
		again = s.order(ev, uid)
		return again.Status == 202
	})
	tk2 := s.waitTicket(uid, again.str("ticket"))
	if tk2.str("status") != "succeeded" || tk2.str("order_no") == orderNo {
		t.Fatalf("second purchase: %s", tk2.Raw)
	}
	list := s.do("GET", "/api/v1/orders", s.token(uid), "")
	orders, _ := list.Body["orders"].([]any)
	if len(orders) != 2 || orders[0].(map[string]any)["status"] != "unpaid" || orders[1].(map[string]any)["status"] != "expired" {
		t.Errorf("orders, newest first: %s", list.Raw)
	}
	if p := s.do("POST", "/api/v1/orders/"+tk2.str("order_no")+"/pay", s.token(uid), "{}"); p.Status != 200 || p.str("status") != "paid" || p.str("paid_at") == "" {
		t.Errorf("pay: %d %s", p.Status, p.Raw)
	}
}

// TestPayRacesExpiry: payments fired around each order's expiry time; every
// order ends paid or expired, never both, and exactly the expired units are
// back on sale.
func TestPayRacesExpiry(t *testing.T) {
	s := start(t, options{noWS: true, mutate: func(c *config.Config) {
		c.OrderTTL = 1500 * time.Millisecond
		c.ExpireInterval = 20 * time.Millisecond
	}})
	const n = 40
	ev := s.liveEvent(n)
	type ord struct {
		uid     int64
		no      string
		expires time.Time
	}
	var ords []ord
	for uid := int64(1); uid <= n; uid++ {
		a := s.order(ev, uid)
		if a.Status != 202 {
			t.Fatalf("order: %d %s", a.Status, a.Raw)
		}
		tk := s.waitTicket(uid, a.str("ticket"))
		o := s.do("GET", "/api/v1/orders/"+tk.str("order_no"), s.token(uid), "")
		exp, err := time.Parse(time.RFC3339, o.str("expires_at"))
		if err != nil {
			t.Fatalf("expires_at: %s", o.Raw)
		}
		ords = append(ords, ord{uid, tk.str("order_no"), exp})
	}
	// Fire each payment within ±300 ms of its order's expiry (second
	// precision in the API, so spread them).
	paid := make([]bool, n)
	var wg sync.WaitGroup
	for i, o := range ords {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at := o.expires.Add(time.Duration(i%13-6) * 50 * time.Millisecond)
			time.Sleep(time.Until(at))
			p := s.do("POST", "/api/v1/orders/"+o.no+"/pay", s.token(o.uid), "")
			switch {
			case p.Status == 200 && p.str("status") == "paid":
				paid[i] = true
			case p.Status == 409 && p.errCode() == "invalid_state":
			default:
				t.Errorf("pay %s: %d %s", o.no, p.Status, p.Raw)
			}
		}()
	}
	wg.Wait()
	s.waitFor("no unpaid orders left", func() bool {
		return s.count("SELECT COUNT(*) FROM orders WHERE event_id = ? AND status = 'unpaid'", ev) == 0
	})
	expired := 0
	for i, o := range ords {
		var status string
		if err := s.db.Get(&status, "SELECT status FROM orders WHERE order_no = ?", o.no); err != nil {
			t.Fatal(err)
		}
		if paid[i] != (status == "paid") {
			t.Errorf("order %s: pay answered paid=%v but the order is %s", o.no, paid[i], status)
		}
		if status == "expired" {
			expired++
		}
	}
	t.Logf("%d paid, %d expired", n-expired, expired)
	if got := s.count("SELECT stock FROM events WHERE id = ?", ev); got != expired {
		t.Errorf("MySQL stock %d, want the %d expired units", got, expired)
	}
	s.waitFor("Redis stock equals the expired units", func() bool {
		st, _ := s.redisStock(ev)
		return st == int64(expired)
	})
}
