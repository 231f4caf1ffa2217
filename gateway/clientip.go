package gateway

import (
	"net/netip"

	"github.com/valyala/fasthttp"

	"github.com/flashgate/flashgate/internal/clientip"
)

// clientAddr is the address of the client a request comes from: behind a
// trusted proxy (FLASHGATE_TRUSTED_PROXIES) the right-most X-Forwarded-For
// entry that is not a trusted proxy, else the TCP peer (see clientip).
func (s *Server) clientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	return clientip.Resolver{Trusted: s.cfg.TrustedProxies}.Client(
		clientip.AddrOf(ctx.RemoteAddr()), ctx.Request.Header.PeekAll("X-Forwarded-For"))
}

// clientKey is what the per-client limits count by (clientip.Key).
func clientKey(a netip.Addr) netip.Addr { return clientip.Key(a) }

// hashAddr spreads client keys over the limiter's shards.
func hashAddr(a netip.Addr) uint64 { return clientip.Hash(a) }

// hashUser spreads user ids over the limiter's shards.
func hashUser(id int64) uint64 { return uint64(id) * 0x9E3779B97F4A7C15 }
