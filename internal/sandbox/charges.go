package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Charges is the sandbox provider of flash-sale order payments: every charge
// "succeeds" and collects nothing. It is for dev mode and for systems that
// sell nothing real; outside dev mode the gateway runs with it only when
// FLASHGATE_SANDBOX_PAYMENTS=1 says so. The zero value is ready to use.
type Charges struct{}

// Charge returns the transaction of the order's charge. Like a real
// provider it charges an order once: every call for one order number gives
// the same transaction.
func (Charges) Charge(ctx context.Context, orderNo string, userID, amount int64) (string, error) {
	if orderNo == "" || userID <= 0 || amount < 0 {
		return "", fmt.Errorf("sandbox charge: bad request (order %q, user %d, amount %d)", orderNo, userID, amount)
	}
	h := sha256.Sum256([]byte("sandbox-charge:" + orderNo))
	return "sbx_" + hex.EncodeToString(h[:8]), nil
}

// Refund gives back the charge of an order that could not be paid; the
// sandbox collected nothing, so there is nothing to give back.
func (Charges) Refund(ctx context.Context, orderNo, txn string, amount int64) error { return nil }
