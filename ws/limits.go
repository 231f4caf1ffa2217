package ws

import (
	"net/netip"

	"sync"

	"github.com/flashgate/flashgate/internal/apierr"
)

// Connection limits, checked before the upgrade so that a refused client
// gets the API's JSON error (429, or 503 when the server is full) and costs
// no goroutine, buffer or hub entry: FLASHGATE_WS_MAX_CONNS in all,
// FLASHGATE_WS_MAX_CONNS_PER_USER per user (one valid token must not hold
// thousands of sockets) and FLASHGATE_WS_MAX_CONNS_PER_IP per client address.

var (
	errTooManyForUser = apierr.RateLimited.With("too many WebSocket connections for this user: close one first")
	errTooManyFromIP  = apierr.RateLimited.With("too many WebSocket connections from your address")
	errServerFull     = apierr.Unavailable.With("the server is at its WebSocket connection limit, try again shortly")
)

// connCounts counts open connections per user, per client address and in
// all. Its maps hold only keys with open connections, so they are bounded
// by the total.
type connCounts struct {
	max, perUser, perIP int // zero: no limit

	mu    sync.Mutex
	open  int
	users map[int64]int
	ips   map[netip.Addr]int
}

func newConnCounts(max, perUser, perIP int) *connCounts {
	return &connCounts{max: max, perUser: perUser, perIP: perIP, users: map[int64]int{}, ips: map[netip.Addr]int{}}
}

// acquire counts a connection of user from ip, or returns the error that
// refuses it and the limit's name.
func (c *connCounts) acquire(user int64, ip netip.Addr) (*apierr.Error, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.perUser > 0 && c.users[user] >= c.perUser:
		return errTooManyForUser, "per_user"
	case c.perIP > 0 && c.ips[ip] >= c.perIP:
		return errTooManyFromIP, "per_ip"
	case c.max > 0 && c.open >= c.max:
		return errServerFull, "total"
	}
	c.open++
	c.users[user]++
	c.ips[ip]++
	return nil, ""
}

func (c *connCounts) release(user int64, ip netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open--
	if c.users[user]--; c.users[user] <= 0 {
		delete(c.users, user)
	}
	if c.ips[ip]--; c.ips[ip] <= 0 {
		delete(c.ips, ip)
	}
}

// closeTokenExpired is the close code of a connection whose token expired:
// a private code (4000-4999), so a client can tell it from a server error
// and reconnect with a fresh token.
const closeTokenExpired = 4001
