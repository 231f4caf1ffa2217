package worker

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
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

// Withdrawals are paid out in two steps, each at least once and together
// exactly once. The gateway commits the withdrawal, the earnings deduction
// and an outbox row in one transaction; the relay here copies outbox rows to
// Kafka; the payout consumer calls the provider with an idempotency key
// derived from the withdrawal id and records the outcome. A message seen
// twice finds the withdrawal decided; a payout repeated after a crash is
// de-duplicated by the provider.

var (
	outboxRelayed = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "outbox_relayed_total",
		Help: "Outbox messages produced to Kafka.",
	})
	payoutCalls = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "payout_calls_total",
		Help: "Calls to the payout provider, by result (ok or error).",
	}, []string{"result"})
	withdrawalsDecided = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "withdrawals_total",
		Help: "Withdrawals decided, by status (succeeded, or failed and refunded).",
	}, []string{"status"})
)

// PayoutProvider pays money out to a user's external account. Payout must
// pay at most once per idempotency key: a repeat returns the first payout's
// transaction. The worker relies on that to stay exactly-once across crashes.
type PayoutProvider interface {
	Payout(ctx context.Context, idempotencyKey string, userID, amount int64) (txn string, err error)
}

// PayoutChecker is implemented by providers that can say whether a payout
// was made. Before a withdrawal is failed and refunded the worker asks, since
// a call that returned an error (a timeout, say) may still have paid.
type PayoutChecker interface {
	PayoutStatus(ctx context.Context, idempotencyKey string) (txn string, paid bool, err error)
}

var (
	_ PayoutProvider = (*sandbox.Payouts)(nil)
	_ PayoutChecker  = (*sandbox.Payouts)(nil)
)

// PayoutGroupName is the consumer group of the payout consumers.
func PayoutGroupName(cfg config.Config) string { return cfg.TopicPrefix + ".payouts" }

// PayoutKey is the provider idempotency key of a withdrawal.
func PayoutKey(withdrawalID int64) string { return "withdrawal-" + strconv.FormatInt(withdrawalID, 10) }

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
)

// runPayouts relays the outbox and pays withdrawals out until ctx is done.
// It has Kafka clients of its own: a producer for the relay and a consumer
// in the payouts group.
func (w *Worker) runPayouts(ctx context.Context) error {
	provider := w.cfg.PayoutProvider
	if provider == nil {
		provider = &sandbox.Payouts{DB: w.sql}
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
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var cleaned time.Time
		w.every(gctx, interval, "outbox relay", func(ctx context.Context) error {
			if err := w.RelayOutbox(ctx, producer); err != nil {
				return err
			}
			if time.Since(cleaned) > time.Minute {
				cleaned = time.Now()
				return w.cleanOutbox(ctx)
			}
			return nil
		})
		return nil
	})
	g.Go(func() error { return w.consumePayouts(gctx, consumer, provider) })
	return g.Wait()
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

type outboxRow struct {
	ID      int64  `db:"id"`
	Topic   string `db:"topic"`
	Key     string `db:"msg_key"`
	Payload []byte `db:"payload"`
}

