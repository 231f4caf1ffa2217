package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/sandbox"
	"github.com/flashgate/flashgate/worker"
)

// TestPayNotify: a valid notify replayed 20 times at once credits the coins
// once, in MySQL and in the loaded Redis hot balance; notifies with a bad
// signature, a wrong amount or a bad body credit nothing.
func TestPayNotify(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true})
	const uid = 41

	p := s.do("GET", "/api/v1/pay/products", "", "")
	products, _ := p.Body["products"].([]any)
	if p.Status != 200 || len(products) != 3 {
		t.Fatalf("products: %d %s", p.Status, p.Raw)
	}
	a := s.payCreateOrder(uid, 2)
	id := a.str("order_id")
	if a.Body["amount"] != float64(3000) || a.Body["coins"] != float64(300) {
		t.Fatalf("pay order: %s", a.Raw)
	}
	if b := s.loadHotBalance(uid); b != 0 {
		t.Fatalf("hot balance before paying: %d", b)
	}
	good := fmt.Sprintf(`{"order_id":%q,"status":"success","amount":3000,"provider_txn":"txn-%s"}`, id, id)

	refused := []struct {
		name, body, sig string
		status          int
		code            string
	}{
		{"no signature", good, "", 401, "unauthorized"},
		{"signature of another body", good, sandbox.Sign(s.cfg.PaySecret, []byte(good+" ")), 401, "unauthorized"},
		{"signature with another secret", good, sandbox.Sign("not-the-secret", []byte(good)), 401, "unauthorized"},
		{"signature not hex", good, "zz" + strings.Repeat("0", 62), 401, "unauthorized"},
		{"wrong amount", strings.Replace(good, "3000", "300", 1), "sign", 400, "invalid_request"},
		{"amount as string", strings.Replace(good, "3000", `"3000"`, 1), "sign", 400, "invalid_request"},
		{"malformed JSON", `{"order_id":`, "sign", 400, "invalid_request"},
		{"not an object", `["x"]`, "sign", 400, "invalid_request"},
		{"no provider_txn", fmt.Sprintf(`{"order_id":%q,"status":"success","amount":3000}`, id), "sign", 400, "invalid_request"},
		{"unknown order", strings.Replace(good, id, "P0000000000000000", 1), "sign", 404, "not_found"},
	}
	for _, c := range refused {
		sig := c.sig
		if sig == "sign" {
			sig = sandbox.Sign(s.cfg.PaySecret, []byte(c.body))
		}
		var hdr []string
		if sig != "" {
			hdr = []string{"X-Signature", sig}
		}
		r := s.do("POST", "/api/v1/pay/notify", "", c.body, hdr...)
		if r.Status != c.status || r.errCode() != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, r.Status, r.Raw, c.status, c.code)
		}
	}
	// A payment that did not succeed is acknowledged and changes nothing.
	if r, err := s.payNotify(strings.Replace(good, `"success"`, `"failed"`, 1)); err != nil || r.Status != 200 || r.Body["ok"] != true {
		t.Errorf("failed-payment notify: %v %d %s", err, r.Status, r.Raw)
	}
	if w := s.walletRow(uid); w.Balance != 0 || s.count("SELECT COUNT(*) FROM ledger") != 0 {
		t.Fatalf("refused notifies credited something: %+v", w)
	}
	if o := s.do("GET", "/api/v1/pay/orders/"+id, s.token(uid), ""); o.str("status") != "paying" {
		t.Fatalf("order after refused notifies: %s", o.Raw)
	}

	var wg sync.WaitGroup
	errs := make(chan string, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.payNotify(good)
			if err != nil || r.Status != 200 || r.Body["ok"] != true {
				errs <- fmt.Sprintf("%v %d %s", err, r.Status, r.Raw)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("replayed notify: %s", e)
	}
	w := s.walletRow(uid)
	if w.Balance != 300 || w.TotalRecharged != 300 {
		t.Errorf("wallet after 20 replays: %+v, want balance 300", w)
	}
	if n := s.count("SELECT COUNT(*) FROM ledger WHERE user_id = ? AND kind = 'recharge' AND ref = ?", uid, id); n != 1 {
		t.Errorf("%d recharge ledger rows, want 1", n)
	}
	if b := s.loadHotBalance(uid); b != 300 {
		t.Errorf("hot balance %d, want 300", b)
	}
	if n := s.count("SELECT COUNT(*) FROM pay_orders WHERE order_id = ? AND hot_credited_at IS NOT NULL", id); n != 1 {
		t.Errorf("the order is not marked hot-credited after the notify put it in Redis")
	}
	o := s.do("GET", "/api/v1/pay/orders/"+id, s.token(uid), "")
	if o.Status != 200 || o.str("status") != "paid" || o.str("paid_at") == "" {
		t.Errorf("order after notify: %s", o.Raw)
	}
	if n := s.count("SELECT COUNT(*) FROM pay_orders WHERE order_id = ? AND provider_txn = ?", id, "txn-"+id); n != 1 {
		t.Errorf("provider_txn not recorded")
	}
	// Later replays, and a wrong amount after the payment, change nothing.
	if r, _ := s.payNotify(good); r.Status != 200 {
		t.Errorf("late replay: %d %s", r.Status, r.Raw)
	}
	if r, _ := s.payNotify(strings.Replace(good, "3000", "1", 1)); r.Status != 400 {
		t.Errorf("wrong amount after payment: %d %s", r.Status, r.Raw)
	}
	if b := s.loadHotBalance(uid); b != 300 || s.walletRow(uid).Balance != 300 {
		t.Errorf("after late replays: hot %d, MySQL %d; want 300", b, s.walletRow(uid).Balance)
	}

	// Another order cannot claim the same provider transaction.
	id2 := s.payCreateOrder(uid, 1).str("order_id")
	r, _ := s.payNotify(fmt.Sprintf(`{"order_id":%q,"status":"success","amount":600,"provider_txn":"txn-%s"}`, id2, id))
	if r.Status != 400 || s.walletRow(uid).Balance != 300 {
		t.Errorf("reused provider_txn: %d %s, balance %d", r.Status, r.Raw, s.walletRow(uid).Balance)
	}

	// Only the owner sees an order; to anyone else it does not exist.
	if o := s.do("GET", "/api/v1/pay/orders/"+id, s.token(uid+1), ""); o.Status != 404 || o.errCode() != "not_found" {
		t.Errorf("another user's order: %d %s", o.Status, o.Raw)
	}
}

