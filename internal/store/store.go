package store

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/flashgate/flashgate/internal/config"
)

// Redis is flashgate's Redis: the Lua scripts and the keys they touch, behind one
// rueidis client. Nothing outside this package names a key or runs a script.
type Redis struct {
	c rueidis.Client

	// clockOffset is Redis's clock minus this process's, in ns, as
	// SyncClock last measured it; see Clock.
	clockOffset atomic.Int64
}

// New connects to Redis at addr, without credentials or TLS. Concurrent
// calls are auto-pipelined.
func New(addr string) (*Redis, error) { return NewWith(addr, Options{}) }

// Options are the credentials and TLS of a Redis connection.
type Options struct {
	Username, Password string      // AUTH; empty: none
	TLS                *tls.Config // nil: plain TCP
}

// Dial connects to the configured Redis: FLASHGATE_REDIS_ADDR with
// FLASHGATE_REDIS_USERNAME, _PASSWORD and _TLS.
func Dial(cfg config.Config) (*Redis, error) {
	tc, err := cfg.RedisTLSConfig()
	if err != nil {
		return nil, err
	}
	return NewWith(cfg.RedisAddr, Options{Username: cfg.RedisUsername, Password: cfg.RedisPassword, TLS: tc})
}

// NewWith connects to Redis at addr with o. addr is one host:port, or
// comma-separated seed nodes of a Redis Cluster; rueidis finds out which it
// is (CLUSTER SLOTS) and, in a cluster, sends each script to the master of
// its keys' slot.
func NewWith(addr string, o Options) (*Redis, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:  SeedAddrs(addr),
		Username:     o.Username,
		Password:     o.Password,
		TLSConfig:    o.TLS,
		DisableCache: true,
		// A flash sale is a burst of tiny scripts: let rueidis gather them.
		MaxFlushDelay:    20 * time.Microsecond,
		ConnWriteTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot connect to Redis at %s: %w", addr, err)
	}
	return &Redis{c: c}, nil
}

// SeedAddrs splits FLASHGATE_REDIS_ADDR into its addresses.
func SeedAddrs(addr string) []string {
	var seeds []string
	for _, a := range strings.Split(addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			seeds = append(seeds, a)
		}
	}
	return seeds
}

// Close closes the client.
func (s *Redis) Close() { s.c.Close() }

// Ping checks that Redis answers.
func (s *Redis) Ping(ctx context.Context) error {
	return s.c.Do(ctx, s.c.B().Ping().Build()).Error()
}

// SyncClock measures Redis's clock against this process's, for Clock. A
// gateway calls it every second: reservations are stamped with Redis's
// clock without a TIME command per reservation.
func (s *Redis) SyncClock(ctx context.Context) error {
	before := time.Now()
	r, err := s.Now(ctx)
	if err != nil {
		return err
	}
	rtt := time.Since(before)
	s.clockOffset.Store(int64(r.Sub(before.Add(rtt / 2))))
	return nil
}

// Clock is Redis's clock as of SyncClock's last measure: this process's
// clock plus the offset measured, to within half a round trip and the
// drift since. Before any measure it is this process's clock.
func (s *Redis) Clock() time.Time {
	return time.Now().Add(time.Duration(s.clockOffset.Load()))
}
