package e2e

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// procMetric reads one sample of a process's internal /metrics, 0 when absent.
func (s *system) procMetric(p *proc, sample string) float64 {
	v, _ := s.sample(p.internal, sample)
	return v
}

// TestReplicas runs the services as k8s runs them, several replicas each in
// processes of their own against one Kafka, Redis and MariaDB: two gateways
// and three workers. The three workers split the gift writers' partitions
// (each writes batches); then a burst of orders and gifts spread over both
// gateways, with one worker killed (SIGKILL) in the middle of it, sells
// exactly the stock and leaves every 202 decided exactly once.
func TestReplicas(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true, mutate: fastReconcile(5*time.Second, 500*time.Millisecond)})
	const stock, buyers, anchor = 300, 900, 7
	const warmFrom, from = 10_000, 20_000
	workers := []*proc{s.startProc("worker"), s.startProc("worker"), s.startProc("worker")}
	gateways := []*proc{s.startProc("gateway"), s.startProc("gateway")}
	ev := s.liveEvent(stock)
	s.seedWallets(warmFrom, 2000, 5)
	s.seedWallets(from, buyers, 5)

	// Gifts from many senders (keyed by sender, so on every partition)
	// until each worker has written gift batches: the group has split.
	next := int64(warmFrom)
	s.waitFor("the three workers to share the gift partitions", func() bool {
		for range 20 {
			if next >= warmFrom+2000 {
				break
			}
			a, err := s.buyOrGift(gateways[next%2].base, false, next, ev, anchor)
			if err == nil && a.Status != 202 && a.Status != 503 {
				t.Fatalf("warm-up gift: %d %s", a.Status, a.Raw)
			}
			next++
		}
		for _, w := range workers {
			if s.procMetric(w, `flashgate_worker_batch_records_count{kind="gift"}`) == 0 {
				return false
			}
		}
		return true
	})

	var mu sync.Mutex
	var orders, gifts []string
	var perGateway [2]atomic.Int64
	var killed atomic.Bool
	_, errs := crowd(2*buyers, 24, func(i int) (answer, error) {
		uid := from + int64(i/2)
		g := i / 2 % 2
		if i == buyers/2 && killed.CompareAndSwap(false, true) {
			workers[1].kill()
		}
		for attempt := 0; ; attempt++ {
			a, err := s.buyOrGift(gateways[g].base, i%2 == 0, uid, ev, anchor)
			if err != nil {
				return a, err
			}
			switch {
			case a.Status == 202:
				perGateway[g].Add(1)
				mu.Lock()
				if i%2 == 0 {
					orders = append(orders, a.str("ticket"))
				} else {
					gifts = append(gifts, a.str("ticket"))
				}
				mu.Unlock()
				return a, nil
			case i%2 == 0 && a.errCode() == "sold_out":
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
			t.Fatal(err)
		}
	}
	if len(orders) != stock {
		t.Errorf("%d orders accepted over two gateways, stock %d", len(orders), stock)
	}
	if perGateway[0].Load() == 0 || perGateway[1].Load() == 0 {
		t.Errorf("accepted per gateway: %d, %d: the burst did not use both", perGateway[0].Load(), perGateway[1].Load())
	}
	f := s.tally("replicas", append(orders, gifts...), 3*time.Minute)
	f.extra = append(f.extra, fmt.Sprintf("per_gateway=%d,%d", perGateway[0].Load(), perGateway[1].Load()))
	f.expect(t, len(orders)+len(gifts), len(orders)+len(gifts))
	s.checkSale(ev)
	if sold := s.count("SELECT COUNT(*) FROM orders WHERE event_id = ? AND active = 1", ev); sold != stock {
		t.Errorf("%d orders in MySQL, stock %d", sold, stock)
	}
}

// TestReplicasWS runs two ws replicas and a gateway as processes: a gift
// sent through the gateway process reaches a viewer connected to the other
// ws replica; when the ws a viewer is on stops (SIGTERM, as in a rollout)
// the viewer reconnects to the other, catches up on a ticket decided while
// it was away through GET /api/v1/tickets, and receives the room's next
// gifts there.
func TestReplicasWS(t *testing.T) {
	s := start(t, options{noWS: true})
	const room, sender, receiver, viewerA, viewerB, prober = 61, 601, 602, 611, 612, 690
	gw := s.startProc("gateway")
	wsA, wsB := s.startProc("ws"), s.startProc("ws")
	wsURL := func(p *proc) string { return "ws" + strings.TrimPrefix(p.base, "http") }

	onA := s.dialWSAt(wsURL(wsA), viewerA)
	onB := s.dialWSAt(wsURL(wsB), viewerB)
	chans := s.giftJoin(room, prober, onA, onB)
	s.seedWallet(sender, 1000)
	giftVia := func(base string) string {
		t.Helper()
		a, err := s.tryAt(base, "POST", fmt.Sprintf("/api/v1/rooms/%d/gifts", room), s.token(sender),
			fmt.Sprintf(`{"gift_id":%d,"receiver_id":%d,"count":1}`, giftRose, receiver))
		if err != nil || a.Status != 202 {
			t.Fatalf("gift through %s: %v %d %s", base, err, a.Status, a.Raw)
		}
		return a.str("ticket")
	}

	// Through the gateway process to both ws processes.
	ticket := giftVia(gw.base)
	for i, ch := range chans {
		if _, ok := nextFrame(ch, 20*time.Second, isGift(ticket)); !ok {
			t.Fatalf("viewer %d (ws %c) did not receive the gift sent through the gateway process", i+1, "AB"[i])
		}
	}

	// ws A rolls: its viewer is closed, a gift is decided meanwhile, the
	// viewer comes back on ws B.
	wsA.term(30 * time.Second)
	for closed, timeout := false, time.After(10*time.Second); !closed; {
		select {
		case _, ok := <-chans[0]:
			closed = !ok
		case <-timeout:
			t.Fatal("the viewer on ws A was not disconnected when ws A stopped")
		}
	}
	missed := giftVia(gw.base)
	if a := s.waitTicket(sender, missed); a.str("status") != "succeeded" {
		t.Fatalf("the gift sent while ws A was down: %s", a.Raw)
	}
	back := s.dialWSAt(wsURL(wsB), viewerA)
	if err := back.WriteJSON(map[string]any{"type": "join", "room_id": room}); err != nil {
		t.Fatal(err)
	}
	backFrames := wsFrames(t, back)
	// The join is registered when a gift reaches it; retry a few.
	for attempt := 0; ; attempt++ {
		if attempt == 10 {
			t.Fatal("the viewer that moved to ws B never received the room's gifts there")
		}
		next := giftVia(s.gateway)
		if _, ok := nextFrame(backFrames, 5*time.Second, isGift(next)); ok {
			break
		}
	}
	if _, ok := nextFrame(chans[1], 20*time.Second, isGift(missed)); !ok {
		t.Error("the viewer that stayed on ws B missed the gift sent while ws A was down")
	}
}
