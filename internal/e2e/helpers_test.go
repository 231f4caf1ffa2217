// Package e2e tests flashgate end to end: the real gateway, worker and ws,
// in-process, against a private redis-server, a fresh MariaDB database and an
// in-process kfake broker, driven over HTTP and WebSocket like a client.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jmoiron/sqlx"
	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flashgate/flashgate/gateway"
	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/sandbox"
	"github.com/flashgate/flashgate/internal/store"
	"github.com/flashgate/flashgate/internal/testenv"
	"github.com/flashgate/flashgate/internal/wallet"
	"github.com/flashgate/flashgate/worker"
	"github.com/flashgate/flashgate/ws"
)

// system is one running flashgate.
type system struct {
	t       *testing.T
	cfg     config.Config
	gateway string // base URL
	// gatewayInternal is the base URL of the gateway's internal listener:
	// /metrics, readiness details and the admin routes.
	gatewayInternal string
	worker          string
	ws              string // ws://host:port
	wsInternal      string // base URL of ws's internal listener (metrics)
	// wsLn and wsILn are ws's listeners until startWS hands them over;
	// stopWS cancels ws alone, which restartWS starts again on its address.
	wsLn, wsILn net.Listener
	stopWS      context.CancelFunc
	wsDone      chan struct{}
	redis       *store.Redis
	// raw is a plain client of the same Redis, for tests that look at or
	// break keys behind the store's back (the store keeps its own sealed).
	raw    rueidis.Client
	db     *sqlx.DB
	kafka  *kfake.Cluster
	signer *auth.Signer

	mysqlProxy  *testenv.Proxy       // options.mysqlProxy
	redisServer *testenv.RedisServer // options.restartableRedis
	directDSN   string
	client      *http.Client

	stop  context.CancelFunc
	wg    sync.WaitGroup
	errMu sync.Mutex
	errs  []error
}

type options struct {
	mutate   func(*config.Config)
	noWorker bool
	noWS     bool
	// mysqlProxy puts a stallable proxy (s.mysqlProxy) between the services
	// and MariaDB; the test's own connection (s.db) stays direct.
	mysqlProxy bool
	// restartableRedis gives the system a Redis the test can kill and
	// restart (s.redisServer).
	restartableRedis bool
	// orderPayments is the gateway's payment provider (nil: the sandbox).
	orderPayments gateway.OrderPayments
}

func start(t *testing.T, opts options) *system {
	t.Helper()
	cfg, kc := testenv.ConfigKafka(t)
	if opts.mutate != nil {
		opts.mutate(&cfg)
	}
	s := &system{t: t, cfg: cfg, kafka: kc, signer: auth.NewSigner(cfg.TokenSecret), directDSN: cfg.MySQLDSN}
	if opts.restartableRedis {
		s.redisServer = testenv.NewRedis(t)
		cfg.RedisAddr = s.redisServer.Addr
	}
	if opts.mysqlProxy {
		c, err := db.ParseDSN(cfg.MySQLDSN)
		if err != nil {
			t.Fatal(err)
		}
		s.mysqlProxy = testenv.NewProxy(t, c.Addr)
		c.Addr = s.mysqlProxy.Addr()
		cfg.MySQLDSN = c.FormatDSN()
	}
	s.cfg = cfg
	var err error
	if s.redis, err = store.New(cfg.RedisAddr); err != nil {
		t.Fatal(err)
	}
	if s.raw, err = rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{cfg.RedisAddr}, DisableCache: true}); err != nil {
		t.Fatal(err)
	}
	if s.db, err = db.Open(context.Background(), s.directDSN); err != nil {
		t.Fatal(err)
	}
	s.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256, IdleConnTimeout: 30 * time.Second,
	}}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel

	if !opts.noWS {
		// Listening before the gateway starts, so that its pages are told
		// where the WebSocket is.
		s.listenWS()
		cfg.WSPublicURL = s.ws + "/ws"
		s.cfg = cfg
	}
	gln, giln := testenv.Listener(t), testenv.Listener(t)
	s.gateway = "http://" + gln.Addr().String()
	s.gatewayInternal = "http://" + giln.Addr().String()
	s.run("gateway", func() error {
		return gateway.Run(ctx, gateway.Config{Config: cfg, Listener: gln, InternalListener: giln, OrderPayments: opts.orderPayments})
	})
	if !opts.noWorker {
		wln := testenv.Listener(t)
		s.worker = "http://" + wln.Addr().String()
		s.run("worker", func() error { return worker.Run(ctx, worker.Config{Config: cfg, Listener: wln}) })
	}
	if !opts.noWS {
		s.startWS()
	}
	t.Cleanup(s.shutdown)
	s.waitReady(s.gateway)
	if s.worker != "" {
		s.waitReady(s.worker)
	}
	if s.ws != "" {
		s.waitReady("http" + strings.TrimPrefix(s.ws, "ws"))
	}
	return s
}

