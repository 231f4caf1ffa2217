package worker

import (
	"cmp"
	"slices"
	"time"

	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/store"
	"github.com/flashgate/flashgate/internal/wallet"
)

// The writers' decisions, apart from any database: given a batch in log
// order and what MySQL said under its locks, decide every ticket. The write
// steps (orders.go, gifts.go) read that state, call these, and write the
// result in the same transaction; decide_test.go covers the rules.
//
// The rule that makes "late is never failed" hold: an abort marker (sent by
// a reconciler for a reservation or hold that waited too long) and the
// record it aborts share a key, so a partition holds them in the order the
// broker took them. Whichever comes first decides; the other is a replay.

// Failure reasons recorded on tickets.
const (
	ReasonSoldOut             = "sold_out"          // MySQL had no unit left
	ReasonAlreadyPurchased    = "already_purchased" // the user holds another unit of the event
	ReasonAborted             = "aborted"           // the gateway answered 503 and undid it
	ReasonNotFound            = "not_found"         // no such event in MySQL
	ReasonTimeout             = "timeout"           // the abort marker came before any record
	ReasonInvalid             = "invalid"           // a record MySQL refused for good; dead-lettered
	ReasonInsufficientBalance = "insufficient_balance"
	ReasonDuplicate           = "duplicate" // another ticket already answered the gift's Idempotency-Key
)

// returnsUnit reports whether an order ticket failed for a reason that
// leaves its Redis unit unsold, so settling it puts the unit back. A replay
// of the decision derives the same answer, and settle.lua gives a unit back
// only once.
func returnsUnit(reason string) bool {
	switch reason {
	case ReasonTimeout, ReasonAlreadyPurchased, ReasonInvalid, "unprocessable":
		return true
	}
	return false // sold_out and not_found took no Redis unit; aborted gave it back itself
}

// outcome is one order ticket's decision, new or replayed.
type outcome struct {
	store.Outcome
	replay    bool
	createdAt time.Time
}

// orderState is what MySQL says about one event's batch, read under the
// event's row lock.
type orderState struct {
	found   bool
	event   db.Event
	decided map[string]db.Ticket // tickets of the batch decided before
	holders map[int64]string     // users of the batch holding a unit: their ticket
}

// orderPlan is a decided batch: every ticket's outcome, in log order, and
// the orders to insert.
type orderPlan struct {
	outs     []outcome
	accepted []db.NewOrder
}

// decideOrders decides one event's messages in log order. aborted holds the
// tickets the gateway undid (claim.lua said so).
func decideOrders(msgs []bus.Order, aborted map[string]bool, st orderState) orderPlan {
	var p orderPlan
	holders := make(map[int64]string, len(st.holders))
	for u, t := range st.holders {
		holders[u] = t
	}
	left := st.event.Stock
	seen := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		if seen[m.Ticket] {
			continue // its record or marker came first, or the same record twice
		}
		seen[m.Ticket] = true
		out := outcome{Outcome: store.Outcome{EventID: m.EventID, UserID: m.UserID, Ticket: m.Ticket}, createdAt: time.UnixMilli(m.ReservedAt).UTC()}
		if d, ok := st.decided[m.Ticket]; ok {
			out.replay = true
			out.UserID = d.UserID
			out.Succeeded = d.Status == "succeeded"
			out.Reason, out.OrderNo = d.Reason.String, d.OrderNo.String
			if !out.Succeeded {
				out.ReturnUnit = returnsUnit(out.Reason)
				out.HeldTicket = holders[d.UserID]
			}
			p.outs = append(p.outs, out)
			continue
		}
		switch {
		case aborted[m.Ticket]:
			out.Reason = ReasonAborted
		case m.Abort:
			out.Reason, out.ReturnUnit, out.HeldTicket = ReasonTimeout, true, holders[m.UserID]
		case !st.found:
			out.Reason = ReasonNotFound
		case holders[m.UserID] != "":
			out.Reason, out.HeldTicket, out.ReturnUnit = ReasonAlreadyPurchased, holders[m.UserID], true
		case left <= 0:
			// Redis believed there was a unit (e.g. re-warmed while orders
			// were in flight); MySQL is the truth. No unit to give back.
			out.Reason = ReasonSoldOut
		default:
			out.Succeeded, out.OrderNo = true, store.OrderNo(m.Ticket)
			holders[m.UserID] = m.Ticket
			left--
			p.accepted = append(p.accepted, db.NewOrder{OrderNo: out.OrderNo, Ticket: m.Ticket, UserID: m.UserID})
		}
		p.outs = append(p.outs, out)
	}
	return p
}

// tickets returns the new decisions of a plan as tickets rows.
func (p orderPlan) tickets() []db.NewTicket {
	var ts []db.NewTicket
	for _, o := range p.outs {
		if !o.replay {
			ts = append(ts, db.NewTicket{Ticket: o.Ticket, Kind: "order", UserID: o.UserID, RefID: o.EventID,
				Succeeded: o.Succeeded, Reason: o.Reason, OrderNo: o.OrderNo, CreatedAt: o.createdAt})
		}
	}
	return ts
}

// giftOutcome is one gift ticket's decision, new or replayed.
type giftOutcome struct {
	bus.Gift
	succeeded bool
	reason    string
	replay    bool
}

