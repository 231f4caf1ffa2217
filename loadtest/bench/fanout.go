package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jmoiron/sqlx"
)

const (
	viewers    = 2000
	fanoutRate = 30 // gifts per second: 30 × 2,000 viewers = 60,000 deliveries/s asked of ws
)

// delivery is one gift push a viewer read, by ticket.
type delivery struct {
	ticket string
	at     time.Time
}

// viewer is one WebSocket in the fan-out room.
type viewer struct {
	conn   *websocket.Conn
	got    []delivery
	closed atomic.Bool // the server closed it (a slow consumer, or an error)
}

// rowFanout: 2,000 viewers hold a WebSocket in one room while gifts arrive
// at a fixed rate. It measures deliveries per second and the push latency,
// from sending the gift request to a viewer reading the push, and counts
// what each connected viewer missed.
func (b *bench) rowFanout(ctx context.Context) error {
	if err := b.warmWallets(ctx); err != nil {
		return err
	}
	vs, err := b.connectViewers(ctx)
	defer func() {
		for _, v := range vs {
			v.conn.Close()
		}
	}()
	if err != nil {
		return err
	}
	var mu sync.Mutex // guards every viewer's got
	var wg sync.WaitGroup
	for _, v := range vs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, msg, err := v.conn.ReadMessage()
				if err != nil {
					v.closed.Store(true)
					return
				}
				if t := giftTicket(msg); t != "" {
					at := time.Now()
					mu.Lock()
					v.got = append(v.got, delivery{t, at})
					mu.Unlock()
				}
			}
		}()
	}

	// One gift first, until every viewer has it: the joins are in effect.
	probe, err := b.sendGift(senderBase + warmSenders)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, 30*time.Second, "every viewer to get the first gift", func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, v := range vs {
			if len(v.got) == 0 || v.got[0].ticket != probe {
				return v.closed.Load(), nil
			}
		}
		return true, nil
	}); err != nil {
		return err
	}
	mu.Lock()
	for _, v := range vs {
		v.got = v.got[:0]
	}
	mu.Unlock()

	pushBefore, err := buckets(b.cfg.WSInternalAddr, "flashgate_ws_push_seconds")
	if err != nil {
		return err
	}

	// The gifts, at a fixed rate, each from its own sender.
	n := int(b.duration.Seconds()) * fanoutRate
	sent := make([]time.Time, n)
	tickets := make([]string, n)
	var refused atomic.Int64
	tick := time.NewTicker(time.Second / fanoutRate)
	var senders sync.WaitGroup
	for i := range n {
		<-tick.C
		senders.Add(1)
		go func() {
			defer senders.Done()
			sent[i] = time.Now()
			t, err := b.sendGift(senderBase + 1 + int64(i))
			if err != nil {
				refused.Add(1)
			}
			tickets[i] = t
		}()
	}
	tick.Stop()
	senders.Wait()
	if c := b.checkGifts(ctx); c != "ok" {
		return fmt.Errorf("gifts: %s", c)
	}
	var ok []string
	for _, t := range tickets {
		if t != "" {
			ok = append(ok, t)
		}
	}
	q, args, err := sqlx.In("SELECT COUNT(*) FROM gift_records WHERE ticket IN (?)", ok)
	if err != nil {
		return err
	}
	succeeded, err := b.count(ctx, q, args...)
	if err != nil {
		return err
	}
	// Wait for the pushes: until each connected viewer has every gift, or
	// nothing new arrived for 5 s.
	var last int
	lastChange := time.Now()
	waitFor(ctx, 60*time.Second, "the pushes", func() (bool, error) {
		mu.Lock()
		total, complete := 0, true
		for _, v := range vs {
			total += len(v.got)
			if !v.closed.Load() && int64(len(v.got)) < succeeded {
				complete = false
			}
		}
		mu.Unlock()
		if total != last {
			last, lastChange = total, time.Now()
		}
		return complete || time.Since(lastChange) > 5*time.Second, nil
	})
	pushAfter, err := buckets(b.cfg.WSInternalAddr, "flashgate_ws_push_seconds")
	if err != nil {
		return err
	}
	cutOff := map[*viewer]bool{} // closed by the server, not by the bench
	for _, v := range vs {
		cutOff[v] = v.closed.Load()
		v.conn.Close()
	}
	wg.Wait()

	sentAt := map[string]time.Time{}
	for i, t := range tickets {
		if t != "" {
			sentAt[t] = sent[i]
		}
	}
	var lat []time.Duration
	var firstAt, lastAt time.Time
	var missed, dups, closed int64
	for _, v := range vs {
		seen := map[string]bool{}
		for _, d := range v.got {
			if seen[d.ticket] {
				dups++
				continue
			}
			seen[d.ticket] = true
			if at, ok := sentAt[d.ticket]; ok {
				lat = append(lat, d.at.Sub(at))
			}
			if firstAt.IsZero() || d.at.Before(firstAt) {
				firstAt = d.at
			}
			if d.at.After(lastAt) {
				lastAt = d.at
			}
		}
		if cutOff[v] {
			closed++
		} else {
			missed += succeeded - int64(len(seen))
		}
	}
	if len(lat) == 0 {
		return fmt.Errorf("no viewer received a gift")
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	// The rate is over the delivery window, first push read to last: a
	// ws that keeps up delivers what is asked, one that falls behind
	// stretches the window. (From the first gift sent, the window would
	// include one push latency and the rate could never reach the ask.)
	r := row{
		name: fmt.Sprintf("WebSocket fan-out: %d viewers in one room, %d gifts/s", viewers, fanoutRate),
		rate: float64(len(lat)) / lastAt.Sub(firstAt).Seconds(), unit: "deliveries/s",
		p50: lat[len(lat)/2], p99: lat[len(lat)*99/100],
		answers: fmt.Sprintf("%d gifts (%d refused), %d deliveries, %d duplicates, %d viewers cut off; "+
			"p99 within ws (result read to push written, flashgate_ws_push_seconds) %s",
			succeeded, refused.Load(), len(lat), dups, closed, quantile(pushBefore, pushAfter, 0.99)),
		check: "ok",
	}
	if missed > 0 {
		r.check = fmt.Sprintf("FAIL: connected viewers missed %d pushes", missed)
		b.failed = true
	}
	b.rows = append(b.rows, r)
	return nil
}

