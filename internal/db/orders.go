package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// The order writer's statements. A batch of one event runs in one
// transaction that first locks the event's row (LockEvent): every change of
// an event's stock takes that lock, so the decisions made under it hold.

// LockEvent reads an event and locks its row until the transaction ends.
// found is false when there is no such event.
func LockEvent(ctx context.Context, tx *sqlx.Tx, id int64) (ev Event, found bool, err error) {
	err = tx.GetContext(ctx, &ev, "SELECT "+eventCols+" FROM events WHERE id = ? FOR UPDATE", id)
	if errors.Is(err, sql.ErrNoRows) {
		return ev, false, nil
	}
	if err != nil {
		return ev, false, fmt.Errorf("cannot lock event %d: %w", id, err)
	}
	return ev, true, nil
}

// ActiveHolders returns, among users, those holding a unit of the event
// (an unpaid or paid order), with that order's ticket.
func ActiveHolders(ctx context.Context, q sqlx.QueryerContext, eventID int64, users []int64) (map[int64]string, error) {
	out := make(map[int64]string, len(users))
	if len(users) == 0 {
		return out, nil
	}
	query, args, err := sqlx.In("SELECT user_id, ticket FROM orders WHERE event_id = ? AND active = 1 AND user_id IN (?)", eventID, users)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		UserID int64  `db:"user_id"`
		Ticket string `db:"ticket"`
	}
	if err := sqlx.SelectContext(ctx, q, &rows, query, args...); err != nil {
		return nil, fmt.Errorf("cannot read buyers: %w", err)
	}
	for _, r := range rows {
		out[r.UserID] = r.Ticket
	}
	return out, nil
}

// NewOrder is an order to insert.
type NewOrder struct {
	OrderNo string
	Ticket  string
	UserID  int64
}

// InsertOrders inserts unpaid orders of one event and takes their units
// from its stock, refusing (and so failing the transaction) rather than
// letting the stock go below zero.
func InsertOrders(ctx context.Context, tx *sqlx.Tx, eventID, price int64, ttl time.Duration, orders []NewOrder) error {
	if len(orders) == 0 {
		return nil
	}
	args := make([]any, 0, 6*len(orders))
	for _, o := range orders {
		args = append(args, o.OrderNo, o.Ticket, eventID, o.UserID, price, ttl.Microseconds())
	}
	// Not insertRows: each row computes its times in MySQL.
	row := "(?, ?, ?, ?, ?, 'unpaid', 1, NOW(3), NOW(3) + INTERVAL ? MICROSECOND)"
	q := "INSERT INTO orders (order_no, ticket, event_id, user_id, price, status, active, created_at, expires_at) VALUES " +
		strings.TrimSuffix(strings.Repeat(row+",", len(orders)), ",")
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("cannot insert orders: %w", err)
	}
	n := len(orders)
	res, err := tx.ExecContext(ctx, "UPDATE events SET stock = stock - ? WHERE id = ? AND stock >= ?", n, eventID, n)
	if err != nil {
		return fmt.Errorf("cannot take stock: %w", err)
	}
	if k, _ := res.RowsAffected(); k != 1 {
		return fmt.Errorf("stock guard refused %d units of event %d", n, eventID)
	}
	return nil
}

// UnreleasedOrders returns cancelled or expired orders whose unit is back
// in MySQL's stock but not yet in Redis's.
func (s MySQL) UnreleasedOrders(ctx context.Context, limit int) ([]Order, error) {
	var os []Order
	err := s.DB.SelectContext(ctx, &os, "SELECT "+orderCols+" FROM orders WHERE redis_released = 0 ORDER BY id LIMIT ?", limit)
	return os, err
}

// MarkReleased records that the orders' units are back in Redis too.
func (s MySQL) MarkReleased(ctx context.Context, ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	q, args, err := sqlx.In("UPDATE orders SET redis_released = 1 WHERE id IN (?)", ids)
	if err != nil {
		return err
	}
	_, err = s.DB.ExecContext(ctx, q, args...)
	return err
}

// SyncEventStock calls sync with the event's MySQL stock and its orders
// whose unit MySQL released but Redis may still hold, inside a transaction
// that holds the event's row lock, so no order commits, expires or adds
// stock while sync runs. It reads in READ COMMITTED, so that it sees what
// the lock's previous holder committed; sync may read more through tx.
func (s MySQL) SyncEventStock(ctx context.Context, eventID int64, sync func(tx *sqlx.Tx, stock int64, released []Order) error) error {
	return InTx(ctx, s.DB, &sql.TxOptions{Isolation: sql.LevelReadCommitted}, func(tx *sqlx.Tx) error {
		ev, found, err := LockEvent(ctx, tx, eventID)
		if err != nil || !found {
			return err
		}
		var released []Order
		if err := tx.SelectContext(ctx, &released,
			"SELECT "+orderCols+" FROM orders WHERE redis_released = 0 AND event_id = ?", eventID); err != nil {
			return err
		}
		return sync(tx, ev.Stock, released)
	})
}
