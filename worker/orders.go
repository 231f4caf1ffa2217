package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/store"
)

// ConsumeOrders polls the orders topic and writes each batch, committing
// offsets only after MySQL committed it and the outcomes were published.
func (w *Worker) ConsumeOrders(ctx context.Context) error {
	return w.consume(ctx, w.kafka, w.orders, pollChunks*w.cfg.WorkerBatch, func(ctx context.Context, recs []*kgo.Record) error {
		orderMetrics.batchRecords.Observe(float64(len(recs)))
		return w.ProcessRecords(ctx, recs)
	})
}

// ProcessRecords writes a batch of order records and abort markers,
// grouped by event (one event's messages share a partition, so they keep
// their log order) in chunks of FLASHGATE_WORKER_BATCH (pipeline): each is
// claimed in Redis, written in one MySQL transaction, then Redis and the
// results topic are told. It returns when every chunk is published, with
// an error only when ctx ends before that.
func (w *Worker) ProcessRecords(ctx context.Context, recs []*kgo.Record) error {
	byEvent := map[int64][]bus.Order{}
	var events []int64
	for _, r := range recs {
		var o bus.Order
		err := json.Unmarshal(r.Value, &o)
		if err == nil {
			err = validOrder(o)
		}
		if err != nil {
			w.log.Error("undecodable order record; sending it to the dead-letter topic", "offset", r.Offset, "partition", r.Partition, "err", err)
			if err := w.deadLetter(ctx, w.cfg.DLQTopic(), r.Value, "undecodable: "+err.Error()); err != nil {
				return err
			}
			continue
		}
		if _, seen := byEvent[o.EventID]; !seen {
			events = append(events, o.EventID)
		}
		byEvent[o.EventID] = append(byEvent[o.EventID], o)
	}
	var chunks [][]bus.Order
	for _, id := range events {
		chunks = append(chunks, chunked(byEvent[id], w.cfg.WorkerBatch)...)
	}
	return pipeline(ctx, chunks, w.claimOrders, w.writeOrderChunk, func(ctx context.Context, d decidedOrders) error {
		return w.publish(ctx, d.eventID, d.outs)
	})
}

// validOrder checks what the writer relies on; the gateway and the
// reconciler never produce anything else, so a failure here is a foreign
// or corrupt record.
func validOrder(o bus.Order) error {
	id, ok := store.ParseOrderTicket(o.Ticket)
	switch {
	case !ok:
		return fmt.Errorf("bad ticket %q", o.Ticket)
	case o.EventID <= 0 || id != o.EventID:
		return fmt.Errorf("ticket %s is not of event %d", o.Ticket, o.EventID)
	case o.UserID < 0 || (o.UserID == 0 && !o.Abort):
		return errors.New("user id must be positive")
	}
	return nil
}

// orderChunk is a chunk of one event's messages, claimed in Redis.
type orderChunk struct {
	eventID int64
	msgs    []bus.Order
	aborted map[string]bool // reservations the gateway undid before the claim
}

// decidedOrders are the outcomes of one event's chunk.
type decidedOrders struct {
	eventID int64
	outs    []outcome
}

// claimOrders claims a chunk of one event's messages in Redis, so a
// gateway that gave up on the produce can no longer undo them while they
// are written (and one it did undo is dropped).
func (w *Worker) claimOrders(ctx context.Context, msgs []bus.Order) (orderChunk, error) {
	c := orderChunk{eventID: msgs[0].EventID, msgs: msgs}
	tickets := make([]string, 0, len(msgs))
	for _, m := range msgs {
		tickets = append(tickets, m.Ticket)
	}
	err := w.retry(ctx, "claim tickets in Redis", func() (err error) {
		c.aborted, err = w.redis.Claim(ctx, c.eventID, tickets)
		return err
	})
	return c, err
}

// writeOrderChunk writes a claimed chunk to MySQL and returns the outcomes
// to publish.
func (w *Worker) writeOrderChunk(ctx context.Context, c orderChunk) (decidedOrders, error) {
	outs, err := writeBatch(ctx, w, "write orders to MySQL", c.msgs,
		func(ctx context.Context, part []bus.Order) ([]outcome, error) {
			return w.writeOrders(ctx, c.eventID, part, c.aborted)
		},
		w.poisonOrder)
	return decidedOrders{c.eventID, outs}, err
}

