package gateway

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/flashgate/flashgate/internal/config"
)

// TestMemLimiterBounded: however many distinct clients come, the limiter
// holds at most its bound of keys (a flood of IPv6 addresses cannot grow
// it), keys whose time has passed are dropped, and a client inside its
// burst is still limited.
func TestMemLimiterBounded(t *testing.T) {
	l := newMemLimiter(config.Rate{PerSecond: 1, Burst: 2}, hashAddr, 1024)
	now := time.Now().UnixNano()
	base := netip.MustParseAddr("2001:db8::")
	for i := 0; i < 200_000; i++ {
		b := base.As16()
		b[4], b[5], b[6], b[7] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		l.allow(netip.AddrFrom16(b), now)
	}
	if n := l.size(); n > 1024 {
		t.Fatalf("limiter holds %d keys after 200k clients, want at most 1024", n)
	}
	// A client that used its burst is refused, and stays so while it
	// floods, even among other clients.
	c := netip.MustParseAddr("192.0.2.1")
	l.allow(c, now)
	l.allow(c, now)
	if wait := l.allow(c, now); wait <= 0 {
		t.Fatal("third request of a burst of 2 let through")
	}
	// Keys whose time has passed are swept.
	later := now + int64(time.Minute)
	l.allow(netip.MustParseAddr("192.0.2.2"), later)
	for i := range l.shards {
		l.shards[i].mu.Lock()
		l.shards[i].sweep(later)
		l.shards[i].mu.Unlock()
	}
	if n := l.size(); n != 1 {
		t.Errorf("limiter holds %d keys a minute later, want the 1 fresh one", n)
	}
}

// TestClientAddr: the gateway hands clientip the peer and every
// X-Forwarded-For header; the rules themselves are clientip's tests.
func TestClientAddr(t *testing.T) {
	s := &Server{cfg: Config{Config: config.Config{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}}}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"untrusted peer's header is ignored", "198.51.100.1", []string{"203.0.113.9"}, "198.51.100.1"},
		{"trusted proxy", "10.1.2.3", []string{"203.0.113.9"}, "203.0.113.9"},
		{"two headers", "10.1.2.3", []string{"1.1.1.1", "203.0.113.9"}, "203.0.113.9"},
		{"IPv6 entry with a port", "fd00::1", []string{"[2001:db8::7]:443"}, "2001:db8::7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req fasthttp.Request
			for _, h := range tc.xff {
				req.Header.Add("X-Forwarded-For", h)
			}
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP(tc.peer), Port: 1234}, nil)
			if got := s.clientAddr(&ctx); got != netip.MustParseAddr(tc.want) {
				t.Errorf("clientAddr = %v, want %s", got, tc.want)
			}
		})
	}
}

