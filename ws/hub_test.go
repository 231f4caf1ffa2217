package ws

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/obs"
)

// hubServer serves Run's GET /ws handler around a fresh hub on a loopback
// listener, without Kafka: the caller delivers to s.hub itself. It returns
// the server and its host:port.
func hubServer(tb testing.TB, mod func(*Config)) (*server, string) {
	tb.Helper()
	cfg := Config{Config: config.Default()}
	cfg.TokenSecret = strings.Repeat("s", 32)
	cfg.WSMsgRate = config.Rate{}
	if mod != nil {
		mod(&cfg)
	}
	cfg.setDefaults()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := newServer(cfg, log, newHub(), &obs.Readiness{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(s.serveWS), ConnState: trackConnState}
	go srv.Serve(timeoutListener{ln})
	tb.Cleanup(func() {
		s.hub.closeAll(websocket.CloseGoingAway, "test over")
		srv.Close()
		s.waitConns(wait)
	})
	return s, ln.Addr().String()
}

// hubEnv is a testEnv for a hubServer (it has no Kafka to produce to).
func hubEnv(t *testing.T, mod func(*Config)) (*testEnv, *hub) {
	s, addr := hubServer(t, mod)
	return &testEnv{t: t, base: "http://" + addr, wsURL: "ws://" + addr + "/ws", signer: s.signer}, s.hub
}

// count returns how many connections the hub holds for id in each index.
func (h *hub) count(t target, id int64) int {
	n := 0
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.RLock()
		n += len(s.index(t)[id])
		s.mu.RUnlock()
	}
	return n
}

// Viewers that joined a room get each of its pushes once and in order while
// other connections join, leave, watch, unwatch, connect and disconnect all
// around them, in every shard of the hub; the churners get nothing they did
// not ask for, nothing twice and nothing out of order; and once they are
// gone the hub holds nothing of theirs. Run with -race.
func TestHubConcurrentChurn(t *testing.T) {
	const (
		room, otherRoom, event = 1, 2, 5
		stableN, churners      = 2 * hubShards, 8
		rounds                 = 15
		minPushes, maxPushes   = 400, 3000
	)
	e, h := hubEnv(t, func(c *Config) {
		// The stable viewers read in the end, not as pushes arrive.
		c.WSSendQueue, c.WSSendBytes = 1<<20, 1<<30
	})
	stable := make([]*wsClient, stableN)
	for i := range stable {
		stable[i] = e.dial(int64(100 + i))
		stable[i].send(fmt.Sprintf(`{"type":"join","room_id":%d}`, room))
		stable[i].sync()
	}
	push := func(to target, id int64, n int) []byte {
		kind := map[target]string{toUser: "ticket", toEvent: "stock", toRoom: "gift"}[to]
		return fmt.Appendf(nil, `{"type":%q,"id":%d,"n":%d}`, kind, id, n)
	}

	// Churners: each round connects, subscribes, unsubscribes part of it
	// and hangs up, reading all the while. What they read must be pushes
	// for what they subscribed to, each id's in increasing order.
	var wg sync.WaitGroup
	for g := range churners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			uid := int64(1000 + g)
			for r := 0; r < rounds; r++ {
				if err := churn(e, uid, r, room, otherRoom, event); err != nil {
					t.Errorf("churner %d round %d: %v", g, r, err)
					return
				}
			}
		}()
	}
	churned := make(chan struct{})
	go func() { wg.Wait(); close(churned) }()

	// Push while the churners churn, at least minPushes times and at most
	// maxPushes (the stable viewers' clients buffer 4096 frames).
	pushes := 0
	for churning := true; pushes < minPushes || (churning && pushes < maxPushes); pushes++ {
		select {
		case <-churned:
			churning = false
		default:
		}
		n := pushes
		h.deliver(toRoom, room, push(toRoom, room, n), deliveredGift)
		h.deliver(toRoom, otherRoom, push(toRoom, otherRoom, n), deliveredGift)
		h.deliver(toEvent, event, push(toEvent, event, n), deliveredStock)
		h.deliver(toUser, int64(1000+n%churners), push(toUser, int64(1000+n%churners), n), deliveredTicket)
		if n%20 == 0 {
			time.Sleep(time.Millisecond) // let the churners interleave
		}
	}
	<-churned
	t.Logf("%d pushes to each of room %d, room %d, event %d", pushes, room, otherRoom, event)
	for i, c := range stable {
		for n := range pushes {
			c.expect(string(push(toRoom, room, n)))
		}
		// FIFO: the next frame being this one proves nothing came twice.
		end := push(toUser, int64(100+i), -1)
		h.deliver(toUser, int64(100+i), end, deliveredTicket)
		c.expect(string(end))
	}

	deadline := time.Now().Add(wait)
	for {
		users := 0
		for g := range churners {
			users += h.count(toUser, int64(1000+g))
		}
		rooms, others, events := h.count(toRoom, room), h.count(toRoom, otherRoom), h.count(toEvent, event)
		if users == 0 && rooms == stableN && others == 0 && events == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the churners left the hub holds %d of their connections, %d in room %d (want %d), %d in room %d, %d watching event %d",
				users, rooms, room, stableN, others, otherRoom, events, event)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// churn is one round of a churner: connect as uid, join room and
