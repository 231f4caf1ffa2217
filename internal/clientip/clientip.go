// Package clientip finds the client a request comes from, behind trusted
// proxies or without any, and the key a per-client limit counts it by. The
// gateway (fasthttp) and ws (net/http) share it.
package clientip

import (
	"bytes"
	"net"
	"net/netip"
)

// Resolver knows the proxies whose X-Forwarded-For is believed
// (FLASHGATE_TRUSTED_PROXIES). The zero value trusts nobody.
type Resolver struct {
	Trusted []netip.Prefix
}

// Client returns the address of the client behind peer, the TCP peer, given
// the X-Forwarded-For header values in the order they arrived. From a
// trusted proxy it is the right-most entry that is not a trusted proxy
// itself: each proxy appends the address it was reached from, so entries
// right of the first untrusted one were written by our proxies, and entries
// left of it are whatever the client chose to send. From anyone else the
// header is the client's own claim and is ignored.
func (r Resolver) Client(peer netip.Addr, xff [][]byte) netip.Addr {
	if !r.trusted(peer) {
		return peer
	}
	client := peer
	for h := len(xff) - 1; h >= 0; h-- {
		v := xff[h]
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
			if !r.trusted(a) {
				return a
			}
		}
	}
	return client
}

func (r Resolver) trusted(a netip.Addr) bool {
	for _, p := range r.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// AddrOf is the IP of a connection's remote address, IPv4 unmapped.
func AddrOf(a net.Addr) netip.Addr {
	if tcp, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(tcp.IP)
		return ip.Unmap()
	}
	if a == nil {
		return netip.Addr{}
	}
	return ParseHostPort(a.String())
}

// ParseHostPort reads the address of an "ip:port" string (a net/http
// Request's RemoteAddr), IPv4 unmapped; the zero Addr when it is not one.
func ParseHostPort(s string) netip.Addr {
	ap, err := netip.ParseAddrPort(s)
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

// Key is what a per-client limit counts by: an IPv4 address, or the /64 of
// an IPv6 one, since one IPv6 subscriber holds a whole /64 and could
// otherwise take a fresh bucket for every address.
func Key(a netip.Addr) netip.Addr {
	a = a.Unmap() // a mapped IPv4 address is one client, not a /64
	if a.Is6() {
		p, _ := a.WithZone("").Prefix(64)
		return p.Addr()
	}
	return a
}

// Hash spreads keys over the shards of a limiter.
func Hash(a netip.Addr) uint64 {
	b := a.As16()
	var h uint64 = 14695981039346656037
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h
}
