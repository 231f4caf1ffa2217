package worker

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
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

var (
	batchSize = promauto.NewHistogram(prometheus.HistogramOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "batch_records",
		Help: "Records per polled batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	})
	ticketsDecided = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "tickets_total",
		Help: "Order tickets decided, by status and reason (replays of decided tickets are not counted).",
	}, []string{"status", "reason"})
	commitSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "mysql_commit_seconds",
		Help: "Time to write one event's batch to MySQL.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	dlqTotal = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "dead_letters_total",
		Help: "Order records sent to the dead-letter topic.",
	})
)

// Failure reasons recorded on tickets.
const (
	ReasonSoldOut          = "sold_out"
	ReasonAlreadyPurchased = "already_purchased"
	ReasonAborted          = "aborted" // the gateway answered 503 and undid it
	ReasonNotFound         = "not_found"
	ReasonTimeout          = "timeout" // no order arrived in time; reservation released
	ReasonUnprocessable    = "unprocessable"
)

// ConsumeOrders polls the orders topic and writes each batch, committing
// offsets only after MySQL committed it.
func (w *Worker) ConsumeOrders(ctx context.Context) error {
	return w.consume(ctx, w.kafka, "orders", w.cfg.WorkerBatch, func(ctx context.Context, recs []*kgo.Record) error {
		batchSize.Observe(float64(len(recs)))
		return w.ProcessRecords(ctx, recs)
	})
}

// consume is the loop of every consumer group of the worker: poll up to max
// records, process them, and commit their offsets only once process has made
// them durable. Rebalances wait while a batch is in hand (the clients use
// BlockRebalanceOnPoll), so no other member gets records this one is
// writing. process fails only when ctx ends; the batch is then left
// uncommitted and comes back to whoever consumes next, which the idempotent
// writes absorb.
func (w *Worker) consume(ctx context.Context, cl *kgo.Client, name string, max int, process func(context.Context, []*kgo.Record) error) error {
	for {
		fetches := cl.PollRecords(ctx, max)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			cl.AllowRebalance()
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			w.log.Warn("fetch error", "consumer", name, "topic", t, "partition", p, "err", err)
		})
		recs := fetches.Records()
		if len(recs) == 0 {
			cl.AllowRebalance()
			continue
		}
		if err := process(ctx, recs); err != nil {
			cl.AllowRebalance()
			return nil
		}
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := cl.CommitRecords(cctx, recs...); err != nil {
			w.log.Warn("offset commit failed; the batch may be redelivered", "consumer", name, "err", err)
		}
		cancel()
		cl.AllowRebalance()
	}
}

// ProcessRecords writes a batch of order records: grouped by event, one
// MySQL transaction per event, then Redis and the results topic are told.
// It returns an error only when ctx ends before the batch is done.
func (w *Worker) ProcessRecords(ctx context.Context, recs []*kgo.Record) error {
	byEvent := map[int64][]bus.Order{}
	var order []int64
	for _, r := range recs {
		var o bus.Order
		if err := json.Unmarshal(r.Value, &o); err != nil || o.Ticket == "" || o.EventID <= 0 || o.UserID <= 0 {
			w.log.Error("undecodable order record; sending it to the dead-letter topic", "offset", r.Offset, "partition", r.Partition, "err", err)
			if err := w.deadLetter(ctx, r.Value, "undecodable"); err != nil {
				return err
			}
			continue
		}
		if id, ok := store.ParseOrderTicket(o.Ticket); !ok || id != o.EventID {
			w.log.Error("order record with a foreign ticket; dead-lettered", "ticket", o.Ticket)
			if err := w.deadLetter(ctx, r.Value, "bad ticket"); err != nil {
				return err
			}
			continue
		}
		if _, seen := byEvent[o.EventID]; !seen {
			order = append(order, o.EventID)
		}
		byEvent[o.EventID] = append(byEvent[o.EventID], o)
	}
	for _, id := range order {
		if err := w.processEvent(ctx, id, byEvent[id]); err != nil {
			return err
		}
	}
	return nil
}

// maxAttempts is how often a batch is tried against a reachable MySQL before
// its records are dead-lettered and their tickets failed.
const maxAttempts = 5

