package ws

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashgate/flashgate/internal/config"
)

// Timings of the WebSocket (README, "The API in brief"): ping every 25 s, and a client that has not answered
// 10 s after a ping is gone. The read deadline therefore covers one ping
// period plus the pong wait, and each pong pushes it out again. (Config's
// unexported fields change the first three for tests.)
const (
	pingPeriod = 25 * time.Second
	pongWait   = 10 * time.Second

	// writeWait bounds one write to the socket (one push, or one batch of
	// them). The send queue, not this, is what catches slow clients; this
	// catches clients whose TCP window stays shut.
	writeWait = 10 * time.Second
	// closeWait bounds the close handshake: the close frame write and the
	// wait for the peer's answering close frame.
	closeWait = time.Second

	// maxFrameSize is the read limit: client frames are tiny JSON objects.
	maxFrameSize = 4 << 10
)

// outbound is one queued push, shared by every recipient (queues hold
// pointers to it: a slot is 8 bytes, and a connection's queue of 256 costs
// 2 KiB, not 256 copies of this struct), and the counter to bump once it
// reached this connection's socket.
//
// A push to a room or an event's watchers carries a PreparedMessage: framed
// once, written by each recipient's writer straight to its socket, where
// WriteMessage would frame it again for each, copying the payload through a
// pooled write buffer (and allocating to put that back). A ticket, which has
// one or two recipients, is sent as plain data: preparing costs more than
// that (about 6 KB and 9 allocations).
type outbound struct {
	data      []byte
	prepared  *websocket.PreparedMessage // nil: frame data in the writer
	delivered prometheus.Counter
	at        time.Time // of the delivery, for pushSeconds
}

// write sends m as one text frame.
func (m *outbound) write(ws *websocket.Conn) error {
	if m.prepared != nil {
		return ws.WritePreparedMessage(m.prepared)
	}
	return ws.WriteMessage(websocket.TextMessage, m.data)
}

// conn is one WebSocket connection. Exactly one goroutine (writeLoop) writes
// data frames and exactly one (readLoop) reads; anything else talks to it
// through enqueue and shutdown, which never block.
type conn struct {
	ws     *websocket.Conn
	userID int64
	hub    *hub
	log    *slog.Logger

	pingPeriod time.Duration
	writeWait  time.Duration // bound of one write to the socket
	readWait   time.Duration // read deadline: one ping period plus the pong wait

	send chan *outbound // shared with the other recipients: read only
	// queued counts the payload bytes in send plus the one being written:
	// added by enqueue, released by writeLoop once written. A room push's
	// bytes are shared by its recipients, but each one's count says how far
	// that client lags, which is what the budget bounds.
	queued    atomic.Int64
	sendBytes int64 // budget of queued

	// Inbound flood limit, a token bucket touched only by readLoop.
	msgRate   config.Rate
	msgTokens float64
	msgAt     time.Time

	once       sync.Once
	done       chan struct{} // closed by shutdown
	code       int           // close code to send, 0 for none; written before done is closed
	text       string
	readerDone chan struct{} // closed when readLoop returns

	// The hub's shard that holds the connection, set by hub.add. The
	// connection's rooms and events are guarded by its lock, and are nil
	// once the hub removed the connection.
	shard  *shard
	rooms  map[int64]struct{}
	events map[int64]struct{}
}

// connLimits are the settings of a server's connections.
type connLimits struct {
	queue, queueBytes int         // FLASHGATE_WS_SEND_QUEUE, FLASHGATE_WS_SEND_BYTES
	msgRate           config.Rate // FLASHGATE_WS_MSG_RATE
	ping, pongWait    time.Duration
	writeWait         time.Duration
}

func newConn(ws *websocket.Conn, userID int64, h *hub, lim connLimits, log *slog.Logger) *conn {
	return &conn{
		sendBytes:  int64(lim.queueBytes),
		pingPeriod: lim.ping,
		readWait:   lim.ping + lim.pongWait,
		writeWait:  lim.writeWait,
		msgRate:    lim.msgRate,
		msgTokens:  float64(lim.msgRate.Burst),
		msgAt:      time.Now(),
		ws:         ws,
		userID:     userID,
		hub:        h,
		log:        log,
		send:       make(chan *outbound, lim.queue),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
		rooms:      map[int64]struct{}{},
		events:     map[int64]struct{}{},
	}
}

