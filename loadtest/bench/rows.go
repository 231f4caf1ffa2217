package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/store"
	"github.com/redis/rueidis"
)

// Who does what. Every HTTP request of a row comes from a distinct user
// until the row's users run out (then wrk starts over, and a repeat buyer
// gets 409 already_purchased, which the answers column shows).
const (
	buyers       = 250_000   // users 1..buyers buy
	probeUser    = 900_000   // users above it check that an event is ready
	senderBase   = 1_000_000 // gift senders are senderBase+1..senderBase+senders
	senders      = 200_000
	warmSenders  = 20_000 // the first senders, with wallets in Redis, send the warm gifts
	senderCoins  = 1_000_000_000
	viewerBase   = 3_000_000 // ws viewers
	anchor       = 7
	giftRoom     = 1
	fanoutRoom   = 2
	drainTimeout = 2 * time.Minute
	writerLoad   = 5 * time.Second // how long the backlog of a writer row is built
)

const giftBody = `{"gift_id":1,"receiver_id":7,"count":1}` // a Rose: 1 coin

// seed gives the gift senders coins and the bench an admin token.
func (b *bench) seed(ctx context.Context) error {
	b.signer = auth.NewSigner(config.DevTokenSecret)
	if b.cfg.TokenSecret != "" {
		b.signer = auth.NewSigner(b.cfg.TokenSecret)
	}
	b.admin = b.signer.Sign(probeUser, auth.RoleAdmin, 2*time.Hour)
	_, err := b.db.ExecContext(ctx, `INSERT INTO wallets (user_id, balance)
		SELECT ? + seq, ? FROM seq_1_to_200000 UNION ALL SELECT ?, 0`, senderBase, senderCoins, anchor)
	if err != nil {
		return fmt.Errorf("cannot seed the senders' wallets: %w", err)
	}
	return nil
}

var probes atomic.Int64

// createEvent creates an event through the admin API. A live one is then
// probed with throwaway buyers until the gateway accepts an order (the
// worker warmed it), so the row measures the event, not its warm-up.
func (b *bench) createEvent(ctx context.Context, name string, stock int64, startsIn time.Duration) (int64, error) {
	now := time.Now().UTC()
	body := fmt.Sprintf(`{"name":%q,"price":100,"stock":%d,"starts_at":%q,"ends_at":%q}`, name, stock,
		now.Add(startsIn).Format(time.RFC3339), now.Add(2*time.Hour).Format(time.RFC3339))
	st, out, err := b.api("POST", "/api/v1/admin/events", b.admin, body)
	if err != nil || st != 201 {
		return 0, fmt.Errorf("create event: %d %v %v", st, out, err)
	}
	id := int64(out["id"].(float64))
	if startsIn > 0 {
		return id, nil
	}
	return id, waitFor(ctx, time.Minute, "event "+name+" warm", func() (bool, error) {
		st, _, err := b.api("POST", orderPath(id), b.token(probeUser+probes.Add(1)), "{}")
		return err == nil && st == 202, nil
	})
}

func orderPath(ev int64) string { return "/api/v1/events/" + strconv.FormatInt(ev, 10) + "/orders" }

// orderFile is one order per buyer for the event.
func (b *bench) orderFile(name string, ev int64) (string, error) {
	path := orderPath(ev)
	return b.writeRequests(name, buyers, func(i int) (string, string, string, string) {
		return "POST", path, b.token(int64(1 + i)), "{}"
	})
}

// giftFile is one gift per sender, first..first+n-1, to the anchor.
func (b *bench) giftFile(name string, first int64, n int) (string, error) {
	return b.writeRequests(name, n, func(i int) (string, string, string, string) {
		return "POST", fmt.Sprintf("/api/v1/rooms/%d/gifts", giftRoom), b.token(first + int64(i)), giftBody
	})
}