func (s *system) run(name string, f func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := f(); err != nil {
			s.errMu.Lock()
			s.errs = append(s.errs, fmt.Errorf("%s: %w", name, err))
			s.errMu.Unlock()
		}
	}()
}

func (s *system) shutdown() {
	s.client.CloseIdleConnections()
	s.stop()
	if s.stopWS != nil {
		s.stopWS()
	}
	s.wg.Wait()
	s.redis.Close()
	s.raw.Close()
	s.db.Close()
	for _, err := range s.errs {
		s.t.Errorf("service failed: %v", err)
	}
}

func (s *system) waitReady(base string) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := s.client.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		s.errMu.Lock()
		failed := len(s.errs) > 0
		s.errMu.Unlock()
		if failed {
			s.t.Fatalf("a service failed to start: %v", s.errs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("%s never became ready", base)
}

func (s *system) token(uid int64) string { return s.signer.Sign(uid, auth.RoleUser, time.Hour) }
func (s *system) adminToken() string     { return s.signer.Sign(1_000_000, auth.RoleAdmin, time.Hour) }

// answer is an HTTP answer with its decoded JSON body.
type answer struct {
	Status int
	Header http.Header
	Raw    string
	Body   map[string]any
}

func (a answer) errCode() string {
	if e, ok := a.Body["error"].(map[string]any); ok {
		s, _ := e["code"].(string)
		return s
	}
	return ""
}

func (a answer) str(k string) string { v, _ := a.Body[k].(string); return v }

// do sends a request to the gateway. token "" sends no Authorization header.
func (s *system) do(method, path, token, body string, hdr ...string) answer {
	s.t.Helper()
	a, err := s.try(method, path, token, body, hdr...)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return a
}

// try is do without failing the test. Admin routes go to the gateway's
// internal listener, the only one that serves them.
func (s *system) try(method, path, token, body string, hdr ...string) (answer, error) {
	base := s.gateway
	if strings.HasPrefix(path, "/api/v1/admin/") {
		base = s.gatewayInternal
	}
	return s.tryAt(base, method, path, token, body, hdr...)
}

// tryAt is try against the gateway at base (one in a process of its own).
func (s *system) tryAt(base, method, path, token, body string, hdr ...string) (answer, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return answer{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	json.Unmarshal(raw, &a.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return a, fmt.Errorf("Content-Type %q, want application/json (body %s)", ct, raw)
	}
	return a, nil
}

// createEvent creates a live event through the admin API and waits until it
// is on sale in Redis.
func (s *system) createEvent(stock int, starts, ends time.Time) int64 {
	s.t.Helper()
	a := s.do("POST", "/api/v1/admin/events", s.adminToken(), fmt.Sprintf(
		`{"name":"test sale","price":1999,"stock":%d,"starts_at":%q,"ends_at":%q}`,
		stock, starts.UTC().Format(time.RFC3339), ends.UTC().Format(time.RFC3339)))
	if a.Status != 201 {
		s.t.Fatalf("create event: %d %s", a.Status, a.Raw)
	}
	id := int64(a.Body["id"].(float64))
	if starts.After(time.Now().Add(s.cfg.WarmAhead)) {
		return id // not due for warm-up yet
	}
	s.waitFor("event warm in Redis", func() bool {
		st, _ := s.redis.Stocks(context.Background(), []int64{id})
		_, ok := st[id]
		return ok
	})
	return id
}

func (s *system) liveEvent(stock int) int64 {
	return s.createEvent(stock, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
}

func (s *system) waitFor(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	s.t.Fatalf("timed out waiting for %s", what)
}

func (s *system) count(q string, args ...any) int {
	s.t.Helper()
	var n int
	if err := s.db.Get(&n, q, args...); err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	return n
}

func (s *system) redisStock(eventID int64) (int64, bool) {
	st, err := s.redis.Stocks(context.Background(), []int64{eventID})
	if err != nil {
		s.t.Fatal(err)
	}
	v, ok := st[eventID]
	return v, ok
}

func (s *system) buyerTicket(eventID, userID int64) string {
	v, _ := s.raw.Do(context.Background(), s.raw.B().Hget().Key(store.BuyersKey(eventID)).Field(fmt.Sprint(userID)).Build()).ToString()
	return v
}

// order places an order for the user.
func (s *system) order(eventID, userID int64) answer {
	return s.do("POST", fmt.Sprintf("/api/v1/events/%d/orders", eventID), s.token(userID), "{}")
}

// waitTicket polls a ticket until it is decided and returns it.
func (s *system) waitTicket(userID int64, ticket string) answer {
	s.t.Helper()
	var a answer
	s.waitFor("ticket "+ticket+" decided", func() bool {
		a = s.do("GET", "/api/v1/tickets/"+ticket, s.token(userID), "")
		return a.Status == 200 && a.str("status") != "pending"
	})
	return a
}

// Refused requests: what every error answer must look like.

// checkError checks a refused request's answer: its status and code, a
// message, and with retry a Retry-After in whole seconds.
func checkError(t *testing.T, a answer, status int, code string, retry bool) {
	t.Helper()
	if a.Status != status || a.errCode() != code {
		t.Fatalf("got %d %s, want %d %s", a.Status, a.Raw, status, code)
	}
	if e, _ := a.Body["error"].(map[string]any); e == nil || e["message"] == nil || e["message"] == "" {
		t.Errorf("no message: %s", a.Raw)
	}
	if retry {
		if n, err := strconv.Atoi(a.Header.Get("Retry-After")); err != nil || n < 1 {
			t.Errorf("Retry-After %q, want whole seconds ≥ 1", a.Header.Get("Retry-After"))
		}
	}
}

// errorCase is one request that must be refused with status and code.
type errorCase struct {
	name, method, path, token, body string
	hdr                             []string
	status                          int
	code                            string
}

// checkErrorCases sends each case in a subtest of its name and checks the
// answer with checkError (no Retry-After expected).
func checkErrorCases(t *testing.T, s *system, cases []errorCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := s.try(c.method, c.path, c.token, c.body, c.hdr...)
			if err != nil {
				t.Fatal(err)
			}
			checkError(t, a, c.status, c.code, false)
		})
	}
}

