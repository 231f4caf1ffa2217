package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/flashgate/flashgate/lua"
)

// What the worker's reconcilers read and write. They never decide a ticket
// in Redis: they find reservations and holds that waited too long, send an
// abort marker through Kafka behind the record (if there is one), and note
// here that the marker went out.

// Now returns Redis's clock. Reservations and holds are stamped with it
// (reserve.lua, gift_hold.lua), so measuring their age with it too keeps
// gateways' and workers' clocks out of the question.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	v, err := s.C.Do(ctx, s.C.B().Time().Build()).AsStrSlice()
	if err != nil {
		return time.Time{}, fmt.Errorf("cannot read Redis's clock: %w", err)
	}
	if len(v) != 2 {
		return time.Time{}, fmt.Errorf("cannot read Redis's clock: %d fields", len(v))
	}
	sec, err1 := strconv.ParseInt(v[0], 10, 64)
	usec, err2 := strconv.ParseInt(v[1], 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, fmt.Errorf("cannot read Redis's clock: %q", v)
	}
	return time.Unix(sec, usec*1000).UTC(), nil
}

// PendingDue returns up to limit reservations of an event that are due for
// a look by the reconciler: reserved before t, or marked for another look
// before t.
func (s *Store) PendingDue(ctx context.Context, eventID int64, t time.Time, limit int64) ([]string, error) {
	return s.C.Do(ctx, s.C.B().Zrange().Key(PendingKey(eventID)).Min("-inf").
		Max(strconv.FormatInt(t.UnixMilli(), 10)).Byscore().Limit(0, limit).Build()).AsStrSlice()
}

// Tickets reads the hashes of several tickets of one event. A ticket Redis
// does not know is missing from the map.
func (s *Store) Tickets(ctx context.Context, eventID int64, tickets []string) (map[string]TicketState, error) {
	out := make(map[string]TicketState, len(tickets))
	if len(tickets) == 0 {
		return out, nil
	}
	cmds := make(rueidis.Commands, len(tickets))
	for i, t := range tickets {
		cmds[i] = s.C.B().Hgetall().Key(TicketKey(eventID, t)).Build()
	}
	for i, r := range s.C.DoMulti(ctx, cmds...) {
		m, err := r.AsStrMap()
		if err != nil {
			return nil, fmt.Errorf("cannot read tickets: %w", err)
		}
		if st, ok := ticketState(m); ok {
			out[tickets[i]] = st
		}
	}
	return out, nil
}

// MarkPending notes that abort markers for the tickets are in Kafka, and
// has the reconciler look at them again only at next (to settle them if
// the worker's own settle was lost). Tickets no longer pending are skipped.
func (s *Store) MarkPending(ctx context.Context, eventID int64, tickets []string, now, next time.Time) error {
	if len(tickets) == 0 {
		return nil
	}
	cmds := make(rueidis.Commands, 0, 2*len(tickets))
	ms := strconv.FormatInt(now.UnixMilli(), 10)
	for _, t := range tickets {
		cmds = append(cmds,
			s.C.B().Zadd().Key(PendingKey(eventID)).Xx().ScoreMember().ScoreMember(float64(next.UnixMilli()), t).Build(),
			s.C.B().Hset().Key(TicketKey(eventID, t)).FieldValue().FieldValue("m", ms).Build())
	}
	for _, r := range s.C.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("cannot mark reservations: %w", err)
		}
	}
	return nil
}

// LookAgain moves reservations' next look by the reconciler to next.
func (s *Store) LookAgain(ctx context.Context, eventID int64, tickets []string, next time.Time) error {
	if len(tickets) == 0 {
		return nil
	}
	cmd := s.C.B().Zadd().Key(PendingKey(eventID)).Xx().ScoreMember()
	for _, t := range tickets {
		cmd = cmd.ScoreMember(float64(next.UnixMilli()), t)
	}
	return s.C.Do(ctx, cmd.Build()).Error()
}

// Released is a cancelled or expired order whose unit MySQL has back.
type Released struct {
	UserID int64
	Ticket string
}

// AllPending returns every reservation pending in an event's set.
func (s *Store) AllPending(ctx context.Context, eventID int64) ([]string, error) {
	return s.C.Do(ctx, s.C.B().Zrange().Key(PendingKey(eventID)).Min("0").Max("-1").Build()).AsStrSlice()
}

// SyncStock sets a warm event's Redis stock to what is really left (see
// stock_sync.lua): mysqlStock, minus the released orders whose unit Redis
// still holds, minus the pending reservations but those in settled, which
// MySQL decided in a way that takes no unit from Redis's count. It reports
// the stock before and after, and warm=false when the event is not in Redis.
func (s *Store) SyncStock(ctx context.Context, eventID, mysqlStock int64, released []Released, settled []string) (before, after int64, warm bool, err error) {
	args := make([]string, 0, 2+2*len(released)+len(settled))
	args = append(args, strconv.FormatInt(mysqlStock, 10), strconv.Itoa(len(released)))
	for _, r := range released {
		args = append(args, strconv.FormatInt(r.UserID, 10), r.Ticket)
	}
	args = append(args, settled...)
	vals, err := lua.StockSync.Exec(ctx, s.C, []string{StockKey(eventID), PendingKey(eventID), BuyersKey(eventID)}, args).AsIntSlice()
	if err != nil || len(vals) != 2 {
		return 0, 0, false, fmt.Errorf("cannot sync stock of event %d: %v", eventID, err)
	}
	return vals[0], vals[1], vals[0] >= 0, nil
}

// MarkHolds notes that abort markers for the held gifts are in Kafka.
func (s *Store) MarkHolds(ctx context.Context, senderID int64, tickets []string, now time.Time) error {
	if len(tickets) == 0 {
		return nil
	}
	cmd := s.C.B().Hset().Key(HoldsKey(senderID)).FieldValue()
	ms := strconv.FormatInt(now.UnixMilli(), 10)
	for _, t := range tickets {
		cmd = cmd.FieldValue(HoldMarkField(t), ms)
	}
	return s.C.Do(ctx, cmd.Build()).Error()
}

// HoldMarkField is the holds-hash field that records when an abort marker
// for a held gift was sent.
func HoldMarkField(ticket string) string { return "m:" + ticket }
