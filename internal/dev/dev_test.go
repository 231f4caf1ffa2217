package dev

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/testenv"
)

type running struct {
	cancel context.CancelFunc
	errc   chan error
	out    *testenv.SyncBuffer
}

func start(t *testing.T, cfg config.Config, opts Options) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, errc: make(chan error, 1), out: &testenv.SyncBuffer{}}
	opts.Out = r.out
	opts.Log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	go func() { r.errc <- Run(ctx, cfg, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.errc:
		case <-time.After(60 * time.Second):
			t.Error("Run did not return within 60s of cancel")
		}
	})
	return r
}

// stop cancels the run and returns what Run returned.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.errc:
		r.errc <- err // for the cleanup
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return within 60s of cancel")
		return nil
	}
}

// waitFor polls cond until it holds, failing if Run returns first.
func (r *running) waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		select {
		case err := <-r.errc:
			r.errc <- err
			t.Fatalf("Run returned before %s: %v\noutput:\n%s", what, err, r.out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, d)
		}
	}
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

// devConfig is a dev configuration on free ports, so that a developer's
// running `make run` on the default ports is neither used nor disturbed.
func devConfig(t *testing.T, runDir string) config.Config {
	cfg := config.Default()
	cfg.Dev = true
	cfg.ApplyDevDefaults()
	cfg.RunDir = runDir
	cfg.RedisAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg.MySQLDSN = fmt.Sprintf("root@tcp(127.0.0.1:%d)/fgdevtest", testenv.FreePort(t))
	cfg.KafkaBrokers = []string{fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))}
	cfg.KafkaPartitions = 2
	cfg.TopicPrefix = "fgdevtest"
	return cfg
}

func mysqlAddr(t *testing.T, cfg config.Config) string {
	mc, err := db.ParseDSN(cfg.MySQLDSN)
	if err != nil {
		t.Fatal(err)
	}
	return mc.Addr
}

