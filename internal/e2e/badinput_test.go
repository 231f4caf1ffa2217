package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/flashgate/flashgate/internal/store"
)

// TestOrderBadInput: malformed or hostile requests to the order endpoint get
// the API's 4xx with the JSON error body, never a 5xx, and reserve nothing.
func TestOrderBadInput(t *testing.T) {
	s := start(t, options{noWS: true})
	ev := s.liveEvent(5)
	path := fmt.Sprintf("/api/v1/events/%d/orders", ev)
	good := s.token(9)
	expired := s.signer.Sign(9, "user", -1)
	flipped := []byte(good)
	flipped[len(flipped)-3] ^= 1

	cases := []errorCase{
		{"malformed JSON", "POST", path, good, `{"x":`, nil, 400, "invalid_request"},
		{"not an object", "POST", path, good, `[1,2]`, nil, 400, "invalid_request"},
		{"string body", "POST", path, good, `"hi"`, nil, 400, "invalid_request"},
		{"trailing garbage", "POST", path, good, `{} {}`, nil, 400, "invalid_request"},
		{"100 KiB body", "POST", path, good, `{"pad":"` + strings.Repeat("a", 100<<10) + `"}`, nil, 413, "body_too_large"},
		{"missing token", "POST", path, "", `{}`, nil, 401, "unauthorized"},
		{"garbage token", "POST", path, "abc.def", `{}`, nil, 401, "unauthorized"},
		{"flipped signature", "POST", path, string(flipped), `{}`, nil, 401, "unauthorized"},
		{"expired token", "POST", path, expired, `{}`, nil, 401, "unauthorized"},
		{"event id not a number", "POST", "/api/v1/events/abc/orders", good, `{}`, nil, 404, "not_found"},
		{"event id zero", "POST", "/api/v1/events/0/orders", good, `{}`, nil, 404, "not_found"},
		{"event id negative", "POST", "/api/v1/events/-1/orders", good, `{}`, nil, 404, "not_found"},
		{"event id overflow", "POST", "/api/v1/events/99999999999999999999999/orders", good, `{}`, nil, 404, "not_found"},
		{"unknown event", "POST", "/api/v1/events/987654/orders", good, `{}`, nil, 404, "not_found"},
		{"bad idempotency key", "POST", path, good, `{}`, []string{"Idempotency-Key", "no spaces allowed"}, 400, "invalid_request"},
		{"long idempotency key", "POST", path, good, `{}`, []string{"Idempotency-Key", strings.Repeat("k", 65)}, 400, "invalid_request"},
		{"wrong method", "GET", path, good, ``, nil, 405, "method_not_allowed"},
		{"unknown route", "POST", "/api/v1/nope", good, `{}`, nil, 404, "not_found"},
		{"dev route is fine in dev", "POST", "/api/v1/dev/token", "", `{"user_id":"x"}`, nil, 400, "invalid_request"},
	}
	checkErrorCases(t, s, cases)
	if st, _ := s.redisStock(ev); st != 5 {
		t.Errorf("Redis stock %d after bad requests, want 5", st)
	}
	if b, tk, err := s.redis.Counts(context.Background(), ev); err != nil || b != 0 || tk != 0 {
		t.Errorf("%d buyer records and %d tickets after bad requests (%v)", b, tk, err)
	}
	if n, _ := s.raw.Do(context.Background(), s.raw.B().Zcard().Key(store.PendingKey(ev)).Build()).AsInt64(); n != 0 {
		t.Errorf("%d pending reservations after bad requests", n)
	}
	// And the endpoint still works for a good request.
	if a := s.order(ev, 9); a.Status != 202 {
		t.Fatalf("good order after bad ones: %d %s", a.Status, a.Raw)
	}
}