// WebSocket: starting ws, dialling it, reading its pushes.

// listenWS takes ws's listeners, so that its address is known before
// anything starts.
func (s *system) listenWS() {
	s.wsLn, s.wsILn = testenv.Listener(s.t), testenv.Listener(s.t)
	s.ws = "ws://" + s.wsLn.Addr().String()
	s.wsInternal = "http://" + s.wsILn.Addr().String()
}

// startWS runs ws on the listeners of listenWS, under a context of its own
// so that restartWS can stop it alone.
func (s *system) startWS() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.stopWS, s.wsDone = cancel, done
	cfg := s.cfg
	ln, iln := s.wsLn, s.wsILn
	s.wsLn, s.wsILn = nil, nil
	s.run("ws", func() error {
		defer close(done)
		return ws.Run(ctx, ws.Config{Config: cfg, Listener: ln, InternalListener: iln})
	})
}

// restartWS shuts ws down, which closes every WebSocket from the server's
// side (1001, going away), and starts it again on the same addresses, as a
// rolling restart does. It returns once the new ws is ready.
func (s *system) restartWS() {
	s.t.Helper()
	s.stopWS()
	<-s.wsDone
	var err error
	if s.wsLn, err = net.Listen("tcp", strings.TrimPrefix(s.ws, "ws://")); err != nil {
		s.t.Fatalf("cannot listen on ws's address again: %v", err)
	}
	if s.wsILn, err = net.Listen("tcp", strings.TrimPrefix(s.wsInternal, "http://")); err != nil {
		s.t.Fatalf("cannot listen on ws's internal address again: %v", err)
	}
	s.startWS()
	s.waitReady("http" + strings.TrimPrefix(s.ws, "ws"))
}