// TestPayDevComplete: the dev endpoint makes the sandbox provider send a
// real signed notify over HTTP; the order is paid and credited once, however
// often it is called. Idempotency-Key on order creation returns the first order.
func TestPayDevComplete(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true})
	const uid = 52
	first := s.do("POST", "/api/v1/pay/orders", s.token(uid), `{"product_id":1}`, "Idempotency-Key", "recharge-1")
	again := s.do("POST", "/api/v1/pay/orders", s.token(uid), `{"product_id":1}`, "Idempotency-Key", "recharge-1")
	if first.Status != 201 || again.Status != 201 || first.Raw != again.Raw {
		t.Fatalf("idempotent create: %d %s / %d %s", first.Status, first.Raw, again.Status, again.Raw)
	}
	if n := s.count("SELECT COUNT(*) FROM pay_orders WHERE user_id = ?", uid); n != 1 {
		t.Fatalf("%d pay orders after a repeated Idempotency-Key, want 1", n)
	}
	id := first.str("order_id")
	if b := s.loadHotBalance(uid); b != 0 {
		t.Fatalf("hot balance %d", b)
	}
	for i := 0; i < 2; i++ {
		a := s.do("POST", "/api/v1/dev/pay/orders/"+id+"/complete", "", "")
		if a.Status != 200 || a.str("status") != "paid" || a.str("order_id") != id {
			t.Fatalf("complete #%d: %d %s", i+1, a.Status, a.Raw)
		}
	}
	if w := s.walletRow(uid); w.Balance != 60 {
		t.Errorf("balance %d after two completes, want 60", w.Balance)
	}
	if b := s.loadHotBalance(uid); b != 60 {
		t.Errorf("hot balance %d, want 60", b)
	}
	if n := s.count("SELECT COUNT(*) FROM ledger WHERE kind = 'recharge' AND ref = ?", id); n != 1 {
		t.Errorf("%d ledger rows, want 1", n)
	}
	if n := s.count("SELECT COUNT(*) FROM pay_orders WHERE order_id = ? AND provider_txn = ?", id, sandbox.TxnFor(id)); n != 1 {
		t.Errorf("the order does not carry the sandbox's transaction")
	}
	if a := s.do("POST", "/api/v1/dev/pay/orders/P0000000000000000/complete", "", ""); a.Status != 404 {
		t.Errorf("completing an unknown order: %d %s", a.Status, a.Raw)
	}
	// A repeated key still returns the first answer after the payment.
	if a := s.do("POST", "/api/v1/pay/orders", s.token(uid), `{"product_id":1}`, "Idempotency-Key", "recharge-1"); a.Raw != first.Raw {
		t.Errorf("replay after payment: %s, want %s", a.Raw, first.Raw)
	}
}

