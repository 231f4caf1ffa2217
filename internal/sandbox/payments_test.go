package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestSign(t *testing.T) {
	// The README's openssl line computes the same value:
	// printf '%s' "$BODY" | openssl dgst -sha256 -hmac flashgate-dev-pay-secret -r
	body := `{"order_id":"PABCDEF0123456789","status":"success","amount":600,"provider_txn":"manual-1"}`
	const want = "081482a1faff159dc01af6594dcbfffb0964137841c38d4623289c248820557e"
	if got := Sign("flashgate-dev-pay-secret", []byte(body)); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

// TestNotify: the notify is signed over the exact bytes sent, retried on
// 5xx and 429 until a 2xx, and not retried on other 4xx.
func TestNotify(t *testing.T) {
	tests := []struct {
		name    string
		answers []int
		calls   int
		wantErr error
		anyErr  bool
	}{
		{"ok at once", []int{200}, 1, nil, false},
		{"retried through 503 and 429", []int{503, 429, 200}, 3, nil, false},
		{"400 is final", []int{400, 200}, 1, ErrRejected, true},
		{"401 is final", []int{401}, 1, ErrRejected, true},
		{"gives up after the attempts", []int{500, 500, 500, 500, 200}, 3, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(n.Add(1)) - 1
				body, _ := io.ReadAll(r.Body)
				if r.Header.Get("X-Signature") != Sign("s3cret", body) {
					t.Errorf("signature does not match the body sent")
				}
				var got Notification
				if err := json.Unmarshal(body, &got); err != nil || got.OrderID != "P1" || got.Amount != 600 ||
					got.Status != "success" || got.ProviderTxn != TxnFor("P1") {
					t.Errorf("body %s", body)
				}
				w.WriteHeader(tt.answers[min(i, len(tt.answers)-1)])
			}))
			defer srv.Close()
			p := &Payments{Attempts: 3, Backoff: time.Millisecond}
			err := p.Notify(context.Background(), srv.URL, "s3cret", "P1", 600)
			if (err != nil) != tt.anyErr || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("Notify = %v", err)
			}
			if int(n.Load()) != tt.calls {
				t.Errorf("%d calls, want %d", n.Load(), tt.calls)
			}
		})
	}
}

func TestTxnForIsStablePerOrder(t *testing.T) {
	first, again, other := TxnFor("P1"), TxnFor("P1"), TxnFor("P2")
	if first != again || first == other || len(first) > 64 {
		t.Fatal("TxnFor must be one short id per order")
	}
}
