package apierr

import (
	"encoding/json"
	"testing"
)

// TestAppendBody: the hand-written body is byte for byte what encoding/json
// makes of the same error, whatever the message holds.
func TestAppendBody(t *testing.T) {
	type inner struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	type body struct {
		Error  inner  `json:"error"`
		Ticket string `json:"ticket,omitempty"`
	}
	for _, e := range []*Error{
		SoldOut, NotStarted, RateLimited, Unavailable,
		AlreadyPurchased.WithTicket("o1-0123456789abcdef"),
		InvalidRequest.With(`field "count": want 1 to 9999`),
		InvalidRequest.With("back\\slash, tab\t, newline\n, nul\x00, del\x7f"),
		InvalidRequest.With("<script>&amp;</script>"),
		InvalidRequest.With("ünïcödé ✓ and a bad byte \xff"),
		NotFound.With(""),
	} {
		want, _ := json.Marshal(body{Error: inner{e.Code, e.Message}, Ticket: e.Ticket})
		if got := e.AppendBody([]byte("prefix")); string(got) != "prefix"+string(want) {
			t.Errorf("\n got %s\nwant prefix%s", got, want)
		}
	}
}

func BenchmarkAppendBody(b *testing.B) {
	buf := make([]byte, 0, 256)
	for range b.N {
		buf = SoldOut.AppendBody(buf[:0])
	}
}
