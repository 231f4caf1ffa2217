package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/sandbox"
)

// FuzzRouter: match never panics, and a match hands the handler exactly the
// pattern's parameters, none empty or spanning segments.
func FuzzRouter(f *testing.F) {
	for _, r := range routes {
		f.Add(r.method, strings.NewReplacer("{id}", "17", "{ticket}", "o1-00112233aabbccdd", "{order_no}", "FG00", "{room_id}", "3",
			"{order_id}", "P1", "{withdrawal_id}", "9").Replace(r.pattern))
	}
	f.Add("GET", "/api/v1/events/")
	f.Add("POST", "//api//v1")
	f.Add("DELETE", "/api/v1/events/1/orders/2/3/4/5/6/7/8/9")
	f.Add("GET", "")
	f.Fuzz(func(t *testing.T, method, path string) {
		for _, internal := range []bool{false, true} {
			var params [4]string
			r, n, _ := match(method, []byte(path), &params, internal)
			if r == nil {
				continue
			}
			if r.method != method {
				t.Fatalf("%s %s matched %s %s", method, path, r.method, r.pattern)
			}
			if (r.access == admin) != internal {
				t.Fatalf("%s %s matched %s on the internal listener: %v", method, path, r.pattern, internal)
			}
			if want := strings.Count(r.pattern, "{"); n != want {
				t.Fatalf("%s: %d params, pattern has %d", path, n, want)
			}
			for _, p := range params[:n] {
				if p == "" || strings.Contains(p, "/") {
					t.Fatalf("%s: bad param %q", path, p)
				}
			}
		}
	})
}

// requestTypes are the body types the handlers decode into, the handlers'
// own: a handler whose type changes is fuzzed with the new type. struct{} is
// the body of the routes that take {} or nothing (orders, pay, cancel, the
// sandbox's complete).
func requestTypes() []func() any {
	return []func() any{
		func() any { return &struct{}{} },
		func() any { return &createEventReq{} },
		func() any { return &addStockReq{} },
		func() any { return &devTokenReq{} },
		func() any { return &giftBody{} },
		func() any { return &createPayOrderReq{} },
		func() any { return &payNotifyReq{} },
		func() any { return &createWithdrawalReq{} },
	}
}

// FuzzDecode: decoding a body never panics; it either accepts one JSON
// object or refuses with 400 invalid_request and the API's error body.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{}`, `{"name":"x","price":1,"stock":2,"starts_at":"2030-01-01T00:00:00Z","ends_at":"2030-01-02T00:00:00Z"}`,
		`{"delta":5}`, `{"user_id":42,"admin":true}`, `{"user_id":1,"count":3}`, `{"product_id":1}`, `{"amount":100}`, `{"gift_id":1,"receiver_id":7,"count":1}`,
		`{"order_id":"P1","status":"success","amount":600,"provider_txn":"t"}`, `{"amount":"\u0000"}`, `[]`, `{"a":1}{}`, `{"price":"1"}`, `{"delta":1e400}`, "\x00", `{"user_id":-1}`, ` {} `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, mk := range requestTypes() {
			e := decodeJSON(body, mk())
			if e == nil {
				if b := trimSpace(body); len(b) == 0 || b[0] != '{' || !json.Valid(b) {
					t.Fatalf("accepted %q", body)
				}
				continue
			}
			checkErrorShape(t, e.HTTPStatus, e.Body())
			if e.HTTPStatus != 400 || e.Code != "invalid_request" {
				t.Fatalf("%q: %d %s", body, e.HTTPStatus, e.Code)
			}
		}
	})
}

func checkErrorShape(t *testing.T, status int, body []byte) {
	t.Helper()
	var b struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.Error == nil || b.Error.Code == "" || b.Error.Message == "" {
		t.Fatalf("%d with body %s: not the API error shape", status, body)
	}
}

