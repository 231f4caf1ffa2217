package worker

import (
	"context"
	"errors"

	"github.com/flashgate/flashgate/internal/db"
)

// ExpireOrders expires unpaid orders past their time and puts their units
// back on sale, in MySQL first and then in Redis.
func (w *Worker) ExpireOrders(ctx context.Context) error {
	due, err := w.mysql.DueOrders(ctx, 500)
	if err != nil {
		return err
	}
	for _, o := range due {
		err := w.mysql.ReleaseOrder(ctx, o.ID, db.OrderExpired)
		if errors.Is(err, db.ErrInvalidState) {
			continue // paid or cancelled in the meantime: that one won
		}
		if err != nil {
			return err
		}
		w.log.Info("order expired", "order", o.OrderNo, "event", o.EventID, "user", o.UserID)
	}
	return w.ReleaseInRedis(ctx)
}

// ReleaseInRedis gives back in Redis the units of cancelled and expired
// orders that MySQL already has back: these expiries, and any release
// whose Redis step failed before (a Redis blip, a crash between the two,
// a cancel whose gateway could not reach Redis). Release is idempotent, so
// an order is released until MySQL records that it was.
func (w *Worker) ReleaseInRedis(ctx context.Context) error {
	os, err := w.mysql.UnreleasedOrders(ctx, 500)
	if err != nil {
		return err
	}
	var done []int64
	for _, o := range os {
		if err := w.redis.Release(ctx, o.EventID, o.UserID, o.Ticket); err != nil {
			w.log.Warn("unit not returned to Redis yet; will retry", "order", o.OrderNo, "err", err)
			break
		}
		done = append(done, o.ID)
		w.stockMu.Lock()
		w.stockDue[o.EventID] = true
		w.stockMu.Unlock()
	}
	return w.mysql.MarkReleased(ctx, done...)
}
