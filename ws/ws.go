// Package ws is flashgate's WebSocket push service. Clients connect to
// GET /ws with their token; the service consumes the Kafka results topic and
// pushes each result (ticket outcomes, stock changes, room gifts) to the
// connections that want it, as the "WebSocket push" paragraph of
// docs/openapi.yaml describes.
//
// Every replica reads every result (no consumer group) starting at its own
// start time, and delivers to its own connections. Results produced while no
// replica held a user's connection are not replayed: clients read missed
// outcomes from GET /api/v1/tickets/{ticket}.
//
// Each connection has one reader, one writer and a send queue bounded in
// messages (FLASHGATE_WS_SEND_QUEUE) and in bytes (FLASHGATE_WS_SEND_BYTES).
// The dispatcher never waits for a client: when a queue is full the
// connection is closed with code 1008 (policy violation, reason "send queue
// full"); on shutdown every connection is closed with 1001 (going away).
package ws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flashgate/flashgate/internal/apierr"
	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/clientip"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/obs"
)

// Defaults for zero or negative config fields.
const (
	DefaultSendQueue         = 256
	DefaultSendBytes         = 1 << 20
	DefaultShutdownTimeout   = 10 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
)

// Config configures Run.
type Config struct {
	config.Config

	// Listener, if set, is served instead of listening on WSAddr (tests use
	// a listener on 127.0.0.1:0). Run closes it.
	Listener net.Listener
	// InternalListener, if set, serves /metrics and the detailed /readyz
	// instead of listening on WSInternalAddr; with neither, they are not
	// served. Run closes it.
	InternalListener net.Listener

	// ReadHeaderTimeout bounds the wait for a request's head, counted from
	// the accept on a new connection and from the request's first bytes on
	// a keep-alive one. A request that began but did not finish in time
	// gets 408 request_timeout; a connection that sent nothing is closed
	// silently. Zero means DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request before it is closed silently. It does not apply to
	// WebSocket connections, which ping/pong keeps alive. Zero means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration

	// Ping period and pong wait of WebSocket connections; zero means
	// 25 s and 10 s (pingPeriod, pongWait). Tests shorten them.
	pingPeriod, pongWait time.Duration
	// writeWait bounds one write to a connection's socket; zero means
	// 10 s. Tests lengthen it, to hold a client that does not read.
	writeWait time.Duration
}

