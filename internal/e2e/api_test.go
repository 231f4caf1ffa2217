package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/store"
)

// TestEventsAndAdmin walks the event endpoints: listing, detail, the
// not-started and ended answers, admin-only creation and stock top-ups.
func TestEventsAndAdmin(t *testing.T) {
	s := start(t, options{noWS: true})
	now := time.Now()
	live := s.liveEvent(2)
	soon := s.createEvent(5, now.Add(time.Hour), now.Add(2*time.Hour))

	list := s.do("GET", "/api/v1/events", "", "")
	evs, _ := list.Body["events"].([]any)
	if list.Status != 200 || len(evs) != 2 {
		t.Fatalf("events: %d %s", list.Status, list.Raw)
	}
	first := evs[0].(map[string]any)
	if first["id"] != float64(live) || first["status"] != "live" || first["stock_left"] != float64(2) || first["stock_total"] != float64(2) || first["price"] != float64(1999) {
		t.Errorf("first event (soonest start) is %v", first)
	}
	if evs[1].(map[string]any)["status"] != "upcoming" {
		t.Errorf("second event: %v", evs[1])
	}
	if a := s.do("GET", fmt.Sprintf("/api/v1/events/%d", soon), "", ""); a.Status != 200 || a.str("status") != "upcoming" || a.str("starts_at") == "" {
		t.Errorf("event detail: %d %s", a.Status, a.Raw)
	}
	if a := s.do("GET", "/api/v1/events/424242", "", ""); a.Status != 404 || a.errCode() != "not_found" {
		t.Errorf("unknown event: %d %s", a.Status, a.Raw)
	}
	if a := s.order(soon, 1); a.Status != 409 || a.errCode() != "not_started" {
		t.Errorf("order before the start: %d %s", a.Status, a.Raw)
	}

	// An event that ended: inserted straight into MySQL, as an old sale.
	res, err := s.db.Exec("INSERT INTO events (name, price, stock_total, stock, starts_at, ends_at) VALUES ('old', 1, 1, 1, ?, ?)",
		now.Add(-2*time.Hour).UTC(), now.Add(-time.Hour).UTC())
	if err != nil {
		t.Fatal(err)
	}
	old, _ := res.LastInsertId()
	if a := s.do("GET", fmt.Sprintf("/api/v1/events/%d", old), "", ""); a.str("status") != "ended" {
		t.Errorf("ended event: %s", a.Raw)
	}
	// The order path answers from memory, refreshed every EventRefresh.
	var a answer
	s.waitFor("order path knows the old event", func() bool { a = s.order(old, 1); return a.Status != 404 })
	if a.Status != 409 || a.errCode() != "ended" {
		t.Errorf("order after the end: %d %s", a.Status, a.Raw)
	}
	if a := s.do("POST", fmt.Sprintf("/api/v1/admin/events/%d/stock", old), s.adminToken(), `{"delta":1}`); a.Status != 409 || a.errCode() != "ended" {
		t.Errorf("stock for an ended event: %d %s", a.Status, a.Raw)
	}

	// Roles: a user token cannot administer; no token is 401.
	body := `{"name":"x","price":1,"stock":1,"starts_at":"2030-01-01T00:00:00Z","ends_at":"2030-01-02T00:00:00Z"}`
	if a := s.do("POST", "/api/v1/admin/events", s.token(1), body); a.Status != 403 || a.errCode() != "forbidden" {
		t.Errorf("user on admin route: %d %s", a.Status, a.Raw)
	}
	if a := s.do("POST", "/api/v1/admin/events", "", body); a.Status != 401 {
		t.Errorf("no token on admin route: %d %s", a.Status, a.Raw)
	}
	for _, bad := range []string{
		`{"name":"x","price":1,"stock":0,"starts_at":"2030-01-01T00:00:00Z","ends_at":"2030-01-02T00:00:00Z"}`,
		`{"name":"x","price":"1","stock":1,"starts_at":"2030-01-01T00:00:00Z","ends_at":"2030-01-02T00:00:00Z"}`,
		`{"name":"x","price":1,"stock":1,"starts_at":"tomorrow","ends_at":"2030-01-02T00:00:00Z"}`,
		`{"name":"x","price":1,"stock":1,"starts_at":"2030-01-02T00:00:00Z","ends_at":"2030-01-01T00:00:00Z"}`,
		`{"price":1,"stock":1,"starts_at":"2030-01-01T00:00:00Z","ends_at":"2030-01-02T00:00:00Z"}`,
	} {
		if a := s.do("POST", "/api/v1/admin/events", s.adminToken(), bad); a.Status != 400 || a.errCode() != "invalid_request" {
			t.Errorf("create %s: %d %s", bad, a.Status, a.Raw)
		}
	}
	// Idempotent creation: the same key creates one event.
	a1 := s.do("POST", "/api/v1/admin/events", s.adminToken(), body, "Idempotency-Key", "create-1")
	a2 := s.do("POST", "/api/v1/admin/events", s.adminToken(), body, "Idempotency-Key", "create-1")
	if a1.Status != 201 || a2.Status != 201 || a1.Body["id"] != a2.Body["id"] {
		t.Errorf("idempotent create: %s / %s", a1.Raw, a2.Raw)
	}

	// Sell out, then top up: the new units are on sale at once.
	for uid := int64(1); uid <= 2; uid++ {
		if a := s.order(live, uid); a.Status != 202 {
			t.Fatalf("order: %d %s", a.Status, a.Raw)
		}
	}
	if a := s.order(live, 3); a.Status != 410 || a.errCode() != "sold_out" {
		t.Errorf("order when sold out: %d %s", a.Status, a.Raw)
	}
	if a := s.do("GET", fmt.Sprintf("/api/v1/events/%d", live), "", ""); a.str("status") != "sold_out" {
		t.Errorf("sold-out event: %s", a.Raw)
	}
	for _, bad := range []string{`{"delta":0}`, `{"delta":-5}`, `{}`, `{"delta":1.5}`} {
		if a := s.do("POST", fmt.Sprintf("/api/v1/admin/events/%d/stock", live), s.adminToken(), bad); a.Status != 400 {
			t.Errorf("stock %s: %d %s", bad, a.Status, a.Raw)
		}
	}
	top := s.do("POST", fmt.Sprintf("/api/v1/admin/events/%d/stock", live), s.adminToken(), `{"delta":3}`)
	if top.Status != 200 || top.Body["stock_total"] != float64(5) || top.Body["stock_left"] != float64(3) || top.str("status") != "live" {
		t.Fatalf("add stock: %d %s", top.Status, top.Raw)
	}
	if a := s.order(live, 3); a.Status != 202 {
		t.Errorf("order after the top-up: %d %s", a.Status, a.Raw)
	}
	s.waitFor("orders written", func() bool { return s.count("SELECT COUNT(*) FROM orders WHERE event_id = ?", live) == 3 })
	if n := s.count("SELECT stock FROM events WHERE id = ?", live); n != 2 {
		t.Errorf("MySQL stock after top-up and 3 sales: %d, want 2", n)
	}
}