func (b *bench) rowSoldOut(ctx context.Context) error {
	ev, err := b.createEvent(ctx, "bench sold out", 1, 0) // the probe buys the one unit
	if err != nil {
		return err
	}
	if err := waitFor(ctx, 30*time.Second, "the sold-out answer", func() (bool, error) {
		st, _, err := b.api("POST", orderPath(ev), b.token(probeUser+probes.Add(1)), "{}")
		return err == nil && st == 410, nil
	}); err != nil {
		return err
	}
	return b.orderRow(ctx, "sold_out", "sold-out answer", ev, 1)
}

func (b *bench) rowNotStarted(ctx context.Context) error {
	ev, err := b.createEvent(ctx, "bench not started", 100, time.Hour)
	if err != nil {
		return err
	}
	return b.orderRow(ctx, "not_started", "not-started answer", ev, 100)
}

// orderRow runs one order per buyer for the event on both servers, then
// checks the event's promises, and adds the row.
func (b *bench) orderRow(ctx context.Context, name, title string, ev, stock int64) error {
	file, err := b.orderFile(name, ev)
	if err != nil {
		return err
	}
	r, err := b.httpRow(ctx, title, file, func(gw wrkResult) string { return b.checkOrders(ctx, ev, stock, gw) })
	if err != nil {
		return err
	}
	b.rows = append(b.rows, r)
	return nil
}

const hugeStock = 10_000_000

func (b *bench) rowOrder(ctx context.Context) error {
	ev, err := b.createEvent(ctx, "bench order", hugeStock, 0)
	if err != nil {
		return err
	}
	b.orderEvent = ev
	file, err := b.orderFile("order", ev)
	if err != nil {
		return err
	}
	before, err := b.counters(ctx)
	if err != nil {
		return err
	}
	own := b.queries.Load()
	accepted0, _ := b.gatewayCount("order", "accepted")
	var accepted1 int64
	r, err := b.httpRow(ctx, "accepted order", file, func(gw wrkResult) string {
		accepted1, _ = b.gatewayCount("order", "accepted")
		return b.checkOrders(ctx, ev, hugeStock, gw)
	})
	if err != nil {
		return err
	}
	r.name = "accepted order (whole stack)"
	if after, err := b.counters(ctx); err == nil {
		b.levers = append(b.levers, perItem(before, after, accepted1-accepted0, b.queries.Load()-own+1, "accepted order"))
	}
	b.rows = append(b.rows, r)
	return nil
}

func (b *bench) rowTicket(ctx context.Context) error {
	if b.orderEvent == 0 {
		return fmt.Errorf("needs the order row's tickets (--rows order,ticket)")
	}
	type tk struct {
		User   int64  `db:"user_id"`
		Ticket string `db:"ticket"`
	}
	var tks []tk
	b.queries.Add(1)
	if err := b.db.SelectContext(ctx, &tks, "SELECT user_id, ticket FROM tickets WHERE ref_id = ? AND kind = 'order' LIMIT 100000", b.orderEvent); err != nil {
		return err
	}
	if len(tks) == 0 {
		return fmt.Errorf("the order row left no tickets")
	}
	file, err := b.writeRequests("ticket", len(tks), func(i int) (string, string, string, string) {
		return "GET", "/api/v1/tickets/" + tks[i].Ticket, b.token(tks[i].User), ""
	})
	if err != nil {
		return err
	}
	r, err := b.httpRow(ctx, "ticket read", file, func(gw wrkResult) string {
		if n := gw.Statuses["404"] + gw.Statuses["500"]; n > 0 {
			b.failed = true
			return fmt.Sprintf("FAIL: %d reads of a decided ticket were not found or failed", n)
		}
		return "ok"
	})
	if err != nil {
		return err
	}
	b.rows = append(b.rows, r)
	return nil
}

func (b *bench) rowGiftCold(ctx context.Context) error {
	file, err := b.giftFile("gift_cold", senderBase+1, senders)
	if err != nil {
		return err
	}
	r, _, err := b.giftRow(ctx, "gift, cold wallet (first gift of a viewer)", file)
	if err != nil {
		return err
	}
	b.rows = append(b.rows, r)
	return nil
}

