package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/store"
	"github.com/flashgate/flashgate/worker"
)

// The fault suite of issue 7: each test breaks something real (a late or
// killed worker, a stalled MySQL, a dead gateway, Kafka or Redis going away,
// a poison record), then prints one line of figures and asserts them:
//
//	faults: <name> accepted=N succeeded=N failed=N lost=N dup=N ...
//
// accepted counts 202 answers; succeeded and failed count their tickets'
// outcomes in MySQL; lost counts 202 tickets that never got one; dup counts
// orders or gifts written twice.

// fastReconcile sets a short pending timeout and reconcile interval, with
// produce and Redis timeouts short enough for the configuration to accept
// that pending timeout.
func fastReconcile(pending, every time.Duration) func(*config.Config) {
	return func(c *config.Config) {
		c.PendingTimeout, c.ReconcileEvery, c.WalletsEvery = pending, every, every
		c.ProduceTimeout, c.RedisTimeout = pending/3, pending/6
	}
}

// figures are one fault test's results.
type figures struct {
	name                              string
	accepted, succeeded, failed, lost int
	dup                               int
	reasons                           map[string]int
	extra                             []string
}

func (f figures) String() string {
	var rs []string
	for r, n := range f.reasons {
		rs = append(rs, fmt.Sprintf("%s:%d", r, n))
	}
	sort.Strings(rs)
	s := fmt.Sprintf("faults: %s accepted=%d succeeded=%d failed=%d lost=%d dup=%d", f.name, f.accepted, f.succeeded, f.failed, f.lost, f.dup)
	if len(rs) > 0 {
		s += " failed_by=" + strings.Join(rs, ",")
	}
	if len(f.extra) > 0 {
		s += " " + strings.Join(f.extra, " ")
	}
	return s
}

// tally reads the outcomes of the accepted tickets from MySQL, waiting up
// to wait for every one of them to be decided.
func (s *system) tally(name string, tickets []string, wait time.Duration) figures {
	s.t.Helper()
	f := figures{name: name, accepted: len(tickets), reasons: map[string]int{}}
	deadline := time.Now().Add(wait)
	for {
		f.succeeded, f.failed, f.reasons = 0, 0, map[string]int{}
		for start := 0; start < len(tickets); start += 1000 {
			chunk := tickets[start:min(start+1000, len(tickets))]
			q, args, _ := sqlx.In("SELECT status, COALESCE(reason, '') AS reason FROM tickets WHERE ticket IN (?)", chunk)
			var rows []struct {
				Status string `db:"status"`
				Reason string `db:"reason"`
			}
			if err := s.db.Select(&rows, q, args...); err != nil {
				s.t.Fatal(err)
			}
			for _, r := range rows {
				if r.Status == "succeeded" {
					f.succeeded++
				} else {
					f.failed++
					f.reasons[r.Reason]++
				}
			}
		}
		f.lost = f.accepted - f.succeeded - f.failed
		if f.lost == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	f.dup = s.count("SELECT COUNT(*) - COUNT(DISTINCT ticket) FROM orders") +
		s.count("SELECT COUNT(*) - COUNT(DISTINCT ticket) FROM gift_records") +
		s.count("SELECT COUNT(*) FROM (SELECT event_id, user_id FROM orders WHERE active = 1 GROUP BY event_id, user_id HAVING COUNT(*) > 1) d")
	return f
}

// expect asserts the figures a fault test promises.
func (f figures) expect(t *testing.T, accepted, succeeded int) {
	t.Helper()
	t.Log(f.String())
	if f.accepted != accepted || f.succeeded != succeeded || f.failed != accepted-succeeded || f.lost != 0 || f.dup != 0 {
		t.Errorf("want accepted=%d succeeded=%d failed=%d lost=0 dup=0", accepted, succeeded, accepted-succeeded)
	}
}

// crowd sends n requests from conc goroutines; send(i) makes request i.
// It returns the answers by index.
func crowd(n, conc int, send func(i int) (answer, error)) ([]answer, []error) {
	as, errs := make([]answer, n), make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				as[i], errs[i] = send(i)
			}
		}()
	}
	wg.Wait()
	return as, errs
}

// buyOrGift sends, to the gateway at base, the user's order of the event or
// a one-coin Rose from the user to the anchor in room 1.
func (s *system) buyOrGift(base string, order bool, uid, ev, anchor int64) (answer, error) {
	if order {
		return s.tryAt(base, "POST", fmt.Sprintf("/api/v1/events/%d/orders", ev), s.token(uid), "{}")
	}
	return s.tryAt(base, "POST", "/api/v1/rooms/1/gifts", s.token(uid), fmt.Sprintf(`{"gift_id":1,"receiver_id":%d,"count":1}`, anchor))
}

