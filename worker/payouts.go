package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/obs"
	"github.com/flashgate/flashgate/internal/sandbox"
	"github.com/flashgate/flashgate/internal/wallet"
)

// Withdrawals are paid out in three steps. The gateway commits the
// withdrawal, the earnings deduction and an outbox row in one transaction;
// the relay here copies outbox rows to Kafka; the payout consumer marks each
// withdrawal it reads as due (next_attempt_at) and commits its offsets at
// once. The payer then works on due withdrawals straight from MySQL, one
// provider call at a time, under a lease, and puts each back with its next
// due time. So a slow or unreachable provider delays payouts but never
// blocks a partition or a rebalance, and the schedule survives restarts.
//
// A withdrawal is paid under one idempotency key. While its attempt budget
// lasts, the payer calls Payout. Once it is spent the payer voids the key
// and asks the provider what became of it: paid → succeeded; voided (not
// paid, and now never) → failed and refunded; anything else → still
// pending, asked again later. A refund therefore never races a payout in
// flight, and a payout reported after a refund, which only a provider that
// breaks its contract can produce, is flagged for an operator and counted.

var (
	outboxRelayed = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "outbox_relayed_total",
		Help: "Outbox messages produced to Kafka.",
	})
	payoutCalls = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "payout_calls_total",
		Help: "Payout calls to the payout provider, by result: ok, error (outcome unknown), voided, key_reused.",
	}, []string{"result"})
	withdrawalsDecided = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "withdrawals_total",
		Help: "Withdrawals decided, by status (succeeded, or failed and refunded).",
	}, []string{"status"})
	payoutConflicts = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "payout_conflicts_total",
		Help: "Withdrawals flagged for an operator, by kind: paid_after_refund, paid_twice, mismatch (the provider reports another user or amount for the key), key_reused.",
	}, []string{"kind"})
	payoutsUnresolved = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "payouts_unresolved_total",
		Help: "Settling rounds of a withdrawal whose attempts are spent that ended without a final provider answer; the withdrawal stays pending and is asked about again.",
	})
)

// PayoutProvider pays money out to a user's external account. The worker
// pays each withdrawal exactly once, and never both pays and refunds one,
// on this contract:
//
//   - Payout pays amount to userID at most once per idempotency key and
//     returns the provider's transaction. A repeat of a key returns the first
//     payout's transaction and pays nothing more. A key first used with
//     another user or amount fails with an error wrapping
//     ErrPayoutKeyReused; a voided key fails with an error wrapping
//     ErrPayoutVoided and pays nothing. Any other error leaves the outcome
//     unknown: the payout may have been made, or may still be made.
//   - VoidPayout makes sure that nothing is paid under the key once it has
//     returned nil: a Payout in flight or still to come has either paid
//     before the void (PayoutStatus says so) or fails with ErrPayoutVoided.
//     It returns nil too when the key has paid already, and when it was
//     voided before.
//   - PayoutStatus says what became of a key: PayoutPaid with the payout's
//     transaction, user and amount; PayoutVoided when nothing was paid and
//     nothing can be any more; PayoutUnknown otherwise (no record yet, a
//     payout still being processed).
//
// Each call gets a deadline of FLASHGATE_PAYOUT_TIMEOUT. A call that has
// not answered by then counts as unknown and is abandoned; a payout it
// reports later is still recorded.
type PayoutProvider interface {
	Payout(ctx context.Context, idempotencyKey string, userID, amount int64) (txn string, err error)
	VoidPayout(ctx context.Context, idempotencyKey string) error
	PayoutStatus(ctx context.Context, idempotencyKey string) (PayoutStatus, error)
}

// The answer of PayoutStatus. The types live in the sandbox package so that
// the built-in provider implements PayoutProvider without importing the
// worker.
type (
	PayoutStatus = sandbox.PayoutStatus
	PayoutState  = sandbox.PayoutState
)

// Payout states (see PayoutProvider).
const (
	PayoutUnknown = sandbox.PayoutUnknown
	PayoutPaid    = sandbox.PayoutPaid
	PayoutVoided  = sandbox.PayoutVoided
)

// Errors a PayoutProvider's Payout wraps (see PayoutProvider).
var (
	ErrPayoutKeyReused = sandbox.ErrKeyReused
	ErrPayoutVoided    = sandbox.ErrVoided
)

