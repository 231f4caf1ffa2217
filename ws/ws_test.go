package ws

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flashgate/flashgate/internal/apierr"
	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/testenv"
)

// wait is how long a test waits for something that should happen. It is a
// bound for a broken service, not an expectation of speed.
const wait = 10 * time.Second

// Ordering trick used throughout: the test producer writes every record to
// partition 0, the service dispatches a partition's records in order and a
// connection's queue is FIFO. So when a connection receives a later
// "sentinel" record first, it provably did not receive the earlier one —
// no sleeps or short read deadlines needed to prove a non-delivery.

type testEnv struct {
	t      *testing.T
	cfg    config.Config
	base   string // http://host:port
	intern string // http://host:port of the internal listener
	wsURL  string // ws://host:port/ws
	signer *auth.Signer
	prod   *kgo.Client
	stop   func() error // cancels Run and returns what it returned
}

var prefixSeq atomic.Int64

func testConfig(t *testing.T) config.Config {
	cfg := config.Default()
	cfg.Dev = true
	cfg.ApplyDevDefaults()
	cfg.LogLevel = "warn"
	cfg.KafkaPartitions = 2
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	cfg.TopicPrefix = fmt.Sprintf("wstest-%s-%d", name, prefixSeq.Add(1))
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.DrainDelay = 0 // the drain test turns it on
	return cfg
}

// startWS runs the service against a fresh kfake cluster and waits until
// /readyz says it is ready. Records produced from then on are delivered: the
// consumer starts at the service's start time, which is earlier.
func startWS(t *testing.T, mod func(*config.Config)) *testEnv {
	t.Helper()
	return startWSConfig(t, func(c *Config) {
		if mod != nil {
			mod(&c.Config)
		}
	})
}

// startWSConfig is startWS for tests that set ws's own Config fields.
func startWSConfig(t *testing.T, mod func(*Config)) *testEnv {
	t.Helper()
	cfg := Config{Config: testConfig(t)}
	cfg.KafkaBrokers = testenv.Kafka(t, cfg.Config).ListenAddrs()
	mod(&cfg)
	e := runWSConfig(t, cfg)
	e.waitReady()

	prod, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.KafkaBrokers...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	e.prod = prod
	return e
}

// runWS starts Run without waiting for anything.
func runWS(t *testing.T, cfg config.Config) *testEnv {
	t.Helper()
	return runWSConfig(t, Config{Config: cfg})
}

// runWSConfig is runWS with ws's own Config; it sets the Listener.
func runWSConfig(t *testing.T, wcfg Config) *testEnv {
	t.Helper()
	cfg := wcfg.Config
	ln := testenv.Listener(t)
	wcfg.Listener = ln
	iln := testenv.Listener(t)
	wcfg.InternalListener = iln
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, wcfg) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(3 * wait):
				runErr = errors.New("Run did not return after its context was cancelled")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	addr := ln.Addr().String()
	return &testEnv{
		t: t, cfg: cfg, stop: stop,
		base:   "http://" + addr,
		intern: "http://" + iln.Addr().String(),
		wsURL:  "ws://" + addr + "/ws",
		signer: auth.NewSigner(cfg.TokenSecret),
	}
}

func (e *testEnv) get(path string) (int, string) {
	e.t.Helper()
	return e.getAt(e.base, path)
}

