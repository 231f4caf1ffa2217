// Package gateway is flashgate's HTTP edge (fasthttp). It verifies tokens,
// answers cheap rejections from memory, reserves stock with one Redis Lua
// script per accepted request and answers 202 only once Kafka has the order.
// It never calls MySQL on the order path; the event list it answers from is
// refreshed in the background.
package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"

	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/obs"
	"github.com/flashgate/flashgate/internal/sandbox"
	"github.com/flashgate/flashgate/internal/store"
	"github.com/flashgate/flashgate/internal/wallet"
)

// MaxBodySize is the largest request body accepted: 413 above it
// (docs/openapi.yaml, "Conventions").
const MaxBodySize = 8 << 10

// readBodySize is the largest body the server reads before answering. Bodies
// between MaxBodySize and this are read and refused with a clean 413; a
// server that stops reading early and closes makes the kernel reset the
// connection, and the client may see the reset instead of the 413.
const readBodySize = 256 << 10

// Config configures the gateway.
type Config struct {
	config.Config
	// Listener, if set, is served instead of listening on GatewayAddr.
	Listener net.Listener
	// InternalListener, if set, serves the internal endpoints (metrics,
	// readiness details, admin routes) instead of listening on
	// InternalAddr; with neither, they are not served.
	InternalListener net.Listener
	// Limiter decides the per-user rate limits of payments and of the
	// other routes; nil means the Redis limiter. Orders are limited in
	// memory and gifts inside the gift-hold script, after the answers
	// memory can give.
	Limiter Limiter
	// OrderPayments charges buyers for flash-sale orders (POST
	// /orders/{no}/pay); nil means the sandbox (sandbox.Charges), which
	// collects nothing and which New refuses outside dev mode unless
	// FLASHGATE_SANDBOX_PAYMENTS=1.
	OrderPayments OrderPayments
	// ReadTimeout bounds reading one request, from its first byte;
	// IdleTimeout bounds a keep-alive connection's wait for its next
	// request. Zero means FLASHGATE_GATEWAY_READ_TIMEOUT and
	// FLASHGATE_GATEWAY_IDLE_TIMEOUT (10s and 60s when those are zero too).
	// Tests shorten them.
	ReadTimeout, IdleTimeout time.Duration
}

// Server is the gateway: its dependencies and in-memory state.
type Server struct {
	cfg    Config
	log    *slog.Logger
	signer *auth.Signer
	redis  *store.Redis
	mysql  db.MySQL
	kafka  *kgo.Client
	// walletLoader batches the MySQL reads of cold wallets' loads.
	walletLoader *wallet.Loader
	events       eventCache
	limiter      Limiter
	ipLimit      *memLimiter[netip.Addr] // per client (clientKey), routes without a token
	// notifyLimit is per source too, for the payment provider's notifies
	// alone: a crowd of public reads behind the provider's address (or our
	// own proxy) must never make a notify wait.
	notifyLimit *memLimiter[netip.Addr]
	orderLim    *memLimiter[int64] // per user, orders that would reach Redis
	// produceObs are the produce latency histograms of the hot topics.
	produceObs map[string]prometheus.Observer
	inflight   *inflight // load shedding: see handler.go
	// largeBodies are the slots of requests whose body over MaxBodySize is
	// read to answer a clean 413 (conns.go).
	largeBodies *largeBodySlots
	draining    atomic.Bool // shutting down: answers close their connection
	ready       obs.Readiness
	payments    OrderPayments
	pay         rechargeState // recharge: see recharge.go
	gifts       giftState     // live-room gifts and wallet: see gifts.go
	now         func() time.Time

	bg sync.WaitGroup
}