var _ PayoutProvider = (*sandbox.Payouts)(nil)

// PayoutGroupName is the consumer group of the payout consumers.
func PayoutGroupName(cfg config.Config) string { return cfg.TopicPrefix + ".payouts" }

// LegacyPayoutKey is the idempotency key of a withdrawal created before
// withdrawals had a payout_key of their own. Such keys repeat across
// installations and restored databases; newer withdrawals carry a random key.
func LegacyPayoutKey(withdrawalID int64) string {
	return "withdrawal-" + strconv.FormatInt(withdrawalID, 10)
}

// Conflict kinds, in withdrawals.conflict and the conflicts metric.
const (
	conflictPaidAfterRefund = "paid_after_refund"
	conflictPaidTwice       = "paid_twice"
	conflictMismatch        = "mismatch"
	conflictKeyReused       = "key_reused"
)

const (
	// outboxBatch is the most outbox rows claimed and produced at once.
	outboxBatch = 500
	// outboxKeep is how long relayed outbox rows are kept, for inspection.
	outboxKeep = 24 * time.Hour
	// outboxProduceTimeout bounds one produce of claimed rows.
	outboxProduceTimeout = 10 * time.Second
	// outboxClaim is how long claimed rows stay with their relay: long
	// enough for its produce, short enough that rows of a relay that died
	// are taken again soon.
	outboxClaim = 3 * outboxProduceTimeout
	// maxPayoutBackoff caps the wait between payout calls.
	maxPayoutBackoff = 5 * time.Second
	// maxUnresolvedBackoff caps the wait before asking again about a
	// withdrawal whose outcome is unknown.
	maxUnresolvedBackoff = time.Minute
	// payoutParallel is how many withdrawals one worker works on at once.
	payoutParallel = 4
)

// runPayouts relays the outbox, pays withdrawals out and repairs recharges
// that missed the hot balance, until ctx is done. It has Kafka clients of
// its own: a producer for the relay and a consumer in the payouts group.
func (w *Worker) runPayouts(ctx context.Context) error {
	provider := w.cfg.PayoutProvider
	if provider == nil {
		provider = &sandbox.Payouts{DB: w.mysql.DB}
	}
	producer, err := bus.NewClient(w.cfg.Config, w.log, kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		return err
	}
	defer producer.Close()
	consumer, err := bus.NewClient(w.cfg.Config, w.log,
		kgo.ConsumerGroup(PayoutGroupName(w.cfg.Config)),
		kgo.ConsumeTopics(w.cfg.WithdrawalsTopic()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(200*time.Millisecond),
	)
	if err != nil {
		return err
	}
	defer consumer.Close()

	interval := w.cfg.OutboxInterval
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	pp := newPayer(w, provider)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var cleaned time.Time
		obs.Every(gctx, interval, w.log, "outbox relay failed", func(ctx context.Context) error {
			if err := w.RelayOutbox(ctx, producer); err != nil {
				return err
			}
			if time.Since(cleaned) > time.Minute {
				cleaned = time.Now()
				return w.cleanOutbox(ctx)
			}
			return nil
		}, obs.Runs{Now: true, Limit: 30 * time.Second})
		return nil
	})
	g.Go(func() error {
		return w.supervise(gctx, w.payouts, func(ctx context.Context) error {
			return w.consume(ctx, consumer, w.payouts, 100, pp.schedule)
		})
	})
	g.Go(func() error {
		obs.Every(gctx, interval, w.log, "payouts failed", pp.payDue, obs.Runs{Now: true, Wake: pp.wake})
		return nil
	})
	g.Go(func() error {
		obs.Every(gctx, rechargeRepairEvery, w.log, "recharge repair failed", w.RepairRecharges, obs.Runs{Now: true, Limit: 30 * time.Second})
		return nil
	})
	err = g.Wait()
	pp.steps.Wait() // each ends soon after ctx: it abandons its provider call
	pp.waitCalls(w.cfg.ShutdownTimeout)
	return err
}

