// Package wallet keeps a user's coins: MySQL is the source of truth (wallets
// and ledger), Redis holds a hot copy of each balance, loaded on first use,
// from which gifts hold coins until the worker commits them.
package wallet

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/store"
)

// Ledger kinds.
const (
	KindGiftSent         = "gift_sent"         // balance -, ref = gift ticket
	KindGiftReceived     = "gift_received"     // earnings +, ref = gift ticket
	KindRecharge         = "recharge"          // balance +, ref = pay order id
	KindWithdrawal       = "withdrawal"        // earnings -, ref = withdrawal id
	KindWithdrawalRefund = "withdrawal_refund" // earnings +, ref = withdrawal id
)

// Accounts of a wallet.
const (
	AccountBalance  = "balance"
	AccountEarnings = "earnings"
)

// ErrInsufficient means the account does not hold enough coins.
var ErrInsufficient = errors.New("insufficient coins")

// Wallet is a wallet's MySQL row.
type Wallet struct {
	UserID         int64 `db:"user_id"`
	Balance        int64 `db:"balance"`
	Earnings       int64 `db:"earnings"`
	TotalRecharged int64 `db:"total_recharged"`
	TotalSpent     int64 `db:"total_spent"`
	TotalEarned    int64 `db:"total_earned"`
	TotalWithdrawn int64 `db:"total_withdrawn"`
}

// Wallets combines the MySQL and Redis sides.
type Wallets struct {
	Redis *store.Redis
	DB    *sqlx.DB
	// Loader, when set, batches the MySQL reads of concurrent loads.
	Loader *Loader
}

// Get returns the user's MySQL wallet; a user without one has an empty wallet.
func (w Wallets) Get(ctx context.Context, userID int64) (Wallet, error) {
	var wl Wallet
	err := w.DB.GetContext(ctx, &wl, "SELECT user_id, balance, earnings, total_recharged, total_spent, total_earned, total_withdrawn FROM wallets WHERE user_id = ?", userID)
	if errors.Is(err, sql.ErrNoRows) {
		return Wallet{UserID: userID}, nil
	}
	return wl, err
}

// creditWindow is how far back a load looks for credits it must mark as
// included; credits are applied to Redis within moments of their commit.
const creditWindow = time.Hour

// CreditRef is the Redis reference of a ledger credit.
func CreditRef(kind, ref string) string { return kind + ":" + ref }

// HotBalance returns the user's spendable balance from Redis, loading it
// from MySQL on first use.
func (w Wallets) HotBalance(ctx context.Context, userID int64) (int64, error) {
	for attempt := 0; ; attempt++ {
		bal, ok, err := w.Redis.HotBalance(ctx, userID)
		if err != nil || ok {
			return bal, err
		}
		started, err := w.Redis.BeginWalletLoad(ctx, userID, store.LoadMark)
		if err != nil {
			return 0, err
		}
		if !started {
			// Someone else is loading it: wait for them.
			if attempt > 100 {
				return 0, fmt.Errorf("wallet %d: load did not finish", userID)
			}
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		return w.load(ctx, userID)
	}
}

// LoadMarked loads a wallet whose load mark the caller holds: gift_hold.lua
// set it when it met the wallet cold (store.HoldResult.LoadMine). It is
// HotBalance without the two round trips that ask Redis first.
func (w Wallets) LoadMarked(ctx context.Context, userID int64) (int64, error) {
	return w.load(ctx, userID)
}

// Resync makes the hot balance agree with MySQL again: MySQL's balance minus
// the coins still held by gifts in flight. The worker calls it when it had
// to refuse a gift the hot balance allowed. It reports false when a load or
// another resync of the wallet is under way (that one reads MySQL anyway).
func (w Wallets) Resync(ctx context.Context, userID int64) (bool, error) {
	started, err := w.Redis.BeginWalletLoad(ctx, userID, store.LoadMark)
	if err != nil || !started {
		return false, err
	}
	bal, credited, err := w.snapshot(ctx, userID)
	if err != nil {
		w.Redis.AbandonWalletLoad(ctx, userID)
		return false, err
	}
	_, err = w.Redis.ResyncWallet(ctx, userID, bal, credited)
	return err == nil, err
}

// load reads the balance, the recent credits and the recent gift
// Idempotency-Keys in one snapshot and installs them in Redis. Before the
// balance it puts back the answers to the user's recent gift keys that Redis
// lost with the balance (a flush, a restart): no gift can be held until the
// balance is there, so a retry meets its first answer, not a second debit.
func (w Wallets) load(ctx context.Context, userID int64) (int64, error) {
	now := time.Now()
	var snap db.WalletSnapshot
	var err error
	if w.Loader != nil {
		snap, err = w.Loader.Snapshot(ctx, userID, now.Add(-store.IdemTTL))
	} else {
		snap, err = db.ReadWalletSnapshot(ctx, w.DB, userID, creditWindow, now.Add(-store.IdemTTL))
	}
	if err == nil && len(snap.Idem) > 0 {
		out := make([]store.GiftIdem, len(snap.Idem))
		for i, k := range snap.Idem {
			out[i] = store.GiftIdem{Key: k.IdemKey, Ticket: k.Ticket, Balance: k.Balance, Expires: k.CreatedAt.Add(store.IdemTTL)}
		}
		err = w.Redis.RestoreGiftIdem(ctx, userID, out, now)
	}
	if err != nil {
		w.Redis.AbandonWalletLoad(ctx, userID)
		return 0, err
	}
	return w.Redis.FinishWalletLoad(ctx, userID, snap.Balance, creditRefs(snap.Credits))
}

// snapshot reads the MySQL balance and the references of the credits it
// includes, in one consistent read.
func (w Wallets) snapshot(ctx context.Context, userID int64) (int64, []string, error) {
	snap, err := db.ReadWalletSnapshot(ctx, w.DB, userID, creditWindow, time.Now())
	return snap.Balance, creditRefs(snap.Credits), err
}

func creditRefs(cs []db.Credit) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = CreditRef(c.Kind, c.Ref)
	}
	return out
}

