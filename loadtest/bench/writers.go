package main

import (
	"context"
	"fmt"
	"time"
)

// A writer row measures the worker alone: with the worker stopped, the
// gateway accepts orders (or gifts) for a few seconds, so that a backlog
// waits in Kafka; then the worker starts and the row times MariaDB's rows
// from the first written to the last.

func (b *bench) rowOrderWriter(ctx context.Context) error {
	ev, err := b.createEvent(ctx, "bench order writer", hugeStock, 0)
	if err != nil {
		return err
	}
	file, err := b.orderFile("order_writer", ev)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, drainTimeout, "the probe order written", func() (bool, error) {
		pending, err := b.pendingOrders(ctx, ev)
		return pending <= 0, err
	}); err != nil {
		return err
	}
	rate, backlog, gw, err := b.drain(ctx, file, "order", "orders", "event_id = ?", ev)
	if err != nil {
		return err
	}
	b.rows = append(b.rows, row{
		name: "order writer: Kafka backlog → MariaDB", rate: rate, unit: "orders/s",
		answers: backlog, check: b.checkOrders(ctx, ev, hugeStock, gw),
	})
	return nil
}

func (b *bench) rowGiftWriter(ctx context.Context) error {
	if err := b.warmWallets(ctx); err != nil {
		return err
	}
	file, err := b.giftFile("gift_writer", senderBase+1, warmSenders)
	if err != nil {
		return err
	}
	if c := b.checkGifts(ctx); c != "ok" {
		return fmt.Errorf("before the backlog: %s", c)
	}
	rate, backlog, _, err := b.drain(ctx, file, "gift", "gift_records", "receiver_id = ?", anchor)
	if err != nil {
		return err
	}
	b.rows = append(b.rows, row{
		name: "gift writer, one anchor: Kafka backlog → MariaDB", rate: rate, unit: "gifts/s",
		answers: backlog, check: b.checkGifts(ctx),
	})
	return nil
}

// drain stops the worker, builds a backlog with file for writerLoad, starts
// the worker and times the rows written to table (those matching where,
// with arg) from its first to the backlog's last. It returns the rate, a
// description of the backlog and the wrk result.
//
// The progress it polls is the table's highest id, an index lookup: a
// COUNT(*) every 50 ms took a quarter of MariaDB's time from the writer
// it measured (19 ms each at 60,000 gift records, in the slow log). A
// COUNT(*) confirms the end, as ids may have gaps.
func (b *bench) drain(ctx context.Context, file, kind, table, where string, arg any) (float64, string, wrkResult, error) {
	count := func() (int64, error) { return b.count(ctx, "SELECT COUNT(*) FROM "+table+" WHERE "+where, arg) }
	maxID := func() (int64, error) { return b.count(ctx, "SELECT COALESCE(MAX(id), 0) FROM "+table) }
	base, err := count()
	if err != nil {
		return 0, "", wrkResult{}, err
	}
	baseID, err := maxID()
	if err != nil {
		return 0, "", wrkResult{}, err
	}
	b.worker.stop()
	accepted0, err := b.gatewayCount(kind, "accepted")
	if err != nil {
		return 0, "", wrkResult{}, err
	}
	gw, err := b.wrk(ctx, "http://"+b.cfg.GatewayAddr, file, writerLoad)
	if err != nil {
		return 0, "", wrkResult{}, err
	}
	accepted1, err := b.gatewayCount(kind, "accepted")
	if err != nil {
		return 0, "", wrkResult{}, err
	}
	backlog := accepted1 - accepted0
	desc := fmt.Sprintf("backlog of %d, accepted at %.0f req/s with the worker stopped", backlog, gw.rate())
	b.logf("  %s; starting the worker", desc)
	if _, err := b.startService(ctx, "worker"); err != nil {
		return 0, "", wrkResult{}, err
	}
	var firstAt, lastAt time.Time
	var first, n int64
	err = waitFor(ctx, drainTimeout, "the backlog written", func() (bool, error) {
		id, err := maxID()
		if n = id - baseID; err != nil || n == 0 {
			return false, err
		}
		if firstAt.IsZero() {
			firstAt, first = time.Now(), n
		}
		lastAt = time.Now()
		if n < backlog {
			return false, nil
		}
		c, err := count()
		n = c - base
		return n >= backlog, err
	})
	if err != nil {
		return 0, "", gw, fmt.Errorf("%v (%d of %d written)", err, n, backlog)
	}
	if !lastAt.After(firstAt) || n <= first {
		return 0, desc + "; written in one batch, too small to time", gw, nil
	}
	rate := float64(n-first) / lastAt.Sub(firstAt).Seconds()
	b.logf("  drained %d at %.0f/s", n, rate)
	return rate, desc, gw, nil
}
