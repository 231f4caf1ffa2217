package sandbox

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// Payouts is the sandbox payout provider: it "sends money" by recording the
// payout in sandbox_payouts, once per idempotency key, as a real provider
// de-duplicates requests by their idempotency key.
type Payouts struct {
	DB *sqlx.DB
}

// Payout pays amount to the user once per key and returns the provider's
// transaction id. A repeat of the key returns the first payout's
// transaction and pays nothing again; a repeat with another user or amount
// is ErrKeyReused.
func (p *Payouts) Payout(ctx context.Context, key string, userID, amount int64) (string, error) {
	if key == "" || userID <= 0 || amount <= 0 {
		return "", fmt.Errorf("sandbox payout: bad request (key %q, user %d, amount %d)", key, userID, amount)
	}
	var b [8]byte
	rand.Read(b[:])
	// INSERT IGNORE makes concurrent repeats of one key race safely: one
	// row wins, and everyone reads that row back.
	if _, err := p.DB.ExecContext(ctx, "INSERT IGNORE INTO sandbox_payouts (idempotency_key, user_id, amount, txn) VALUES (?, ?, ?, ?)",
		key, userID, amount, "sbxp_"+hex.EncodeToString(b[:])); err != nil {
		return "", fmt.Errorf("sandbox payout: %w", err)
	}
	var row struct {
		UserID int64  `db:"user_id"`
		Amount int64  `db:"amount"`
		Txn    string `db:"txn"`
	}
	if err := p.DB.GetContext(ctx, &row, "SELECT user_id, amount, txn FROM sandbox_payouts WHERE idempotency_key = ?", key); err != nil {
		return "", fmt.Errorf("sandbox payout: %w", err)
	}
	if row.UserID != userID || row.Amount != amount {
		return "", fmt.Errorf("%w: key %q paid %d to user %d before", ErrKeyReused, key, row.Amount, row.UserID)
	}
	return row.Txn, nil
}

// PayoutStatus reports whether a payout with the key was made, and its
// transaction. A caller about to give up on a payout asks this first, since a
// call whose answer was lost may still have paid.
func (p *Payouts) PayoutStatus(ctx context.Context, key string) (txn string, paid bool, err error) {
	err = p.DB.GetContext(ctx, &txn, "SELECT txn FROM sandbox_payouts WHERE idempotency_key = ?", key)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("sandbox payout status: %w", err)
	}
	return txn, true, nil
}
