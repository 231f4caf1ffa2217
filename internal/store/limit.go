package store

import (
	"context"
	"strconv"
	"time"

	"github.com/flashgate/flashgate/lua"
)

// Limit is a per-user rate limit a script applies (GCRA): requests per
// second and the burst allowed at once. The zero Limit is no limit.
type Limit struct {
	PerSecond float64
	Burst     int
}

// interval is the GCRA emission interval in microseconds, "0" for none.
func (l Limit) interval() string {
	if l.PerSecond <= 0 || l.Burst <= 0 {
		return "0"
	}
	return strconv.FormatInt(int64(1e6/l.PerSecond), 10)
}

// RateLimitKey is the key of a user's GCRA state for a class of requests
// that a wallet script limits itself (gift_hold.lua, class "gift"): it
// shares the wallet's {w:B} hash tag, so the script may touch it.
func RateLimitKey(id int64, class string) string { return userKey(id, "rl:"+class) }

// gatewayLimitKey is the key of a user's GCRA state for a class of
// requests the gateway limits before any other call ({u:42}:rl:order).
func gatewayLimitKey(id int64, class string) string { return userTag(id) + ":rl:" + class }

// userTag is the hash tag of a user's gateway keys: rate limits and the
// answers to admin Idempotency-Keys ({u:42}:rl:order).
func userTag(id int64) string { return "{u:" + strconv.FormatInt(id, 10) + "}" }

// RateLimit runs the GCRA script on the user's state for a class of
// gateway requests ("order", "gift", "pay", "other"), one key per user and
// class. It reports whether the request may go on and, if not, how long
// the user must wait. l.PerSecond must be positive.
func (s *Redis) RateLimit(ctx context.Context, userID int64, class string, l Limit) (ok bool, wait time.Duration, err error) {
	vals, err := lua.RateLimit.Exec(ctx, s.c,
		[]string{gatewayLimitKey(userID, class)},
		[]string{l.interval(), strconv.Itoa(l.Burst)}).ToArray()
	if err != nil {
		return false, 0, err
	}
	if n, _ := vals[0].AsInt64(); n == 1 {
		return true, 0, nil
	}
	us, _ := vals[1].AsInt64()
	return false, time.Duration(us) * time.Microsecond, nil
}