// getAt is get against base (e.base or e.intern).
func (e *testEnv) getAt(base, path string) (int, string) {
	e.t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *testEnv) waitReady() {
	e.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		resp, err := http.Get(e.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("ws not ready after %v (last: %v)", wait, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *testEnv) token(uid int64) string { return e.signer.Sign(uid, auth.RoleUser, time.Hour) }

// produce writes records to partition 0 of the results topic, in order.
func (e *testEnv) produce(recs ...*kgo.Record) {
	e.t.Helper()
	for _, r := range recs {
		r.Topic = e.cfg.ResultsTopic()
		r.Partition = 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := e.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		e.t.Fatalf("produce: %v", err)
	}
}

// pushOf returns the Push field of a results record: what clients must get.
func pushOf(t *testing.T, r *kgo.Record) string {
	t.Helper()
	var res bus.Result
	if err := json.Unmarshal(r.Value, &res); err != nil {
		t.Fatal(err)
	}
	return string(res.Push)
}

func ticketRec(t *testing.T, uid int64, ticket string) (*kgo.Record, string) {
	r := bus.TicketResult("", uid, bus.TicketPush{Ticket: ticket, Kind: "order", Status: "succeeded", OrderNo: "O-" + ticket})
	return r, pushOf(t, r)
}

func stockRec(t *testing.T, event, left int64) (*kgo.Record, string) {
	r := bus.StockResult("", bus.StockPush{EventID: event, StockLeft: left, Status: "live"})
	return r, pushOf(t, r)
}

func giftRec(t *testing.T, room int64, ticket string) (*kgo.Record, string) {
	push, _ := json.Marshal(map[string]any{
		"type": "gift", "room_id": room, "ticket": ticket, "sender_id": 1, "receiver_id": 2,
		"gift_id": 3, "count": 1, "effect_url": "https://example.com/rose.webp",
	})
	v, _ := json.Marshal(bus.Result{Type: "gift", RoomID: room, Push: push})
	r := &kgo.Record{Key: []byte(strconv.FormatInt(room, 10)), Value: v}
	return r, pushOf(t, r)
}

// wsClient is a test client: a goroutine reads frames into msgs (so pongs are
// processed), and ends with the read error on errc.
type wsClient struct {
	t     *testing.T
	conn  *websocket.Conn
	msgs  chan []byte
	pongs chan string
	errc  chan error
	pings int
}

func (e *testEnv) dialer() *websocket.Dialer {
	return &websocket.Dialer{HandshakeTimeout: wait}
}

// dial connects as uid (token in the query) and syncs, so the connection is
// registered before the test produces anything.
func (e *testEnv) dial(uid int64) *wsClient {
	e.t.Helper()
	return e.dialWith(e.dialer(), e.wsURL+"?token="+url.QueryEscape(e.token(uid)), nil, 4096)
}

// dialWith connects with d; buffer is the capacity of msgs. With 0 the
// reader stops reading the socket as soon as it holds one undelivered frame,
// which is how a slow client behaves.
func (e *testEnv) dialWith(d *websocket.Dialer, u string, hdr http.Header, buffer int) *wsClient {
	e.t.Helper()
	conn, resp, err := d.Dial(u, hdr)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		e.t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	c := &wsClient{t: e.t, conn: conn, msgs: make(chan []byte, buffer), pongs: make(chan string, 16), errc: make(chan error, 1)}
	conn.SetPongHandler(func(s string) error { c.pongs <- s; return nil })
	go func() {
		defer close(c.msgs)
		for {
			typ, data, err := conn.ReadMessage()
			if err == nil && typ != websocket.TextMessage {
				err = fmt.Errorf("got a frame of type %d; the server's pushes are JSON text frames", typ)
			}
			if err != nil {
				c.errc <- err
				return
			}
			c.msgs <- data
		}
	}()
	e.t.Cleanup(func() { conn.Close() })
	c.sync()
	return c
}

// send writes a client frame.
func (c *wsClient) send(frame string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		c.t.Fatalf("send %s: %v", frame, err)
	}
}

// sync returns once the server has handled every frame sent before it: the
// server reads frames in order and answers a ping only after the frames
// ahead of it, and it starts reading only after registering the connection.
func (c *wsClient) sync() {
	c.t.Helper()
	c.pings++
	want := "sync-" + strconv.Itoa(c.pings)
	if err := c.conn.WriteControl(websocket.PingMessage, []byte(want), time.Now().Add(wait)); err != nil {
		c.t.Fatalf("ping: %v", err)
	}
	timeout := time.After(wait)
	for {
		select {
		case got := <-c.pongs:
			if got == want {
				return
			}
		case <-timeout:
			c.t.Fatalf("no pong %q within %v", want, wait)
		}
	}
}

// expect asserts that the next frame is exactly want.
func (c *wsClient) expect(want string) {
	c.t.Helper()
	select {
	case got, ok := <-c.msgs:
		if !ok {
			c.t.Fatalf("connection ended (%v) while waiting for %s", <-c.errc, want)
		}
		if string(got) != want {
			c.t.Fatalf("got frame\n  %s\nwant\n  %s", got, want)
		}
	case <-time.After(wait):
		c.t.Fatalf("no frame within %v; want %s", wait, want)
	}
}

// closed drains frames until the server ends the connection and returns the
// error that ended it.
func (c *wsClient) closed() error {
	c.t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case _, ok := <-c.msgs:
			if !ok {
				return <-c.errc
			}
		case <-timeout:
			c.t.Fatalf("connection still open after %v", wait)
		}
	}
}

