// Package worker turns accepted orders and gifts into MySQL rows. It
// consumes the orders and gifts topics in consumer groups, decides and
// writes each batch in MySQL transactions, records every ticket's outcome,
// tells Redis and the results topic, and only then commits the Kafka
// offsets. It also pays withdrawals out, and runs the timers: warming
// events into Redis, expiring unpaid orders, and reconciling Redis with
// MySQL (abort markers for reservations and holds that never reached
// Kafka, stock that drifted).
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

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
	// provider (internal/sandbox), which records payouts in MySQL and sends
	// no money, and which New refuses outside dev mode unless
	// FLASHGATE_SANDBOX_PAYMENTS=1.
	PayoutProvider PayoutProvider
}

// Worker holds the worker's dependencies.
type Worker struct {
	cfg   Config
	log   *slog.Logger
	redis *store.Redis
	mysql db.MySQL
	kafka *kgo.Client
	ready obs.Readiness

	// work is the context batches and timer runs are processed with. It
	// outlives the context that stops polling by FLASHGATE_SHUTDOWN_TIMEOUT,
	// so a shutdown finishes and commits the batch in hand.
	work context.Context

	prices giftPrices // catalog versions, to check gift records' coins

	consumers []*consumer
	orders    *consumer
	gifts     *consumer
	payouts   *consumer

	walletMu    sync.Mutex
	walletGaps1 map[int64]int64 // the last wallet pass's gaps (wallets.go)

	warmMu    sync.Mutex
	coldSince map[int64]time.Time // live events found missing from Redis

	stockMu       sync.Mutex
	lastStockPush map[int64]time.Time // when each event's last stock message went out
	stockDue      map[int64]bool      // events whose stock changed since then
}

// ErrCrash, as the cause of Run's context, stops the worker the way a
// killed process stops: the batches in hand are abandoned, not finished,
// and redelivered to whoever consumes next. Tests use it to crash a worker
// in-process; a plain cancel is a SIGTERM and drains.
var ErrCrash = errors.New("worker crashed")

// GroupName is the consumer group of the order writers.
func GroupName(cfg config.Config) string { return cfg.TopicPrefix + ".order-writers" }

// New connects the worker's dependencies.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Worker, error) {
	if err := cfg.Config.Validate(); err != nil {
		return nil, err
	}
	if cfg.PayoutProvider == nil {
		if err := cfg.ValidateSandbox("worker"); err != nil {
			return nil, err
		}
		if !cfg.Dev {
			log.Warn(config.SandboxWarning("worker"))
		}
	}
	w := &Worker{cfg: cfg, log: log, work: context.Background(), coldSince: map[int64]time.Time{},
		lastStockPush: map[int64]time.Time{}, stockDue: map[int64]bool{}}
	w.orders = w.newConsumer("orders", GroupName(cfg.Config))
	w.gifts = w.newConsumer("gifts", GiftGroupName(cfg.Config))
	w.payouts = w.newConsumer("payouts", PayoutGroupName(cfg.Config))
	var err error
	if w.redis, err = store.Dial(cfg.Config); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err = w.redis.SyncClock(cctx)
	cancel()
	if err != nil {
		log.Warn("cannot read Redis's clock yet; stamping settled holds with this machine's until it can", "err", err)
	}
	if w.mysql.DB, err = db.Open(ctx, cfg.MySQLDSN); err != nil {
		w.Close()
		return nil, err
	}
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
		if err := w.notConsuming(); err != nil {
			return err
		}
		if err := w.mysql.DB.PingContext(ctx); err != nil {
			return fmt.Errorf("mysql: %w", err)
		}
		if err := w.redis.Ping(ctx); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		return nil
	}
	return w, nil
}

// Close closes the Kafka, MySQL and Redis clients that New opened. Run
// closes the Worker it makes; the caller of New closes its own.
func (w *Worker) Close() {
	if w.kafka != nil {
		w.kafka.Close()
	}
	if w.mysql.DB != nil {
		w.mysql.DB.Close()
	}
	if w.redis != nil {
		w.redis.Close()
	}
}

// Run runs the worker until ctx is done. Then /readyz turns 503, polling
// stops, and the batches in hand are finished and committed (for at most
// FLASHGATE_SHUTDOWN_TIMEOUT; past it they are left uncommitted and
// redelivered to whoever consumes next) before it returns.
func Run(ctx context.Context, cfg Config) error {
	log := obs.NewLogger(cfg.LogFormat, cfg.LogLevel).With("component", "worker")
	if cfg.Listener != nil {
		if err := cfg.CheckDevListener("worker", cfg.Listener.Addr()); err != nil {
			cfg.Listener.Close()
			return err
		}
	}
	w, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer w.Close()
	cfg.LogStartup(log)
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	w.work = work
	stop := context.AfterFunc(ctx, func() {
		w.ready.Drain()
		if errors.Is(context.Cause(ctx), ErrCrash) {
			stopWork()
			return
		}
		time.AfterFunc(cfg.ShutdownTimeout, stopWork)
	})
	defer stop()

	mux := http.NewServeMux()
	w.ready.Handle(mux)
	if cfg.Pprof {
		obs.HandleProfiles(mux)
	}
	srv := &http.Server{Addr: cfg.WorkerAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return obs.Serve(gctx, srv, cfg.Listener, cfg.ShutdownTimeout) })
	g.Go(func() error { return w.supervise(gctx, w.orders, w.ConsumeOrders) })
	g.Go(func() error { return w.supervise(gctx, w.gifts, w.ConsumeGifts) })
	g.Go(func() error { return w.runPayouts(gctx) })
	g.Go(func() error { w.every(gctx, cfg.WarmInterval, "warm", w.WarmEvents); return nil })
	g.Go(func() error { w.every(gctx, cfg.ExpireInterval, "expire", w.ExpireOrders); return nil })
	g.Go(func() error { w.every(gctx, cfg.ReconcileEvery, "reconcile", w.Reconcile); return nil })
	g.Go(func() error {
		w.every(gctx, cfg.ReconcileEvery, "reconcile gift holds", w.ReconcileGiftHolds)
		return nil
	})
	g.Go(func() error { w.every(gctx, cfg.WalletsEvery, "reconcile wallets", w.ReconcileWallets); return nil })
	g.Go(func() error { w.every(gctx, time.Second, "stock push", w.FlushStockPushes); return nil })
	// Settled gift holds are stamped with Redis's clock as this process
	// reads it (store.Clock), the clock the hold reconciler ages them by.
	g.Go(func() error { w.every(gctx, time.Second, "Redis's clock", w.redis.SyncClock); return nil })
	g.Go(func() error { w.every(gctx, 5*time.Second, "lag report", w.reportLag); return nil })
	log.Info("worker started", "orders", cfg.OrdersTopic(), "gifts", cfg.GiftsTopic(), "withdrawals", cfg.WithdrawalsTopic())
	err = g.Wait()
	log.Info("worker stopped")
	if ctx.Err() != nil && err == context.Canceled {
		return nil
	}
	return err
}

// every runs f now and then at the interval until ctx is done, logging its
// errors. A run under way when ctx ends is finished (it runs with the work
// context) within 30 s.
func (w *Worker) every(ctx context.Context, d time.Duration, name string, f func(context.Context) error) {
	obs.Every(ctx, d, w.log, name+" failed", f, obs.Runs{Now: true, Base: w.work, Limit: 30 * time.Second})
}
