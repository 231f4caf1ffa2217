package ws

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/flashgate/flashgate/internal/apierr"
)

// requestTimeoutResponse is the whole 408 as it goes on the wire.
var requestTimeoutResponse = func() []byte {
	body := apierr.RequestTimeout.Body()
	return fmt.Appendf(nil, "HTTP/1.1 408 Request Timeout\r\n"+
		"Content-Type: application/json\r\n"+
		"Content-Length: %d\r\n"+
		"Connection: close\r\n\r\n%s", len(body), body)
}()

var errAnswered = errors.New("ws: connection answered 408 request_timeout")

// timeoutWriteWait bounds the 408 write: it runs on net/http's reader
// goroutine, which a client that does not read must not hold.
const timeoutWriteWait = time.Second

// timeoutListener wraps each accepted connection in a timeoutConn. Its
// connections must be served by an http.Server whose ConnState is
// trackConnState.
//
// net/http treats a read timeout while reading a request head as a "common
// net read error" and closes the connection without a word, whether or not
// any of the request had arrived. A client that sent half a request (a
// slow or broken proxy, a client cut off mid-write) deserves to know why it
// got nothing, so the connection answers 408 itself. A connection on which
// no byte of a request arrived is still closed silently, as are idle
// keep-alive connections: nobody is waiting for an answer there.
type timeoutListener struct{ net.Listener }

func (l timeoutListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &timeoutConn{Conn: c}, nil
}

// timeoutConn answers 408 when a read times out while a request has begun
// and no handler is running for it.
//
// Read runs on net/http's connection goroutine, or on its background-read
// goroutine while a handler runs; trackConnState runs on the connection
// goroutine. Hence atomics.
type timeoutConn struct {
	net.Conn

	// pending counts bytes read since the connection was last idle (or
	// new): more than zero means a request has begun.
	pending atomic.Int64
	// busy is set from the moment net/http has read a request head until
	// it has finished the response, including its abort of the background
	// read (a deliberate timeout) after the handler returned.
	busy atomic.Bool
	// hijacked is set once a handler took the connection over (a
	// WebSocket upgrade). From then on it is not HTTP: gorilla's read
	// deadlines time out reads for ping/pong, and they pass through.
	// (busy, which nothing clears after a hijack, would cover this too;
	// the mark says so outright and spares the counting.)
	hijacked atomic.Bool
	// answered makes the 408 a one-off.
	answered atomic.Bool
}

func (c *timeoutConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.hijacked.Load() {
		return n, err
	}
	pending := c.pending.Add(int64(n))
	if err == nil || pending == 0 || c.busy.Load() || !isTimeout(err) {
		return n, err
	}
	if c.answered.CompareAndSwap(false, true) {
		// net/http closes the connection when this Read returns; a write
		// error only means the client is gone too.
		c.Conn.SetWriteDeadline(time.Now().Add(timeoutWriteWait))
		c.Conn.Write(requestTimeoutResponse)
	}
	return n, err
}

// Write fails once the 408 is out. A request line cut off mid-line reaches
// net/http as a whole line (bufio.Reader.ReadLine holds the timeout back for
// the next read), so it would follow the 408 with a 400 of its own.
func (c *timeoutConn) Write(p []byte) (int, error) {
	if c.answered.Load() {
		return 0, errAnswered
	}
	return c.Conn.Write(p)
}

// CloseWrite keeps net/http's half-close (closeWriteAndWait, used after a
// 431) working through the wrapper.
func (c *timeoutConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// trackConnState is the http.Server.ConnState of a server on a
// timeoutListener. net/http calls it on the connection's goroutine:
// StateActive once a request head has been read (before the handler runs),
// StateIdle once the response is complete, StateHijacked inside Hijack.
func trackConnState(nc net.Conn, state http.ConnState) {
	c, ok := nc.(*timeoutConn)
	if !ok {
		return
	}
	switch state {
	case http.StateActive:
		c.busy.Store(true)
	case http.StateIdle:
		c.pending.Store(0)
		c.busy.Store(false)
	case http.StateHijacked:
		c.hijacked.Store(true)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
