package db

import (
	"context"
	"database/sql"
	"time"

	"github.com/jmoiron/sqlx"
)

// The payer's statements on withdrawals. The gateway inserts a withdrawal
// pending; the payout consumer schedules it (ScheduleWithdrawals) and the
// payer then works on it straight from MySQL. States and who moves them:
//
//	pending, not due   --ScheduleWithdrawals-->  pending, due (next_attempt_at)
//	pending, due       --LeaseWithdrawal-->  pending, leased (next_attempt_at past the lease)
//	pending, leased    --RecordPayoutAttempt, RecordUnresolvedPayout, ReturnWithdrawal-->  pending, due later or now
//	pending            --SucceedWithdrawal-->  succeeded
//	pending, unflagged --FailAndRefundWithdrawal-->  failed (earnings refunded)
//	any                --FlagWithdrawal-->  flagged (conflict): an operator's, no longer due
//
// Every update but FlagWithdrawal moves only pending withdrawals, so at
// most one of succeeded and failed is ever written, and a decided
// withdrawal stays decided. A lease that lapses (its worker died) makes the withdrawal due
// again by itself.

// Withdrawal is what the payer needs of a withdrawals row.
type Withdrawal struct {
	ID         int64          `db:"id"`
	UserID     int64          `db:"user_id"`
	Amount     int64          `db:"amount"`
	Status     string         `db:"status"`
	Attempts   int            `db:"attempts"`
	Unresolved int            `db:"unresolved"`
	PayoutKey  sql.NullString `db:"payout_key"`
}

// WithdrawalOutcome is how a withdrawal was decided or flagged.
type WithdrawalOutcome struct {
	Status      string         `db:"status"`
	PayoutTxn   sql.NullString `db:"payout_txn"`
	Conflict    sql.NullString `db:"conflict"`
	ConflictTxn sql.NullString `db:"conflict_txn"`
}

// ScheduleWithdrawals makes the pending withdrawals among ids due now,
// unless they were scheduled before or are flagged: the payout consumer
// calls it for every message it reads, so a redelivered or duplicate message
// must not move a withdrawal that a payer has leased or put back.
func (s MySQL) ScheduleWithdrawals(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	q, args, err := sqlx.In("UPDATE withdrawals SET next_attempt_at = NOW(3) WHERE id IN (?) AND status = 'pending' AND next_attempt_at IS NULL AND conflict IS NULL", ids)
	if err != nil {
		return err
	}
	_, err = s.DB.ExecContext(ctx, q, args...)
	return err
}

// DueWithdrawals returns up to limit pending withdrawals whose due time has
// come, longest due first, so that none waits behind newer ones.
func (s MySQL) DueWithdrawals(ctx context.Context, limit int) ([]int64, error) {
	var ids []int64
	err := s.DB.SelectContext(ctx, &ids, `SELECT id FROM withdrawals
		WHERE status = 'pending' AND next_attempt_at <= NOW(3) ORDER BY next_attempt_at, id LIMIT ?`, limit)
	return ids, err
}