// writeOrders decides one event's messages under its row lock and writes
// the decisions in the same transaction.
//
// A first delivery of new reservations, the common case by far, is
// decided without reading the batch's tickets and buyers back: MySQL's
// unique keys (tickets.ticket, orders' buyer key) refuse the write if any
// was decided or holds a unit already, and the batch is then decided again
// with those reads, in a new transaction. A batch with an abort marker
// reads them from the start: a marker's outcome names the ticket its user
// still holds. (perf under make bench: the two reads were a seventh of
// MariaDB's time per batch.)
func (w *Worker) writeOrders(ctx context.Context, eventID int64, msgs []bus.Order, aborted map[string]bool) ([]outcome, error) {
	careful := slices.ContainsFunc(msgs, func(m bus.Order) bool { return m.Abort })
	for {
		outs, err := w.writeOrdersTx(ctx, eventID, msgs, aborted, careful)
		if !careful && db.IsDuplicate(err) {
			careful = true // a redelivery: decide again, knowing what MySQL has
			orderMetrics.redecided.Inc()
			continue
		}
		return outs, err
	}
}

func (w *Worker) writeOrdersTx(ctx context.Context, eventID int64, msgs []bus.Order, aborted map[string]bool, careful bool) ([]outcome, error) {
	start := time.Now()
	var plan orderPlan
	err := db.InTx(ctx, w.mysql.DB, nil, func(tx *sqlx.Tx) error {
		ev, found, err := db.LockEvent(ctx, tx, eventID)
		if err != nil {
			return err
		}
		st := orderState{found: found, event: ev}
		if careful {
			tickets := make([]string, len(msgs))
			users := make([]int64, len(msgs))
			for i, m := range msgs {
				tickets[i], users[i] = m.Ticket, m.UserID
			}
			if st.decided, err = db.DecidedTickets(ctx, tx, tickets); err != nil {
				return err
			}
			if found {
				if st.holders, err = db.ActiveHolders(ctx, tx, eventID, users); err != nil {
					return err
				}
			}
		}
		plan = decideOrders(msgs, aborted, st)
		if err := db.InsertOrders(ctx, tx, eventID, ev.Price, w.cfg.OrderTTL, plan.accepted); err != nil {
			return err
		}
		return db.InsertTickets(ctx, tx, plan.tickets())
	})
	orderMetrics.commitSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, err
	}
	for _, o := range plan.outs {
		if !o.replay {
			orderMetrics.decided(o.Succeeded, o.Reason)
		}
	}
	return plan.outs, nil
}

// poisonOrder dead-letters an order MySQL keeps refusing, with the reason,
// and fails its ticket as invalid, so it does not stay pending and its unit
// comes back. Only a transient error stops it; it waits those out.
func (w *Worker) poisonOrder(ctx context.Context, m bus.Order, cause error) (outcome, error) {
	d, won, err := w.failPoison(ctx, orderMetrics, w.cfg.DLQTopic(), m, "mysql refused the order: "+cause.Error(),
		db.NewTicket{Ticket: m.Ticket, UserID: m.UserID, RefID: m.EventID, CreatedAt: time.UnixMilli(m.ReservedAt)})
	if err != nil {
		return outcome{}, err
	}
	out := outcome{Outcome: store.Outcome{EventID: m.EventID, UserID: m.UserID, Ticket: m.Ticket,
		Succeeded: d.Status == "succeeded", Reason: d.Reason.String, OrderNo: d.OrderNo.String}, replay: !won}
	out.ReturnUnit = !out.Succeeded && returnsUnit(out.Reason)
	return out, nil
}

// publish settles the outcomes in Redis and produces them to the results
// topic; results must be acknowledged before the offsets are committed.
func (w *Worker) publish(ctx context.Context, eventID int64, outs []outcome) error {
	plain := make([]store.Outcome, len(outs))
	recs := make([]*kgo.Record, 0, len(outs)+1)
	for i, o := range outs {
		plain[i] = o.Outcome
		recs = append(recs, bus.TicketResult(w.cfg.ResultsTopic(), o.UserID, bus.TicketPush{
			Ticket: o.Ticket, Kind: "order", Status: ticketStatus(o.Succeeded), Reason: o.Reason, OrderNo: o.OrderNo,
		}))
	}
	// MySQL already has the outcomes and GET /tickets reads them there, so
	// a settle that keeps failing is left to the reconciler, which settles
	// decided tickets it finds still pending.
	w.settle(ctx, func(ctx context.Context) error { return w.redis.Settle(ctx, plain) })
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if rec := w.stockPush(sctx, eventID); rec != nil {
		recs = append(recs, rec)
	}
	cancel()
	return w.retry(ctx, "produce results", func() error {
		return w.kafka.ProduceSync(ctx, recs...).FirstErr()
	})
}

// settle runs a Redis settle step, retrying for a few seconds.
func (w *Worker) settle(ctx context.Context, f func(context.Context) error) {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	backoff := 20 * time.Millisecond
	for {
		err := f(sctx)
		if err == nil {
			return
		}
		if !sleep(sctx, backoff) {
			w.log.Warn("cannot settle in Redis; the reconciler will", "err", err)
			return
		}
		backoff *= 2
	}
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
