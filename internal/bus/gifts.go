package bus

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Gift is an accepted gift on the gifts topic: its coins are held in Redis
// and the worker has yet to commit it. Records are keyed by sender id, so one
// sender's gifts stay in order on one partition and the worker's balance
// guard sees them in the order the gateway held them.
type Gift struct {
	Ticket     string `json:"ticket"`
	RoomID     int64  `json:"room_id"`
	SenderID   int64  `json:"sender_id"`
	ReceiverID int64  `json:"receiver_id"`
	GiftID     int64  `json:"gift_id"`
	Count      int64  `json:"count"`
	Coins      int64  `json:"coins"` // price at sending time * count
	// CatalogVersion is the gift_prices row of the price the gateway held
	// the coins at: the worker checks Coins against it. 0 in records of
	// gateways older than it, checked against the current price.
	CatalogVersion int64  `json:"catalog_version,omitempty"`
	EffectURL      string `json:"effect_url"`
	HeldAt         int64  `json:"held_at"` // unix milliseconds, Redis's clock
	// IdemKey is the request's Idempotency-Key ("" when none) and Balance
	// the hot balance answered with the 202: MySQL keeps both with the
	// ticket, so a retry after Redis lost the key gets the first answer.
	IdemKey string `json:"idem_key,omitempty"`
	Balance int64  `json:"balance"`
	// Abort marks an abort marker rather than a gift: the hold reconciler
	// sends one, keyed like the gift, for a hold that waited too long. The
	// worker decides whichever of the gift and its marker comes first in
	// the partition: a marker first fails the ticket (reason timeout) and
	// gives the coins back; after the gift it changes nothing.
	Abort bool `json:"abort,omitempty"`
}

// GiftAbortRecord builds the abort marker of a held gift, keyed by sender
// like the gift itself so that both land on one partition.
func GiftAbortRecord(topic, ticket string, senderID, heldAt int64) *kgo.Record {
	v, _ := json.Marshal(Gift{Ticket: ticket, SenderID: senderID, HeldAt: heldAt, Abort: true})
	return &kgo.Record{Topic: topic, Key: strconv.AppendInt(nil, senderID, 10), Value: v}
}

// GiftRecord builds the gifts-topic record for an accepted gift. It is on
// the gateway's hot path, so it writes the JSON by hand into one buffer that
// holds both the value and the key (encoding/json would reflect and
// allocate several times per gift); json.Unmarshal reads it back.
func GiftRecord(topic string, g Gift) *kgo.Record {
	b := make([]byte, 0, 192+len(g.Ticket)+len(g.EffectURL))
	b = append(b, `{"ticket":`...)
	b = appendJSONString(b, g.Ticket)
	b = append(b, `,"room_id":`...)
	b = strconv.AppendInt(b, g.RoomID, 10)
	b = append(b, `,"sender_id":`...)
	b = strconv.AppendInt(b, g.SenderID, 10)
	b = append(b, `,"receiver_id":`...)
	b = strconv.AppendInt(b, g.ReceiverID, 10)
	b = append(b, `,"gift_id":`...)
	b = strconv.AppendInt(b, g.GiftID, 10)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, g.Count, 10)
	b = append(b, `,"coins":`...)
	b = strconv.AppendInt(b, g.Coins, 10)
	if g.CatalogVersion != 0 {
		b = append(b, `,"catalog_version":`...)
		b = strconv.AppendInt(b, g.CatalogVersion, 10)
	}
	b = append(b, `,"effect_url":`...)
	b = appendJSONString(b, g.EffectURL)
	b = append(b, `,"held_at":`...)
	b = strconv.AppendInt(b, g.HeldAt, 10)
	if g.IdemKey != "" {
		b = append(b, `,"idem_key":`...)
		b = appendJSONString(b, g.IdemKey)
	}
	b = append(b, `,"balance":`...)
	b = strconv.AppendInt(b, g.Balance, 10)
	b = append(b, '}')
	n := len(b)
	b = strconv.AppendInt(b, g.SenderID, 10)
	return &kgo.Record{Topic: topic, Value: b[:n:n], Key: b[n:]}
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as encoding/json does, so the output is always valid JSON.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(append(b, s[start:]...), '"')
}