// buyAndGift sends one order per user (users from..from+n) and one Rose
// from each of them to the anchor, retrying 503s, and returns the accepted
// tickets.
func (s *system) buyAndGift(ev int64, from, n int64, anchor int64, conc int) (orders, gifts []string) {
	s.t.Helper()
	var mu sync.Mutex
	_, errs := crowd(int(2*n), conc, func(i int) (answer, error) {
		uid := from + int64(i/2)
		for attempt := 0; ; attempt++ {
			a, err := s.buyOrGift(s.gateway, i%2 == 0, uid, ev, anchor)
			if err != nil {
				return a, err
			}
			switch {
			case a.Status == 202:
				mu.Lock()
				if i%2 == 0 {
					orders = append(orders, a.str("ticket"))
				} else {
					gifts = append(gifts, a.str("ticket"))
				}
				mu.Unlock()
				return a, nil
			case a.Status == 503 && attempt < 20:
				time.Sleep(100 * time.Millisecond)
			default:
				return a, fmt.Errorf("user %d: %d %s", uid, a.Status, a.Raw)
			}
		}
	})
	for _, err := range errs {
		if err != nil {
			s.t.Fatal(err)
		}
	}
	return orders, gifts
}

// seedWallets gives users from..from+n a MySQL balance each, in one statement.
func (s *system) seedWallets(from, n, balance int64) {
	s.t.Helper()
	var sb strings.Builder
	sb.WriteString("INSERT INTO wallets (user_id, balance) VALUES ")
	for u := from; u < from+n; u++ {
		if u > from {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, "(%d, %d)", u, balance)
	}
	if _, err := s.db.Exec(sb.String()); err != nil {
		s.t.Fatal(err)
	}
}

// checkSale asserts that MySQL and Redis agree on an event after the dust
// settled: MySQL's stock is its total minus its live orders, Redis's stock
// equals MySQL's and no reservation is left pending.
func (s *system) checkSale(ev int64) {
	s.t.Helper()
	total := s.count("SELECT stock_total FROM events WHERE id = ?", ev)
	live := s.count("SELECT COUNT(*) FROM orders WHERE event_id = ? AND active = 1", ev)
	mysql := s.count("SELECT stock FROM events WHERE id = ?", ev)
	if mysql != total-live {
		s.t.Errorf("MySQL stock %d, want total %d - live orders %d", mysql, total, live)
	}
	var redis int64
	var pending int64
	s.waitFor("Redis stock to agree with MySQL", func() bool {
		redis, _ = s.redisStock(ev)
		pending, _ = s.raw.Do(context.Background(), s.raw.B().Zcard().Key(store.PendingKey(ev)).Build()).AsInt64()
		return redis == int64(mysql) && pending == 0
	})
}

// checkWallets asserts the gift senders' and the anchor's coins after every
// gift of one coin was decided: MySQL and Redis agree, nothing is held, and
// coins debited equal coins earned.
func (s *system) checkWallets(from, n, balance, anchor int64, succeeded int) {
	s.t.Helper()
	if got := s.count("SELECT COALESCE(SUM(balance), 0) FROM wallets WHERE user_id BETWEEN ? AND ?", from, from+n-1); got != int(n*balance)-succeeded {
		s.t.Errorf("senders hold %d coins in MySQL, want %d", got, int(n*balance)-succeeded)
	}
	if _, earned := s.walletRowBalances(anchor); earned != int64(succeeded) {
		s.t.Errorf("anchor earned %d, want %d", earned, succeeded)
	}
	if got := s.count("SELECT COUNT(*) FROM ledger"); got != 2*succeeded {
		s.t.Errorf("%d ledger rows, want %d", got, 2*succeeded)
	}
	s.waitFor("hot balances to agree with MySQL", func() bool {
		for u := from; u < from+n; u++ {
			bal, _ := s.walletRowBalances(u)
			if hot := s.hotBalance(u); hot != -1 && hot != bal || s.openHolds(u) != 0 {
				return false
			}
		}
		return true
	})
}

