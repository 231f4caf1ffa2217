package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flashgate/flashgate/gateway"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/store"
	"github.com/flashgate/flashgate/internal/testenv"
	"github.com/flashgate/flashgate/worker"
)

// Fault tests of the edge: what clients of the gateway and ws notice while a
// dependency hangs and while a replica shuts down.

// metric reads one sample of the gateway's /metrics, 0 when absent.
func (s *system) metric(sample string) float64 {
	s.t.Helper()
	v, err := s.sample(s.gatewayInternal, sample)
	if err != nil {
		s.t.Fatal(err)
	}
	return v
}

// sample reads one sample of the /metrics at base (a service's internal
// listener), 0 when absent.
func (s *system) sample(base, sample string) (float64, error) {
	resp, err := s.client.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f, err
		}
	}
	return 0, err
}

// TestFaultEdgeMySQLStall: MySQL hangs for the gateway (a proxy in front of
// MariaDB holds every byte; the worker keeps a direct connection) while 200
// clients poll a room's leaderboard and two pending tickets. The order and
// gift paths never touch MySQL, so every order and gift gets 202 throughout;
// the leaderboard answers its last good board or a quick 503; the tickets
// are answered from Redis; a room with no board yet answers 503. Once MySQL
// answers again every accepted order and gift succeeds and the leaderboard
// catches up.
func TestFaultEdgeMySQLStall(t *testing.T) {
	const (
		room     = 1
		coldRoom = 2
		receiver = 2000
		stallFor = 4 * time.Second
		pollers  = 200
	)
	var proxy *testenv.Proxy
	var direct string
	s := start(t, options{noWS: true, noWorker: true, mutate: func(c *config.Config) {
		direct = c.MySQLDSN
		mc, err := db.ParseDSN(c.MySQLDSN)
		if err != nil {
			t.Fatal(err)
		}
		proxy = testenv.NewProxy(t, mc.Addr)
		mc.Addr = proxy.Addr()
		c.MySQLDSN = mc.FormatDSN()
		c.MaxInflight = 64
		c.InflightReads = 8
	}})
	// The test's own MySQL handle and the worker go around the proxy.
	s.db.Close()
	var err error
	if s.db, err = db.Open(context.Background(), direct); err != nil {
		t.Fatal(err)
	}
	wcfg := s.cfg
	wcfg.MySQLDSN = direct
	wctx, stopWorker := context.WithCancel(context.Background())
	t.Cleanup(stopWorker) // runs before the harness's shutdown, which waits for it
	wln := testenv.Listener(t)
	s.worker = "http://" + wln.Addr().String()
	s.run("worker", func() error { return worker.Run(wctx, worker.Config{Config: wcfg, Listener: wln}) })
	s.waitReady(s.worker)

	ev := s.liveEvent(1_000_000)
	senders := []int64{1001, 1002, 1003, 1004}
	for _, u := range senders {
		s.seedWallet(u, 1_000_000)
		if w := s.do("GET", "/api/v1/wallet", s.token(u), ""); w.Status != 200 { // loads the hot balance
			t.Fatalf("wallet: %d %s", w.Status, w.Raw)
		}
	}
	// The board before the stall: 1001 gave 10 coins.
	first := s.gift(room, 1001, receiver, giftHeart, 1)
	if first.Status != 202 {
		t.Fatalf("gift: %d %s", first.Status, first.Raw)
	}
	if tk := s.waitTicket(1001, first.str("ticket")); tk.str("status") != "succeeded" {
		t.Fatalf("first gift: %s", tk.Raw)
	}
	lastGood := fmt.Sprintf(`{"room_id":%d,"top":[{"user_id":1001,"coins":10}]}`, room)
	s.waitFor("the board before the stall", func() bool {
		return s.do("GET", fmt.Sprintf("/api/v1/rooms/%d/leaderboard", room), "", "").Raw == lastGood
	})
	// Two tickets that stay pending: a reservation and a gift hold whose
	// records never reach Kafka (as if their gateway died after the Lua call).
	const orderOwner, giftOwner = 3000, 3001
	orderTicket := store.NewOrderTicket(ev)
	if r, err := s.redis.Reserve(context.Background(), ev, orderOwner, orderTicket, ""); err != nil || r.Status != store.Reserved {
		t.Fatalf("reserve: %+v %v", r, err)
	}
	s.seedWallet(giftOwner, 100)
	s.do("GET", "/api/v1/wallet", s.token(giftOwner), "")
	giftTicket := store.NewGiftTicket(giftOwner)
	if r, err := s.redis.HoldGift(context.Background(), giftOwner, giftTicket, 10, "", store.Limit{}); err != nil || r.Status != store.Held {
		t.Fatalf("hold: %+v %v", r, err)
	}

	// Metrics are per process, shared with other tests: count the difference.
	shed := func(class string) float64 { return s.metric(`flashgate_gateway_shed_total{class="` + class + `"}`) }
	shedBefore := map[string]float64{"orders": shed("orders"), "gifts": shed("gifts"), "reads": shed("reads")}
	proxy.Stall()
	stallStart := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var (
		mu                        sync.Mutex
		lbOK, lb503, tkOK, tkShed int
		coldAnswers, ordersLate   int
		orderTickets              = map[int64]string{}
		giftTickets               = map[string]int64{} // ticket -> sender
		giftsBy                   = map[int64]int64{}
		orderRefused, giftRefused int
		badLeaderboard, badTicket []string
		transportErrs             []string
	)
	report := func(list *[]string, format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(*list) < 5 {
			*list = append(*list, fmt.Sprintf(format, args...))
		}
	}
	loop := func(f func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				f(i)
			}
		}()
	}
	for p := range pollers {
		switch {
		case p%2 == 0:
			loop(func(int) {
				a, err := s.try("GET", fmt.Sprintf("/api/v1/rooms/%d/leaderboard", room), "", "")
				switch {
				case err != nil:
					report(&transportErrs, "leaderboard: %v", err)
				case a.Status == 200 && a.Raw == lastGood:
					mu.Lock()
					lbOK++
					mu.Unlock()
				case a.Status == 503 && a.errCode() == "unavailable":
					mu.Lock()
					lb503++
					mu.Unlock()
				default:
					report(&badLeaderboard, "%d %s", a.Status, a.Raw)
				}
				time.Sleep(5 * time.Millisecond)
			})
		default:
			owner, ticket := int64(orderOwner), orderTicket
			if p%4 == 3 {
				owner, ticket = giftOwner, giftTicket
			}
			loop(func(int) {
				a, err := s.try("GET", "/api/v1/tickets/"+ticket, s.token(owner), "")
				switch {
				case err != nil:
					report(&transportErrs, "ticket: %v", err)
				case a.Status == 200 && a.str("ticket") == ticket && a.str("status") == "pending":
					mu.Lock()
					tkOK++
					mu.Unlock()
				case a.Status == 503 && strings.Contains(a.Raw, "at capacity for reads"):
					// Shed by the reads budget at once: the crowd is larger
					// than it, on purpose.
					mu.Lock()
					tkShed++
					mu.Unlock()
				default:
					report(&badTicket, "%d %s", a.Status, a.Raw)
				}
				time.Sleep(5 * time.Millisecond)
			})
		}
	}
	var nextBuyer atomic.Int64
	nextBuyer.Store(100_000)
	for range 4 {
		loop(func(int) {
			uid := nextBuyer.Add(1)
			a, err := s.try("POST", fmt.Sprintf("/api/v1/events/%d/orders", ev), s.token(uid), "{}")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				transportErrs = append(transportErrs, fmt.Sprintf("order: %v", err))
				orderRefused++
			case a.Status == 202:
				orderTickets[uid] = a.str("ticket")
				if time.Since(stallStart) > stallFor/2 {
					ordersLate++
				}
			default:
				orderRefused++
				t.Errorf("order during the stall: %d %s", a.Status, a.Raw)
			}
		})
	}
	for _, u := range senders {
		loop(func(int) {
			a, err := s.try("POST", fmt.Sprintf("/api/v1/rooms/%d/gifts", room), s.token(u),
				fmt.Sprintf(`{"gift_id":%d,"receiver_id":%d,"count":1}`, giftRose, receiver))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				transportErrs = append(transportErrs, fmt.Sprintf("gift: %v", err))
				giftRefused++
			case a.Status == 202:
				giftTickets[a.str("ticket")] = u
				giftsBy[u]++
			default:
				giftRefused++
				t.Errorf("gift during the stall: %d %s", a.Status, a.Raw)
			}
		})
	}
	loop(func(int) {
		a, err := s.try("GET", fmt.Sprintf("/api/v1/rooms/%d/leaderboard", coldRoom), "", "")
		if err != nil || a.Status != 503 || a.errCode() != "unavailable" {
			report(&badLeaderboard, "room without a board: %d %s %v", a.Status, a.Raw, err)
		}
		mu.Lock()
		coldAnswers++
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	})
	time.Sleep(stallFor)
	close(stop)
	wg.Wait()
	shedOrders := shed("orders") - shedBefore["orders"]
	shedGifts := shed("gifts") - shedBefore["gifts"]
	shedReads := shed("reads") - shedBefore["reads"]
	proxy.Resume()

	// Every accepted order and gift ends in MySQL; none fails, none is lost.
	accepted := len(orderTickets) + len(giftTickets)
	tickets := make([]any, 0, accepted)
	for _, tk := range orderTickets {
		tickets = append(tickets, tk)
	}
	for tk := range giftTickets {
		tickets = append(tickets, tk)
	}
	countStatus := func(status string) int {
		if len(tickets) == 0 {
			return 0
		}
		q := "SELECT COUNT(*) FROM tickets WHERE status = ? AND ticket IN (?" + strings.Repeat(",?", len(tickets)-1) + ")"
		return s.count(q, append([]any{status}, tickets...)...)
	}
	var succeeded, failed int
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		succeeded, failed = countStatus("succeeded"), countStatus("failed")
		if succeeded+failed == accepted {
			break
		}
	}
	lost := accepted - succeeded - failed
	t.Logf("faults: mysql-stall-gateway stall=%v accepted=%d orders=%d gifts=%d succeeded=%d failed=%d lost=%d "+
		"shed_orders=%v shed_gifts=%v shed_reads=%v leaderboard_ok=%d leaderboard_503=%d tickets_ok=%d tickets_shed=%d cold_room_503=%d",
		stallFor, accepted, len(orderTickets), len(giftTickets), succeeded, failed, lost,
		shedOrders, shedGifts, shedReads, lbOK, lb503, tkOK, tkShed, coldAnswers)

	for _, l := range [][]string{transportErrs, badLeaderboard, badTicket} {
		for _, e := range l {
			t.Errorf("during the stall: %s", e)
		}
	}
	if orderRefused+giftRefused > 0 || shedOrders != 0 || shedGifts != 0 {
		t.Errorf("orders or gifts refused during the stall: %d orders, %d gifts (shed: %v orders, %v gifts)",
			orderRefused, giftRefused, shedOrders, shedGifts)
	}
	if len(orderTickets) == 0 || len(giftTickets) == 0 || ordersLate == 0 {
		t.Errorf("too few accepted during the stall to tell: %d orders (%d in its second half), %d gifts",
			len(orderTickets), ordersLate, len(giftTickets))
	}
	if lbOK == 0 || tkOK == 0 || coldAnswers == 0 {
		t.Errorf("during the stall: %d last good boards, %d tickets answered, %d answers for the room without a board; want some of each",
			lbOK, tkOK, coldAnswers)
	}
	if failed != 0 || lost != 0 {
		t.Errorf("%d accepted failed and %d are lost, want none", failed, lost)
	}
	if n := s.count("SELECT COUNT(*) FROM orders WHERE event_id = ?", ev); n != len(orderTickets) {
		t.Errorf("%d orders in MySQL, %d accepted", n, len(orderTickets))
	}

	// The board catches up once MySQL answers: 1001's 10 coins plus one per
	// rose of each sender.
	coins := map[int64]int64{}
	for _, u := range senders {
		coins[u] = giftsBy[u]
	}
	coins[1001] += 10
	sorted := append([]int64(nil), senders...)
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if coins[a] != coins[b] {
			return coins[a] > coins[b]
		}
		return a < b
	})
	var want []string
	for _, u := range sorted {
		if coins[u] > 0 {
			want = append(want, fmt.Sprintf("%d:%d", u, coins[u]))
		}
	}
	s.waitFor("the board after the stall", func() bool { return strings.Join(s.leaderboard(room), " ") == strings.Join(want, " ") })
	s.waitFor("the room without a board gets one", func() bool {
		return s.do("GET", fmt.Sprintf("/api/v1/rooms/%d/leaderboard", coldRoom), "", "").Status == 200
	})
}