// payoutStub wraps the sandbox payout provider to misbehave.
type payoutStub struct {
	real *sandbox.Payouts

	mu    sync.Mutex
	calls int
	// fail decides whether call n (from 1) fails; paid says whether the
	// failing call paid before failing (an answer lost on the way back).
	fail func(n int) (fail, paid bool)
	// afterPay runs after a successful payout, before it is returned.
	afterPay func()
}

var errStubPayout = errors.New("payout provider unavailable (test)")

func (p *payoutStub) Payout(ctx context.Context, key string, userID, amount int64) (string, error) {
	p.mu.Lock()
	p.calls++
	n := p.calls
	p.mu.Unlock()
	fail, paid := false, false
	if p.fail != nil {
		fail, paid = p.fail(n)
	}
	if fail && !paid {
		return "", errStubPayout
	}
	txn, err := p.real.Payout(ctx, key, userID, amount)
	if err != nil {
		return "", err
	}
	if fail {
		return "", fmt.Errorf("answer lost: %w", errStubPayout)
	}
	if p.afterPay != nil {
		p.afterPay()
	}
	return txn, nil
}

func (p *payoutStub) VoidPayout(ctx context.Context, key string) error {
	return p.real.VoidPayout(ctx, key)
}

func (p *payoutStub) PayoutStatus(ctx context.Context, key string) (worker.PayoutStatus, error) {
	return p.real.PayoutStatus(ctx, key)
}

func (p *payoutStub) count() int { p.mu.Lock(); defer p.mu.Unlock(); return p.calls }

// TestWithdrawExactlyOnce: the payout provider fails twice (the second
// time after paying: its answer is lost), then succeeds, and the worker
// "crashes" right after the provider paid, before it recorded the outcome.
// A new worker pays the redelivered message again under the same key: one
// payout at the provider, earnings deducted once, the withdrawal succeeded.
func TestWithdrawExactlyOnce(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true, mutate: fastPayouts})
	const uid = 63
	s.giveEarnings(uid, 1000)

	a := s.do("POST", "/api/v1/withdrawals", s.token(uid), `{"amount":400}`)
	if a.Status != 202 || a.str("status") != "pending" {
		t.Fatalf("withdraw: %d %s", a.Status, a.Raw)
	}
	wid := int64(a.Body["withdrawal_id"].(float64))
	if w := s.walletRow(uid); w.Earnings != 600 {
		t.Fatalf("earnings right after the request: %d, want 600", w.Earnings)
	}

	sbx := &sandbox.Payouts{DB: s.db}
	crashed := make(chan struct{})
	var once sync.Once
	ctx1, crash := context.WithCancel(context.Background())
	defer crash()
	first := &payoutStub{real: sbx,
		fail: func(n int) (bool, bool) { return n <= 2, n == 2 },
		// The provider has paid; the worker dies before it hears back.
		afterPay: func() { once.Do(func() { crash(); close(crashed) }) },
	}
	stop1 := s.payWorker(ctx1, "worker 1", first)
	select {
	case <-crashed:
	case <-time.After(60 * time.Second):
		t.Fatalf("the first worker never paid (%d calls)", first.count())
	}
	stop1()
	if first.count() != 3 {
		t.Errorf("first worker made %d payout calls, want 3", first.count())
	}
	if st := s.count("SELECT COUNT(*) FROM withdrawals WHERE id = ? AND status = 'pending'", wid); st != 1 {
		t.Fatalf("the crashed worker recorded an outcome; the test did not crash it in time")
	}

	second := &payoutStub{real: sbx}
	s.payWorker(context.Background(), "worker 2", second)
	s.waitFor("withdrawal succeeded", func() bool {
		g := s.do("GET", fmt.Sprintf("/api/v1/withdrawals/%d", wid), s.token(uid), "")
		return g.str("status") == "succeeded"
	})
	if second.count() != 1 {
		t.Errorf("second worker made %d payout calls, want 1 (the redelivered message)", second.count())
	}
	if n := s.count("SELECT COUNT(*) FROM sandbox_payouts"); n != 1 {
		t.Errorf("%d payouts at the provider, want 1", n)
	}
	if n := s.count(`SELECT COUNT(*) FROM sandbox_payouts s JOIN withdrawals w ON w.payout_txn = s.txn
		WHERE w.id = ? AND s.idempotency_key = w.payout_key AND w.payout_key LIKE 'wd\\_%' AND s.user_id = ? AND s.amount = 400`,
		wid, uid); n != 1 {
		t.Errorf("the withdrawal does not carry the provider's transaction under its own random key")
	}
	if n := s.count("SELECT COUNT(*) FROM ledger WHERE user_id = ? AND kind = 'withdrawal'", uid); n != 1 {
		t.Errorf("%d withdrawal ledger rows, want 1", n)
	}
	if n := s.count("SELECT COUNT(*) FROM ledger WHERE user_id = ? AND kind = 'withdrawal_refund'", uid); n != 0 {
		t.Errorf("%d refunds, want none", n)
	}
	if w := s.walletRow(uid); w.Earnings != 600 || w.TotalWithdrawn != 400 {
		t.Errorf("wallet: %+v, want earnings 600 and 400 withdrawn", w)
	}
	g := s.do("GET", fmt.Sprintf("/api/v1/withdrawals/%d", wid), s.token(uid), "")
	if g.Body["amount"] != float64(400) || g.Body["withdrawal_id"] != float64(wid) {
		t.Errorf("withdrawal: %s", g.Raw)
	}
	if o := s.do("GET", fmt.Sprintf("/api/v1/withdrawals/%d", wid), s.token(uid+1), ""); o.Status != 404 {
		t.Errorf("another user's withdrawal: %d %s", o.Status, o.Raw)
	}
}

