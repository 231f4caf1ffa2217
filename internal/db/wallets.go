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
	snaps, err := ReadWalletSnapshots(ctx, q, []int64{userID}, credits, idemSince)
	return snaps[userID], err
}

// ReadWalletSnapshots is ReadWalletSnapshot for several users at once, still
// one statement: the gateway batches the loads of a crowd's first gifts.
// Every user is in the map.
func ReadWalletSnapshots(ctx context.Context, q sqlx.QueryerContext, users []int64, credits time.Duration, idemSince time.Time) (map[int64]WalletSnapshot, error) {
	out := make(map[int64]WalletSnapshot, len(users))
	if len(users) == 0 {
		return out, nil
	}
	query, args, err := sqlx.In(`
		SELECT 'b' AS part, user_id AS u, balance AS n, '' AS a, '' AS b, NULL AS at FROM wallets WHERE user_id IN (?)
		UNION ALL
		SELECT 'c', user_id, 0, kind, ref, NULL FROM ledger
			WHERE user_id IN (?) AND account = 'balance' AND amount > 0 AND created_at > NOW(3) - INTERVAL ? SECOND
		UNION ALL
		SELECT 'i', user_id, balance_after, idem_key, ticket, created_at FROM tickets
			WHERE user_id IN (?) AND kind = 'gift' AND idem_key IS NOT NULL AND created_at > ?`,
		users, users, int(credits/time.Second), users, idemSince.UTC())
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("cannot read wallets: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var part, a, b string
		var u int64
		var n sql.NullInt64
		var at sql.NullTime
		if err := rows.Scan(&part, &u, &n, &a, &b, &at); err != nil {
			return nil, fmt.Errorf("cannot read wallets: %w", err)
		}
		s := out[u]
		switch part {
		case "b":
			s.Balance = n.Int64
		case "c":
			s.Credits = append(s.Credits, Credit{Kind: a, Ref: b})
		case "i":
			s.Idem = append(s.Idem, GiftIdem{IdemKey: a, Ticket: b, Balance: n.Int64, CreatedAt: at.Time})
		}
		out[u] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read wallets: %w", err)
	}
	for _, u := range users {
		if _, ok := out[u]; !ok {
			out[u] = WalletSnapshot{}
		}
	}
	return out, nil
}