// TestOrderLifecycle: idempotent retries, reading tickets and orders, owner
// checks, cancel and pay.
func TestOrderLifecycle(t *testing.T) {
	s := start(t, options{noWS: true})
	ev := s.liveEvent(3)
	path := fmt.Sprintf("/api/v1/events/%d/orders", ev)

	a1 := s.do("POST", path, s.token(1), "{}", "Idempotency-Key", "k-1")
	a2 := s.do("POST", path, s.token(1), "{}", "Idempotency-Key", "k-1")
	if a1.Status != 202 || a2.Status != 202 || a1.str("ticket") != a2.str("ticket") {
		t.Fatalf("idempotent retry: %d %s / %d %s", a1.Status, a1.Raw, a2.Status, a2.Raw)
	}
	if a := s.do("POST", path, s.token(1), "{}", "Idempotency-Key", "k-2"); a.Status != 409 || a.errCode() != "already_purchased" || a.str("ticket") != a1.str("ticket") {
		t.Errorf("another key for the same user: %d %s", a.Status, a.Raw)
	}
	ticket := a1.str("ticket")
	tk := s.waitTicket(1, ticket)
	no := tk.str("order_no")
	if tk.str("status") != "succeeded" || tk.str("created_at") == "" || no == "" {
		t.Fatalf("ticket: %s", tk.Raw)
	}
	if st, _ := s.redisStock(ev); st != 2 {
		t.Errorf("Redis stock %d after one sale, want 2", st)
	}
	// Other users see neither the ticket nor the order.
	if a := s.do("GET", "/api/v1/tickets/"+ticket, s.token(2), ""); a.Status != 404 {
		t.Errorf("someone else's ticket: %d %s", a.Status, a.Raw)
	}
	if a := s.do("GET", "/api/v1/tickets/o1-zzzz", s.token(1), ""); a.Status != 404 {
		t.Errorf("malformed ticket: %d %s", a.Status, a.Raw)
	}
	if a := s.do("GET", "/api/v1/orders/"+no, s.token(2), ""); a.Status != 403 || a.errCode() != "forbidden" {
		t.Errorf("someone else's order: %d %s", a.Status, a.Raw)
	}
	if a := s.do("POST", "/api/v1/orders/"+no+"/pay", s.token(2), ""); a.Status != 403 {
		t.Errorf("paying someone else's order: %d %s", a.Status, a.Raw)
	}
	if a := s.do("POST", "/api/v1/orders/"+no+"/cancel", s.token(2), ""); a.Status != 403 || a.errCode() != "forbidden" {
		t.Errorf("cancelling someone else's order: %d %s", a.Status, a.Raw)
	}
	if o := s.do("GET", "/api/v1/orders/"+no, s.token(1), ""); o.str("status") != "unpaid" {
		t.Errorf("order after another user tried to pay and cancel it: %s", o.Raw)
	}
	if a := s.do("GET", "/api/v1/orders/FGNOPE", s.token(1), ""); a.Status != 404 {
		t.Errorf("unknown order: %d %s", a.Status, a.Raw)
	}
	o := s.do("GET", "/api/v1/orders/"+no, s.token(1), "")
	if o.Status != 200 || o.str("status") != "unpaid" || o.Body["event_id"] != float64(ev) || o.Body["price"] != float64(1999) || o.str("expires_at") == "" || o.Body["paid_at"] != nil {
		t.Errorf("order: %s", o.Raw)
	}

	// Cancel: the unit goes back and the user may buy again.
	c := s.do("POST", "/api/v1/orders/"+no+"/cancel", s.token(1), "")
	if c.Status != 200 || c.str("status") != "cancelled" {
		t.Fatalf("cancel: %d %s", c.Status, c.Raw)
	}
	if a := s.do("POST", "/api/v1/orders/"+no+"/cancel", s.token(1), ""); a.Status != 409 || a.errCode() != "invalid_state" {
		t.Errorf("cancel twice: %d %s", a.Status, a.Raw)
	}
	if a := s.do("POST", "/api/v1/orders/"+no+"/pay", s.token(1), ""); a.Status != 409 || a.errCode() != "invalid_state" {
		t.Errorf("pay a cancelled order: %d %s", a.Status, a.Raw)
	}
	if st, _ := s.redisStock(ev); st != 3 {
		t.Errorf("Redis stock %d after cancel, want 3", st)
	}
	if n := s.count("SELECT stock FROM events WHERE id = ?", ev); n != 3 {
		t.Errorf("MySQL stock %d after cancel, want 3", n)
	}
	again := s.order(ev, 1)
	if again.Status != 202 {
		t.Fatalf("buy again after cancel: %d %s", again.Status, again.Raw)
	}
	no2 := s.waitTicket(1, again.str("ticket")).str("order_no")
	p := s.do("POST", "/api/v1/orders/"+no2+"/pay", s.token(1), "")
	if p.Status != 200 || p.str("status") != "paid" || p.str("paid_at") == "" {
		t.Fatalf("pay: %d %s", p.Status, p.Raw)
	}
	if a := s.do("POST", "/api/v1/orders/"+no2+"/pay", s.token(1), ""); a.Status != 409 || a.errCode() != "invalid_state" {
		t.Errorf("pay twice: %d %s", a.Status, a.Raw)
	}
	if a := s.do("POST", "/api/v1/orders/"+no2+"/cancel", s.token(1), ""); a.Status != 409 {
		t.Errorf("cancel a paid order: %d %s", a.Status, a.Raw)
	}
	// A paid order keeps the unit, so buying again is refused.
	if a := s.order(ev, 1); a.Status != 409 || a.errCode() != "already_purchased" {
		t.Errorf("buy after paying: %d %s", a.Status, a.Raw)
	}
	list := s.do("GET", "/api/v1/orders", s.token(1), "")
	if orders, _ := list.Body["orders"].([]any); len(orders) != 2 {
		t.Errorf("orders: %s", list.Raw)
	}
	if list := s.do("GET", "/api/v1/orders", s.token(2), ""); list.Raw != `{"orders":[]}` {
		t.Errorf("orders of a user with none: %s", list.Raw)
	}
}