// TestPerClientLimit: the public routes' limit as clients see it, behind a
// trusted proxy and without one, over IPv4 and IPv6.
func TestPerClientLimit(t *testing.T) {
	newServer := func(trusted ...string) *Server {
		cfg := config.Default()
		cfg.TokenSecret = "limit-test-secret-0123456789"
		cfg.RateIP = config.Rate{PerSecond: 0.001, Burst: 2}
		for _, p := range trusted {
			cfg.TrustedProxies = append(cfg.TrustedProxies, netip.MustParsePrefix(p))
		}
		s := newTestServer(Config{Config: cfg})
		s.ipLimit = newMemLimiter(cfg.RateIP, hashAddr, 0)
		return s
	}
	get := func(s *Server, peer string, xff ...string) int {
		var req fasthttp.Request
		req.Header.SetMethod("GET")
		req.SetRequestURI("/api/v1/events")
		for _, h := range xff {
			req.Header.Add("X-Forwarded-For", h)
		}
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP(peer), Port: 1234}, nil)
		s.Handler(&ctx)
		if st := ctx.Response.StatusCode(); st == 429 && string(ctx.Response.Header.Peek("Retry-After")) == "" {
			t.Errorf("429 without Retry-After")
		}
		return ctx.Response.StatusCode()
	}
	want := func(what string, got, want int) {
		t.Helper()
		if got != want {
			t.Errorf("%s: %d, want %d", what, got, want)
		}
	}

	// No trusted proxy: a client cannot get a fresh bucket by sending
	// another X-Forwarded-For.
	s := newServer()
	want("first", get(s, "198.51.100.1", "203.0.113.1"), 200)
	want("second", get(s, "198.51.100.1", "203.0.113.2"), 200)
	want("third with yet another X-Forwarded-For", get(s, "198.51.100.1", "203.0.113.3"), 429)
	want("another client", get(s, "198.51.100.2"), 200)

	// Behind a trusted proxy every client has its own bucket, and what a
	// client writes into X-Forwarded-For itself does not change it.
	s = newServer("10.0.0.0/8")
	want("client A", get(s, "10.0.0.1", "203.0.113.5"), 200)
	want("client A spoofing", get(s, "10.0.0.1", "1.1.1.1, 203.0.113.5"), 200)
	want("client A again", get(s, "10.0.0.1", "2.2.2.2, 203.0.113.5"), 429)
	want("client B through the same proxy", get(s, "10.0.0.1", "203.0.113.6"), 200)
	want("client B through another proxy", get(s, "10.200.0.1", "203.0.113.6"), 200)
	want("client B, third", get(s, "10.200.0.1", "203.0.113.6"), 429)

	// IPv6: one bucket per /64, whatever the address within it.
	s = newServer()
	want("v6 first", get(s, "2001:db8:1:2::1"), 200)
	want("v6 same /64", get(s, "2001:db8:1:2:ffff:ffff:ffff:ffff"), 200)
	want("v6 same /64, third", get(s, "2001:db8:1:2:abcd::9"), 429)
	want("v6 next /64", get(s, "2001:db8:1:3::1"), 200)
}

// TestNotifyLimitedPerSource: a crowd of public reads from the provider's
// address (or through the same proxy) uses up the per-client bucket, and the
// provider's notifies are still answered on their merits (here 401: no
// signature), since they have a bucket of their own per source; a source
// that floods notifies gets 429 without touching anyone else's.
func TestNotifyLimitedPerSource(t *testing.T) {
	cfg := config.Default()
	cfg.TokenSecret = "limit-test-secret-0123456789"
	cfg.PaySecret = "limit-test-pay-secret-0123456789"
	cfg.RateIP = config.Rate{PerSecond: 0.001, Burst: 2}
	cfg.RateNotify = config.Rate{PerSecond: 0.001, Burst: 3}
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	s := newTestServer(Config{Config: cfg})
	s.ipLimit = newMemLimiter(cfg.RateIP, hashAddr, 0)
	s.notifyLimit = newMemLimiter(cfg.RateNotify, hashAddr, 0)
	call := func(method, path, xff string) int {
		var req fasthttp.Request
		req.Header.SetMethod(method)
		req.SetRequestURI(path)
		req.Header.Set("X-Forwarded-For", xff)
		if method == "POST" {
			req.SetBodyString(`{"order_id":"P1","status":"success","amount":1,"provider_txn":"t"}`)
		}
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 1234}, nil)
		s.Handler(&ctx)
		return ctx.Response.StatusCode()
	}
	const provider, other = "198.51.100.7", "198.51.100.8"
	codes := map[int]int{}
	for i := 0; i < 5; i++ {
		codes[call("GET", "/api/v1/events", provider)]++
	}
	if codes[429] != 3 {
		t.Fatalf("public reads from the provider's address: %v, want 2 served and 3 refused", codes)
	}
	for i := 0; i < 3; i++ {
		if got := call("POST", "/api/v1/pay/notify", provider); got != 401 {
			t.Fatalf("notify %d after the public bucket ran out: %d, want 401 (unsigned), not 429", i, got)
		}
	}
	if got := call("POST", "/api/v1/pay/notify", provider); got != 429 {
		t.Errorf("fourth notify of a burst of 3: %d, want 429", got)
	}
	if got := call("POST", "/api/v1/pay/notify", other); got != 401 {
		t.Errorf("notify from another source: %d, want 401", got)
	}
}
