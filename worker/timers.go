package worker

import (
	"context"
	"errors"
	"time"

	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/store"
)

// keyLife is how long after an event's end its Redis keys are kept.
const keyLife = 24 * time.Hour

// WarmEvents loads into Redis every event that starts within WarmAhead and
// has not ended, unless it is there already — also after Redis lost it.
func (w *Worker) WarmEvents(ctx context.Context) error {
	now := time.Now()
	evs, err := w.db.EventsEndingAfter(ctx, now)
	if err != nil {
		return err
	}
	var ids []int64
	byID := map[int64]db.Event{}
	for _, e := range evs {
		if !e.StartsAt.After(now.Add(w.cfg.WarmAhead)) {
			ids = append(ids, e.ID)
			byID[e.ID] = e
		}
	}
	warm, err := w.redis.Stocks(ctx, ids)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if _, ok := warm[id]; ok {
			continue
		}
		buyers, err := w.db.ActiveBuyers(ctx, id)
		if err != nil {
			return err
		}
		// Read the stock after the buyers: an order committed in between
		// makes Redis show one unit less, never one more.
		e, err := w.db.Event(ctx, id)
		if err != nil {
			return err
		}
		did, err := w.redis.Warm(ctx, id, e.Stock, e.EndsAt.Add(keyLife), buyers)
		if err != nil {
			return err
		}
		if did {
			w.log.Info("event warmed into Redis", "event", id, "stock", e.Stock, "buyers", len(buyers))
		}
	}
	return nil
}

// ExpireOrders expires unpaid orders past their time and puts their units
// back on sale, in MySQL first and then in Redis.
func (w *Worker) ExpireOrders(ctx context.Context) error {
	due, err := w.db.DueOrders(ctx, 500)
	if err != nil {
		return err
	}
	for _, o := range due {
		err := w.db.ReleaseOrder(ctx, o.ID, db.OrderExpired)
		if errors.Is(err, db.ErrInvalidState) {
			continue // paid or cancelled in the meantime: that one won
		}
		if err != nil {
			return err
		}
		if err := w.redis.Release(ctx, o.EventID, o.UserID, o.Ticket); err != nil {
			w.log.Warn("expired order's unit not returned to Redis", "order", o.OrderNo, "err", err)
		}
		w.stockMu.Lock()
		w.stockDue[o.EventID] = true
		w.stockMu.Unlock()
		w.log.Info("order expired", "order", o.OrderNo, "event", o.EventID, "user", o.UserID)
	}
	return nil
}

// Reconcile settles reservations that have been pending longer than
// PendingTimeout: decided ones get their outcome, undecided ones (the gateway
// died between Lua and produce, or the order was lost) fail with "timeout"
// and give their unit back. The tickets table decides races with the worker.
func (w *Worker) Reconcile(ctx context.Context) error {
	now := time.Now()
	evs, err := w.db.EventsEndingAfter(ctx, now.Add(-keyLife))
	if err != nil {
		return err
	}
	for _, e := range evs {
		stale, err := w.redis.PendingOlderThan(ctx, e.ID, now.Add(-w.cfg.PendingTimeout), 500)
		if err != nil {
			return err
		}
		var outs []outcome
		for _, t := range stale {
			st, err := w.redis.Ticket(ctx, e.ID, t)
			if errors.Is(err, store.ErrNoTicket) {
				w.log.Warn("pending reservation without a ticket record", "ticket", t)
				continue
			}
			if err != nil {
				return err
			}
			out := outcome{Outcome: store.Outcome{EventID: e.ID, UserID: st.UserID, Ticket: t}}
			won, err := w.decideFailed(ctx, t, st.UserID, e.ID, ReasonTimeout, st.CreatedAt.UnixMilli())
			if err != nil {
				return err
			}
			if won {
				out.Reason, out.ReturnUnit = ReasonTimeout, true
				w.log.Warn("reservation timed out without an order; released", "ticket", t, "user", st.UserID)
			} else {
				d, err := w.db.Ticket(ctx, t)
				if err != nil {
					return err
				}
				out.Succeeded, out.Reason, out.OrderNo, out.replay = d.Status == "succeeded", d.Reason.String, d.OrderNo.String, true
			}
			outs = append(outs, out)
		}
		if len(outs) > 0 {
			if err := w.publish(ctx, e.ID, outs); err != nil {
				return err
			}
		}
	}
	return nil
}