// setDefaults fills zero or negative fields with their defaults.
func (cfg *Config) setDefaults() {
	orDefault(&cfg.WSSendQueue, DefaultSendQueue)
	orDefault(&cfg.WSSendBytes, DefaultSendBytes)
	orDefault(&cfg.ShutdownTimeout, DefaultShutdownTimeout)
	orDefault(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	orDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	orDefault(&cfg.pingPeriod, pingPeriod)
	orDefault(&cfg.pongWait, pongWait)
	orDefault(&cfg.writeWait, writeWait)
}

// orDefault sets *v to d when it is zero or negative.
func orDefault[T int | int64 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

func (cfg *Config) validate() error {
	if cfg.TokenSecret == "" {
		return ErrNoTokenSecret
	}
	if err := cfg.Config.Validate(); err != nil {
		return fmt.Errorf("ws: %w", err)
	}
	if len(cfg.KafkaBrokers) == 0 {
		return ErrNoBrokers
	}
	if cfg.Listener == nil && cfg.WSAddr == "" {
		return ErrNoAddr
	}
	return nil
}

// Run serves WebSocket connections until ctx is done, then shuts down: it
// turns /readyz to 503 and goes on serving (new connections included) for
// FLASHGATE_DRAIN_DELAY, so that load balancers stop sending clients here;
// then it closes every connection with 1001, stops the results consumer and
// returns nil. It returns an error if it cannot start or if the HTTP server
// fails.
func Run(ctx context.Context, cfg Config) error {
	closeListeners := func() {
		for _, l := range []net.Listener{cfg.Listener, cfg.InternalListener} {
			if l != nil {
				l.Close()
			}
		}
	}
	if err := cfg.validate(); err != nil {
		closeListeners()
		return err
	}
	for _, l := range []net.Listener{cfg.Listener, cfg.InternalListener} {
		if l == nil {
			continue
		}
		if err := cfg.CheckDevListener("ws", l.Addr()); err != nil {
			closeListeners()
			return err
		}
	}
	cfg.setDefaults()
	base := obs.NewLogger(cfg.LogFormat, cfg.LogLevel)
	log := base.With("component", "ws")
	cfg.LogStartup(log)

	// Taken before anything can accept a connection, so every result
	// produced after a client could have connected is read.
	start := time.Now()

	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.WSAddr); err != nil {
			closeListeners()
			return fmt.Errorf("ws: cannot listen on %s: %w", cfg.WSAddr, err)
		}
	}
	iln := cfg.InternalListener
	if iln == nil && cfg.WSInternalAddr != "" {
		var err error
		if iln, err = net.Listen("tcp", cfg.WSInternalAddr); err != nil {
			ln.Close()
			return fmt.Errorf("ws: cannot listen on %s (FLASHGATE_WS_INTERNAL_ADDR): %w", cfg.WSInternalAddr, err)
		}
	}
	cl, err := bus.NewClient(cfg.Config, base,
		kgo.ConsumeTopics(cfg.ResultsTopic()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(start.UnixMilli())),
	)
	if err != nil {
		ln.Close()
		if iln != nil {
			iln.Close()
		}
		return fmt.Errorf("ws: %w", err)
	}
	defer cl.Close()

	s := newServer(cfg, log, newHub(), &obs.Readiness{Check: cl.Ping})

	consumeCtx, stopConsuming := context.WithCancel(context.Background())
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		consume(consumeCtx, cl, s.hub, log)
	}()

	mux := http.NewServeMux()
	s.ready.HandlePublic(mux)
	mux.HandleFunc("GET /ws", s.serveWS)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		// With timeoutListener: answers 408 to requests cut off mid-head.
		ConnState: trackConnState,
		// net/http's own complaints; the request line (which may carry a
		// token) is never part of them.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// The HTTP server gets its own context so that /readyz can answer 503
	// before the listener goes away.
	serveCtx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	served := make(chan error, 1)
	go func() { served <- obs.Serve(serveCtx, srv, timeoutListener{ln}, cfg.ShutdownTimeout) }()
	// The internal listener (metrics, readiness details) stops last, so it
	// stays readable while the public one drains.
	internalCtx, stopInternal := context.WithCancel(context.Background())
	defer stopInternal()
	internalDone := make(chan error, 1)
	internalAddr := "none"
	if iln != nil {
		imux := http.NewServeMux()
		s.ready.Handle(imux)
		if cfg.Pprof {
			obs.HandleProfiles(imux)
		}
		isrv := &http.Server{Handler: imux, ReadHeaderTimeout: cfg.ReadHeaderTimeout, IdleTimeout: cfg.IdleTimeout,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		internalAddr = iln.Addr().String()
		go func() { internalDone <- obs.Serve(internalCtx, isrv, iln, time.Second) }()
	} else {
		internalDone <- nil
	}
	log.Info("serving WebSocket push", "addr", ln.Addr().String(), "internal_addr", internalAddr, "topic", cfg.ResultsTopic())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
		served = nil
	}

	log.Info("shutting down", "drain_delay", cfg.DrainDelay, "timeout", cfg.ShutdownTimeout)
	s.ready.Drain()
	if served != nil && cfg.DrainDelay > 0 {
		// Clients told 1001 reconnect at once: by now the load balancer
		// must have seen /readyz fail, or they would come back here.
		t := time.NewTimer(cfg.DrainDelay)
		select {
		case <-t.C:
		case serveErr = <-served:
			served = nil
		}
		t.Stop()
	}
	s.hub.closeAll(websocket.CloseGoingAway, "server shutting down")
	stopServing()
	if served != nil {
		serveErr = <-served
	}
	s.waitConns(cfg.ShutdownTimeout)
	stopConsuming()
	<-consumed
	stopInternal()
	internalErr := <-internalDone
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("ws: HTTP server: %w", serveErr)
	}
	if internalErr != nil && !errors.Is(internalErr, http.ErrServerClosed) {
		return fmt.Errorf("ws: internal HTTP server: %w", internalErr)
	}
	log.Info("stopped")
	return nil
}

// checkOrigin applies FLASHGATE_WS_ORIGINS. Clients that send no Origin
// (anything but a browser) are let through: the token, never a cookie, is
// what authenticates them. Browsers are held to the list, so a foreign page
// cannot use a token it obtained to hold sockets open from visitors' browsers.
func checkOrigin(cfg config.Config) func(*http.Request) bool {
	allowed := map[string]bool{}
	for _, o := range strings.Split(cfg.WSOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			allowed[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
		}
	}
	anyOrigin := allowed["*"] || (len(allowed) == 0 && cfg.Dev)
	return func(r *http.Request) bool {
		origin := r.Header.Get("Origin")
		if origin == "" || anyOrigin {
			return true
		}
		if allowed[strings.ToLower(origin)] {
			return true
		}
		// With no list, a page served by the ws host itself may connect.
		u, err := url.Parse(origin)
		return len(allowed) == 0 && err == nil && strings.EqualFold(u.Host, r.Host)
	}
}