// dialWS connects to ws with a token in the query string.
func (s *system) dialWS(token string) (*websocket.Conn, *http.Response, error) {
	return websocket.DefaultDialer.Dial(s.ws+"/ws?token="+url.QueryEscape(token), nil)
}

// readUntil reads frames until one satisfies match or the deadline passes.
func readUntil(t *testing.T, c *websocket.Conn, d time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	for {
		var m map[string]any
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("no matching WebSocket message: %v", err)
		}
		if match(m) {
			return m
		}
	}
}

// wsFrames reads a connection's frames into a channel until it closes, so a
// test can wait with timeouts without breaking the connection (a timed-out
// gorilla read leaves it unusable).
func wsFrames(t *testing.T, c *websocket.Conn) <-chan map[string]any {
	ch := make(chan map[string]any, 256)
	go func() {
		defer close(ch)
		for {
			var m map[string]any
			if err := c.ReadJSON(&m); err != nil {
				return
			}
			ch <- m
		}
	}()
	return ch
}

// nextFrame waits for a frame that satisfies match; false on timeout.
func nextFrame(ch <-chan map[string]any, d time.Duration, match func(map[string]any) bool) (map[string]any, bool) {
	timeout := time.After(d)
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				return nil, false
			}
			if match(m) {
				return m, true
			}
		case <-timeout:
			return nil, false
		}
	}
}

func isGift(ticket string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["type"] == "gift" && (ticket == "" || m["ticket"] == ticket) }
}

// startSecondWS runs another ws replica against the same results topic and
// returns its ws:// base URL.
func (s *system) startSecondWS() string {
	ln := testenv.Listener(s.t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	cfg := s.cfg
	go func() {
		defer close(done)
		if err := ws.Run(ctx, ws.Config{Config: cfg, Listener: ln}); err != nil {
			s.t.Errorf("second ws: %v", err)
		}
	}()
	s.t.Cleanup(func() { cancel(); <-done })
	s.waitReady("http://" + ln.Addr().String())
	return "ws://" + ln.Addr().String()
}

// dialWSAt connects the user to the ws replica at base.
func (s *system) dialWSAt(base string, uid int64) *websocket.Conn {
	s.t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(base+"/ws?token="+s.token(uid), nil)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

// giftJoin joins each viewer to the room and returns once every one of them
// has received a gift sent there, which proves its join is registered.
func (s *system) giftJoin(room, prober int64, viewers ...*websocket.Conn) []<-chan map[string]any {
	s.t.Helper()
	chans := make([]<-chan map[string]any, len(viewers))
	for i, c := range viewers {
		if err := c.WriteJSON(map[string]any{"type": "join", "room_id": room}); err != nil {
			s.t.Fatal(err)
		}
		chans[i] = wsFrames(s.t, c)
	}
	s.seedWallet(prober, 1_000_000)
	probes := map[string]bool{}
	pending := chans
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt == 10 {
			s.t.Fatalf("%d viewers never received a gift in room %d", len(pending), room)
		}
		a := s.gift(room, prober, prober+1, giftRose, 1)
		if a.Status != 202 {
			s.t.Fatalf("probe gift: %d %s", a.Status, a.Raw)
		}
		probes[a.str("ticket")] = true
		var still []<-chan map[string]any
		for _, ch := range pending {
			if _, ok := nextFrame(ch, 5*time.Second, func(m map[string]any) bool {
				return m["type"] == "gift" && probes[fmt.Sprint(m["ticket"])]
			}); !ok {
				still = append(still, ch)
			}
		}
		pending = still
	}
	return chans
}

// Kafka: committed offsets, topic contents, redelivery.

// committed sums a group's committed offsets on a topic.
func (s *system) committed(group, topic string) int64 {
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.cfg.KafkaBrokers...))
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()
	return committedRecords(cl, group, topic)
}