// TestWorkerWarmsAndReconciles: an event created straight in MySQL goes on
// sale in Redis before it starts, and a reservation whose order never reached
// Kafka (a gateway that died after the Lua call) is released and its ticket
// fails.
func TestWorkerWarmsAndReconciles(t *testing.T) {
	s := start(t, options{noWS: true, mutate: func(c *config.Config) {
		c.PendingTimeout = time.Second
		c.ProduceTimeout, c.RedisTimeout = 200*time.Millisecond, 200*time.Millisecond
		c.ReconcileEvery = 200 * time.Millisecond
		// Config refuses a pending timeout the gateway could outlive.
		c.ProduceTimeout, c.RedisTimeout = 500*time.Millisecond, 200*time.Millisecond
	}})
	now := time.Now()
	res, err := s.db.Exec("INSERT INTO events (name, price, stock_total, stock, starts_at, ends_at) VALUES ('direct', 5, 4, 4, ?, ?)",
		now.Add(2*time.Minute).UTC(), now.Add(time.Hour).UTC())
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := res.LastInsertId()
	s.waitFor("worker warms the upcoming event", func() bool { st, ok := s.redisStock(ev); return ok && st == 4 })

	ticket := store.NewOrderTicket(ev)
	r, err := s.redis.Reserve(context.Background(), ev, 77, ticket, "")
	if err != nil || r.Status != store.Reserved {
		t.Fatalf("reserve: %+v %v", r, err)
	}
	if st, _ := s.redisStock(ev); st != 3 {
		t.Fatalf("stock after the orphan reservation: %d", st)
	}
	tk := s.waitTicket(77, ticket)
	if tk.str("status") != "failed" || tk.str("reason") != "timeout" {
		t.Errorf("orphan ticket: %s", tk.Raw)
	}
	// The reconciler decides the ticket in MySQL first, then releases Redis.
	s.waitFor("unit released in Redis", func() bool {
		st, _ := s.redisStock(ev)
		return st == 4 && s.buyerTicket(ev, 77) == ""
	})
}

