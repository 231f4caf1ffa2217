// Package dev is the bootstrap behind `flashgate dev` (and so `make run` and
// `make test`): it installs Redis and MariaDB with apt when they are missing,
// starts them as child processes on loopback ports with their data under the
// run directory (or reuses ones that already answer), starts an embedded
// Kafka-protocol broker (kfake) unless real brokers were configured, migrates
// MySQL, seeds a demo event and runs the services until its context ends.
// Everything it started, it stops.
package dev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/db"
)

// ReadyFile is the file, in the run directory, that a DepsOnly run writes
// once the dependencies are up and migrated and removes on exit. It holds
// FLASHGATE_* assignments a shell can source.
const ReadyFile = "deps.ready"

// Demo data seeded when no event is live or upcoming.
const (
	DemoEventName  = "Demo flash sale"
	demoEventStock = 100
	demoEventPrice = 9900 // cents
	demoEventLen   = 24 * time.Hour
	demoAdminID    = 1000
)

// servicesReadyTimeout bounds the wait for the services' /healthz before the
// banner is printed anyway.
const servicesReadyTimeout = 30 * time.Second

// Options tune Run.
type Options struct {
	// DepsOnly starts the dependencies and migrates, writes ReadyFile and
	// waits for the context, without seeding or running the services.
	DepsOnly bool
	// KafkaExplicit means FLASHGATE_KAFKA_BROKERS was set on purpose: use
	// those brokers and start no embedded one.
	KafkaExplicit bool
	// Services runs gateway, worker and ws until ctx is done. Required
	// unless DepsOnly.
	Services func(ctx context.Context, cfg config.Config) error
	// Out receives the plain-text summary for people (URLs, tokens, curl
	// lines). Nil means os.Stdout.
	Out io.Writer
	// Log receives progress logs. Nil means a text logger on os.Stderr.
	Log *slog.Logger
}

// env is what one Run started and must stop.
type env struct {
	cfg  config.Config
	opts Options
	log  *slog.Logger

	children []*child
	kfake    *kfake.Cluster

	// How each dependency was obtained, for the summary.
	redisState, mysqlState, kafkaState string
}

// Run brings the development environment up and keeps it up until ctx is
// done, then stops everything it started (never what it reused). A cancelled
// ctx is a normal stop and returns nil.
func Run(ctx context.Context, cfg config.Config, opts Options) (err error) {
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if !opts.DepsOnly && opts.Services == nil {
		return errors.New("dev: Options.Services is required unless DepsOnly")
	}
	if cfg.RunDir == "" {
		cfg.RunDir = ".run"
	}
	// The servers get absolute paths: their working directory is not ours.
	if cfg.RunDir, err = filepath.Abs(cfg.RunDir); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
		return fmt.Errorf("cannot create the run directory: %w", err)
	}
	readyPath := filepath.Join(cfg.RunDir, ReadyFile)
	os.Remove(readyPath) // left by a run that was killed

	e := &env{cfg: cfg, opts: opts, log: opts.Log}
	defer func() {
		if serr := e.stopDeps(); serr != nil && err == nil {
			err = serr
		}
		if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			err = nil // interrupted during start-up: that is a requested stop
		}
	}()

	d, err := e.startDeps(ctx)
	if err != nil {
		return err
	}
	defer d.Close()

	if opts.DepsOnly {
		if err := writeReady(readyPath, cfg); err != nil {
			return err
		}
		defer os.Remove(readyPath)
		e.printDeps()
		e.log.Info("dependencies are up; Ctrl-C stops them", "ready_file", readyPath)
		<-ctx.Done()
		e.log.Info("stopping")
		return nil
	}

	ev, err := seed(ctx, db.MySQL{DB: d}, e.log)
	if err != nil {
		return err
	}
	d.Close() // the services open their own pools

	return e.runServices(ctx, ev)
}

