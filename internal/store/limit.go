package store

import "strconv"

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

// RateLimitKey is the key of a user's GCRA state for a class of requests.
func RateLimitKey(id int64, class string) string { return userKey(id, "rl:"+class) }
