package ws

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flashgate/flashgate/internal/bus"
)

// Result types this service delivers: tickets and stock from the order
// worker, gifts from the gift worker.
const (
	resultTicket = bus.ResultTicket
	resultStock  = bus.ResultStock
	resultGift   = bus.ResultGift
)

// consume reads the results topic until ctx is done and hands each record to
// the hub. The client has no consumer group: every replica reads every
// partition from its own start time, because only it knows which users,
// events and rooms its connections care about.
func consume(ctx context.Context, cl *kgo.Client, h *hub, log *slog.Logger) {
	for {
		fetches := cl.PollRecords(ctx, 1000)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			// franz-go keeps retrying by itself; this is for the operator.
			log.Warn("fetching results failed", "topic", topic, "partition", partition, "err", err)
		})
		fetches.EachRecord(func(r *kgo.Record) {
			consumedRecords.Inc()
			if !r.Timestamp.IsZero() {
				resultAge.Observe(time.Since(r.Timestamp).Seconds())
			}
			dispatch(r, h, log)
		})
	}
}

// dispatch delivers one results-topic record. A record it cannot use is
// logged and skipped: stopping the consumer would cut every client off from
// every later result because of one bad message.
func dispatch(r *kgo.Record, h *hub, log *slog.Logger) {
	var res bus.Result
	if err := json.Unmarshal(r.Value, &res); err != nil || len(res.Push) == 0 || string(res.Push) == "null" {
		skippedRecords.WithLabelValues("decode").Inc()
		log.Warn("skipping undecodable result", "partition", r.Partition, "offset", r.Offset, "err", err)
		return
	}
	// Push is forwarded byte for byte (it is the frame as clients receive
	// it) and shared by all recipients, which only read it.
	var (
		to  target
		id  int64
		cnt = deliveredTicket
	)
	switch res.Type {
	case resultTicket:
		to, id = toUser, res.UserID
	case resultStock:
		to, id, cnt = toEvent, res.EventID, deliveredStock
	case resultGift:
		to, id, cnt = toRoom, res.RoomID, deliveredGift
	default:
		// A newer producer may add types; this replica cannot route them.
		skippedRecords.WithLabelValues("unknown_type").Inc()
		log.Debug("skipping result of unknown type", "type", res.Type, "partition", r.Partition, "offset", r.Offset)
		return
	}
	if id <= 0 {
		skippedRecords.WithLabelValues("no_target").Inc()
		log.Warn("skipping result without a target id", "type", res.Type, "partition", r.Partition, "offset", r.Offset)
		return
	}
	h.deliver(to, id, res.Push, cnt)
}
