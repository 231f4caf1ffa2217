package e2e

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/sandbox"
	"github.com/flashgate/flashgate/internal/wallet"
	"github.com/flashgate/flashgate/worker"
)

// Fault tests of the money paths (issue 7 and review findings 4, 10, 11
// and 14). Each prints one line of figures and asserts them.

// payWithdraw asks for a withdrawal and returns its id.
func (s *system) payWithdraw(uid, amount int64) int64 {
	s.t.Helper()
	a := s.do("POST", "/api/v1/withdrawals", s.token(uid), fmt.Sprintf(`{"amount":%d}`, amount))
	if a.Status != 202 || a.str("status") != "pending" {
		s.t.Fatalf("withdraw %d for user %d: %d %s", amount, uid, a.Status, a.Raw)
	}
	return int64(a.Body["withdrawal_id"].(float64))
}

// payWithdrawalStatus is the status the owner reads.
func (s *system) payWithdrawalStatus(uid, id int64) string {
	s.t.Helper()
	a := s.do("GET", fmt.Sprintf("/api/v1/withdrawals/%d", id), s.token(uid), "")
	if a.Status != 200 {
		s.t.Fatalf("GET withdrawal %d: %d %s", id, a.Status, a.Raw)
	}
	return a.str("status")
}

// walletBalance is the balance GET /wallet shows the user.
func (s *system) walletBalance(uid int64) int64 {
	s.t.Helper()
	a := s.do("GET", "/api/v1/wallet", s.token(uid), "")
	if a.Status != 200 {
		s.t.Fatalf("GET /wallet: %d %s", a.Status, a.Raw)
	}
	return int64(a.Body["balance"].(float64))
}

// payFigures are the withdrawal outcomes in MySQL.
type payFigures struct {
	accepted, succeeded, failed, refunded, conflicts int
}

func (s *system) payFigures() payFigures {
	return payFigures{
		accepted:  s.count("SELECT COUNT(*) FROM withdrawals"),
		succeeded: s.count("SELECT COUNT(*) FROM withdrawals WHERE status = 'succeeded'"),
		failed:    s.count("SELECT COUNT(*) FROM withdrawals WHERE status = 'failed'"),
		refunded:  s.count("SELECT COUNT(*) FROM ledger WHERE kind = 'withdrawal_refund'"),
		conflicts: s.count("SELECT COUNT(*) FROM withdrawals WHERE conflict IS NOT NULL"),
	}
}

func (f payFigures) String() string {
	return fmt.Sprintf("accepted=%d succeeded=%d failed=%d refunded=%d conflicts=%d", f.accepted, f.succeeded, f.failed, f.refunded, f.conflicts)
}

// metricValue reads a counter of this process's registry, which the
// in-process worker's /metrics serves.
func metricValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func conflictsMetric(t *testing.T, kind string) float64 {
	return metricValue(t, "flashgate_worker_payout_conflicts_total", map[string]string{"kind": kind})
}

// lateProvider is an honest provider whose third payout call is slow: the
// worker's deadline passes first, and the provider completes the payout
// 200 ms later. It handles one key's requests in order, as providers do, so
// a void waits for the payout in flight.
type lateProvider struct {
	real *sandbox.Payouts

	mu      sync.Mutex
	calls   int
	landed  chan struct{} // closed once the late payout is in the provider's books
	lateTxn string
	lateErr error
}

func (p *lateProvider) Payout(ctx context.Context, key string, uid, amount int64) (string, error) {
	p.mu.Lock()
	p.calls++
	n := p.calls
	p.mu.Unlock()
	switch {
	case n < 3:
		return "", errStubPayout
	case n == 3:
		<-ctx.Done()
		go func() {
			time.Sleep(200 * time.Millisecond)
			txn, err := p.real.Payout(context.Background(), key, uid, amount)
			p.mu.Lock()
			p.lateTxn, p.lateErr = txn, err
			p.mu.Unlock()
			close(p.landed)
		}()
		return "", ctx.Err()
	}
	return p.real.Payout(ctx, key, uid, amount)
}

