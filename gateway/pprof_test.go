package gateway

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/flashgate/flashgate/internal/config"
)

// The runtime profiles are served on the internal listener with
// FLASHGATE_PPROF=1, and nowhere else: not without it, and never on the
// public listener, where the path is the API's JSON 404.
func TestProfilesOnlyInternalAndOptedIn(t *testing.T) {
	for _, tc := range []struct {
		pprof, internal bool
		want            int
	}{
		{true, true, 200},
		{true, false, 404},
		{false, true, 404},
		{false, false, 404},
	} {
		cfg := config.Default()
		cfg.TokenSecret = "pprof-test-secret-0123456789"
		cfg.Pprof = tc.pprof
		s := newTestServer(Config{Config: cfg})
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("GET")
		ctx.Request.SetRequestURI("/debug/pprof/goroutine?debug=1")
		if tc.internal {
			s.InternalHandler(&ctx)
		} else {
			s.Handler(&ctx)
		}
		body := string(ctx.Response.Body())
		if got := ctx.Response.StatusCode(); got != tc.want {
			t.Errorf("pprof=%v internal=%v: status %d, want %d: %.200s", tc.pprof, tc.internal, got, tc.want, body)
		}
		if served := strings.Contains(body, "goroutine profile:"); served != (tc.want == 200) {
			t.Errorf("pprof=%v internal=%v: profile served %v: %.200s", tc.pprof, tc.internal, served, body)
		}
	}
}