// TestFaultLateConsumer: 2,000 orders and 2,000 gifts are accepted while no
// worker writes them; the reconcilers run all along with a pending timeout
// of 2 s and send abort markers for every one of them. The writer starts
// 10 s later: every record is before its marker, so all 4,000 succeed.
func TestFaultLateConsumer(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true, mutate: fastReconcile(2*time.Second, 200*time.Millisecond)})
	const n, anchor = 2000, 7
	ev := s.liveEvent(n)
	s.seedWallets(10_000, n, 5)

	// The timers of a worker whose consumers are not running.
	timers, err := worker.New(context.Background(), worker.Config{Config: s.cfg}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer timers.Close()
	tctx, stopTimers := context.WithCancel(context.Background())
	var timersDone sync.WaitGroup
	timersDone.Add(1)
	go func() {
		defer timersDone.Done()
		for tctx.Err() == nil {
			timers.Reconcile(tctx)
			timers.ReconcileGiftHolds(tctx)
			time.Sleep(200 * time.Millisecond)
		}
	}()

	orders, gifts := s.buyAndGift(ev, 10_000, n, anchor, 32)
	accepted := time.Now()
	time.Sleep(10 * time.Second)
	stopTimers()
	timersDone.Wait()
	markers := s.topicEnd(s.cfg.OrdersTopic()) - int64(len(orders)) + s.topicEnd(s.cfg.GiftsTopic()) - int64(len(gifts))
	if markers == 0 {
		t.Fatal("the reconcilers sent no abort marker: the test proves nothing")
	}

	s.startWorker()
	f := s.tally("late-consumer", append(orders, gifts...), 2*time.Minute)
	f.extra = append(f.extra, fmt.Sprintf("abort_markers=%d writer_started_after=%s", markers, time.Since(accepted).Round(time.Second)))
	f.expect(t, 2*n, 2*n)
	if got := s.count("SELECT COUNT(*) FROM orders WHERE event_id = ?", ev); got != n {
		t.Errorf("%d orders, want %d", got, n)
	}
	s.checkSale(ev)
	s.checkWallets(10_000, n, 5, anchor, n)
}

// TestFaultMySQLStall: MySQL stops answering for 10 s in the middle of a
// burst (a proxy in front of MariaDB holds every byte). The gateway never
// reads MySQL for orders and gifts from loaded wallets, so they keep
// getting 202 throughout;
// the reconcilers send abort markers for what waits (pending timeout 3 s),
// which land behind the records; after the stall every accepted order and
// gift succeeds.
func TestFaultMySQLStall(t *testing.T) {
	s := start(t, options{noWS: true, mysqlProxy: true, mutate: fastReconcile(3*time.Second, 300*time.Millisecond)})
	const users, anchor = 4000, 7
	ev := s.liveEvent(users)
	s.seedWallets(100_000, users, 5)
	// Warm wallets: a viewer's first gift loads the wallet from MySQL, and
	// that one cannot be answered while MySQL hangs.
	crowd(users, 16, func(i int) (answer, error) {
		_, err := s.wallets().HotBalance(context.Background(), int64(100_000+i))
		if err != nil {
			t.Error(err)
		}
		return answer{}, nil
	})

	var (
		mu                 sync.Mutex
		tickets            []string
		during, refused    int
		stalled, stallDone atomic.Bool
		next               atomic.Int64
		reads              = map[int]int{}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := next.Add(1)
				if i >= users {
					return
				}
				uid := 100_000 + i - 1
				for _, order := range []bool{true, false} {
					a, err := s.buyOrGift(s.gateway, order, uid, ev, anchor)
					mu.Lock()
					if err == nil && a.Status == 202 {
						tickets = append(tickets, a.str("ticket"))
						if stalled.Load() && !stallDone.Load() {
							during++
						}
					} else {
						refused++
						t.Errorf("user %d during the stall=%v: %v %d %s", uid, stalled.Load(), err, a.Status, a.Raw)
					}
					mu.Unlock()
				}
			}
		}()
	}
	// Readers that need MySQL: they may degrade, but must not starve the
	// order and gift paths.
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				a, err := s.try("GET", "/api/v1/rooms/1/leaderboard", "", "")
				mu.Lock()
				if err == nil {
					reads[a.Status]++
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	s.mysqlProxy.Stall()
	stalled.Store(true)
	time.Sleep(10 * time.Second)
	s.mysqlProxy.Resume()
	stallDone.Store(true)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	f := s.tally("mysql-stall", tickets, 3*time.Minute)
	f.extra = append(f.extra, fmt.Sprintf("accepted_during_stall=%d refused=%d leaderboard_answers=%v", during, refused, reads))
	f.expect(t, len(tickets), len(tickets))
	if during == 0 {
		t.Error("nothing was accepted during the stall: the test proves nothing")
	}
	s.checkSale(ev)
}