// committedRecords sums a group's committed offsets on a topic.
func committedRecords(cl *kgo.Client, group, topic string) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		return 0
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			sum += o.At
		}
	})
	return sum
}

// readTopic reads the first n records of a topic without a consumer group,
// as a worker that never commits would see them.
func (s *system) readTopic(topic string, n int) []*kgo.Record {
	s.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.cfg.KafkaBrokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(recs) < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			s.t.Fatalf("read %d of %d records of %s", len(recs), n, topic)
		}
		recs = append(recs, f.Records()...)
	}
	return recs
}

// crashAndRedeliver plays a worker that died before committing offsets: it
// reads the first n records of topic without a group, has one worker process
// them twice, then lets that worker's consumer group (which never saw a
// commit) consume them a third time, until the group's commits cover them.
func (s *system) crashAndRedeliver(topic, group string, n int,
	process func(*worker.Worker, context.Context, []*kgo.Record) error,
	consume func(*worker.Worker, context.Context) error) {
	s.t.Helper()
	recs := s.readTopic(topic, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := worker.New(ctx, worker.Config{Config: s.cfg}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		s.t.Fatal(err)
	}
	defer w.Close()
	for range 2 {
		if err := process(w, ctx, recs); err != nil {
			s.t.Fatal(err)
		}
	}
	wctx, wcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- consume(w, wctx) }()
	s.waitFor(group+" consumed and committed", func() bool { return s.committed(group, topic) >= int64(n) })
	wcancel()
	<-done
}

// topicEnd sums a topic's end offsets: the records ever produced to it.
func (s *system) topicEnd(topic string) int64 {
	s.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.cfg.KafkaBrokers...))
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		s.t.Fatal(err)
	}
	var sum int64
	ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
	return sum
}

// Gifts and wallets: seeding, sending, and reading balances in Redis and MySQL.

// Gifts seeded by sql/003_gifts.sql.
const (
	giftRose   = 1 // 1 coin
	giftHeart  = 2 // 10 coins
	giftRocket = 3 // 100 coins
	giftCastle = 4 // 1000 coins
)

// seedWallet gives the user a MySQL balance, as a recharge would have;
// the gateway loads it into Redis on the user's first gift.
func (s *system) seedWallet(uid, balance int64) {
	s.t.Helper()
	if _, err := s.db.Exec("INSERT INTO wallets (user_id, balance) VALUES (?, ?) ON DUPLICATE KEY UPDATE balance = VALUES(balance)", uid, balance); err != nil {
		s.t.Fatal(err)
	}
}

// gift sends count of a gift from sender to receiver in the room.
func (s *system) gift(room, sender, receiver, giftID, count int64, hdr ...string) answer {
	s.t.Helper()
	return s.do("POST", fmt.Sprintf("/api/v1/rooms/%d/gifts", room), s.token(sender),
		fmt.Sprintf(`{"gift_id":%d,"receiver_id":%d,"count":%d}`, giftID, receiver, count), hdr...)
}

// hotBalance returns the user's hot balance in Redis (-1 when not loaded).
func (s *system) hotBalance(uid int64) int64 {
	s.t.Helper()
	bal, ok, err := s.redis.HotBalance(context.Background(), uid)
	if err != nil {
		s.t.Fatal(err)
	}
	if !ok {
		return -1
	}
	return bal
}

// openHolds counts the user's gift holds that still hold coins (pending or
// claimed); decided and undone entries hold none.
func (s *system) openHolds(uid int64) int64 {
	s.t.Helper()
	vals, err := s.raw.Do(context.Background(), s.raw.B().Hvals().Key(store.HoldsKey(uid)).Build()).AsStrSlice()
	if err != nil {
		s.t.Fatal(err)
	}
	var n int64
	for _, v := range vals {
		if strings.HasPrefix(v, "p:") || strings.HasPrefix(v, "c:") {
			n++
		}
	}
	return n
}

