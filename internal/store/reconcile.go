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
func (s *Redis) Now(ctx context.Context) (time.Time, error) {
	v, err := s.c.Do(ctx, s.c.B().Time().Build()).AsStrSlice()
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
func (s *Redis) PendingDue(ctx context.Context, eventID int64, t time.Time, limit int64) ([]string, error) {
	return s.c.Do(ctx, s.c.B().Zrange().Key(PendingKey(eventID)).Min("-inf").
		Max(strconv.FormatInt(t.UnixMilli(), 10)).Byscore().Limit(0, limit).Build()).AsStrSlice()
}

// Tickets reads the state of several tickets of one event. A ticket Redis
// does not know is missing from the map.
func (s *Redis) Tickets(ctx context.Context, eventID int64, tickets []string) (map[string]TicketState, error) {
	out := make(map[string]TicketState, len(tickets))
	if len(tickets) == 0 {
		return out, nil
	}
	vals, err := s.c.Do(ctx, s.c.B().Hmget().Key(TicketsKey(eventID)).Field(tickets...).Build()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("cannot read tickets: %w", err)
	}
	for i, v := range vals {
		str, err := v.ToString()
		if rueidis.IsRedisNil(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cannot read tickets: %w", err)
		}
		if st, ok := parseTicketState(str); ok {
			out[tickets[i]] = st
		}
	}
	return out, nil
}

// MarkPending notes that abort markers for the tickets are in Kafka, and
// has the reconciler look at them again only at next (to settle them if
// the worker's own settle was lost). Tickets no longer pending are skipped.
func (s *Redis) MarkPending(ctx context.Context, eventID int64, tickets []string, now, next time.Time) error {
	for len(tickets) > 0 {
		chunk := tickets[:min(len(tickets), scriptChunk)]
		tickets = tickets[len(chunk):]
		args := append([]string{strconv.FormatInt(next.UnixMilli(), 10), strconv.FormatInt(now.UnixMilli(), 10)}, chunk...)
		if err := lua.MarkPending.Exec(ctx, s.c, []string{PendingKey(eventID), TicketsKey(eventID)}, args).Error(); err != nil {
			return fmt.Errorf("cannot mark reservations: %w", err)
		}
	}
	return nil
}

// OldestReservation returns when the oldest reservation still pending in
// any of the events was taken (by Redis's clock), and false when none is.
// It reads each event's first pending entry and its ticket's creation: a
// ticket the reconciler marked has moved on in the set, so this may miss a
// marked one older still, never an unmarked one.
func (s *Redis) OldestReservation(ctx context.Context, events []int64) (time.Time, bool, error) {
	var oldest int64
	for _, ev := range events {
		first, err := s.c.Do(ctx, s.c.B().Zrange().Key(PendingKey(ev)).Min("0").Max("0").Withscores().Build()).AsZScores()
		if err != nil {
			return time.Time{}, false, fmt.Errorf("cannot read the pending reservations of event %d: %w", ev, err)
		}
		if len(first) == 0 {
			continue
		}
		at := int64(first[0].Score)
		if st, err := s.Ticket(ctx, ev, first[0].Member); err == nil && !st.CreatedAt.IsZero() && st.CreatedAt.UnixMilli() < at {
			at = st.CreatedAt.UnixMilli()
		}
		if oldest == 0 || at < oldest {
			oldest = at
		}
	}
	return time.UnixMilli(oldest).UTC(), oldest != 0, nil
}

// OldestHold returns the earliest time from which a sender's gift holds are
// pending (the holders indexes' lowest score, by Redis's clock) and false
// when no sender holds coins.
func (s *Redis) OldestHold(ctx context.Context) (time.Time, bool, error) {
	cmds := make(rueidis.Commands, WalletBuckets)
	for b := range WalletBuckets {
		cmds[b] = s.c.B().Zrange().Key(HoldersKey(b)).Min("0").Max("0").Withscores().Build()
	}
	var oldest int64
	for _, r := range s.c.DoMulti(ctx, cmds...) {
		first, err := r.AsZScores()
		if err != nil {
			return time.Time{}, false, fmt.Errorf("cannot read the gift holders: %w", err)
		}
		if len(first) > 0 && (oldest == 0 || int64(first[0].Score) < oldest) {
			oldest = int64(first[0].Score)
		}
	}
	return time.UnixMilli(oldest).UTC(), oldest != 0, nil
}

// LookAgain moves reservations' next look by the reconciler to next.
func (s *Redis) LookAgain(ctx context.Context, eventID int64, tickets []string, next time.Time) error {
	if len(tickets) == 0 {
		return nil
	}
	cmd := s.c.B().Zadd().Key(PendingKey(eventID)).Xx().ScoreMember()
	for _, t := range tickets {
		cmd = cmd.ScoreMember(float64(next.UnixMilli()), t)
	}
	return s.c.Do(ctx, cmd.Build()).Error()
}

// Released is a cancelled or expired order whose unit MySQL has back.
type Released struct {
	UserID int64
	Ticket string
}

// AllPending returns every reservation pending in an event's set.
func (s *Redis) AllPending(ctx context.Context, eventID int64) ([]string, error) {
	return s.c.Do(ctx, s.c.B().Zrange().Key(PendingKey(eventID)).Min("0").Max("-1").Build()).AsStrSlice()
}

// SyncStock sets a warm event's Redis stock to what is really left (see
// stock_sync.lua): mysqlStock, minus the released orders whose unit Redis
// still holds, minus the pending reservations but those in settled, which
// MySQL decided in a way that takes no unit from Redis's count. It reports
// the stock before and after, and warm=false when the event is not in Redis.
func (s *Redis) SyncStock(ctx context.Context, eventID, mysqlStock int64, released []Released, settled []string) (before, after int64, warm bool, err error) {
	args := make([]string, 0, 2+2*len(released)+len(settled))
	args = append(args, strconv.FormatInt(mysqlStock, 10), strconv.Itoa(len(released)))
	for _, r := range released {
		args = append(args, strconv.FormatInt(r.UserID, 10), r.Ticket)
	}
	args = append(args, settled...)
	vals, err := lua.StockSync.Exec(ctx, s.c, []string{StockKey(eventID), PendingKey(eventID), BuyersKey(eventID)}, args).AsIntSlice()
	if err != nil || len(vals) != 2 {
		return 0, 0, false, fmt.Errorf("cannot sync stock of event %d: %v", eventID, err)
	}
	return vals[0], vals[1], vals[0] >= 0, nil
}

// MarkHolds notes that abort markers for the held gifts are in Kafka.
func (s *Redis) MarkHolds(ctx context.Context, senderID int64, tickets []string, now time.Time) error {
	if len(tickets) == 0 {
		return nil
	}
	cmd := s.c.B().Hset().Key(HoldsKey(senderID)).FieldValue()
	ms := strconv.FormatInt(now.UnixMilli(), 10)
	for _, t := range tickets {
		cmd = cmd.FieldValue(HoldMarkField(t), ms)
	}
	return s.c.Do(ctx, cmd.Build()).Error()
}

// HoldMarkField is the holds-hash field that records when an abort marker
// for a held gift was sent.
func HoldMarkField(ticket string) string { return "m:" + ticket }

// The indexes the wallet timers walk instead of the keyspace: per wallet
// bucket, the users with gift holds ({w:B}:holders) and the users with a
// hot balance ({w:B}:loaded). Each call covers many buckets in one
// pipelined round trip (rueidis sends each command to its slot's node).

// HoldersDue returns the users of buckets [from, to) that are due for a
// look by the hold reconciler (indexed at or before due), at most limit
// per bucket.
func (s *Redis) HoldersDue(ctx context.Context, from, to int, due time.Time, limit int64) ([]int64, error) {
	upTo := strconv.FormatInt(due.UnixMilli(), 10)
	cmds := make(rueidis.Commands, 0, to-from)
	for b := from; b < to; b++ {
		cmds = append(cmds, s.c.B().Zrange().Key(HoldersKey(b)).Min("-inf").Max(upTo).Byscore().Limit(0, limit).Build())
	}
	var users []int64
	for _, r := range s.c.DoMulti(ctx, cmds...) {
		ms, err := r.AsStrSlice()
		if err != nil {
			return nil, fmt.Errorf("cannot read the holders index: %w", err)
		}
		users = appendIDs(users, ms)
	}
	return users, nil
}

// LookAgainAt has the hold reconciler look at the users again once at is
// due (it only ever brings a look forward), after a pass failed to deal
// with their stale holds.
func (s *Redis) LookAgainAt(ctx context.Context, users []int64, at time.Time) error {
	cmds := make(rueidis.Commands, len(users))
	for i, u := range users {
		cmds[i] = s.c.B().Zadd().Key(HoldersKey(WalletBucket(u))).Xx().Lt().ScoreMember().
			ScoreMember(float64(at.UnixMilli()), strconv.FormatInt(u, 10)).Build()
	}
	for _, r := range s.c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("cannot reschedule holders: %w", err)
		}
	}
	return nil
}