// connectViewers opens the viewers' sockets, 50 at a time, and joins each
// to the fan-out room.
func (b *bench) connectViewers(ctx context.Context) ([]*viewer, error) {
	vs := make([]*viewer, viewers)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < viewers; i = next.Add(1) - 1 {
				u := url.URL{Scheme: "ws", Host: b.cfg.WSAddr, Path: "/ws", RawQuery: "token=" + b.token(viewerBase+1+i)}
				c, _, err := d.DialContext(ctx, u.String(), nil)
				if err == nil {
					err = c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"type":"join","room_id":%d}`, fanoutRoom))
				}
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("viewer %d: %w", i, err) })
					return
				}
				vs[i] = &viewer{conn: c}
			}
		}()
	}
	wg.Wait()
	out := vs[:0]
	for _, v := range vs {
		if v != nil {
			out = append(out, v)
		}
	}
	return out, firstErr
}

// sendGift sends a Rose from the sender to the anchor in the fan-out room
// and returns its ticket.
func (b *bench) sendGift(sender int64) (string, error) {
	st, out, err := b.api("POST", fmt.Sprintf("/api/v1/rooms/%d/gifts", fanoutRoom), b.token(sender), giftBody)
	if err != nil {
		return "", err
	}
	t, _ := out["ticket"].(string)
	if st != 202 || t == "" {
		return "", fmt.Errorf("gift from %d: %d %v", sender, st, out)
	}
	return t, nil
}

// giftTicket returns the ticket of a gift push, cheaply: the bench reads
// 50,000 pushes a second on the same cores as the services.
func giftTicket(msg []byte) string {
	if !bytes.Contains(msg, []byte(`"type":"gift"`)) {
		return ""
	}
	_, rest, ok := bytes.Cut(msg, []byte(`"ticket":"`))
	if !ok {
		return ""
	}
	t, _, ok := bytes.Cut(rest, []byte(`"`))
	if !ok {
		return ""
	}
	return string(t)
}
