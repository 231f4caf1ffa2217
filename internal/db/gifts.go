package db

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// The gift writer's statements. A chunk of gifts runs in one transaction
// that first locks every wallet it reads (LockWallets, in user id order, so
// chunks that share an anchor queue instead of deadlocking); the worker then
// decides every gift in memory and WriteGifts applies the whole chunk with a
// handful of multi-row statements, however many gifts it holds.

// Balances is what the gift writer reads of a wallet.
type Balances struct {
	Balance  int64 `db:"balance"`
	Earnings int64 `db:"earnings"`
}

// LockWallets creates the wallets of users that have none and locks all of
// them until the transaction ends, in user id order, and returns their
// balances.
//
// It reads them FOR UPDATE first, which locks the rows that exist in id
// order (the IN list is a range of the primary key) and the gaps of those
// that do not, so no other transaction can create one of those meanwhile;
// only then does it create the missing ones (rare: a receiver's first
// gift) and read them back. Creating every wallet up front with INSERT ...
// ON DUPLICATE KEY UPDATE, as before, cost a statement per chunk whose rows
// almost all existed (65 ms of a 20,000-gift run's 1.1 s in MariaDB's slow
// log). Two transactions that both find the same wallet missing both hold
// its gap and one is rolled back as a deadlock when they insert; the
// writers retry that as transient.
func LockWallets(ctx context.Context, tx *sqlx.Tx, users []int64) (map[int64]Balances, error) {
	out := make(map[int64]Balances, len(users))
	if len(users) == 0 {
		return out, nil
	}
	users = slices.Clone(users)
	slices.Sort(users)
	users = slices.Compact(users)
	lockRead := func(ids []int64) error {
		q, args, err := sqlx.In("SELECT user_id, balance, earnings FROM wallets WHERE user_id IN (?) ORDER BY user_id FOR UPDATE", ids)
		if err != nil {
			return err
		}
		var rows []struct {
			UserID int64 `db:"user_id"`
			Balances
		}
		if err := tx.SelectContext(ctx, &rows, q, args...); err != nil {
			return fmt.Errorf("cannot read wallets: %w", err)
		}
		for _, r := range rows {
			out[r.UserID] = r.Balances
		}
		return nil
	}
	if err := lockRead(users); err != nil {
		return nil, err
	}
	var missing []any
	var missingIDs []int64
	for _, u := range users {
		if _, ok := out[u]; !ok {
			missing, missingIDs = append(missing, u), append(missingIDs, u)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	// ON DUPLICATE KEY UPDATE takes each row exclusively at once; INSERT
	// IGNORE would leave shared locks that a later update upgrades, and two
	// transactions doing that deadlock. The rows are read back rather than
	// taken to be zero: the writers set balances absolutely, so a wallet
	// another transaction did create must not be overwritten from zeros.
	if _, err := insertRows(ctx, tx, "INSERT INTO wallets (user_id)", 1, len(missing), " ON DUPLICATE KEY UPDATE user_id = user_id", missing); err != nil {
		return nil, fmt.Errorf("cannot create wallets: %w", err)
	}
	if err := lockRead(missingIDs); err != nil {
		return nil, err
	}
	if len(out) != len(users) {
		return nil, fmt.Errorf("locked %d of %d wallets", len(out), len(users))
	}
	return out, nil
}

// IdemRef names one sender's Idempotency-Key.
type IdemRef struct {
	UserID int64
	Key    string
}

// GiftIdemHolders returns the tickets that already answered the given gift
// Idempotency-Keys.
func GiftIdemHolders(ctx context.Context, tx *sqlx.Tx, refs []IdemRef) (map[IdemRef]string, error) {
	out := map[IdemRef]string{}
	if len(refs) == 0 {
		return out, nil
	}
	var users []int64
	var keys []string
	for _, r := range refs {
		users = append(users, r.UserID)
		keys = append(keys, r.Key)
	}
	q, args, err := sqlx.In(`SELECT user_id, idem_key, ticket FROM tickets
		WHERE user_id IN (?) AND kind = 'gift' AND idem_key IN (?)`, users, keys)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		UserID int64  `db:"user_id"`
		Key    string `db:"idem_key"`
		Ticket string `db:"ticket"`
	}
	if err := tx.SelectContext(ctx, &rows, q, args...); err != nil {
		return nil, fmt.Errorf("cannot read idempotency keys: %w", err)
	}
	for _, r := range rows {
		out[IdemRef{r.UserID, r.Key}] = r.Ticket
	}
	return out, nil
}

// WalletDelta is the net change of one wallet in a chunk, and the balance
// and earnings it leaves, computed from the values read under the wallet's
// row lock.
type WalletDelta struct {
	UserID      int64
	Balance     int64 // signed
	Earnings    int64 // signed
	Spent       int64 // added to total_spent
	Earned      int64 // added to total_earned
	NewBalance  int64 // balance after the chunk
	NewEarnings int64 // earnings after the chunk
}

// LedgerRow is one ledger entry with the account's value after it.
type LedgerRow struct {
	UserID       int64
	Account      string // balance | earnings
	Kind         string
	Ref          string
	Amount       int64
	BalanceAfter int64
}

// GiftRow is one committed gift.
type GiftRow struct {
	Ticket     string
	RoomID     int64
	SenderID   int64
	ReceiverID int64
	GiftID     int64
	Count      int64
	Coins      int64
	HeldAt     time.Time
}

// RoomTotal is coins given by one user in one room, added to the leaderboard.
type RoomTotal struct {
	RoomID int64
	UserID int64
	Coins  int64
}

// GiftWrite is everything one chunk changes.
type GiftWrite struct {
	Wallets []WalletDelta
	Ledger  []LedgerRow
	Gifts   []GiftRow
	Rooms   []RoomTotal // sorted by room, then user
	Tickets []NewTicket
}

// WriteGifts applies a decided chunk inside the transaction that locked its
// wallets. The wallets' CHECK (balance >= 0 AND earnings >= 0) stays the
// last guard: a wrong decision fails the transaction instead of a wallet.
func WriteGifts(ctx context.Context, tx *sqlx.Tx, w GiftWrite) error {
	if len(w.Wallets) > 0 {
		// The balances are absolute (read under the row locks this
		// transaction holds, then moved in memory), so one multi-row
		// statement writes every wallet in one pass; the candidate row
		// MariaDB checks the CHECK constraint against holds the new values,
		// which are never negative. An UPDATE with a CASE per column was
		// quadratic in the chunk's wallets: 32 ms of a 500-gift chunk's
		// 110 ms in MariaDB's slow log.
		args := make([]any, 0, 5*len(w.Wallets))
		for _, d := range w.Wallets {
			args = append(args, d.UserID, d.NewBalance, d.NewEarnings, d.Spent, d.Earned)
		}
		res, err := insertRows(ctx, tx, "INSERT INTO wallets (user_id, balance, earnings, total_spent, total_earned)", 5, len(w.Wallets),
			` ON DUPLICATE KEY UPDATE balance = VALUES(balance), earnings = VALUES(earnings),
				total_spent = total_spent + VALUES(total_spent), total_earned = total_earned + VALUES(total_earned)`, args)
		if err != nil {
			return fmt.Errorf("cannot update wallets: %w", err)
		}
		// Each existing row changed counts twice; a row that was missing
		// (LockWallets creates them all) would count once.
		if n, _ := res.RowsAffected(); n != 2*int64(len(w.Wallets)) {
			return fmt.Errorf("updated %d rows for %d wallets", n, len(w.Wallets))
		}
	}
	if len(w.Ledger) > 0 {
		args := make([]any, 0, 6*len(w.Ledger))
		for _, l := range w.Ledger {
			args = append(args, l.UserID, l.Account, l.Kind, l.Ref, l.Amount, l.BalanceAfter)
		}
		if _, err := insertRows(ctx, tx, "INSERT INTO ledger (user_id, account, kind, ref, amount, balance_after)", 6, len(w.Ledger), "", args); err != nil {
			return fmt.Errorf("cannot write ledger: %w", err)
		}
	}
	if len(w.Gifts) > 0 {
		args := make([]any, 0, 8*len(w.Gifts))
		for _, g := range w.Gifts {
			args = append(args, g.Ticket, g.RoomID, g.SenderID, g.ReceiverID, g.GiftID, g.Count, g.Coins, g.HeldAt.UTC())
		}
		if _, err := insertRows(ctx, tx, "INSERT INTO gift_records (ticket, room_id, sender_id, receiver_id, gift_id, count, coins, created_at)",
			8, len(w.Gifts), "", args); err != nil {
			return fmt.Errorf("cannot insert gift records: %w", err)
		}
	}
	if len(w.Rooms) > 0 {
		args := make([]any, 0, 3*len(w.Rooms))
		for _, r := range w.Rooms {
			args = append(args, r.RoomID, r.UserID, r.Coins)
		}
		if _, err := insertRows(ctx, tx, "INSERT INTO room_senders (room_id, user_id, coins)", 3, len(w.Rooms),
			" ON DUPLICATE KEY UPDATE coins = coins + VALUES(coins)", args); err != nil {
			return fmt.Errorf("cannot update leaderboards: %w", err)
		}
	}
	return InsertTickets(ctx, tx, w.Tickets)
}

// SpendableBalances returns the MySQL balance of each user; users without a
// wallet have 0.
func SpendableBalances(ctx context.Context, q sqlx.QueryerContext, users []int64) (map[int64]int64, error) {
	out := make(map[int64]int64, len(users))
	if len(users) == 0 {
		return out, nil
	}
	query, args, err := sqlx.In("SELECT user_id, balance FROM wallets WHERE user_id IN (?)", users)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		UserID  int64 `db:"user_id"`
		Balance int64 `db:"balance"`
	}
	if err := sqlx.SelectContext(ctx, q, &rows, query, args...); err != nil {
		return nil, fmt.Errorf("cannot read balances: %w", err)
	}
	for _, r := range rows {
		out[r.UserID] = r.Balance
	}
	return out, nil
}