// TestTicketPushToUserConnections: ticket pushes reach every connection of their user and nobody else.
func TestTicketPushToUserConnections(t *testing.T) {
	e := startWS(t, nil)
	a1, a2 := e.dial(1), e.dial(1)
	b := e.dial(2)

	recA, wantA := ticketRec(t, 1, "T-a")
	recB, wantB := ticketRec(t, 2, "T-b")
	recA2, wantA2 := ticketRec(t, 1, "T-a2")
	e.produce(recA, recB, recA2)

	a1.expect(wantA)
	a2.expect(wantA)
	b.expect(wantB) // first frame for user 2: it did not get user 1's ticket
	a1.expect(wantA2)
	a2.expect(wantA2) // next frame for user 1: it did not get user 2's ticket
}

// TestAuth: authentication happens before the upgrade and answers API errors.
func TestAuth(t *testing.T) {
	e := startWS(t, nil)
	other := auth.NewSigner("some-other-secret-of-enough-length")
	cases := []struct {
		name  string
		query string
		hdr   string
	}{
		{"missing", "", ""},
		{"malformed", "garbage", ""},
		{"bad signature", other.Sign(1, auth.RoleUser, time.Hour), ""},
		{"expired", e.signer.Sign(1, auth.RoleUser, -time.Minute), ""},
		{"minted for ten years", e.signer.Sign(1, auth.RoleAdmin, 10*365*24*time.Hour), ""},
		{"lifetime past FLASHGATE_TOKEN_MAX_TTL", e.signer.Sign(1, auth.RoleUser, e.cfg.TokenMaxTTL+time.Hour), ""},
		{"bad header token", "", "Bearer garbage"},
		{"expired header token", "", "Bearer " + e.signer.Sign(1, auth.RoleUser, -time.Minute)},
		{"not a bearer header", "", "Basic " + e.token(1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := e.wsURL
			if tc.query != "" {
				u += "?token=" + url.QueryEscape(tc.query)
			}
			hdr := http.Header{}
			if tc.hdr != "" {
				hdr.Set("Authorization", tc.hdr)
			}
			conn, resp, err := e.dialer().Dial(u, hdr)
			if err == nil {
				conn.Close()
				t.Fatal("connection was upgraded")
			}
			if resp == nil {
				t.Fatalf("no HTTP response: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if string(body) != string(apierr.Unauthorized.Body()) {
				t.Errorf("body %s, want %s", body, apierr.Unauthorized.Body())
			}
		})
	}

	t.Run("header token", func(t *testing.T) {
		hdr := http.Header{"Authorization": {"Bearer " + e.token(7)}}
		c := e.dialWith(e.dialer(), e.wsURL, hdr, 16)
		rec, want := ticketRec(t, 7, "T-hdr")
		e.produce(rec)
		c.expect(want)
	})

	t.Run("valid token, not a WebSocket request", func(t *testing.T) {
		status, body := e.get("/ws?token=" + url.QueryEscape(e.token(7)))
		if status != http.StatusBadRequest || !strings.Contains(body, `"invalid_request"`) {
			t.Fatalf("got %d %s, want 400 invalid_request", status, body)
		}
	})
}

// TestWatchStock: stock pushes reach watchers of their event only while they watch.
func TestWatchStock(t *testing.T) {
	e := startWS(t, nil)
	c := e.dial(5)
	c.send(`{"type":"watch","event_id":7}`)
	c.sync()

	rec, want := stockRec(t, 7, 99)
	e.produce(rec)
	c.expect(want)

	c.send(`{"type":"unwatch","event_id":7}`)
	c.sync()
	after, _ := stockRec(t, 7, 98)
	other, _ := stockRec(t, 8, 10) // never watched
	sentinel, wantSentinel := ticketRec(t, 5, "T-sentinel")
	e.produce(after, other, sentinel)
	c.expect(wantSentinel)
}

// TestJoinRoomGift: gift pushes reach the room's members only while they are in it.
func TestJoinRoomGift(t *testing.T) {
	e := startWS(t, nil)
	a := e.dial(10)
	b := e.dial(11)
	a.send(`{"type":"join","room_id":100}`)
	b.send(`{"type":"join","room_id":200}`)
	a.sync()
	b.sync()

	g100, want100 := giftRec(t, 100, "G-1")
	g200, want200 := giftRec(t, 200, "G-2")
	e.produce(g100, g200)
	a.expect(want100)
	b.expect(want200) // b's first frame: it did not get room 100's gift

	a.send(`{"type":"leave","room_id":100}`)
	a.sync()
	again, _ := giftRec(t, 100, "G-3")
	sentinel, wantSentinel := ticketRec(t, 10, "T-sentinel")
	e.produce(again, sentinel)
	a.expect(wantSentinel) // neither room 200's gift nor room 100's after leaving
}

// Frames the server does not accept are ignored; an oversized one ends the
// connection with 1009.
func TestClientFrames(t *testing.T) {
	e := startWS(t, nil)
	c := e.dial(20)
	for _, f := range []string{
		`not json`, `{"type":"join","room_id":0}`, `{"type":"join","room_id":-5}`,
		`{"type":"join","room_id":"1"}`, `{"type":"watch","room_id":1}`, `{"type":"dance","room_id":1}`,
		`{"type":"join","room_id":1.5}`, `[]`, ``,
	} {
		c.send(f)
	}
	c.send(`{"type":"join","room_id":1}`)
	c.sync()
	rec, want := giftRec(t, 1, "G-ok")
	e.produce(rec)
	c.expect(want)

	c.send(`{"type":"join","room_id":2,"pad":"` + strings.Repeat("x", maxFrameSize) + `"}`)
	err := c.closed()
	if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("oversized frame: connection ended with %v, want close 1009", err)
	}
}

