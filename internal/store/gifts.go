package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/flashgate/flashgate/lua"
)

// HoldStatus is the outcome of HoldGift.
type HoldStatus int

// HoldGift outcomes, in the numbering of gift_hold.lua.
const (
	Held HoldStatus = iota
	HoldReplay
	HoldInsufficient
	HoldNotLoaded
	HoldLimited
)

// HoldResult is what HoldGift decided.
type HoldResult struct {
	Status     HoldStatus
	Ticket     string        // a replay's original ticket
	Balance    int64         // after the hold; a replay's original answer; the balance when insufficient
	HeldAt     time.Time     // Held: Redis's clock when the coins were held
	RetryAfter time.Duration // HoldLimited: how long the sender must wait
	// LoadMine (HoldNotLoaded): the script marked a load in progress for
	// the caller, who must now load the wallet (wallet.Wallets.LoadMarked)
	// or clear the mark.
	LoadMine bool
}

// HoldGift takes coins from the sender's hot balance and holds them for the
// ticket, within the sender's rate limit. idemKey may be "".
func (s *Redis) HoldGift(ctx context.Context, senderID int64, ticket string, coins int64, idemKey string, limit Limit) (HoldResult, error) {
	idem := "0"
	if idemKey != "" {
		idem = "1"
	}
	vals, err := lua.GiftHold.Exec(ctx, s.c,
		[]string{BalanceKey(senderID), HoldsKey(senderID), IdemKey(senderID, idemKey), RateLimitKey(senderID, "gift"),
			HoldersKey(WalletBucket(senderID)), LoadingKey(senderID)},
		[]string{ticket, strconv.FormatInt(coins, 10), idem, idemTTL, limit.interval(), strconv.Itoa(limit.Burst),
			strconv.FormatInt(senderID, 10), strconv.FormatInt(s.Clock().UnixMicro(), 10), loadMarkMs},
	).ToArray()
	if err != nil {
		return HoldResult{}, fmt.Errorf("cannot hold coins: %w", err)
	}
	code, _ := vals[0].AsInt64()
	r := HoldResult{Status: HoldStatus(code)}
	switch r.Status {
	case Held:
		r.Balance, _ = vals[1].AsInt64()
		ms, _ := vals[2].AsInt64()
		r.HeldAt = time.UnixMilli(ms).UTC()
	case HoldInsufficient:
		r.Balance, _ = vals[1].AsInt64()
	case HoldNotLoaded:
		if len(vals) > 1 {
			n, _ := vals[1].AsInt64()
			r.LoadMine = n == 1
		}
	case HoldLimited:
		us, _ := vals[1].AsInt64()
		r.RetryAfter = time.Duration(us) * time.Microsecond
	case HoldReplay:
		prev, _ := vals[1].ToString()
		i := strings.LastIndexByte(prev, ':')
		if i < 0 {
			return HoldResult{}, fmt.Errorf("bad idempotency record %q", prev)
		}
		r.Ticket = prev[:i]
		r.Balance, _ = strconv.ParseInt(prev[i+1:], 10, 64)
	}
	return r, nil
}

// GiftIdem is the first answer to a gift's Idempotency-Key, as MySQL keeps it.
type GiftIdem struct {
	Key     string
	Ticket  string
	Balance int64
	Expires time.Time
}

// RestoreGiftIdem puts answers to Idempotency-Keys that Redis lost (a flush,
// a restart) back from MySQL, unless Redis has them; a wallet load does it
// before it installs the balance, so no gift can be held in between.
func (s *Redis) RestoreGiftIdem(ctx context.Context, senderID int64, keys []GiftIdem, now time.Time) error {
	var cmds rueidis.Commands
	for _, k := range keys {
		ttl := k.Expires.Sub(now)
		if ttl < time.Second {
			continue
		}
		cmds = append(cmds, s.c.B().Set().Key(IdemKey(senderID, k.Key)).
			Value(k.Ticket+":"+strconv.FormatInt(k.Balance, 10)).Nx().Ex(ttl).Build())
	}
	for _, r := range s.c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
			return fmt.Errorf("cannot restore idempotency keys of user %d: %w", senderID, err)
		}
	}
	return nil
}

// UndoGift gives back a hold whose produce failed. It reports false when the
// worker already claimed the gift, i.e. it is in Kafka after all.
func (s *Redis) UndoGift(ctx context.Context, senderID int64, ticket, idemKey string) (bool, error) {
	n, err := lua.GiftUndo.Exec(ctx, s.c,
		[]string{BalanceKey(senderID), HoldsKey(senderID), IdemKey(senderID, idemKey), HoldersKey(WalletBucket(senderID))},
		[]string{ticket, strconv.FormatInt(senderID, 10)}).AsInt64()
	if err != nil {
		return false, fmt.Errorf("cannot undo hold %s: %w", ticket, err)
	}
	return n == 1, nil
}

