package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"github.com/valyala/fasthttp/pprofhandler"

	"github.com/flashgate/flashgate/internal/apierr"
	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/obs"
)

var (
	requestsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "gateway", Name: "requests_total",
		Help: "HTTP requests answered, by route pattern and answer code (ok or the API error code).",
	}, []string{"route", "code"})
	shedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "gateway", Name: "shed_total",
		Help: "Requests answered 503 at once because their route class (FLASHGATE_INFLIGHT_<CLASS>) or the gateway (FLASHGATE_MAX_INFLIGHT) was at its in-flight budget, by route class.",
	}, []string{"class"})
	// shedByClass are the shedTotal children, resolved once.
	shedByClass = func() (m [numBudgets]prometheus.Counter) {
		for c := range m {
			m[c] = shedTotal.WithLabelValues(budgetNames[c])
		}
		return m
	}()
	metricsHandler = fasthttpadaptor.NewFastHTTPHandler(promhttp.Handler())
)

// budgetClass names the in-flight budget a route counts against.
type budgetClass uint8

const (
	budgetMemory   budgetClass = iota // answered from memory: the total budget only
	budgetOrders                      // FLASHGATE_INFLIGHT_ORDERS
	budgetGifts                       // FLASHGATE_INFLIGHT_GIFTS
	budgetReads                       // FLASHGATE_INFLIGHT_READS: may wait on MySQL
	budgetPayments                    // FLASHGATE_INFLIGHT_PAYMENTS
	numBudgets
)

var budgetNames = [numBudgets]string{"memory", "orders", "gifts", "reads", "payments"}

// inflight is the gateway's load shedding. A request holds a slot of its
// class's budget and one of the total while it is worked on; with none free
// within wait it is answered 503 at once rather than queued. A class stuck on
// a slow dependency (reads on MySQL) fills its own budget only: the config
// keeps reads + payments below the total, so orders and gifts always find
// slots.
type inflight struct {
	total   chan struct{}
	classes [numBudgets]chan struct{} // nil for budgetMemory
	wait    time.Duration
}

func newInflight(b config.InflightBudgets, wait time.Duration) *inflight {
	f := &inflight{total: make(chan struct{}, max(b.Total, 1)), wait: wait}
	f.classes[budgetOrders] = make(chan struct{}, max(b.Orders, 1))
	f.classes[budgetGifts] = make(chan struct{}, max(b.Gifts, 1))
	f.classes[budgetReads] = make(chan struct{}, max(b.Reads, 1))
	f.classes[budgetPayments] = make(chan struct{}, max(b.Payments, 1))
	return f
}

// admit takes a slot of the class and then one of the total, waiting at most
// f.wait for both together. The class comes first so that a request of a
// full class never holds a slot of the total while it waits.
func (f *inflight) admit(c budgetClass) bool {
	var t *time.Timer
	expired := false
	take := func(sem chan struct{}) bool {
		select {
		case sem <- struct{}{}:
			return true
		default:
		}
		if f.wait <= 0 || expired {
			return false
		}
		if t == nil {
			t = time.NewTimer(f.wait)
		}
		select {
		case sem <- struct{}{}:
			return true
		case <-t.C:
			expired = true
			return false
		}
	}
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	class := f.classes[c]
	if class != nil && !take(class) {
		return false
	}
	if !take(f.total) {
		if class != nil {
			<-class
		}
		return false
	}
	return true
}

func (f *inflight) release(c budgetClass) {
	<-f.total
	if class := f.classes[c]; class != nil {
		<-class
	}
}

// capacityErrors are the 503s of a full budget, one message per class.
var capacityErrors = func() (m [numBudgets]*apierr.Error) {
	for c := range m {
		m[c] = apierr.Unavailable.With("the gateway is at capacity for " + budgetNames[c] + " requests, try again shortly")
	}
	return m
}()

// reqCtx is what a handler gets: the fasthttp request (valid only until the
// handler returns), the path parameters and the caller's claims.
type reqCtx struct {
	*fasthttp.RequestCtx
	params [4]string
	claims auth.Claims
	rid    [maxRequestID]byte // room for the request ID
}

// reqCtxPool recycles reqCtx: handlers take it by pointer, so one would
// otherwise be allocated per request. No handler keeps it past its return.
var reqCtxPool = sync.Pool{New: func() any { return new(reqCtx) }}

// Handler is the fasthttp entry point of the public listener: the API
// without the admin routes, /healthz, and a /readyz that says ready or not
// and nothing more. Metrics, readiness details and admin routes are on the
// internal listener (InternalHandler) only.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	s.handle(ctx, false)
	s.releaseLargeBody(ctx)
	if s.draining.Load() {
		// Clients on keep-alive connections reconnect, through the load
		// balancer that no longer sends them here, before the listener
		// closes; answers already on their way are not cut.
		ctx.SetConnectionClose()
	}
}

