package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/store"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Tests of what a service refuses and how it behaves outside dev mode
// (issue 10, "safe to put on the internet").

const (
	prodTokenSecret = "a-production-token-secret-0123456789"
	prodPaySecret   = "a-production-pay-secret-0123456789"
)

// production turns a test configuration into one outside dev mode, with
// secrets a production service accepts.
func production(c *config.Config) {
	c.Dev = false
	c.TokenSecret = prodTokenSecret
	c.PaySecret = prodPaySecret
}

// fakeCharges is a payment provider for POST /orders/{no}/pay that records
// what it was asked and fails or interferes on demand.
type fakeCharges struct {
	mu      sync.Mutex
	fail    bool
	before  func(orderNo string) // runs inside Charge, before it answers
	charged map[string]int64     // order → amount
	refunds map[string]string    // order → txn
}

func (f *fakeCharges) Charge(ctx context.Context, orderNo string, userID, amount int64) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.before != nil {
		f.before(orderNo)
	}
	if f.fail {
		return "", errors.New("card declined")
	}
	if f.charged == nil {
		f.charged = map[string]int64{}
	}
	f.charged[orderNo] = amount
	return "txn-" + orderNo, nil
}

// set changes the fake under its lock, as the gateway reads it under it.
func (f *fakeCharges) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func (f *fakeCharges) Refund(ctx context.Context, orderNo, txn string, amount int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refunds == nil {
		f.refunds = map[string]string{}
	}
	f.refunds[orderNo] = txn
	return nil
}

// TestOrderPaymentsProvider: outside dev mode, POST /orders/{no}/pay goes
// through the configured provider. A failed charge is a 503 that leaves the
// order unpaid; a charge for an order that expired meanwhile is refunded
// and answered 409; a good charge pays the order for its price.
func TestOrderPaymentsProvider(t *testing.T) {
	prov := &fakeCharges{}
	s := start(t, options{noWS: true, orderPayments: prov, mutate: func(c *config.Config) {
		production(c)
		c.SandboxPayments = true // the worker's payouts only
	}})
	ev := s.liveEvent(5)
	buy := func(uid int64) string {
		a := s.order(ev, uid)
		if a.Status != 202 {
			t.Fatalf("order of user %d: %d %s", uid, a.Status, a.Raw)
		}
		return s.waitTicket(uid, a.str("ticket")).str("order_no")
	}
	no := buy(1)
	status := func(uid int64, no string) string {
		return s.do("GET", "/api/v1/orders/"+no, s.token(uid), "").str("status")
	}

	prov.set(func() { prov.fail = true })
	if a := s.do("POST", "/api/v1/orders/"+no+"/pay", s.token(1), ""); a.Status != 503 || a.errCode() != "unavailable" {
		t.Errorf("declined charge: %d %s", a.Status, a.Raw)
	}
	if st := status(1, no); st != "unpaid" {
		t.Errorf("order after a declined charge is %s, want unpaid", st)
	}
	prov.set(func() { prov.fail = false })
	if a := s.do("POST", "/api/v1/orders/"+no+"/pay", s.token(1), ""); a.Status != 200 || a.str("status") != "paid" {
		t.Fatalf("pay: %d %s", a.Status, a.Raw)
	}
	prov.set(func() {
		if prov.charged[no] != 1999 {
			t.Errorf("provider charged %d for the order, want its price 1999", prov.charged[no])
		}
	})

	// The order is cancelled while the provider is charging: the money goes
	// back and the client hears that the order is no longer unpaid.
	no2 := buy(2)
	prov.set(func() {
		prov.before = func(orderNo string) {
			if _, err := s.db.Exec("UPDATE orders SET status = 'cancelled' WHERE order_no = ?", orderNo); err != nil {
				t.Error(err)
			}
		}
	})
	if a := s.do("POST", "/api/v1/orders/"+no2+"/pay", s.token(2), ""); a.Status != 409 || a.errCode() != "invalid_state" {
		t.Errorf("pay racing a cancel: %d %s", a.Status, a.Raw)
	}
	prov.set(func() {
		prov.before = nil
		if prov.refunds[no2] != "txn-"+no2 {
			t.Errorf("refunds %v, want the charge of %s refunded", prov.refunds, no2)
		}
	})
}