// metricValue scrapes /metrics for one sample.
func (e *testEnv) metricValue(series string) float64 {
	e.t.Helper()
	_, body := e.getAt(e.intern, "/metrics")
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				e.t.Fatalf("metric %s: %v", series, err)
			}
			return f
		}
	}
	return 0
}

// paddedRound pushes perRound failed tickets to user, each with pad as
// its reason, numbered on from *n, and waits until reader has them all. It
// returns the bytes of the pushes.
func (e *testEnv) paddedRound(reader *wsClient, user int64, perRound int, pad string, n *int) int {
	e.t.Helper()
	recs := make([]*kgo.Record, perRound)
	wants := make([]string, perRound)
	bytes := 0
	for i := range recs {
		*n++
		r := bus.TicketResult("", user, bus.TicketPush{Ticket: fmt.Sprintf("T-%d", *n), Kind: "order", Status: "failed", Reason: pad})
		recs[i], wants[i] = r, pushOf(e.t, r)
		bytes += len(wants[i])
	}
	e.produce(recs...)
	for _, w := range wants {
		reader.expect(w)
	}
	return bytes
}

// TestSlowClientDropped: a client that stops reading is disconnected; the others keep receiving.
func TestSlowClientDropped(t *testing.T) {
	const queue, perRound = 16, 8 // a normal client never has more than perRound queued
	e := startWS(t, func(c *config.Config) { c.WSSendQueue = queue })
	const slowSeries = `flashgate_ws_dropped_connections_total{reason="slow"}`
	dropsBefore := e.metricValue(slowSeries)

	normal := e.dial(30)
	slow := e.dialWith(e.dialer(), e.wsURL+"?token="+url.QueryEscape(e.token(30)), nil, 0)

	pad := strings.Repeat("p", 32<<10) // big frames fill the kernel buffers quickly
	n := 0
	round := func() { e.paddedRound(normal, 30, perRound, pad, &n) }
	for i := 0; e.metricValue(slowSeries) == dropsBefore; i++ {
		if i == 500 {
			t.Fatalf("slow client not dropped after %d messages", n)
		}
		round()
	}
	round() // the normal client still gets everything
	rec, want := ticketRec(t, 30, "T-last")
	e.produce(rec)
	normal.expect(want)

	err := slow.closed()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("slow client: %v, want the server to close the connection", err)
	}
	t.Logf("slow client dropped after %d messages: %v", n, err)
}

