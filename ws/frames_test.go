package ws

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flashgate/flashgate/internal/bus"
)

// giftOfSize is a gift result whose push is exactly size bytes of JSON.
func giftOfSize(t *testing.T, room int64, ticket string, size int) (*kgo.Record, string) {
	t.Helper()
	push := fmt.Sprintf(`{"type":"gift","room_id":%d,"ticket":%q,"effect_url":""}`, room, ticket)
	if size < len(push) {
		t.Fatalf("size %d below the %d bytes of a bare push", size, len(push))
	}
	push = strings.Replace(push, `"effect_url":""`, `"effect_url":"`+strings.Repeat("x", size-len(push))+`"`, 1)
	v, _ := json.Marshal(bus.Result{Type: "gift", RoomID: room, Push: json.RawMessage(push)})
	return &kgo.Record{Value: v}, push
}

// Room pushes are framed once (a PreparedMessage) and written, often
// several at a time, to each viewer; tickets are framed by each writer.
// Every viewer reads each push as one text frame holding exactly the bytes
// the worker published, whatever its length: around the 125/126 and
// 65535/65536 bytes where a frame header changes size, and with pushes of
// both kinds queued together.
func TestPushFrames(t *testing.T) {
	e := startWS(t, nil)
	viewers := []*wsClient{e.dial(60), e.dial(61), e.dial(62)}
	for _, v := range viewers {
		v.send(`{"type":"join","room_id":9}`)
		v.sync()
	}
	var recs []*kgo.Record
	want := make([][]string, len(viewers)) // per viewer
	for i, size := range []int{60, 125, 126, 127, 1000, 65535, 65536, 70000, 126, 60} {
		rec, push := giftOfSize(t, 9, fmt.Sprintf("G-%d", i), size)
		recs = append(recs, rec)
		for v := range viewers {
			want[v] = append(want[v], push)
		}
		// A ticket for one viewer between the gifts.
		tr, tpush := ticketRec(t, int64(60+i%len(viewers)), fmt.Sprintf("T-%d", i))
		recs = append(recs, tr)
		want[i%len(viewers)] = append(want[i%len(viewers)], tpush)
	}
	e.produce(recs...)
	for i, v := range viewers {
		for _, w := range want[i] {
			v.expect(w)
		}
	}
}

// When pushes queue up behind a connection's writer they go out in one
// write to the socket; the client still reads them one frame each, intact
// and in order. Pushes are delivered to the hub until the writers have
// batched some, which the write_batch_messages histogram tells.
func TestBatchedFrames(t *testing.T) {
	e, h := hubEnv(t, nil)
	viewers := []*wsClient{e.dial(1), e.dial(2)}
	for _, v := range viewers {
		v.send(`{"type":"join","room_id":3}`)
		v.sync()
	}
	batchedBefore := batchedWrites(t)
	pad := strings.Repeat("p", 8<<10) // slows the writer down a little
	n := 0
	for round := 0; batchedWrites(t) == batchedBefore; round++ {
		if round == 50 {
			t.Fatalf("no two pushes were written at once in %d rounds", round)
		}
		var pushes []string
		for range 32 {
			n++
			push := fmt.Sprintf(`{"type":"gift","room_id":3,"n":%d,"pad":%q}`, n, pad)
			if n%3 == 0 {
				// Tickets are written with WriteMessage, in the same batch.
				push = fmt.Sprintf(`{"type":"ticket","n":%d}`, n)
				h.deliver(toUser, 1, []byte(push), deliveredTicket)
				h.deliver(toUser, 2, []byte(push), deliveredTicket)
			} else {
				h.deliver(toRoom, 3, []byte(push), deliveredGift)
			}
			pushes = append(pushes, push)
		}
		for _, v := range viewers {
			for _, p := range pushes {
				v.expect(p)
			}
		}
	}
	t.Logf("%d pushes until some were batched", n)
}

// batchedWrites is how many socket writes carried more than one push.
func batchedWrites(t *testing.T) uint64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "flashgate_ws_write_batch_messages" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() == 1 {
				return h.GetSampleCount() - b.GetCumulativeCount()
			}
		}
	}
	t.Fatal("no flashgate_ws_write_batch_messages histogram")
	return 0
}
