package store

import (
	"testing"
	"time"
)

func TestParseHold(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want GiftHold
		ok   bool
	}{
		{"p:30:1700000000123", GiftHold{HoldPending, 30, time.UnixMilli(1700000000123)}, true},
		{"c:5:1700000000000", GiftHold{HoldClaimed, 5, time.UnixMilli(1700000000000)}, true},
		{"a:1700000000456", GiftHold{HoldUndone, 0, time.UnixMilli(1700000000456)}, true},
		{"m:1", GiftHold{}, false}, // an abort marker's field value is not a hold
		{"p:30", GiftHold{}, false},
		{"p:x:1", GiftHold{}, false},
		{"a:", GiftHold{}, false},
		{"", GiftHold{}, false},
	} {
		got, ok := ParseHold(tc.v)
		if ok != tc.ok || !got.At.Equal(tc.want.At) || got.State != tc.want.State || got.Coins != tc.want.Coins {
			t.Errorf("ParseHold(%q) = %+v, %v; want %+v, %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
}