func (p *lateProvider) VoidPayout(ctx context.Context, key string) error {
	p.mu.Lock()
	inFlight := p.calls >= 3
	p.mu.Unlock()
	if inFlight {
		select {
		case <-p.landed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return p.real.VoidPayout(ctx, key)
}

func (p *lateProvider) PayoutStatus(ctx context.Context, key string) (worker.PayoutStatus, error) {
	return p.real.PayoutStatus(ctx, key)
}

// TestFaultPayoutLate (finding 4a): the last payout call of the budget times
// out on the worker's side and the provider pays a moment later. The worker
// voids the key before it would refund, the provider reports the payout,
// and the withdrawal ends succeeded with the late transaction: paid once,
// never refunded.
func TestFaultPayoutLate(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true, mutate: func(c *config.Config) {
		fastPayouts(c)
		c.PayoutAttempts = 3
		c.PayoutTimeout = time.Second
	}})
	const uid = 301
	s.giveEarnings(uid, 1000)
	p := &lateProvider{real: &sandbox.Payouts{DB: s.db}, landed: make(chan struct{})}
	s.payWorker(context.Background(), "worker", p)

	wid := s.payWithdraw(uid, 400)
	s.waitFor("withdrawal decided", func() bool { return s.payWithdrawalStatus(uid, wid) != "pending" })
	status := s.payWithdrawalStatus(uid, wid)
	f := s.payFigures()
	paid := s.count("SELECT COUNT(*) FROM sandbox_payouts WHERE txn IS NOT NULL")
	t.Logf("faults: payout-late %v paid_at_provider=%d", f, paid)

	<-p.landed
	p.mu.Lock()
	lateTxn, lateErr := p.lateTxn, p.lateErr
	calls := p.calls
	p.mu.Unlock()
	if lateErr != nil {
		t.Fatalf("the late payout did not land at the provider: %v", lateErr)
	}
	if status != "succeeded" || f != (payFigures{accepted: 1, succeeded: 1}) || paid != 1 {
		t.Errorf("status %s, %v, %d paid at the provider; want succeeded, paid once, never refunded", status, f, paid)
	}
	if n := s.count("SELECT COUNT(*) FROM withdrawals WHERE id = ? AND payout_txn = ?", wid, lateTxn); n != 1 {
		t.Errorf("the withdrawal does not carry the late payout's transaction %s", lateTxn)
	}
	if w := s.walletRow(uid); w.Earnings != 600 || w.TotalWithdrawn != 400 {
		t.Errorf("wallet %+v, want earnings 600 and 400 withdrawn", w)
	}
	if calls != 3 {
		t.Errorf("%d payout calls, want the budget of 3", calls)
	}
}

// rogueProvider breaks the provider contract: its payout call ignores the
// deadline and pays when the test lets it, and it claims to have voided a
// key it cannot void.
type rogueProvider struct {
	release chan struct{}
	paid    atomic.Int32
}

func (p *rogueProvider) Payout(ctx context.Context, key string, uid, amount int64) (string, error) {
	<-p.release
	p.paid.Add(1)
	return "rogue-late-1", nil
}

func (p *rogueProvider) VoidPayout(context.Context, string) error { return nil }

func (p *rogueProvider) PayoutStatus(context.Context, string) (worker.PayoutStatus, error) {
	return worker.PayoutStatus{State: worker.PayoutVoided}, nil
}