// TestFaultWorkerKill9: the worker, in a process of its own, is killed
// with SIGKILL in the middle of a burst, with batches in hand, and started
// again. The dead member keeps its partitions until its Kafka session
// expires, longer than the pending timeout, so abort markers go out for the
// backlog; every 202 is still decided exactly once, on its merits.
func TestFaultWorkerKill9(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true, mutate: fastReconcile(5*time.Second, 500*time.Millisecond)})
	const n, anchor = 1500, 7
	ev := s.liveEvent(n)
	s.seedWallets(20_000, n, 5)
	w := s.startProc("worker")

	var orders, gifts []string
	done := make(chan struct{})
	go func() { defer close(done); orders, gifts = s.buyAndGift(ev, 20_000, n, anchor, 16) }()
	s.waitFor("the worker to be busy", func() bool { return s.count("SELECT COUNT(*) FROM tickets") >= 300 })
	w.kill()
	killedAt := s.count("SELECT COUNT(*) FROM tickets")
	<-done
	s.startProc("worker")

	f := s.tally("worker-kill-9", append(orders, gifts...), 3*time.Minute)
	f.extra = append(f.extra, fmt.Sprintf("decided_before_kill=%d", killedAt))
	f.expect(t, 2*n, 2*n)
	s.checkSale(ev)
	s.checkWallets(20_000, n, 5, anchor, n)
}

// TestFaultGatewayKill9: a gateway, in a process of its own, is killed
// with SIGKILL in the middle of a burst. Requests in flight get no answer;
// their reservations and holds either reached Kafka (and are decided on
// their merits) or not (and the reconcilers' abort markers give the units
// and coins back). Within the pending timeout plus a reconcile, Redis
// agrees with MySQL again, and every 202 succeeded.
func TestFaultGatewayKill9(t *testing.T) {
	s := start(t, options{noWS: true, mutate: fastReconcile(3*time.Second, 300*time.Millisecond)})
	const n, anchor = 1000, 7
	ev := s.liveEvent(n)
	s.seedWallets(30_000, n, 5)
	g := s.startProc("gateway")

	var mu sync.Mutex
	var tickets []string
	var answered, noAnswer atomic.Int64
	var killOnce sync.Once
	crowd(2*n, 64, func(i int) (answer, error) {
		uid := int64(30_000 + i/2)
		a, err := s.buyOrGift(g.base, i%2 == 0, uid, ev, anchor)
		if err != nil {
			noAnswer.Add(1)
			return a, nil
		}
		if a.Status == 202 {
			mu.Lock()
			tickets = append(tickets, a.str("ticket"))
			mu.Unlock()
		}
		if answered.Add(1) == 400 {
			killOnce.Do(g.kill)
		}
		return a, nil
	})
	if noAnswer.Load() == 0 {
		t.Fatal("every request was answered: the gateway died too late to prove anything")
	}
	killed := time.Now()
	s.waitFor("Redis to agree with MySQL again", func() bool {
		mysql := s.count("SELECT stock FROM events WHERE id = ?", ev)
		redis, _ := s.redisStock(ev)
		pending, _ := s.raw.Do(context.Background(), s.raw.B().Zcard().Key(store.PendingKey(ev)).Build()).AsInt64()
		return redis == int64(mysql) && pending == 0
	})
	converged := time.Since(killed)
	f := s.tally("gateway-kill-9", tickets, time.Minute)
	f.extra = append(f.extra, fmt.Sprintf("no_answer=%d timeouts=%d converged_in=%s",
		noAnswer.Load(), s.count("SELECT COUNT(*) FROM tickets WHERE reason = 'timeout'"), converged.Round(100*time.Millisecond)))
	f.expect(t, len(tickets), len(tickets))
	s.checkSale(ev)
	giftsIn := s.count("SELECT COUNT(*) FROM tickets WHERE kind = 'gift' AND status = 'succeeded'")
	s.checkWallets(30_000, n, 5, anchor, giftsIn)
	// Generous: the race detector and the crowd share two cores.
	if limit := s.cfg.PendingTimeout + 3*s.cfg.ReconcileEvery + 15*time.Second; converged > limit {
		t.Errorf("Redis took %s to agree with MySQL, want within about %s", converged, limit)
	}
}