func (w *Worker) processEvent(ctx context.Context, eventID int64, orders []bus.Order) error {
	tickets := make([]string, len(orders))
	for i, o := range orders {
		tickets[i] = o.Ticket
	}
	var aborted map[string]bool
	err := w.retry(ctx, "claim tickets in Redis", 0, func() (err error) {
		aborted, err = w.redis.Claim(ctx, eventID, tickets)
		return err
	})
	if err != nil {
		return err
	}
	var outs []outcome
	err = w.retry(ctx, "write orders to MySQL", maxAttempts, func() (err error) {
		start := time.Now()
		outs, err = w.commitOrders(ctx, eventID, orders, aborted)
		commitSeconds.Observe(time.Since(start).Seconds())
		return err
	})
	if errors.Is(err, errPoison) {
		outs, err = w.failPoison(ctx, eventID, orders)
	}
	if err != nil {
		return err
	}
	return w.publish(ctx, eventID, outs)
}

// outcome is one ticket's decision, new or replayed.
type outcome struct {
	store.Outcome
	replay bool
}

var errPoison = errors.New("batch keeps failing against a reachable MySQL")

// retry runs f until it succeeds, backing off up to 5 s. After attempts
// failures (0 = unlimited) while MySQL answers pings, it returns errPoison.
func (w *Worker) retry(ctx context.Context, what string, attempts int, f func() error) error {
	backoff := 50 * time.Millisecond
	for n := 1; ; n++ {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempts > 0 && n >= attempts && w.sql.PingContext(ctx) == nil {
			w.log.Error("giving up: "+what, "attempts", n, "err", err)
			return errPoison
		}
		w.log.Warn("cannot "+what+"; retrying", "attempt", n, "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// commitOrders decides and writes one event's orders in one transaction.
func (w *Worker) commitOrders(ctx context.Context, eventID int64, orders []bus.Order, aborted map[string]bool) ([]outcome, error) {
	tx, err := w.sql.BeginTxx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()

	var ev db.Event
	err = tx.GetContext(ctx, &ev, "SELECT id, name, price, stock_total, stock, starts_at, ends_at FROM events WHERE id = ? FOR UPDATE", eventID)
	missing := errors.Is(err, sql.ErrNoRows)
	if err != nil && !missing {
		return nil, err
	}

	tickets := make([]string, 0, len(orders))
	users := make([]int64, 0, len(orders))
	for _, o := range orders {
		tickets = append(tickets, o.Ticket)
		users = append(users, o.UserID)
	}
	decided := map[string]db.Ticket{}
	q, args, _ := sqlx.In("SELECT ticket, kind, user_id, ref_id, status, reason, order_no, created_at FROM tickets WHERE ticket IN (?)", tickets)
	var rows []db.Ticket
	if err := tx.SelectContext(ctx, &rows, q, args...); err != nil {
		return nil, err
	}
	for _, t := range rows {
		decided[t.Ticket] = t
	}
	held := map[int64]string{}
	if !missing {
		q, args, _ = sqlx.In("SELECT user_id, ticket FROM orders WHERE event_id = ? AND active = 1 AND user_id IN (?)", eventID, users)
		var hs []struct {
			UserID int64  `db:"user_id"`
			Ticket string `db:"ticket"`
		}
		if err := tx.SelectContext(ctx, &hs, q, args...); err != nil {
			return nil, err
		}
		for _, h := range hs {
			held[h.UserID] = h.Ticket
		}
	}

	var outs []outcome
	var accepted []bus.Order
	seen := map[string]bool{}
	for _, o := range orders {
		if seen[o.Ticket] {
			continue // the same record twice in one batch
		}
		seen[o.Ticket] = true
		out := outcome{Outcome: store.Outcome{EventID: eventID, UserID: o.UserID, Ticket: o.Ticket}}
		if d, ok := decided[o.Ticket]; ok {
			out.replay = true
			out.Succeeded = d.Status == "succeeded"
			out.Reason, out.OrderNo = d.Reason.String, d.OrderNo.String
			if !out.Succeeded {
				out.HeldTicket = held[o.UserID]
			}
			outs = append(outs, out)
			continue
		}
		switch {
		case aborted[o.Ticket]:
			out.Reason = ReasonAborted
		case missing:
			out.Reason = ReasonNotFound
		case held[o.UserID] != "":
			out.Reason, out.HeldTicket, out.ReturnUnit = ReasonAlreadyPurchased, held[o.UserID], true
		case int64(len(accepted)) >= ev.Stock:
			// Redis believed there was a unit (e.g. re-warmed while orders
			// were in flight); MySQL is the truth. No unit to give back.
			out.Reason = ReasonSoldOut
		default:
			out.Succeeded, out.OrderNo = true, store.OrderNo(o.Ticket)
			held[o.UserID] = o.Ticket
			accepted = append(accepted, o)
		}
		outs = append(outs, out)
	}

	if len(accepted) > 0 {
		var sb strings.Builder
		sb.WriteString("INSERT INTO orders (order_no, ticket, event_id, user_id, price, status, active, created_at, expires_at) VALUES ")
		vals := make([]any, 0, len(accepted)*6)
		ttl := w.cfg.OrderTTL.Microseconds()
		for i, o := range accepted {
			if i > 0 {
				sb.WriteString(",")
			}
			sb.WriteString("(?, ?, ?, ?, ?, 'unpaid', 1, NOW(3), NOW(3) + INTERVAL ? MICROSECOND)")
			vals = append(vals, store.OrderNo(o.Ticket), o.Ticket, eventID, o.UserID, ev.Price, ttl)
		}
		if _, err := tx.ExecContext(ctx, sb.String(), vals...); err != nil {
			return nil, fmt.Errorf("cannot insert orders: %w", err)
		}
		n := len(accepted)
		res, err := tx.ExecContext(ctx, "UPDATE events SET stock = stock - ? WHERE id = ? AND stock >= ?", n, eventID, n)
		if err != nil {
			return nil, fmt.Errorf("cannot take stock: %w", err)
		}
		if k, _ := res.RowsAffected(); k != 1 {
			return nil, fmt.Errorf("stock guard refused %d units of event %d", n, eventID)
		}
	}
	if err := insertTickets(ctx, tx, orders, outs); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	for _, o := range outs {
		if !o.replay {
			status := "failed"
			if o.Succeeded {
				status = "succeeded"
			}
			ticketsDecided.WithLabelValues(status, o.Reason).Inc()
		}
	}
	return outs, nil
}

// insertTickets records the new decisions.
func insertTickets(ctx context.Context, tx *sqlx.Tx, orders []bus.Order, outs []outcome) error {
	reserved := map[string]int64{}
	for _, o := range orders {
		reserved[o.Ticket] = o.ReservedAt
	}
	var sb strings.Builder
	var vals []any
	for _, o := range outs {
		if o.replay {
			continue
		}
		if len(vals) > 0 {
			sb.WriteString(",")
		}
		sb.WriteString("(?, 'order', ?, ?, ?, NULLIF(?, ''), NULLIF(?, ''), ?)")
		status := "failed"
		if o.Succeeded {
			status = "succeeded"
		}
		vals = append(vals, o.Ticket, o.UserID, o.EventID, status, o.Reason, o.OrderNo, time.UnixMilli(reserved[o.Ticket]).UTC())
	}
	if len(vals) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, "INSERT INTO tickets (ticket, kind, user_id, ref_id, status, reason, order_no, created_at) VALUES "+sb.String(), vals...)
	if err != nil {
		return fmt.Errorf("cannot record tickets: %w", err)
	}
	return nil
}

// failPoison dead-letters orders that cannot be written and fails their
// tickets, one by one, so none stays pending.
func (w *Worker) failPoison(ctx context.Context, eventID int64, orders []bus.Order) ([]outcome, error) {
	var outs []outcome
	for _, o := range orders {
		v, _ := json.Marshal(o)
		if err := w.deadLetter(ctx, v, "mysql rejected the batch"); err != nil {
			return nil, err
		}
		out := outcome{Outcome: store.Outcome{EventID: eventID, UserID: o.UserID, Ticket: o.Ticket, Reason: ReasonUnprocessable, ReturnUnit: true}}
		won, err := w.decideFailed(ctx, o.Ticket, o.UserID, eventID, ReasonUnprocessable, o.ReservedAt)
		if err != nil {
			return nil, err
		}
		if !won {
			t, err := w.db.Ticket(ctx, o.Ticket)
			if err != nil {
				return nil, err
			}
			out.Succeeded, out.Reason, out.OrderNo, out.ReturnUnit = t.Status == "succeeded", t.Reason.String, t.OrderNo.String, false
			out.replay = true
		}
		outs = append(outs, out)
	}
	return outs, nil
}

// decideFailed records a failed outcome unless the ticket is decided already;
// it reports whether this call decided it.
func (w *Worker) decideFailed(ctx context.Context, ticket string, userID, eventID int64, reason string, reservedAt int64) (bool, error) {
	res, err := w.sql.ExecContext(ctx, `INSERT IGNORE INTO tickets (ticket, kind, user_id, ref_id, status, reason, created_at)
		VALUES (?, 'order', ?, ?, 'failed', ?, ?)`, ticket, userID, eventID, reason, time.UnixMilli(reservedAt).UTC())
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	if n == 1 {
		ticketsDecided.WithLabelValues("failed", reason).Inc()
	}
	return n == 1, nil
}

func (w *Worker) deadLetter(ctx context.Context, value []byte, why string) error {
	rec := &kgo.Record{Topic: w.cfg.DLQTopic(), Value: value, Headers: []kgo.RecordHeader{{Key: "reason", Value: []byte(why)}}}
	err := w.retry(ctx, "produce to the dead-letter topic", 0, func() error {
		return w.kafka.ProduceSync(ctx, rec).FirstErr()
	})
	if err == nil {
		dlqTotal.Inc()
	}
	return err
}

// publish settles the outcomes in Redis and produces them to the results
// topic; results must be acknowledged before the offsets are committed.
func (w *Worker) publish(ctx context.Context, eventID int64, outs []outcome) error {
	plain := make([]store.Outcome, len(outs))
	recs := make([]*kgo.Record, 0, len(outs)+1)
	for i, o := range outs {
		plain[i] = o.Outcome
		status := "failed"
		if o.Succeeded {
			status = "succeeded"
		}
		recs = append(recs, bus.TicketResult(w.cfg.ResultsTopic(), o.UserID, bus.TicketPush{
			Ticket: o.Ticket, Kind: "order", Status: status, Reason: o.Reason, OrderNo: o.OrderNo,
		}))
	}
	// Settling is best effort: MySQL already has the outcomes, GET /tickets
	// reads them there, and the reconciler settles what is left pending.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := w.redis.Settle(sctx, plain); err != nil {
		w.log.Warn("cannot settle tickets in Redis; the reconciler will", "event", eventID, "err", err)
	}
	if rec := w.stockPush(sctx, eventID); rec != nil {
		recs = append(recs, rec)
	}
	cancel()
	return w.retry(ctx, "produce results", 0, func() error {
		return w.kafka.ProduceSync(ctx, recs...).FirstErr()
	})
}

// stockPush returns a stock message for the event's watchers, at most one
// per second per event. A change inside that second is marked due and sent
// by FlushStockPushes, so watchers always end up seeing the final stock.
func (w *Worker) stockPush(ctx context.Context, eventID int64) *kgo.Record {
	now := time.Now()
	w.stockMu.Lock()
	if now.Sub(w.lastStockPush[eventID]) < time.Second {
		w.stockDue[eventID] = true
		w.stockMu.Unlock()
		return nil
	}
	w.lastStockPush[eventID] = now
	delete(w.stockDue, eventID)
	w.stockMu.Unlock()
	st, err := w.redis.Stocks(ctx, []int64{eventID})
	left, ok := st[eventID]
	if err != nil || !ok {
		return nil
	}
	status := "live"
	if left <= 0 {
		left, status = 0, "sold_out"
	}
	return bus.StockResult(w.cfg.ResultsTopic(), bus.StockPush{EventID: eventID, StockLeft: left, Status: status})
}

// FlushStockPushes sends the stock messages that the once-a-second limit held back.
func (w *Worker) FlushStockPushes(ctx context.Context) error {
	w.stockMu.Lock()
	var due []int64
	for id := range w.stockDue {
		due = append(due, id)
	}
	w.stockMu.Unlock()
	var recs []*kgo.Record
	for _, id := range due {
		if r := w.stockPush(ctx, id); r != nil {
			recs = append(recs, r)
		}
	}
	if len(recs) == 0 {
		return nil
	}
	return w.kafka.ProduceSync(ctx, recs...).FirstErr()
}
