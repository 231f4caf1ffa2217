package db

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// WalletSnapshot is what a wallet load reads from MySQL, in one consistent
// read: the balance, the credits it already includes (so that a credit in
// flight is not applied twice), and the answers to the user's recent gift
// Idempotency-Keys (so that a retry after Redis lost them meets its first
// answer).
type WalletSnapshot struct {
	Balance int64
	Credits []Credit
	Idem    []GiftIdem
}

// Credit is a ledger credit of a balance: its kind and reference.
type Credit struct {
	Kind string
	Ref  string
}

// ReadWalletSnapshot reads a user's snapshot with one statement, so one
// round trip and one read view: a wallet load is on a gift's request path.
// credits is how far back to look for credits, idemSince since when for
// Idempotency-Keys. A user without a wallet row has balance 0.
func ReadWalletSnapshot(ctx context.Context, q sqlx.QueryerContext, userID int64, credits time.Duration, idemSince time.Time) (WalletSnapshot, error) {
	rows, err := q.QueryContext(ctx, `
		SELECT 'b' AS part, balance AS n, '' AS a, '' AS b, NULL AS at FROM wallets WHERE user_id = ?
		UNION ALL
		SELECT 'c', 0, kind, ref, NULL FROM ledger
			WHERE user_id = ? AND account = 'balance' AND amount > 0 AND created_at > NOW(3) - INTERVAL ? SECOND
		UNION ALL
		SELECT 'i', balance_after, idem_key, ticket, created_at FROM tickets
			WHERE user_id = ? AND kind = 'gift' AND idem_key IS NOT NULL AND created_at > ?`,
		userID, userID, int(credits/time.Second), userID, idemSince.UTC())
	if err != nil {
		return WalletSnapshot{}, fmt.Errorf("cannot read wallet %d: %w", userID, err)
	}
	defer rows.Close()
	var s WalletSnapshot
	for rows.Next() {
		var part, a, b string
		var n sql.NullInt64
		var at sql.NullTime
		if err := rows.Scan(&part, &n, &a, &b, &at); err != nil {
			return WalletSnapshot{}, fmt.Errorf("cannot read wallet %d: %w", userID, err)
		}
		switch part {
		case "b":
			s.Balance = n.Int64
		case "c":
			s.Credits = append(s.Credits, Credit{Kind: a, Ref: b})
		case "i":
			s.Idem = append(s.Idem, GiftIdem{IdemKey: a, Ticket: b, Balance: n.Int64, CreatedAt: at.Time})
		}
	}
	if err := rows.Err(); err != nil {
		return WalletSnapshot{}, fmt.Errorf("cannot read wallet %d: %w", userID, err)
	}
	return s, nil
}
