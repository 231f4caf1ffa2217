package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/store"
)

// snapshot is everything a request could reserve, debit or credit.
type snapshot struct {
	redis map[string]string
	mysql map[string]int
}

// snapshot reads that state. A read that fails ends the test t (the subtest
// that asked, not s.t): a failed read taken as 0 on both sides of diff would
// let any change pass. Absence is not a failure: ZCARD and HLEN count an
// absent key as 0, and HotBalance reports an unloaded wallet as ok=false.
func (s *system) snapshot(t testing.TB, events []int64, users []int64) snapshot {
	t.Helper()
	ctx := context.Background()
	sn := snapshot{redis: map[string]string{}, mysql: map[string]int{}}
	read := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("snapshot: cannot read %s: %v", what, err)
		}
	}
	for _, ev := range events {
		stocks, err := s.redis.Stocks(ctx, []int64{ev})
		read(fmt.Sprintf("the stock of event %d", ev), err)
		st, ok := stocks[ev]
		sn.redis[fmt.Sprintf("stock %d", ev)] = fmt.Sprint(st, ok)
		b, tk, err := s.redis.Counts(ctx, ev)
		read(fmt.Sprintf("%s and %s", store.BuyersKey(ev), store.TicketsKey(ev)), err)
		sn.redis[fmt.Sprintf("buyers, tickets %d", ev)] = fmt.Sprint(b, tk)
		n, err := s.raw.Do(ctx, s.raw.B().Zcard().Key(store.PendingKey(ev)).Build()).AsInt64()
		read(store.PendingKey(ev), err)
		sn.redis[fmt.Sprintf("pending %d", ev)] = fmt.Sprint(n)
	}
	for _, u := range users {
		bal, ok, err := s.redis.HotBalance(ctx, u)
		read(fmt.Sprintf("the hot balance of user %d", u), err)
		sn.redis[fmt.Sprintf("hot balance %d", u)] = fmt.Sprint(bal, ok)
		n, err := s.raw.Do(ctx, s.raw.B().Hlen().Key(store.HoldsKey(u)).Build()).AsInt64()
		read(store.HoldsKey(u), err)
		sn.redis[fmt.Sprintf("holds %d", u)] = fmt.Sprint(n)
	}
	for _, q := range []string{
		"SELECT COUNT(*) FROM orders", "SELECT COUNT(*) FROM orders WHERE status = 'unpaid'", "SELECT COALESCE(SUM(stock), 0) FROM events",
		"SELECT COUNT(*) FROM gift_records", "SELECT COUNT(*) FROM ledger", "SELECT COALESCE(SUM(balance), 0) FROM wallets",
		"SELECT COALESCE(SUM(earnings), 0) FROM wallets", "SELECT COUNT(*) FROM pay_orders WHERE status = 'paid'", "SELECT COUNT(*) FROM withdrawals",
	} {
		var n int
		if err := s.db.Get(&n, q); err != nil {
			t.Fatalf("snapshot: %s: %v", q, err)
		}
		sn.mysql[q] = n
	}
	return sn
}

func (a snapshot) diff(b snapshot) []string {
	var d []string
	for k, v := range a.redis {
		if b.redis[k] != v {
			d = append(d, fmt.Sprintf("redis %s: %s → %s", k, v, b.redis[k]))
		}
	}
	for k, v := range a.mysql {
		if b.mysql[k] != v {
			d = append(d, fmt.Sprintf("%s: %d → %d", k, v, b.mysql[k]))
		}
	}
	return d
}

