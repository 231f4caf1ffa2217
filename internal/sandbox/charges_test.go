package sandbox

import (
	"context"
	"testing"
)

// TestChargesOncePerOrder: like a real provider, the sandbox has one charge
// per order, so a retried pay request gets the same transaction.
func TestChargesOncePerOrder(t *testing.T) {
	var c Charges
	ctx := context.Background()
	a, err1 := c.Charge(ctx, "FG1", 7, 1999)
	b, err2 := c.Charge(ctx, "FG1", 7, 1999)
	other, err3 := c.Charge(ctx, "FG2", 7, 1999)
	if err1 != nil || err2 != nil || err3 != nil || a != b || a == other || a == "" {
		t.Fatalf("charges %q %q %q, errors %v %v %v", a, b, other, err1, err2, err3)
	}
	for _, bad := range []struct {
		no        string
		uid, cost int64
	}{{"", 7, 1}, {"FG1", 0, 1}, {"FG1", 7, -1}} {
		if _, err := c.Charge(ctx, bad.no, bad.uid, bad.cost); err == nil {
			t.Errorf("Charge(%q, %d, %d) accepted", bad.no, bad.uid, bad.cost)
		}
	}
	if err := c.Refund(ctx, "FG1", a, 1999); err != nil {
		t.Errorf("Refund: %v", err)
	}
}
