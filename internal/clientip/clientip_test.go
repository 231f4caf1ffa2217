package clientip

import (
	"net/netip"
	"testing"
)

func TestClient(t *testing.T) {
	r := Resolver{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"no proxy", "198.51.100.1", nil, "198.51.100.1"},
		{"untrusted peer's header is ignored", "198.51.100.1", []string{"203.0.113.9"}, "198.51.100.1"},
		{"trusted proxy", "10.1.2.3", []string{"203.0.113.9"}, "203.0.113.9"},
		{"client spoofs an entry", "10.1.2.3", []string{"1.1.1.1, 203.0.113.9"}, "203.0.113.9"},
		{"two trusted hops", "10.1.2.3", []string{"203.0.113.9, 10.9.9.9"}, "203.0.113.9"},
		{"two headers", "10.1.2.3", []string{"1.1.1.1", "203.0.113.9"}, "203.0.113.9"},
		{"IPv6 entry with a port", "fd00::1", []string{"[2001:db8::7]:443"}, "2001:db8::7"},
		{"garbage as the last entry", "10.1.2.3", []string{"203.0.113.9, garbage"}, "10.1.2.3"},
		{"every entry trusted", "10.1.2.3", []string{"10.0.0.7, 10.0.0.8"}, "10.0.0.7"},
	} {
		var xff [][]byte
		for _, h := range tc.xff {
			xff = append(xff, []byte(h))
		}
		if got := r.Client(netip.MustParseAddr(tc.peer), xff); got != netip.MustParseAddr(tc.want) {
			t.Errorf("%s: Client = %v, want %s", tc.name, got, tc.want)
		}
	}
}

func TestKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":            "192.0.2.1",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::",
		"fe80::1%eth0":         "fe80::",
		"::ffff:192.0.2.1":     "192.0.2.1",
		"2001:db8:1:3::1":      "2001:db8:1:3::",
	} {
		if got := Key(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("Key(%s) = %v, want %s", in, got, want)
		}
	}
	if ParseHostPort("[::ffff:10.0.0.1]:80") != netip.MustParseAddr("10.0.0.1") || ParseHostPort("nonsense").IsValid() {
		t.Error("ParseHostPort")
	}
}