// FLASHGATE_WS_SEND_BYTES: with a message limit it can never reach, a client
// that stops reading is dropped once the bytes queued for it pass the
// budget, while a client that reads gets every push, many times the budget
// in all (so bytes are given back once written).
func TestSlowClientDroppedByBytes(t *testing.T) {
	// A round is half the budget, so a client that reads keeps well
	// within it even when a whole round reaches the server at once.
	const budget, perRound = 256 << 10, 8
	e := startWS(t, func(c *config.Config) {
		c.WSSendQueue = 1 << 20 // far more than this test sends
		c.WSSendBytes = budget
	})
	const slowSeries = `flashgate_ws_dropped_connections_total{reason="slow"}`
	dropsBefore := e.metricValue(slowSeries)

	normal := e.dial(33)
	slow := e.dialWith(e.dialer(), e.wsURL+"?token="+url.QueryEscape(e.token(33)), nil, 0)

	pad := strings.Repeat("p", 16<<10)
	n, bytes := 0, 0
	round := func() { bytes += e.paddedRound(normal, 33, perRound, pad, &n) }
	for i := 0; e.metricValue(slowSeries) == dropsBefore; i++ {
		if i == 500 {
			t.Fatalf("slow client not dropped after %d messages", n)
		}
		round()
	}
	for bytes < 8*budget {
		round() // the normal client still gets everything
	}
	rec, want := ticketRec(t, 33, "T-last")
	e.produce(rec)
	normal.expect(want)

	err := slow.closed()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("slow client: %v, want the server to close the connection", err)
	}
	t.Logf("slow client dropped after %d messages (%d KiB to the normal one): %v", n, bytes>>10, err)
}

// TestOperations: the operations endpoints, /healthz and /readyz on both listeners, /metrics
// on the internal one only.
func TestOperations(t *testing.T) {
	e := startWS(t, nil)
	for _, base := range []string{e.base, e.intern} {
		if status, body := e.getAt(base, "/healthz"); status != http.StatusOK {
			t.Errorf("%s/healthz: %d %s", base, status, body)
		}
		if status, body := e.getAt(base, "/readyz"); status != http.StatusOK || body != `{"status":"ready"}` {
			t.Errorf("%s/readyz: %d %s", base, status, body)
		}
	}
	if status, body := e.get("/metrics"); status != http.StatusNotFound || strings.Contains(body, "flashgate_") {
		t.Errorf("/metrics on the public listener: %d %s", status, body)
	}
	if status, _ := e.getAt(e.intern, "/ws"); status != http.StatusNotFound {
		t.Errorf("/ws on the internal listener: %d", status)
	}
	e.dial(40)
	if got := e.metricValue("flashgate_ws_connections"); got < 1 {
		t.Errorf("flashgate_ws_connections = %v with a client connected", got)
	}
}

