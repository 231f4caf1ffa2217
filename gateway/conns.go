package gateway

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/valyala/fasthttp"

	"github.com/flashgate/flashgate/internal/obs"
)

// Connection limits. Every open connection costs a goroutine, buffers and a
// file descriptor before it has sent a byte, so the listener bounds them:
// FLASHGATE_GATEWAY_MAX_CONNS in all and, when clients connect directly,
// FLASHGATE_GATEWAY_MAX_CONNS_PER_IP per TCP peer. A connection past a limit
// is answered at once with the API's JSON error (503, or 429 for one peer)
// and closed; fasthttp's own limits would answer in plain text.

var connsRefused = promauto.NewCounterVec(prometheus.CounterOpts{
	Namespace: obs.Namespace, Subsystem: "gateway", Name: "conns_refused_total",
	Help: "Connections answered and closed at once because the gateway (total) or their peer (per_ip) was at its connection limit.",
}, []string{"reason"})

var (
	refusedTotal = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 101\r\n\r\n" +
		`{"error":{"code":"unavailable","message":"the gateway is at its connection limit, try again shortly"}}`)
	refusedPerIP = []byte("HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 84\r\n\r\n" +
		`{"error":{"code":"rate_limited","message":"too many connections from your address"}}`)
)

// connLimits counts the open connections of one listener.
type connLimits struct {
	max, perIP int // zero: no limit
	mu         sync.Mutex
	open       int
	byIP       map[netip.Addr]int
}

// acquire counts a new connection from peer, or says which limit it hits.
func (l *connLimits) acquire(peer netip.Addr) (refused []byte, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.open >= l.max {
		return refusedTotal, "total"
	}
	if l.perIP > 0 {
		if l.byIP[peer] >= l.perIP {
			return refusedPerIP, "per_ip"
		}
		if l.byIP == nil {
			l.byIP = map[netip.Addr]int{}
		}
		l.byIP[peer]++
	}
	l.open++
	return nil, ""
}

func (l *connLimits) release(peer netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.perIP > 0 {
		if l.byIP[peer]--; l.byIP[peer] <= 0 {
			delete(l.byIP, peer)
		}
	}
}

// refuse answers a connection over a limit and closes it, without reading
// its request: a write, a half-close, and a short drain so that the close
// does not reset the answer away.
func refuse(c net.Conn, answer []byte) {
	c.SetDeadline(time.Now().Add(time.Second))
	c.Write(answer)
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
		var buf [512]byte
		for {
			if _, err := c.Read(buf[:]); err != nil {
				break
			}
		}
	}
	c.Close()
}

// largeBodies is how many requests with a body over MaxBodySize the gateway
// reads at once to answer them a clean 413; past it such a request is
// refused as soon as its headers are in (413, connection closed), so that a
// thousand 256 KiB bodies cannot fill memory.
const largeBodies = 32

// largeBodySlots are the largeBodies slots, each held by a request (known by
// its header, which fasthttp keeps at one address per connection while the
// request lives) from its headers to its answer.
type largeBodySlots struct {
	mu   sync.Mutex
	held map[*fasthttp.RequestHeader]time.Time // when the slot was taken
	// stale is how long a slot may be held: past it the request is gone
	// without its answer having given the slot back (a path of fasthttp's
	// that calls neither handler), and the slot is taken back.
	stale time.Duration
}

func newLargeBodySlots(stale time.Duration) *largeBodySlots {
	return &largeBodySlots{held: map[*fasthttp.RequestHeader]time.Time{}, stale: stale}
}

func (l *largeBodySlots) take(h *fasthttp.RequestHeader, now time.Time) bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.held) >= largeBodies {
		for k, t := range l.held {
			if now.Sub(t) > l.stale {
				delete(l.held, k)
			}
		}
		if len(l.held) >= largeBodies {
			return false
		}
	}
	l.held[h] = now
	return true
}

func (l *largeBodySlots) release(h *fasthttp.RequestHeader) {
	if l == nil {
		return
	}
	l.mu.Lock()
	delete(l.held, h)
	l.mu.Unlock()
}

// headerReceived runs once a request's headers are in, before its body is
// read. A body declared over MaxBodySize but within readBodySize is read
// (for a clean 413) only with one of the largeBodies slots; without a free
// one, and for a body declared even larger, fasthttp refuses it without
// reading (ErrBodyTooLarge). Any other body is read up to MaxBodySize (a
// chunked one too).
func (s *Server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if n := h.ContentLength(); n <= MaxBodySize || n > readBodySize || !s.largeBodies.take(h, time.Now()) {
		return fasthttp.RequestConfig{MaxRequestBodySize: MaxBodySize}
	}
	return fasthttp.RequestConfig{MaxRequestBodySize: readBodySize}
}

// releaseLargeBody gives the request's largeBodies slot back, if it holds
// one: the handler calls it after answering (only a request that declared a
// large body can hold one, so the others cost no lock), the error handler
// after a read that failed (fasthttp has reset the header by then, so the
// slot is known by the header's address, not by its Content-Length).
func (s *Server) releaseLargeBody(ctx *fasthttp.RequestCtx) {
	if ctx.Request.Header.ContentLength() > MaxBodySize {
		s.largeBodies.release(&ctx.Request.Header)
	}
}

// releaseLargeBodyAfterError is releaseLargeBody for the error handler.
func (s *Server) releaseLargeBodyAfterError(ctx *fasthttp.RequestCtx) {
	s.largeBodies.release(&ctx.Request.Header)
}
