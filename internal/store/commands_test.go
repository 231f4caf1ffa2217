package store

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flashgate/flashgate/internal/testenv"
)

// An accepted order's whole life in Redis — reserve, claim, settle — costs
// at most 8 commands (EVALSHA and the commands inside the scripts, as
// INFO commandstats counts them), and reserve is one round trip.
func TestOrderRedisCommands(t *testing.T) {
	s, err := New(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const ev, orders = 7, 200
	if _, err := s.Warm(ctx, ev, orders, time.Now().Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SyncClock(ctx); err != nil {
		t.Fatal(err)
	}
	// Load the scripts first: a NOSCRIPT fallback is a one-off, not a cost
	// per order.
	tickets := make([]string, orders)
	tickets[0] = NewOrderTicket(ev)
	if r, err := s.Reserve(ctx, ev, 1, tickets[0], ""); err != nil || r.Status != Reserved {
		t.Fatalf("reserve: %+v %v", r, err)
	}
	s.Claim(ctx, ev, nil)
	s.Settle(ctx, nil)
	resetStats(t, s)

	for i := 1; i < orders; i++ {
		tickets[i] = NewOrderTicket(ev)
		if r, err := s.Reserve(ctx, ev, int64(1+i), tickets[i], ""); err != nil || r.Status != Reserved {
			t.Fatalf("reserve %d: %+v %v", i, r, err)
		}
	}
	reserveCmds := commands(t, s)
	aborted, err := s.Claim(ctx, ev, tickets)
	if err != nil || len(aborted) != 0 {
		t.Fatalf("claim: %v %v", aborted, err)
	}
	outs := make([]Outcome, orders)
	for i, tk := range tickets {
		outs[i] = Outcome{EventID: ev, UserID: int64(1 + i), Ticket: tk, Succeeded: true, OrderNo: OrderNo(tk)}
	}
	if err := s.Settle(ctx, outs); err != nil {
		t.Fatal(err)
	}
	total := commands(t, s)
	perReserve := float64(reserveCmds) / (orders - 1)
	perOrder := float64(total) / (orders - 1)
	t.Logf("Redis commands: %.2f per reserve, %.2f per order in all", perReserve, perOrder)
	if perReserve > 7 || perOrder > 8 {
		t.Errorf("%.2f commands per reserve (want ≤ 7), %.2f per order in all (want ≤ 8)", perReserve, perOrder)
	}

	// And the state is right: every ticket succeeded, nothing pending.
	for _, tk := range tickets {
		st, err := s.Ticket(ctx, ev, tk)
		if err != nil || st.Status != "succeeded" || st.OrderNo != OrderNo(tk) || st.CreatedAt.IsZero() {
			t.Fatalf("ticket %s: %+v %v", tk, st, err)
		}
	}
	if n, _ := s.c.Do(ctx, s.c.B().Zcard().Key(PendingKey(ev)).Build()).AsInt64(); n != 0 {
		t.Errorf("%d reservations still pending", n)
	}
	if b, tk, err := s.Counts(ctx, ev); err != nil || b != orders || tk != orders {
		t.Errorf("counts: %d buyers, %d tickets, %v; want %d each", b, tk, err, orders)
	}
	// The event's hashes carry its expiry.
	for _, k := range []string{BuyersKey(ev), TicketsKey(ev)} {
		if ttl, _ := s.c.Do(ctx, s.c.B().Ttl().Key(k).Build()).AsInt64(); ttl <= 0 {
			t.Errorf("%s has TTL %d, want the event's", k, ttl)
		}
	}
}

// upkeep are the commands commands leaves out.
var upkeep = map[string]bool{"hello": true, "ping": true, "client": true, "cluster": true, "info": true, "config": true, "command": true, "readonly": true}

func resetStats(t *testing.T, s *Redis) {
	t.Helper()
	if err := s.c.Do(context.Background(), s.c.B().ConfigResetstat().Build()).Error(); err != nil {
		t.Fatal(err)
	}
}

// commands sums the calls in INFO commandstats of the commands that touch
// data: not the client's own connection upkeep (HELLO, PING, CLIENT, the
// cluster probe) nor this test's INFO and CONFIG RESETSTAT, which come and
// go with connections and timers, not with orders.
func commands(t *testing.T, s *Redis) int64 {
	t.Helper()
	info, err := s.c.Do(context.Background(), s.c.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		name, _, _ := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
		if !strings.HasPrefix(line, "cmdstat_") || upkeep[strings.SplitN(name, "|", 2)[0]] {
			continue
		}
		_, rest, _ := strings.Cut(line, "calls=")
		calls, _, _ := strings.Cut(rest, ",")
		c, _ := strconv.ParseInt(calls, 10, 64)
		n += c
	}
	return n
}

func TestParseTicketState(t *testing.T) {
	for _, c := range []struct {
		in   string
		want TicketState
		ok   bool
	}{
		{"pending|42|1700000000000|||", TicketState{UserID: 42, Status: "pending", CreatedAt: time.UnixMilli(1700000000000).UTC()}, true},
		{"failed|42|1700000000000|sold_out||", TicketState{UserID: 42, Status: "failed", Reason: "sold_out", CreatedAt: time.UnixMilli(1700000000000).UTC()}, true},
		{"succeeded|7|5||FGAB|", TicketState{UserID: 7, Status: "succeeded", OrderNo: "FGAB", CreatedAt: time.UnixMilli(5).UTC()}, true},
		{"pending|42|5|||99", TicketState{UserID: 42, Status: "pending", CreatedAt: time.UnixMilli(5).UTC(), Marked: true}, true},
		{"aborted|0|||", TicketState{}, false},
		{"", TicketState{}, false},
		{"_", TicketState{}, false},
	} {
		got, ok := parseTicketState(c.in)
		if ok != c.ok || got != c.want {
			t.Errorf("parseTicketState(%q) = %+v, %v; want %+v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
