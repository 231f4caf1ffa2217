package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// keyLife is how long after an event's end its Redis keys are kept, and how
// long an undone gift hold's "a:" entry is.
const keyLife = 24 * time.Hour

// WarmEvents loads into Redis every event that starts within WarmAhead and
// has not ended, unless it is there already, and then syncs its stock.
//
// A live event that Redis lost (a flush, a restart without persistence) is
// warmed again only once no order of it can still be in flight: after a
// quiet period as long as a gateway may wait for Kafka (no reservation can
// be made meanwhile: the event is not in Redis), and once the order writers
// have caught up with the orders topic. MySQL's stock then accounts for
// every accepted order, so Redis never offers a unit that an order in
// flight already took. Until then its buyers get 503.
func (w *Worker) WarmEvents(ctx context.Context) error {
	now := time.Now()
	evs, err := w.mysql.EventsEndingAfter(ctx, now)
	if err != nil {
		return err
	}
	var ids []int64
	for _, e := range evs {
		if !e.StartsAt.After(now.Add(w.cfg.WarmAhead)) {
			ids = append(ids, e.ID)
		}
	}
	warm, err := w.redis.Stocks(ctx, ids)
	if err != nil {
		return err
	}
	quiet := w.cfg.ProduceTimeout + 2*w.cfg.RedisTimeout
	for _, e := range evs {
		if _, ok := warm[e.ID]; ok || e.StartsAt.After(now.Add(w.cfg.WarmAhead)) {
			continue
		}
		if e.StartsAt.Before(now) {
			w.warmMu.Lock()
			since, seen := w.coldSince[e.ID]
			if !seen {
				since = now
				w.coldSince[e.ID] = now
			}
			w.warmMu.Unlock()
			if now.Sub(since) < quiet {
				continue
			}
			caught, err := w.ordersCaughtUp(ctx)
			if err != nil {
				return err
			}
			if !caught {
				w.log.Info("live event not in Redis; waiting for the order writers to catch up before warming it", "event", e.ID)
				continue
			}
		}
		if err := w.warm(ctx, e.ID); err != nil {
			return err
		}
		w.warmMu.Lock()
		delete(w.coldSince, e.ID)
		w.warmMu.Unlock()
	}
	return nil
}

func (w *Worker) warm(ctx context.Context, eventID int64) error {
	buyers, err := w.mysql.ActiveBuyers(ctx, eventID)
	if err != nil {
		return err
	}
	// Read the stock after the buyers: an order committed in between makes
	// Redis show one unit less, never one more; the sync below corrects it.
	e, err := w.mysql.Event(ctx, eventID)
	if err != nil {
		return err
	}
	did, err := w.redis.Warm(ctx, eventID, e.Stock, e.EndsAt.Add(keyLife), buyers)
	if err != nil {
		return err
	}
	if did {
		w.log.Info("event warmed into Redis", "event", eventID, "stock", e.Stock, "buyers", len(buyers))
	}
	return w.syncStock(ctx, eventID)
}

// ordersCaughtUp reports whether the order writers' group has committed
// every record of the orders topic.
func (w *Worker) ordersCaughtUp(ctx context.Context) (bool, error) {
	lags, err := kadm.NewClient(w.kafka).Lag(ctx, GroupName(w.cfg.Config))
	if err != nil {
		return false, fmt.Errorf("cannot read the order writers' lag: %w", err)
	}
	l, ok := lags[GroupName(w.cfg.Config)]
	if !ok {
		return false, nil
	}
	if err := l.Error(); err != nil {
		return false, fmt.Errorf("cannot read the order writers' lag: %w", err)
	}
	for _, p := range l.Lag[w.cfg.OrdersTopic()] {
		if p.Err != nil || p.Lag != 0 {
			// No commit yet counts as caught up only for an empty partition.
			if p.Commit.At < 0 && p.End.Offset == p.Start.Offset {
				continue
			}
			return false, nil
		}
	}
	return true, nil
}
