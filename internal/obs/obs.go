// Package obs holds what every service shares for being watched: the logger,
// Prometheus metrics and the /healthz, /readyz, /metrics endpoints.
package obs

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace of every flashgate metric.
const Namespace = "flashgate"

// NewLogger returns a slog logger: JSON unless format is "text".
func NewLogger(format, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if strings.EqualFold(format, "text") {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}

// Metrics shared by several services.
var (
	KafkaProduceSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "kafka_produce_seconds",
		Help:    "Time until Kafka acknowledged a produced record, by topic.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	}, []string{"topic"})
)

// Readiness is a service's readiness: ready once started, not ready while
// draining on shutdown or while a dependency check fails.
type Readiness struct {
	draining atomic.Bool
	Check    func(ctx context.Context) error // dependency check; nil = always fine
}

// Drain marks the service as shutting down: /readyz answers 503 from now on.
func (r *Readiness) Drain() { r.draining.Store(true) }

// Ready reports nil when the service should receive traffic.
func (r *Readiness) Ready(ctx context.Context) error {
	if r.draining.Load() {
		return errors.New("draining")
	}
	if r.Check != nil {
		return r.Check(ctx)
	}
	return nil
}

// Handle serves /healthz, /readyz (naming the failing dependency) and
// /metrics on mux: the endpoints of an internal listener.
func (r *Readiness) Handle(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", r.readyz(true))
	mux.Handle("GET /metrics", promhttp.Handler())
}

// HandleProfiles serves Go's runtime profiles at /debug/pprof/ on mux, for
// go tool pprof (FLASHGATE_PPROF).
func HandleProfiles(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// HandlePublic serves /healthz and a /readyz that says ready or not and
// nothing more on mux: the endpoints of an internet-facing listener, for
// load balancers. Which dependency failed, at what address, and the metrics
// are for the internal listener.
func (r *Readiness) HandlePublic(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", r.readyz(false))
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"status":"ok"}`))
}

func (r *Readiness) readyz(detailed bool) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		ctx, cancel := context.WithTimeout(req.Context(), 2*time.Second)
		defer cancel()
		if err := r.Ready(ctx); err != nil {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			msg := "not ready"
			if detailed {
				msg += ": " + jsonSafe(err.Error())
			}
			w.Write([]byte(`{"error":{"code":"unavailable","message":"` + msg + `"}}`))
			return
		}
		w.Write([]byte(`{"status":"ready"}`))
	}
}

func jsonSafe(s string) string {
	return strings.NewReplacer(`"`, `'`, `\`, `/`, "\n", " ").Replace(s)
}

// Serve runs srv on ln (or on srv.Addr when ln is nil) until ctx is done, then
// shuts it down gracefully within grace.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", srv.Addr); err != nil {
			return err
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc
	return err
}

// AtLeast returns a logger that drops records below min: libraries such as
// franz-go log routine group and connection chatter at info.
func AtLeast(l *slog.Logger, min slog.Level) *slog.Logger {
	return slog.New(minLevel{l.Handler(), min})
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}
func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(a), m.min}
}
func (m minLevel) WithGroup(n string) slog.Handler { return minLevel{m.Handler.WithGroup(n), m.min} }
