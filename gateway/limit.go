package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/obs"
	"github.com/flashgate/flashgate/internal/store"
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

var rateLimited = promauto.NewCounterVec(prometheus.CounterOpts{
	Namespace: obs.Namespace, Subsystem: "gateway", Name: "rate_limited_total",
	Help: "Requests refused with 429, by rate class and by where the decision came from (redis, cache, memory, ip, notify_source).",
}, []string{"class", "source"})

// RedisLimiter enforces per-user limits across all gateway replicas with the
// GCRA script, one key per user and class under the user's hash tag. A user
// who is refused is remembered in memory until the retry time, so a client
// that keeps flooding costs no Redis round trip.
type RedisLimiter struct {
	redis *store.Redis
	rates [numClasses]config.Rate
	deny  denyCache
}

// NewRedisLimiter returns a limiter with the configured rates.
func NewRedisLimiter(r *store.Redis, cfg config.Config) *RedisLimiter {
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
	ok, wait, err := l.redis.RateLimit(ctx, userID, class.String(), store.Limit{PerSecond: rate.PerSecond, Burst: rate.Burst})
	if err != nil {
		return 0, err
	}
	if ok {
		return 0, nil
	}
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

// memLimiter is a GCRA kept in this gateway's memory, per client (routes
// without a token) or per user (orders). It is per replica: it only has to
// stop one noisy client before it costs Redis anything.
//
// Its memory is bounded whatever the keys: at most maxKeys of them, over
// limiterShards maps with a lock each (so public requests do not all queue
// on one mutex, and a sweep walks one shard). A key whose time has passed
// holds nothing and is dropped by the next sweep of its shard; a new key in
// a full shard first sweeps it (at most once a second) and then, if it is
// still full, forgets an arbitrary key, which at worst lets that one client
// start a fresh burst. A flood of made-up addresses can so make the limit
// leakier, but never grow the map or lock real clients out.
type memLimiter[K comparable] struct {
	interval, limit int64 // nanoseconds
	perShard        int
	hash            func(K) uint64
	shards          [limiterShards]limiterShard[K]
}

type limiterShard[K comparable] struct {
	mu    sync.Mutex
	tat   map[K]int64
	swept int64
}

const (
	limiterShards = 16
	// limiterKeys is the most keys a limiter holds: about 7 MiB of IPv6
	// keys.
	limiterKeys = 1 << 17
)

var limiterEvictions = promauto.NewCounter(prometheus.CounterOpts{
	Namespace: obs.Namespace, Subsystem: "gateway", Name: "rate_limiter_evictions_total",
	Help: "Clients or users an in-memory rate limiter forgot before their time because it was full (a flood of distinct addresses).",
})

// newMemLimiter returns nil, no limit, when the rate is off. It holds at most
// maxKeys keys (limiterKeys when zero).
func newMemLimiter[K comparable](r config.Rate, hash func(K) uint64, maxKeys int) *memLimiter[K] {
	if r.Off() {
		return nil
	}
	if maxKeys <= 0 {
		maxKeys = limiterKeys
	}
	iv := int64(float64(time.Second) / r.PerSecond)
	l := &memLimiter[K]{interval: iv, limit: iv * int64(r.Burst), hash: hash, perShard: max(1, maxKeys/limiterShards)}
	for i := range l.shards {
		l.shards[i].tat = map[K]int64{}
	}
	return l
}

// allow returns 0 or how long the client must wait. A nil limiter allows.
func (l *memLimiter[K]) allow(key K, now int64) time.Duration {
	if l == nil {
		return 0
	}
	sh := &l.shards[l.hash(key)>>32%limiterShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old, known := sh.tat[key]
	tat := max(old, now)
	next := tat + l.interval
	if next-now > l.limit {
		return time.Duration(next - now - l.limit)
	}
	if !known && len(sh.tat) >= l.perShard {
		if now-sh.swept > int64(time.Second) {
			sh.sweep(now)
		}
		for k := range sh.tat {
			if len(sh.tat) < l.perShard {
				break
			}
			delete(sh.tat, k)
			limiterEvictions.Inc()
		}
	}
	sh.tat[key] = next
	if now-sh.swept > int64(10*time.Second) {
		sh.sweep(now)
	}
	return 0
}

// sweep drops the keys whose time has passed: they hold no debt.
func (sh *limiterShard[K]) sweep(now int64) {
	sh.swept = now
	for k, t := range sh.tat {
		if t < now {
			delete(sh.tat, k)
		}
	}
}

// size is how many keys the limiter holds.
func (l *memLimiter[K]) size() int {
	n := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
		n += len(l.shards[i].tat)
		l.shards[i].mu.Unlock()
	}
	return n
}