// GiftRef names one held gift.
type GiftRef struct {
	SenderID int64
	Ticket   string
}

// ClaimGifts marks held gifts as being committed and returns the tickets the
// gateway already undid (their gifts must be dropped).
func (s *Redis) ClaimGifts(ctx context.Context, refs []GiftRef) (aborted map[string]bool, err error) {
	if len(refs) == 0 {
		return nil, nil
	}
	execs := make([]rueidis.LuaExec, len(refs))
	for i, r := range refs {
		execs[i] = rueidis.LuaExec{Keys: []string{HoldsKey(r.SenderID)}, Args: []string{r.Ticket}}
	}
	aborted = map[string]bool{}
	for i, r := range lua.GiftClaim.ExecMulti(ctx, s.c, execs...) {
		n, err := r.AsInt64()
		if err != nil {
			return nil, fmt.Errorf("cannot claim gifts: %w", err)
		}
		if n == 0 {
			aborted[refs[i].Ticket] = true
		}
	}
	return aborted, nil
}

// GiftSettlement is the end of one hold.
type GiftSettlement struct {
	GiftRef
	Committed bool // false: the gift failed, give the coins back
}

// SettleGifts ends holds after MySQL decided their gifts.
func (s *Redis) SettleGifts(ctx context.Context, sets []GiftSettlement) error {
	if len(sets) == 0 {
		return nil
	}
	execs := make([]rueidis.LuaExec, len(sets))
	now := strconv.FormatInt(s.Clock().UnixMilli(), 10)
	for i, g := range sets {
		c := "0"
		if g.Committed {
			c = "1"
		}
		execs[i] = rueidis.LuaExec{Keys: []string{BalanceKey(g.SenderID), HoldsKey(g.SenderID)}, Args: []string{g.Ticket, c, now}}
	}
	for _, r := range lua.GiftSettle.ExecMulti(ctx, s.c, execs...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("cannot settle gifts: %w", err)
		}
	}
	return nil
}

// HoldState is the state of a gift hold in the sender's holds hash.
type HoldState byte

// Hold states, as the gift scripts write them.
const (
	HoldPending HoldState = 'p' // held by the gateway, not yet claimed
	HoldClaimed HoldState = 'c' // claimed by a writer, being committed
	HoldUndone  HoldState = 'a' // undone by the gateway after a failed produce
)

// GiftHold is one entry of a sender's holds hash: "p:<coins>:<ms>"
// (pending), "c:<coins>:<ms>" (claimed) or "a:<ms>" (undone), ms on Redis's
// clock. gift_hold.lua, gift_claim.lua and gift_undo.lua write them.
type GiftHold struct {
	State HoldState
	Coins int64     // pending or claimed: the coins held
	At    time.Time // when it was held, or undone
}

// Live reports whether the hold still keeps coins from the balance.
func (h GiftHold) Live() bool { return h.State == HoldPending || h.State == HoldClaimed }

// ParseHold reads an entry of a holds hash; ok is false when it is not one.
func ParseHold(v string) (h GiftHold, ok bool) {
	state, rest, _ := strings.Cut(v, ":")
	if len(state) != 1 {
		return GiftHold{}, false
	}
	h.State = HoldState(state[0])
	ms := rest
	switch h.State {
	case HoldUndone:
	case HoldPending, HoldClaimed:
		var coins string
		coins, ms, _ = strings.Cut(rest, ":")
		var err error
		if h.Coins, err = strconv.ParseInt(coins, 10, 64); err != nil {
			return GiftHold{}, false
		}
	default:
		return GiftHold{}, false
	}
	at, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return GiftHold{}, false
	}
	h.At = time.UnixMilli(at)
	return h, true
}

// Hold reads the sender's hold of a gift ticket; ok is false when the
// holds hash has no such entry (or one that is not a hold).
func (s *Redis) Hold(ctx context.Context, senderID int64, ticket string) (h GiftHold, ok bool, err error) {
	v, err := s.c.Do(ctx, s.c.B().Hget().Key(HoldsKey(senderID)).Field(ticket).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return GiftHold{}, false, nil
	}
	if err != nil {
		return GiftHold{}, false, err
	}
	h, ok = ParseHold(v)
	return h, ok, nil
}