// walletRowBalances reads the balance and earnings of the user's MySQL wallet
// row, 0 and 0 when there is none.
func (s *system) walletRowBalances(uid int64) (balance, earnings int64) {
	s.t.Helper()
	var w struct {
		Balance  int64 `db:"balance"`
		Earnings int64 `db:"earnings"`
	}
	err := s.db.Get(&w, "SELECT balance, earnings FROM wallets WHERE user_id = ?", uid)
	if err != nil && !strings.Contains(err.Error(), "no rows") {
		s.t.Fatal(err)
	}
	return w.Balance, w.Earnings
}

// leaderboard reads a room's leaderboard as "user:coins" pairs.
func (s *system) leaderboard(room int64) []string {
	s.t.Helper()
	a := s.do("GET", fmt.Sprintf("/api/v1/rooms/%d/leaderboard", room), "", "")
	if a.Status != 200 || a.Body["room_id"] != float64(room) {
		s.t.Fatalf("leaderboard: %d %s", a.Status, a.Raw)
	}
	top, ok := a.Body["top"].([]any)
	if !ok {
		s.t.Fatalf("leaderboard without a top array: %s", a.Raw)
	}
	out := []string{}
	for _, e := range top {
		m := e.(map[string]any)
		out = append(out, fmt.Sprintf("%v:%v", m["user_id"], m["coins"]))
	}
	return out
}

// wallets are the system's wallets, Redis and MySQL.
func (s *system) wallets() wallet.Wallets { return wallet.Wallets{Redis: s.redis, DB: s.db} }

// walletRow reads the user's MySQL wallet.
func (s *system) walletRow(uid int64) wallet.Wallet {
	s.t.Helper()
	w, err := s.wallets().Get(context.Background(), uid)
	if err != nil {
		s.t.Fatal(err)
	}
	return w
}

// loadHotBalance reads (loading it if needed) the user's Redis hot balance.
func (s *system) loadHotBalance(uid int64) int64 {
	s.t.Helper()
	b, err := s.wallets().HotBalance(context.Background(), uid)
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

// giveEarnings credits earnings the way a received gift does.
func (s *system) giveEarnings(uid, coins int64) {
	s.t.Helper()
	tx, err := s.db.Beginx()
	if err != nil {
		s.t.Fatal(err)
	}
	defer tx.Rollback()
	ref := fmt.Sprintf("g%d-%016x", uid, time.Now().UnixNano())
	if _, err := wallet.Apply(context.Background(), tx, wallet.Change{
		UserID: uid, Account: wallet.AccountEarnings, Kind: wallet.KindGiftReceived, Ref: ref, Amount: coins,
	}); err != nil {
		s.t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		s.t.Fatal(err)
	}
}

// Recharge and withdrawals: the provider's notify, pay orders, payouts.

// payNotify sends a payment notify signed with the configured pay secret.
func (s *system) payNotify(body string) (answer, error) {
	return s.try("POST", "/api/v1/pay/notify", "", body, "X-Signature", sandbox.Sign(s.cfg.PaySecret, []byte(body)))
}

// payCreateOrder creates a pay order for the product and returns its id.
func (s *system) payCreateOrder(uid, product int64) answer {
	s.t.Helper()
	a := s.do("POST", "/api/v1/pay/orders", s.token(uid), fmt.Sprintf(`{"product_id":%d}`, product))
	if a.Status != 201 || a.str("status") != "paying" || a.str("order_id") == "" {
		s.t.Fatalf("create pay order: %d %s", a.Status, a.Raw)
	}
	return a
}

// payWorker runs a worker with the payout provider until ctx ends or stop
// is called; stop waits for it to exit.
func (s *system) payWorker(ctx context.Context, name string, p worker.PayoutProvider) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	ln := testenv.Listener(s.t)
	done := make(chan struct{})
	s.run(name, func() error {
		defer close(done)
		return worker.Run(ctx, worker.Config{Config: s.cfg, Listener: ln, PayoutProvider: p})
	})
	stop = func() { cancel(); <-done }
	s.t.Cleanup(stop)
	return stop
}

func fastPayouts(c *config.Config) {
	c.OutboxInterval = 20 * time.Millisecond
	c.PayoutBackoff = 5 * time.Millisecond
}
