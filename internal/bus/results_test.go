package bus

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestResults: each results-topic record is a Result whose type and id
// field name its audience, keyed by that id, and whose push is the
// WebSocket frame as json.Marshal writes it (ws forwards it as is).
func TestResults(t *testing.T) {
	gift := GiftPush{Type: "gift", RoomID: 3, Ticket: "g42-00112233aabbccdd", SenderID: 42, ReceiverID: 7, GiftID: 1, Count: 2,
		EffectURL: `https://static.example/a "rose" <b>.svga`}
	ticket := TicketPush{Type: "ticket", Ticket: "o9-00112233aabbccdd", Kind: "order", Status: "succeeded", OrderNo: "FG00112233AABBCCDD"}
	stock := StockPush{Type: "stock", EventID: 9, StockLeft: 0, Status: "sold_out"}
	for _, c := range []struct {
		rec  *kgo.Record
		want Result
		id   int64
		push any
	}{
		{GiftResult("t.results", gift), Result{Type: "gift", RoomID: 3}, 3, gift},
		{TicketResult("t.results", 42, ticket), Result{Type: "ticket", UserID: 42}, 42, ticket},
		{StockResult("t.results", stock), Result{Type: "stock", EventID: 9}, 9, stock},
	} {
		var got Result
		if err := json.Unmarshal(c.rec.Value, &got); err != nil {
			t.Fatalf("%s: not JSON: %v\n%s", c.want.Type, err, c.rec.Value)
		}
		push, _ := json.Marshal(c.push)
		if string(got.Push) != string(push) {
			t.Errorf("%s: push %s, want %s", c.want.Type, got.Push, push)
		}
		got.Push = nil
		if got.Type != c.want.Type || got.UserID != c.want.UserID || got.EventID != c.want.EventID || got.RoomID != c.want.RoomID {
			t.Errorf("%s: envelope %+v, want %+v", c.want.Type, got, c.want)
		}
		if string(c.rec.Key) != strconv.FormatInt(c.id, 10) || c.rec.Topic != "t.results" {
			t.Errorf("%s: key %q topic %q", c.want.Type, c.rec.Key, c.rec.Topic)
		}
	}
}