// TestWithdrawRefused: short earnings get 402 and change nothing; a payout
// that keeps failing ends the withdrawal failed with the earnings refunded.
func TestWithdrawRefused(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true, mutate: func(c *config.Config) {
		fastPayouts(c)
		c.PayoutAttempts = 3
	}})
	const uid = 74
	s.giveEarnings(uid, 100)
	for _, body := range []string{`{"amount":101}`, `{"amount":100000000}`} {
		if a := s.do("POST", "/api/v1/withdrawals", s.token(uid), body); a.Status != 402 || a.errCode() != "insufficient_balance" {
			t.Errorf("withdraw %s of 100: %d %s", body, a.Status, a.Raw)
		}
	}
	if a := s.do("POST", "/api/v1/withdrawals", s.token(uid+1), `{"amount":1}`); a.Status != 402 {
		t.Errorf("withdraw without a wallet: %d %s", a.Status, a.Raw)
	}
	if w := s.walletRow(uid); w.Earnings != 100 || w.TotalWithdrawn != 0 {
		t.Errorf("refused withdrawals changed the wallet: %+v", w)
	}
	if n := s.count("SELECT (SELECT COUNT(*) FROM withdrawals) + (SELECT COUNT(*) FROM outbox) + (SELECT COUNT(*) FROM ledger WHERE kind LIKE 'withdrawal%')"); n != 0 {
		t.Errorf("refused withdrawals left %d rows behind", n)
	}

	broken := &payoutStub{real: &sandbox.Payouts{DB: s.db}, fail: func(int) (bool, bool) { return true, false }}
	s.payWorker(context.Background(), "worker", broken)
	a := s.do("POST", "/api/v1/withdrawals", s.token(uid), `{"amount":60}`)
	if a.Status != 202 {
		t.Fatalf("withdraw: %d %s", a.Status, a.Raw)
	}
	wid := int64(a.Body["withdrawal_id"].(float64))
	s.waitFor("withdrawal failed", func() bool {
		return s.do("GET", fmt.Sprintf("/api/v1/withdrawals/%d", wid), s.token(uid), "").str("status") == "failed"
	})
	if broken.count() != 3 {
		t.Errorf("%d payout calls, want the budget of 3", broken.count())
	}
	if w := s.walletRow(uid); w.Earnings != 100 || w.TotalWithdrawn != 0 {
		t.Errorf("after the refund: %+v, want earnings 100", w)
	}
	for _, kind := range []string{"withdrawal", "withdrawal_refund"} {
		if n := s.count("SELECT COUNT(*) FROM ledger WHERE user_id = ? AND kind = ? AND ref = ?", uid, kind, fmt.Sprint(wid)); n != 1 {
			t.Errorf("%d %s ledger rows, want 1", n, kind)
		}
	}
	if n := s.count("SELECT COUNT(*) FROM withdrawals WHERE id = ? AND attempts = 3 AND last_error <> ''", wid); n != 1 {
		t.Errorf("attempts and last error not recorded")
	}
	if n := s.count("SELECT COUNT(*) FROM sandbox_payouts WHERE txn IS NOT NULL"); n != 0 {
		t.Errorf("%d payouts made for a failed withdrawal", n)
	}
	// It was refunded only once the provider had voided its key: no payout
	// can land after the refund.
	if n := s.count(`SELECT COUNT(*) FROM sandbox_payouts s JOIN withdrawals w ON s.idempotency_key = w.payout_key
		WHERE w.id = ? AND s.voided_at IS NOT NULL`, wid); n != 1 {
		t.Errorf("the failed withdrawal's payout key was not voided at the provider")
	}
}

