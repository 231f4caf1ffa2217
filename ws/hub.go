package ws

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// maxSubscriptions caps the rooms a connection may join and, separately, the
// events it may watch. Without a cap one client could make the hub hold
// millions of map entries; frames beyond it are ignored like any other
// frame the server does not accept.
const maxSubscriptions = 128

// hubShards is the number of shards of the hub. A delivery visits every
// shard, a join or leave locks one: with 16, a viewer joining a room of
// 2,000 waits for a delivery to 125 of them at most, not to all.
const hubShards = 16

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

// hub knows which connections want which pushes. It is split in shards by
// connection, not by id: each connection is given a shard when it is added,
// and everything about it (its user, its rooms and events, and its own
// rooms and events sets) lives in that shard under that shard's lock. So a
// connection's join, leave, watch, unwatch and removal lock one shard, and
// a room of thousands spreads over all of them; a delivery visits every
// shard in turn, holding one read lock at a time. Sharding by room id
// instead would put every viewer of the one busy room, and so every join
// to it, behind one lock again.
//
// Pushes to one connection stay in order: one dispatcher delivers, and a
// connection is in one shard.
type hub struct {
	conns  sync.WaitGroup // two goroutines per connection added
	next   atomic.Uint32  // round-robin shard of the next connection
	shards [hubShards]shard
}

// shard is one part of the hub: the indexes of its connections.
type shard struct {
	mu     sync.RWMutex
	closed bool // set by closeAll; no connection is added after it
	users  index
	events index
	rooms  index
}

func newHub() *hub {
	h := &hub{}
	for i := range h.shards {
		s := &h.shards[i]
		s.users, s.events, s.rooms = index{}, index{}, index{}
	}
	return h
}

// add registers c in a shard and accounts for its reader and writer
// goroutines. It returns false once the hub is shutting down. The count is
// taken under the shard lock under which closeAll marks the shard closed,
// so server.waitConns, which runs after closeAll, never races with a late
// add.
func (h *hub) add(c *conn) bool {
	s := &h.shards[h.next.Add(1)%hubShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	c.shard = s
	s.users.add(c.userID, c)
	h.conns.Add(2)
	connections.Inc()
	return true
}

// remove forgets c everywhere; the reader calls it when the connection ends.
func (h *hub) remove(c *conn) {
	s := c.shard
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users.del(c.userID, c)
	for id := range c.rooms {
		s.rooms.del(id, c)
	}
	for id := range c.events {
		s.events.del(id, c)
	}
	c.rooms, c.events = nil, nil
	connections.Dec()
}

// subscribe adds (on) or removes (!on) c to/from a room (rooms=true) or an
// event, mirroring it in the connection's own set so remove can clean up
// without scanning the whole index.
func (h *hub) subscribe(rooms bool, c *conn, id int64, on bool) {
	s := c.shard
	s.mu.Lock()
	defer s.mu.Unlock()
	ix, mine := s.events, c.events
	if rooms {
		ix, mine = s.rooms, c.rooms
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

func (s *shard) index(t target) index {
	switch t {
	case toEvent:
		return s.events
	case toRoom:
		return s.rooms
	}
	return s.users
}

// deliver queues data on every connection interested in id. It never
// blocks: a connection whose queue is full is told to go away instead.
// A push to an event or a room is framed once, and only if some connection
// here wants it: most results concern nobody on this replica.
func (h *hub) deliver(t target, id int64, data []byte, delivered prometheus.Counter) {
	var msg *outbound // made for the first recipient
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.RLock()
		set := s.index(t)[id]
		if len(set) > 0 && msg == nil {
			msg = &outbound{data: data, delivered: delivered, at: time.Now()}
			if t != toUser {
				// Cannot fail: it frames uncompressed text into memory.
				// Should it ever, the writers frame data themselves.
				msg.prepared, _ = websocket.NewPreparedMessage(websocket.TextMessage, data)
			}
		}
		for c := range set {
			c.enqueue(msg)
		}
		s.mu.RUnlock()
	}
}

// closeAll refuses new connections and asks every open one to close with
// code and text. It does not wait; server.waitConns does.
func (h *hub) closeAll(code int, text string) {
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		s.closed = true
		for _, set := range s.users {
			for c := range set {
				c.shutdown("", code, text)
			}
		}
		s.mu.Unlock()
	}
}

// abortAll cuts the TCP connection of every connection still open, for when
// a polite close did not finish within the shutdown timeout.
func (h *hub) abortAll() {
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.RLock()
		for _, set := range s.users {
			for c := range set {
				c.ws.Close()
			}
		}
		s.mu.RUnlock()
	}
}