// otherRoom, watch event, then leave room, unwatch event and (every other
// round) hang up without leaving otherRoom. It reads until the server has
// handled all of that, and checks what it read.
func churn(e *testEnv, uid int64, round int, room, otherRoom, event int64) error {
	d := websocket.Dialer{HandshakeTimeout: wait}
	conn, _, err := d.Dial(e.wsURL+"?token="+e.token(uid), nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	frames := []string{
		fmt.Sprintf(`{"type":"join","room_id":%d}`, room),
		fmt.Sprintf(`{"type":"join","room_id":%d}`, otherRoom),
		fmt.Sprintf(`{"type":"watch","event_id":%d}`, event),
		fmt.Sprintf(`{"type":"leave","room_id":%d}`, room),
		fmt.Sprintf(`{"type":"unwatch","event_id":%d}`, event),
	}
	if round%2 == 1 {
		frames = append(frames, fmt.Sprintf(`{"type":"leave","room_id":%d}`, otherRoom))
	}
	for _, f := range frames {
		if err := conn.WriteMessage(websocket.TextMessage, []byte(f)); err != nil {
			return err
		}
	}
	// The pong to this ping comes once the frames above were handled; it
	// ends the read below, which need not wait for another push.
	done := make(chan struct{})
	conn.SetPongHandler(func(string) error {
		close(done)
		return conn.SetReadDeadline(time.Now())
	})
	if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(wait)); err != nil {
		return err
	}
	last := map[string]int{}
	conn.SetReadDeadline(time.Now().Add(wait))
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			select {
			case <-done:
				return nil
			default:
				return err
			}
		}
		var kind string
		var id int64
		var n int
		if _, err := fmt.Sscanf(string(data), `{"type":%q,"id":%d,"n":%d}`, &kind, &id, &n); err != nil {
			return fmt.Errorf("unexpected frame %s", data)
		}
		ok := (kind == "gift" && (id == room || id == otherRoom)) || (kind == "stock" && id == event) || (kind == "ticket" && id == uid)
		if !ok {
			return fmt.Errorf("got %s, which it never asked for", data)
		}
		key := fmt.Sprint(kind, id)
		if prev, seen := last[key]; seen && n <= prev {
			return fmt.Errorf("got %s after n=%d: twice or out of order", data, prev)
		}
		last[key] = n
	}
}

// A viewer that stops reading holds nobody up. Its writes may take an hour
// here, so a dispatcher that waited for its socket even once would stall
// the room for good. While the stuck viewer's socket is full the other
// viewer gets every push; the stuck one, if its queue can hold them all
// ("held"), gets them all in order once it reads again, and otherwise
// ("dropped") is dropped as a slow consumer, its stuck write cut short.
func TestStuckViewerDoesNotHoldTheRoom(t *testing.T) {
	const pushes = 256 // 16 MiB: more than three times what the kernel buffers for the stuck one
	for _, tc := range []struct {
		name  string
		queue int
	}{
		{"held", 2 * pushes},
		{"dropped", 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			credits, stop := make(chan struct{}, 8), make(chan struct{})
			delivered := make(chan struct{})
			// Registered first, so it runs after hubServer's cleanup,
			// which cuts the sockets.
			t.Cleanup(func() { close(stop); <-delivered })
			e, h := hubEnv(t, func(c *Config) {
				c.writeWait = time.Hour
				c.WSSendQueue, c.WSSendBytes = tc.queue, 1<<30
				c.pingPeriod, c.pongWait = time.Hour, time.Hour // never timed out
			})
			reader := e.dial(1)
			// The stuck viewer's socket buffers little, and its client
			// stops reading the socket once it holds a frame nobody took
			// (buffer 0).
			d := e.dialer()
			d.NetDial = func(network, addr string) (net.Conn, error) {
				c, err := net.Dial(network, addr)
				if err == nil {
					err = c.(*net.TCPConn).SetReadBuffer(256 << 10)
				}
				return c, err
			}
			stuck := e.dialWith(d, e.wsURL+"?token="+e.token(2), nil, 0)
			for _, c := range []*wsClient{reader, stuck} {
				c.send(`{"type":"join","room_id":4}`)
				c.sync()
			}

			pad := strings.Repeat("p", 64<<10)
			want := make([]string, pushes)
			for i := range want {
				want[i] = fmt.Sprintf(`{"type":"gift","room_id":4,"n":%d,"pad":%q}`, i, pad)
			}
			// Delivered from another goroutine, so that a dispatcher that
			// hangs fails the test rather than hanging it, and at most 8
			// ahead of the reader, whose queue is as short as the stuck
			// one's in the "dropped" case.
			for range cap(credits) {
				credits <- struct{}{}
			}
			go func() {
				defer close(delivered)
				for _, w := range want {
					select {
					case <-credits:
					case <-stop:
						return
					}
					h.deliver(toRoom, 4, []byte(w), deliveredGift)
				}
			}()
			for _, w := range want {
				reader.expect(w)
				credits <- struct{}{}
			}
			if tc.name == "dropped" {
				stuck.closed() // fails the test if it stays open
				return
			}
			if n := h.count(toRoom, 4); n != 2 {
				t.Fatalf("%d viewers in the room, want 2: the stuck one was dropped", n)
			}
			for _, w := range want {
				stuck.expect(w)
			}
		})
	}
}
