package db

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/jmoiron/sqlx"
)

// The recharge repair's statements. The payment notify credits a recharge
// in MySQL, then adds its coins to the Redis hot balance and marks the pay
// order hot-credited (hot_credited_at). A paid order left unmarked is one
// whose coins may be missing from the hot balance; the worker's repair
// sweep finds such orders (UnmarkedRecharges), brings the hot balance up to
// date and marks them (MarkHotCredited).

// UnmarkedRecharge is a paid recharge not marked hot-credited.
type UnmarkedRecharge struct {
	OrderID string `db:"order_id"`
	UserID  int64  `db:"user_id"`
	Coins   int64  `db:"coins"`
	// Recent is true when the order was paid less than creditWindow ago, so
	// that crediting it once by reference is still safe.
	Recent bool `db:"recent"`
}

// UnmarkedRecharges returns up to limit paid recharges not marked
// hot-credited, oldest payment first. Orders paid less than grace ago are
// left to their notify, which may still be crediting Redis.
func (s MySQL) UnmarkedRecharges(ctx context.Context, grace, creditWindow time.Duration, limit int) ([]UnmarkedRecharge, error) {
	var orders []UnmarkedRecharge
	err := s.DB.SelectContext(ctx, &orders, `SELECT order_id, user_id, coins, paid_at > NOW(3) - INTERVAL ? SECOND AS recent
		FROM pay_orders WHERE status = 'paid' AND hot_credited_at IS NULL AND paid_at < NOW(3) - INTERVAL ? SECOND
		ORDER BY paid_at LIMIT ?`, int(creditWindow/time.Second), int(grace/time.Second), limit)
	return orders, err
}

// MarkHotCredited records that a pay order's coins are in the Redis hot
// balance, so that the repair sweep leaves it alone. An order marked before
// keeps its first time.
func (s MySQL) MarkHotCredited(ctx context.Context, orderID string) error {
	_, err := s.DB.ExecContext(ctx, "UPDATE pay_orders SET hot_credited_at = NOW(3) WHERE order_id = ? AND hot_credited_at IS NULL", orderID)
	return err
}

// PayProduct is a coin pack on sale; its JSON is the API's.
type PayProduct struct {
	ID    int64  `db:"id" json:"id"`
	Name  string `db:"name" json:"name"`
	Price int64  `db:"price" json:"price"`
	Coins int64  `db:"coins" json:"coins"`
}

// PayProducts returns the active products, cheapest first; none is an
// empty list, not nil.
func (s MySQL) PayProducts(ctx context.Context) ([]PayProduct, error) {
	list := []PayProduct{}
	if err := s.DB.SelectContext(ctx, &list, "SELECT id, name, price, coins FROM pay_products WHERE active = 1 ORDER BY price, id"); err != nil {
		return nil, err
	}
	return list, nil
}

// PayProduct returns an active product, or ErrNotFound.
func (s MySQL) PayProduct(ctx context.Context, id int64) (PayProduct, error) {
	var p PayProduct
	err := s.DB.GetContext(ctx, &p, "SELECT id, name, price, coins FROM pay_products WHERE id = ? AND active = 1", id)
	if errors.Is(err, sql.ErrNoRows) {
		return p, ErrNotFound
	}
	return p, err
}

// RechargeOrder is a pay_orders row: a user buying a coin pack.
type RechargeOrder struct {
	OrderID     string         `db:"order_id"`
	UserID      int64          `db:"user_id"`
	ProductID   int64          `db:"product_id"`
	Amount      int64          `db:"amount"`
	Coins       int64          `db:"coins"`
	Status      string         `db:"status"` // paying, paid
	ProviderTxn sql.NullString `db:"provider_txn"`
	CreatedAt   time.Time      `db:"created_at"`
	PaidAt      *time.Time     `db:"paid_at"`
}

const rechargeOrderCols = "order_id, user_id, product_id, amount, coins, status, provider_txn, created_at, paid_at"

// CreateRechargeOrder creates a paying order for the product. idemKey is a
// unique column rather than a Redis record, so two concurrent requests
// with one key cannot both create an order: the second gets a duplicate
// key error (IsDuplicate). An empty idemKey is none.
func (s MySQL) CreateRechargeOrder(ctx context.Context, orderID string, userID int64, p PayProduct, idemKey string) error {
	_, err := s.DB.ExecContext(ctx, `INSERT INTO pay_orders (order_id, user_id, product_id, amount, coins, idem_key)
		VALUES (?, ?, ?, ?, ?, NULLIF(?, ''))`, orderID, userID, p.ID, p.Price, p.Coins, idemKey)
	return err
}

// RechargeOrderByIdem returns the user's order created with the
// Idempotency-Key.
func (s MySQL) RechargeOrderByIdem(ctx context.Context, userID int64, idemKey string) (RechargeOrder, error) {
	var o RechargeOrder
	err := s.DB.GetContext(ctx, &o, "SELECT "+rechargeOrderCols+" FROM pay_orders WHERE user_id = ? AND idem_key = ?", userID, idemKey)
	return o, err
}

// RechargeOrder returns a pay order, or ErrNotFound.
func (s MySQL) RechargeOrder(ctx context.Context, orderID string) (RechargeOrder, error) {
	var o RechargeOrder
	err := s.DB.GetContext(ctx, &o, "SELECT "+rechargeOrderCols+" FROM pay_orders WHERE order_id = ?", orderID)
	if errors.Is(err, sql.ErrNoRows) {
		return o, ErrNotFound
	}
	return o, err
}

// ErrProviderTxnUsed means a payment names a provider transaction that
// paid another order.
var ErrProviderTxnUsed = errors.New("provider transaction already used")

// PayRechargeOrder turns a paying order paid by the provider's transaction
// and runs credit (which credits the coins: package wallet, which imports
// this one) in the same transaction, so the coins come exactly when the
// order is paid. It reports false, changing nothing, when the order was
// paid before. credit may run more than once, as InTx repeats a
// transaction that lost a lock conflict.
func (s MySQL) PayRechargeOrder(ctx context.Context, orderID, txn string, credit func(tx *sqlx.Tx) error) (won bool, err error) {
	err = InTx(ctx, s.DB, nil, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE pay_orders SET status = 'paid', paid_at = NOW(3), provider_txn = ? WHERE order_id = ? AND status = 'paying'", txn, orderID)
		if IsDuplicate(err) {
			return ErrProviderTxnUsed
		}
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			won = false
			return errNothingToDo
		}
		if err := credit(tx); err != nil {
			return err
		}
		won = true
		return nil
	})
	if errors.Is(err, errNothingToDo) {
		return false, nil
	}
	return won, err
}

// errNothingToDo rolls back a transaction that found nothing to change.
var errNothingToDo = errors.New("nothing to do")
