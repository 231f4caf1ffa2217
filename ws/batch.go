package ws

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// Gorilla writes every message to the socket by itself: WriteMessage and
// WritePreparedMessage each end in one write(2), and NextWriter's Close
// flushes too. A connection with several pushes queued would pay one
// system call per push, which is what a fan-out spends most of its time
// on. So the connection under gorilla is a batchConn: while the writer
// holds it, gorilla's writes are gathered in memory, and flush sends them
// with one write.

// Bounds of one batch, checked before each push is added: a client that
// lags far gets its backlog in several writes, each under writeWait.
const (
	maxBatchMessages = 64
	maxBatchBytes    = 64 << 10
)

// batchBufs holds batch buffers between batches, so that an idle
// connection holds none (as the upgrader's WriteBufferPool does).
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// batchConn is the network connection under a WebSocket. Every write and
// every write deadline goes through mu, so a batch being flushed and a
// control frame gorilla writes from the reader (a pong, a close reply)
// neither interleave nor change each other's deadline, as gorilla's own
// write lock ensures among its writes. Reads and Close pass through.
type batchConn struct {
	net.Conn

	mu      sync.Mutex
	holding bool
	buf     *[]byte // while holding
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.holding {
		if b.buf == nil {
			b.buf = batchBufs.Get().(*[]byte)
		}
		*b.buf = append(*b.buf, p...)
		return len(p), nil
	}
	return b.Conn.Write(p)
}

func (b *batchConn) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.holding {
		// Gorilla sets one before each write; a held write does not
		// reach the socket, and flush sets the deadline of the batch.
		return nil
	}
	return b.Conn.SetWriteDeadline(t)
}

// expire makes a write in progress fail now. Unlike SetWriteDeadline it
// does not wait for that write: the dispatcher calls it.
func (b *batchConn) expire() {
	b.Conn.SetWriteDeadline(time.Now())
}

// hold gathers writes until flush.
func (b *batchConn) hold() {
	b.mu.Lock()
	b.holding = true
	b.mu.Unlock()
}

// flush writes what was gathered since hold, with one write to the socket
// bounded by deadline, and stops gathering.
func (b *batchConn) flush(deadline time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.holding = false
	if b.buf == nil {
		return nil
	}
	buf := b.buf
	b.buf = nil
	defer func() {
		if cap(*buf) <= 2*maxBatchBytes {
			*buf = (*buf)[:0]
			batchBufs.Put(buf)
		}
	}()
	if err := b.Conn.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err := b.Conn.Write(*buf)
	return err
}

// batchHijacker hands gorilla's Upgrade a batchConn in place of the
// hijacked connection.
type batchHijacker struct {
	http.ResponseWriter
}

func (w batchHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return &batchConn{Conn: nc}, brw, nil
}
