package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/flashgate/flashgate/internal/store"
	"github.com/flashgate/flashgate/worker"
)

// commandCalls reads Redis's call counts by command (INFO commandstats).
func (s *system) commandCalls() map[string]int64 {
	s.t.Helper()
	info, err := s.raw.Do(context.Background(), s.raw.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		s.t.Fatal(err)
	}
	calls := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		// cmdstat_scan:calls=3,usec=...
		name, rest, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		calls[name], _ = strconv.ParseInt(n, 10, 64)
	}
	return calls
}

// holderScore returns the user's score in the holders index; ok is false
// when the user is not in it.
func (s *system) holderScore(uid int64) (ms int64, ok bool) {
	s.t.Helper()
	f, err := s.raw.Do(context.Background(), s.raw.B().Zscore().Key(store.HoldersKey(store.WalletBucket(uid))).
		Member(strconv.FormatInt(uid, 10)).Build()).AsFloat64()
	if rueidis.IsRedisNil(err) {
		return 0, false
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return int64(f), true
}

// timers returns a worker whose timers the test runs by hand; its
// consumers do not run.
func (s *system) timers() *worker.Worker {
	s.t.Helper()
	w, err := worker.New(context.Background(), worker.Config{Config: s.cfg}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(w.Close)
	return w
}

// hold holds coins for a new gift of the user, straight in Redis, as a
// gateway that dies before its produce leaves it.
func (s *system) hold(uid, coins int64) (string, store.HoldResult) {
	s.t.Helper()
	tk := store.NewGiftTicket(uid)
	r, err := s.redis.HoldGift(context.Background(), uid, tk, coins, "", store.Limit{})
	if err != nil || r.Status != store.Held {
		s.t.Fatalf("hold for user %d: %+v %v", uid, r, err)
	}
	return tk, r
}

// TestGiftReconcilersWalkNoKeyspace: the hold and wallet reconcilers find
// their work through the per-bucket indexes, among 10,000 keys that are
// not theirs, without a single SCAN or KEYS. A hold older than the pending
// timeout gets its abort marker (and fails as timeout once a worker reads
// it); a fresh hold of a user in the same bucket is left alone and its user
// stays indexed at the hold's time; a user whose holds are all decided
// leaves the index; an undone hold keeps its user indexed for a day; a
// drifted hot balance is resynced; a loaded wallet whose balance vanished
// leaves the loaded index.
func TestGiftReconcilersWalkNoKeyspace(t *testing.T) {
	const pending = 2 * time.Second
	s := start(t, options{noWorker: true, noWS: true, mutate: fastReconcile(pending, 200*time.Millisecond)})
	ctx := context.Background()
	const (
		stale   = 201
		fresh   = stale + store.WalletBuckets // same bucket as stale
		decided = 203
		undone  = 204
		drifted = 205
		gone    = 206
	)
	users := []int64{stale, fresh, decided, undone, drifted, gone}
	for _, u := range users {
		s.seedWallet(u, 100)
		if bal, err := s.wallets().HotBalance(ctx, u); err != nil || bal != 100 {
			t.Fatalf("load wallet %d: %d %v", u, bal, err)
		}
	}

	// 10,000 keys that are none of the reconcilers' business, some in the
	// old wallet layout.
	var junk rueidis.Commands
	for i := range 10_000 {
		if i%2 == 0 {
			junk = append(junk, s.raw.B().Set().Key(fmt.Sprintf("{u:%d}:bal", i)).Value("5").Build())
		} else {
			junk = append(junk, s.raw.B().Hset().Key(fmt.Sprintf("{ev:9}:t:o9-%d", i)).FieldValue().FieldValue("s", "pending").Build())
		}
	}
	for _, r := range s.raw.DoMulti(ctx, junk...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}

	staleTicket, _ := s.hold(stale, 30)
	decTicket, _ := s.hold(decided, 10)
	if err := s.redis.SettleGifts(ctx, []store.GiftSettlement{{GiftRef: store.GiftRef{SenderID: decided, Ticket: decTicket}, Committed: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec("UPDATE wallets SET balance = 90 WHERE user_id = ?", decided); err != nil {
		t.Fatal(err)
	}
	undoneTicket, _ := s.hold(undone, 10)
	if ok, err := s.redis.UndoGift(ctx, undone, undoneTicket, ""); err != nil || !ok {
		t.Fatalf("undo: %v %v", ok, err)
	}
	time.Sleep(pending + 200*time.Millisecond)
	freshTicket, freshHold := s.hold(fresh, 20)

	// A credit whose Redis step was lost, and a hot balance that vanished.
	if _, err := s.db.Exec("UPDATE wallets SET balance = 177 WHERE user_id = ?", drifted); err != nil {
		t.Fatal(err)
	}
	if err := s.raw.Do(ctx, s.raw.B().Del().Key(store.BalanceKey(gone)).Build()).Error(); err != nil {
		t.Fatal(err)
	}

	before := s.commandCalls()
	timers := s.timers()
	if err := timers.ReconcileGiftHolds(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a gap is resynced when two passes in a row see it
		if err := timers.ReconcileWallets(ctx); err != nil {
			t.Fatal(err)
		}
	}
	after := s.commandCalls()
	for _, cmd := range []string{"scan", "keys"} {
		if after[cmd] != before[cmd] {
			t.Errorf("the reconcilers ran %s %d times", strings.ToUpper(cmd), after[cmd]-before[cmd])
		}
	}
	if after["evalsha"]+after["eval"] == before["evalsha"]+before["eval"] {
		t.Fatal("the reconcilers ran no script: the test proves nothing")
	}

	now := time.Now().UnixMilli()
	if n := s.topicEnd(s.cfg.GiftsTopic()); n != 1 {
		t.Errorf("%d records in the gifts topic, want 1 abort marker (for the stale hold)", n)
	}
	holds := func(uid int64) map[string]string {
		m, err := s.raw.Do(ctx, s.raw.B().Hgetall().Key(store.HoldsKey(uid)).Build()).AsStrMap()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if h := holds(stale); h[store.HoldMarkField(staleTicket)] == "" {
		t.Errorf("stale hold not marked: %v", h)
	}
	if at, ok := s.holderScore(stale); !ok || at < now-10_000 {
		t.Errorf("stale sender indexed=%v at %d, want indexed for another look (now %d)", ok, at, now)
	}
	if h := holds(fresh); len(h) != 1 || !strings.HasPrefix(h[freshTicket], "p:") {
		t.Errorf("fresh hold touched: %v", h)
	}
	if at, ok := s.holderScore(fresh); !ok || at != freshHold.HeldAt.UnixMilli() {
		t.Errorf("fresh sender indexed=%v at %d, want at the hold's time %d", ok, at, freshHold.HeldAt.UnixMilli())
	}
	if _, ok := s.holderScore(decided); ok {
		t.Error("a sender whose holds are all decided is still indexed")
	}
	if h := holds(decided); len(h) != 0 {
		t.Errorf("decided holds kept past the pending timeout: %v", h)
	}
	if at, ok := s.holderScore(undone); !ok || at < now+20*3600_000 {
		t.Errorf("undone hold's sender indexed=%v at %d, want indexed about a day ahead (now %d)", ok, at, now)
	}
	if h := holds(undone); !strings.HasPrefix(h[undoneTicket], "a:") {
		t.Errorf("undone hold dropped before its day: %v", h)
	}
	// A new hold of that sender is due a pending timeout after it, not a
	// day later.
	_, r := s.hold(undone, 5)
	if at, ok := s.holderScore(undone); !ok || at != r.HeldAt.UnixMilli() {
		t.Errorf("new hold after an undone one: indexed=%v at %d, want at the hold's time %d", ok, at, r.HeldAt.UnixMilli())
	}
	if got := s.hotBalance(drifted); got != 177 {
		t.Errorf("drifted hot balance %d, want 177 from MySQL", got)
	}
	inLoaded := func(uid int64) bool {
		ok, err := s.raw.Do(ctx, s.raw.B().Sismember().Key(store.LoadedKey(store.WalletBucket(uid))).
			Member(strconv.FormatInt(uid, 10)).Build()).AsBool()
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if inLoaded(gone) {
		t.Error("a wallet whose hot balance is gone is still in the loaded index")
	}
	if !inLoaded(stale) || !inLoaded(drifted) {
		t.Error("loaded wallets missing from the loaded index")
	}

	// A worker reads the marker: the stale hold fails as it always did,
	// and its sender leaves the index once the decision is old.
	s.startWorker()
	if tk := s.waitTicket(stale, staleTicket); tk.str("status") != "failed" || tk.str("reason") != "timeout" {
		t.Errorf("stale hold's ticket: %s", tk.Raw)
	}
	s.waitFor("the stale sender's coins back", func() bool { return s.hotBalance(stale) == 100 })
	s.waitFor("the stale sender out of the index", func() bool { _, ok := s.holderScore(stale); return !ok })
}

// TestGiftHoldersIndexRace: a hold that arrives while the reconciler is
// taking its sender out of the holders index leaves the sender indexed.
// The reconciler reads a user's holds and drops or reschedules the user in
// one script, so a new hold lands either before it (and keeps the user in)
// or after it (and puts the user back in); first each order on its own,
// then 200 senders whose holds race a reconciler pass for real.
func TestGiftHoldersIndexRace(t *testing.T) {
	const pending = 2 * time.Second
	s := start(t, options{noWorker: true, noWS: true, mutate: fastReconcile(pending, time.Hour)})
	ctx := context.Background()
	const from, n = 3000, 200
	s.seedWallets(from, n, 100)
	// Every sender has one decided hold, old enough that the next look
	// drops it and, with nothing else held, the sender.
	for u := int64(from); u < from+n; u++ {
		if _, err := s.wallets().HotBalance(ctx, u); err != nil {
			t.Fatal(err)
		}
		tk, _ := s.hold(u, 1)
		if err := s.redis.SettleGifts(ctx, []store.GiftSettlement{{GiftRef: store.GiftRef{SenderID: u, Ticket: tk}, Committed: true}}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(pending + 200*time.Millisecond)
	timers := s.timers()

	// The hold lands before the look: the look keeps the sender, at the
	// new hold's time.
	const early, late = from, from + 1
	_, r := s.hold(early, 1)
	if err := timers.ReconcileGiftHolds(ctx); err != nil {
		t.Fatal(err)
	}
	if at, ok := s.holderScore(early); !ok || at != r.HeldAt.UnixMilli() {
		t.Errorf("hold before the look: indexed=%v at %d, want at %d", ok, at, r.HeldAt.UnixMilli())
	}
	// The hold lands after the look took the sender out: it puts them back.
	if _, ok := s.holderScore(late); ok {
		t.Fatal("the look kept a sender with nothing held")
	}
	_, r = s.hold(late, 1)
	if at, ok := s.holderScore(late); !ok || at != r.HeldAt.UnixMilli() {
		t.Errorf("hold after the look: indexed=%v at %d, want at %d", ok, at, r.HeldAt.UnixMilli())
	}

	// Now for real: put the others back as due (their decided holds are
	// gone, so give each another old decided one) and race a pass.
	for u := int64(from + 2); u < from+n; u++ {
		tk, _ := s.hold(u, 1)
		if err := s.redis.SettleGifts(ctx, []store.GiftSettlement{{GiftRef: store.GiftRef{SenderID: u, Ticket: tk}, Committed: true}}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(pending + 200*time.Millisecond)
	held := make([]int64, n) // ms, by sender
	var wg sync.WaitGroup
	gate := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-gate
		if err := timers.ReconcileGiftHolds(ctx); err != nil {
			t.Error(err)
		}
	}()
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			for u := int64(from + 2 + g); u < from+n; u += 8 {
				tk := store.NewGiftTicket(u)
				r, err := s.redis.HoldGift(ctx, u, tk, 1, "", store.Limit{})
				if err != nil || r.Status != store.Held {
					t.Errorf("hold for %d: %+v %v", u, r, err)
					return
				}
				held[u-from] = r.HeldAt.UnixMilli()
			}
		}()
	}
	close(gate)
	wg.Wait()
	for u := int64(from + 2); u < from+n; u++ {
		if s.openHolds(u) != 1 {
			t.Fatalf("sender %d holds %d, want 1", u, s.openHolds(u))
		}
		if at, ok := s.holderScore(u); !ok || at > held[u-from] {
			t.Errorf("sender %d with a live hold (held at %d): indexed=%v at %d", u, held[u-from], ok, at)
		}
	}
}
