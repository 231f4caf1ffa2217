// Package sandbox holds flashgate's built-in stand-ins for external
// providers: a payment provider that confirms recharges by calling the
// gateway's signed notify endpoint over HTTP, as a real provider would, and a
// payout provider that records each payout once per idempotency key. They
// let the whole money path run, and be tested, without a real provider.
package sandbox

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Notification is the body of a payment notify (docs/openapi.yaml,
// POST /api/v1/pay/notify; README, "Recharge: buying coins").
type Notification struct {
	OrderID     string `json:"order_id"`
	Status      string `json:"status"` // "success"
	Amount      int64  `json:"amount"` // cents
	ProviderTxn string `json:"provider_txn"`
}

// Sign returns the X-Signature of a notify body: hex HMAC-SHA256 of the raw
// bytes with the shared secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// TxnFor is the sandbox's transaction id for a pay order. A real provider
// has one transaction per paid order, so it is derived from the order id:
// every notify the sandbox sends for an order carries the same one.
func TxnFor(orderID string) string {
	h := sha256.Sum256([]byte("sandbox-pay:" + orderID))
	return "sbx_" + hex.EncodeToString(h[:8])
}

// Payments is the sandbox payment provider. The zero value is ready to use.
type Payments struct {
	// Client sends the notifies; nil means a client with a 5 s timeout.
	Client *http.Client
	// Attempts is how often a notify is sent before giving up; 0 means 4.
	Attempts int
	// Backoff is the wait before the second attempt, doubling after; 0 means 100ms.
	Backoff time.Duration
}

var defaultClient = &http.Client{Timeout: 5 * time.Second}

// Notify tells the merchant at notifyURL that the order was paid: it signs
// the JSON body with secret and POSTs it, retrying on transport errors, 5xx
// and 429 as providers do until the merchant acknowledges with a 2xx. Other
// 4xx answers are final and returned as ErrRejected.
func (p *Payments) Notify(ctx context.Context, notifyURL, secret, orderID string, amount int64) error {
	body, err := json.Marshal(Notification{OrderID: orderID, Status: "success", Amount: amount, ProviderTxn: TxnFor(orderID)})
	if err != nil {
		return err
	}
	sig := Sign(secret, body)
	cl := p.Client
	if cl == nil {
		cl = defaultClient
	}
	attempts := p.Attempts
	if attempts <= 0 {
		attempts = 4
	}
	backoff := p.Backoff
	if backoff <= 0 {
		backoff = 100 * time.Millisecond
	}
	var last error
	for n := 1; ; n++ {
		retry, err := send(ctx, cl, notifyURL, sig, body)
		if err == nil {
			return nil
		}
		last = err
		if !retry || n >= attempts {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("notify for %s: %w (last error: %v)", orderID, ctx.Err(), last)
		case <-time.After(backoff):
		}
		backoff *= 2
	}
	return fmt.Errorf("notify for %s: %w", orderID, last)
}

// send makes one notify call and says whether a failure is worth retrying.
func send(ctx context.Context, cl *http.Client, url, sig string, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Signature", sig)
	resp, err := cl.Do(req)
	if err != nil {
		return ctx.Err() == nil, err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	switch {
	case resp.StatusCode/100 == 2:
		return false, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return true, fmt.Errorf("merchant answered %d: %s", resp.StatusCode, answer)
	}
	return false, fmt.Errorf("%w: merchant answered %d: %s", ErrRejected, resp.StatusCode, answer)
}
