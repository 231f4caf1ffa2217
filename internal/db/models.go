package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// Event is a flash sale.
type Event struct {
	ID         int64     `db:"id"`
	Name       string    `db:"name"`
	Price      int64     `db:"price"`
	StockTotal int64     `db:"stock_total"`
	Stock      int64     `db:"stock"` // units left in MySQL
	StartsAt   time.Time `db:"starts_at"`
	EndsAt     time.Time `db:"ends_at"`
}

// Order statuses.
const (
	OrderUnpaid    = "unpaid"
	OrderPaid      = "paid"
	OrderCancelled = "cancelled"
	OrderExpired   = "expired"
)

// Order is one unit bought by one user.
type Order struct {
	ID        int64      `db:"id"`
	OrderNo   string     `db:"order_no"`
	Ticket    string     `db:"ticket"`
	EventID   int64      `db:"event_id"`
	UserID    int64      `db:"user_id"`
	Price     int64      `db:"price"`
	Status    string     `db:"status"`
	CreatedAt time.Time  `db:"created_at"`
	ExpiresAt time.Time  `db:"expires_at"`
	PaidAt    *time.Time `db:"paid_at"`
}

// Ticket is the final outcome of a ticket.
type Ticket struct {
	Ticket    string         `db:"ticket"`
	Kind      string         `db:"kind"`
	UserID    int64          `db:"user_id"`
	RefID     int64          `db:"ref_id"`
	Status    string         `db:"status"`
	Reason    sql.NullString `db:"reason"`
	OrderNo   sql.NullString `db:"order_no"`
	CreatedAt time.Time      `db:"created_at"`
}

const eventCols = "id, name, price, stock_total, stock, starts_at, ends_at"
const orderCols = "id, order_no, ticket, event_id, user_id, price, status, created_at, expires_at, paid_at"

// MySQL is flashgate's MySQL. Its methods and this package's functions are
// where the SQL lives.
type MySQL struct{ DB *sqlx.DB }

// EventsEndingAfter returns the events that end after t, soonest start first.
func (s MySQL) EventsEndingAfter(ctx context.Context, t time.Time) ([]Event, error) {
	var evs []Event
	err := s.DB.SelectContext(ctx, &evs, "SELECT "+eventCols+" FROM events WHERE ends_at > ? ORDER BY starts_at, id", t)
	return evs, err
}

// Event returns one event.
func (s MySQL) Event(ctx context.Context, id int64) (Event, error) {
	var e Event
	err := s.DB.GetContext(ctx, &e, "SELECT "+eventCols+" FROM events WHERE id = ?", id)
	if errors.Is(err, sql.ErrNoRows) {
		return e, ErrNotFound
	}
	return e, err
}

// CreateEvent inserts an event with all its stock unsold.
func (s MySQL) CreateEvent(ctx context.Context, name string, price, stock int64, starts, ends time.Time) (Event, error) {
	res, err := s.DB.ExecContext(ctx, "INSERT INTO events (name, price, stock_total, stock, starts_at, ends_at) VALUES (?, ?, ?, ?, ?, ?)",
		name, price, stock, stock, starts.UTC(), ends.UTC())
	if err != nil {
		return Event{}, fmt.Errorf("cannot create event: %w", err)
	}
	id, _ := res.LastInsertId()
	return s.Event(ctx, id)
}

// AddStock adds delta units to an event in MySQL.
func (s MySQL) AddStock(ctx context.Context, id, delta int64) (Event, error) {
	res, err := s.DB.ExecContext(ctx, "UPDATE events SET stock = stock + ?, stock_total = stock_total + ? WHERE id = ?", delta, delta, id)
	if err != nil {
		return Event{}, fmt.Errorf("cannot add stock: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Event{}, ErrNotFound
	}
	return s.Event(ctx, id)
}

// ActiveBuyers returns user id → ticket of the orders that hold a unit of the event.
func (s MySQL) ActiveBuyers(ctx context.Context, eventID int64) (map[int64]string, error) {
	rows, err := s.DB.QueryContext(ctx, "SELECT user_id, ticket FROM orders WHERE event_id = ? AND active = 1", eventID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := map[int64]string{}
	for rows.Next() {
		var uid int64
		var t string
		if err := rows.Scan(&uid, &t); err != nil {
			return nil, err
		}
		m[uid] = t
	}
	return m, rows.Err()
}

// OrdersOfUser returns a user's orders, newest first.
func (s MySQL) OrdersOfUser(ctx context.Context, userID int64, limit int) ([]Order, error) {
	var os []Order
	err := s.DB.SelectContext(ctx, &os, "SELECT "+orderCols+" FROM orders WHERE user_id = ? ORDER BY id DESC LIMIT ?", userID, limit)
	return os, err
}

// Order returns one order by its number.
func (s MySQL) Order(ctx context.Context, orderNo string) (Order, error) {
	var o Order
	err := s.DB.GetContext(ctx, &o, "SELECT "+orderCols+" FROM orders WHERE order_no = ?", orderNo)
	if errors.Is(err, sql.ErrNoRows) {
		return o, ErrNotFound
	}
	return o, err
}

// PayOrder marks an unpaid, unexpired order of the user paid. Exactly one of
// PayOrder and ReleaseOrder wins for an order: both update only while it is unpaid.
func (s MySQL) PayOrder(ctx context.Context, orderNo string, userID int64, txn string) (Order, error) {
	res, err := s.DB.ExecContext(ctx, `UPDATE orders SET status = 'paid', paid_at = NOW(3), pay_txn = ?
		WHERE order_no = ? AND user_id = ? AND status = 'unpaid' AND expires_at > NOW(3)`, txn, orderNo, userID)
	if err != nil {
		return Order{}, fmt.Errorf("cannot pay order: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Order{}, ErrInvalidState
	}
	return s.Order(ctx, orderNo)
}

// ReleaseOrder moves an unpaid order to status (cancelled or expired) and puts
// its unit back in the event's MySQL stock, in one transaction. The order
// stays marked unreleased until its unit is back in Redis (MarkReleased). It returns
// ErrInvalidState when the order was no longer unpaid (someone else won).
func (s MySQL) ReleaseOrder(ctx context.Context, orderID int64, status string) error {
	return InTx(ctx, s.DB, nil, func(tx *sqlx.Tx) error {
		var o Order
		if err := tx.GetContext(ctx, &o, "SELECT "+orderCols+" FROM orders WHERE id = ? FOR UPDATE", orderID); err != nil {
			return err
		}
		if o.Status != OrderUnpaid {
			return ErrInvalidState
		}
		if _, err := tx.ExecContext(ctx, "UPDATE orders SET status = ?, active = NULL, redis_released = 0 WHERE id = ?", status, orderID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "UPDATE events SET stock = stock + 1 WHERE id = ?", o.EventID)
		return err
	})
}

// DueOrders returns unpaid orders whose time to pay is over.
func (s MySQL) DueOrders(ctx context.Context, limit int) ([]Order, error) {
	var os []Order
	err := s.DB.SelectContext(ctx, &os, "SELECT "+orderCols+" FROM orders WHERE status = 'unpaid' AND expires_at <= NOW(3) ORDER BY expires_at LIMIT ?", limit)
	return os, err
}