// redisDo sends one command and returns the first reply line.
func redisDo(t *testing.T, addr string, args ...string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("Redis at %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	cmd := fmt.Sprintf("*%d\r\n", len(args))
	for _, a := range args {
		cmd += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(cmd)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(buf[:n]))
}

func kafkaClient(t *testing.T, cfg config.Config, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.KafkaBrokers...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func depsGone(t *testing.T, cfg config.Config) {
	t.Helper()
	for _, a := range []string{cfg.RedisAddr, mysqlAddr(t, cfg), cfg.KafkaBrokers[0]} {
		deadline := time.Now().Add(5 * time.Second)
		for listening(a) {
			if time.Now().After(deadline) {
				t.Fatalf("%s still answers after Run returned: a child was not stopped", a)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func depsAnswer(t *testing.T, cfg config.Config) {
	t.Helper()
	if got := redisDo(t, cfg.RedisAddr, "PING"); got != "+PONG" {
		t.Fatalf("Redis PING = %q", got)
	}
	mc, _ := db.ParseDSN(cfg.MySQLDSN)
	if err := mysqlSelect1(context.Background(), mc); err != nil {
		t.Fatalf("MySQL SELECT 1: %v", err)
	}
	if !listening(cfg.KafkaBrokers[0]) {
		t.Fatalf("Kafka at %s does not answer", cfg.KafkaBrokers[0])
	}
}

// TestRun starts the dependencies twice on one run directory: once with
// DepsOnly, once with (fake) services. It checks that they answer, that a
// second instance reuses what answers without stopping it, that a stop
// stops every child, and that data survives the restart.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real redis-server and mariadbd")
	}
	runDir := t.TempDir()
	cfg := devConfig(t, runDir)
	ctx := context.Background()
	const redisKey, kafkaValue = "fgdevtest:persist", "kept across restarts"
	var pastEventID int64

	t.Run("deps-only", func(t *testing.T) {
		r := start(t, cfg, Options{DepsOnly: true})
		ready := filepath.Join(runDir, ReadyFile)
		r.waitFor(t, "ready file", 3*time.Minute, func() bool { return exists(ready) })

		b, _ := os.ReadFile(ready)
		if !strings.Contains(string(b), "FLASHGATE_REDIS_ADDR='"+cfg.RedisAddr+"'") {
			t.Errorf("ready file does not name the Redis address:\n%s", b)
		}
		for _, want := range []string{cfg.RedisAddr, cfg.MySQLDSN, cfg.KafkaBrokers[0]} {
			if !strings.Contains(r.out.String(), want) {
				t.Errorf("output does not name %s:\n%s", want, r.out)
			}
		}
		depsAnswer(t, cfg)
		for _, dir := range []string{"redis", "mysql", "kafka"} {
			if !exists(filepath.Join(runDir, dir)) {
				t.Errorf("no %s data directory in the run directory", dir)
			}
		}

		// Data for the restart: a Redis key, a MySQL row (an event that has
		// ended, so the next run still seeds its demo event), a Kafka record.
		if got := redisDo(t, cfg.RedisAddr, "SET", redisKey, "1"); got != "+OK" {
			t.Fatalf("SET = %q", got)
		}
		d, err := db.Open(ctx, cfg.MySQLDSN)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		var migrations int
		if err := d.Get(&migrations, "SELECT COUNT(*) FROM schema_migrations"); err != nil || migrations == 0 {
			t.Fatalf("migrations not applied: %d, %v", migrations, err)
		}
		past := time.Now().Add(-2 * time.Hour)
		ev, err := db.MySQL{DB: d}.CreateEvent(ctx, "ended before the restart", 100, 5, past, past.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		pastEventID = ev.ID

		cl := kafkaClient(t, cfg)
		topics, err := kadm.NewClient(cl).ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{cfg.OrdersTopic(), cfg.ResultsTopic(), cfg.DLQTopic()} {
			td, ok := topics[name]
			if !ok {
				t.Errorf("topic %s missing; have %v", name, topics.Names())
			} else if len(td.Partitions) != cfg.KafkaPartitions {
				t.Errorf("topic %s has %d partitions, want %d", name, len(td.Partitions), cfg.KafkaPartitions)
			}
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: cfg.OrdersTopic(), Value: []byte(kafkaValue)}).FirstErr(); err != nil {
			t.Fatal(err)
		}

		// A second instance finds everything answering: it reuses it, starts
		// nothing, and leaves it running when it stops.
		other := t.TempDir()
		cfg2 := cfg
		cfg2.RunDir = other
		r2 := start(t, cfg2, Options{DepsOnly: true})
		r2.waitFor(t, "second ready file", time.Minute, func() bool { return exists(filepath.Join(other, ReadyFile)) })
		for _, dir := range []string{"redis", "mysql", "kafka"} {
			if exists(filepath.Join(other, dir)) {
				t.Errorf("second instance created %s data instead of reusing the running server", dir)
			}
		}
		if n := strings.Count(r2.out.String(), "(reused)"); n != 3 {
			t.Errorf("second instance reports %d of 3 dependencies reused:\n%s", n, r2.out)
		}
		if err := r2.stop(t); err != nil {
			t.Fatalf("second Run: %v", err)
		}
		if exists(filepath.Join(other, ReadyFile)) {
			t.Error("second instance left its ready file behind")
		}
		depsAnswer(t, cfg) // still up: the second instance stopped nothing it reused

		cl.Close()
		d.Close()
		if err := r.stop(t); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if exists(ready) {
			t.Error("ready file left behind after stop")
		}
		depsGone(t, cfg)
	})
	if t.Failed() {
		return
	}

	t.Run("services-after-restart", func(t *testing.T) {
		cfg := cfg
		cfg.GatewayAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		cfg.WSAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		cfg.WorkerAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))

		calls := make(chan config.Config, 1)
		stopped := make(chan bool, 1)
		services := func(ctx context.Context, got config.Config) error {
			calls <- got
			var wg sync.WaitGroup
			for _, a := range []string{got.GatewayAddr, got.WSAddr, got.WorkerAddr} {
				ln, err := net.Listen("tcp", a)
				if err != nil {
					return err
				}
				srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})}
				wg.Add(1)
				go func() { defer wg.Done(); srv.Serve(ln) }()
				defer srv.Close()
			}
			<-ctx.Done()
			// The dependencies must still be up while services drain.
			_, err := redisPing(got.RedisAddr)
			stopped <- err == nil
			return ctx.Err()
		}

		r := start(t, cfg, Options{Services: services})
		r.waitFor(t, "summary", 3*time.Minute, func() bool { return strings.Contains(r.out.String(), "wscat") })
		if got := <-calls; got.RedisAddr != cfg.RedisAddr || got.MySQLDSN != cfg.MySQLDSN || !got.Dev {
			t.Errorf("services got config %+v", got)
		}

		// Data written before the restart is still there.
		if got := redisDo(t, cfg.RedisAddr, "GET", redisKey); !strings.HasSuffix(got, "1") || strings.HasPrefix(got, "$-1") {
			t.Errorf("Redis key lost across the restart: GET = %q", got)
		}
		d, err := db.Open(ctx, cfg.MySQLDSN)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		s := db.MySQL{DB: d}
		if _, err := s.Event(ctx, pastEventID); err != nil {
			t.Errorf("MySQL row lost across the restart: %v", err)
		}
		cl := kafkaClient(t, cfg, kgo.ConsumeTopics(cfg.OrdersTopic()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		var found bool
		for !found && pctx.Err() == nil {
			cl.PollFetches(pctx).EachRecord(func(rec *kgo.Record) { found = found || string(rec.Value) == kafkaValue })
		}
		if !found {
			t.Error("Kafka record lost across the restart")
		}

		// The demo event was seeded, and the summary uses it.
		evs, err := s.EventsEndingAfter(ctx, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(evs, func(e db.Event) bool { return e.Name == DemoEventName })
		if len(evs) != 1 || i < 0 {
			t.Fatalf("want exactly the demo event live, have %+v", evs)
		}
		demo := evs[i]
		if demo.StockTotal != 100 || demo.Price != 9900 || demo.StartsAt.After(time.Now()) || demo.EndsAt.Before(time.Now().Add(23*time.Hour)) {
			t.Errorf("demo event = %+v", demo)
		}
		out := r.out.String()
		buy := regexp.MustCompile(`curl -s -X POST http://` + regexp.QuoteMeta(cfg.GatewayAddr) +
			fmt.Sprintf(`/api/v1/events/%d/orders`, demo.ID) + ` -H "Authorization: Bearer ([^"]+)" -d '\{\}'`).FindStringSubmatch(out)
		if buy == nil {
			t.Fatalf("no buy curl for event %d in the summary:\n%s", demo.ID, out)
		}
		claims, err := auth.NewSigner(cfg.TokenSecret).Verify(buy[1])
		if err != nil || claims.UserID != 1 || claims.IsAdmin() || time.Until(claims.Expires) < 23*time.Hour {
			t.Errorf("token in the curl: %+v, %v", claims, err)
		}
		admin := regexp.MustCompile(`admin 1000\s+(\S+)`).FindStringSubmatch(out)
		if admin == nil {
			t.Fatalf("no admin token in the summary:\n%s", out)
		}
		if claims, err := auth.NewSigner(cfg.TokenSecret).Verify(admin[1]); err != nil || !claims.IsAdmin() || claims.UserID != 1000 {
			t.Errorf("admin token: %+v, %v", claims, err)
		}
		if !strings.Contains(out, "ws://"+cfg.WSAddr+"/ws?token="+buy[1]) {
			t.Errorf("no WebSocket hint in the summary:\n%s", out)
		}

		// A run whose services fail reports the failure and stops only what
		// it started: here nothing, since everything answered already.
		failing := cfg
		failing.RunDir = t.TempDir()
		r3 := start(t, failing, Options{Services: func(context.Context, config.Config) error { return errors.New("boom") }})
		select {
		case err := <-r3.errc:
			r3.errc <- err
			if err == nil || !strings.Contains(err.Error(), "boom") {
				t.Errorf("Run with failing services returned %v, want the services' error", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("Run with failing services did not return")
		}
		depsAnswer(t, cfg)

		cl.Close()
		d.Close()
		if err := r.stop(t); err != nil {
			t.Fatalf("Run: %v", err)
		}
		select {
		case up := <-stopped:
			if !up {
				t.Error("Redis was already down when the services were told to stop: wrong shutdown order")
			}
		default:
			t.Error("the services' context was not cancelled on stop")
		}
		depsGone(t, cfg)
	})
}

func TestURLHost(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.1:8080", "127.0.0.1:8080"},
		{":8080", "127.0.0.1:8080"},
		{"0.0.0.0:8081", "127.0.0.1:8081"},
		{"[::]:8082", "127.0.0.1:8082"},
		{"localhost:9000", "localhost:9000"},
		{"[::1]:9000", "[::1]:9000"},
	} {
		if got := urlHost(tc.in); got != tc.want {
			t.Errorf("urlHost(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLoopbackBind(t *testing.T) {
	for _, tc := range []struct {
		in     string
		ip     string
		port   int
		errSub string
	}{
		{"127.0.0.1:16379", "127.0.0.1", 16379, ""},
		{"localhost:13306", "127.0.0.1", 13306, ""},
		{":19092", "127.0.0.1", 19092, ""},
		{"redis.internal:6379", "", 0, "loopback"},
		{"10.0.0.5:6379", "", 0, "loopback"},
		{"127.0.0.1", "", 0, "bad"},
		{"127.0.0.1:0", "", 0, "bad"},
	} {
		ip, port, err := loopbackBind("Redis", tc.in)
		if tc.errSub != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errSub) {
				t.Errorf("loopbackBind(%q) error = %v, want one mentioning %q", tc.in, err, tc.errSub)
			}
			continue
		}
		if err != nil || ip != tc.ip || port != tc.port {
			t.Errorf("loopbackBind(%q) = %q, %d, %v; want %q, %d", tc.in, ip, port, err, tc.ip, tc.port)
		}
	}
}

// TestBannerPrintsWebURL: with the default addresses, what `make run` prints
// names the web client at http://127.0.0.1:8080/ and the admin page on the
// internal listener.
func TestBannerPrintsWebURL(t *testing.T) {
	cfg := config.Default()
	cfg.Dev = true
	cfg.ApplyDevDefaults()
	var b strings.Builder
	printBanner(&b, cfg, db.Event{ID: 1, Name: "demo", StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)}, "")
	for _, want := range []string{"Open http://127.0.0.1:8080/ in a browser", "http://127.0.0.1:8080/room", "http://127.0.0.1:9090/admin"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the banner does not say %q:\n%s", want, b.String())
		}
	}
}