// TestOperationalEndpoints: every service answers /healthz, /readyz and
// /metrics on its internal listener (the worker has only that one); the
// public listeners of gateway and ws answer /healthz and /readyz and nothing
// else of them, and the gateway's serves no admin route. Dev routes exist
// only in dev mode.
func TestOperationalEndpoints(t *testing.T) {
	s := start(t, options{})
	wsHTTP := "http" + s.ws[len("ws"):]
	get := func(url string) (int, string) {
		resp, err := s.client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, base := range []string{s.gatewayInternal, s.worker, s.wsInternal} {
		for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
			if code, _ := get(base + p); code != 200 {
				t.Errorf("%s%s: %d", base, p, code)
			}
		}
	}
	for _, base := range []string{s.gateway, wsHTTP} {
		for _, p := range []string{"/healthz", "/readyz"} {
			if code, _ := get(base + p); code != 200 {
				t.Errorf("%s%s: %d", base, p, code)
			}
		}
		if code, body := get(base + "/metrics"); code != 404 || strings.Contains(body, "flashgate_") {
			t.Errorf("%s/metrics on the public listener: %d %.100s", base, code, body)
		}
	}
	// Admin routes: on the internal listener only, and still with the role.
	body := fmt.Sprintf(`{"name":"x","price":1,"stock":1,"starts_at":%q,"ends_at":%q}`,
		time.Now().Add(time.Hour).UTC().Format(time.RFC3339), time.Now().Add(2*time.Hour).UTC().Format(time.RFC3339))
	for _, p := range []string{"/api/v1/admin/events", "/api/v1/admin/events/1/stock"} {
		a, err := s.tryAt(s.gateway, "POST", p, s.adminToken(), body)
		if err != nil || a.Status != 404 || a.errCode() != "not_found" {
			t.Errorf("POST %s on the public listener: %d %s %v", p, a.Status, a.Raw, err)
		}
	}
	if a, _ := s.tryAt(s.gatewayInternal, "POST", "/api/v1/admin/events", s.adminToken(), body); a.Status != 201 {
		t.Errorf("admin route on the internal listener: %d %s", a.Status, a.Raw)
	}
	if a, _ := s.tryAt(s.gatewayInternal, "POST", "/api/v1/admin/events", s.token(5), body); a.Status != 403 {
		t.Errorf("user token on the internal admin route: %d %s", a.Status, a.Raw)
	}
	if a, _ := s.tryAt(s.gatewayInternal, "GET", "/api/v1/events", "", ""); a.Status != 404 {
		t.Errorf("public route on the internal listener: %d %s", a.Status, a.Raw)
	}
	tok := s.do("POST", "/api/v1/dev/token", "", `{"user_id":42,"admin":true}`)
	if tok.Status != 200 || tok.str("token") == "" {
		t.Fatalf("dev token: %d %s", tok.Status, tok.Raw)
	}
	if c, err := s.signer.Verify(tok.str("token")); err != nil || c.UserID != 42 || !c.IsAdmin() {
		t.Errorf("dev token claims %+v %v", c, err)
	}

	prod := start(t, options{noWorker: true, noWS: true, mutate: func(c *config.Config) {
		c.Dev = false
		c.PaySecret = "a-production-pay-secret-0123456789"
		c.TokenSecret = "a-production-secret-of-enough-length"
		c.SandboxPayments = true
	}})
	if a := prod.do("POST", "/api/v1/dev/token", "", `{"user_id":42}`); a.Status != http.StatusNotFound {
		t.Errorf("dev route outside dev mode: %d %s", a.Status, a.Raw)
	}
	// The sandbox's "complete this pay order" route would credit coins for
	// nothing: outside dev mode it does not exist, even for a real order.
	po := prod.payCreateOrder(7, 1)
	if a := prod.do("POST", "/api/v1/dev/pay/orders/"+po.str("order_id")+"/complete", prod.token(7), ""); a.Status != http.StatusNotFound || a.errCode() != "not_found" {
		t.Errorf("dev pay-complete route outside dev mode: %d %s", a.Status, a.Raw)
	}
	if g := prod.do("GET", "/api/v1/pay/orders/"+po.str("order_id"), prod.token(7), ""); g.str("status") != "paying" {
		t.Errorf("pay order after the dev route was refused: %s", g.Raw)
	}
}

