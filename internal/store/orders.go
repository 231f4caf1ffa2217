package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/flashgate/flashgate/lua"
)

// Keys of an event; all share the {ev:N} hash tag.
func evTag(id int64) string      { return "{ev:" + strconv.FormatInt(id, 10) + "}" }
func StockKey(id int64) string   { return evTag(id) + ":stock" }
func BuyersKey(id int64) string  { return evTag(id) + ":buyers" }
func PendingKey(id int64) string { return evTag(id) + ":pending" }
func TicketsKey(id int64) string { return evTag(id) + ":tickets" }

// ReserveStatus is the outcome of Reserve.
type ReserveStatus int

// Reserve outcomes, in the numbering of reserve.lua.
const (
	Reserved ReserveStatus = iota
	AlreadyBought
	SoldOut
	NotWarm
)

// ReserveResult is what Reserve decided.
type ReserveResult struct {
	Status     ReserveStatus
	Ticket     string // the new ticket, or the user's existing one
	Replay     bool   // AlreadyBought with the same idempotency key
	StockLeft  int64
	ReservedAt time.Time // Reserved: Redis's clock when the unit was taken
}

// Reserve runs reserve.lua for one order request.
func (s *Redis) Reserve(ctx context.Context, eventID, userID int64, ticket, idemKey string) (ReserveResult, error) {
	uid := strconv.FormatInt(userID, 10)
	now := strconv.FormatInt(s.Clock().UnixMilli(), 10)
	vals, err := lua.Reserve.Exec(ctx, s.c,
		[]string{StockKey(eventID), BuyersKey(eventID), PendingKey(eventID), TicketsKey(eventID)},
		[]string{uid, ticket, idemKey, now},
	).ToArray()
	if err != nil {
		return ReserveResult{}, fmt.Errorf("cannot reserve stock: %w", err)
	}
	code, _ := vals[0].AsInt64()
	r := ReserveResult{Status: ReserveStatus(code)}
	switch r.Status {
	case Reserved:
		r.Ticket, _ = vals[1].ToString()
		r.StockLeft, _ = vals[2].AsInt64()
		ms, _ := vals[3].AsInt64()
		r.ReservedAt = time.UnixMilli(ms).UTC()
	case AlreadyBought:
		r.Ticket, _ = vals[1].ToString()
		n, _ := vals[2].AsInt64()
		r.Replay = n == 1
	}
	return r, nil
}

// Compensate undoes a reservation whose produce failed. It reports false when
// the worker already claimed the ticket, i.e. the order is in Kafka after all.
func (s *Redis) Compensate(ctx context.Context, eventID, userID int64, ticket string) (undone bool, err error) {
	n, err := lua.Compensate.Exec(ctx, s.c,
		[]string{StockKey(eventID), BuyersKey(eventID), PendingKey(eventID), TicketsKey(eventID)},
		[]string{strconv.FormatInt(userID, 10), ticket, ticketTTL}).AsInt64()
	if err != nil {
		return false, fmt.Errorf("cannot compensate reservation %s: %w", ticket, err)
	}
	return n == 1, nil
}

// Claim marks the tickets as being committed and returns those the gateway
// already undid (their orders must be dropped).
func (s *Redis) Claim(ctx context.Context, eventID int64, tickets []string) (aborted map[string]bool, err error) {
	aborted = map[string]bool{}
	for len(tickets) > 0 {
		chunk := tickets[:min(len(tickets), scriptChunk)]
		tickets = tickets[len(chunk):]
		res, err := lua.Claim.Exec(ctx, s.c, []string{TicketsKey(eventID)}, chunk).ToArray()
		if err != nil {
			return nil, fmt.Errorf("cannot claim tickets: %w", err)
		}
		if len(res) != len(chunk) {
			return nil, fmt.Errorf("claim answered %d of %d tickets", len(res), len(chunk))
		}
		for i, r := range res {
			if n, _ := r.AsInt64(); n == 0 {
				aborted[chunk[i]] = true
			}
		}
	}
	return aborted, nil
}

// scriptChunk is the most tickets one batch script call takes: Lua's
// unpack has a stack limit of a few thousand values.
const scriptChunk = 500

// Outcome is a ticket's final state, as settle.lua records it.
type Outcome struct {
	EventID    int64
	UserID     int64
	Ticket     string
	Succeeded  bool
	Reason     string // failed only
	OrderNo    string // succeeded only
	HeldTicket string // failed only: the ticket the user really holds, if any
	ReturnUnit bool   // failed only: the unit was never sold, put it back
}

