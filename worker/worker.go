// Package worker turns accepted orders into MySQL rows. It consumes the
// orders topic in a consumer group, writes each batch in one transaction per
// event, records every ticket's outcome, tells Redis and the results topic,
// and only then commits the Kafka offsets. It also runs the timers: warming
// events into Redis, expiring unpaid orders and reconciling Redis with MySQL.
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/obs"
	"github.com/flashgate/flashgate/internal/store"
)

// Config configures the worker.
type Config struct {
	config.Config
	// Listener, if set, serves health and metrics instead of WorkerAddr.
	Listener net.Listener
	// PayoutProvider pays withdrawals out; nil means the built-in sandbox
	// provider (internal/sandbox), which records payouts in MySQL.
	PayoutProvider PayoutProvider
}

// Worker holds the worker's dependencies.
type Worker struct {
	cfg   Config
	log   *slog.Logger
	redis *store.Store
	sql   *sqlx.DB
	db    db.Store
	kafka *kgo.Client
	ready obs.Readiness

	stockMu       sync.Mutex
	lastStockPush map[int64]time.Time // when each event's last stock message went out
	stockDue      map[int64]bool      // events whose stock changed since then
}

// GroupName is the consumer group of the order writers.
func GroupName(cfg config.Config) string { return cfg.TopicPrefix + ".order-writers" }

// New connects the worker's dependencies.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Worker, error) {
	w := &Worker{cfg: cfg, log: log, lastStockPush: map[int64]time.Time{}, stockDue: map[int64]bool{}}
	var err error
	if w.redis, err = store.New(cfg.RedisAddr); err != nil {
		return nil, err
	}
	if w.sql, err = db.Open(ctx, cfg.MySQLDSN); err != nil {
		w.Close()
		return nil, err
	}
	w.db = db.Store{DB: w.sql}
	w.kafka, err = bus.NewClient(cfg.Config, log,
		kgo.ConsumerGroup(GroupName(cfg.Config)),
		kgo.ConsumeTopics(cfg.OrdersTopic()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(200*time.Millisecond),
		kgo.ProducerLinger(time.Millisecond),
	)
	if err != nil {
		w.Close()
		return nil, err
	}
	w.ready.Check = func(ctx context.Context) error {
		if err := w.sql.PingContext(ctx); err != nil {
			return fmt.Errorf("mysql: %w", err)
		}
		if err := w.redis.Ping(ctx); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		return nil
	}
	return w, nil
}

// Close releases the dependencies.
func (w *Worker) Close() {
	if w.kafka != nil {
		w.kafka.Close()
	}
	if w.sql != nil {
		w.sql.Close()
	}
	if w.redis != nil {
		w.redis.Close()
	}
}

// Run runs the worker until ctx is done. The batch in hand is finished and
// committed before it returns.
func Run(ctx context.Context, cfg Config) error {
	log := obs.NewLogger(cfg.LogFormat, cfg.LogLevel).With("component", "worker")
	w, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer w.Close()

	mux := http.NewServeMux()
	w.ready.Handle(mux)
	srv := &http.Server{Addr: cfg.WorkerAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return obs.Serve(gctx, srv, cfg.Listener, cfg.ShutdownTimeout) })
	g.Go(func() error { return w.ConsumeOrders(gctx) })
	g.Go(func() error { return w.runGifts(gctx) })
	g.Go(func() error { return w.runPayouts(gctx) })
	g.Go(func() error { w.every(gctx, cfg.WarmInterval, "warm", w.WarmEvents); return nil })
	g.Go(func() error { w.every(gctx, cfg.ExpireInterval, "expire", w.ExpireOrders); return nil })
	g.Go(func() error { w.every(gctx, cfg.ReconcileEvery, "reconcile", w.Reconcile); return nil })
	g.Go(func() error { w.every(gctx, time.Second, "stock push", w.FlushStockPushes); return nil })
	log.Info("worker started", "group", GroupName(cfg.Config), "topic", cfg.OrdersTopic())
	<-gctx.Done()
	w.ready.Drain()
	err = g.Wait()
	log.Info("worker stopped")
	if ctx.Err() != nil && err == context.Canceled {
		return nil
	}
	return err
}

// every runs f at the interval until ctx is done, logging its errors.
func (w *Worker) every(ctx context.Context, d time.Duration, name string, f func(context.Context) error) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := f(rctx); err != nil && ctx.Err() == nil {
			w.log.Warn(name+" failed", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
