package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/flashgate/flashgate/internal/apierr"
	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/obs"
)

var (
	requestsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "gateway", Name: "requests_total",
		Help: "HTTP requests answered, by route pattern and answer code (ok or the API error code).",
	}, []string{"route", "code"})
	metricsHandler = fasthttpadaptor.NewFastHTTPHandler(promhttp.Handler())
)

// reqCtx is what a handler gets: the fasthttp request (valid only until the
// handler returns), the path parameters and the caller's claims.
type reqCtx struct {
	*fasthttp.RequestCtx
	params [4]string
	claims auth.Claims
}

// Handler is the fasthttp entry point.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	switch string(path) {
	case "/healthz":
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"status":"ok"}`)
		return
	case "/readyz":
		s.readyz(ctx)
		return
	case "/metrics":
		metricsHandler(ctx)
		return
	}
	rc := reqCtx{RequestCtx: ctx}
	r, _, wrongMethod := match(string(ctx.Method()), path, &rc.params)
	if r == nil {
		if wrongMethod {
			s.fail(ctx, "", apierr.MethodNotAllowed)
		} else {
			s.fail(ctx, "", apierr.NotFound)
		}
		return
	}
	if e := s.authorize(&rc, r); e != nil {
		s.fail(ctx, r.pattern, e)
		return
	}
	if e := r.handle(s, &rc); e != nil {
		s.fail(ctx, r.pattern, e)
		return
	}
	requestsTotal.WithLabelValues(r.pattern, "ok").Inc()
}

// authorize applies the route's access rule and the caller's rate limit.
func (s *Server) authorize(rc *reqCtx, r *route) *apierr.Error {
	switch r.access {
	case public:
		return nil
	case dev:
		if !s.cfg.Dev {
			return apierr.NotFound
		}
		return nil
	}
	tok := auth.FromHeader(string(rc.Request.Header.Peek("Authorization")))
	if tok == "" {
		return apierr.Unauthorized.With("missing bearer token")
	}
	c, err := s.signer.Verify(tok)
	if err != nil {
		return apierr.Unauthorized.With("invalid token: " + err.Error())
	}
	if r.access == admin && !c.IsAdmin() {
		return apierr.Forbidden.With("this route needs the admin role")
	}
	rc.claims = c
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RedisTimeout)
	defer cancel()
	wait, err := s.limiter.Allow(ctx, c.UserID, r.class)
	if err != nil {
		s.log.Warn("rate limiter failed; letting the request through", "err", err)
		return nil
	}
	if wait > 0 {
		e := *apierr.RateLimited
		e.RetryAfter = int((wait + time.Second - 1) / time.Second)
		return &e
	}
	return nil
}

func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.ready.Ready(c); err != nil {
		s.fail(ctx, "/readyz", apierr.Unavailable.With("not ready: "+err.Error()))
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"status":"ready"}`)
}

// fail writes an API error.
func (s *Server) fail(ctx *fasthttp.RequestCtx, route string, e *apierr.Error) {
	ctx.Response.Reset()
	ctx.SetStatusCode(e.HTTPStatus)
	ctx.SetContentType("application/json")
	if e.RetryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	ctx.SetBody(e.Body())
	if route == "" {
		route = "unmatched"
	}
	requestsTotal.WithLabelValues(route, e.Code).Inc()
}

// transportError answers errors fasthttp hits before a handler runs, such as
// a body over the limit, with the API's JSON error body.
func (s *Server) transportError(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		s.fail(ctx, "", apierr.BodyTooLarge)
		ctx.SetConnectionClose()
		return
	}
	s.fail(ctx, "", apierr.InvalidRequest.With("cannot read the request"))
	ctx.SetConnectionClose()
}

// writeJSON writes a 2xx answer.
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
// right types, nothing after it. Unknown fields are ignored (API.md). An empty
// body counts as {} when emptyOK.
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
	if len(k) == 0 || len(k) > 64 {
		return "", apierr.InvalidRequest.With("Idempotency-Key must be 1 to 64 characters of A-Z a-z 0-9 _ -")
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return "", apierr.InvalidRequest.With("Idempotency-Key must be 1 to 64 characters of A-Z a-z 0-9 _ -")
		}
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