// /readyz reports Kafka being unreachable.
func TestReadyzKafkaDown(t *testing.T) {
	cfg := testConfig(t)
	cfg.KafkaBrokers = []string{fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))}
	e := runWS(t, cfg)
	deadline := time.Now().Add(wait)
	for {
		resp, err := http.Get(e.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The internal listener says why; the public one only that it is not
	// ready (no broker address for the internet).
	if status, body := e.getAt(e.intern, "/readyz"); status != http.StatusServiceUnavailable || !strings.Contains(body, "not ready: ") {
		t.Fatalf("internal /readyz with Kafka down: %d %s, want 503 with the reason", status, body)
	}
	if status, body := e.get("/readyz"); status != http.StatusServiceUnavailable || body != `{"error":{"code":"unavailable","message":"not ready"}}` {
		t.Fatalf("public /readyz with Kafka down: %d %s, want a bare 503", status, body)
	}
}

// Shutdown closes connections with 1001 and Run returns nil.
func TestShutdown(t *testing.T) {
	e := startWS(t, nil)
	c := e.dial(50)
	if err := e.stop(); err != nil {
		t.Fatalf("Run returned %v, want nil", err)
	}
	if err := c.closed(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("connection ended with %v, want close 1001", err)
	}
	if _, err := http.Get(e.base + "/healthz"); err == nil {
		t.Fatal("still serving after Run returned")
	}
}

// TestShutdownDrainDelay: on shutdown /readyz turns 503 first, and for
// FLASHGATE_DRAIN_DELAY the service goes on serving: connected clients still
// get their pushes and new clients can still connect, so that nobody is
// pushed off before the load balancer has stopped sending clients here. Then
// every connection gets 1001 and Run returns nil.
func TestShutdownDrainDelay(t *testing.T) {
	const delay = 5 * time.Second
	e := startWS(t, func(c *config.Config) { c.DrainDelay = delay })
	before := e.dial(70)
	began := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- e.stop() }()

	deadline := time.Now().Add(wait)
	for {
		status, body := e.get("/readyz")
		if status == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %s after the shutdown began", status, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	during := e.dial(71)
	rec, push := ticketRec(t, 70, "o1-drain-before")
	rec2, push2 := ticketRec(t, 71, "o1-drain-during")
	e.produce(rec, rec2)
	before.expect(push)
	during.expect(push2)
	if took := time.Since(began); took >= delay {
		t.Fatalf("the checks took %v, longer than the drain delay: rerun on a less loaded machine", took)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) before the drain delay was over", err)
	default:
	}
	if status, _ := e.get("/readyz"); status != http.StatusServiceUnavailable {
		t.Errorf("/readyz %d during the drain delay, want 503", status)
	}

	if err := <-stopped; err != nil {
		t.Fatalf("Run returned %v, want nil", err)
	}
	for _, c := range []*wsClient{before, during} {
		if err := c.closed(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
			t.Errorf("connection ended with %v, want close 1001", err)
		}
	}
}

func TestRunValidates(t *testing.T) {
	base := config.Default()
	cases := []struct {
		name string
		mod  func(*config.Config)
		want error
	}{
		{"no token secret", func(c *config.Config) { c.TokenSecret = "" }, ErrNoTokenSecret},
		{"dev secret outside dev", func(c *config.Config) { c.TokenSecret = config.DevTokenSecret }, nil},
		{"no brokers", func(c *config.Config) { c.TokenSecret = strings.Repeat("s", 32); c.KafkaBrokers = nil }, ErrNoBrokers},
		{"no address", func(c *config.Config) { c.TokenSecret = strings.Repeat("s", 32); c.WSAddr = "" }, ErrNoAddr},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.mod(&cfg)
			err := Run(context.Background(), Config{Config: cfg})
			if err == nil {
				t.Fatal("Run accepted the configuration")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseFrame(t *testing.T) {
	cases := []struct {
		in     string
		wantOp frameOp
		wantID int64
	}{
		{`{"type":"join","room_id":123}`, opJoin, 123},
		{`{"type":"leave","room_id":123}`, opLeave, 123},
		{`{"type":"watch","event_id":1}`, opWatch, 1},
		{`{"type":"unwatch","event_id":9223372036854775807}`, opUnwatch, 9223372036854775807},
		{`{"type":"join","room_id":5,"extra":true}`, opJoin, 5},
		{`{"type":"join","event_id":5}`, opNone, 0},
		{`{"type":"watch","room_id":5}`, opNone, 0},
		{`{"type":"join","room_id":0}`, opNone, 0},
		{`{"type":"join","room_id":-1}`, opNone, 0},
		{`{"type":"join","room_id":1e3}`, opNone, 0},
		{`{"type":"join","room_id":9223372036854775808}`, opNone, 0},
		{`{"type":"JOIN","room_id":1}`, opNone, 0},
		{`{"room_id":1}`, opNone, 0},
		{`null`, opNone, 0},
		{`{`, opNone, 0},
	}
	for _, tc := range cases {
		op, id := parseFrame([]byte(tc.in))
		if op != tc.wantOp || id != tc.wantID {
			t.Errorf("parseFrame(%s) = %v, %d; want %v, %d", tc.in, op, id, tc.wantOp, tc.wantID)
		}
	}
}

func FuzzParseFrame(f *testing.F) {
	for _, s := range []string{`{"type":"join","room_id":1}`, `{"type":"unwatch","event_id":2}`, `{"type":"leave"}`, `x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		op, id := parseFrame(data)
		if (op == opNone) != (id == 0) || id < 0 {
			t.Fatalf("parseFrame(%q) = %v, %d", data, op, id)
		}
	})
}

// An oversized frame and a message flood each end that connection only.
func TestAbuseEndsOnlyThatConnection(t *testing.T) {
	e := startWS(t, func(c *config.Config) { c.WSMsgRate = config.Rate{PerSecond: 5, Burst: 10} })
	viewer := e.dial(30)
	viewer.send(`{"type":"join","room_id":7}`)
	viewer.sync()

	big := e.dial(31)
	big.send(`{"type":"join","room_id":7,"pad":"` + strings.Repeat("x", maxFrameSize) + `"}`)
	if err := big.closed(); !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("oversized frame: %v, want close 1009", err)
	}

	flooder := e.dial(32)
	for i := 0; i < 100; i++ {
		if err := flooder.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"watch","event_id":1}`)); err != nil {
			break // the server already closed it
		}
	}
	if err := flooder.closed(); !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("flood: %v, want close 1008", err)
	}

	rec, want := giftRec(t, 7, "G-after-abuse")
	e.produce(rec)
	viewer.expect(want)
}

