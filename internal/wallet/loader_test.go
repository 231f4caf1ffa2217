package wallet

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/store"
	"github.com/flashgate/flashgate/internal/testenv"
)

// A crowd's cold wallets are read from MySQL in a few statements, and each
// load gets exactly the snapshot a read of its own would give.
func TestLoaderBatchesACrowd(t *testing.T) {
	ctx := context.Background()
	d, err := db.Open(ctx, testenv.MySQL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const users = 100
	// Users 1..users-10 have wallets; some have a recent credit and a gift
	// Idempotency-Key; the last ten have no wallet row at all.
	for u := int64(1); u <= users-10; u++ {
		if _, err := d.Exec("INSERT INTO wallets (user_id, balance) VALUES (?, ?)", u, 1000+u); err != nil {
			t.Fatal(err)
		}
		if u%3 == 0 {
			if _, err := d.Exec(`INSERT INTO ledger (user_id, account, kind, ref, amount, balance_after)
				VALUES (?, 'balance', 'recharge', ?, 500, ?)`, u, fmt.Sprint("pay-", u), 1000+u); err != nil {
				t.Fatal(err)
			}
		}
		if u%5 == 0 {
			if _, err := d.Exec(`INSERT INTO tickets (ticket, kind, user_id, ref_id, status, created_at, idem_key, balance_after)
				VALUES (?, 'gift', ?, 1, 'succeeded', NOW(3), ?, 900)`, store.NewGiftTicket(u), u, fmt.Sprint("key-", u)); err != nil {
				t.Fatal(err)
			}
		}
	}
	since := time.Now().Add(-store.IdemTTL)

	// The first reads wait until the whole crowd has queued behind them.
	l := &Loader{DB: d}
	release := make(chan struct{})
	var held atomic.Int64 // loads taken by reads waiting for release
	l.beforeRead = func(n int) {
		held.Add(int64(n))
		<-release
	}
	got := make([]db.WalletSnapshot, users+1)
	errs := make([]error, users+1)
	var wg sync.WaitGroup
	for u := 1; u <= users; u++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[u], errs[u] = l.Snapshot(ctx, int64(u), since)
		}()
	}
	for queued := 0; queued+int(held.Load()) < users; {
		time.Sleep(time.Millisecond) // a condition, not a timing: waits for every load to queue
		l.mu.Lock()
		queued = len(l.queue)
		l.mu.Unlock()
	}
	close(release)
	wg.Wait()

	if l.reads > loaderReads+1 {
		t.Errorf("%d statements for %d loads, want at most %d", l.reads, users, loaderReads+1)
	}
	for u := int64(1); u <= users; u++ {
		if errs[u] != nil {
			t.Fatalf("user %d: %v", u, errs[u])
		}
		want, err := db.ReadWalletSnapshot(ctx, d, u, creditWindow, since)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got[u], want) {
			t.Errorf("user %d: batched %+v, alone %+v", u, got[u], want)
		}
	}
	if g := got[30]; g.Balance != 1030 || len(g.Credits) != 1 || len(g.Idem) != 1 {
		t.Errorf("user 30: %+v, want balance 1030, one credit, one key", g)
	}
	if g := got[users]; g.Balance != 0 || g.Credits != nil || g.Idem != nil {
		t.Errorf("user without a wallet: %+v", g)
	}
}