// TestFaultKafkaDown: the broker refuses every produce for 10 s. Orders and
// gifts get a 503 with Retry-After within the produce timeout, and nothing
// stays reserved or held. Records of 503 answers that land afterwards (a
// produce the client gave up on can still arrive) are dropped by the
// worker, because the gateway marked their tickets aborted: nothing is
// charged for a 503. When the broker is back, orders and gifts are
// accepted and succeed.
func TestFaultKafkaDown(t *testing.T) {
	s := start(t, options{noWS: true, mutate: func(c *config.Config) {
		c.ProduceTimeout, c.RedisTimeout = time.Second, 500*time.Millisecond
	}})
	const anchor = 7
	ev := s.liveEvent(100)
	s.seedWallets(40_000, 200, 5)
	var down atomic.Bool
	s.kafka.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		s.kafka.KeepControl()
		if down.Load() {
			return nil, errors.New("broker down"), true
		}
		return nil, nil, false
	})
	send := func(uid int64, order bool) answer {
		a, err := s.buyOrGift(s.gateway, order, uid, ev, anchor)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for u := int64(40_000); u < 40_010; u++ {
		s.do("GET", "/api/v1/wallet", s.token(u), "") // loads it, so a wrong hold would show
	}

	down.Store(true)
	var refused, slowest = 0, time.Duration(0)
	for end, u := time.Now().Add(10*time.Second), int64(40_000); time.Now().Before(end); u++ {
		began := time.Now()
		a := send(u%10+40_000, u%2 == 0)
		slowest = max(slowest, time.Since(began))
		if a.Status != 503 || a.errCode() != "unavailable" || a.Header.Get("Retry-After") == "" {
			t.Fatalf("with Kafka down: %d %s (Retry-After %q)", a.Status, a.Raw, a.Header.Get("Retry-After"))
		}
		refused++
	}
	if slowest > 5*time.Second {
		t.Errorf("slowest 503 took %s, want about the produce timeout (%s)", slowest, s.cfg.ProduceTimeout)
	}

	down.Store(false)
	// A produce that timed out may still land (the idempotent producer
	// cannot take back a record it sent). Play it: the gateway undid the
	// reservation and the hold and answered 503, and the records arrive
	// afterwards. The worker must drop them.
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.cfg.KafkaBrokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var late []string
	for u := int64(40_100); u < 40_105; u++ {
		ot, gt := store.NewOrderTicket(ev), store.NewGiftTicket(u)
		late = append(late, ot, gt)
		r, err := s.redis.Reserve(ctx, ev, u, ot, "")
		if err != nil || r.Status != store.Reserved {
			t.Fatalf("reserve: %+v %v", r, err)
		}
		s.seedWallet(u, 5)
		s.do("GET", "/api/v1/wallet", s.token(u), "")
		h, err := s.redis.HoldGift(ctx, u, gt, 1, "", store.Limit{})
		if err != nil || h.Status != store.Held {
			t.Fatalf("hold: %+v %v", h, err)
		}
		if ok, err := s.redis.Compensate(ctx, ev, u, ot); !ok || err != nil {
			t.Fatalf("compensate: %v %v", ok, err)
		}
		if ok, err := s.redis.UndoGift(ctx, u, gt, ""); !ok || err != nil {
			t.Fatalf("undo: %v %v", ok, err)
		}
		recs := []*kgo.Record{
			bus.OrderRecord(s.cfg.OrdersTopic(), bus.Order{Ticket: ot, EventID: ev, UserID: u, Price: 1999, ReservedAt: r.ReservedAt.UnixMilli()}),
			bus.GiftRecord(s.cfg.GiftsTopic(), bus.Gift{Ticket: gt, RoomID: 1, SenderID: u, ReceiverID: anchor, GiftID: 1, Count: 1, Coins: 1, HeldAt: h.HeldAt.UnixMilli()}),
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	dropped := s.tally("", late, time.Minute)
	if dropped.failed != len(late) || dropped.reasons["aborted"] != len(late) {
		t.Errorf("records of 503 answers that landed late: %s, want all failed as aborted", dropped)
	}
	if n := s.count("SELECT COUNT(*) FROM orders"); n != 0 {
		t.Errorf("%d orders written for 503 answers", n)
	}
	if n := s.count("SELECT COUNT(*) FROM ledger"); n != 0 {
		t.Errorf("%d ledger rows written for 503 answers", n)
	}
	if st, _ := s.redisStock(ev); st != 100 {
		t.Errorf("Redis stock %d after the outage, want 100", st)
	}
	for u := int64(40_000); u < 40_010; u++ {
		if hot, h := s.hotBalance(u), s.openHolds(u); hot != 5 || h != 0 {
			t.Errorf("user %d: hot balance %d with %d holds after the outage, want 5 and none", u, hot, h)
		}
	}

	orders, gifts := s.buyAndGift(ev, 40_150, 20, anchor, 4)
	f := s.tally("kafka-down", append(orders, gifts...), time.Minute)
	f.extra = append(f.extra, fmt.Sprintf("refused_while_down=%d slowest_503=%s late_records_dropped=%d/%d",
		refused, slowest.Round(10*time.Millisecond), dropped.reasons["aborted"], len(late)))
	f.expect(t, 40, 40)
	s.checkSale(ev)
}

// TestFaultRedisLost: Redis loses everything twice in the middle of a sale,
// once by FLUSHALL and once by a restart without persistence. The worker
// warms the event again only once no order can be in flight, so Redis
// never offers a unit an accepted order took: every 202 succeeds, and the
// sale sells exactly its stock.
func TestFaultRedisLost(t *testing.T) {
	s := start(t, options{noWS: true, restartableRedis: true, mutate: func(c *config.Config) {
		c.ProduceTimeout, c.RedisTimeout = time.Second, 500*time.Millisecond
	}})
	const stock = 300
	ev := s.liveEvent(stock)
	var mu sync.Mutex
	var tickets []string
	var phase atomic.Int32 // 0 before any fault, 1 after the flush, 2 after the restart
	var byPhase [3]atomic.Int64
	wave := func(from int64, n int, fault func()) {
		var count atomic.Int64
		crowd(n, 32, func(i int) (answer, error) {
			uid := from + int64(i)
			a, err := s.try("POST", fmt.Sprintf("/api/v1/events/%d/orders", ev), s.token(uid), "{}")
			if err == nil && a.Status == 202 {
				mu.Lock()
				tickets = append(tickets, a.str("ticket"))
				mu.Unlock()
				byPhase[phase.Load()].Add(1)
			}
			if err == nil && a.Status != 202 && a.Status != 503 && a.Status != 410 && a.Status != 409 {
				t.Errorf("user %d: %d %s", uid, a.Status, a.Raw)
			}
			if count.Add(1) == int64(n/3) && fault != nil {
				fault()
			}
			return a, err
		})
	}
	wave(1, 90, func() {
		if err := s.raw.Do(context.Background(), s.raw.B().Flushall().Build()).Error(); err != nil {
			t.Errorf("FLUSHALL: %v", err)
		}
		phase.Store(1)
	})
	s.waitFor("event warm again after the flush", func() bool { _, ok := s.redisStock(ev); return ok })
	wave(1000, 90, func() { s.redisServer.Restart(t, 200*time.Millisecond); phase.Store(2) })
	s.waitFor("event warm again after the restart", func() bool { _, ok := s.redisStock(ev); return ok })
	for round := int64(0); s.count("SELECT COUNT(*) FROM orders WHERE event_id = ? AND active = 1", ev) < stock; round++ {
		if round == 20 {
			t.Fatalf("the sale did not sell out: %d orders", s.count("SELECT COUNT(*) FROM orders WHERE event_id = ?", ev))
		}
		wave(2000+round*300, 300, nil)
		s.tally("", tickets, 30*time.Second)
	}
	if byPhase[1].Load() == 0 || byPhase[2].Load() == 0 {
		t.Errorf("accepted before/after the flush/after the restart: %d/%d/%d; the faults missed the sale",
			byPhase[0].Load(), byPhase[1].Load(), byPhase[2].Load())
	}
	f := s.tally("redis-lost", tickets, time.Minute)
	f.extra = append(f.extra, fmt.Sprintf("accepted_before_flush=%d after_flush=%d after_restart=%d orders=%d stock=%d",
		byPhase[0].Load(), byPhase[1].Load(), byPhase[2].Load(), s.count("SELECT COUNT(*) FROM orders WHERE event_id = ?", ev), stock))
	f.expect(t, len(tickets), len(tickets))
	if n := s.count("SELECT COUNT(*) FROM orders WHERE event_id = ?", ev); n != stock {
		t.Errorf("%d orders, want exactly %d", n, stock)
	}
	s.checkSale(ev)
}

// TestFaultWorkerSIGTERM: a worker in a process of its own gets SIGTERM in
// the middle of a burst. It stops polling, finishes and commits the batches
// in hand, and exits cleanly: every ticket it decided is covered by its
// group's committed offsets, and after a restart every 202 succeeds.
func TestFaultWorkerSIGTERM(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true})
	const n = 1500
	ev := s.liveEvent(n)
	w := s.startProc("worker")
	var mu sync.Mutex
	var orders []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		crowd(n, 16, func(i int) (answer, error) {
			a, err := s.try("POST", fmt.Sprintf("/api/v1/events/%d/orders", ev), s.token(int64(50_000+i)), "{}")
			if err == nil && a.Status == 202 {
				mu.Lock()
				orders = append(orders, a.str("ticket"))
				mu.Unlock()
			}
			return a, err
		})
	}()
	s.waitFor("the worker to be busy", func() bool { return s.count("SELECT COUNT(*) FROM tickets") >= 200 })
	w.term(s.cfg.ShutdownTimeout + 10*time.Second)
	decided := s.count("SELECT COUNT(*) FROM tickets")
	committed := s.committed(worker.GroupName(s.cfg), s.cfg.OrdersTopic())
	if committed < int64(decided) {
		t.Errorf("after SIGTERM %d tickets are decided but only %d records committed: the batch in hand was abandoned", decided, committed)
	}
	<-done
	s.startProc("worker")
	f := s.tally("worker-sigterm", orders, 2*time.Minute)
	f.extra = append(f.extra, fmt.Sprintf("decided_at_exit=%d committed_at_exit=%d", decided, committed))
	f.expect(t, len(orders), len(orders))
	s.checkSale(ev)
}