// New connects the gateway's dependencies and loads the events.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.ValidateGateway(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, signer: auth.NewRotatingSigner(cfg.TokenSecret, cfg.TokenSecretPrevious, cfg.TokenPreviousUntil).WithMaxTTL(cfg.TokenMaxTTL), limiter: cfg.Limiter, now: time.Now}
	if s.payments = cfg.OrderPayments; s.payments == nil {
		if err := cfg.ValidateSandbox("gateway"); err != nil {
			return nil, err
		}
		s.payments = sandbox.Charges{}
		if !cfg.Dev {
			log.Warn(config.SandboxWarning("gateway"))
		}
	}
	var err error
	if s.redis, err = store.Dial(cfg.Config); err != nil {
		return nil, err
	}
	if s.limiter == nil {
		s.limiter = NewRedisLimiter(s.redis, cfg.Config)
	}
	s.ipLimit = newMemLimiter(cfg.RateIP, hashAddr, 0)
	s.notifyLimit = newMemLimiter(cfg.RateNotify, hashAddr, 0)
	s.orderLim = newMemLimiter(cfg.RateOrder, hashUser, 0)
	s.produceObs = map[string]prometheus.Observer{}
	for _, t := range []string{cfg.OrdersTopic(), cfg.GiftsTopic()} {
		s.produceObs[t] = obs.KafkaProduceSeconds.WithLabelValues(t)
	}
	if !cfg.RateGift.Off() {
		s.gifts.limit = store.Limit{PerSecond: cfg.RateGift.PerSecond, Burst: cfg.RateGift.Burst}
	}
	s.inflight = newInflight(cfg.InflightBudgets(), cfg.InflightWait)
	s.largeBodies = newLargeBodySlots(2*cmp.Or(cfg.ReadTimeout, cfg.GatewayReadTimeout, 10*time.Second) + 30*time.Second)
	if s.mysql.DB, err = db.Open(ctx, cfg.MySQLDSN); err != nil {
		s.Close()
		return nil, err
	}
	s.walletLoader = &wallet.Loader{DB: s.mysql.DB}
	s.kafka, err = bus.NewClient(cfg.Config, log,
		kgo.ProducerLinger(time.Millisecond),
		// The request path waits at most ProduceTimeout (see produce); franz-go
		// wants at least a second here.
		kgo.RecordDeliveryTimeout(max(cfg.ProduceTimeout, time.Second)),
		kgo.MaxBufferedRecords(50_000),
		kgo.DefaultProduceTopic(cfg.OrdersTopic()),
	)
	if err != nil {
		s.Close()
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err = s.redis.SyncClock(cctx)
	cancel()
	if err != nil {
		log.Warn("cannot read Redis's clock yet; stamping reservations with this machine's until it can", "err", err)
	}
	if err := s.refreshEvents(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("cannot load events: %w", err)
	}
	if err := s.refreshGifts(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("cannot load the gift catalog: %w", err)
	}
	s.ready.Check = func(ctx context.Context) error {
		if err := s.redis.Ping(ctx); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		return nil
	}
	return s, nil
}

// Close closes the Kafka, MySQL and Redis clients that New opened. Run
// closes the Server it makes; the caller of New closes its own.
func (s *Server) Close() {
	if s.kafka != nil {
		s.kafka.Close()
	}
	if s.mysql.DB != nil {
		s.mysql.DB.Close()
	}
	if s.redis != nil {
		s.redis.Close()
	}
}