// TestWithdrawConcurrent: concurrent withdrawals never take earnings below
// zero, and a repeated Idempotency-Key withdraws once.
func TestWithdrawConcurrent(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true})
	const uid = 85
	s.giveEarnings(uid, 500)

	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := s.try("POST", "/api/v1/withdrawals", s.token(uid), `{"amount":100}`)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				codes[-1]++
				return
			}
			codes[a.Status]++
		}()
	}
	wg.Wait()
	if codes[202] != 5 || codes[402] != 5 {
		t.Errorf("10 withdrawals of 100 from 500: %v, want 5 accepted and 5 refused", codes)
	}
	if w := s.walletRow(uid); w.Earnings != 0 {
		t.Errorf("earnings %d, want 0", w.Earnings)
	}

	s.giveEarnings(uid, 300)
	ids := make(chan string, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := s.try("POST", "/api/v1/withdrawals", s.token(uid), `{"amount":100}`, "Idempotency-Key", "payday-1")
			if err != nil || a.Status != 202 {
				ids <- fmt.Sprintf("error: %v %d %s", err, a.Status, a.Raw)
				return
			}
			ids <- a.Raw
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for r := range ids {
		seen[r] = true
	}
	if len(seen) != 1 {
		t.Errorf("a repeated Idempotency-Key got different answers: %v", seen)
	}
	if w := s.walletRow(uid); w.Earnings != 200 {
		t.Errorf("earnings %d after one keyed withdrawal of 100 from 300, want 200", w.Earnings)
	}
	if n := s.count("SELECT COUNT(*) FROM outbox"); n != 6 {
		t.Errorf("%d outbox messages, want 6 (one per accepted withdrawal)", n)
	}
}

