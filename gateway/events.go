package gateway

import (
	"context"
	"sort"
	"sync/atomic"
	"time"

	"github.com/flashgate/flashgate/internal/apierr"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/obs"
)

// eventCache is the gateway's in-memory copy of the events, swapped whole on
// every refresh so the order path reads it without locks or I/O.
type eventCache struct {
	snap atomic.Pointer[eventSnapshot]
}

type eventSnapshot struct {
	byID map[int64]*liveEvent
	list []*liveEvent // by start time
}

// liveEvent is one event as the gateway knows it.
type liveEvent struct {
	db.Event
	// stockLeft is Redis's count of units left for reservation (MySQL's when
	// the event is not warm). The order path lowers it to 0 the moment Redis
	// says sold out, so the next buyers are answered from memory.
	stockLeft atomic.Int64
}

func (c *eventCache) get(id int64) *liveEvent {
	if s := c.snap.Load(); s != nil {
		return s.byID[id]
	}
	return nil
}

// put adds or replaces one event (after an admin change) until the next refresh.
func (c *eventCache) put(e *liveEvent) {
	old := c.snap.Load()
	n := &eventSnapshot{byID: make(map[int64]*liveEvent, len(old.byID)+1)}
	for id, v := range old.byID {
		n.byID[id] = v
	}
	n.byID[e.ID] = e
	for _, v := range n.byID {
		n.list = append(n.list, v)
	}
	sortEvents(n.list)
	c.snap.Store(n)
}

func sortEvents(l []*liveEvent) {
	sort.Slice(l, func(i, j int) bool {
		if !l[i].StartsAt.Equal(l[j].StartsAt) {
			return l[i].StartsAt.Before(l[j].StartsAt)
		}
		return l[i].ID < l[j].ID
	})
}

// refreshWindow is how long after its end an event is still served from memory.
const refreshWindow = 24 * time.Hour

// refreshEvents reloads the events from MySQL and their stock from Redis.
func (s *Server) refreshEvents(ctx context.Context) error {
	evs, err := s.mysql.EventsEndingAfter(ctx, s.now().Add(-refreshWindow))
	if err != nil {
		return err
	}
	ids := make([]int64, len(evs))
	for i, e := range evs {
		ids[i] = e.ID
	}
	stocks, err := s.redis.Stocks(ctx, ids)
	if err != nil {
		// Redis down: keep serving what MySQL says; orders will get 503.
		s.log.Warn("cannot read stock from Redis", "err", err)
		stocks = nil
	}
	n := &eventSnapshot{byID: make(map[int64]*liveEvent, len(evs))}
	for _, e := range evs {
		le := &liveEvent{Event: e}
		if st, ok := stocks[e.ID]; ok {
			le.stockLeft.Store(st)
		} else {
			le.stockLeft.Store(e.Stock)
		}
		n.byID[e.ID] = le
		n.list = append(n.list, le)
	}
	sortEvents(n.list)
	s.events.snap.Store(n)
	return nil
}

// refreshEvery runs refresh every d until ctx is done. A failed refresh is
// logged and the gateway keeps serving what it had: MySQL being down must
// not stop the sale or the gifts.
func (s *Server) refreshEvery(ctx context.Context, d time.Duration, what string, refresh func(context.Context) error) {
	obs.Every(ctx, d, s.log, "cannot refresh "+what, refresh, obs.Runs{Limit: 5 * time.Second})
}

// Event statuses.
const (
	statusUpcoming = "upcoming"
	statusLive     = "live"
	statusSoldOut  = "sold_out"
	statusEnded    = "ended"
)

func (e *liveEvent) status(now time.Time) string {
	switch {
	case now.Before(e.StartsAt):
		return statusUpcoming
	case !now.Before(e.EndsAt):
		return statusEnded
	case e.stockLeft.Load() <= 0:
		return statusSoldOut
	}
	return statusLive
}

// eventJSON is the API's Event.
type eventJSON struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	Price      int64  `json:"price"`
	StockTotal int64  `json:"stock_total"`
	StockLeft  int64  `json:"stock_left"`
	StartsAt   string `json:"starts_at"`
	EndsAt     string `json:"ends_at"`
	Status     string `json:"status"`
}

func (e *liveEvent) json(now time.Time) eventJSON {
	left := e.stockLeft.Load()
	if left < 0 {
		left = 0
	}
	return eventJSON{
		ID: e.ID, Name: e.Name, Price: e.Price, StockTotal: e.StockTotal, StockLeft: left,
		StartsAt: ts(e.StartsAt), EndsAt: ts(e.EndsAt), Status: e.status(now),
	}
}

// ts formats a time as the API's times are: RFC 3339 in UTC
// (docs/openapi.yaml, "Conventions").
func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func (s *Server) listEvents(rc *reqCtx) *apierr.Error {
	now := s.now()
	out := []eventJSON{}
	if snap := s.events.snap.Load(); snap != nil {
		for _, e := range snap.list {
			if now.Before(e.EndsAt) {
				out = append(out, e.json(now))
			}
		}
	}
	return rc.writeJSON(200, map[string]any{"events": out})
}

func (s *Server) getEvent(rc *reqCtx) *apierr.Error {
	id, e := pathID(rc.params[0])
	if e != nil {
		return e
	}
	ev := s.events.get(id)
	if ev == nil {
		// Not in memory: an old event, or one created on another replica
		// since the last refresh. This is a public read, not the order path.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		dbe, err := s.mysql.Event(ctx, id)
		if err == db.ErrNotFound {
			return apierr.NotFound.With("no such event")
		}
		if err != nil {
			return apierr.Unavailable
		}
		ev = &liveEvent{Event: dbe}
		ev.stockLeft.Store(dbe.Stock)
	}
	return rc.writeJSON(200, ev.json(s.now()))
}