// FuzzRequest drives the real handler with arbitrary method, path, headers
// and body, for requests that never reach Redis or MySQL: unknown routes,
// wrong methods, every route without a valid token, and the payment notify
// (its fuzzed signature is never good). The answer is never a
// 5xx and always the JSON error shape; the handler never panics.
func FuzzRequest(f *testing.F) {
	cfg := config.Default()
	cfg.Dev = false
	cfg.TokenSecret = "fuzz-secret-0123456789"
	cfg.PaySecret = "fuzz-pay-secret-0123456789-0123456789"
	s := newTestServer(Config{Config: cfg})
	good := s.signer.Sign(1, auth.RoleUser, time.Hour)
	f.Add("POST", "/api/v1/pay/notify", "", `{"order_id":"P1","status":"success","amount":1,"provider_txn":"t"}`, "")
	f.Add("POST", "/api/v1/events/1/orders", "", "{}", "")
	f.Add("POST", "/api/v1/admin/events", "Bearer "+good[:len(good)-2]+"xx", "{}", "k")
	f.Add("GET", "/api/v1/nope", "", "", "")
	f.Add("PUT", "/api/v1/events", "", "[]", "")
	f.Add("POST", "/api/v1/dev/token", "", `{"user_id":1}`, "")
	f.Add("GET", "/api/v1/tickets/o1-0011223344556677", "Bearer x.y", "", "bad key!")
	f.Fuzz(func(t *testing.T, method, path, authz, body, idem string) {
		if len(method) == 0 || len(method) > 16 || strings.ContainsAny(method, " \r\n") || len(path) > 2048 {
			return
		}
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(method)
		ctx.Request.SetRequestURI(path)
		if authz != "" {
			ctx.Request.Header.Set("Authorization", authz)
		}
		if idem != "" {
			ctx.Request.Header.Set("Idempotency-Key", idem)
		}
		ctx.Request.SetBodyString(body)
		// The handler routes on the normalised path ("#" is "/", "/a/../b"
		// is "/b"), so the fuzzer's string is judged by what fasthttp makes
		// of it. The probes and the web client's pages answer 2xx by design
		// (TestSiteServed covers them); here they must only never be a 5xx.
		routed := ctx.Path()
		if p := string(routed); p == "/healthz" || p == "/readyz" || site.Public[p] != nil || p == clientConfigPath {
			s.Handler(&ctx)
			if status := ctx.Response.StatusCode(); status >= 500 {
				t.Fatalf("%s %q: status %d %s", method, path, status, ctx.Response.Body())
			}
			return
		}
		var params [4]string
		r, _, _ := match(method, routed, &params, false) // s.Handler: the public listener
		if r != nil {
			// Only requests the gateway must refuse before any I/O: the
			// notify is one of them (a bad signature, which a fuzzed one
			// always is, is refused before the body is read).
			if (r.access == public && !r.perSource) || (r.access == dev && s.cfg.Dev) {
				return
			}
			if _, err := s.signer.Verify(auth.FromHeader(authz)); err == nil {
				return
			}
		}
		s.Handler(&ctx)
		status := ctx.Response.StatusCode()
		if status >= 500 || status < 400 {
			t.Fatalf("%s %q: status %d %s", method, path, status, ctx.Response.Body())
		}
		if ct := string(ctx.Response.Header.ContentType()); ct != "application/json" {
			t.Fatalf("%s %q: Content-Type %q", method, path, ct)
		}
		checkErrorShape(t, status, ctx.Response.Body())
	})
}

// FuzzNotify: the payment provider's callback with any body and any
// X-Signature that is not the body's HMAC under the pay secret is refused
// with 401 before the body is read, so it can never credit anything; the
// answer is the JSON error shape. (Bodies that are signed for real reach
// MySQL, which e2e covers.)
func FuzzNotify(f *testing.F) {
	cfg := config.Default()
	cfg.TokenSecret = "fuzz-secret-0123456789-0123456789"
	cfg.PaySecret = "fuzz-pay-secret-0123456789-0123456789"
	s := newTestServer(Config{Config: cfg})
	good := `{"order_id":"P0011223344556677","status":"success","amount":600,"provider_txn":"t1"}`
	f.Add(good, sandbox.Sign(cfg.PaySecret, []byte(good+" ")))
	f.Add(good, sandbox.Sign("another-secret", []byte(good)))
	f.Add(good, strings.ToUpper(sandbox.Sign(cfg.PaySecret, []byte(good)))[:63]+"0")
	f.Add("", "")
	f.Add("{}", strings.Repeat("0", 64))
	f.Add(good, "not hex at all")
	f.Fuzz(func(t *testing.T, body, sig string) {
		if sig == sandbox.Sign(cfg.PaySecret, []byte(body)) || strings.EqualFold(sig, sandbox.Sign(cfg.PaySecret, []byte(body))) {
			return // signed for real: not this target's business
		}
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/api/v1/pay/notify")
		if sig != "" {
			ctx.Request.Header.Set("X-Signature", sig)
		}
		ctx.Request.SetBodyString(body)
		s.Handler(&ctx)
		status := ctx.Response.StatusCode()
		// 413 for a body over the limit comes first; anything else is 401.
		if status != 401 && !(status == 413 && len(body) > MaxBodySize) {
			t.Fatalf("notify %q with X-Signature %q: %d %s", body, sig, status, ctx.Response.Body())
		}
		checkErrorShape(t, status, ctx.Response.Body())
	})
}