func (b *bench) rowGiftWarm(ctx context.Context) error {
	if err := b.warmWallets(ctx); err != nil {
		return err
	}
	file, err := b.giftFile("gift_warm", senderBase+1, warmSenders)
	if err != nil {
		return err
	}
	before, err := b.counters(ctx)
	if err != nil {
		return err
	}
	own := b.queries.Load()
	r, accepted, err := b.giftRow(ctx, "gift, warm wallet, one anchor", file)
	if err != nil {
		return err
	}
	if after, err := b.counters(ctx); err == nil {
		b.levers = append(b.levers, perItem(before, after, accepted, b.queries.Load()-own+1, "accepted gift (warm wallet)"))
	}
	b.rows = append(b.rows, r)
	return nil
}

// giftRow runs a gift file on both servers, waits for the worker to decide
// every accepted gift and checks the coins. It returns the gifts accepted.
func (b *bench) giftRow(ctx context.Context, name, file string) (row, int64, error) {
	accepted0, _ := b.gatewayCount("gift", "accepted")
	var accepted1 int64
	r, err := b.httpRow(ctx, name, file, func(wrkResult) string {
		accepted1, _ = b.gatewayCount("gift", "accepted")
		return b.checkGifts(ctx)
	})
	if err != nil {
		return row{}, 0, err
	}
	return r, accepted1 - accepted0, nil
}

// warmWallets makes sure the warm senders' wallets are in Redis, sending a
// first gift from each one that is not.
func (b *bench) warmWallets(ctx context.Context) error {
	var cold []int64
	for first := int64(senderBase + 1); first <= senderBase+warmSenders; first += 1000 {
		var batch = make([]string, 0, 1000)
		for u := first; u < first+1000; u++ {
			batch = append(batch, store.BalanceKey(u))
		}
		vals, err := b.rdb.Do(ctx, b.rdb.B().Mget().Key(batch...).Build()).ToArray()
		if err != nil {
			return err
		}
		for i, v := range vals {
			if v.IsNil() {
				cold = append(cold, first+int64(i))
			}
		}
	}
	if len(cold) > 0 {
		b.logf("  loading %d cold wallets with a first gift each", len(cold))
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(cold)); i = next.Add(1) - 1 {
				st, _, err := b.api("POST", fmt.Sprintf("/api/v1/rooms/%d/gifts", giftRoom), b.token(cold[i]), giftBody)
				if err != nil || st != 202 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d of %d first gifts were refused", n, len(cold))
	}
	if b.checkGifts(ctx) != "ok" {
		return fmt.Errorf("the warm-up gifts broke a promise")
	}
	return nil
}

// count runs a COUNT-like query; the bench's own statements are subtracted
// from the statement counts.
func (b *bench) count(ctx context.Context, q string, args ...any) (int64, error) {
	var n int64
	b.queries.Add(1)
	err := b.db.QueryRowContext(ctx, q, args...).Scan(&n)
	return n, err
}