// TestFaultPoisonRecord: one record in a batch of 500 is one MySQL refuses
// for good (its reservation time is no date MySQL can store). The writer
// retries, splits the batch until it finds that record, dead-letters it
// with the reason and fails its ticket as invalid; the other 499 succeed.
func TestFaultPoisonRecord(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true})
	ev := s.liveEvent(1000)
	var tickets []string
	buy := func(from, n int64) {
		for u := from; u < from+n; u++ {
			a := s.order(ev, u)
			if a.Status != 202 {
				t.Fatalf("order: %d %s", a.Status, a.Raw)
			}
			tickets = append(tickets, a.str("ticket"))
		}
	}
	buy(1, 250)
	poison := store.NewOrderTicket(ev)
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.cfg.KafkaBrokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := bus.OrderRecord(s.cfg.OrdersTopic(), bus.Order{Ticket: poison, EventID: ev, UserID: 999_999, Price: 1999, ReservedAt: 1e15})
	if err := cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	buy(251, 249)
	s.startWorker()

	f := s.tally("poison-record", tickets, time.Minute)
	dlq := s.readTopic(s.cfg.DLQTopic(), 1)
	var why string
	for _, h := range dlq[0].Headers {
		if h.Key == "reason" {
			why = string(h.Value)
		}
	}
	var pt struct {
		Status string `db:"status"`
		Reason string `db:"reason"`
	}
	s.waitFor("the poison ticket decided", func() bool {
		return s.db.Get(&pt, "SELECT status, reason FROM tickets WHERE ticket = ?", poison) == nil
	})
	f.extra = append(f.extra, fmt.Sprintf("dead_lettered=%d poison=%s/%s", s.topicEnd(s.cfg.DLQTopic()), pt.Status, pt.Reason))
	f.expect(t, 499, 499)
	if n := s.topicEnd(s.cfg.DLQTopic()); n != 1 || !strings.Contains(string(dlq[0].Value), poison) || !strings.Contains(why, "refused") {
		t.Errorf("dead-letter topic: %d records, first %s (reason %q), want just the poison record with its reason", n, dlq[0].Value, why)
	}
	if pt.Status != "failed" || pt.Reason != "invalid" {
		t.Errorf("poison ticket %s/%s, want failed/invalid", pt.Status, pt.Reason)
	}
	s.checkSale(ev)
}

