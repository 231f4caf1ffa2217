package gateway

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/obs"
	"github.com/flashgate/flashgate/internal/store"
	"github.com/flashgate/flashgate/lua"
)

// RateClass groups routes that share a per-user rate limit.
type RateClass int

// Rate classes.
const (
	ClassOther RateClass = iota
	ClassOrder
	ClassGift
	ClassPay
	numClasses
)

var classNames = [numClasses]string{"other", "order", "gift", "pay"}

func (c RateClass) String() string { return classNames[c] }

// Limiter is the seam for per-user rate limits: Allow returns 0 to let a
// request through, or how long the user must wait. An error lets the request
// through (a limiter outage must not stop the sale) and is logged.
type Limiter interface {
	Allow(ctx context.Context, userID int64, class RateClass) (retryAfter time.Duration, err error)
}

type allowAll struct{}

func (allowAll) Allow(context.Context, int64, RateClass) (time.Duration, error) { return 0, nil }

var rateLimited = promauto.NewCounterVec(prometheus.CounterOpts{
	Namespace: obs.Namespace, Subsystem: "gateway", Name: "rate_limited_total",
	Help: "Requests refused with 429, by rate class and by where the decision came from (redis, cache, ip).",
}, []string{"class", "source"})

// RedisLimiter enforces per-user limits across all gateway replicas with the
// GCRA script, one key per user and class under the user's hash tag. A user
// who is refused is remembered in memory until the retry time, so a client
// that keeps flooding costs no Redis round trip.
type RedisLimiter struct {
	redis *store.Store
	rates [numClasses]config.Rate
	deny  denyCache
}

// NewRedisLimiter returns a limiter with the configured rates.
func NewRedisLimiter(r *store.Store, cfg config.Config) *RedisLimiter {
	l := &RedisLimiter{redis: r}
	l.rates[ClassOrder], l.rates[ClassGift], l.rates[ClassPay], l.rates[ClassOther] = cfg.RateOrder, cfg.RateGift, cfg.RatePay, cfg.RateOther
	return l
}

var _ Limiter = (*RedisLimiter)(nil)

// Allow implements Limiter.
func (l *RedisLimiter) Allow(ctx context.Context, userID int64, class RateClass) (time.Duration, error) {
	rate := l.rates[class]
	if rate.Off() {
		return 0, nil
	}
	now := time.Now()
	if until := l.deny.get(denyKey{userID, class}, now); until > 0 {
		rateLimited.WithLabelValues(class.String(), "cache").Inc()
		return time.Duration(until - now.UnixNano()), nil
	}
	interval := int64(1e6 / rate.PerSecond)
	vals, err := lua.RateLimit.Exec(ctx, l.redis.C,
		[]string{"{u:" + strconv.FormatInt(userID, 10) + "}:rl:" + class.String()},
		[]string{strconv.FormatInt(interval, 10), strconv.Itoa(rate.Burst)}).ToArray()
	if err != nil {
		return 0, err
	}
	if ok, _ := vals[0].AsInt64(); ok == 1 {
		return 0, nil
	}
	us, _ := vals[1].AsInt64()
	wait := time.Duration(us) * time.Microsecond
	l.deny.put(denyKey{userID, class}, now.Add(wait).UnixNano())
	rateLimited.WithLabelValues(class.String(), "redis").Inc()
	return wait, nil
}

type denyKey struct {
	user  int64
	class RateClass
}

// denyCache remembers refused users until their retry time.
type denyCache struct {
	mu    sync.RWMutex
	m     map[denyKey]int64 // unix nanos
	swept int64
}

func (d *denyCache) get(k denyKey, now time.Time) int64 {
	d.mu.RLock()
	until, ok := d.m[k]
	d.mu.RUnlock()
	if !ok || until <= now.UnixNano() {
		return 0
	}
	return until
}

func (d *denyCache) put(k denyKey, until int64) {
	d.mu.Lock()
	if d.m == nil {
		d.m = map[denyKey]int64{}
	}
	d.m[k] = until
	// Drop expired entries now and then so the map stays the size of the
	// current flood, not of every user who was ever refused.
	if now := time.Now().UnixNano(); now-d.swept > int64(time.Second) {
		d.swept = now
		for k, u := range d.m {
			if u <= now {
				delete(d.m, k)
			}
		}
	}
	d.mu.Unlock()
}

// memLimiter is a GCRA kept in this gateway's memory, per client IP (routes
// without a token) or per user (orders). It is per replica: it only has to
// stop one noisy client before it costs Redis anything.
type memLimiter[K comparable] struct {
	interval, limit int64 // nanoseconds
	mu              sync.Mutex
	tat             map[K]int64
	swept           int64
}

// newMemLimiter returns nil, no limit, when the rate is off.
func newMemLimiter[K comparable](r config.Rate) *memLimiter[K] {
	if r.Off() {
		return nil
	}
	iv := int64(float64(time.Second) / r.PerSecond)
	return &memLimiter[K]{interval: iv, limit: iv * int64(r.Burst), tat: map[K]int64{}}
}

// allow returns 0 or how long the client must wait. A nil limiter allows.
func (l *memLimiter[K]) allow(key K, now int64) time.Duration {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	tat := max(l.tat[key], now)
	next := tat + l.interval
	if next-now > l.limit {
		return time.Duration(next - now - l.limit)
	}
	l.tat[key] = next
	if now-l.swept > int64(10*time.Second) {
		l.swept = now
		for k, t := range l.tat {
			if t < now {
				delete(l.tat, k)
			}
		}
	}
	return 0
}
