package bus

import (
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
	EffectURL  string `json:"effect_url"`
	HeldAt     int64  `json:"held_at"` // unix milliseconds
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
	b = append(b, `,"effect_url":`...)
	b = appendJSONString(b, g.EffectURL)
	b = append(b, `,"held_at":`...)
	b = strconv.AppendInt(b, g.HeldAt, 10)
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