// CreditHot applies a credit that MySQL committed to the hot balance, once
// per reference; when the balance is not loaded the next load reads MySQL.
func (w Wallets) CreditHot(ctx context.Context, userID, coins int64, kind, ref string) error {
	for attempt := 0; ; attempt++ {
		st, err := w.Redis.CreditWallet(ctx, userID, coins, CreditRef(kind, ref))
		if err != nil || st != store.CreditLoading {
			return err
		}
		if attempt > 200 {
			return fmt.Errorf("wallet %d: credit waited too long for a load", userID)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Change is one ledger entry to apply inside a transaction.
type Change struct {
	UserID  int64
	Account string // AccountBalance or AccountEarnings
	Kind    string
	Ref     string
	Amount  int64 // signed
}

// Apply changes one wallet account inside tx: a guarded update (the account
// never goes below zero), the matching totals, and one ledger row, unique per
// (kind, ref). It returns ErrInsufficient when the guard refuses and a
// duplicate-key error when the (kind, ref) was applied before.
func Apply(ctx context.Context, tx *sqlx.Tx, c Change) (after int64, err error) {
	// Create the row if need be and take it exclusively at once: INSERT
	// IGNORE would leave a shared lock that the UPDATE below upgrades, and
	// two transactions of one user doing that deadlock.
	if _, err := tx.ExecContext(ctx, "INSERT INTO wallets (user_id) VALUES (?) ON DUPLICATE KEY UPDATE user_id = user_id", c.UserID); err != nil {
		return 0, err
	}
	var total string
	switch {
	case c.Kind == KindRecharge:
		total = ", total_recharged = total_recharged + ?"
	case c.Kind == KindGiftSent:
		total = ", total_spent = total_spent - ?"
	case c.Kind == KindGiftReceived:
		total = ", total_earned = total_earned + ?"
	case c.Kind == KindWithdrawal || c.Kind == KindWithdrawalRefund:
		total = ", total_withdrawn = total_withdrawn - ?"
	default:
		return 0, fmt.Errorf("unknown ledger kind %q", c.Kind)
	}
	col := "balance"
	if c.Account == AccountEarnings {
		col = "earnings"
	}
	res, err := tx.ExecContext(ctx, "UPDATE wallets SET "+col+" = "+col+" + ?"+total+" WHERE user_id = ? AND "+col+" + ? >= 0",
		c.Amount, c.Amount, c.UserID, c.Amount)
	if err != nil {
		return 0, err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return 0, ErrInsufficient
	}
	if err := tx.GetContext(ctx, &after, "SELECT "+col+" FROM wallets WHERE user_id = ?", c.UserID); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO ledger (user_id, account, kind, ref, amount, balance_after) VALUES (?, ?, ?, ?, ?, ?)",
		c.UserID, c.Account, c.Kind, c.Ref, c.Amount, after); err != nil {
		return 0, err
	}
	return after, nil
}