// InternalHandler is the fasthttp entry point of the internal listener
// (FLASHGATE_INTERNAL_ADDR): /healthz, /readyz with the failing dependency,
// /metrics and the admin routes, which still need an admin token.
func (s *Server) InternalHandler(ctx *fasthttp.RequestCtx) {
	s.handle(ctx, true)
	s.releaseLargeBody(ctx)
}

func (s *Server) handle(ctx *fasthttp.RequestCtx, internal bool) {
	path := ctx.Path()
	switch string(path) {
	case "/healthz":
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"status":"ok"}`)
		return
	case "/readyz":
		s.readyz(ctx, internal)
		return
	case "/metrics":
		if internal {
			metricsHandler(ctx)
			return
		}
	}
	if internal && s.cfg.Pprof && bytes.HasPrefix(path, []byte("/debug/pprof/")) {
		pprofhandler.PprofHandler(ctx)
		return
	}
	if !isAPI(path) && s.serveSite(ctx, path, internal) {
		return
	}
	rc := reqCtxPool.Get().(*reqCtx)
	*rc = reqCtx{RequestCtx: ctx}
	defer reqCtxPool.Put(rc)
	r, _, wrongMethod := match(string(ctx.Method()), path, &rc.params, internal)
	budget, pattern := budgetMemory, "unmatched"
	if r != nil {
		budget, pattern = r.budget, r.pattern
	}
	if !s.inflight.admit(budget) {
		shedByClass[budget].Inc()
		s.fail(ctx, pattern, capacityErrors[budget])
		return
	}
	defer s.inflight.release(budget)
	if len(ctx.Request.Body()) > MaxBodySize {
		s.fail(ctx, "", apierr.BodyTooLarge)
		return
	}
	began := time.Now()
	var e *apierr.Error
	switch {
	case r == nil && wrongMethod:
		e = apierr.MethodNotAllowed
	case r == nil:
		e = apierr.NotFound
	default:
		if e = s.authorize(rc, r); e == nil {
			e = r.handle(s, rc)
		}
	}
	if e != nil {
		s.fail(ctx, pattern, e)
	} else {
		r.ok.Inc()
	}
	// After fail, which starts the response afresh.
	rid := appendRequestID(rc.rid[:0], ctx)
	ctx.Response.Header.SetCanonical(requestIDHeader, rid)
	// One line per request at debug, and every 5xx at warn. The route
	// pattern, never the path or headers: no tokens or signatures in logs.
	level := slog.LevelDebug
	if ctx.Response.StatusCode() >= 500 {
		level = slog.LevelWarn
	}
	if s.log.Enabled(context.Background(), level) {
		s.log.Log(context.Background(), level, "request", "request_id", string(rid), "method", string(ctx.Method()), "route", pattern,
			"status", ctx.Response.StatusCode(), "user", rc.claims.UserID, "took", time.Since(began))
	}
}

var (
	ridPrefix = func() string {
		var b [4]byte
		rand.Read(b[:])
		return hex.EncodeToString(b[:]) + "-"
	}()
	ridSeq atomic.Uint64
)

// requestIDHeader is X-Request-Id in canonical form, for SetCanonical.
var requestIDHeader = []byte("X-Request-Id")

// appendRequestID appends the client's X-Request-Id when it is a sane
// token, or a new one: a per-process prefix and a counter, cheap and unique
// enough to find one request in the logs of all replicas.
func appendRequestID(dst []byte, ctx *fasthttp.RequestCtx) []byte {
	if h := ctx.Request.Header.PeekBytes(requestIDHeader); len(h) > 0 && len(h) <= maxRequestID && validKey(h) {
		return append(dst, h...)
	}
	return strconv.AppendUint(append(dst, ridPrefix...), ridSeq.Add(1), 36)
}

// maxRequestID is the longest client X-Request-Id passed on.
const maxRequestID = 64

func validKey(k []byte) bool {
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// retryAfter is the 429 for a wait, in whole seconds of at least one.
func retryAfter(wait time.Duration) *apierr.Error {
	e := *apierr.RateLimited
	e.RetryAfter = max(1, int((wait+time.Second-1)/time.Second))
	return &e
}

// authorize applies the route's access rule and the caller's rate limit.
func (s *Server) authorize(rc *reqCtx, r *route) *apierr.Error {
	switch r.access {
	case public, dev:
		if r.access == dev && !s.cfg.Dev {
			return apierr.NotFound
		}
		// Dev routes exist only in dev mode, where a load test's setup
		// mints thousands of tokens from one host; they are not limited.
		lim, source := s.ipLimit, "ip"
		if r.perSource {
			lim, source = s.notifyLimit, "notify_source"
		}
		if r.access == public && lim != nil {
			if wait := lim.allow(clientKey(s.clientAddr(rc.RequestCtx)), time.Now().UnixNano()); wait > 0 {
				rateLimited.WithLabelValues(r.class.String(), source).Inc()
				return retryAfter(wait)
			}
		}
		return nil
	}
	c, err := s.signer.VerifyHeader(rc.Request.Header.Peek("Authorization"))
	switch {
	case err == auth.ErrMissing:
		return apierr.Unauthorized.With("missing bearer token")
	case err != nil:
		return apierr.Unauthorized.With("invalid token: " + err.Error())
	}
	rc.claims = c
	if r.access == admin && !c.IsAdmin() {
		return apierr.Forbidden.With("this route needs the admin role")
	}
	if r.limitLate {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RedisTimeout)
	defer cancel()
	wait, err := s.limiter.Allow(ctx, c.UserID, r.class)
	if err != nil {
		s.log.Warn("rate limiter failed; letting the request through", "err", err)
		return nil
	}
	if wait > 0 {
		return retryAfter(wait)
	}
	return nil
}

// notReady is the public /readyz's 503: which dependency failed, and its
// address, is for the internal listener and the logs only.
var notReady = apierr.Unavailable.With("not ready")

func (s *Server) readyz(ctx *fasthttp.RequestCtx, detailed bool) {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.ready.Ready(c); err != nil {
		if detailed {
			s.fail(ctx, "/readyz", apierr.Unavailable.With("not ready: "+err.Error()))
		} else {
			s.fail(ctx, "/readyz", notReady)
		}
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"status":"ready"}`)
}

