package worker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
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

var (
	abortMarkers = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "abort_markers_total",
		Help: "Abort markers sent for reservations (kind=order) and gift holds (kind=gift) that waited longer than FLASHGATE_PENDING_TIMEOUT.",
	}, []string{"kind"})
	stockCorrections = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "stock_corrections_total",
		Help: "Times the stock reconciler found an event's Redis stock different from MySQL's minus the units in flight, and set it.",
	})
)

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
	evs, err := w.db.EventsEndingAfter(ctx, now.Add(-keyLife))
	if err != nil {
		return err
	}
	for _, e := range evs {
		if err := w.reconcileEvent(ctx, e.ID, now); err != nil {
			return err
		}
	}
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
	decided, err := db.DecidedTickets(ctx, w.sql, due)
	if err != nil {
		return err
	}
	var users []int64
	for _, d := range decided {
		users = append(users, d.UserID)
	}
	holders, err := db.ActiveHolders(ctx, w.sql, eventID, users)
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
		abortMarkers.WithLabelValues("order").Add(float64(len(markers)))
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
	evs, err := w.db.EventsEndingAfter(ctx, time.Now())
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
	return w.db.SyncEventStock(ctx, eventID, func(tx *sqlx.Tx, stock int64, released []db.Order) error {
		pending, err := w.redis.AllPending(ctx, eventID)
		if err != nil {
			return err
		}
		// Pending reservations MySQL decided already, waiting for their
		// settle: a success is counted in MySQL's stock, and a failure
		// that returns no unit never took one there.
		var settled []string
		for len(pending) > 0 {
			n := min(len(pending), 1000)
			decided, err := db.DecidedTickets(ctx, tx, pending[:n])
			if err != nil {
				return err
			}
			for t, d := range decided {
				if d.Status == "succeeded" || !returnsUnit(d.Reason.String) {
					settled = append(settled, t)
				}
			}
			pending = pending[n:]
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
// It also drops what holds hashes keep for a while: "d:" entries (decided;
// a gateway still waiting for its produce reads them) after PendingTimeout,
// "a:" entries (undone; a late record must find them) after a day.
// Holds have no index across users (their keys must share each user's hash
// tag), so this scans the keyspace: run it every
// FLASHGATE_RECONCILE_INTERVAL, not on a hot path.
func (w *Worker) ReconcileGiftHolds(ctx context.Context) error {
	now, err := w.redis.Now(ctx)
	if err != nil {
		return err
	}
	return w.scanKeys(ctx, "{u:*}:holds", func(keys []string) error {
		for _, key := range keys {
			if err := w.reconcileHolds(ctx, key, now); err != nil {
				return err
			}
		}
		return nil
	})
}

// scanKeys calls f with every batch of keys matching pattern, on every
// Redis node.
func (w *Worker) scanKeys(ctx context.Context, pattern string, f func(keys []string) error) error {
	for _, node := range w.redis.C.Nodes() {
		var cursor uint64
		for {
			e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
			if err != nil {
				return fmt.Errorf("cannot scan %s: %w", pattern, err)
			}
			if err := f(e.Elements); err != nil {
				return err
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	return nil
}

// reconcileHolds reconciles one user's holds hash.
func (w *Worker) reconcileHolds(ctx context.Context, key string, now time.Time) error {
	idPart, ok := strings.CutPrefix(key, "{u:")
	if ok {
		idPart, ok = strings.CutSuffix(idPart, "}:holds")
	}
	userID, err := strconv.ParseInt(idPart, 10, 64)
	if !ok || err != nil || userID <= 0 {
		return nil // not one of ours
	}
	holds, err := w.redis.C.Do(ctx, w.redis.C.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		return fmt.Errorf("cannot read gift holds of user %d: %w", userID, err)
	}
	cutoff := now.Add(-w.cfg.PendingTimeout).UnixMilli()
	type staleHold struct {
		ticket  string
		pending bool
		heldAt  int64
	}
	var stale []staleHold
	var tickets, gone []string
	for t, v := range holds {
		if mt, isMark := strings.CutPrefix(t, "m:"); isMark {
			if _, held := holds[mt]; !held {
				gone = append(gone, t)
			}
			continue
		}
		state, rest, _ := strings.Cut(v, ":")
		switch state {
		case "a", "d":
			life := w.cfg.PendingTimeout
			if state == "a" {
				life = keyLife
			}
			if at, err := strconv.ParseInt(rest, 10, 64); err != nil || at < now.Add(-life).UnixMilli() {
				gone = append(gone, t)
			}
			continue
		case "p", "c":
		default:
			continue
		}
		_, ms, _ := strings.Cut(rest, ":")
		at, err := strconv.ParseInt(ms, 10, 64)
		if err != nil || at >= cutoff {
			continue // young enough to be in flight
		}
		stale = append(stale, staleHold{t, state == "p", at})
		tickets = append(tickets, t)
	}
	if len(gone) > 0 {
		if err := w.redis.C.Do(ctx, w.redis.C.B().Hdel().Key(key).Field(gone...).Build()).Error(); err != nil {
			return fmt.Errorf("cannot drop old gift holds of user %d: %w", userID, err)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	decided, err := db.DecidedTickets(ctx, w.sql, tickets)
	if err != nil {
		return err
	}
	var sets []store.GiftSettlement
	var markers []*kgo.Record
	var marked []string
	for _, h := range stale {
		if d, ok := decided[h.ticket]; ok {
			sets = append(sets, store.GiftSettlement{GiftRef: store.GiftRef{SenderID: userID, Ticket: h.ticket}, Committed: d.Status == "succeeded"})
			continue
		}
		if !h.pending || holds[store.HoldMarkField(h.ticket)] != "" {
			continue // claimed by a writer, or its marker is in Kafka
		}
		markers = append(markers, bus.GiftAbortRecord(w.cfg.GiftsTopic(), h.ticket, userID, h.heldAt))
		marked = append(marked, h.ticket)
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
	abortMarkers.WithLabelValues("gift").Add(float64(len(markers)))
	w.log.Warn("gift holds waited too long; abort markers sent behind them", "user", userID, "tickets", len(markers))
	return w.redis.MarkHolds(ctx, userID, marked, now)
}