// TestFaultEdgeDrain: keep-alive clients send requests at a steady rate
// while a gateway shuts down. For the drain delay /readyz answers 503 while
// every request is still answered (no transport error); orders in flight
// when the server then shuts down (Kafka is slow by then) are answered 202;
// afterwards the listener is gone and Run returns nil.
func TestFaultEdgeDrain(t *testing.T) {
	const delay = 3 * time.Second
	s := start(t, options{noWS: true})
	ev := s.liveEvent(1_000_000)

	// A gateway of its own, to stop alone; the harness's keeps serving the
	// worker's warm-up.
	cfg := s.cfg
	cfg.DrainDelay = delay
	ln := testenv.Listener(t)
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- gateway.Run(ctx, gateway.Config{Config: cfg, Listener: ln}) }()
	s.waitReady(base)

	var slowProduce atomic.Bool
	s.kafka.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		s.kafka.KeepControl()
		if slowProduce.Load() {
			s.kafka.SleepControl(func() { time.Sleep(1500 * time.Millisecond) })
		}
		return nil, nil, false
	})

	type result struct {
		began, ended time.Time
		status       int
		err          error
	}
	var (
		mu      sync.Mutex
		results []result
		buyer   atomic.Int64
	)
	buyer.Store(500_000)
	send := func(c *http.Client, method, path string, uid int64) result {
		var body io.Reader
		if method == "POST" {
			body = strings.NewReader("{}")
		}
		req, _ := http.NewRequest(method, base+path, body)
		if uid > 0 {
			req.Header.Set("Authorization", "Bearer "+s.token(uid))
		}
		r := result{began: time.Now()}
		resp, err := c.Do(req)
		r.ended, r.err = time.Now(), err
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			r.status = resp.StatusCode
		}
		return r
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer c.CloseIdleConnections()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				var r result
				if (i+n)%2 == 0 {
					r = send(c, "GET", "/api/v1/events", 0)
				} else {
					r = send(c, "POST", fmt.Sprintf("/api/v1/events/%d/orders", ev), buyer.Add(1))
				}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		}()
	}
	var readyz503 atomic.Int32
	var cancelled atomic.Int64 // unix nanoseconds of the cancel
	cancelled.Store(time.Now().Add(time.Hour).UnixNano())
	drainEnd := func() time.Time { return time.Unix(0, cancelled.Load()).Add(delay) }
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if r := send(c, "GET", "/readyz", 0); r.err == nil && r.status == 503 && r.ended.Before(drainEnd()) {
				readyz503.Add(1)
			}
		}
	}()

	time.Sleep(time.Second)
	cancelAt := time.Now()
	cancelled.Store(cancelAt.UnixNano())
	cancel()
	// Shortly before the delay is over, Kafka turns slow and a few orders
	// start that are still in flight when the server shuts down.
	time.Sleep(delay - 500*time.Millisecond)
	slowProduce.Store(true)
	inflight := make(chan result, 4)
	for range 4 {
		go func() {
			c := &http.Client{Timeout: 30 * time.Second}
			inflight <- send(c, "POST", fmt.Sprintf("/api/v1/events/%d/orders", ev), buyer.Add(1))
		}()
	}
	var inflightAnswered, inflightSpanned int
	for range 4 {
		r := <-inflight
		if r.err != nil || r.status != 202 {
			t.Errorf("order in flight at shutdown: %d %v", r.status, r.err)
			continue
		}
		inflightAnswered++
		if r.ended.After(cancelAt.Add(delay)) {
			inflightSpanned++
		}
	}
	var runErr error
	select {
	case runErr = <-ran:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	close(stop)
	wg.Wait()
	slowProduce.Store(false)

	var answered, errDuring, errAfter, answeredDuring int
	for _, r := range results {
		switch {
		case r.err == nil:
			answered++
			if r.began.After(cancelAt) && r.ended.Before(cancelAt.Add(delay)) {
				answeredDuring++
			}
		case r.ended.Before(cancelAt.Add(delay)):
			errDuring++
			t.Errorf("transport error %v after %v, within the drain delay", r.err, r.ended.Sub(cancelAt))
		default:
			errAfter++
			// After the delay the listener closes: a request may find no
			// server to dial, but one the server had taken must be answered.
			var op *net.OpError
			if !errors.As(r.err, &op) || op.Op != "dial" {
				t.Errorf("request begun %v after the cancel lost: %v", r.began.Sub(cancelAt), r.err)
			}
		}
	}
	t.Logf("faults: drain-gateway delay=%v requests=%d answered=%d answered_during_delay=%d transport_errors_during_delay=%d transport_errors_after=%d readyz_503=%d inflight_at_shutdown=%d answered_inflight=%d",
		delay, len(results), answered, answeredDuring, errDuring, errAfter, readyz503.Load(), inflightSpanned, inflightAnswered)
	if runErr != nil {
		t.Errorf("Run returned %v", runErr)
	}
	if readyz503.Load() == 0 {
		t.Error("/readyz never answered 503 during the drain delay")
	}
	if answeredDuring == 0 {
		t.Error("no request was answered during the drain delay")
	}
	if inflightSpanned == 0 {
		t.Error("no order was in flight when the server shut down: the test did not test that")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("still serving after Run returned")
	}
}