// fail answers with e in place of whatever the handler wrote: its status,
// Retry-After and JSON body. Error answers are counted here, by route and code.
func (s *Server) fail(ctx *fasthttp.RequestCtx, route string, e *apierr.Error) {
	ctx.Response.Reset()
	ctx.SetStatusCode(e.HTTPStatus)
	ctx.SetContentType("application/json")
	if e.RetryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	var buf [256]byte
	ctx.SetBody(e.AppendBody(buf[:0]))
	if route == "" {
		route = "unmatched"
	}
	failures.get(route, e.Code).Inc()
}

// failures are the requestsTotal children of error answers, resolved once
// each: a sold-out answer is as hot a path as an accepted order.
var failures = failCounters{m: map[[2]string]prometheus.Counter{}}

type failCounters struct {
	mu sync.RWMutex
	m  map[[2]string]prometheus.Counter
}

func (f *failCounters) get(route, code string) prometheus.Counter {
	k := [2]string{route, code}
	f.mu.RLock()
	c, ok := f.m[k]
	f.mu.RUnlock()
	if ok {
		return c
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok = f.m[k]; !ok {
		c = requestsTotal.WithLabelValues(route, code)
		f.m[k] = c
	}
	return c
}

// writeJSON answers status with v encoded by encoding/json. The hot answers
// (createOrder, getWallet, sendGift) append their JSON by hand instead.
func (rc *reqCtx) writeJSON(status int, v any) *apierr.Error {
	b, err := json.Marshal(v)
	if err != nil {
		return apierr.Unavailable.With("cannot encode the answer")
	}
	rc.SetStatusCode(status)
	rc.SetContentType("application/json")
	rc.SetBody(b)
	return nil
}

// decode decodes the request body strictly into v: one JSON object of the
// right types, nothing after it. Unknown fields are ignored
// (docs/openapi.yaml, "Conventions"). An empty body counts as {} when
// emptyOK.
func (rc *reqCtx) decode(v any, emptyOK bool) *apierr.Error {
	body := rc.PostBody()
	if len(trimSpace(body)) == 0 {
		if emptyOK {
			return nil
		}
		return apierr.InvalidRequest.With("a JSON body is required")
	}
	if e := decodeJSON(body, v); e != nil {
		return e
	}
	return nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// idemKey returns the request's Idempotency-Key, validated.
func (rc *reqCtx) idemKey() (string, *apierr.Error) {
	k := rc.Request.Header.Peek("Idempotency-Key")
	if k == nil {
		return "", nil
	}
	if len(k) == 0 || len(k) > 64 || !validKey(k) {
		return "", apierr.InvalidRequest.With("Idempotency-Key must be 1 to 64 characters of A-Z a-z 0-9 _ -")
	}
	return string(k), nil
}

// pathID parses a positive integer path parameter; anything else is 404,
// since no resource can have that id.
func pathID(s string) (int64, *apierr.Error) {
	if len(s) == 0 || len(s) > 19 || s[0] == '0' {
		return 0, apierr.NotFound
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, apierr.NotFound
	}
	return n, nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