// TestPayBadInput: malformed requests to the recharge and withdrawal
// endpoints get a 4xx with the JSON error body, never a 5xx, and change nothing.
func TestPayBadInput(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true})
	const uid = 96
	s.giveEarnings(uid, 50)
	tok := s.token(uid)
	order := s.payCreateOrder(uid, 3).str("order_id")
	cases := []errorCase{
		{"order: malformed JSON", "POST", "/api/v1/pay/orders", tok, `{"product_id":`, nil, 400, "invalid_request"},
		{"order: empty body", "POST", "/api/v1/pay/orders", tok, ``, nil, 400, "invalid_request"},
		{"order: no product", "POST", "/api/v1/pay/orders", tok, `{}`, nil, 400, "invalid_request"},
		{"order: product as string", "POST", "/api/v1/pay/orders", tok, `{"product_id":"1"}`, nil, 400, "invalid_request"},
		{"order: product zero", "POST", "/api/v1/pay/orders", tok, `{"product_id":0}`, nil, 400, "invalid_request"},
		{"order: product negative", "POST", "/api/v1/pay/orders", tok, `{"product_id":-3}`, nil, 400, "invalid_request"},
		{"order: product fraction", "POST", "/api/v1/pay/orders", tok, `{"product_id":1.5}`, nil, 400, "invalid_request"},
		{"order: product overflow", "POST", "/api/v1/pay/orders", tok, `{"product_id":99999999999999999999}`, nil, 400, "invalid_request"},
		{"order: unknown product", "POST", "/api/v1/pay/orders", tok, `{"product_id":999}`, nil, 404, "not_found"},
		{"order: bad idempotency key", "POST", "/api/v1/pay/orders", tok, `{"product_id":1}`, []string{"Idempotency-Key", "a b"}, 400, "invalid_request"},
		{"order: no token", "POST", "/api/v1/pay/orders", "", `{"product_id":1}`, nil, 401, "unauthorized"},
		{"order: 100 KiB body", "POST", "/api/v1/pay/orders", tok, `{"pad":"` + strings.Repeat("a", 100<<10) + `"}`, nil, 413, "body_too_large"},
		{"get order: unknown", "GET", "/api/v1/pay/orders/P0123456789ABCDEF", tok, ``, nil, 404, "not_found"},
		{"get order: odd characters", "GET", "/api/v1/pay/orders/P%27%20OR%201", tok, ``, nil, 404, "not_found"},
		{"get order: too long", "GET", "/api/v1/pay/orders/" + strings.Repeat("P", 65), tok, ``, nil, 404, "not_found"},
		{"get order: no token", "GET", "/api/v1/pay/orders/" + order, "", ``, nil, 401, "unauthorized"},
		{"dev complete: odd id", "POST", "/api/v1/dev/pay/orders/%00/complete", "", ``, nil, 404, "not_found"},
		{"dev complete: bad body", "POST", "/api/v1/dev/pay/orders/" + order + "/complete", "", `[`, nil, 400, "invalid_request"},
		{"withdraw: malformed JSON", "POST", "/api/v1/withdrawals", tok, `{"amount":`, nil, 400, "invalid_request"},
		{"withdraw: no amount", "POST", "/api/v1/withdrawals", tok, `{}`, nil, 400, "invalid_request"},
		{"withdraw: amount zero", "POST", "/api/v1/withdrawals", tok, `{"amount":0}`, nil, 400, "invalid_request"},
		{"withdraw: amount negative", "POST", "/api/v1/withdrawals", tok, `{"amount":-10}`, nil, 400, "invalid_request"},
		{"withdraw: amount fraction", "POST", "/api/v1/withdrawals", tok, `{"amount":2.5}`, nil, 400, "invalid_request"},
		{"withdraw: amount string", "POST", "/api/v1/withdrawals", tok, `{"amount":"10"}`, nil, 400, "invalid_request"},
		{"withdraw: amount huge", "POST", "/api/v1/withdrawals", tok, `{"amount":1000000000000}`, nil, 400, "invalid_request"},
		{"withdraw: amount overflow", "POST", "/api/v1/withdrawals", tok, `{"amount":9223372036854775808}`, nil, 400, "invalid_request"},
		{"withdraw: trailing data", "POST", "/api/v1/withdrawals", tok, `{"amount":10} x`, nil, 400, "invalid_request"},
		{"withdraw: bad idempotency key", "POST", "/api/v1/withdrawals", tok, `{"amount":10}`, []string{"Idempotency-Key", strings.Repeat("k", 65)}, 400, "invalid_request"},
		{"withdraw: no token", "POST", "/api/v1/withdrawals", "", `{"amount":10}`, nil, 401, "unauthorized"},
		{"get withdrawal: not a number", "GET", "/api/v1/withdrawals/abc", tok, ``, nil, 404, "not_found"},
		{"get withdrawal: zero", "GET", "/api/v1/withdrawals/0", tok, ``, nil, 404, "not_found"},
		{"get withdrawal: unknown", "GET", "/api/v1/withdrawals/123456", tok, ``, nil, 404, "not_found"},
		{"products: wrong method", "POST", "/api/v1/pay/products", "", `{}`, nil, 405, "method_not_allowed"},
	}
	checkErrorCases(t, s, cases)
	if n := s.count("SELECT COUNT(*) FROM pay_orders"); n != 1 {
		t.Errorf("%d pay orders, want only the valid one", n)
	}
	if n := s.count("SELECT COUNT(*) FROM withdrawals"); n != 0 {
		t.Errorf("%d withdrawals created by bad requests", n)
	}
	if w := s.walletRow(uid); w.Earnings != 50 || w.Balance != 0 {
		t.Errorf("wallet changed: %+v", w)
	}
}