// startDeps starts or reuses Redis, MariaDB and Kafka and migrates MySQL. It
// returns a pool on the flashgate database.
func (e *env) startDeps(ctx context.Context) (*sqlx.DB, error) {
	unlock, err := lockRunDir(ctx, e.cfg.RunDir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	// Install what is missing in one apt run, before the first start.
	var need []pkg
	local := func(addr string) bool { _, _, err := loopbackBind("", addr); return err == nil }
	if local(e.cfg.RedisAddr) && !listening(e.cfg.RedisAddr) {
		need = append(need, redisPkg)
	}
	if mc, err := db.ParseDSN(e.cfg.MySQLDSN); err == nil && mc.Net == "tcp" && local(mc.Addr) && !listening(mc.Addr) {
		need = append(need, mysqlPkg)
	}
	if err := e.install(ctx, need...); err != nil {
		return nil, err
	}

	if err := e.startRedis(ctx); err != nil {
		return nil, err
	}
	if err := e.startMySQL(ctx); err != nil {
		return nil, err
	}
	if err := e.startKafka(ctx); err != nil {
		return nil, err
	}

	if err := db.CreateDatabase(ctx, e.cfg.MySQLDSN); err != nil {
		return nil, err
	}
	d, err := db.Open(ctx, e.cfg.MySQLDSN)
	if err != nil {
		return nil, err
	}
	applied, err := db.Migrate(ctx, d)
	if err != nil {
		d.Close()
		return nil, err
	}
	if len(applied) > 0 {
		e.log.Info("applied migrations", "migrations", applied)
	} else {
		e.log.Info("database is up to date")
	}
	return d, nil
}

// stopDeps stops, in order, the embedded broker and the children this run
// started. Redis and MariaDB stop in parallel; each gets SIGTERM and, after
// stopTimeout, SIGKILL.
func (e *env) stopDeps() error {
	if e.kfake != nil {
		e.kfake.Close() // persists to the DataDir
		e.kfake = nil
		e.log.Info("stopped the embedded Kafka broker")
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, c := range e.children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.stop(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			e.log.Info("stopped "+c.name, "pid", c.cmd.Process.Pid)
		}()
	}
	wg.Wait()
	e.children = nil
	return errors.Join(errs...)
}

// runServices runs opts.Services until ctx is done or they fail, printing
// the summary once they answer /healthz.
func (e *env) runServices(ctx context.Context, ev db.Event) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	var serr error
	go func() {
		defer close(done)
		serr = e.opts.Services(sctx, e.cfg)
	}()
	stop := func() error {
		cancel()
		<-done
		if ctx.Err() != nil && errors.Is(serr, context.Canceled) {
			return nil
		}
		return serr
	}

	if err := waitHealthy(ctx, done, servicesReadyTimeout, e.cfg.GatewayAddr, e.cfg.WSAddr, e.cfg.WorkerAddr); err != nil && ctx.Err() == nil {
		e.log.Warn("the services do not answer /healthz yet; printing the summary anyway", "err", err)
	}
	select {
	case <-done:
	default:
		printBanner(e.opts.Out, e.cfg, ev, e.depsSummary())
	}

	select {
	case <-ctx.Done():
		e.log.Info("stopping the services")
		return stop()
	case <-done:
		if serr != nil {
			return fmt.Errorf("services failed: %w", serr)
		}
		return errors.New("services stopped on their own")
	}
}

// seed creates the demo event when no event is live or upcoming, and returns
// the event the summary's examples use: the first live one, else the next.
func seed(ctx context.Context, s db.MySQL, log *slog.Logger) (db.Event, error) {
	now := time.Now().UTC()
	evs, err := s.EventsEndingAfter(ctx, now)
	if err != nil {
		return db.Event{}, fmt.Errorf("cannot list events: %w", err)
	}
	for _, ev := range evs {
		if !ev.StartsAt.After(now) {
			return ev, nil
		}
	}
	if len(evs) > 0 {
		return evs[0], nil
	}
	ev, err := s.CreateEvent(ctx, DemoEventName, demoEventPrice, demoEventStock, now, now.Add(demoEventLen))
	if err != nil {
		return db.Event{}, err
	}
	log.Info("seeded a demo event", "id", ev.ID, "name", ev.Name, "stock", ev.StockTotal, "ends_at", ev.EndsAt)
	return ev, nil
}

// lockRunDir serialises start-ups that share a run directory, so a second
// `flashgate dev` waits and then reuses what the first one started instead
// of racing it for the ports and data directories.
func lockRunDir(ctx context.Context, dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, "dev.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("cannot lock %s: %w", f.Name(), err)
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			f.Close()
			return nil, err
		}
	}
}
