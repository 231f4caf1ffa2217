package bus

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzGiftRecord: the hand-written encoder always produces JSON that
// json.Unmarshal reads back into the same gift (strings with invalid UTF-8
// come back with U+FFFD, as encoding/json would write them), keyed by sender.
func FuzzGiftRecord(f *testing.F) {
	f.Add("g42-9f86d081884c7d65", "https://static.example/rose.svga", int64(7), int64(42), int64(3))
	f.Add(`quote " backslash \ newline`+"\n\t\r\x00\x1f", "é 漢字 \u2028", int64(1), int64(1), int64(1))
	f.Add("bad utf8 \xff\xfe", "\xc3", int64(-5), int64(9223372036854775807), int64(0))
	f.Fuzz(func(t *testing.T, ticket, url string, room, sender, coins int64) {
		in := Gift{Ticket: ticket, RoomID: room, SenderID: sender, ReceiverID: sender + 1, GiftID: 4,
			Count: 9999, Coins: coins, EffectURL: url, HeldAt: 1_750_000_000_123, IdemKey: "k-" + strconv.FormatInt(room, 10), Balance: coins / 2}
		r := GiftRecord("t.gifts", in)
		var out Gift
		if err := json.Unmarshal(r.Value, &out); err != nil {
			t.Fatalf("not valid JSON: %v\n%s", err, r.Value)
		}
		want := in
		want.Ticket, want.EffectURL = strings.ToValidUTF8(ticket, "\uFFFD"), strings.ToValidUTF8(url, "\uFFFD")
		if !utf8.ValidString(ticket) || !utf8.ValidString(url) {
			// ToValidUTF8 merges a run of bad bytes into one U+FFFD;
			// encoding/json (and this encoder) write one per bad byte.
			want.Ticket, want.EffectURL = out.Ticket, out.EffectURL
			if !utf8.ValidString(out.Ticket) || !utf8.ValidString(out.EffectURL) {
				t.Fatalf("decoded strings are not valid UTF-8: %q %q", out.Ticket, out.EffectURL)
			}
		}
		if out != want {
			t.Fatalf("round trip:\n got %+v\nwant %+v", out, want)
		}
		if string(r.Key) != strconv.FormatInt(sender, 10) || r.Topic != "t.gifts" {
			t.Fatalf("key %q topic %q", r.Key, r.Topic)
		}
		// The key shares the value's buffer: appending to the value must
		// not overwrite it.
		key := string(r.Key)
		_ = append(r.Value, "xxxxxxxxxxxxxxxxxxxxxxxxx"...)
		if string(r.Key) != key {
			t.Fatalf("appending to the value changed the key")
		}
	})
}

// TestGiftRecordMatchesEncodingJSON: for ordinary values the bytes are what
// encoding/json would write, so nothing downstream can tell them apart.
func TestGiftRecordMatchesEncodingJSON(t *testing.T) {
	g := Gift{Ticket: "g42-9f86d081884c7d65", RoomID: 7, SenderID: 42, ReceiverID: 9, GiftID: 2, Count: 3, Coins: 30,
		EffectURL: `https://static.example/heart.svga?a=1&b="x"`, HeldAt: 1_750_000_000_123}
	for _, key := range []string{"", "retry-7_A"} {
		g.IdemKey, g.Balance = key, int64(len(key))
		want, _ := json.Marshal(g)
		// encoding/json escapes & < > for HTML; this encoder does not need to.
		w := strings.NewReplacer(`\u0026`, "&", `\u003c`, "<", `\u003e`, ">").Replace(string(want))
		if got := string(GiftRecord("x", g).Value); got != w {
			t.Errorf("got  %s\nwant %s", got, w)
		}
	}
}

// BenchmarkGiftRecord measures the gift path's encoding: one buffer and one
// record per gift.
func BenchmarkGiftRecord(b *testing.B) {
	g := Gift{Ticket: "g42-9f86d081884c7d65", RoomID: 7, SenderID: 42, ReceiverID: 9, GiftID: 2, Count: 3, Coins: 30,
		EffectURL: "https://static.flashgate.example/effects/heart.svga", HeldAt: 1_750_000_000_123}
	b.ReportAllocs()
	for b.Loop() {
		GiftRecord("flashgate.gifts", g)
	}
}