// TestEveryErrorCode walks every error code of the API (docs/openapi.yaml,
// schema Error; README, "The API in brief") through the real gateway: status, code, message, Retry-After where the API promises it, and
// that the refused request reserved, debited and credited nothing.
func TestEveryErrorCode(t *testing.T) {
	s := start(t, options{noWS: true})
	now := time.Now()
	live := s.liveEvent(5)
	gone := s.liveEvent(1)
	upcoming := s.createEvent(5, now.Add(time.Hour), now.Add(2*time.Hour))
	res, err := s.db.Exec("INSERT INTO events (name, price, stock_total, stock, starts_at, ends_at) VALUES ('old', 1, 1, 1, ?, ?)",
		now.Add(-2*time.Hour).UTC(), now.Add(-time.Hour).UTC())
	if err != nil {
		t.Fatal(err)
	}
	ended, _ := res.LastInsertId()
	s.waitFor("gateway knows the ended event", func() bool { return s.order(ended, 1).Status != 404 })

	// Setup: user 1 holds a unit of live; user 2 bought the last unit of
	// gone; user 3 has a cancelled order; user 4 has 5 coins.
	first := s.order(live, 1)
	if first.Status != 202 {
		t.Fatalf("setup order: %d %s", first.Status, first.Raw)
	}
	if a := s.order(gone, 2); a.Status != 202 {
		t.Fatalf("setup order: %d %s", a.Status, a.Raw)
	}
	c := s.order(live, 3)
	no := s.waitTicket(3, c.str("ticket")).str("order_no")
	if a := s.do("POST", "/api/v1/orders/"+no+"/cancel", s.token(3), ""); a.Status != 200 {
		t.Fatalf("setup cancel: %d %s", a.Status, a.Raw)
	}
	s.waitTicket(1, first.str("ticket"))
	s.seedWallet(4, 5)
	if a := s.do("GET", "/api/v1/wallet", s.token(4), ""); a.Status != 200 || a.Body["balance"] != float64(5) {
		t.Fatalf("setup wallet: %d %s", a.Status, a.Raw)
	}
	payOrder := s.payCreateOrder(4, 1)
	notify := fmt.Sprintf(`{"order_id":%q,"status":"success","amount":%d,"provider_txn":"t-1"}`, payOrder.str("order_id"), int64(payOrder.Body["amount"].(float64)))

	type req struct {
		method, path, token, body string
		hdr                       []string
	}
	cases := []struct {
		name   string
		req    req
		status int
		code   string
		ticket string // for already_purchased
		retry  bool   // Retry-After expected
	}{
		{"malformed body", req{"POST", fmt.Sprintf("/api/v1/events/%d/orders", live), s.token(9), `[]`, nil}, 400, "invalid_request", "", false},
		{"gift to oneself", req{"POST", "/api/v1/rooms/5/gifts", s.token(4), `{"gift_id":1,"receiver_id":4,"count":1}`, nil}, 400, "self_gift", "", false},
		{"no token", req{"POST", fmt.Sprintf("/api/v1/events/%d/orders", live), "", `{}`, nil}, 401, "unauthorized", "", false},
		{"bad payment signature", req{"POST", "/api/v1/pay/notify", "", notify, []string{"X-Signature", strings.Repeat("0", 64)}}, 401, "unauthorized", "", false},
		{"gift beyond the balance", req{"POST", "/api/v1/rooms/5/gifts", s.token(4), `{"gift_id":2,"receiver_id":7,"count":1}`, nil}, 402, "insufficient_balance", "", false},
		{"withdrawal beyond the earnings", req{"POST", "/api/v1/withdrawals", s.token(4), `{"amount":10}`, nil}, 402, "insufficient_balance", "", false},
		{"user on an admin route", req{"POST", "/api/v1/admin/events", s.token(4), `{}`, nil}, 403, "forbidden", "", false},
		{"unknown event", req{"POST", "/api/v1/events/999999/orders", s.token(9), `{}`, nil}, 404, "not_found", "", false},
		{"unknown route", req{"GET", "/api/v1/nothing/here", "", ``, nil}, 404, "not_found", "", false},
		{"wrong method", req{"DELETE", "/api/v1/events", "", ``, nil}, 405, "method_not_allowed", "", false},
		{"bought already", req{"POST", fmt.Sprintf("/api/v1/events/%d/orders", live), s.token(1), `{}`, nil}, 409, "already_purchased", first.str("ticket"), false},
		{"not started", req{"POST", fmt.Sprintf("/api/v1/events/%d/orders", upcoming), s.token(9), `{}`, nil}, 409, "not_started", "", false},
		{"ended", req{"POST", fmt.Sprintf("/api/v1/events/%d/orders", ended), s.token(9), `{}`, nil}, 409, "ended", "", false},
		{"pay a cancelled order", req{"POST", "/api/v1/orders/" + no + "/pay", s.token(3), ``, nil}, 409, "invalid_state", "", false},
		{"sold out", req{"POST", fmt.Sprintf("/api/v1/events/%d/orders", gone), s.token(9), `{}`, nil}, 410, "sold_out", "", false},
		{"body over 8 KiB", req{"POST", fmt.Sprintf("/api/v1/events/%d/orders", live), s.token(9), `{"x":"` + strings.Repeat("y", 9000) + `"}`, nil}, 413, "body_too_large", "", false},
	}
	events, users := []int64{live, gone, upcoming, ended}, []int64{1, 2, 3, 4, 7, 9}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := s.snapshot(t, events, users)
			a, err := s.try(c.req.method, c.req.path, c.req.token, c.req.body, c.req.hdr...)
			if err != nil {
				t.Fatal(err)
			}
			checkError(t, a, c.status, c.code, c.retry)
			if c.ticket != "" && a.str("ticket") != c.ticket {
				t.Errorf("ticket %q, want %q", a.str("ticket"), c.ticket)
			}
			time.Sleep(150 * time.Millisecond) // let a (wrongly) accepted request reach the worker
			if d := before.diff(s.snapshot(t, events, users)); len(d) > 0 {
				t.Errorf("a refused request changed state: %v", d)
			}
		})
	}

	// 429 and 503 need settings of their own: tight limits, and an event
	// that is in MySQL but not in Redis (no worker warms it).
	b := start(t, options{noWS: true, noWorker: true, mutate: func(c *config.Config) {
		c.RateOther = config.Rate{PerSecond: 0.2, Burst: 2}
	}})
	res, err = b.db.Exec("INSERT INTO events (name, price, stock_total, stock, starts_at, ends_at) VALUES ('cold', 1, 3, 3, ?, ?)",
		now.Add(-time.Minute).UTC(), now.Add(time.Hour).UTC())
	if err != nil {
		t.Fatal(err)
	}
	cold, _ := res.LastInsertId()
	b.waitFor("gateway knows the cold event", func() bool { return b.order(cold, 1).Status != 404 })
	t.Run("rate limited", func(t *testing.T) {
		var a answer
		for i := 0; i < 3; i++ {
			a = b.do("GET", "/api/v1/orders", b.token(50), "")
		}
		checkError(t, a, 429, "rate_limited", true)
	})
	t.Run("dependency not ready", func(t *testing.T) {
		before := b.snapshot(t, []int64{cold}, nil)
		checkError(t, b.order(cold, 51), 503, "unavailable", true)
		if d := before.diff(b.snapshot(t, []int64{cold}, nil)); len(d) > 0 {
			t.Errorf("a refused request changed state: %v", d)
		}
	})
}
