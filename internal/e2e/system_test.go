// Package e2e tests flashgate end to end: the real gateway, worker and ws,
// in-process, against a private redis-server, a fresh MariaDB database and an
// in-process kfake broker, driven over HTTP and WebSocket like a client.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/flashgate/flashgate/gateway"
	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/store"
	"github.com/flashgate/flashgate/internal/testenv"
	"github.com/flashgate/flashgate/worker"
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