func (w *Worker) relayBatch(ctx context.Context, cl *kgo.Client) (int, error) {
	token := claimToken()
	var rows []outboxRow
	// READ COMMITTED takes no gap locks: a gateway inserting a row waits
	// for nothing but this one statement, and not at all for Kafka.
	err := db.InTx(ctx, w.sql, &sql.TxOptions{Isolation: sql.LevelReadCommitted}, func(tx *sqlx.Tx) error {
		rows = rows[:0]
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET claim_token = ?, claimed_until = NOW(3) + INTERVAL ? SECOND
			WHERE sent_at IS NULL AND (claimed_until IS NULL OR claimed_until < NOW(3)) ORDER BY id LIMIT ?`,
			token, int(outboxClaim/time.Second), outboxBatch); err != nil {
			return err
		}
		return tx.SelectContext(ctx, &rows, "SELECT id, topic, msg_key, payload FROM outbox WHERE claim_token = ? AND sent_at IS NULL ORDER BY id", token)
	})
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
		w.sql.ExecContext(rctx, "UPDATE outbox SET claimed_until = NULL WHERE claim_token = ? AND sent_at IS NULL", token)
		cancel()
		return 0, fmt.Errorf("cannot produce %d outbox messages: %w", len(rows), err)
	}
	q, args, _ := sqlx.In("UPDATE outbox SET sent_at = NOW(3), claimed_until = NULL WHERE id IN (?) AND sent_at IS NULL", ids)
	if err := w.retry(ctx, "mark outbox messages sent", 5, func() error {
		_, err := w.sql.ExecContext(ctx, q, args...)
		return err
	}); err != nil {
		return 0, fmt.Errorf("cannot mark outbox messages sent (they will be sent again): %w", err)
	}
	outboxRelayed.Add(float64(len(rows)))
	return len(rows), nil
}

// cleanOutbox deletes rows relayed long ago, a bounded batch at a time.
func (w *Worker) cleanOutbox(ctx context.Context) error {
	_, err := w.sql.ExecContext(ctx, "DELETE FROM outbox WHERE sent_at < NOW(3) - INTERVAL ? SECOND LIMIT 1000", int(outboxKeep/time.Second))
	return err
}

// consumePayouts pays out the withdrawals on the withdrawals topic and
// commits offsets only once each one's outcome is in MySQL.
func (w *Worker) consumePayouts(ctx context.Context, cl *kgo.Client, p PayoutProvider) error {
	return w.consume(ctx, cl, "payouts", 100, func(ctx context.Context, recs []*kgo.Record) error {
		for _, r := range recs {
			if err := w.payWithdrawal(ctx, p, r.Value); err != nil {
				return err // a shutdown: decided withdrawals are skipped when redelivered
			}
		}
		return nil
	})
}

// withdrawalRow is what the payout needs of a withdrawals row.
type withdrawalRow struct {
	ID       int64  `db:"id"`
	UserID   int64  `db:"user_id"`
	Amount   int64  `db:"amount"`
	Status   string `db:"status"`
	Attempts int    `db:"attempts"`
}

// payWithdrawal pays one withdrawal out, retrying the provider with backoff
// up to the attempt budget (counted in MySQL, so across restarts too), and
// records the outcome. It returns an error only when ctx ends first.
func (w *Worker) payWithdrawal(ctx context.Context, p PayoutProvider, value []byte) error {
	var m bus.Withdrawal
	if err := json.Unmarshal(value, &m); err != nil || m.WithdrawalID <= 0 {
		// Nothing to pay: the gateway never writes such a message.
		w.log.Error("undecodable withdrawal message; skipped", "err", err, "value", string(value))
		return nil
	}
	var wd withdrawalRow
	var missing bool
	err := w.retry(ctx, "read a withdrawal", 0, func() error {
		err := w.sql.GetContext(ctx, &wd, "SELECT id, user_id, amount, status, attempts FROM withdrawals WHERE id = ?", m.WithdrawalID)
		missing = errors.Is(err, sql.ErrNoRows)
		if missing {
			return nil
		}
		return err
	})
	switch {
	case err != nil:
		return err
	case missing:
		w.log.Error("withdrawal message for an unknown withdrawal; skipped", "withdrawal", m.WithdrawalID)
		return nil
	case wd.Status != "pending":
		return nil // decided already: a relay duplicate or a redelivery
	}

	budget := w.cfg.PayoutAttempts
	if budget <= 0 {
		budget = 8
	}
	backoff := w.cfg.PayoutBackoff
	if backoff <= 0 {
		backoff = 100 * time.Millisecond
	}
	key := PayoutKey(wd.ID)
	lastErr := "no payout attempt left"
	for attempts := wd.Attempts; ; {
		if attempts >= budget {
			return w.failWithdrawal(ctx, p, wd, attempts, lastErr)
		}
		txn, err := p.Payout(ctx, key, wd.UserID, wd.Amount)
		if ctx.Err() != nil {
			// Shutting down (or, in tests, "crashing"): whatever the call
			// did, the redelivered message repeats it under the same key.
			return ctx.Err()
		}
		attempts++
		if err == nil {
			payoutCalls.WithLabelValues("ok").Inc()
			return w.succeedWithdrawal(ctx, wd, attempts, txn)
		}
		payoutCalls.WithLabelValues("error").Inc()
		lastErr = truncate(err.Error(), 255)
		w.log.Warn("payout failed", "withdrawal", wd.ID, "attempt", attempts, "of", budget, "err", err)
		err = w.retry(ctx, "record a payout attempt", 0, func() error {
			_, err := w.sql.ExecContext(ctx, "UPDATE withdrawals SET attempts = ?, last_error = ? WHERE id = ? AND status = 'pending'", attempts, lastErr, wd.ID)
			return err
		})
		if err != nil {
			return err
		}
		if attempts >= budget {
			continue // no point waiting before giving up
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxPayoutBackoff)
	}
}

func (w *Worker) succeedWithdrawal(ctx context.Context, wd withdrawalRow, attempts int, txn string) error {
	var n int64
	err := w.retry(ctx, "record a payout", 0, func() error {
		res, err := w.sql.ExecContext(ctx, `UPDATE withdrawals SET status = 'succeeded', payout_txn = ?, attempts = ?
			WHERE id = ? AND status = 'pending'`, txn, attempts, wd.ID)
		if err == nil {
			n, _ = res.RowsAffected()
		}
		return err
	})
	if err != nil {
		return err
	}
	if n == 1 {
		withdrawalsDecided.WithLabelValues("succeeded").Inc()
		w.log.Info("withdrawal paid out", "withdrawal", wd.ID, "user", wd.UserID, "amount", wd.Amount, "txn", txn)
	}
	return nil
}

// failWithdrawal gives up on a withdrawal: it fails it and refunds the
// earnings in one transaction, unless the provider says the payout was made
// after all (a call whose answer was lost), in which case it succeeded.
func (w *Worker) failWithdrawal(ctx context.Context, p PayoutProvider, wd withdrawalRow, attempts int, lastErr string) error {
	if c, ok := p.(PayoutChecker); ok {
		var txn string
		var paid bool
		// An unknown outcome must not be refunded: ask until the provider answers.
		err := w.retry(ctx, "ask the payout provider", 0, func() (err error) {
			txn, paid, err = c.PayoutStatus(ctx, PayoutKey(wd.ID))
			return err
		})
		if err != nil {
			return err
		}
		if paid {
			return w.succeedWithdrawal(ctx, wd, attempts, txn)
		}
	}
	var refunded bool
	err := w.retry(ctx, "fail a withdrawal", 0, func() error {
		tx, err := w.sql.BeginTxx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		res, err := tx.ExecContext(ctx, `UPDATE withdrawals SET status = 'failed', attempts = ?, last_error = ?
			WHERE id = ? AND status = 'pending'`, attempts, lastErr, wd.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			refunded = false
			return nil // decided elsewhere meanwhile
		}
		// Lock the wallet row first: wallet.Apply's shared-then-exclusive
		// locking deadlocks against a concurrent withdrawal of the same user.
		if _, err := tx.ExecContext(ctx, "INSERT INTO wallets (user_id) VALUES (?) ON DUPLICATE KEY UPDATE user_id = user_id", wd.UserID); err != nil {
			return err
		}
		if _, err := wallet.Apply(ctx, tx, wallet.Change{
			UserID: wd.UserID, Account: wallet.AccountEarnings, Kind: wallet.KindWithdrawalRefund,
			Ref: strconv.FormatInt(wd.ID, 10), Amount: wd.Amount,
		}); err != nil {
			return err
		}
		refunded = true
		return tx.Commit()
	})
	if err != nil {
		return err
	}
	if refunded {
		withdrawalsDecided.WithLabelValues("failed").Inc()
		w.log.Warn("withdrawal failed; earnings refunded", "withdrawal", wd.ID, "user", wd.UserID, "amount", wd.Amount, "attempts", attempts, "last_error", lastErr)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// claimToken names one relay round's claim on outbox rows.
func claimToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