// enqueue queues msg without blocking. A full queue, in messages or in
// bytes, means the client reads slower than results arrive; waiting for it
// would stall every other connection behind the dispatcher, so it is
// disconnected instead and catches up through GET /api/v1/tickets/{ticket}
// after reconnecting.
func (c *conn) enqueue(msg *outbound) {
	select {
	case <-c.done: // going away: do not queue what will not be sent
		return
	default:
	}
	if c.queued.Add(int64(len(msg.data))) > c.sendBytes {
		c.shutdown(dropSlow, websocket.ClosePolicyViolation, "send queue full")
		return
	}
	select {
	case c.send <- msg:
	default:
		c.shutdown(dropSlow, websocket.ClosePolicyViolation, "send queue full")
	}
}

// shutdown asks the writer to close the connection, sending a close frame
// with code and text unless code is 0. Only the first call counts; reason,
// when not empty, counts the close as a drop caused by the client.
func (c *conn) shutdown(reason string, code int, text string) {
	c.once.Do(func() {
		c.code, c.text = code, text
		close(c.done)
		if reason != "" {
			droppedConns.WithLabelValues(reason).Inc()
			c.log.Debug("dropping connection", "user_id", c.userID, "reason", reason)
		}
		if reason == dropSlow {
			// The writer is most likely stuck in a write to the full socket;
			// expire that write now so the connection goes away promptly.
			// Safe concurrently: net.Conn methods may be called from any goroutine.
			if bc, ok := c.ws.UnderlyingConn().(*batchConn); ok {
				bc.expire() // not SetWriteDeadline, which waits for the write
			} else {
				c.ws.UnderlyingConn().SetWriteDeadline(time.Now())
			}
		}
	})
}

// writeLoop is the only writer of data and ping frames. It owns the socket:
// when it returns the TCP connection is closed, which also ends readLoop.
func (c *conn) writeLoop() {
	defer c.hub.conns.Done()
	defer c.ws.Close()
	ping := time.NewTicker(c.pingPeriod)
	defer ping.Stop()
	bc, _ := c.ws.UnderlyingConn().(*batchConn)
	for {
		// Checked first because select picks among ready cases at random: a
		// connection told to go away must not keep draining its queue.
		select {
		case <-c.done:
			c.closeHandshake()
			return
		default:
		}
		select {
		case <-c.done:
			c.closeHandshake()
			return
		case m := <-c.send:
			if err := c.writeQueued(bc, m); err != nil {
				c.shutdown(dropWriteFailed, 0, "")
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.writeWait)); err != nil {
				c.shutdown(dropWriteFailed, 0, "")
				return
			}
		}
	}
}

// writeQueued writes m and, when more pushes wait behind it and the socket
// is a batchConn, up to maxBatchMessages and maxBatchBytes of them with one
// write to the socket. The pushes count as delivered, and their bytes leave
// the queue's budget, once written.
func (c *conn) writeQueued(bc *batchConn, m *outbound) error {
	c.ws.SetWriteDeadline(time.Now().Add(c.writeWait))
	more := len(c.send)
	if bc == nil || more == 0 {
		if err := m.write(c.ws); err != nil {
			return err
		}
		c.queued.Add(-int64(len(m.data)))
		m.delivered.Inc()
		pushSeconds.Observe(time.Since(m.at).Seconds())
		writeBatch.Observe(1)
		return nil
	}
	var batch [maxBatchMessages]*outbound
	batch[0] = m
	n, size := 1, len(m.data)
	bc.hold()
	err := m.write(c.ws)
	for ; err == nil && more > 0 && n < maxBatchMessages && size < maxBatchBytes; more-- {
		m = <-c.send // only this goroutine receives: it is there
		batch[n] = m
		n++
		size += len(m.data)
		err = m.write(c.ws)
	}
	if ferr := bc.flush(time.Now().Add(c.writeWait)); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	c.queued.Add(-int64(size))
	now := time.Now()
	for _, m := range batch[:n] {
		m.delivered.Inc()
		pushSeconds.Observe(now.Sub(m.at).Seconds())
	}
	writeBatch.Observe(float64(n))
	return nil
}