// checkOrders waits until every accepted order of the event is decided,
// then checks: no oversell, no user twice, MySQL stock = stock - orders,
// and no 500. It returns "ok" or what broke.
func (b *bench) checkOrders(ctx context.Context, ev, stock int64, gw wrkResult) string {
	fail := func(format string, args ...any) string {
		b.failed = true
		return "FAIL: " + fmt.Sprintf(format, args...)
	}
	if n := gw.Statuses["500"]; n > 0 {
		return fail("%d answers were 500", n)
	}
	// Every reservation in Redis (stock taken) must end as a decided ticket.
	err := waitFor(ctx, drainTimeout, "every accepted order decided", func() (bool, error) {
		pending, err := b.pendingOrders(ctx, ev)
		return pending <= 0, err
	})
	if err != nil {
		return fail("%v", err)
	}
	orders, err1 := b.count(ctx, "SELECT COUNT(*) FROM orders WHERE event_id = ?", ev)
	users, err2 := b.count(ctx, "SELECT COUNT(DISTINCT user_id) FROM orders WHERE event_id = ?", ev)
	left, err3 := b.count(ctx, "SELECT stock FROM events WHERE id = ?", ev)
	succeeded, err4 := b.count(ctx, "SELECT COUNT(*) FROM tickets WHERE ref_id = ? AND kind = 'order' AND status = 'succeeded'", ev)
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			return fail("%v", err)
		}
	}
	switch {
	case orders > stock:
		return fail("oversold: %d orders for %d units", orders, stock)
	case users != orders:
		return fail("%d orders for %d users", orders, users)
	case left != stock-orders:
		return fail("MySQL stock %d, want %d - %d orders", left, stock, orders)
	case succeeded != orders:
		return fail("%d succeeded tickets for %d orders", succeeded, orders)
	}
	return "ok"
}

// pendingOrders counts the event's reservations not yet decided: Redis
// stock taken minus the decided tickets (a failed ticket's unit goes back,
// so the count can dip below zero while one is being released).
func (b *bench) pendingOrders(ctx context.Context, ev int64) (int64, error) {
	var taken, decided int64
	b.queries.Add(1)
	err := b.db.QueryRowContext(ctx, `SELECT e.stock_total,
		(SELECT COUNT(*) FROM tickets t WHERE t.ref_id = e.id AND t.kind = 'order')
		FROM events e WHERE e.id = ?`, ev).Scan(&taken, &decided)
	if err != nil {
		return 0, err
	}
	redisLeft, err := b.rdb.Do(ctx, b.rdb.B().Get().Key(store.StockKey(ev)).Build()).AsInt64()
	if rueidis.IsRedisNil(err) { // not warm: nothing was reserved
		return -decided, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cannot read the Redis stock of event %d: %w", ev, err)
	}
	return taken - redisLeft - decided, nil
}

// checkGifts waits until no gift hold is pending, then checks the coins:
// the anchor earned what the gift records say, and the senders' balances
// fell by as much.
func (b *bench) checkGifts(ctx context.Context) string {
	fail := func(format string, args ...any) string {
		b.failed = true
		return "FAIL: " + fmt.Sprintf(format, args...)
	}
	accepted, err := b.gatewayCount("gift", "accepted")
	if err != nil {
		return fail("%v", err)
	}
	err = waitFor(ctx, drainTimeout, "every accepted gift decided", func() (bool, error) {
		decided, err := b.count(ctx, "SELECT COUNT(*) FROM tickets WHERE kind = 'gift'")
		return decided >= accepted, err
	})
	if err != nil {
		return fail("%v", err)
	}
	earned, err1 := b.count(ctx, "SELECT earnings FROM wallets WHERE user_id = ?", anchor)
	coins, err2 := b.count(ctx, "SELECT COALESCE(SUM(coins), 0) FROM gift_records WHERE receiver_id = ?", anchor)
	balances, err3 := b.count(ctx, "SELECT SUM(balance) FROM wallets WHERE user_id > ? AND user_id <= ?", senderBase, senderBase+senders)
	records, err4 := b.count(ctx, "SELECT COUNT(*) FROM gift_records")
	succeeded, err5 := b.count(ctx, "SELECT COUNT(*) FROM tickets WHERE kind = 'gift' AND status = 'succeeded'")
	for _, err := range []error{err1, err2, err3, err4, err5} {
		if err != nil {
			return fail("%v", err)
		}
	}
	switch {
	case earned != coins:
		return fail("the anchor earned %d coins, the gift records hold %d", earned, coins)
	case balances != senders*senderCoins-coins:
		return fail("the senders hold %d coins, want %d - %d sent", balances, int64(senders*senderCoins), coins)
	case records != succeeded:
		return fail("%d gift records for %d succeeded gift tickets", records, succeeded)
	}
	return "ok"
}
