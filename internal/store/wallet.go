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

// WalletBuckets is how many hash tags the wallets are spread over. A
// user's wallet keys carry the tag of the user's bucket, {w:B} with B =
// user id mod WalletBuckets, and the user id after it ({w:42}:bal:1066):
// one user's keys stay in one Redis Cluster slot, so each script still runs
// in one slot, and each bucket also holds the indexes of its users that the
// timers walk instead of the keyspace ({w:B}:holders, {w:B}:loaded). 1024
// buckets spread the wallets over more slots than any cluster has masters,
// and keep a reconciler pass at about a thousand small reads. Changing it
// moves every wallet key: treat that as a new key layout (see the README's
// section on upgrading).
const WalletBuckets = 1024

// WalletBucket is the bucket of a user's wallet keys.
func WalletBucket(id int64) int {
	b := id % WalletBuckets
	if b < 0 {
		b += WalletBuckets
	}
	return int(b)
}

func bucketTag(b int) string { return "{w:" + strconv.Itoa(b) + "}" }

// userKey is the key of one kind of a user's wallet state.
func userKey(id int64, kind string) string {
	return bucketTag(WalletBucket(id)) + ":" + kind + ":" + strconv.FormatInt(id, 10)
}

// Keys of a user's wallet; all share the user's {w:B} hash tag.
func BalanceKey(id int64) string        { return userKey(id, "bal") }
func LoadingKey(id int64) string        { return userKey(id, "loading") }
func CreditedKey(id int64) string       { return userKey(id, "credited") }
func HoldsKey(id int64) string          { return userKey(id, "holds") }
func IdemKey(id int64, k string) string { return userKey(id, "idem") + ":" + k }

// HoldersKey is a bucket's index of users with gift holds: a sorted set of
// user ids, scored by the ms from which the hold reconciler counts
// FLASHGATE_PENDING_TIMEOUT before it looks at the user (first: the time
// of the user's oldest hold). A user is in it while the holds hash has any
// entry; gift_hold.lua adds the sender, gift_holds_look.lua reschedules or
// drops a user it looked at.
func HoldersKey(bucket int) string { return bucketTag(bucket) + ":holders" }

// LoadedKey is a bucket's index of users whose hot balance is in Redis: a
// set of user ids, added by wallet_load.lua and wallet_resync.lua, walked
// by the wallet reconciler.
func LoadedKey(bucket int) string { return bucketTag(bucket) + ":loaded" }

// CreditedTTL is how long the references of applied credits are remembered.
// A wallet load marks the credits MySQL already had within this window.
const CreditedTTL = 24 * time.Hour

// IdemTTL is how long an Idempotency-Key's answer is kept (docs/openapi.yaml,
// parameter IdempotencyKey: 24 hours).
const IdemTTL = 24 * time.Hour

// NewGiftTicket returns a fresh ticket for a gift from the sender:
// "g<sender id>-<16 hex digits>".
func NewGiftTicket(senderID int64) string { return newTicket('g', senderID) }

// ParseTicket returns a ticket's kind ("order" or "gift") and the id it is
// keyed by: the event id of an order, the sender id of a gift.
func ParseTicket(t string) (kind string, id int64, ok bool) {
	if len(t) < 4 || len(t) > 64 {
		return "", 0, false
	}
	switch t[0] {
	case 'o':
		kind = "order"
	case 'g':
		kind = "gift"
	default:
		return "", 0, false
	}
	dash := strings.IndexByte(t, '-')
	if dash < 2 || len(t)-dash-1 != 16 {
		return "", 0, false
	}
	id, err := strconv.ParseInt(t[1:dash], 10, 64)
	if err != nil || id <= 0 || t[1] == '0' {
		return "", 0, false
	}
	for _, c := range t[dash+1:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", 0, false
		}
	}
	return kind, id, true
}

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

// Limit is a per-user rate limit a script applies (GCRA): requests per
// second and the burst allowed at once. The zero Limit is no limit.
type Limit struct {
	PerSecond float64
	Burst     int
}

// interval is the GCRA emission interval in microseconds, "0" for none.
func (l Limit) interval() string {
	if l.PerSecond <= 0 || l.Burst <= 0 {
		return "0"
	}
	return strconv.FormatInt(int64(1e6/l.PerSecond), 10)
}

// RateLimitKey is the key of a user's GCRA state for a class of requests.
func RateLimitKey(id int64, class string) string { return userKey(id, "rl:"+class) }

// HoldGift takes coins from the sender's hot balance and holds them for the
// ticket, within the sender's rate limit. idemKey may be "".
func (s *Redis) HoldGift(ctx context.Context, senderID int64, ticket string, coins int64, idemKey string, limit Limit) (HoldResult, error) {
	idem := "0"
	if idemKey != "" {
		idem = "1"
	}
	vals, err := lua.GiftHold.Exec(ctx, s.C,
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

var idemTTL = strconv.Itoa(int(IdemTTL / time.Second))

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
		cmds = append(cmds, s.C.B().Set().Key(IdemKey(senderID, k.Key)).
			Value(k.Ticket+":"+strconv.FormatInt(k.Balance, 10)).Nx().Ex(ttl).Build())
	}
	for _, r := range s.C.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
			return fmt.Errorf("cannot restore idempotency keys of user %d: %w", senderID, err)
		}
	}
	return nil
}