// FLASHGATE_WS_ORIGINS: browsers from other origins are refused before the
// upgrade; listed origins and clients without an Origin header connect.
func TestOrigins(t *testing.T) {
	e := startWS(t, func(c *config.Config) { c.WSOrigins = "https://live.example.com, https://m.example.com" })
	u := e.wsURL + "?token=" + url.QueryEscape(e.token(40))
	for origin, ok := range map[string]bool{
		"https://live.example.com": true,
		"https://M.example.com":    true,
		"":                         true,
		"https://evil.example.net": false,
		"null":                     false,
	} {
		hdr := http.Header{}
		if origin != "" {
			hdr.Set("Origin", origin)
		}
		conn, resp, err := e.dialer().Dial(u, hdr)
		if ok {
			if err != nil {
				t.Errorf("origin %q refused: %v", origin, err)
				continue
			}
			conn.Close()
			continue
		}
		if err == nil {
			conn.Close()
			t.Errorf("origin %q accepted", origin)
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %q: response %v, want 403", origin, resp)
		}
	}
}

// TestDevRefusesPublicListener: in dev mode ws accepts any origin and the
// dev secret, so it refuses a listener beyond loopback unless
// FLASHGATE_DEV_PUBLIC=1.
func TestDevRefusesPublicListener(t *testing.T) {
	cfg := config.Default()
	cfg.Dev = true
	cfg.ApplyDevDefaults()
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), Config{Config: cfg, Listener: ln})
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") || !strings.Contains(err.Error(), "FLASHGATE_DEV_PUBLIC=1") {
		t.Fatalf("Run on %s in dev mode: %v", ln.Addr(), err)
	}
}

