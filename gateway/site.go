package gateway

import (
	"bytes"
	"encoding/json"
	"net"

	"github.com/valyala/fasthttp"

	"github.com/flashgate/flashgate/internal/apierr"
	"github.com/flashgate/flashgate/web"
)

// site is the web client (package web), read once.
var site = web.Load()

// clientConfigPath is what the pages read first: dev mode or not, and where
// the WebSocket is. It is not under /api/v1: it describes this deployment
// to its own pages, not the API.
const clientConfigPath = "/config.json"

// contentSecurityPolicy lets the pages load only their own files and talk
// only to the gateway and the ws service (another port, so another origin).
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// isAPI says whether a path is the API's, which never reaches the web
// client's lookup: one length check and one comparison on the order path.
func isAPI(path []byte) bool {
	return len(path) >= len(apiPrefix) && string(path[:len(apiPrefix)]) == apiPrefix
}

const apiPrefix = "/api/v1/"

// serveSite answers the web client's files and reports whether path was
// one. Other paths are left to the API's router (and its JSON 404).
func (s *Server) serveSite(ctx *fasthttp.RequestCtx, path []byte, internal bool) bool {
	files := site.Public
	if internal {
		files = site.Internal
	}
	a := files[string(path)]
	if a == nil && string(path) != clientConfigPath {
		return false
	}
	if m := ctx.Method(); string(m) != fasthttp.MethodGet && string(m) != fasthttp.MethodHead {
		s.fail(ctx, "site", apierr.MethodNotAllowed)
		ctx.Response.Header.Set("Allow", "GET, HEAD") // after fail, which resets the response
		return true
	}
	h := &ctx.Response.Header
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if a == nil {
		h.Set("Cache-Control", "no-store")
		ctx.SetContentType("application/json")
		ctx.SetBody(s.clientConfig(ctx, internal))
		return true
	}
	// Revalidated on every load (a 304 when unchanged): a new release is
	// picked up at once, with no file names to version.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.ETag)
	if a.HTML {
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
	}
	ctx.SetContentType(a.ContentType)
	if inm := ctx.Request.Header.Peek("If-None-Match"); len(inm) > 0 && bytes.Contains(inm, []byte(a.ETag)) {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return true
	}
	ctx.SetBody(a.Body)
	return true
}

// clientConfig is the body of /config.json.
func (s *Server) clientConfig(ctx *fasthttp.RequestCtx, internal bool) []byte {
	b, _ := json.Marshal(struct {
		Dev bool `json:"dev"`
		// WSURL is where the pages open their WebSocket.
		WSURL string `json:"ws_url"`
		// Internal: this is the internal listener, where the admin routes are.
		Internal bool `json:"internal"`
	}{s.cfg.Dev, s.wsPublicURL(string(ctx.Host())), internal})
	return b
}

// wsPublicURL is FLASHGATE_WS_PUBLIC_URL, or else the ws service on the
// page's own host at FLASHGATE_WS_ADDR's port: what `make run` needs, where
// both listen on one machine.
func (s *Server) wsPublicURL(pageHost string) string {
	if s.cfg.WSPublicURL != "" {
		return s.cfg.WSPublicURL
	}
	_, port, err := net.SplitHostPort(s.cfg.WSAddr)
	if err != nil {
		port = "8081"
	}
	host := pageHost
	if h, _, err := net.SplitHostPort(pageHost); err == nil {
		host = h
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return "ws://" + net.JoinHostPort(host, port) + "/ws"
}