// closeHandshake sends the close frame, if any, and gives the client a
// moment to answer it so that it sees a clean close rather than a reset.
func (c *conn) closeHandshake() {
	if c.code == 0 {
		return
	}
	msg := websocket.FormatCloseMessage(c.code, c.text)
	if err := c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeWait)); err != nil {
		return
	}
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-c.readerDone:
	case <-t.C:
	}
}

// readLoop reads client frames until the connection ends, then unregisters
// the connection and tells the writer to finish.
func (c *conn) readLoop() {
	defer c.hub.conns.Done()
	defer close(c.readerDone)
	defer c.hub.remove(c)

	c.ws.SetReadLimit(maxFrameSize)
	c.ws.SetReadDeadline(time.Now().Add(c.readWait))
	// gorilla answers pings and takes pongs inside ReadMessage, so they
	// never reach the loop below: the handlers count them toward the
	// message rate themselves (a ping costs the server a pong; a pong
	// pushes the read deadline out). Both run on this goroutine.
	flood := errors.New("message rate exceeded")
	c.ws.SetPongHandler(func(string) error {
		if !c.allowMessage(time.Now()) {
			return flood
		}
		return c.ws.SetReadDeadline(time.Now().Add(c.readWait))
	})
	c.ws.SetPingHandler(func(data string) error {
		if !c.allowMessage(time.Now()) {
			return flood
		}
		err := c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.writeWait))
		var ne net.Error
		if errors.Is(err, websocket.ErrCloseSent) || errors.As(err, &ne) {
			return nil // as gorilla's own handler: the writer deals with the socket
		}
		return err
	})
	for {
		typ, data, err := c.ws.ReadMessage()
		if err == flood {
			c.shutdown(dropFlood, websocket.ClosePolicyViolation, "message rate exceeded")
			return
		}
		if err != nil {
			c.shutdown(readDropReason(err), 0, "")
			return
		}
		if !c.allowMessage(time.Now()) {
			// Close code 1008 (policy violation): the client sends faster
			// than any real client would, and each frame costs the hub a lock.
			c.shutdown(dropFlood, websocket.ClosePolicyViolation, "message rate exceeded")
			return
		}
		if typ != websocket.TextMessage {
			continue
		}
		switch op, id := parseFrame(data); op {
		case opJoin:
			c.hub.join(c, id)
		case opLeave:
			c.hub.leave(c, id)
		case opWatch:
			c.hub.watch(c, id)
		case opUnwatch:
			c.hub.unwatch(c, id)
		}
	}
}

// allowMessage takes one token from the connection's inbound bucket.
func (c *conn) allowMessage(now time.Time) bool {
	if c.msgRate.Off() {
		return true
	}
	c.msgTokens = min(float64(c.msgRate.Burst), c.msgTokens+now.Sub(c.msgAt).Seconds()*c.msgRate.PerSecond)
	c.msgAt = now
	if c.msgTokens < 1 {
		return false
	}
	c.msgTokens--
	return true
}

// readDropReason says whether a read error was the client's fault. A close
// frame, EOF or reset is a client that left; after our own shutdown the
// reason was already recorded and this one is ignored.
func readDropReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		return dropTooLarge // gorilla already sent close 1009
	case errors.As(err, &ne) && ne.Timeout():
		return dropPongTimeout
	}
	return ""
}

// Client frame operations.
type frameOp int

const (
	opNone frameOp = iota
	opJoin
	opLeave
	opWatch
	opUnwatch
)

// clientFrame is every client → server frame: watch, unwatch, join, leave
// (docs/openapi.yaml, "WebSocket push").
type clientFrame struct {
	Type    string `json:"type"`
	RoomID  int64  `json:"room_id"`
	EventID int64  `json:"event_id"`
}

// parseFrame decodes a client frame. Anything that is not a well-formed
// frame with a positive id yields opNone: the API says such frames are
// ignored, and ignoring keeps an old server compatible with newer clients.
func parseFrame(data []byte) (frameOp, int64) {
	var f clientFrame
	if err := json.Unmarshal(data, &f); err != nil {
		return opNone, 0
	}
	var op frameOp
	id := f.RoomID
	switch f.Type {
	case "join":
		op = opJoin
	case "leave":
		op = opLeave
	case "watch":
		op, id = opWatch, f.EventID
	case "unwatch":
		op, id = opUnwatch, f.EventID
	default:
		return opNone, 0
	}
	if id <= 0 {
		return opNone, 0
	}
	return op, id
}