// dialStatus tries to connect as uid and returns the HTTP status of a
// refused handshake (0 when it succeeded) and its body.
func (e *testEnv) dialStatus(uid int64, hdr http.Header) (int, string, *websocket.Conn) {
	e.t.Helper()
	conn, resp, err := e.dialer().Dial(e.wsURL+"?token="+url.QueryEscape(e.token(uid)), hdr)
	if err == nil {
		e.t.Cleanup(func() { conn.Close() })
		return 0, "", conn
	}
	if resp == nil {
		e.t.Fatalf("dial: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// TestConnectionLimits: a user's connection past FLASHGATE_WS_MAX_CONNS_PER_USER
// and a client address's past FLASHGATE_WS_MAX_CONNS_PER_IP are refused 429,
// and any past FLASHGATE_WS_MAX_CONNS 503, before the upgrade, in the API's
// JSON shape; a closed connection frees its place.
func TestConnectionLimits(t *testing.T) {
	e := startWS(t, func(c *config.Config) {
		c.WSMaxPerUser, c.WSMaxPerIP, c.WSMaxConns = 2, 3, 4
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	first := e.dial(1)
	e.dial(1)
	if st, body, _ := e.dialStatus(1, nil); st != 429 || !strings.Contains(body, `"code":"rate_limited"`) {
		t.Errorf("third connection of one user: %d %s", st, body)
	}
	e.dial(2)
	// The fourth from this address: behind the trusted proxy (127.0.0.1)
	// the address is the X-Forwarded-For one.
	if st, body, _ := e.dialStatus(3, nil); st != 429 || !strings.Contains(body, "from your address") {
		t.Errorf("fourth connection from one address: %d %s", st, body)
	}
	if st, body, _ := e.dialStatus(3, http.Header{"X-Forwarded-For": {"203.0.113.7"}}); st != 0 {
		t.Fatalf("a connection from another client behind the proxy: %d %s", st, body)
	}
	if st, body, _ := e.dialStatus(4, http.Header{"X-Forwarded-For": {"203.0.113.8"}}); st != 503 || !strings.Contains(body, `"code":"unavailable"`) {
		t.Errorf("fifth connection: %d %s", st, body)
	}
	first.conn.Close()
	deadline := time.Now().Add(wait)
	for {
		st, _, _ := e.dialStatus(1, http.Header{"X-Forwarded-For": {"203.0.113.9"}})
		if st == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed connection's place never came free: %d", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPingFlood: pings count toward FLASHGATE_WS_MSG_RATE, so a client that
// floods them is closed with 1008 like one that floods messages.
func TestPingFlood(t *testing.T) {
	e := startWS(t, func(c *config.Config) { c.WSMsgRate = config.Rate{PerSecond: 5, Burst: 10} })
	c := e.dial(1)
	for i := 0; i < 100; i++ {
		if err := c.conn.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(time.Second)); err != nil {
			break // closed already
		}
	}
	if err := c.closed(); !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("after 100 pings at rate 5/s burst 10: %v, want close 1008", err)
	}
	// A client that pings now and then is answered.
	c = e.dial(2)
	for i := 0; i < 3; i++ {
		c.conn.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(time.Second))
		select {
		case p := <-c.pongs:
			if p != "hi" {
				t.Fatalf("pong %q", p)
			}
		case <-time.After(wait):
			t.Fatal("no pong")
		}
	}
}

// TestTokenExpiryCloses: a connection whose token expires is closed with
// 4001 "token expired", so that the client reconnects with a fresh one.
func TestTokenExpiryCloses(t *testing.T) {
	e := startWS(t, nil)
	tok := e.signer.Sign(1, auth.RoleUser, 1500*time.Millisecond)
	began := time.Now()
	c := e.dialWith(e.dialer(), e.wsURL+"?token="+url.QueryEscape(tok), nil, 16)
	err := c.closed()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Text != "token expired" {
		t.Fatalf("connection with a 1.5 s token ended with %v, want close 4001 \"token expired\"", err)
	}
	if took := time.Since(began); took > 4*time.Second {
		t.Errorf("closed %v after connecting, want about 1.5 s", took)
	}
}

// TestDefaultOrigins: with no FLASHGATE_WS_ORIGINS outside dev mode, a
// browser may connect only from a page of the ws host itself; clients that
// send no Origin (apps, servers) are let through. In dev mode any origin is.
func TestDefaultOrigins(t *testing.T) {
	for _, dev := range []bool{false, true} {
		e := startWS(t, func(c *config.Config) {
			if !dev {
				c.Dev, c.TokenSecret, c.PaySecret = false, "a-random-ws-test-secret-of-32-bytes", ""
			}
		})
		host := strings.TrimPrefix(e.base, "http://")
		for origin, ok := range map[string]bool{
			"":                          true,
			"http://" + host:            true,
			"https://" + host:           true,
			"https://evil.example.net":  dev,
			"http://" + host + ".evil":  dev,
			"http://localhost.evil.net": dev,
		} {
			hdr := http.Header{}
			if origin != "" {
				hdr.Set("Origin", origin)
			}
			st, body, conn := e.dialStatus(41, hdr)
			switch {
			case ok && st != 0:
				t.Errorf("dev=%v: origin %q refused: %d %s", dev, origin, st, body)
			case !ok && st != http.StatusForbidden:
				t.Errorf("dev=%v: origin %q: %d, want 403", dev, origin, st)
			}
			if conn != nil {
				conn.Close()
			}
		}
	}
}