// TestFaultRepairs: the Redis steps that used to be fire-and-forget are
// repaired from MySQL: an expired order whose Redis release was lost, a
// failure decided in MySQL whose unit never came back, an event row locked
// by an operator for longer than MySQL's lock wait (orders are retried, not
// failed), and writes refused by MySQL for a while (the consumer survives).
func TestFaultRepairs(t *testing.T) {
	s := start(t, options{noWS: true, mutate: func(c *config.Config) {
		fastReconcile(2*time.Second, 200*time.Millisecond)(c)
		dsn, _ := db.ParseDSN(c.MySQLDSN)
		dsn.Params["innodb_lock_wait_timeout"] = "1"
		c.MySQLDSN = dsn.FormatDSN()
	}})
	ctx := context.Background()

	t.Run("expired order whose release was lost", func(t *testing.T) {
		ev := s.liveEvent(1)
		a := s.order(ev, 1)
		if s.waitTicket(1, a.str("ticket")).str("status") != "succeeded" {
			t.Fatal("order did not succeed")
		}
		// The worker expired it in MySQL and died before Redis heard.
		if _, err := s.db.Exec("UPDATE orders SET status = 'expired', active = NULL, redis_released = 0 WHERE event_id = ?", ev); err != nil {
			t.Fatal(err)
		}
		if _, err := s.db.Exec("UPDATE events SET stock = stock + 1 WHERE id = ?", ev); err != nil {
			t.Fatal(err)
		}
		s.waitFor("the unit back in Redis", func() bool { st, _ := s.redisStock(ev); return st == 1 })
		s.waitFor("the unit back on sale", func() bool {
			return s.do("GET", fmt.Sprintf("/api/v1/events/%d", ev), "", "").Body["stock_left"] == float64(1)
		})
		if a := s.order(ev, 1); a.Status != 202 {
			t.Errorf("the same user buying again: %d %s", a.Status, a.Raw)
		}
	})

	t.Run("failure decided but its unit not returned", func(t *testing.T) {
		ev := s.liveEvent(10)
		ticket := store.NewOrderTicket(ev)
		if r, err := s.redis.Reserve(ctx, ev, 77, ticket, ""); err != nil || r.Status != store.Reserved {
			t.Fatalf("reserve: %+v %v", r, err)
		}
		if _, _, err := db.DecideFailed(ctx, s.db, db.NewTicket{Ticket: ticket, Kind: "order", UserID: 77, RefID: ev,
			Reason: "timeout", CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		s.waitFor("the unit back in Redis", func() bool { st, _ := s.redisStock(ev); return st == 10 && s.buyerTicket(ev, 77) == "" })
	})

	t.Run("hot balance lower or higher than MySQL", func(t *testing.T) {
		const uid = 90
		s.seedWallet(uid, 50)
		if a := s.do("GET", "/api/v1/wallet", s.token(uid), ""); a.Status != 200 || a.Body["balance"] != float64(50) {
			t.Fatalf("wallet: %d %s", a.Status, a.Raw)
		}
		// A credit whose Redis step was lost for good, then a debit Redis
		// never saw: the wallet reconciler follows MySQL both ways.
		for _, delta := range []int64{30, -20} {
			if _, err := s.db.Exec("UPDATE wallets SET balance = balance + ? WHERE user_id = ?", delta, uid); err != nil {
				t.Fatal(err)
			}
			bal, _ := s.walletRowBalances(uid)
			s.waitFor(fmt.Sprintf("hot balance %d", bal), func() bool { return s.hotBalance(uid) == bal })
		}
	})

	t.Run("event row locked past the lock wait timeout", func(t *testing.T) {
		ev := s.liveEvent(100)
		tx, err := s.db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec("SELECT id FROM events WHERE id = ? FOR UPDATE", ev); err != nil {
			t.Fatal(err)
		}
		var tickets []string
		for u := int64(100); u < 150; u++ {
			a := s.order(ev, u)
			if a.Status != 202 {
				t.Fatalf("order: %d %s", a.Status, a.Raw)
			}
			tickets = append(tickets, a.str("ticket"))
		}
		time.Sleep(6 * time.Second)
		tx.Rollback()
		f := s.tally("event-locked", tickets, time.Minute)
		f.expect(t, 50, 50)
	})

	t.Run("writes refused for a while", func(t *testing.T) {
		ev := s.liveEvent(100)
		for _, tbl := range []string{"orders", "tickets"} {
			if _, err := s.db.Exec("CREATE TRIGGER refuse_" + tbl + " BEFORE INSERT ON " + tbl + " FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'writes refused'"); err != nil {
				t.Fatal(err)
			}
		}
		first := s.order(ev, 200)
		s.readTopic(s.cfg.DLQTopic(), 1)
		for _, tbl := range []string{"orders", "tickets"} {
			if _, err := s.db.Exec("DROP TRIGGER refuse_" + tbl); err != nil {
				t.Fatal(err)
			}
		}
		var tickets []string
		for u := int64(201); u < 211; u++ {
			tickets = append(tickets, s.order(ev, u).str("ticket"))
		}
		f := s.tally("writes-refused", tickets, 30*time.Second)
		f.expect(t, 10, 10)
		if a := s.waitTicket(200, first.str("ticket")); a.str("status") != "failed" || a.str("reason") != "invalid" {
			t.Errorf("the order written while MySQL refused writes: %s", a.Raw)
		}
		resp, err := s.client.Get(s.worker + "/readyz")
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("worker /readyz after MySQL refused writes: %v %v", resp, err)
		}
		if err == nil {
			resp.Body.Close()
		}
	})
}

// TestFaultGiftIdemAfterFlush: a gift's Idempotency-Key outlives a Redis
// flush: the retry gets the first ticket and is not debited again.
func TestFaultGiftIdemAfterFlush(t *testing.T) {
	s := start(t, options{noWS: true})
	s.seedWallet(60, 100)
	first := s.gift(1, 60, 7, 2, 1, "Idempotency-Key", "tap-1")
	if first.Status != 202 || s.waitTicket(60, first.str("ticket")).str("status") != "succeeded" {
		t.Fatalf("first gift: %d %s", first.Status, first.Raw)
	}
	if err := s.raw.Do(context.Background(), s.raw.B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	again := s.gift(1, 60, 7, 2, 1, "Idempotency-Key", "tap-1")
	if again.Status != 202 || again.str("ticket") != first.str("ticket") || again.Body["balance"] != first.Body["balance"] {
		t.Errorf("retry after the flush: %d %s, want 202 with %s", again.Status, again.Raw, first.Raw)
	}
	time.Sleep(time.Second)
	if n := s.count("SELECT COUNT(*) FROM ledger WHERE kind = 'gift_sent' AND user_id = 60"); n != 1 {
		t.Errorf("%d debits, want 1", n)
	}
	if bal, _ := s.walletRowBalances(60); bal != 90 {
		t.Errorf("balance %d, want 90", bal)
	}
}