// StaleHold is a pending or claimed gift hold older than the pending timeout.
type StaleHold struct {
	Ticket  string
	Pending bool  // false: claimed by a writer
	HeldAt  int64 // ms, Redis's clock
	Marked  bool  // an abort marker for it was sent
}

// HoldsLook is what one look at a user's holds found (gift_holds_look.lua).
type HoldsLook struct {
	UserID int64
	Stale  []StaleHold
	Next   int64 // the user's new score in the holders index, ms; -1: left it
}

// LookAtHolds looks at the users' holds (see gift_holds_look.lua): drops
// the entries that have served their time, returns the stale holds, and
// reschedules each user in the holders index or takes them out.
func (s *Redis) LookAtHolds(ctx context.Context, users []int64, now time.Time, timeout, undoneLife time.Duration) ([]HoldsLook, error) {
	if len(users) == 0 {
		return nil, nil
	}
	args := func(u int64) []string {
		return []string{strconv.FormatInt(u, 10), strconv.FormatInt(now.UnixMilli(), 10),
			strconv.FormatInt(timeout.Milliseconds(), 10), strconv.FormatInt(undoneLife.Milliseconds(), 10)}
	}
	execs := make([]rueidis.LuaExec, len(users))
	for i, u := range users {
		execs[i] = rueidis.LuaExec{Keys: []string{HoldsKey(u), HoldersKey(WalletBucket(u))}, Args: args(u)}
	}
	out := make([]HoldsLook, len(users))
	for i, r := range lua.GiftHoldsLook.ExecMulti(ctx, s.c, execs...) {
		vals, err := r.ToArray()
		if err != nil || len(vals) == 0 || (len(vals)-1)%3 != 0 {
			return nil, fmt.Errorf("cannot look at the gift holds of user %d: %v (%d values)", users[i], err, len(vals))
		}
		l := HoldsLook{UserID: users[i]}
		l.Next, _ = vals[0].AsInt64()
		for j := 1; j < len(vals); j += 3 {
			t, _ := vals[j].ToString()
			v, _ := vals[j+1].ToString()
			m, _ := vals[j+2].ToString()
			// v is a pending or claimed hold (the script matched it).
			h, _ := ParseHold(v)
			l.Stale = append(l.Stale, StaleHold{Ticket: t, Pending: h.State == HoldPending, HeldAt: h.At.UnixMilli(), Marked: m == "1"})
		}
		out[i] = l
	}
	return out, nil
}