// LeaseWithdrawal takes a due withdrawal for the duration lease, by moving
// its due time past it, and returns it; took is false when it is not due
// any more (another worker has it, or it was decided). Until the lease
// lapses no other worker takes it, and if this one dies it is due again.
func (s MySQL) LeaseWithdrawal(ctx context.Context, id int64, lease time.Duration) (wd Withdrawal, took bool, err error) {
	err = InTx(ctx, s.DB, nil, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE withdrawals SET next_attempt_at = NOW(3) + INTERVAL ? MICROSECOND
			WHERE id = ? AND status = 'pending' AND next_attempt_at <= NOW(3)`, lease.Microseconds(), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			took = false
			return nil
		}
		took = true
		return tx.GetContext(ctx, &wd, "SELECT id, user_id, amount, status, attempts, unresolved, payout_key FROM withdrawals WHERE id = ?", id)
	})
	return wd, took, err
}

// ReturnWithdrawal makes a leased pending withdrawal due now: a worker that
// stops hands it back rather than leave it until its lease lapses. A
// withdrawal decided or flagged meanwhile is left alone.
func (s MySQL) ReturnWithdrawal(ctx context.Context, id int64) error {
	_, err := s.DB.ExecContext(ctx, "UPDATE withdrawals SET next_attempt_at = NOW(3) WHERE id = ? AND status = 'pending' AND next_attempt_at IS NOT NULL", id)
	return err
}

// RecordPayoutAttempt records a payout call whose outcome is unknown (the
// attempt count across restarts is what spends the attempt budget) and
// makes the withdrawal due again after wait.
func (s MySQL) RecordPayoutAttempt(ctx context.Context, id int64, attempts int, lastErr string, wait time.Duration) error {
	_, err := s.DB.ExecContext(ctx, `UPDATE withdrawals SET attempts = ?, last_error = ?, next_attempt_at = NOW(3) + INTERVAL ? MICROSECOND
		WHERE id = ? AND status = 'pending'`, attempts, lastErr, wait.Microseconds(), id)
	return err
}

// RecordUnresolvedPayout records a settling round the provider could not
// settle (the round count sets how long the payer waits before the next)
// and makes the withdrawal due again after wait. It stays pending: only the
// provider's final answer may refund it.
func (s MySQL) RecordUnresolvedPayout(ctx context.Context, id int64, unresolved int, lastErr string, wait time.Duration) error {
	_, err := s.DB.ExecContext(ctx, `UPDATE withdrawals SET unresolved = ?, last_error = ?, next_attempt_at = NOW(3) + INTERVAL ? MICROSECOND
		WHERE id = ? AND status = 'pending'`, unresolved, lastErr, wait.Microseconds(), id)
	return err
}

// SucceedWithdrawal records that the provider paid a pending withdrawal
// under txn. won is false when the withdrawal was not pending any more:
// the caller then reads WithdrawalOutcome to tell a repeat of this payout
// from a withdrawal that was also refunded or paid by another transaction.
func (s MySQL) SucceedWithdrawal(ctx context.Context, id int64, txn string, attempts int) (won bool, err error) {
	res, err := s.DB.ExecContext(ctx, `UPDATE withdrawals SET status = 'succeeded', payout_txn = ?, attempts = GREATEST(attempts, ?), next_attempt_at = NULL
		WHERE id = ? AND status = 'pending'`, txn, attempts, id)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// WithdrawalOutcome returns how a withdrawal was decided and whether, and
// under which provider transaction, it was flagged.
func (s MySQL) WithdrawalOutcome(ctx context.Context, id int64) (WithdrawalOutcome, error) {
	var o WithdrawalOutcome
	err := s.DB.GetContext(ctx, &o, "SELECT status, payout_txn, conflict, conflict_txn FROM withdrawals WHERE id = ?", id)
	return o, err
}

// FlagWithdrawal marks a withdrawal for an operator with the kind of
// conflict, the provider transaction that came with it ("" for none) and
// detail, and makes it due never again: the payer neither pays nor refunds
// a flagged withdrawal, whatever its status.
func (s MySQL) FlagWithdrawal(ctx context.Context, id int64, attempts int, kind, txn, detail string) error {
	_, err := s.DB.ExecContext(ctx, `UPDATE withdrawals SET conflict = ?, conflict_txn = NULLIF(?, ''), conflict_at = NOW(3),
		attempts = GREATEST(attempts, ?), last_error = ?, next_attempt_at = NULL WHERE id = ?`,
		kind, txn, attempts, detail, id)
	return err
}

// FailAndRefundWithdrawal fails a pending, unflagged withdrawal and runs
// refund in the same transaction, so that the earnings come back exactly
// when the withdrawal fails. failed is false, and refund is not run, when
// the withdrawal was decided or flagged meanwhile. refund (which credits
// the wallet: package wallet, which imports this one) may run more than
// once, as db.InTx repeats a transaction that lost a lock conflict.
func (s MySQL) FailAndRefundWithdrawal(ctx context.Context, id int64, refund func(tx *sqlx.Tx) error) (failed bool, err error) {
	err = InTx(ctx, s.DB, nil, func(tx *sqlx.Tx) error {
		failed = false
		res, err := tx.ExecContext(ctx, `UPDATE withdrawals SET status = 'failed', next_attempt_at = NULL
			WHERE id = ? AND status = 'pending' AND conflict IS NULL`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil
		}
		if err := refund(tx); err != nil {
			return err
		}
		failed = true
		return nil
	})
	return failed, err
}