// TestSandboxPaymentsFlag: outside dev mode the gateway and the worker start
// with their sandboxes only with FLASHGATE_SANDBOX_PAYMENTS=1, and then log a
// warning at every start; without it they refuse, saying why.
func TestSandboxPaymentsFlag(t *testing.T) {
	s := start(t, options{noWS: true, noWorker: true})
	prod := []string{"FLASHGATE_DEV=0", "FLASHGATE_TOKEN_SECRET=" + prodTokenSecret, "FLASHGATE_PAY_SECRET=" + prodPaySecret}
	for _, service := range []string{"gateway", "worker"} {
		p := s.startProc(service, append(prod, "FLASHGATE_SANDBOX_PAYMENTS=1")...)
		if out := p.output(); !strings.Contains(out, "FLASHGATE_SANDBOX_PAYMENTS=1: ") || !strings.Contains(out, "level=WARN") {
			t.Errorf("%s started with the sandbox but logged no warning:\n%s", service, out)
		}
		p.term(10 * time.Second)

		out, code := s.runProc(service, prod...)
		if code != 1 || !strings.Contains(out, "refusing to start: FLASHGATE_SANDBOX_PAYMENTS is not set") {
			t.Errorf("%s without FLASHGATE_SANDBOX_PAYMENTS: exit %d\n%s", service, code, out)
		}
	}
}

// TestIdempotencyKeysCaseSensitive: Idempotency-Keys that differ only in
// case are different keys, in Redis and MySQL alike: each gets its own pay
// order, withdrawal and gift, and a repeat of the exact key still gets the
// first answer.
func TestIdempotencyKeysCaseSensitive(t *testing.T) {
	s := start(t, options{noWS: true})
	const uid = 41
	tok := s.token(uid)

	a := s.do("POST", "/api/v1/pay/orders", tok, `{"product_id":1}`, "Idempotency-Key", "Key-A")
	b := s.do("POST", "/api/v1/pay/orders", tok, `{"product_id":2}`, "Idempotency-Key", "key-a")
	again := s.do("POST", "/api/v1/pay/orders", tok, `{"product_id":1}`, "Idempotency-Key", "Key-A")
	if a.Status != 201 || b.Status != 201 || a.str("order_id") == b.str("order_id") || b.Body["amount"] != float64(3000) {
		t.Errorf("pay orders under Key-A and key-a: %d %s / %d %s", a.Status, a.Raw, b.Status, b.Raw)
	}
	if again.str("order_id") != a.str("order_id") {
		t.Errorf("repeat of Key-A: %s, want the first answer %s", again.Raw, a.Raw)
	}

	s.giveEarnings(uid, 1000)
	w1 := s.do("POST", "/api/v1/withdrawals", tok, `{"amount":100}`, "Idempotency-Key", "W-1")
	w2 := s.do("POST", "/api/v1/withdrawals", tok, `{"amount":200}`, "Idempotency-Key", "w-1")
	if w1.Status != 202 || w2.Status != 202 || w1.Body["withdrawal_id"] == w2.Body["withdrawal_id"] {
		t.Errorf("withdrawals under W-1 and w-1: %d %s / %d %s", w1.Status, w1.Raw, w2.Status, w2.Raw)
	}
	if _, earnings := s.walletRowBalances(uid); earnings != 700 {
		t.Errorf("earnings %d after withdrawing 100 and 200 of 1000, want 700", earnings)
	}

	s.seedWallet(uid, 100)
	g1 := s.gift(1, uid, 7, 1, 1, "Idempotency-Key", "G-1")
	g2 := s.gift(1, uid, 7, 1, 1, "Idempotency-Key", "g-1")
	if g1.Status != 202 || g2.Status != 202 || g1.str("ticket") == g2.str("ticket") {
		t.Fatalf("gifts under G-1 and g-1: %d %s / %d %s", g1.Status, g1.Raw, g2.Status, g2.Raw)
	}
	for _, g := range []answer{g1, g2} {
		if tk := s.waitTicket(uid, g.str("ticket")); tk.str("status") != "succeeded" {
			t.Errorf("gift ticket: %s", tk.Raw)
		}
	}
}

