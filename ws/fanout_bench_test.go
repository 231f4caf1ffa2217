package ws

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flashgate/flashgate/internal/auth"
)

// The fan-out benchmarks measure ws alone: Run's GET /ws handler with many
// connections over real loopback TCP, all joined to one room, and pushes
// delivered straight to the hub (no Kafka). The viewers are raw TCP readers
// that only count frames, so that the profile is the server's and not a
// WebSocket client's.
//
//	go test -run '^$' -bench RoomFanout -benchtime 2000x ./ws/

const (
	benchViewers = 2000
	benchRoom    = 2
	// benchWindow is how many pushes may be in flight (delivered but not
	// yet read by every viewer) in BenchmarkRoomFanout: enough to keep
	// every writer busy, well below the send queue so nobody is dropped.
	benchWindow = 64
)

// benchLimits are Run's defaults for connections made without a server.
var benchLimits = connLimits{
	queue: DefaultSendQueue, queueBytes: DefaultSendBytes,
	ping: time.Hour, pongWait: time.Hour, writeWait: writeWait,
}

// benchGift is a gift push of the size the worker produces.
var benchGift = []byte(`{"type":"gift","room_id":2,"ticket":"g1000042-01JDX3Q7ZK8W5N3M2P4R6T8V0Y","sender_id":1000042,"receiver_id":7,"gift_id":2,"count":1,"effect_url":"https://cdn.example.com/gifts/rose.webp"}`)

// fanout is a hub with viewers connected over loopback.
type fanout struct {
	tb     testing.TB
	hub    *hub
	got    atomic.Int64 // text frames read by all viewers together
	want   atomic.Int64 // what the waiter waits for; 0 when nobody waits
	wake   chan struct{}
	closed atomic.Int64 // viewers whose connection ended
}

func newFanout(tb testing.TB, viewers int, mod func(*Config)) *fanout {
	tb.Helper()
	s, addr := hubServer(tb, func(c *Config) {
		// Pings would only add noise; an hour outlasts any run.
		c.pingPeriod, c.pongWait = time.Hour, time.Hour
		if mod != nil {
			mod(c)
		}
	})
	f := &fanout{tb: tb, hub: s.hub, wake: make(chan struct{}, 1)}

	conns := make([]net.Conn, viewers)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(viewers); i = next.Add(1) - 1 {
				nc, err := dialRaw(addr, s.signer.Sign(1000+i, auth.RoleUser, time.Hour))
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				conns[i] = nc
			}
		}()
	}
	wg.Wait()
	for _, nc := range conns {
		if nc != nil {
			tb.Cleanup(func() { nc.Close() })
			go f.read(nc)
		}
	}
	if err, _ := firstErr.Load().(error); err != nil {
		tb.Fatal(err)
	}
	// Joined once the hub holds every one in the room.
	deadline := time.Now().Add(wait)
	for f.members() < viewers {
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d viewers in the room after %v", f.members(), viewers, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return f
}

func (f *fanout) members() int {
	n := 0
	for i := range f.hub.shards {
		s := &f.hub.shards[i]
		s.mu.RLock()
		n += len(s.rooms[benchRoom])
		s.mu.RUnlock()
	}
	return n
}

func (f *fanout) deliver(data []byte) {
	f.hub.deliver(toRoom, benchRoom, data, deliveredGift)
}

// joinFrame is {"type":"join","room_id":2} as a client frame, masked with a
// zero key (which leaves the payload as it is).
var joinFrame = func() []byte {
	p := fmt.Sprintf(`{"type":"join","room_id":%d}`, benchRoom)
	return append([]byte{0x80 | websocket.TextMessage, 0x80 | byte(len(p)), 0, 0, 0, 0}, p...)
}()

