package store

import (
	"context"
	"fmt"
	"strconv"
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

// HotBalance returns the user's hot balance; ok is false when not loaded.
func (s *Redis) HotBalance(ctx context.Context, userID int64) (bal int64, ok bool, err error) {
	n, err := s.c.Do(ctx, s.c.B().Get().Key(BalanceKey(userID)).Build()).AsInt64()
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
	err := s.c.Do(ctx, s.c.B().Set().Key(LoadingKey(userID)).Value("1").Nx().Px(ttl).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return false, nil
	}
	return err == nil, err
}

// AbandonWalletLoad clears the mark of a load that failed, so the next
// request loads the wallet at once instead of waiting for the mark to
// expire.
func (s *Redis) AbandonWalletLoad(ctx context.Context, userID int64) {
	s.c.Do(ctx, s.c.B().Del().Key(LoadingKey(userID)).Build())
}

// FinishWalletLoad installs a balance read from MySQL (unless one is there)
// and marks the credit references that read included. It returns the hot balance.
func (s *Redis) FinishWalletLoad(ctx context.Context, userID, balance int64, credited []string) (int64, error) {
	args := append([]string{strconv.FormatInt(userID, 10), strconv.FormatInt(balance, 10), strconv.Itoa(int(CreditedTTL / time.Second))}, credited...)
	n, err := lua.WalletLoad.Exec(ctx, s.c, []string{BalanceKey(userID), LoadingKey(userID), CreditedKey(userID),
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
	n, err := lua.WalletCredit.Exec(ctx, s.c, []string{BalanceKey(userID), LoadingKey(userID), CreditedKey(userID)},
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
	n, err := lua.WalletResync.Exec(ctx, s.c, []string{BalanceKey(userID), HoldsKey(userID), LoadingKey(userID), CreditedKey(userID),
		LoadedKey(WalletBucket(userID))}, args).AsInt64()
	if err != nil {
		return 0, fmt.Errorf("cannot resync wallet %d: %w", userID, err)
	}
	return n, nil
}

// HotWallet is a user's wallet as Redis has it.
type HotWallet struct {
	Balance int64
	Held    map[string]int64 // the coins of each live (pending or claimed) hold, by ticket
}

// HotWallets reads the hot balance and the live holds of each user, in one
// round trip. Users whose balance is not in Redis (deleted or evicted: not
// loaded any more) are in gone instead.
func (s *Redis) HotWallets(ctx context.Context, users []int64) (wallets map[int64]HotWallet, gone []int64, err error) {
	cmds := make(rueidis.Commands, 0, 2*len(users))
	for _, u := range users {
		cmds = append(cmds, s.c.B().Get().Key(BalanceKey(u)).Build(), s.c.B().Hgetall().Key(HoldsKey(u)).Build())
	}
	res := s.c.DoMulti(ctx, cmds...)
	wallets = map[int64]HotWallet{}
	for i, u := range users {
		b, err := res[2*i].AsInt64()
		if rueidis.IsRedisNil(err) {
			gone = append(gone, u)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		holds, err := res[2*i+1].AsStrMap()
		if err != nil {
			return nil, nil, err
		}
		w := HotWallet{Balance: b, Held: map[string]int64{}}
		for t, v := range holds {
			if h, ok := ParseHold(v); ok && h.Live() {
				w.Held[t] = h.Coins
			}
		}
		wallets[u] = w
	}
	return wallets, gone, nil
}
