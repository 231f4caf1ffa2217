package ws

import (
	"sync"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// maxSubscriptions caps the rooms a connection may join and, separately, the
// events it may watch. Without a cap one client could make the hub hold
// millions of map entries; frames beyond it are ignored like any other
// frame the server does not accept.
const maxSubscriptions = 128

// index maps an id (user, event or room) to the connections interested in it.
type index map[int64]map[*conn]struct{}

func (ix index) add(id int64, c *conn) {
	set := ix[id]
	if set == nil {
		set = make(map[*conn]struct{})
		ix[id] = set
	}
	set[c] = struct{}{}
}

func (ix index) del(id int64, c *conn) {
	set := ix[id]
	delete(set, c)
	if len(set) == 0 {
		// Ids come and go (rooms, events); do not keep empty sets forever.
		delete(ix, id)
	}
}

// hub knows which connections want which pushes. One RWMutex guards it all:
// the dispatcher only reads (and its per-connection work is a non-blocking
// channel send), while writes happen on connect, disconnect and
// join/leave/watch/unwatch, which are rare next to deliveries.
type hub struct {
	mu     sync.RWMutex
	closed bool           // set by closeAll; no connection is added after it
	conns  sync.WaitGroup // two goroutines per connection added
	users  index
	events index
	rooms  index
}

func newHub() *hub {
	return &hub{users: index{}, events: index{}, rooms: index{}}
}

// add registers c and accounts for its reader and writer goroutines. It
// returns false once the hub is shutting down. Add happens under the same
// lock that sets closed, so wait never races with a late add.
func (h *hub) add(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.users.add(c.userID, c)
	h.conns.Add(2)
	connections.Inc()
	return true
}

// remove forgets c everywhere; the reader calls it when the connection ends.
func (h *hub) remove(c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.users.del(c.userID, c)
	for id := range c.rooms {
		h.rooms.del(id, c)
	}
	for id := range c.events {
		h.events.del(id, c)
	}
	c.rooms, c.events = nil, nil
	connections.Dec()
}

// subscribe adds (on) or removes (!on) c to/from a room (rooms=true) or an
// event, mirroring it in the connection's own set so remove can clean up
// without scanning the whole index.
func (h *hub) subscribe(rooms bool, c *conn, id int64, on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ix, mine := h.events, c.events
	if rooms {
		ix, mine = h.rooms, c.rooms
	}
	if mine == nil { // already removed
		return
	}
	_, has := mine[id]
	switch {
	case on && !has && len(mine) < maxSubscriptions:
		mine[id] = struct{}{}
		ix.add(id, c)
	case !on && has:
		delete(mine, id)
		ix.del(id, c)
	}
}

func (h *hub) join(c *conn, room int64)     { h.subscribe(true, c, room, true) }
func (h *hub) leave(c *conn, room int64)    { h.subscribe(true, c, room, false) }
func (h *hub) watch(c *conn, event int64)   { h.subscribe(false, c, event, true) }
func (h *hub) unwatch(c *conn, event int64) { h.subscribe(false, c, event, false) }

// target says which index a push is routed by.
type target int

const (
	toUser  target = iota // a ticket, to its owner's connections
	toEvent               // a stock change, to the event's watchers
	toRoom                // a gift, to the room's viewers
)

func (h *hub) index(t target) index {
	switch t {
	case toEvent:
		return h.events
	case toRoom:
		return h.rooms
	}
	return h.users
}

// deliver queues data on every connection interested in id. It never
// blocks: a connection whose queue is full is told to go away instead.
// A push to an event or a room is framed once, and only if some connection
// here wants it: most results concern nobody on this replica.
func (h *hub) deliver(t target, id int64, data []byte, delivered prometheus.Counter) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	set := h.index(t)[id]
	if len(set) == 0 {
		return
	}
	msg := outbound{data: data, delivered: delivered}
	if t != toUser {
		// Cannot fail: it frames uncompressed text into memory. Should it
		// ever, the writers frame data themselves.
		msg.prepared, _ = websocket.NewPreparedMessage(websocket.TextMessage, data)
	}
	for c := range set {
		c.enqueue(msg)
	}
}

// closeAll refuses new connections and asks every open one to close with
// code and text. It does not wait; server.waitConns does.
func (h *hub) closeAll(code int, text string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, set := range h.users {
		for c := range set {
			c.shutdown("", code, text)
		}
	}
}

// abortAll cuts the TCP connection of every connection still open, for when
// a polite close did not finish within the shutdown timeout.
func (h *hub) abortAll() {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, set := range h.users {
		for c := range set {
			c.ws.Close()
		}
	}
}
