package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/obs"
	"github.com/flashgate/flashgate/internal/store"
)

// The reconcilers. A reservation or gift hold that stays pending longer than
// FLASHGATE_PENDING_TIMEOUT (by Redis's clock, which stamped it) either
// never reached Kafka (its gateway died between the Lua call and the
// produce) or is waiting in a lagging partition; from here the two look the
// same. So a reconciler never decides it: it appends an abort marker with
// the record's key, which puts it on the record's partition, and the
// writer decides whichever comes first. A record the broker acknowledged is
// before its marker, so it is decided on its merits however late; a record
// that never got there is failed by the marker ("timeout") and its unit or
// coins come back. Tickets the writer already claimed are left to it, and
// decided tickets whose Redis settle was lost are settled as MySQL says.

var stockCorrections = promauto.NewCounter(prometheus.CounterOpts{
	Namespace: obs.Namespace, Subsystem: "worker", Name: "stock_corrections_total",
	Help: "Times the stock reconciler found an event's Redis stock different from MySQL's minus the units in flight, and set it.",
})

// reconcileBatch is the most reservations of one event looked at per run.
const reconcileBatch = 500

// Reconcile looks at every event's reservations that have waited longer
// than PendingTimeout, then makes every warm event's Redis stock agree with
// MySQL (SyncStocks).
func (w *Worker) Reconcile(ctx context.Context) error {
	now, err := w.redis.Now(ctx)
	if err != nil {
		return err
	}
	evs, err := w.mysql.EventsEndingAfter(ctx, now.Add(-keyLife))
	if err != nil {
		return err
	}
	ids := make([]int64, len(evs))
	for i, e := range evs {
		ids[i] = e.ID
		if err := w.reconcileEvent(ctx, e.ID, now); err != nil {
			return err
		}
	}
	oldest, ok, err := w.redis.OldestReservation(ctx, ids)
	if err != nil {
		return err
	}
	orderMetrics.setOldest(now, oldest, ok)
	return w.SyncStocks(ctx)
}

func (w *Worker) reconcileEvent(ctx context.Context, eventID int64, now time.Time) error {
	due, err := w.redis.PendingDue(ctx, eventID, now.Add(-w.cfg.PendingTimeout), reconcileBatch)
	if err != nil || len(due) == 0 {
		return err
	}
	states, err := w.redis.Tickets(ctx, eventID, due)
	if err != nil {
		return err
	}
	decided, err := db.DecidedTickets(ctx, w.mysql.DB, due)
	if err != nil {
		return err
	}
	var users []int64
	for _, d := range decided {
		users = append(users, d.UserID)
	}
	holders, err := db.ActiveHolders(ctx, w.mysql.DB, eventID, users)
	if err != nil {
		return err
	}
	var settled []outcome
	var marked, later []string
	var markers []*kgo.Record
	for _, t := range due {
		st, known := states[t]
		if d, ok := decided[t]; ok {
			// Decided, but the settle was lost: settle as MySQL says.
			o := outcome{Outcome: store.Outcome{EventID: eventID, UserID: d.UserID, Ticket: t, Succeeded: d.Status == "succeeded",
				Reason: d.Reason.String, OrderNo: d.OrderNo.String}, replay: true}
			if !o.Succeeded {
				o.ReturnUnit, o.HeldTicket = returnsUnit(o.Reason), holders[d.UserID]
			}
			settled = append(settled, o)
			continue
		}
		switch {
		case known && (st.Status == "committing" || st.Marked):
			// A writer has it, or its marker is in Kafka: look again later
			// in case the writer's settle is lost.
			later = append(later, t)
		default:
			// Pending, or a hash Redis lost (then the user is unknown and
			// the marker carries 0).
			var uid, at int64
			if known {
				uid, at = st.UserID, st.CreatedAt.UnixMilli()
			}
			markers = append(markers, bus.OrderAbortRecord(w.cfg.OrdersTopic(), t, eventID, uid, at))
			marked = append(marked, t)
		}
	}
	if len(markers) > 0 {
		if err := w.kafka.ProduceSync(ctx, markers...).FirstErr(); err != nil {
			return fmt.Errorf("cannot send abort markers: %w", err)
		}
		orderMetrics.abortMarkers.Add(float64(len(markers)))
		w.log.Warn("reservations waited too long; abort markers sent behind them", "event", eventID, "tickets", len(markers))
	}
	next := now.Add(w.cfg.PendingTimeout)
	if err := w.redis.MarkPending(ctx, eventID, marked, now, next); err != nil {
		return err
	}
	if err := w.redis.LookAgain(ctx, eventID, later, next); err != nil {
		return err
	}
	if len(settled) > 0 {
		return w.publish(ctx, eventID, settled)
	}
	return nil
}

// SyncStocks sets each warm, unfinished event's Redis stock to MySQL's
// stock, minus the units MySQL released that Redis has not taken back yet,
// minus the reservations pending in Redis. It runs under the event's MySQL
// row lock, so Redis never counts a unit that does not exist; it may count
// one too few for a moment (an order committed but not yet settled), which
// the next run corrects.
func (w *Worker) SyncStocks(ctx context.Context) error {
	evs, err := w.mysql.EventsEndingAfter(ctx, time.Now())
	if err != nil {
		return err
	}
	for _, e := range evs {
		if err := w.syncStock(ctx, e.ID); err != nil {
			return err
		}
	}
	return nil
}