// TestWorkerChecksGiftCoins: the worker does not trust the money in a gift
// record. Records that someone other than the gateway produced, whose coins
// are not their catalog price times their count (at their catalog version),
// that name a version that does not exist or is another gift's, or that give
// to their own sender, fail as invalid and go to the dead-letter topic; the
// victim's balance and the receiver's earnings do not move. The gateway's
// own gifts, and a record priced at a version from before a price change,
// are written.
func TestWorkerChecksGiftCoins(t *testing.T) {
	s := start(t, options{noWS: true})
	const victim, thief = 61, 62
	s.seedWallet(victim, 10_000)
	ctx := context.Background()
	var roseV1 int64
	if err := s.db.Get(&roseV1, "SELECT id FROM gift_prices WHERE gift_id = 1 AND price = 1"); err != nil {
		t.Fatal(err)
	}
	var rocketV int64
	if err := s.db.Get(&rocketV, "SELECT id FROM gift_prices WHERE gift_id = 3 AND price = 100"); err != nil {
		t.Fatal(err)
	}
	// A ticket of the victim's, as the attacker would make one up.
	newTicket := func() string { return fmt.Sprintf("g%d-%016x", victim, time.Now().UnixNano()) }
	forged := map[string]bus.Gift{}
	add := func(name string, g bus.Gift) {
		g.Ticket, g.RoomID, g.SenderID, g.HeldAt = newTicket(), 1, victim, time.Now().UnixMilli()
		forged[name] = g
	}
	add("whole balance for one rose", bus.Gift{ReceiverID: thief, GiftID: 1, Count: 1, Coins: 10_000, CatalogVersion: roseV1})
	add("whole balance, no version", bus.Gift{ReceiverID: thief, GiftID: 1, Count: 1, Coins: 10_000})
	add("a version that does not exist", bus.Gift{ReceiverID: thief, GiftID: 1, Count: 1, Coins: 1, CatalogVersion: 1 << 40})
	add("another gift's version", bus.Gift{ReceiverID: thief, GiftID: 1, Count: 1, Coins: 100, CatalogVersion: rocketV})
	add("a gift to its own sender", bus.Gift{ReceiverID: victim, GiftID: 1, Count: 1, Coins: 1, CatalogVersion: roseV1})
	var recs []*kgo.Record
	for _, g := range forged {
		recs = append(recs, bus.GiftRecord(s.cfg.GiftsTopic(), g))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.cfg.KafkaBrokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for name, g := range forged {
		if tk := s.waitTicket(victim, g.Ticket); tk.str("status") != "failed" || tk.str("reason") != "invalid" {
			t.Errorf("%s: ticket %s", name, tk.Raw)
		}
	}
	if bal, _ := s.walletRowBalances(victim); bal != 10_000 {
		t.Errorf("victim's balance %d after forged gifts, want 10000", bal)
	}
	if _, earn := s.walletRowBalances(thief); earn != 0 {
		t.Errorf("thief's earnings %d after forged gifts, want 0", earn)
	}
	if n := s.topicEnd(s.cfg.GiftsDLQTopic()); n != int64(len(forged)) {
		t.Errorf("%d records dead-lettered, want the %d forged ones", n, len(forged))
	}

	// The price of a rose changes: the gateway serves the new price with a
	// new version, and a record held at the old version is still written.
	if _, err := s.db.Exec("UPDATE gifts SET price = 2 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	s.waitFor("the gateway to serve the new price", func() bool {
		return strings.Contains(s.do("GET", "/api/v1/gifts", "", "").Raw, `"id":1,"name":"Rose","price":2`)
	})
	a := s.gift(1, victim, thief, 1, 3)
	if a.Status != 202 {
		t.Fatalf("gift at the new price: %d %s", a.Status, a.Raw)
	}
	if tk := s.waitTicket(victim, a.str("ticket")); tk.str("status") != "succeeded" {
		t.Fatalf("gift at the new price: %s", tk.Raw)
	}
	old := newTicket()
	s.redis.HoldGift(ctx, victim, old, 4, "", store.Limit{})
	if err := cl.ProduceSync(ctx, bus.GiftRecord(s.cfg.GiftsTopic(), bus.Gift{Ticket: old, RoomID: 1, SenderID: victim, ReceiverID: thief,
		GiftID: 1, Count: 4, Coins: 4, CatalogVersion: roseV1, HeldAt: time.Now().UnixMilli()})).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if tk := s.waitTicket(victim, old); tk.str("status") != "succeeded" {
		t.Errorf("gift held at the old price, written after the change: %s", tk.Raw)
	}
	if _, earn := s.walletRowBalances(thief); earn != 6+4 {
		t.Errorf("receiver's earnings %d, want 6 (3 roses at 2) + 4 (4 at 1)", earn)
	}
}
