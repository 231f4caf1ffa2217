package db

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/jmoiron/sqlx"
)

// The gateway's side of withdrawals: a request creates the row; the worker
// pays it out (payouts.go).

// CreateWithdrawal creates a pending withdrawal and runs debit in the same
// transaction with the new row's id, which is the ledger reference: debit
// takes the earnings (package wallet) and queues the payout message
// (QueueMessage), so the row, its ledger row and the message exist together
// or not at all. A repeated Idempotency-Key stops at the row, on the unique
// key, before any money moves: a duplicate key error (IsDuplicate). An
// empty idemKey is none. debit may run more than once, as InTx repeats a
// transaction that lost a lock conflict.
func (s MySQL) CreateWithdrawal(ctx context.Context, userID, amount int64, idemKey, payoutKey string, debit func(tx *sqlx.Tx, id int64) error) (id int64, err error) {
	err = InTx(ctx, s.DB, nil, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, "INSERT INTO withdrawals (user_id, amount, idem_key, payout_key) VALUES (?, ?, NULLIF(?, ''), ?)",
			userID, amount, idemKey, payoutKey)
		if err != nil {
			return err
		}
		if id, err = res.LastInsertId(); err != nil {
			return err
		}
		return debit(tx, id)
	})
	return id, err
}

// WithdrawalByIdem returns the id of the user's withdrawal created with
// the Idempotency-Key.
func (s MySQL) WithdrawalByIdem(ctx context.Context, userID int64, idemKey string) (int64, error) {
	var id int64
	err := s.DB.GetContext(ctx, &id, "SELECT id FROM withdrawals WHERE user_id = ? AND idem_key = ?", userID, idemKey)
	return id, err
}

// WithdrawalState is what a user may read of a withdrawal.
type WithdrawalState struct {
	UserID    int64     `db:"user_id"`
	Amount    int64     `db:"amount"`
	Status    string    `db:"status"`
	CreatedAt time.Time `db:"created_at"`
}

// WithdrawalState returns a withdrawal's state, or ErrNotFound.
func (s MySQL) WithdrawalState(ctx context.Context, id int64) (WithdrawalState, error) {
	var w WithdrawalState
	err := s.DB.GetContext(ctx, &w, "SELECT user_id, amount, status, created_at FROM withdrawals WHERE id = ?", id)
	if errors.Is(err, sql.ErrNoRows) {
		return w, ErrNotFound
	}
	return w, err
}