// Run serves the gateway until ctx is done, then drains: /readyz turns 503
// while serving goes on for FLASHGATE_DRAIN_DELAY, so that load balancers
// stop sending requests here before the listener closes; then in-flight
// requests finish (within FLASHGATE_SHUTDOWN_TIMEOUT) and the producer
// flushes.
func Run(ctx context.Context, cfg Config) error {
	log := obs.NewLogger(cfg.LogFormat, cfg.LogLevel).With("component", "gateway")
	closeListeners := func() {
		for _, l := range []net.Listener{cfg.Listener, cfg.InternalListener} {
			if l != nil {
				l.Close()
			}
		}
	}
	for _, l := range []net.Listener{cfg.Listener, cfg.InternalListener} {
		if l == nil {
			continue
		}
		if err := cfg.CheckDevListener("gateway", l.Addr()); err != nil {
			closeListeners()
			return err
		}
	}
	s, err := New(ctx, cfg, log)
	if err != nil {
		closeListeners()
		return err
	}
	defer s.Close()
	cfg.LogStartup(log)

	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.GatewayAddr); err != nil {
			closeListeners()
			return fmt.Errorf("cannot listen on %s: %w", cfg.GatewayAddr, err)
		}
	}
	iln := cfg.InternalListener
	if iln == nil && cfg.InternalAddr != "" {
		if iln, err = net.Listen("tcp", cfg.InternalAddr); err != nil {
			ln.Close()
			return fmt.Errorf("cannot listen on %s (FLASHGATE_INTERNAL_ADDR): %w", cfg.InternalAddr, err)
		}
	}
	bgctx, stopBg := context.WithCancel(context.Background())
	s.bg.Add(1)
	go func() { defer s.bg.Done(); s.refreshEvery(bgctx, cfg.EventRefresh, "events", s.refreshEvents) }()
	s.bg.Add(1)
	go func() { defer s.bg.Done(); s.refreshEvery(bgctx, time.Second, "Redis's clock", s.redis.SyncClock) }()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ttl := cfg.GiftCatalogTTL
		if ttl <= 0 {
			ttl = defaultGiftCatalogTTL
		}
		s.refreshEvery(bgctx, ttl, "the gift catalog", s.refreshGifts)
	}()

	srv := s.HTTPServer()
	errc := make(chan error, 1)
	limits := &connLimits{max: cfg.GatewayMaxConns, perIP: cfg.GatewayMaxConnsPerIP}
	go func() { errc <- srv.Serve(countingListener{Listener: ln, limits: limits}) }()
	var isrv *fasthttp.Server
	ierrc := make(chan error, 1)
	internalAddr := "none"
	if iln != nil {
		isrv = s.InternalHTTPServer()
		internalAddr = iln.Addr().String()
		go func() { ierrc <- isrv.Serve(iln) }()
	}
	b := cfg.InflightBudgets()
	log.Info("gateway listening", "addr", ln.Addr().String(), "internal_addr", internalAddr, "dev", cfg.Dev, "max_inflight", b.Total,
		"inflight_orders", b.Orders, "inflight_gifts", b.Gifts, "inflight_reads", b.Reads, "inflight_payments", b.Payments)

	select {
	case err = <-errc:
	case err = <-ierrc:
		// The internal listener failed: stop serving the public one too.
		srv.Shutdown()
		<-errc
		isrv = nil
		if err == nil {
			err = errors.New("the internal listener stopped")
		}
	case <-ctx.Done():
		s.ready.Drain()
		s.draining.Store(true)
		if cfg.DrainDelay > 0 {
			log.Info("draining: /readyz answers 503, serving on until the drain delay is over", "delay", cfg.DrainDelay)
			t := time.NewTimer(cfg.DrainDelay)
			select {
			case <-t.C:
			case err = <-errc:
				// The server failed meanwhile: nothing left to drain.
				errc <- err
			}
			t.Stop()
		}
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		if serr := srv.ShutdownWithContext(sctx); serr != nil {
			// Connections that never sent a request count as busy to
			// fasthttp; they get no answer either way.
			log.Warn("connections still open after the drain timeout", "err", serr)
		}
		cancel()
		err = <-errc
	}
	if isrv != nil {
		// The internal listener goes last: metrics and readiness stay
		// readable while the public one drains.
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		isrv.ShutdownWithContext(sctx)
		cancel()
		if ierr := <-ierrc; err == nil && ierr != nil && !errors.Is(ierr, context.Canceled) {
			err = ierr
		}
	}
	stopBg()
	s.bg.Wait()
	fctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if ferr := s.kafka.Flush(fctx); ferr != nil {
		log.Warn("producer did not flush", "err", ferr)
	}
	log.Info("gateway stopped")
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// InternalHTTPServer returns the fasthttp server of the internal listener.
func (s *Server) InternalHTTPServer() *fasthttp.Server {
	srv := s.HTTPServer()
	srv.Handler = s.InternalHandler
	return srv
}

// HTTPServer returns the fasthttp server for this gateway's public listener.
func (s *Server) HTTPServer() *fasthttp.Server {
	maxConns := cmp.Or(s.cfg.GatewayMaxConns, 16384)
	return &fasthttp.Server{
		Handler:               s.Handler,
		Name:                  "flashgate",
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		// A body is read up to MaxBodySize, or up to readBodySize with a
		// largeBodies slot (headerReceived), before any handler runs.
		MaxRequestBodySize:           MaxBodySize,
		HeaderReceived:               s.headerReceived,
		DisablePreParseMultipartForm: true,
		// The request line and headers must fit the read buffer.
		ReadBufferSize: cmp.Or(s.cfg.GatewayMaxHeaderBytes, 4096),
		// The listener refuses connections past GatewayMaxConns with a JSON
		// 503 first; this is fasthttp's own bound on its workers, a little
		// above, for the connections closing meanwhile.
		Concurrency:  maxConns + maxConns/16 + 16,
		ReadTimeout:  cmp.Or(s.cfg.ReadTimeout, s.cfg.GatewayReadTimeout, 10*time.Second),
		WriteTimeout: 10 * time.Second,
		IdleTimeout:  cmp.Or(s.cfg.IdleTimeout, s.cfg.GatewayIdleTimeout, 60*time.Second),
		ErrorHandler: s.transportError,
		// fasthttp's own log lines through slog, scrubbed and sampled,
		// never with the raw header bytes of a request it could not parse.
		Logger:                newFasthttpLogger(s.log),
		SecureErrorLogMessage: true,
		ReduceMemoryUsage:     false,
	}
}