// TestFaultPayoutPaidAfterRefund (finding 4b/4c): a payout call that hangs
// past its deadline does not hang the worker, which settles the withdrawal
// (failed, refunded, as the provider told it). When the abandoned call
// reports a payout after all, the payout is recorded on the withdrawal,
// flagged for an operator and counted, never dropped.
func TestFaultPayoutPaidAfterRefund(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true, mutate: func(c *config.Config) {
		fastPayouts(c)
		c.PayoutAttempts = 1
		c.PayoutTimeout = 300 * time.Millisecond
	}})
	const uid = 302
	s.giveEarnings(uid, 1000)
	before := conflictsMetric(t, "paid_after_refund")
	p := &rogueProvider{release: make(chan struct{})}
	s.payWorker(context.Background(), "worker", p)
	var once sync.Once
	letGo := func() { once.Do(func() { close(p.release) }) }
	t.Cleanup(letGo)

	wid := s.payWithdraw(uid, 400)
	s.waitFor("withdrawal failed while the payout call hangs", func() bool { return s.payWithdrawalStatus(uid, wid) == "failed" })
	letGo()
	s.waitFor("late payout flagged", func() bool {
		return s.count("SELECT COUNT(*) FROM withdrawals WHERE id = ? AND conflict IS NOT NULL", wid) == 1
	})
	f := s.payFigures()
	t.Logf("faults: payout-paid-after-refund %v paid_at_provider=%d", f, p.paid.Load())

	if f != (payFigures{accepted: 1, failed: 1, refunded: 1, conflicts: 1}) || p.paid.Load() != 1 {
		t.Errorf("%v paid_at_provider=%d", f, p.paid.Load())
	}
	if n := s.count("SELECT COUNT(*) FROM withdrawals WHERE id = ? AND conflict = 'paid_after_refund' AND conflict_txn = 'rogue-late-1' AND conflict_at IS NOT NULL", wid); n != 1 {
		t.Errorf("the late payout is not recorded on the withdrawal")
	}
	if st := s.payWithdrawalStatus(uid, wid); st != "failed" {
		t.Errorf("status %s after the late payout, want failed (refunded; the operator claws back)", st)
	}
	if got := conflictsMetric(t, "paid_after_refund") - before; got != 1 {
		t.Errorf("flashgate_worker_payout_conflicts_total{kind=paid_after_refund} rose by %v, want 1", got)
	}
	if w := s.walletRow(uid); w.Earnings != 1000 {
		t.Errorf("earnings %d, want 1000 (refunded once)", w.Earnings)
	}
}

// unsureProvider cannot be reached for voids of one key, three times; its
// fourth void waits for the test. Payouts of that key fail.
type unsureProvider struct {
	real     *sandbox.Payouts
	stuckKey string
	gate     chan struct{} // the fourth void of stuckKey waits for this
	fourth   chan struct{} // closed when the fourth void of stuckKey starts

	mu    sync.Mutex
	voids int
}

var errUnreachable = errors.New("payout provider unreachable (test)")

func (p *unsureProvider) Payout(ctx context.Context, key string, uid, amount int64) (string, error) {
	if key == p.stuckKey {
		return "", errStubPayout
	}
	return p.real.Payout(ctx, key, uid, amount)
}

