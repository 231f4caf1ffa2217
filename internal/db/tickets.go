package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// The tickets table is where a ticket's outcome becomes final: the order
// and gift writers insert their decisions, and the first insert for a
// ticket wins (its primary key). States and who moves them:
//
//	(no row)  --order/gift writer commits-->  succeeded | failed
//	(no row)  --writer meets the abort marker first--> failed (timeout)
//	(no row)  --writer gives up on a poison record-->  failed (invalid)
//
// Nothing updates a row once written. The states a ticket goes through in
// Redis before it gets here, and who moves them, are in internal/store's
// package doc.

// ticketCols are the columns of Ticket.
const ticketCols = "ticket, kind, user_id, ref_id, status, reason, order_no, created_at"

// NewTicket is one decision to record.
type NewTicket struct {
	Ticket    string
	Kind      string // order | gift
	UserID    int64
	RefID     int64 // the event of an order, the room of a gift (0: unknown)
	Succeeded bool
	Reason    string // failed only
	OrderNo   string // succeeded orders only
	CreatedAt time.Time
	IdemKey   string // gifts: the Idempotency-Key the ticket answered, "" for none
	Balance   int64  // gifts with a key: the balance that answer carried
}

// decidedChunk bounds the IN list of one tickets read.
const decidedChunk = 1000

// DecidedTickets returns the decided ones among tickets, by ticket, read
// decidedChunk at a time.
func DecidedTickets(ctx context.Context, q sqlx.QueryerContext, tickets []string) (map[string]Ticket, error) {
	out := make(map[string]Ticket, len(tickets))
	for len(tickets) > 0 {
		n := min(len(tickets), decidedChunk)
		query, args, err := sqlx.In("SELECT "+ticketCols+" FROM tickets WHERE ticket IN (?)", tickets[:n])
		if err != nil {
			return nil, err
		}
		var rows []Ticket
		if err := sqlx.SelectContext(ctx, q, &rows, query, args...); err != nil {
			return nil, fmt.Errorf("cannot read tickets: %w", err)
		}
		for _, t := range rows {
			out[t.Ticket] = t
		}
		tickets = tickets[n:]
	}
	return out, nil
}

// Ticket returns a decided ticket, ErrNotFound for one not decided.
func (s MySQL) Ticket(ctx context.Context, ticket string) (Ticket, error) {
	return decidedTicket(ctx, s.DB, ticket)
}

func decidedTicket(ctx context.Context, q sqlx.QueryerContext, ticket string) (Ticket, error) {
	var t Ticket
	err := sqlx.GetContext(ctx, q, &t, "SELECT "+ticketCols+" FROM tickets WHERE ticket = ?", ticket)
	if errors.Is(err, sql.ErrNoRows) {
		return t, ErrNotFound
	}
	return t, err
}

// InsertTickets records new decisions. A ticket decided before makes it
// fail with a duplicate-key error: callers read the decisions under the
// lock that serialises them first, so that means a bug, not a race.
func InsertTickets(ctx context.Context, tx *sqlx.Tx, ts []NewTicket) error {
	if len(ts) == 0 {
		return nil
	}
	vals := make([]any, 0, 10*len(ts))
	for _, t := range ts {
		var bal any
		if t.IdemKey != "" {
			bal = t.Balance
		}
		vals = append(vals, t.Ticket, t.Kind, t.UserID, t.RefID, status(t.Succeeded), nullIfEmpty(t.Reason), nullIfEmpty(t.OrderNo),
			t.CreatedAt.UTC(), nullIfEmpty(t.IdemKey), bal)
	}
	if _, err := insertRows(ctx, tx, "INSERT INTO tickets (ticket, kind, user_id, ref_id, status, reason, order_no, created_at, idem_key, balance_after)",
		10, len(ts), "", vals); err != nil {
		return fmt.Errorf("cannot record tickets: %w", err)
	}
	return nil
}

// nullIfEmpty stores "" as NULL.
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// DecideFailed records a failure unless the ticket is decided already, and
// returns the ticket's decision: this one (won) or the earlier one.
func DecideFailed(ctx context.Context, d *sqlx.DB, t NewTicket) (dec Ticket, won bool, err error) {
	if y := t.CreatedAt.Year(); y < 1971 || y > 9999 {
		t.CreatedAt = time.Now() // a corrupt record's time must not fail its failure too
	}
	res, err := d.ExecContext(ctx, `INSERT IGNORE INTO tickets (ticket, kind, user_id, ref_id, status, reason, created_at)
		VALUES (?, ?, ?, ?, 'failed', ?, ?)`, t.Ticket, t.Kind, t.UserID, t.RefID, t.Reason, t.CreatedAt.UTC())
	if err != nil {
		return Ticket{}, false, fmt.Errorf("cannot fail ticket %s: %w", t.Ticket, err)
	}
	n, _ := res.RowsAffected()
	dec, err = decidedTicket(ctx, d, t.Ticket)
	return dec, n == 1, err
}

func status(succeeded bool) string {
	if succeeded {
		return "succeeded"
	}
	return "failed"
}

// GiftIdem is a gift ticket's Idempotency-Key and the answer it got.
type GiftIdem struct {
	IdemKey   string    `db:"idem_key"`
	Ticket    string    `db:"ticket"`
	Balance   int64     `db:"balance_after"`
	CreatedAt time.Time `db:"created_at"`
}