// giftState is what MySQL says about a chunk of gifts, read under the locks
// of every wallet the chunk may change.
type giftState struct {
	decided map[string]db.Ticket
	wallets map[int64]db.Balances
	idem    map[db.IdemRef]string // Idempotency-Keys already answered, by ticket
}

// giftPlan is a decided chunk: the outcomes in log order and what to write.
type giftPlan struct {
	outs  []giftOutcome
	write db.GiftWrite
}

// decideGifts decides a chunk of gifts and abort markers in log order.
// Balances move in memory as each gift is decided, so a sender's gifts are
// judged against what the gifts before them left, as MySQL would.
func decideGifts(msgs []bus.Gift, aborted map[string]bool, st giftState) giftPlan {
	var p giftPlan
	wallets := make(map[int64]db.Balances, len(st.wallets))
	for u, b := range st.wallets {
		wallets[u] = b
	}
	deltas := map[int64]*db.WalletDelta{}
	delta := func(u int64) *db.WalletDelta {
		d := deltas[u]
		if d == nil {
			d = &db.WalletDelta{UserID: u}
			deltas[u] = d
		}
		return d
	}
	idem := make(map[db.IdemRef]string, len(st.idem))
	for k, t := range st.idem {
		idem[k] = t
	}
	rooms := map[[2]int64]int64{}
	seen := make(map[string]bool, len(msgs))
	for _, g := range msgs {
		if seen[g.Ticket] {
			continue
		}
		seen[g.Ticket] = true
		out := giftOutcome{Gift: g}
		if d, ok := st.decided[g.Ticket]; ok {
			out.replay, out.succeeded, out.reason = true, d.Status == "succeeded", d.Reason.String
			if out.Abort {
				// The marker carries only the ticket: publish what the
				// tickets row knows.
				out.RoomID = d.RefID
			}
			p.outs = append(p.outs, out)
			continue
		}
		ref := db.IdemRef{UserID: g.SenderID, Key: g.IdemKey}
		switch {
		case aborted[g.Ticket]:
			out.reason = ReasonAborted
		case g.Abort:
			out.reason = ReasonTimeout
		case g.IdemKey != "" && idem[ref] != "" && idem[ref] != g.Ticket:
			out.reason = ReasonDuplicate
		case wallets[g.SenderID].Balance < g.Coins:
			// The guard that keeps a wallet from going negative whatever
			// Redis believed.
			out.reason = ReasonInsufficientBalance
		default:
			out.succeeded = true
			s, r := wallets[g.SenderID], wallets[g.ReceiverID]
			s.Balance -= g.Coins
			wallets[g.SenderID] = s
			if g.ReceiverID == g.SenderID {
				r = s
			}
			r.Earnings += g.Coins
			wallets[g.ReceiverID] = r
			ds, dr := delta(g.SenderID), delta(g.ReceiverID)
			ds.Balance -= g.Coins
			ds.Spent += g.Coins
			dr.Earnings += g.Coins
			dr.Earned += g.Coins
			p.write.Ledger = append(p.write.Ledger,
				db.LedgerRow{UserID: g.SenderID, Account: wallet.AccountBalance, Kind: wallet.KindGiftSent, Ref: g.Ticket,
					Amount: -g.Coins, BalanceAfter: wallets[g.SenderID].Balance},
				db.LedgerRow{UserID: g.ReceiverID, Account: wallet.AccountEarnings, Kind: wallet.KindGiftReceived, Ref: g.Ticket,
					Amount: g.Coins, BalanceAfter: wallets[g.ReceiverID].Earnings})
			p.write.Gifts = append(p.write.Gifts, db.GiftRow{Ticket: g.Ticket, RoomID: g.RoomID, SenderID: g.SenderID,
				ReceiverID: g.ReceiverID, GiftID: g.GiftID, Count: g.Count, Coins: g.Coins, HeldAt: time.UnixMilli(g.HeldAt)})
			rooms[[2]int64{g.RoomID, g.SenderID}] += g.Coins
		}
		t := db.NewTicket{Ticket: g.Ticket, Kind: "gift", UserID: g.SenderID, RefID: g.RoomID,
			Succeeded: out.succeeded, Reason: out.reason, CreatedAt: time.UnixMilli(g.HeldAt)}
		if g.IdemKey != "" && out.reason != ReasonDuplicate && !g.Abort {
			t.IdemKey, t.Balance = g.IdemKey, g.Balance
			idem[ref] = g.Ticket
		}
		p.write.Tickets = append(p.write.Tickets, t)
		p.outs = append(p.outs, out)
	}
	for u, d := range deltas {
		d.NewBalance, d.NewEarnings = wallets[u].Balance, wallets[u].Earnings
		p.write.Wallets = append(p.write.Wallets, *d)
	}
	slices.SortFunc(p.write.Wallets, func(a, b db.WalletDelta) int { return cmp.Compare(a.UserID, b.UserID) })
	for k, c := range rooms {
		p.write.Rooms = append(p.write.Rooms, db.RoomTotal{RoomID: k[0], UserID: k[1], Coins: c})
	}
	// In key order, so concurrent chunks lock leaderboard rows alike.
	slices.SortFunc(p.write.Rooms, func(a, b db.RoomTotal) int {
		return cmp.Or(cmp.Compare(a.RoomID, b.RoomID), cmp.Compare(a.UserID, b.UserID))
	})
	return p
}