func (p *unsureProvider) VoidPayout(ctx context.Context, key string) error {
	if key != p.stuckKey {
		return p.real.VoidPayout(ctx, key)
	}
	p.mu.Lock()
	p.voids++
	n := p.voids
	p.mu.Unlock()
	switch {
	case n <= 3:
		return errUnreachable
	case n == 4:
		close(p.fourth)
		select {
		case <-p.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return p.real.VoidPayout(ctx, key)
}

func (p *unsureProvider) PayoutStatus(ctx context.Context, key string) (worker.PayoutStatus, error) {
	return p.real.PayoutStatus(ctx, key)
}

// TestFaultPayoutUnknown: a withdrawal whose attempts are spent while the
// provider cannot say what became of it stays pending, unrefunded, and is
// asked about again, later each time; meanwhile another withdrawal of the
// same user (the same partition) is paid. Once the provider voids the key,
// it fails and is refunded.
func TestFaultPayoutUnknown(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true, mutate: func(c *config.Config) {
		fastPayouts(c)
		c.PayoutAttempts = 2
		c.PayoutTimeout = 30 * time.Second // the gated void must not time out
	}})
	const uid = 303
	s.giveEarnings(uid, 1000)
	stuck := s.payWithdraw(uid, 300)
	var key string
	if err := s.db.Get(&key, "SELECT payout_key FROM withdrawals WHERE id = ?", stuck); err != nil || key == "" {
		t.Fatalf("no payout key on the withdrawal: %q %v", key, err)
	}
	p := &unsureProvider{real: &sandbox.Payouts{DB: s.db}, stuckKey: key, gate: make(chan struct{}), fourth: make(chan struct{})}
	var once sync.Once
	open := func() { once.Do(func() { close(p.gate) }) }
	s.payWorker(context.Background(), "worker", p)
	t.Cleanup(open)

	select {
	case <-p.fourth:
	case <-time.After(60 * time.Second):
		t.Fatal("the worker never asked the provider a fourth time")
	}
	// Three settling rounds ended unknown; the fourth waits at the provider.
	stuckStatus := s.payWithdrawalStatus(uid, stuck)
	rounds := s.count("SELECT unresolved FROM withdrawals WHERE id = ?", stuck)
	refundsWhileUnknown := s.count("SELECT COUNT(*) FROM ledger WHERE kind = 'withdrawal_refund'")
	other := s.payWithdraw(uid, 200)
	s.waitFor("the other withdrawal paid", func() bool { return s.payWithdrawalStatus(uid, other) == "succeeded" })
	stuckAfterOther := s.payWithdrawalStatus(uid, stuck)
	open()
	s.waitFor("the stuck withdrawal decided", func() bool { return s.payWithdrawalStatus(uid, stuck) != "pending" })
	f := s.payFigures()
	paid := s.count("SELECT COUNT(*) FROM sandbox_payouts WHERE txn IS NOT NULL")
	t.Logf("faults: payout-unknown %v unresolved_rounds=%d paid_at_provider=%d", f, rounds, paid)

	if stuckStatus != "pending" || stuckAfterOther != "pending" || refundsWhileUnknown != 0 || rounds != 3 {
		t.Errorf("while the outcome was unknown: status %s then %s, %d refunds, %d unresolved rounds; want pending, no refund, 3 rounds",
			stuckStatus, stuckAfterOther, refundsWhileUnknown, rounds)
	}
	if f != (payFigures{accepted: 2, succeeded: 1, failed: 1, refunded: 1}) || paid != 1 {
		t.Errorf("%v paid_at_provider=%d", f, paid)
	}
	if st := s.payWithdrawalStatus(uid, stuck); st != "failed" {
		t.Errorf("stuck withdrawal %s, want failed once the provider voided it", st)
	}
	if w := s.walletRow(uid); w.Earnings != 800 || w.TotalWithdrawn != 200 {
		t.Errorf("wallet %+v, want earnings 800 and 200 withdrawn", w)
	}
}

// TestFaultPayKafkaDown (finding 10): with Kafka refusing every produce for
// 10 s, POST /withdrawals keeps answering 202 within a second (the relay
// holds no row lock while it waits for Kafka), nothing is relayed during
// the outage, and every withdrawal is relayed and paid once Kafka is back.
func TestFaultPayKafkaDown(t *testing.T) {
	s := start(t, options{noWS: true, mutate: fastPayouts})
	const first = 310
	s.giveEarnings(first, 100)
	wid := s.payWithdraw(first, 100)
	s.waitFor("a withdrawal paid before the outage", func() bool { return s.payWithdrawalStatus(first, wid) == "succeeded" })

	var down atomic.Bool
	down.Store(true)
	s.kafka.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if !down.Load() {
			return nil, nil, false
		}
		s.kafka.KeepControl()
		return nil, errors.New("broker down (test)"), true
	})
	began := time.Now()
	type req struct {
		uid, id int64
		took    time.Duration
		status  int
	}
	var during []req
	for uid := int64(first + 1); time.Since(began) < 10*time.Second; uid++ {
		s.giveEarnings(uid, 50)
		t0 := time.Now()
		a := s.do("POST", "/api/v1/withdrawals", s.token(uid), `{"amount":50}`)
		r := req{uid: uid, took: time.Since(t0), status: a.Status}
		if a.Status == 202 {
			r.id = int64(a.Body["withdrawal_id"].(float64))
		}
		during = append(during, r)
		time.Sleep(700 * time.Millisecond)
	}
	unsent := s.count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
	down.Store(false)

	fast, slowest := 0, time.Duration(0)
	for _, r := range during {
		if r.status == 202 && r.took < time.Second {
			fast++
		}
		slowest = max(slowest, r.took)
	}
	// Not s.waitFor: if the outage turned requests away, the figures below
	// say how many.
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if s.count("SELECT COUNT(*) FROM withdrawals WHERE status = 'succeeded'") == 1+len(during) {
			break
		}
	}
	f := s.payFigures()
	relayed := s.count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL")
	paid := s.count("SELECT COUNT(*) FROM sandbox_payouts WHERE txn IS NOT NULL")
	t.Logf("faults: kafka-down-10s %v answered_202_under_1s=%d/%d slowest_ms=%d unsent_during_outage=%d relayed=%d paid_at_provider=%d",
		f, fast, len(during), slowest.Milliseconds(), unsent, relayed, paid)

	if len(during) < 5 || fast != len(during) {
		for _, r := range during {
			t.Logf("user %d: %d in %v", r.uid, r.status, r.took)
		}
		t.Errorf("%d of %d withdrawals during the outage answered 202 within 1 s", fast, len(during))
	}
	if unsent != len(during) {
		t.Errorf("%d outbox rows unsent at the end of the outage, want %d (Kafka refused them all)", unsent, len(during))
	}
	if n := 1 + len(during); f != (payFigures{accepted: n, succeeded: n}) || relayed != n || paid != n {
		t.Errorf("%v relayed=%d paid=%d; want all %d relayed and paid once", f, relayed, paid, n)
	}
	for _, r := range during {
		if w := s.walletRow(r.uid); w.Earnings != 0 || w.TotalWithdrawn != 50 {
			t.Errorf("user %d wallet %+v, want 50 withdrawn", r.uid, w)
		}
	}
}

