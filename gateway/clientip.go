package gateway

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/valyala/fasthttp"
)

// clientAddr is the address of the client a request comes from. From a
// trusted proxy (FLASHGATE_TRUSTED_PROXIES) it is the right-most
// X-Forwarded-For entry that is not a trusted proxy itself: each proxy
// appends the address it was reached from, so entries right of the first
// untrusted one were written by our proxies, and entries left of it are
// whatever the client chose to send. From anyone else X-Forwarded-For is the
// client's own claim and is ignored.
func (s *Server) clientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	peer := addrOf(ctx.RemoteAddr())
	if !s.trusted(peer) {
		return peer
	}
	client := peer
	hdrs := ctx.Request.Header.PeekAll("X-Forwarded-For")
	for h := len(hdrs) - 1; h >= 0; h-- {
		v := hdrs[h]
		for len(v) > 0 {
			i := bytes.LastIndexByte(v, ',')
			entry := v[i+1:]
			v = v[:max(i, 0)]
			a, ok := parseForwarded(entry)
			if !ok {
				// Not an address: written by the client, never by our
				// proxies. The nearest hop we can vouch for is the client.
				return client
			}
			client = a
			if !s.trusted(a) {
				return a
			}
		}
	}
	return client
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// addrOf is the IP of a connection's remote address, IPv4 unmapped.
func addrOf(a net.Addr) netip.Addr {
	if tcp, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(tcp.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// parseForwarded reads one X-Forwarded-For entry: an address, perhaps with a
// port ("1.2.3.4:5678", "[2001:db8::1]:443") as some proxies write it.
func parseForwarded(b []byte) (netip.Addr, bool) {
	b = bytes.TrimSpace(b)
	if a, err := netip.ParseAddr(string(b)); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(string(b)); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// clientKey is what the per-client limit counts by: an IPv4 address, or the
// /64 of an IPv6 one, since one IPv6 subscriber holds a whole /64 and could
// otherwise take a fresh bucket for every request.
func clientKey(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.WithZone("").Prefix(64)
		return p.Addr()
	}
	return a
}

// hashAddr spreads client keys over the limiter's shards.
func hashAddr(a netip.Addr) uint64 {
	b := a.As16()
	var h uint64 = 14695981039346656037
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h
}

// hashUser spreads user ids over the limiter's shards.
func hashUser(id int64) uint64 { return uint64(id) * 0x9E3779B97F4A7C15 }
