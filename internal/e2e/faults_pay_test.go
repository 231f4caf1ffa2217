package e2e

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
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

// payFigures are the withdrawal outcomes in MySQL.
type payFigures struct {
	accepted, succeeded, failed, refunded int
}

func (s *system) payFigures() payFigures {
	return payFigures{
		accepted:  s.count("SELECT COUNT(*) FROM withdrawals"),
		succeeded: s.count("SELECT COUNT(*) FROM withdrawals WHERE status = 'succeeded'"),
		failed:    s.count("SELECT COUNT(*) FROM withdrawals WHERE status = 'failed'"),
		refunded:  s.count("SELECT COUNT(*) FROM ledger WHERE kind = 'withdrawal_refund'"),
	}
}

func (f payFigures) String() string {
	return fmt.Sprintf("accepted=%d succeeded=%d failed=%d refunded=%d", f.accepted, f.succeeded, f.failed, f.refunded)
}

// TestFaultPayKafkaDown (finding 10): with Kafka refusing every produce for
// 10 s, POST /withdrawals keeps answering 202 within a second (the relay
// holds no row lock while it waits for Kafka), nothing is relayed during
// the outage, and every withdrawal is relayed and paid once Kafka is back.
func TestFaultPayKafkaDown(t *testing.T) {
	s := start(t, options{noWS: true, mutate: fastPayouts})
	const first = 310
	s.payGiveEarnings(first, 100)
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
		s.payGiveEarnings(uid, 50)
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
		if w := s.payWallet(r.uid); w.Earnings != 0 || w.TotalWithdrawn != 50 {
			t.Errorf("user %d wallet %+v, want 50 withdrawn", r.uid, w)
		}
	}
}