// newServer returns the GET /ws handler of Run; cfg has its defaults set.
func newServer(cfg Config, log *slog.Logger, h *hub, ready *obs.Readiness) *server {
	s := &server{
		log:    log,
		signer: auth.NewRotatingSigner(cfg.TokenSecret, cfg.TokenSecretPrevious, cfg.TokenPreviousUntil).WithMaxTTL(cfg.TokenMaxTTL),
		hub:    h,
		limits: connLimits{
			queue:      cfg.WSSendQueue,
			queueBytes: cfg.WSSendBytes,
			msgRate:    cfg.WSMsgRate,
			ping:       cfg.pingPeriod,
			pongWait:   cfg.pongWait,
			writeWait:  cfg.writeWait,
		},
		ready:   ready,
		counts:  newConnCounts(cfg.WSMaxConns, cfg.WSMaxPerUser, cfg.WSMaxPerIP),
		clients: clientip.Resolver{Trusted: cfg.TrustedProxies},
	}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   1024, // client frames are tiny
		// Buffers only while writing, so idle connections hold none.
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     checkOrigin(cfg.Config),
		Error:           writeUpgradeError,
	}
	return s
}

// server serves GET /ws.
type server struct {
	log      *slog.Logger
	signer   *auth.Signer
	hub      *hub
	upgrader websocket.Upgrader
	limits   connLimits
	counts   *connCounts
	clients  clientip.Resolver
	ready    *obs.Readiness
}

// serveWS authenticates, upgrades and runs one connection. The token is
// checked before the upgrade so that a client gets a plain 401 it can act on.
func (s *server) serveWS(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	if token == "" {
		token = auth.FromHeader(r.Header.Get("Authorization"))
	}
	if token == "" {
		writeError(w, apierr.Unauthorized)
		return
	}
	claims, err := s.signer.Verify(token)
	if err != nil {
		s.log.Debug("rejected connection", "remote", r.RemoteAddr, "err", err)
		writeError(w, apierr.Unauthorized)
		return
	}
	ip := clientip.Key(s.clients.Client(clientip.ParseHostPort(r.RemoteAddr), forwardedFor(r)))
	if e, limit := s.counts.acquire(claims.UserID, ip); e != nil {
		refusedConns.WithLabelValues(limit).Inc()
		s.log.Debug("refused connection", "remote", r.RemoteAddr, "user_id", claims.UserID, "limit", limit)
		writeError(w, e)
		return
	}
	defer s.counts.release(claims.UserID, ip)
	ws, err := s.upgrader.Upgrade(batchHijacker{w}, r, nil)
	if err != nil {
		// The upgrader has answered the client already.
		s.log.Debug("upgrade failed", "remote", r.RemoteAddr, "user_id", claims.UserID, "err", err)
		return
	}
	c := newConn(ws, claims.UserID, s.hub, s.limits, s.log)
	if !s.hub.add(c) {
		ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down"),
			time.Now().Add(closeWait))
		ws.Close()
		return
	}
	// The token's claims were checked once, at the upgrade: the connection
	// must not outlive them. Closed with 4001 when it expires, the client
	// reconnects with a fresh token.
	expiry := time.AfterFunc(time.Until(claims.Expires), func() {
		c.shutdown(dropExpired, closeTokenExpired, "token expired")
	})
	defer expiry.Stop()
	s.log.Debug("connected", "remote", r.RemoteAddr, "user_id", claims.UserID)
	go c.writeLoop()
	// The handler goroutine is free once the connection is hijacked; reuse it.
	c.readLoop()
	s.log.Debug("disconnected", "remote", r.RemoteAddr, "user_id", claims.UserID)
}

// forwardedFor is the request's X-Forwarded-For values, in order.
func forwardedFor(r *http.Request) [][]byte {
	vs := r.Header.Values("X-Forwarded-For")
	if len(vs) == 0 {
		return nil
	}
	out := make([][]byte, len(vs))
	for i, v := range vs {
		out[i] = []byte(v)
	}
	return out
}

// waitConns waits for every connection goroutine after closeAll, cutting the
// connections that have not closed politely by the timeout.
func (s *server) waitConns(timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		s.hub.conns.Wait()
		close(done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	s.log.Warn("connections did not close in time; cutting them")
	s.hub.abortAll()
	<-done
}

// writeError answers with an API error body before any upgrade.
func writeError(w http.ResponseWriter, e *apierr.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.HTTPStatus)
	w.Write(e.Body())
}

// writeUpgradeError answers a request the upgrader refused (not a WebSocket
// handshake, bad version, bad origin) in the API's error format.
func writeUpgradeError(w http.ResponseWriter, _ *http.Request, status int, reason error) {
	e := apierr.InvalidRequest
	switch status {
	case http.StatusForbidden:
		e = apierr.Forbidden
	case http.StatusMethodNotAllowed:
		e = apierr.MethodNotAllowed
	}
	e = e.With(reason.Error())
	e.HTTPStatus = status
	writeError(w, e)
}
