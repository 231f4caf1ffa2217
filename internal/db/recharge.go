package db

import (
	"context"
	"time"
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