// UndoGift gives back a hold whose produce failed. It reports false when the
// worker already claimed the gift, i.e. it is in Kafka after all.
func (s *Redis) UndoGift(ctx context.Context, senderID int64, ticket, idemKey string) (bool, error) {
	n, err := lua.GiftUndo.Exec(ctx, s.C,
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
	for i, r := range lua.GiftClaim.ExecMulti(ctx, s.C, execs...) {
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
	for _, r := range lua.GiftSettle.ExecMulti(ctx, s.C, execs...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("cannot settle gifts: %w", err)
		}
	}
	return nil
}

// HotBalance returns the user's hot balance; ok is false when not loaded.
func (s *Redis) HotBalance(ctx context.Context, userID int64) (bal int64, ok bool, err error) {
	n, err := s.C.Do(ctx, s.C.B().Get().Key(BalanceKey(userID)).Build()).AsInt64()
	if rueidis.IsRedisNil(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return n, true, nil
}

// LoadMark is how long a wallet load may hold its mark (BeginWalletLoad,
// and gift_hold.lua's for a cold wallet) before it counts as abandoned.
const LoadMark = 5 * time.Second

var loadMarkMs = strconv.Itoa(int(LoadMark / time.Millisecond))

// BeginWalletLoad marks a load in progress, so credits wait for it (see
// wallet_credit.lua). It reports false when another load is in progress.
func (s *Redis) BeginWalletLoad(ctx context.Context, userID int64, ttl time.Duration) (bool, error) {
	err := s.C.Do(ctx, s.C.B().Set().Key(LoadingKey(userID)).Value("1").Nx().Px(ttl).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return false, nil
	}
	return err == nil, err
}

// AbandonWalletLoad clears the mark of a load that failed, so the next
// request loads the wallet at once instead of waiting for the mark to
// expire.
func (s *Redis) AbandonWalletLoad(ctx context.Context, userID int64) {
	s.C.Do(ctx, s.C.B().Del().Key(LoadingKey(userID)).Build())
}

// FinishWalletLoad installs a balance read from MySQL (unless one is there)
// and marks the credit references that read included. It returns the hot balance.
func (s *Redis) FinishWalletLoad(ctx context.Context, userID, balance int64, credited []string) (int64, error) {
	args := append([]string{strconv.FormatInt(userID, 10), strconv.FormatInt(balance, 10), strconv.Itoa(int(CreditedTTL / time.Second))}, credited...)
	n, err := lua.WalletLoad.Exec(ctx, s.C, []string{BalanceKey(userID), LoadingKey(userID), CreditedKey(userID),
		LoadedKey(WalletBucket(userID))}, args).AsInt64()
	if err != nil {
		return 0, fmt.Errorf("cannot load wallet %d: %w", userID, err)
	}
	return n, nil
}

// CreditStatus is the outcome of CreditWallet.
type CreditStatus int

// CreditWallet outcomes.
const (
	Credited CreditStatus = iota
	CreditedBefore
	CreditLoading // a load is reading MySQL: call again shortly
)

// CreditWallet adds committed coins to the hot balance once per reference.
func (s *Redis) CreditWallet(ctx context.Context, userID, coins int64, ref string) (CreditStatus, error) {
	n, err := lua.WalletCredit.Exec(ctx, s.C, []string{BalanceKey(userID), LoadingKey(userID), CreditedKey(userID)},
		[]string{strconv.FormatInt(coins, 10), ref, strconv.Itoa(int(CreditedTTL / time.Second))}).AsInt64()
	if err != nil {
		return 0, fmt.Errorf("cannot credit wallet %d: %w", userID, err)
	}
	switch n {
	case 1:
		return Credited, nil
	case 0:
		return CreditedBefore, nil
	}
	return CreditLoading, nil
}

// ResyncWallet replaces the hot balance by balance (read from MySQL after
// BeginWalletLoad) minus the coins still held, and marks the credit
// references that read included. It returns the new hot balance.
func (s *Redis) ResyncWallet(ctx context.Context, userID, balance int64, credited []string) (int64, error) {
	args := append([]string{strconv.FormatInt(userID, 10), strconv.FormatInt(balance, 10), strconv.Itoa(int(CreditedTTL / time.Second))}, credited...)
	n, err := lua.WalletResync.Exec(ctx, s.C, []string{BalanceKey(userID), HoldsKey(userID), LoadingKey(userID), CreditedKey(userID),
		LoadedKey(WalletBucket(userID))}, args).AsInt64()
	if err != nil {
		return 0, fmt.Errorf("cannot resync wallet %d: %w", userID, err)
	}
	return n, nil
}