// Settle records outcomes in Redis after MySQL committed them.
func (s *Redis) Settle(ctx context.Context, outs []Outcome) error {
	if len(outs) == 0 {
		return nil
	}
	// One script call per event: its keys share the event's hash tag.
	byEvent := map[int64][]Outcome{}
	var order []int64
	for _, o := range outs {
		if _, seen := byEvent[o.EventID]; !seen {
			order = append(order, o.EventID)
		}
		byEvent[o.EventID] = append(byEvent[o.EventID], o)
	}
	execs := make([]rueidis.LuaExec, 0, len(order))
	for _, ev := range order {
		keys := []string{StockKey(ev), BuyersKey(ev), PendingKey(ev), TicketsKey(ev)}
		for group := byEvent[ev]; len(group) > 0; {
			chunk := group[:min(len(group), scriptChunk)]
			group = group[len(chunk):]
			args := make([]string, 1, 1+7*len(chunk))
			args[0] = ticketTTL
			for _, o := range chunk {
				status, ret := "failed", "0"
				if o.Succeeded {
					status = "succeeded"
				}
				if o.ReturnUnit {
					ret = "1"
				}
				args = append(args, strconv.FormatInt(o.UserID, 10), o.Ticket, status, o.Reason, o.OrderNo, o.HeldTicket, ret)
			}
			execs = append(execs, rueidis.LuaExec{Keys: keys, Args: args})
		}
	}
	for _, r := range lua.Settle.ExecMulti(ctx, s.c, execs...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("cannot settle tickets: %w", err)
		}
	}
	return nil
}

// Release puts the unit of a cancelled or expired order back on sale, once:
// a repeat finds the buyer record gone and does nothing.
func (s *Redis) Release(ctx context.Context, eventID, userID int64, ticket string) error {
	err := lua.Release.Exec(ctx, s.c, []string{StockKey(eventID), BuyersKey(eventID)},
		[]string{strconv.FormatInt(userID, 10), ticket}).Error()
	if err != nil {
		return fmt.Errorf("cannot release unit of %s: %w", ticket, err)
	}
	return nil
}

// AddStock adds units to a warm event; it reports false when the event is cold.
func (s *Redis) AddStock(ctx context.Context, eventID, delta int64) (bool, error) {
	n, err := lua.AddStock.Exec(ctx, s.c, []string{StockKey(eventID)}, []string{strconv.FormatInt(delta, 10)}).AsInt64()
	if err != nil {
		return false, fmt.Errorf("cannot add stock: %w", err)
	}
	return n >= 0, nil
}

// warmChunk is how many buyers one warm.lua call loads.
const warmChunk = 500

// Warm loads an event into Redis unless it is warm already: buyers first,
// then the stock, which opens the event for reservations. It reports whether
// it warmed the event.
func (s *Redis) Warm(ctx context.Context, eventID, stock int64, expireAt time.Time, buyers map[int64]string) (bool, error) {
	keys := []string{StockKey(eventID), BuyersKey(eventID), TicketsKey(eventID)}
	exp := strconv.FormatInt(expireAt.Unix(), 10)
	args := []string{"", exp}
	flush := func(last bool) (int64, error) {
		if last {
			args[0] = strconv.FormatInt(stock, 10)
		}
		n, err := lua.Warm.Exec(ctx, s.c, keys, args).AsInt64()
		args = args[:2]
		return n, err
	}
	for uid, t := range buyers {
		args = append(args, strconv.FormatInt(uid, 10), t)
		if len(args) >= 2+2*warmChunk {
			if n, err := flush(false); err != nil || n == 0 {
				return false, err
			}
		}
	}
	n, err := flush(true)
	if err != nil {
		return false, fmt.Errorf("cannot warm event %d: %w", eventID, err)
	}
	return n == 1, nil
}

// Counts returns how many buyers and tickets Redis holds for an event,
// not counting the "_" field warm.lua puts in each hash.
func (s *Redis) Counts(ctx context.Context, eventID int64) (buyers, tickets int64, err error) {
	var n [2]int64
	for i, key := range []string{BuyersKey(eventID), TicketsKey(eventID)} {
		fields, err := s.c.Do(ctx, s.c.B().Hkeys().Key(key).Build()).AsStrSlice()
		if err != nil {
			return 0, 0, err
		}
		for _, f := range fields {
			if f != "_" {
				n[i]++
			}
		}
	}
	return n[0], n[1], nil
}

// Stocks returns the Redis stock of each event; cold events are missing.
func (s *Redis) Stocks(ctx context.Context, ids []int64) (map[int64]int64, error) {
	out := make(map[int64]int64, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	cmds := make(rueidis.Commands, len(ids))
	for i, id := range ids {
		cmds[i] = s.c.B().Get().Key(StockKey(id)).Build()
	}
	for i, r := range s.c.DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		if rueidis.IsRedisNil(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[ids[i]] = n
	}
	return out, nil
}