// dialRaw opens a WebSocket by hand, joins the room and returns the bare
// TCP connection: the server sends nothing before the first push, so no
// byte of it is left in a reader the handshake used.
func dialRaw(addr, token string) (net.Conn, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(nc, "GET /ws?token=%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", url.QueryEscape(token), addr)
	// Read the 101 byte by byte so nothing after it is consumed.
	var head []byte
	b := make([]byte, 1)
	for !strings.HasSuffix(string(head), "\r\n\r\n") {
		if _, err := nc.Read(b); err != nil {
			nc.Close()
			return nil, err
		}
		head = append(head, b[0])
	}
	if !strings.HasPrefix(string(head), "HTTP/1.1 101") {
		nc.Close()
		return nil, fmt.Errorf("handshake: %q", head)
	}
	if _, err := nc.Write(joinFrame); err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// read counts the server's text frames until the connection ends.
func (f *fanout) read(nc net.Conn) {
	defer f.closed.Add(1)
	r := bufio.NewReaderSize(nc, 64<<10)
	var hdr [8]byte
	for {
		b0, err := r.ReadByte()
		if err != nil {
			return
		}
		b1, err := r.ReadByte()
		if err != nil {
			return
		}
		n := uint64(b1 & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(r, hdr[:2]); err != nil {
				return
			}
			n = uint64(binary.BigEndian.Uint16(hdr[:2]))
		case 127:
			if _, err := io.ReadFull(r, hdr[:8]); err != nil {
				return
			}
			n = binary.BigEndian.Uint64(hdr[:8])
		}
		if _, err := r.Discard(int(n)); err != nil {
			return
		}
		switch b0 & 0x0f {
		case websocket.TextMessage:
			if got := f.got.Add(1); got >= f.want.Load() && f.want.Load() > 0 {
				select {
				case f.wake <- struct{}{}:
				default:
				}
			}
		case websocket.CloseMessage:
			return
		}
	}
}

// waitFor waits until the viewers have read total frames together.
func (f *fanout) waitFor(total int64) {
	if total <= 0 {
		return
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for f.got.Load() < total {
		f.want.Store(total)
		if f.got.Load() >= total {
			break
		}
		select {
		case <-f.wake:
		case <-deadline.C:
			f.tb.Fatalf("viewers read %d of %d frames in %v (%d connections ended)", f.got.Load(), total, wait, f.closed.Load())
		}
	}
	f.want.Store(0)
}

// BenchmarkRoomFanout pushes b.N room messages to 2,000 viewers as fast as
// they are read, with at most benchWindow in flight: the throughput of ws
// when gifts arrive faster than it can push them.
func BenchmarkRoomFanout(b *testing.B) {
	f := newFanout(b, benchViewers, nil)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		f.waitFor(int64(i-benchWindow+1) * benchViewers)
		f.deliver(benchGift)
	}
	f.waitFor(int64(b.N) * benchViewers)
	b.StopTimer()
	b.ReportMetric(float64(b.N*benchViewers)/time.Since(start).Seconds(), "deliveries/s")
	if n := f.closed.Load(); n > 0 {
		b.Fatalf("%d viewers were cut off", n)
	}
}

// BenchmarkRoomFanoutOne pushes one room message at a time and waits until
// all 2,000 viewers read it: ns/op is the push latency of the last viewer
// for a gift that arrives on its own (the bench's 25 gifts/s are 40 ms
// apart).
func BenchmarkRoomFanoutOne(b *testing.B) {
	f := newFanout(b, benchViewers, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.deliver(benchGift)
		f.waitFor(int64(i+1) * benchViewers)
	}
	b.StopTimer()
	if n := f.closed.Load(); n > 0 {
		b.Fatalf("%d viewers were cut off", n)
	}
}

// BenchmarkRoomJoinDuringFanout times a viewer joining and leaving the
// room while pushes stream to its 2,000 viewers, 200 us apart: p50-ns and
// p99-ns are one join plus one leave, which wait for the hub's lock that
// deliveries hold (ns/op includes the pauses). Run it with a count
// (-benchtime 5000x).
func BenchmarkRoomJoinDuringFanout(b *testing.B) {
	f := newFanout(b, benchViewers, nil)
	// The joiner is a connection without a socket: a goroutine drains its
	// queue and stands in for both of its loops in the hub's accounting.
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := newConn(nil, 1, f.hub, benchLimits, log)
	if !f.hub.add(c) {
		b.Fatal("hub closed")
	}
	go func() {
		defer f.hub.conns.Done()
		for {
			select {
			case m := <-c.send:
				c.queued.Add(-int64(len(m.data)))
			case <-c.done:
				return
			}
		}
	}()
	defer func() {
		c.shutdown("", 0, "")
		f.hub.remove(c)
		f.hub.conns.Done()
	}()

	stop := make(chan struct{})
	pushed := make(chan struct{})
	go func() {
		var i int64
		defer close(pushed)
		for ; ; i++ {
			select {
			case <-stop:
				f.waitFor(i * benchViewers)
				return
			default:
			}
			f.waitFor((i - benchWindow + 1) * benchViewers)
			f.deliver(benchGift)
		}
	}()
	for f.got.Load() < benchWindow*benchViewers { // pushes are streaming
		time.Sleep(time.Millisecond) // not waitFor: the pusher waits there
	}
	b.ReportAllocs()
	b.ResetTimer()
	took := make([]time.Duration, b.N)
	start, before := time.Now(), f.got.Load()
	for i := 0; i < b.N; i++ {
		t := time.Now()
		f.hub.join(c, benchRoom)
		f.hub.leave(c, benchRoom)
		took[i] = time.Since(t)
		// Spread the joins over the deliveries, as viewers arrive.
		time.Sleep(200 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(f.got.Load()-before)/time.Since(start).Seconds(), "deliveries/s")
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds()), "p99-ns")
	close(stop)
	<-pushed
}

// BenchmarkNewConn: B/op is what a connection costs before its socket's
// buffers, most of it the send queue's slots.
func BenchmarkNewConn(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		newConn(nil, 1, nil, benchLimits, log)
	}
}