// ScanLoaded calls f with the users of every bucket's loaded set, a batch
// at a time (SSCAN of the small per-bucket sets; a user may come twice).
func (s *Redis) ScanLoaded(ctx context.Context, f func(users []int64) error) error {
	const perCall = 128 // buckets per round trip
	for from := 0; from < WalletBuckets; from += perCall {
		type cur struct {
			bucket int
			cursor uint64
		}
		var open []cur
		for b := from; b < min(from+perCall, WalletBuckets); b++ {
			open = append(open, cur{b, 0})
		}
		for len(open) > 0 {
			cmds := make(rueidis.Commands, len(open))
			for i, c := range open {
				cmds[i] = s.c.B().Sscan().Key(LoadedKey(c.bucket)).Cursor(c.cursor).Count(1000).Build()
			}
			var users []int64
			next := open[:0]
			for i, r := range s.c.DoMulti(ctx, cmds...) {
				e, err := r.AsScanEntry()
				if err != nil {
					return fmt.Errorf("cannot read the loaded-wallets index: %w", err)
				}
				users = appendIDs(users, e.Elements)
				if e.Cursor != 0 {
					next = append(next, cur{open[i].bucket, e.Cursor})
				}
			}
			open = next
			if len(users) > 0 {
				if err := f(users); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// UnindexWallets takes users whose hot balance is gone out of the loaded
// sets, unless a load put it back meanwhile (wallet_unindex.lua).
func (s *Redis) UnindexWallets(ctx context.Context, users []int64) error {
	if len(users) == 0 {
		return nil
	}
	execs := make([]rueidis.LuaExec, len(users))
	for i, u := range users {
		execs[i] = rueidis.LuaExec{Keys: []string{BalanceKey(u), LoadedKey(WalletBucket(u))}, Args: []string{strconv.FormatInt(u, 10)}}
	}
	for _, r := range lua.WalletUnindex.ExecMulti(ctx, s.c, execs...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("cannot unindex wallets: %w", err)
		}
	}
	return nil
}

// appendIDs appends the user ids among members; anything else is not ours.
func appendIDs(ids []int64, members []string) []int64 {
	for _, m := range members {
		if id, err := strconv.ParseInt(m, 10, 64); err == nil && id > 0 {
			ids = append(ids, id)
		}
	}
	return ids
}
