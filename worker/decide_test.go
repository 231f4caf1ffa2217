package worker

import (
	"database/sql"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/db"
)

func order(ticket string, user int64) bus.Order {
	return bus.Order{Ticket: "o1-" + ticket, EventID: 1, UserID: user, ReservedAt: 1_750_000_000_000}
}

func marker(ticket string, user int64) bus.Order {
	o := order(ticket, user)
	o.Abort = true
	return o
}

func failedTicket(reason string, user int64) db.Ticket {
	return db.Ticket{Status: "failed", UserID: user, Reason: sql.NullString{String: reason, Valid: true}}
}

// orderSummary renders outcomes as "ticket:status/reason[+unit][ replay]".
func orderSummary(p orderPlan) string {
	var parts []string
	for _, o := range p.outs {
		s := strings.TrimPrefix(o.Ticket, "o1-") + ":"
		if o.Succeeded {
			s += "ok"
		} else {
			s += o.Reason
		}
		if o.ReturnUnit {
			s += "+unit"
		}
		if o.HeldTicket != "" {
			s += "(holds " + strings.TrimPrefix(o.HeldTicket, "o1-") + ")"
		}
		if o.replay {
			s += " replay"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// TestDecideOrders: the order writer's rules, in log order, with no
// database: stock, one unit per user, abort markers against their records,
// replays of decided tickets.
func TestDecideOrders(t *testing.T) {
	live := orderState{found: true, event: db.Event{ID: 1, Stock: 2}}
	tests := []struct {
		name     string
		msgs     []bus.Order
		aborted  map[string]bool
		st       orderState
		want     string
		accepted int
	}{
		{"stock decides in log order", []bus.Order{order("a", 1), order("b", 2), order("c", 3)}, nil, live,
			"a:ok, b:ok, c:sold_out", 2},
		{"record before its marker wins: late is not failed", []bus.Order{order("a", 1), marker("a", 1)}, nil, live,
			"a:ok", 1},
		{"marker before its record fails it and gives the unit back", []bus.Order{marker("a", 1), order("a", 1), order("b", 2)}, nil, live,
			"a:timeout+unit, b:ok", 1},
		{"a marker after a decision is a replay", []bus.Order{marker("a", 1)}, nil,
			orderState{found: true, event: db.Event{Stock: 2}, decided: map[string]db.Ticket{"o1-a": {Status: "succeeded", UserID: 1}}},
			"a:ok replay", 0},
		{"the gateway undid it: aborted, its unit is back already", []bus.Order{order("a", 1), marker("b", 2)},
			map[string]bool{"o1-a": true, "o1-b": true}, live, "a:aborted, b:aborted", 0},
		{"one unit per user", []bus.Order{order("a", 1), order("b", 1)}, nil, live,
			"a:ok, b:already_purchased+unit(holds a)", 1},
		{"a user holding a unit in MySQL", []bus.Order{order("b", 1)}, nil,
			orderState{found: true, event: db.Event{Stock: 2}, holders: map[int64]string{1: "o1-a"}},
			"b:already_purchased+unit(holds a)", 0},
		{"a marker of a user holding another unit keeps that unit his", []bus.Order{marker("b", 1)}, nil,
			orderState{found: true, event: db.Event{Stock: 2}, holders: map[int64]string{1: "o1-a"}},
			"b:timeout+unit(holds a)", 0},
		{"no such event", []bus.Order{order("a", 1)}, nil, orderState{}, "a:not_found", 0},
		{"the same record twice", []bus.Order{order("a", 1), order("a", 1)}, nil, live, "a:ok", 1},
		{"a replayed timeout gives its unit back once more (settle does it once)", []bus.Order{order("a", 1)}, nil,
			orderState{found: true, decided: map[string]db.Ticket{"o1-a": failedTicket(ReasonTimeout, 1)}},
			"a:timeout+unit replay", 0},
		{"a replayed sold out has no unit to give back", []bus.Order{order("a", 1)}, nil,
			orderState{found: true, decided: map[string]db.Ticket{"o1-a": failedTicket(ReasonSoldOut, 1)}},
			"a:sold_out replay", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := decideOrders(tc.msgs, tc.aborted, tc.st)
			if got := orderSummary(p); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if len(p.accepted) != tc.accepted {
				t.Errorf("%d orders to insert, want %d", len(p.accepted), tc.accepted)
			}
			for _, tk := range p.tickets() {
				for _, o := range p.outs {
					if o.Ticket == tk.Ticket && o.replay {
						t.Errorf("replayed ticket %s recorded again", tk.Ticket)
					}
				}
			}
		})
	}
}

func gift(ticket string, sender, receiver, coins int64) bus.Gift {
	return bus.Gift{Ticket: fmt.Sprintf("g%d-%s", sender, ticket), RoomID: 9, SenderID: sender, ReceiverID: receiver,
		GiftID: 1, Count: coins, Coins: coins, HeldAt: 1_750_000_000_000}
}

func giftMarker(ticket string, sender int64) bus.Gift {
	return bus.Gift{Ticket: fmt.Sprintf("g%d-%s", sender, ticket), SenderID: sender, HeldAt: 1_750_000_000_000, Abort: true}
}

func withKey(g bus.Gift, key string) bus.Gift { g.IdemKey = key; return g }

func giftSummary(p giftPlan) string {
	var parts []string
	for _, o := range p.outs {
		s := o.Ticket[strings.IndexByte(o.Ticket, '-')+1:] + ":"
		if o.succeeded {
			s += "ok"
		} else {
			s += o.reason
		}
		if o.replay {
			s += " replay"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// TestDecideGifts: the gift writer's rules: balances move in log order,
// never below zero; markers against their gifts; Idempotency-Keys kept by
// MySQL; and the chunk's writes (wallet deltas, ledger rows with the
// balance after each change, leaderboard totals).
func TestDecideGifts(t *testing.T) {
	wallets := func() map[int64]db.Balances {
		return map[int64]db.Balances{1: {Balance: 10}, 2: {Balance: 5}, 7: {Earnings: 100}}
	}
	tests := []struct {
		name    string
		msgs    []bus.Gift
		aborted map[string]bool
		st      giftState
		want    string
		wallets string // net deltas and values after, "user:balance/earnings=balance/earnings"
	}{
		{"balance is spent in log order", []bus.Gift{gift("a", 1, 7, 6), gift("b", 1, 7, 6), gift("c", 1, 7, 4)}, nil,
			giftState{wallets: wallets()}, "a:ok, b:insufficient_balance, c:ok", "1:-10/0=0/0 7:0/10=0/110"},
		{"gift before its marker wins", []bus.Gift{gift("a", 2, 7, 5), giftMarker("a", 2)}, nil,
			giftState{wallets: wallets()}, "a:ok", "2:-5/0=0/0 7:0/5=0/105"},
		{"marker before its gift fails it, no debit", []bus.Gift{giftMarker("a", 2), gift("a", 2, 7, 5)}, nil,
			giftState{wallets: wallets()}, "a:timeout", ""},
		{"undone by the gateway", []bus.Gift{gift("a", 1, 7, 1)}, map[string]bool{"g1-a": true},
			giftState{wallets: wallets()}, "a:aborted", ""},
		{"decided before: a replay", []bus.Gift{gift("a", 1, 7, 1)}, nil,
			giftState{wallets: wallets(), decided: map[string]db.Ticket{"g1-a": {Status: "succeeded"}}}, "a:ok replay", ""},
		{"an Idempotency-Key MySQL already holds for another ticket", []bus.Gift{withKey(gift("b", 1, 7, 1), "k")}, nil,
			giftState{wallets: wallets(), idem: map[db.IdemRef]string{{UserID: 1, Key: "k"}: "g1-a"}}, "b:duplicate", ""},
		{"two copies of one key in a chunk: the first counts", []bus.Gift{withKey(gift("a", 1, 7, 1), "k"), withKey(gift("b", 1, 7, 1), "k")}, nil,
			giftState{wallets: wallets()}, "a:ok, b:duplicate", "1:-1/0=9/0 7:0/1=0/101"},
		{"two senders, one anchor", []bus.Gift{gift("a", 1, 7, 3), gift("b", 2, 7, 2)}, nil,
			giftState{wallets: wallets()}, "a:ok, b:ok", "1:-3/0=7/0 2:-2/0=3/0 7:0/5=0/105"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := decideGifts(tc.msgs, tc.aborted, tc.st)
			if got := giftSummary(p); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			var ws []string
			for _, d := range p.write.Wallets {
				ws = append(ws, fmt.Sprintf("%d:%d/%d=%d/%d", d.UserID, d.Balance, d.Earnings, d.NewBalance, d.NewEarnings))
			}
			if got := strings.Join(ws, " "); got != tc.wallets {
				t.Errorf("wallet deltas %q, want %q", got, tc.wallets)
			}
			var ok int
			for _, o := range p.outs {
				if o.succeeded && !o.replay {
					ok++
				}
			}
			if len(p.write.Gifts) != ok || len(p.write.Ledger) != 2*ok {
				t.Errorf("%d gift rows and %d ledger rows for %d new gifts", len(p.write.Gifts), len(p.write.Ledger), ok)
			}
		})
	}

	// The ledger carries each account's value after each change, and the
	// leaderboard gets one total per room and sender.
	p := decideGifts([]bus.Gift{gift("a", 1, 7, 3), gift("b", 1, 7, 4)}, nil, giftState{wallets: wallets()})
	var after []string
	for _, l := range p.write.Ledger {
		after = append(after, fmt.Sprintf("%d:%s:%d=%d", l.UserID, l.Account, l.Amount, l.BalanceAfter))
	}
	want := "1:balance:-3=7 7:earnings:3=103 1:balance:-4=3 7:earnings:4=107"
	if got := strings.Join(after, " "); got != want {
		t.Errorf("ledger %s\nwant   %s", got, want)
	}
	if len(p.write.Rooms) != 1 || p.write.Rooms[0] != (db.RoomTotal{RoomID: 9, UserID: 1, Coins: 7}) {
		t.Errorf("leaderboard totals %+v", p.write.Rooms)
	}
	// A gift with a key records the key and its answer with its ticket.
	k := withKey(gift("a", 1, 7, 1), "k")
	k.Balance = 9
	p = decideGifts([]bus.Gift{k}, nil, giftState{wallets: wallets()})
	if tk := p.write.Tickets[0]; tk.IdemKey != "k" || tk.Balance != 9 {
		t.Errorf("ticket row %+v, want the key and its balance", tk)
	}
}

func TestGiftCoinsWrong(t *testing.T) {
	versions := map[int64]giftPrice{10: {GiftID: 1, Price: 1}, 11: {GiftID: 1, Price: 2}, 20: {GiftID: 3, Price: 100}}
	current := map[int64]int64{1: 2}
	g := func(gift, count, coins, version int64) bus.Gift {
		return bus.Gift{Ticket: "g5-0011223344556677", SenderID: 5, ReceiverID: 7, GiftID: gift, Count: count, Coins: coins, CatalogVersion: version}
	}
	for _, tc := range []struct {
		name string
		g    bus.Gift
		ok   bool
	}{
		{"old version", g(1, 3, 3, 10), true},
		{"new version", g(1, 3, 6, 11), true},
		{"no version, current price", g(1, 3, 6, 0), true},
		{"no version, old price", g(1, 3, 3, 0), false},
		{"coins not price times count", g(1, 3, 4, 10), false},
		{"unknown version", g(1, 1, 1, 99), false},
		{"another gift's version", g(1, 1, 100, 20), false},
		{"unknown gift, no version", g(4, 1, 1000, 0), false},
		{"overflow", g(3, math.MaxInt64/50, 0, 20), false},
		{"abort marker", bus.Gift{Ticket: "g5-0011223344556677", SenderID: 5, Abort: true}, true},
		{"to its own sender", bus.Gift{Ticket: "g5-0011223344556677", SenderID: 5, ReceiverID: 5, GiftID: 1, Count: 1, Coins: 1, CatalogVersion: 10}, false},
	} {
		if why := giftCoinsWrong(tc.g, versions, current); (why == "") != tc.ok {
			t.Errorf("%s: giftCoinsWrong = %q, want ok %v", tc.name, why, tc.ok)
		}
	}
}