// RelayOutbox produces every unsent outbox row to Kafka, oldest first, and
// marks it sent. Rows are claimed in a short transaction that commits
// before the produce, so no lock is held while Kafka is slow or down and
// the gateway keeps inserting rows. A crash between the produce and the mark
// sends rows again once their claim lapses: consumers tolerate duplicates.
func (w *Worker) RelayOutbox(ctx context.Context, cl *kgo.Client) error {
	for {
		n, err := w.relayBatch(ctx, cl)
		if err != nil || n < outboxBatch {
			return err
		}
	}
}

func (w *Worker) relayBatch(ctx context.Context, cl *kgo.Client) (int, error) {
	token := claimToken()
	rows, err := w.mysql.ClaimOutbox(ctx, token, outboxClaim, outboxBatch)
	if err != nil {
		return 0, fmt.Errorf("cannot claim outbox rows: %w", err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	recs := make([]*kgo.Record, len(rows))
	ids := make([]int64, len(rows))
	for i, r := range rows {
		recs[i] = &kgo.Record{Topic: r.Topic, Key: []byte(r.Key), Value: r.Payload}
		ids[i] = r.ID
	}
	pctx, cancel := context.WithTimeout(ctx, outboxProduceTimeout)
	err = cl.ProduceSync(pctx, recs...).FirstErr()
	cancel()
	if err != nil {
		// Give the rows back, so the next round takes them at once rather
		// than after the claim lapses.
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		w.mysql.ReleaseOutboxClaim(rctx, token)
		cancel()
		return 0, fmt.Errorf("cannot produce %d outbox messages: %w", len(rows), err)
	}
	if err := w.retry(ctx, "mark outbox messages sent", func() error {
		return w.mysql.MarkOutboxSent(ctx, ids)
	}); err != nil {
		return 0, fmt.Errorf("cannot mark outbox messages sent (they will be sent again): %w", err)
	}
	outboxRelayed.Add(float64(len(rows)))
	return len(rows), nil
}

// cleanOutbox deletes rows relayed long ago, a bounded batch at a time.
func (w *Worker) cleanOutbox(ctx context.Context) error {
	return w.mysql.PruneOutbox(ctx, outboxKeep)
}

// payer pays due withdrawals out.
type payer struct {
	w        *Worker
	provider PayoutProvider
	budget   int
	backoff  time.Duration
	timeout  time.Duration
	// lease is how long a withdrawal stays with the worker that took it: a
	// payout, a void and a status call, each at most timeout, and then some.
	lease time.Duration
	wake  chan struct{}

	mu   sync.Mutex
	busy map[int64]bool // withdrawals being worked on by this worker
	// steps are the rounds running; calls the provider calls running,
	// abandoned ones included.
	steps sync.WaitGroup
	calls sync.WaitGroup
}

func newPayer(w *Worker, p PayoutProvider) *payer {
	pp := &payer{w: w, provider: p, budget: w.cfg.PayoutAttempts, backoff: w.cfg.PayoutBackoff,
		timeout: w.cfg.PayoutTimeout, wake: make(chan struct{}, 1), busy: map[int64]bool{}}
	if pp.budget <= 0 {
		pp.budget = 8
	}
	if pp.backoff <= 0 {
		pp.backoff = 100 * time.Millisecond
	}
	if pp.timeout <= 0 {
		pp.timeout = 10 * time.Second
	}
	pp.lease = 3*pp.timeout + 30*time.Second
	return pp
}

func (pp *payer) kick() {
	select {
	case pp.wake <- struct{}{}:
	default:
	}
}

// waitCalls waits up to d for provider calls still running, so that a
// payout one of them reports late is recorded before the worker exits.
func (pp *payer) waitCalls(d time.Duration) {
	if d <= 0 {
		d = 10 * time.Second
	}
	done := make(chan struct{})
	go func() { pp.calls.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		pp.w.log.Warn("payout provider calls still running at exit; the next worker asks again under the same keys")
	}
}

// schedule is the payout consumer's batch: it marks the withdrawals of the
// messages due, which makes them the payer's (and durable: the offsets are
// committed next), and wakes the payer. It never calls the provider, so a
// poll takes milliseconds whatever the provider does. A redelivered or
// duplicate message changes nothing: its withdrawal is scheduled, in the
// payer's hands, or decided.
func (pp *payer) schedule(ctx context.Context, recs []*kgo.Record) error {
	ids := make([]int64, 0, len(recs))
	for _, r := range recs {
		var m bus.Withdrawal
		if err := json.Unmarshal(r.Value, &m); err != nil || m.WithdrawalID <= 0 {
			// Nothing to pay: the gateway never writes such a message.
			pp.w.log.Error("undecodable withdrawal message; skipped", "err", err, "value", string(r.Value))
			continue
		}
		ids = append(ids, m.WithdrawalID)
	}
	if len(ids) == 0 {
		return nil
	}
	err := pp.w.retry(ctx, "schedule payouts", func() error {
		return pp.w.mysql.ScheduleWithdrawals(ctx, ids)
	})
	if err != nil {
		return err
	}
	pp.kick()
	return nil
}

// payDue hands the withdrawals that are due to free slots, each worked on
// in a goroutine of its own, and returns without waiting for them: a slow
// provider call holds up one slot, not the others, and a slot that frees
// wakes the next round.
func (pp *payer) payDue(ctx context.Context) error {
	pp.mu.Lock()
	free := payoutParallel - len(pp.busy)
	pp.mu.Unlock()
	if free <= 0 {
		return nil
	}
	ids, err := pp.w.mysql.DueWithdrawals(ctx, payoutParallel)
	if err != nil {
		return fmt.Errorf("cannot read due withdrawals: %w", err)
	}
	for _, id := range ids {
		pp.mu.Lock()
		if pp.busy[id] || len(pp.busy) >= payoutParallel {
			pp.mu.Unlock()
			continue
		}
		pp.busy[id] = true
		pp.mu.Unlock()
		pp.steps.Add(1)
		go func() {
			defer pp.steps.Done()
			if err := pp.step(ctx, id); err != nil && ctx.Err() == nil {
				pp.w.log.Warn("payout round failed; the withdrawal is taken up again when its lease lapses", "withdrawal", id, "err", err)
			}
			pp.mu.Lock()
			delete(pp.busy, id)
			pp.mu.Unlock()
			pp.kick()
		}()
	}
	return nil
}

// withdrawalRow is what the payout needs of a withdrawals row
// (db.Withdrawal), with its provider idempotency key.
type withdrawalRow db.Withdrawal

// key is the withdrawal's provider idempotency key.
func (wd withdrawalRow) key() string {
	if wd.PayoutKey.Valid && wd.PayoutKey.String != "" {
		return wd.PayoutKey.String
	}
	return LegacyPayoutKey(wd.ID)
}

// step takes one due withdrawal (moving its due time past the lease, so no
// other worker takes it meanwhile) and does one round of work on it: one
// payout call, or once the attempts are spent, one settling round. It puts
// the withdrawal back with its next due time, or decides it.
func (pp *payer) step(ctx context.Context, id int64) error {
	leased, took, err := pp.w.mysql.LeaseWithdrawal(ctx, id, pp.lease)
	if err != nil || !took {
		return err // !took: another worker has it, or it was decided
	}
	err = pp.work(ctx, withdrawalRow(leased))
	if ctx.Err() != nil {
		// Shutting down (or, in tests, "crashing"): whatever a call did, the
		// next worker repeats it under the same key. Hand it back now
		// rather than when the lease lapses.
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		pp.w.mysql.ReturnWithdrawal(rctx, id)
		cancel()
		return ctx.Err()
	}
	return err
}

func (pp *payer) work(ctx context.Context, wd withdrawalRow) error {
	if wd.Attempts >= pp.budget {
		return pp.settle(ctx, wd)
	}
	attempts := wd.Attempts + 1
	called := wd // the late answer's own copy: wd changes below
	txn, err := callProvider(ctx, pp, "payout", func(ctx context.Context) (string, error) {
		return pp.provider.Payout(ctx, called.key(), called.UserID, called.Amount)
	}, func(txn string, err error) {
		if err == nil {
			// The call outlived its deadline and paid after all.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			pp.w.log.Warn("a payout call that timed out paid after all", "withdrawal", called.ID, "txn", txn)
			if err := pp.succeed(ctx, called, attempts, txn); err != nil {
				pp.w.log.Error("cannot record a late payout; the next round asks the provider", "withdrawal", called.ID, "txn", txn, "err", err)
			}
		}
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	switch {
	case err == nil:
		payoutCalls.WithLabelValues("ok").Inc()
		return pp.succeed(ctx, wd, attempts, txn)
	case errors.Is(err, ErrPayoutKeyReused):
		// Another payout owns the key: asking again cannot help, and what
		// the provider holds under it is not ours.
		payoutCalls.WithLabelValues("key_reused").Inc()
		return pp.flag(ctx, wd, attempts, conflictKeyReused, "", err.Error())
	case errors.Is(err, ErrPayoutVoided):
		// Voided by an earlier settling round (the budget was raised
		// since): the provider can tell what happened.
		payoutCalls.WithLabelValues("voided").Inc()
		wd.Attempts = attempts
		return pp.settle(ctx, wd)
	}
	payoutCalls.WithLabelValues("error").Inc()
	lastErr := truncate(err.Error(), 255)
	pp.w.log.Warn("payout failed", "withdrawal", wd.ID, "attempt", attempts, "of", pp.budget, "err", err)
	var wait time.Duration
	if attempts < pp.budget {
		wait = min(pp.backoff<<min(attempts-1, 20), maxPayoutBackoff)
	}
	err = pp.w.retry(ctx, "record a payout attempt", func() error {
		return pp.w.mysql.RecordPayoutAttempt(ctx, wd.ID, attempts, lastErr, wait)
	})
	if err != nil || attempts < pp.budget {
		return err
	}
	wd.Attempts = attempts
	return pp.settle(ctx, wd) // no point waiting before giving up
}

// settle decides a withdrawal whose attempts are spent: it voids the key so
// that no payout can land any more, then asks the provider what became of
// it. Only a final "not paid" (voided) fails and refunds it; paid (for this
// user and amount) succeeds it; a provider that cannot say, or says
// something else, leaves it pending, to be asked again later.
func (pp *payer) settle(ctx context.Context, wd withdrawalRow) error {
	key := wd.key()
	var st PayoutStatus
	_, err := callProvider(ctx, pp, "void", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, pp.provider.VoidPayout(ctx, key)
	}, nil)
	if err == nil {
		st, err = callProvider(ctx, pp, "payout status", func(ctx context.Context) (PayoutStatus, error) {
			return pp.provider.PayoutStatus(ctx, key)
		}, nil)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	switch {
	case err != nil:
		return pp.unresolved(ctx, wd, err.Error())
	case st.State == PayoutPaid && (st.UserID != wd.UserID || st.Amount != wd.Amount):
		return pp.flag(ctx, wd, wd.Attempts, conflictMismatch, st.Txn,
			fmt.Sprintf("the provider reports key %s paid %d to user %d", key, st.Amount, st.UserID))
	case st.State == PayoutPaid:
		return pp.succeed(ctx, wd, wd.Attempts, st.Txn)
	case st.State == PayoutVoided:
		return pp.fail(ctx, wd)
	}
	return pp.unresolved(ctx, wd, "the provider reports the payout status "+st.State.String())
}

// unresolved puts a withdrawal whose outcome the provider could not settle
// back, pending, to be asked about later, later each time.
func (pp *payer) unresolved(ctx context.Context, wd withdrawalRow, why string) error {
	n := wd.Unresolved + 1
	wait := min(pp.backoff<<min(n, 20), maxUnresolvedBackoff)
	payoutsUnresolved.Inc()
	pp.w.log.Warn("payout outcome unknown; not refunded, asking the provider again later",
		"withdrawal", wd.ID, "user", wd.UserID, "amount", wd.Amount, "round", n, "next_in", wait, "why", why)
	return pp.w.retry(ctx, "put back an unresolved payout", func() error {
		return pp.w.mysql.RecordUnresolvedPayout(ctx, wd.ID, n, truncate("unresolved: "+why, 255), wait)
	})
}

// succeed records a payout. A withdrawal decided before by this very
// payout is left alone; one that was failed and refunded, or paid by
// another transaction, is flagged: the money went out twice.
func (pp *payer) succeed(ctx context.Context, wd withdrawalRow, attempts int, txn string) error {
	var won bool
	err := pp.w.retry(ctx, "record a payout", func() error {
		var err error
		won, err = pp.w.mysql.SucceedWithdrawal(ctx, wd.ID, txn, attempts)
		return err
	})
	if err != nil {
		return err
	}
	if won {
		withdrawalsDecided.WithLabelValues("succeeded").Inc()
		pp.w.log.Info("withdrawal paid out", "withdrawal", wd.ID, "user", wd.UserID, "amount", wd.Amount, "txn", txn)
		return nil
	}
	var cur db.WithdrawalOutcome
	err = pp.w.retry(ctx, "read a decided withdrawal", func() error {
		var err error
		cur, err = pp.w.mysql.WithdrawalOutcome(ctx, wd.ID)
		return err
	})
	if err != nil {
		return err
	}
	kind := conflictPaidTwice
	switch {
	case cur.Status == "succeeded" && cur.PayoutTxn.String == txn:
		return nil // recorded before: a repeat
	case cur.Conflict.Valid && cur.ConflictTxn.String == txn:
		return nil // flagged before
	case cur.Status == "failed":
		kind = conflictPaidAfterRefund
	}
	return pp.flag(ctx, wd, attempts, kind, txn,
		fmt.Sprintf("payout %s reported for a withdrawal already %s (txn %q)", txn, cur.Status, cur.PayoutTxn.String))
}

// flag marks a withdrawal for an operator: the worker works on it no more
// (neither pays nor refunds it), counts it and logs it at error level.
func (pp *payer) flag(ctx context.Context, wd withdrawalRow, attempts int, kind, txn, detail string) error {
	payoutConflicts.WithLabelValues(kind).Inc()
	pp.w.log.Error("withdrawal needs an operator: "+kind, "withdrawal", wd.ID, "user", wd.UserID, "amount", wd.Amount,
		"key", wd.key(), "txn", txn, "detail", detail)
	return pp.w.retry(ctx, "flag a withdrawal", func() error {
		return pp.w.mysql.FlagWithdrawal(ctx, wd.ID, attempts, kind, txn, truncate(detail, 255))
	})
}

// fail fails a withdrawal that the provider says was not paid and never
// will be, and refunds its earnings, in one transaction.
func (pp *payer) fail(ctx context.Context, wd withdrawalRow) error {
	var refunded bool
	err := pp.w.retry(ctx, "fail a withdrawal", func() error {
		var err error
		// refunded is false when the withdrawal was decided or flagged meanwhile.
		refunded, err = pp.w.mysql.FailAndRefundWithdrawal(ctx, wd.ID, func(tx *sqlx.Tx) error {
			_, err := wallet.Apply(ctx, tx, wallet.Change{
				UserID: wd.UserID, Account: wallet.AccountEarnings, Kind: wallet.KindWithdrawalRefund,
				Ref: strconv.FormatInt(wd.ID, 10), Amount: wd.Amount,
			})
			return err
		})
		return err
	})
	if err != nil {
		return err
	}
	if refunded {
		withdrawalsDecided.WithLabelValues("failed").Inc()
		pp.w.log.Warn("withdrawal failed; the provider voided the payout; earnings refunded", "withdrawal", wd.ID, "user", wd.UserID, "amount", wd.Amount, "attempts", wd.Attempts)
	}
	return nil
}

// callProvider runs f with the payout timeout and returns its answer, or an
// error wrapping context.DeadlineExceeded once the timeout has passed, even
// if f ignores its context: a hung provider must not hang the worker. An
// answer f gives after that goes to late (when not nil), unless ctx itself
// ended (a shutdown): the next worker asks again under the same key.
func callProvider[T any](ctx context.Context, pp *payer, what string, f func(context.Context) (T, error), late func(T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, pp.timeout)
	var (
		mu     sync.Mutex
		gaveUp bool
		v      T
		err    error
	)
	done := make(chan struct{})
	pp.calls.Add(1)
	go func() {
		defer pp.calls.Done()
		defer cancel() // only once the answer is out: the caller takes a done cctx for a timeout
		rv, rerr := f(cctx)
		mu.Lock()
		if !gaveUp {
			v, err = rv, rerr
			close(done)
			mu.Unlock()
			return
		}
		mu.Unlock()
		if late != nil && ctx.Err() == nil {
			late(rv, rerr)
		}
	}()
	select {
	case <-done:
		return v, err
	case <-cctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	select {
	case <-done: // answered meanwhile
		return v, err
	default:
	}
	gaveUp = true
	var zero T
	return zero, fmt.Errorf("%s call: no answer within %v: %w", what, pp.timeout, context.DeadlineExceeded)
}

// claimToken names one relay round's claim on outbox rows.
func claimToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