// insertRows runs head + " VALUES (?, ...), ..." + tail: rows rows of cols
// placeholders each, with args in row order.
func insertRows(ctx context.Context, tx *sqlx.Tx, head string, cols, rows int, tail string, args []any) (sql.Result, error) {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	var sb strings.Builder
	sb.Grow(len(head) + len(tail) + 8 + rows*(len(row)+1))
	sb.WriteString(head)
	sb.WriteString(" VALUES ")
	for i := range rows {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(row)
	}
	sb.WriteString(tail)
	return tx.ExecContext(ctx, sb.String(), args...)
}

// RoomGift is a committed gift as a room's feed shows it.
type RoomGift struct {
	Ticket      string    `db:"ticket"`
	SenderID    int64     `db:"sender_id"`
	ReceiverID  int64     `db:"receiver_id"`
	GiftID      int64     `db:"gift_id"`
	Count       int64     `db:"count"`
	Coins       int64     `db:"coins"`
	CommittedAt time.Time `db:"committed_at"`
}

// RecentRoomGifts returns a room's last limit committed gifts, newest
// first.
func (s MySQL) RecentRoomGifts(ctx context.Context, roomID int64, limit int) ([]RoomGift, error) {
	gifts := make([]RoomGift, 0, limit)
	err := s.DB.SelectContext(ctx, &gifts,
		"SELECT ticket, sender_id, receiver_id, gift_id, count, coins, committed_at FROM gift_records WHERE room_id = ? ORDER BY id DESC LIMIT ?",
		roomID, limit)
	return gifts, err
}

// RoomSender is a sender's total in a room.
type RoomSender struct {
	UserID int64 `db:"user_id"`
	Coins  int64 `db:"coins"`
}

// TopRoomSenders returns a room's limit biggest senders, biggest first
// (ties by user id): the leaderboard.
func (s MySQL) TopRoomSenders(ctx context.Context, roomID int64, limit int) ([]RoomSender, error) {
	top := make([]RoomSender, 0, limit)
	err := s.DB.SelectContext(ctx, &top,
		"SELECT user_id, coins FROM room_senders WHERE room_id = ? AND coins > 0 ORDER BY coins DESC, user_id LIMIT ?",
		roomID, limit)
	return top, err
}
