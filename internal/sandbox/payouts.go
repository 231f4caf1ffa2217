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

// PayoutState is what a payout provider knows of an idempotency key.
type PayoutState int

// Payout states.
const (
	// PayoutUnknown: the provider cannot say that the key paid, nor that it
	// never will (no record yet, a payout still being processed). A payout
	// may still land, so nothing may be refunded on this answer.
	PayoutUnknown PayoutState = iota
	// PayoutPaid: a payout was made under the key.
	PayoutPaid
	// PayoutVoided: nothing was paid under the key and nothing ever will be.
	PayoutVoided
)

func (s PayoutState) String() string {
	switch s {
	case PayoutPaid:
		return "paid"
	case PayoutVoided:
		return "voided"
	}
	return "unknown"
}

// PayoutStatus is a provider's answer about one idempotency key. Txn,
// UserID and Amount are those of the payout when State is PayoutPaid.
type PayoutStatus struct {
	State  PayoutState
	Txn    string
	UserID int64
	Amount int64
}

// Payouts is the sandbox payout provider: it "sends money" by recording the
// payout in sandbox_payouts, once per idempotency key, as a real provider
// de-duplicates requests by their idempotency key. A voided key is a row
// with voided_at set and no transaction: the unique key makes a payout and
// a void of one key exclude each other, whichever comes first.
type Payouts struct {
	DB *sqlx.DB
}

type payoutRow struct {
	UserID   int64          `db:"user_id"`
	Amount   int64          `db:"amount"`
	Txn      sql.NullString `db:"txn"`
	IsVoided bool           `db:"is_voided"`
}

func (p *Payouts) row(ctx context.Context, key string) (payoutRow, error) {
	var r payoutRow
	err := p.DB.GetContext(ctx, &r, "SELECT user_id, amount, txn, voided_at IS NOT NULL AS is_voided FROM sandbox_payouts WHERE idempotency_key = ?", key)
	return r, err
}

// Payout pays amount to the user once per key and returns the provider's
// transaction id. A repeat of the key returns the first payout's
// transaction and pays nothing again; a repeat with another user or amount
// is ErrKeyReused; a key voided before is ErrVoided.
func (p *Payouts) Payout(ctx context.Context, key string, userID, amount int64) (string, error) {
	if key == "" || userID <= 0 || amount <= 0 {
		return "", fmt.Errorf("sandbox payout: bad request (key %q, user %d, amount %d)", key, userID, amount)
	}
	var b [8]byte
	rand.Read(b[:])
	// INSERT IGNORE makes concurrent repeats of one key, and a void racing
	// a payout, safe: one row wins, and everyone reads that row back.
	if _, err := p.DB.ExecContext(ctx, "INSERT IGNORE INTO sandbox_payouts (idempotency_key, user_id, amount, txn) VALUES (?, ?, ?, ?)",
		key, userID, amount, "sbxp_"+hex.EncodeToString(b[:])); err != nil {
		return "", fmt.Errorf("sandbox payout: %w", err)
	}
	r, err := p.row(ctx, key)
	if err != nil {
		return "", fmt.Errorf("sandbox payout: %w", err)
	}
	if r.IsVoided {
		return "", fmt.Errorf("sandbox payout: key %q: %w", key, ErrVoided)
	}
	if r.UserID != userID || r.Amount != amount {
		return "", fmt.Errorf("%w: key %q paid %d to user %d before", ErrKeyReused, key, r.Amount, r.UserID)
	}
	return r.Txn.String, nil
}

// VoidPayout makes sure nothing is paid under the key from now on. It
// returns nil when the key is voided, now or before, and also when a payout
// was already made under it (there is nothing left to void):
// PayoutStatus tells which.
func (p *Payouts) VoidPayout(ctx context.Context, key string) error {
	if key == "" {
		return errors.New("sandbox void: empty key")
	}
	if _, err := p.DB.ExecContext(ctx, "INSERT IGNORE INTO sandbox_payouts (idempotency_key, user_id, amount, txn, voided_at) VALUES (?, 0, 0, NULL, NOW(3))", key); err != nil {
		return fmt.Errorf("sandbox void: %w", err)
	}
	return nil
}

// PayoutStatus reports what became of the key: paid (with the payout's
// transaction, user and amount), voided, or unknown when the key has
// neither paid nor been voided, since a payout may still be on its way.
func (p *Payouts) PayoutStatus(ctx context.Context, key string) (PayoutStatus, error) {
	r, err := p.row(ctx, key)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return PayoutStatus{State: PayoutUnknown}, nil
	case err != nil:
		return PayoutStatus{}, fmt.Errorf("sandbox payout status: %w", err)
	case r.IsVoided:
		return PayoutStatus{State: PayoutVoided}, nil
	}
	return PayoutStatus{State: PayoutPaid, Txn: r.Txn.String, UserID: r.UserID, Amount: r.Amount}, nil
}
