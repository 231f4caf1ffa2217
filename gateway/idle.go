package gateway

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/valyala/fasthttp"

	"github.com/flashgate/flashgate/internal/apierr"
	"github.com/flashgate/flashgate/internal/clientip"
	"github.com/flashgate/flashgate/internal/obs"
)

// Read timeouts and idle connections. Clients open connections before they
// have a request for them (browsers preconnect; Go's http.Transport parks a
// spare one in its pool). A server that answers such a connection when its
// read timeout fires sends a response nobody asked for: the client drops it
// as unsolicited, or, if it sent a request in that instant, reads it as the
// answer to a request the server never saw. So:
//
//   - no byte of a request arrived before the timeout: close, write nothing;
//   - a request started but did not finish in time: 408 request_timeout;
//   - a keep-alive connection idle past the idle timeout: close, write
//     nothing (fasthttp does this itself).
//
// fasthttp calls the error handler for the first two alike, so the
// listener's connections count the bytes they read to tell them apart.

var idleClosed = promauto.NewCounter(prometheus.CounterOpts{
	Namespace: obs.Namespace, Subsystem: "gateway", Name: "idle_closed_total",
	Help: "Connections closed without an answer because no byte of a request arrived before the read timeout.",
})

// countingListener wraps accepted connections in countingConn, and applies
// the connection limits (conns.go) when it has them.
type countingListener struct {
	net.Listener
	limits *connLimits
}

func (l countingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.limits == nil {
			return &countingConn{Conn: c}, nil
		}
		peer := clientip.AddrOf(c.RemoteAddr())
		if answer, reason := l.limits.acquire(peer); answer != nil {
			connsRefused.WithLabelValues(reason).Inc()
			go refuse(c, answer)
			continue
		}
		return &countingConn{Conn: c, limits: l.limits, peer: peer}, nil
	}
}

// countingConn counts the bytes read from a connection, and gives its place
// under the connection limits back when it closes.
type countingConn struct {
	net.Conn
	read   atomic.Int64
	limits *connLimits
	peer   netip.Addr
	closed atomic.Bool
}

func (c *countingConn) Close() error {
	if c.limits != nil && c.closed.CompareAndSwap(false, true) {
		c.limits.release(c.peer)
	}
	return c.Conn.Close()
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}

// isTimeout reports a read that ran into its deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// transportError answers errors fasthttp hits before a handler runs: a body
// over the limit (413), a request cut off by the read timeout (408), one
// that arrived malformed (400), each in the API's JSON error shape and
// closing the connection. A connection that timed out before sending a
// byte is closed without an answer.
func (s *Server) transportError(ctx *fasthttp.RequestCtx, err error) {
	s.releaseLargeBodyAfterError(ctx)
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		s.fail(ctx, "", apierr.BodyTooLarge)
	case isTimeout(err):
		if c, ok := ctx.Conn().(*countingConn); ok && c.read.Load() == 0 {
			// fasthttp writes whatever the handler set once it returns;
			// a closed connection makes that write fail, so nothing goes out.
			idleClosed.Inc()
			c.Close()
			return
		}
		s.fail(ctx, "", apierr.RequestTimeout)
	default:
		s.fail(ctx, "", apierr.InvalidRequest.With("cannot read the request"))
	}
	ctx.SetConnectionClose()
}