// keyProvider is the sandbox, except that payouts of one key fail (the
// provider's answer never comes back).
type keyProvider struct {
	*sandbox.Payouts
	failKey string

	mu    sync.Mutex
	calls map[string]int
}

func (p *keyProvider) Payout(ctx context.Context, key string, uid, amount int64) (string, error) {
	p.mu.Lock()
	p.calls[key]++
	p.mu.Unlock()
	if key == p.failKey {
		return "", errStubPayout
	}
	return p.Payouts.Payout(ctx, key, uid, amount)
}

func (p *keyProvider) count(key string) int { p.mu.Lock(); defer p.mu.Unlock(); return p.calls[key] }

// TestFaultPayoutKeyReuse (finding 14): the provider already holds payouts
// of another installation under the keys "withdrawal-<id>" (user 999, 5).
//   - A new withdrawal has a random key of its own: it is paid, to its user.
//   - A withdrawal from before the migration (no payout_key: the legacy key)
//     gets "key reused": that is final, not one failed attempt of many; it is
//     flagged, stays pending and is neither paid nor refunded.
//   - A legacy withdrawal whose payouts fail: the status answer (paid, but
//     to user 999, 5) is not taken as its success; it is flagged and stays
//     pending, unrefunded.
func TestFaultPayoutKeyReuse(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true, mutate: func(c *config.Config) {
		fastPayouts(c)
		c.PayoutAttempts = 3
	}})
	const uid = 7
	s.giveEarnings(uid, 1000)
	fresh := s.payWithdraw(uid, 100)
	reused := s.payWithdraw(uid, 100)
	mismatch := s.payWithdraw(uid, 100)
	if _, err := s.db.Exec("UPDATE withdrawals SET payout_key = NULL WHERE id IN (?, ?)", reused, mismatch); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{fresh, reused, mismatch} {
		if _, err := s.db.Exec("INSERT INTO sandbox_payouts (idempotency_key, user_id, amount, txn) VALUES (?, 999, 5, ?)",
			worker.LegacyPayoutKey(id), "foreign-"+strconv.FormatInt(id, 10)); err != nil {
			t.Fatal(err)
		}
	}
	reusedBefore, mismatchBefore := conflictsMetric(t, "key_reused"), conflictsMetric(t, "mismatch")
	p := &keyProvider{Payouts: &sandbox.Payouts{DB: s.db}, failKey: worker.LegacyPayoutKey(mismatch), calls: map[string]int{}}
	s.payWorker(context.Background(), "worker", p)

	s.waitFor("all three withdrawals settled or flagged", func() bool {
		return s.count("SELECT COUNT(*) FROM withdrawals WHERE status <> 'pending' OR conflict IS NOT NULL") == 3
	})
	f := s.payFigures()
	paid := s.count("SELECT COUNT(*) FROM sandbox_payouts WHERE txn IS NOT NULL AND user_id = ?", uid)
	kr, mm := conflictsMetric(t, "key_reused")-reusedBefore, conflictsMetric(t, "mismatch")-mismatchBefore
	t.Logf("faults: payout-key-reuse %v key_reused=%v mismatch=%v paid_at_provider=%d", f, kr, mm, paid)

	if f != (payFigures{accepted: 3, succeeded: 1, conflicts: 2}) || paid != 1 || kr != 1 || mm != 1 {
		t.Errorf("%v paid_at_provider=%d key_reused=%v mismatch=%v", f, paid, kr, mm)
	}
	if st := s.payWithdrawalStatus(uid, fresh); st != "succeeded" {
		t.Errorf("the withdrawal with its own key: %s, want succeeded", st)
	}
	if n := s.count(`SELECT COUNT(*) FROM withdrawals w JOIN sandbox_payouts p ON p.idempotency_key = w.payout_key AND p.txn = w.payout_txn
		WHERE w.id = ? AND p.user_id = ? AND p.amount = 100`, fresh, uid); n != 1 {
		t.Errorf("the new withdrawal was not paid to its user under its own key")
	}
	for id, kind := range map[int64]string{reused: "key_reused", mismatch: "mismatch"} {
		if st := s.payWithdrawalStatus(uid, id); st != "pending" {
			t.Errorf("withdrawal %d (%s): %s, want pending for an operator", id, kind, st)
		}
		if n := s.count("SELECT COUNT(*) FROM withdrawals WHERE id = ? AND conflict = ? AND payout_txn IS NULL AND next_attempt_at IS NULL", id, kind); n != 1 {
			t.Errorf("withdrawal %d is not flagged %s", id, kind)
		}
	}
	if n := s.count("SELECT COUNT(*) FROM withdrawals WHERE id = ? AND conflict_txn = ?", mismatch, "foreign-"+strconv.FormatInt(mismatch, 10)); n != 1 {
		t.Errorf("the mismatching transaction is not kept on the flagged withdrawal")
	}
	// "Key reused" is final: one call, where a failing key (the mismatch
	// one) used the whole budget of 3.
	if got, other := p.count(worker.LegacyPayoutKey(reused)), p.count(worker.LegacyPayoutKey(mismatch)); got != 1 || other != 3 {
		t.Errorf("payout calls: %d for the reused key (want 1), %d for the failing key (want 3)", got, other)
	}
	if n := s.count("SELECT COUNT(*) FROM sandbox_payouts WHERE user_id = 999 AND amount = 5 AND txn LIKE 'foreign-%'"); n != 3 {
		t.Errorf("the other installation's payouts changed: %d left", n)
	}
	if w := s.walletRow(uid); w.Earnings != 700 || w.TotalWithdrawn != 300 {
		t.Errorf("wallet %+v: want 700 earnings left, nothing refunded", w)
	}
}

