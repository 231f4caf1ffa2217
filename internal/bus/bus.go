// Package bus is flashgate's Kafka layer: the message schemas that cross
// topics, client construction with the settings every service shares, and
// topic creation.
package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/obs"
)

// Order is an accepted reservation on the orders topic, keyed by event id so
// that one event's orders stay in order on one partition and batch together.
type Order struct {
	Ticket     string `json:"ticket"`
	EventID    int64  `json:"event_id"`
	UserID     int64  `json:"user_id"`
	Price      int64  `json:"price"`
	ReservedAt int64  `json:"reserved_at"` // unix milliseconds, Redis's clock
	// Abort marks an abort marker rather than an order: the reconciler
	// sends one, keyed like the order, for a reservation that waited too
	// long. The worker decides whichever of the order and its marker comes
	// first in the partition: a marker first fails the ticket (reason
	// timeout) and gives the unit back; after the order it changes nothing.
	Abort bool `json:"abort,omitempty"`
}

// Withdrawal is the outbox payload, relayed to the withdrawals topic, that
// hands an accepted withdrawal to the payout consumer. The withdrawals row is
// the truth; the message only says which one to look at.
type Withdrawal struct {
	WithdrawalID int64 `json:"withdrawal_id"`
	UserID       int64 `json:"user_id"`
	Amount       int64 `json:"amount"`
}

// Result types.
const (
	ResultTicket = "ticket" // a ticket reached succeeded or failed; for its owner
	ResultStock  = "stock"  // an event's stock changed; for its watchers
	ResultGift   = "gift"   // a gift was committed; for everyone in its room
)

// Result is one message on the results topic. Push is the WebSocket frame
// exactly as clients receive it, so ws forwards it without re-encoding.
type Result struct {
	Type    string          `json:"type"`
	UserID  int64           `json:"user_id,omitempty"`
	EventID int64           `json:"event_id,omitempty"`
	RoomID  int64           `json:"room_id,omitempty"`
	Push    json.RawMessage `json:"push"`
}

// TicketPush is the WebSocket "ticket" message (docs/openapi.yaml, "WebSocket push").
type TicketPush struct {
	Type    string `json:"type"` // always "ticket"
	Ticket  string `json:"ticket"`
	Kind    string `json:"kind"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	OrderNo string `json:"order_no,omitempty"`
}

// StockPush is the WebSocket "stock" message (docs/openapi.yaml, "WebSocket push").
type StockPush struct {
	Type      string `json:"type"` // always "stock"
	EventID   int64  `json:"event_id"`
	StockLeft int64  `json:"stock_left"`
	Status    string `json:"status"`
}

// GiftPush is the WebSocket "gift" message (docs/openapi.yaml, "WebSocket push").
type GiftPush struct {
	Type       string `json:"type"` // always "gift"
	RoomID     int64  `json:"room_id"`
	Ticket     string `json:"ticket"`
	SenderID   int64  `json:"sender_id"`
	ReceiverID int64  `json:"receiver_id"`
	GiftID     int64  `json:"gift_id"`
	Count      int64  `json:"count"`
	EffectURL  string `json:"effect_url"`
}

// GiftResult builds the results-topic record for a committed gift.
func GiftResult(topic string, p GiftPush) *kgo.Record {
	p.Type = ResultGift
	return result(topic, ResultGift, "room_id", p.RoomID, p)
}

// TicketResult builds the results-topic record for a ticket outcome.
func TicketResult(topic string, userID int64, p TicketPush) *kgo.Record {
	p.Type = ResultTicket
	return result(topic, ResultTicket, "user_id", userID, p)
}

// StockResult builds the results-topic record for a stock change.
func StockResult(topic string, p StockPush) *kgo.Record {
	p.Type = ResultStock
	return result(topic, ResultStock, "event_id", p.EventID, p)
}

// result encodes a Result of type typ whose id field (user_id, event_id or
// room_id) is id, keyed by that id. The envelope is appended around the
// push by hand: marshalling a Result marshalled the push a second time as a
// RawMessage, re-scanning it, and was a tenth of the gift writer's own CPU.
func result(topic, typ, idField string, id int64, push any) *kgo.Record {
	p, _ := json.Marshal(push)
	b := make([]byte, 0, len(p)+64)
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","`...)
	b = append(b, idField...)
	b = append(b, `":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `,"push":`...)
	b = append(b, p...)
	b = append(b, '}')
	n := len(b)
	b = strconv.AppendInt(b, id, 10)
	return &kgo.Record{Topic: topic, Value: b[:n:n], Key: b[n:]}
}

// OrderRecord builds the orders-topic record for an accepted reservation.
func OrderRecord(topic string, o Order) *kgo.Record {
	v, _ := json.Marshal(o)
	return &kgo.Record{Topic: topic, Key: strconv.AppendInt(nil, o.EventID, 10), Value: v}
}

// OrderAbortRecord builds the abort marker of a reservation, keyed by event
// id like the order itself so that both land on one partition.
func OrderAbortRecord(topic, ticket string, eventID, userID, reservedAt int64) *kgo.Record {
	return OrderRecord(topic, Order{Ticket: ticket, EventID: eventID, UserID: userID, ReservedAt: reservedAt, Abort: true})
}

// NewClient returns a franz-go client for the configured brokers that logs
// through log. Extra options (producer, consumer group) are appended.
func NewClient(cfg config.Config, log *slog.Logger, opts ...kgo.Opt) (*kgo.Client, error) {
	kl := log.With("component", "kafka")
	if cfg.LogLevel != "debug" {
		kl = obs.AtLeast(kl, slog.LevelWarn)
	}
	base := []kgo.Opt{
		kgo.SeedBrokers(cfg.KafkaBrokers...),
		kgo.WithLogger(kslog.New(kl)),
	}
	auth, err := AuthOpts(cfg)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(append(base, auth...), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("cannot create Kafka client: %w", err)
	}
	return cl, nil
}

// AuthOpts are the client options of the configured SASL mechanism
// (FLASHGATE_KAFKA_SASL_*) and TLS (FLASHGATE_KAFKA_TLS, _TLS_CA).
func AuthOpts(cfg config.Config) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	switch cfg.KafkaSASL {
	case "":
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: cfg.KafkaUsername, Pass: cfg.KafkaPassword}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: cfg.KafkaUsername, Pass: cfg.KafkaPassword}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: cfg.KafkaUsername, Pass: cfg.KafkaPassword}.AsSha512Mechanism()))
	default:
		return nil, fmt.Errorf("unknown FLASHGATE_KAFKA_SASL_MECHANISM %q", cfg.KafkaSASL)
	}
	tc, err := cfg.KafkaTLSConfig()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	return opts, nil
}

// EnsureTopics creates flashgate's topics if they do not exist yet.
func EnsureTopics(ctx context.Context, cl *kgo.Client, cfg config.Config) error {
	adm := kadm.NewClient(cl)
	topics := cfg.Topics()
	resp, err := adm.CreateTopics(ctx, int32(cfg.KafkaPartitions), -1, nil, topics...)
	if err != nil {
		return fmt.Errorf("cannot create Kafka topics: %w", err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("cannot create Kafka topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}
