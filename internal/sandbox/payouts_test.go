package sandbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/testenv"
)

func newPayouts(t *testing.T) *Payouts {
	t.Helper()
	d, err := db.Open(context.Background(), testenv.MySQL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return &Payouts{DB: d}
}

// TestPayoutsVoidAndStatus: the provider contract the worker relies on. A
// key pays once; a paid key stays paid through a void; a voided key never
// pays; a key nobody has used is unknown, not "not paid".
func TestPayoutsVoidAndStatus(t *testing.T) {
	p := newPayouts(t)
	ctx := context.Background()
	status := func(key string) PayoutStatus {
		t.Helper()
		st, err := p.PayoutStatus(ctx, key)
		if err != nil {
			t.Fatalf("PayoutStatus(%s): %v", key, err)
		}
		return st
	}

	if st := status("never-used"); st.State != PayoutUnknown {
		t.Errorf("unused key: %+v, want unknown", st)
	}

	txn, err := p.Payout(ctx, "k-paid", 7, 100)
	if err != nil || txn == "" {
		t.Fatalf("Payout: %q, %v", txn, err)
	}
	if again, err := p.Payout(ctx, "k-paid", 7, 100); err != nil || again != txn {
		t.Errorf("repeated Payout: %q, %v; want the first transaction %q", again, err, txn)
	}
	if _, err := p.Payout(ctx, "k-paid", 8, 100); !errors.Is(err, ErrKeyReused) {
		t.Errorf("Payout of the key for another user: %v, want ErrKeyReused", err)
	}
	if _, err := p.Payout(ctx, "k-paid", 7, 101); !errors.Is(err, ErrKeyReused) {
		t.Errorf("Payout of the key for another amount: %v, want ErrKeyReused", err)
	}
	if err := p.VoidPayout(ctx, "k-paid"); err != nil {
		t.Errorf("VoidPayout of a paid key: %v, want nil (nothing left to void)", err)
	}
	if st := status("k-paid"); st != (PayoutStatus{State: PayoutPaid, Txn: txn, UserID: 7, Amount: 100}) {
		t.Errorf("paid key after a void: %+v", st)
	}
	if again, err := p.Payout(ctx, "k-paid", 7, 100); err != nil || again != txn {
		t.Errorf("Payout after a void of a paid key: %q, %v; want %q", again, err, txn)
	}

	for i := 0; i < 2; i++ {
		if err := p.VoidPayout(ctx, "k-void"); err != nil {
			t.Fatalf("VoidPayout #%d: %v", i+1, err)
		}
	}
	if st := status("k-void"); st != (PayoutStatus{State: PayoutVoided}) {
		t.Errorf("voided key: %+v, want voided", st)
	}
	if txn, err := p.Payout(ctx, "k-void", 7, 100); !errors.Is(err, ErrVoided) || txn != "" {
		t.Errorf("Payout of a voided key: %q, %v; want ErrVoided", txn, err)
	}
	if st := status("k-void"); st.State != PayoutVoided {
		t.Errorf("voided key after a late Payout: %+v", st)
	}
	var paid int
	if err := p.DB.Get(&paid, "SELECT COUNT(*) FROM sandbox_payouts WHERE txn IS NOT NULL"); err != nil || paid != 1 {
		t.Errorf("%d payouts recorded (%v), want 1", paid, err)
	}
	if err := p.VoidPayout(ctx, ""); err == nil {
		t.Error("VoidPayout of an empty key succeeded")
	}
}

// TestPayoutsVoidRacesPayout: a void and a payout of one key at once end
// one way or the other, never "paid" and "voided" both: either the payout
// returned its transaction and the status says paid with it, or the
// payout failed with ErrVoided and the status says voided.
func TestPayoutsVoidRacesPayout(t *testing.T) {
	p := newPayouts(t)
	ctx := context.Background()
	counts := map[PayoutState]int{}
	for i := 0; i < 30; i++ {
		key := fmt.Sprintf("race-%d", i)
		var wg sync.WaitGroup
		var txn string
		var payErr, voidErr error
		wg.Add(2)
		go func() { defer wg.Done(); txn, payErr = p.Payout(ctx, key, 5, 50) }()
		go func() { defer wg.Done(); voidErr = p.VoidPayout(ctx, key) }()
		wg.Wait()
		if voidErr != nil {
			t.Fatalf("%s: VoidPayout: %v", key, voidErr)
		}
		st, err := p.PayoutStatus(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		counts[st.State]++
		switch {
		case payErr == nil && st == PayoutStatus{State: PayoutPaid, Txn: txn, UserID: 5, Amount: 50}:
		case errors.Is(payErr, ErrVoided) && txn == "" && st.State == PayoutVoided:
		default:
			t.Errorf("%s: Payout %q, %v; status %+v", key, txn, payErr, st)
		}
	}
	t.Logf("30 races: %d paid, %d voided", counts[PayoutPaid], counts[PayoutVoided])
}