// TestDevTokensForCrowds: a load test's setup mints hundreds of tokens from
// one host. In dev mode the dev token route is not behind the per-IP limit
// (public reads still are), and one request mints a range of users.
func TestDevTokensForCrowds(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true, mutate: func(c *config.Config) {
		c.RateIP = config.Rate{PerSecond: 1, Burst: 2}
	}})
	for i := 1; i <= 20; i++ {
		if a := s.do("POST", "/api/v1/dev/token", "", fmt.Sprintf(`{"user_id":%d}`, i)); a.Status != 200 {
			t.Fatalf("dev token %d from one host: %d %s", i, a.Status, a.Raw)
		}
	}
	limited := false
	for i := 0; i < 5 && !limited; i++ {
		limited = s.do("GET", "/api/v1/events", "", "").Status == 429
	}
	if !limited {
		t.Errorf("public reads are no longer behind the per-IP limit")
	}

	a := s.do("POST", "/api/v1/dev/token", "", `{"user_id":1000,"count":300}`)
	list, _ := a.Body["tokens"].([]any)
	if a.Status != 200 || len(list) != 300 {
		t.Fatalf("range of 300: %d, %d tokens", a.Status, len(list))
	}
	for i, item := range list {
		m := item.(map[string]any)
		c, err := s.signer.Verify(m["token"].(string))
		if err != nil || m["user_id"] != float64(1000+i) || c.UserID != int64(1000+i) || c.IsAdmin() {
			t.Fatalf("token %d: %v claims %+v %v", i, m["user_id"], c, err)
		}
	}
	for _, body := range []string{`{"user_id":1,"count":0}`, `{"user_id":1,"count":10001}`, `{"user_id":9223372036854775807,"count":2}`, `{"count":5}`} {
		if a := s.do("POST", "/api/v1/dev/token", "", body); a.Status != 400 || a.errCode() != "invalid_request" {
			t.Errorf("%s: %d %s", body, a.Status, a.Raw)
		}
	}
}