// payCommitOnly does what the notify's transaction does (the order paid
// paidAgo ago, the coins credited in MySQL) and stops there, as a gateway
// killed between its commit and the Redis credit.
func (s *system) payCommitOnly(orderID string, uid, coins int64, paidAgo time.Duration) {
	s.t.Helper()
	tx, err := s.db.Beginx()
	if err != nil {
		s.t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec("UPDATE pay_orders SET status = 'paid', paid_at = NOW(3) - INTERVAL ? SECOND, provider_txn = ? WHERE order_id = ? AND status = 'paying'",
		int(paidAgo/time.Second), "txn-"+orderID, orderID); err != nil {
		s.t.Fatal(err)
	}
	if _, err := wallet.Apply(context.Background(), tx, wallet.Change{
		UserID: uid, Account: wallet.AccountBalance, Kind: wallet.KindRecharge, Ref: orderID, Amount: coins,
	}); err != nil {
		s.t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		s.t.Fatal(err)
	}
}

// TestFaultPayRechargeHotCredit (finding 11): recharges committed in MySQL
// whose Redis hot credit failed or was skipped reach the balance that
// GET /wallet shows, exactly once:
//   - the review's recipe: Redis refuses writes during the notify (503);
//     the provider's retry comes 31 minutes after the payment (200, too late
//     for the notify to credit Redis);
//   - the gateway died between its commit and Redis, and the retry comes 31
//     minutes later;
//   - the same 2 minutes after the payment, and no retry ever comes.
func TestFaultPayRechargeHotCredit(t *testing.T) {
	s := start(t, options{noWS: true})
	type rc struct {
		uid   int64
		order string
		coins int64
	}
	creditBefore := metricValue(t, "flashgate_worker_recharges_repaired_total", map[string]string{"how": "credit"})
	resyncBefore := metricValue(t, "flashgate_worker_recharges_repaired_total", map[string]string{"how": "resync"})
	var orders []rc
	for _, uid := range []int64{401, 402, 403} {
		if b := s.walletBalance(uid); b != 0 { // loads the hot balance
			t.Fatalf("user %d starts with %d", uid, b)
		}
		o := s.payCreateOrder(uid, 2)
		orders = append(orders, rc{uid, o.str("order_id"), 300})
	}
	notify := func(o rc) answer {
		a, err := s.payNotify(fmt.Sprintf(`{"order_id":%q,"status":"success","amount":3000,"provider_txn":"txn-%s"}`, o.order, o.order))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	// 1. Redis refuses writes for 11 s while the notify runs.
	if err := s.raw.Do(context.Background(), s.raw.B().ClientPause().Timeout(11000).Write().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	first := notify(orders[0])
	if _, err := s.db.Exec("UPDATE pay_orders SET paid_at = NOW(3) - INTERVAL 31 MINUTE WHERE order_id = ?", orders[0].order); err != nil {
		t.Fatal(err)
	}
	replay := notify(orders[0])
	// 2. The gateway died after its commit; the retry comes 31 minutes on.
	s.payCommitOnly(orders[1].order, orders[1].uid, 300, 31*time.Minute)
	replay2 := notify(orders[1])
	// 3. The same 2 minutes on, and no retry.
	s.payCommitOnly(orders[2].order, orders[2].uid, 300, 2*time.Minute)

	s.waitFor("every recharge in the hot balance and marked", func() bool {
		for _, o := range orders {
			if s.walletBalance(o.uid) != o.coins {
				return false
			}
		}
		return s.count("SELECT COUNT(*) FROM pay_orders WHERE hot_credited_at IS NOT NULL") == len(orders)
	})
	// Two more repair rounds change nothing: each recharge counted once.
	time.Sleep(2500 * time.Millisecond)
	ok := 0
	for _, o := range orders {
		if b := s.walletBalance(o.uid); b == o.coins && s.walletRow(o.uid).Balance == o.coins {
			ok++
		} else {
			t.Errorf("user %d: hot balance %d, MySQL %d; want %d", o.uid, b, s.walletRow(o.uid).Balance, o.coins)
		}
	}
	marked := s.count("SELECT COUNT(*) FROM pay_orders WHERE hot_credited_at IS NOT NULL")
	credit := metricValue(t, "flashgate_worker_recharges_repaired_total", map[string]string{"how": "credit"}) - creditBefore
	resync := metricValue(t, "flashgate_worker_recharges_repaired_total", map[string]string{"how": "resync"}) - resyncBefore
	t.Logf("faults: recharge-hot-credit orders=%d notify=%d replay=%d replay_after_crash=%d hot_balance_ok=%d marked=%d repaired_credit=%v repaired_resync=%v",
		len(orders), first.Status, replay.Status, replay2.Status, ok, marked, credit, resync)

	if first.Status != 503 || replay.Status != 200 || replay2.Status != 200 {
		t.Errorf("notify %d %s, replays %d %s / %d %s; want 503 while Redis refuses writes, then 200",
			first.Status, first.Raw, replay.Status, replay.Raw, replay2.Status, replay2.Raw)
	}
	if ok != 3 || marked != 3 || credit != 1 || resync != 2 {
		t.Errorf("hot_balance_ok=%d marked=%d repaired by credit %v, by resync %v; want 3, 3, 1, 2", ok, marked, credit, resync)
	}
	if n := s.count("SELECT COUNT(*) FROM ledger WHERE kind = 'recharge'"); n != 3 {
		t.Errorf("%d recharge ledger rows, want 3", n)
	}
}