func (w *Worker) syncStock(ctx context.Context, eventID int64) error {
	return w.mysql.SyncEventStock(ctx, eventID, func(tx *sqlx.Tx, stock int64, released []db.Order) error {
		pending, err := w.redis.AllPending(ctx, eventID)
		if err != nil {
			return err
		}
		// Pending reservations MySQL decided already, waiting for their
		// settle: a success is counted in MySQL's stock, and a failure
		// that returns no unit never took one there.
		decided, err := db.DecidedTickets(ctx, tx, pending)
		if err != nil {
			return err
		}
		var settled []string
		for t, d := range decided {
			if d.Status == "succeeded" || !returnsUnit(d.Reason.String) {
				settled = append(settled, t)
			}
		}
		rel := make([]store.Released, len(released))
		for i, o := range released {
			rel[i] = store.Released{UserID: o.UserID, Ticket: o.Ticket}
		}
		before, after, warm, err := w.redis.SyncStock(ctx, eventID, stock, rel, settled)
		if err != nil || !warm || before == after {
			return err
		}
		stockCorrections.Inc()
		w.log.Warn("Redis stock corrected from MySQL", "event", eventID, "was", before, "now", after)
		w.stockMu.Lock()
		w.stockDue[eventID] = true
		w.stockMu.Unlock()
		return nil
	})
}

// ReconcileGiftHolds does for gift holds what Reconcile does for
// reservations: a pending hold older than PendingTimeout gets an abort
// marker on its gift's partition (keyed by sender), a hold whose gift was
// decided but not settled is settled, claimed holds are left to the writer.
// The holds hashes also drop what they keep for a while: "d:" entries
// (decided; a gateway still waiting for its produce reads them) after
// PendingTimeout, "a:" entries (undone; a late record must find them) after
// a day.
//
// It walks no keyspace, which would stall Redis during a sale: each wallet
// bucket indexes its users with holds by when they are next due
// ({w:B}:holders), so a pass reads the users that are due, looks at each
// one's holds with one script that also reschedules the user or drops them
// from the index (gift_holds_look.lua), and reads MySQL only for the stale
// holds it found. A sender is looked at about once per PendingTimeout
// after their gifts, not on every pass.
func (w *Worker) ReconcileGiftHolds(ctx context.Context) error {
	now, err := w.redis.Now(ctx)
	if err != nil {
		return err
	}
	oldest, ok, err := w.redis.OldestHold(ctx)
	if err != nil {
		return err
	}
	giftMetrics.setOldest(now, oldest, ok)
	due := now.Add(-w.cfg.PendingTimeout)
	for from := 0; from < store.WalletBuckets; from += holdBucketsPerCall {
		// At most reconcileBatch users per bucket and pass; the rest are
		// still due on the next pass.
		users, err := w.redis.HoldersDue(ctx, from, min(from+holdBucketsPerCall, store.WalletBuckets), due, reconcileBatch)
		if err != nil {
			return err
		}
		for len(users) > 0 {
			n := min(len(users), reconcileBatch)
			if err := w.reconcileHolders(ctx, users[:n], now); err != nil {
				return err
			}
			users = users[n:]
		}
	}
	return nil
}

// holdBucketsPerCall is how many buckets' holders indexes one round trip reads.
const holdBucketsPerCall = 128

// reconcileHolders looks at the holds of users that are due.
func (w *Worker) reconcileHolders(ctx context.Context, users []int64, now time.Time) error {
	looks, err := w.redis.LookAtHolds(ctx, users, now, w.cfg.PendingTimeout, keyLife)
	if err != nil {
		return err
	}
	var stale []int64
	var tickets []string
	for _, l := range looks {
		if len(l.Stale) > 0 {
			stale = append(stale, l.UserID)
		}
		for _, h := range l.Stale {
			tickets = append(tickets, h.Ticket)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	err = w.decideStaleHolds(ctx, looks, tickets, now)
	if err != nil {
		// The look scheduled these users a PendingTimeout from now; have
		// the next pass try again instead.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := w.redis.LookAgainAt(rctx, stale, now.Add(-w.cfg.PendingTimeout)); err != nil {
			w.log.Warn("cannot bring the next look at gift holds forward", "users", len(stale), "err", err)
		}
		cancel()
	}
	return err
}

// decideStaleHolds settles the stale holds MySQL decided and sends abort
// markers for the pending ones it did not.
func (w *Worker) decideStaleHolds(ctx context.Context, looks []store.HoldsLook, tickets []string, now time.Time) error {
	decided, err := db.DecidedTickets(ctx, w.mysql.DB, tickets)
	if err != nil {
		return err
	}
	var sets []store.GiftSettlement
	var markers []*kgo.Record
	marked := map[int64][]string{}
	for _, l := range looks {
		for _, h := range l.Stale {
			if d, ok := decided[h.Ticket]; ok {
				sets = append(sets, store.GiftSettlement{GiftRef: store.GiftRef{SenderID: l.UserID, Ticket: h.Ticket}, Committed: d.Status == "succeeded"})
				continue
			}
			if !h.Pending || h.Marked {
				continue // claimed by a writer, or its marker is in Kafka
			}
			markers = append(markers, bus.GiftAbortRecord(w.cfg.GiftsTopic(), h.Ticket, l.UserID, h.HeldAt))
			marked[l.UserID] = append(marked[l.UserID], h.Ticket)
		}
	}
	if err := w.redis.SettleGifts(ctx, sets); err != nil {
		return err
	}
	if len(markers) == 0 {
		return nil
	}
	if err := w.kafka.ProduceSync(ctx, markers...).FirstErr(); err != nil {
		return fmt.Errorf("cannot send abort markers: %w", err)
	}
	giftMetrics.abortMarkers.Add(float64(len(markers)))
	w.log.Warn("gift holds waited too long; abort markers sent behind them", "users", len(marked), "tickets", len(markers))
	for u, ts := range marked {
		if err := w.redis.MarkHolds(ctx, u, ts, now); err != nil {
			return err
		}
	}
	return nil
}
