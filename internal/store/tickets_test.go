package store

import (
	"testing"
)

func TestParseTicket(t *testing.T) {
	o := NewOrderTicket(17)
	g := NewGiftTicket(42)
	cases := []struct {
		in   string
		kind string
		id   int64
	}{
		{o, "order", 17},
		{g, "gift", 42},
		{"o1-0011223344556677", "order", 1},
		{"o1-001122334455667", "", 0},   // short
		{"o1-00112233445566778", "", 0}, // long
		{"o01-0011223344556677", "", 0}, // leading zero
		{"o0-0011223344556677", "", 0},
		{"x1-0011223344556677", "", 0},
		{"o1-00112233445566ZZ", "", 0},
		{"o-1-011223344556677", "", 0},
		{"", "", 0},
	}
	for _, c := range cases {
		kind, id, ok := ParseTicket(c.in)
		if ok != (c.kind != "") || kind != c.kind || id != c.id {
			t.Errorf("ParseTicket(%q) = %q, %d, %v", c.in, kind, id, ok)
		}
	}
	if no := OrderNo("o1-0011223344aabbcc"); no != "FG0011223344AABBCC" {
		t.Errorf("OrderNo = %s", no)
	}
}

// FuzzParseTicket: never panics; whatever it accepts is a ticket it could
// have made, so keys built from it stay in the ticket's own slot.
func FuzzParseTicket(f *testing.F) {
	f.Add(NewOrderTicket(1))
	f.Add(NewGiftTicket(99999))
	f.Add("o9223372036854775807-0011223344556677")
	f.Add("o9223372036854775808-0011223344556677")
	f.Add("g-")
	f.Fuzz(func(t *testing.T, s string) {
		kind, id, ok := ParseTicket(s)
		if !ok {
			return
		}
		var again string
		if kind == "order" {
			again = "o"
		} else {
			again = "g"
		}
		if id <= 0 || len(s) > 64 || s[:1] != again {
			t.Fatalf("accepted %q as %s %d", s, kind, id)
		}
	})
}
