package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// TicketTTL is how long Redis keeps what it knows of a ticket when there is
// no event to tie it to (warm.lua gives an event's tickets the event's
// life); MySQL keeps outcomes forever.
const TicketTTL = 24 * time.Hour

var ticketTTL = strconv.Itoa(int(TicketTTL / time.Second))

// IdemTTL is how long an Idempotency-Key's answer is kept (docs/openapi.yaml,
// parameter IdempotencyKey: 24 hours).
const IdemTTL = 24 * time.Hour

var idemTTL = strconv.Itoa(int(IdemTTL / time.Second))

// NewOrderTicket returns a fresh ticket for an order on event id:
// "o<event id>-<16 hex digits>".
func NewOrderTicket(eventID int64) string { return newTicket('o', eventID) }

// newTicket returns "<kind><id>-<16 random hex digits>": the id names the
// Redis slot of the ticket's keys, the random part makes it unguessable.
func newTicket(kind byte, id int64) string {
	var b [8]byte
	rand.Read(b[:])
	buf := make([]byte, 0, 40)
	buf = append(buf, kind)
	buf = strconv.AppendInt(buf, id, 10)
	buf = append(buf, '-')
	buf = hex.AppendEncode(buf, b[:])
	return string(buf)
}

// ParseOrderTicket returns the event id of an order ticket.
func ParseOrderTicket(t string) (eventID int64, ok bool) {
	kind, id, ok := ParseTicket(t)
	return id, ok && kind == "order"
}

// OrderNo derives the order number from the ticket, so a redelivered order
// message always produces the same order number.
func OrderNo(ticket string) string {
	return "FG" + strings.ToUpper(ticket[strings.IndexByte(ticket, '-')+1:])
}

// NewGiftTicket returns a fresh ticket for a gift from the sender:
// "g<sender id>-<16 hex digits>".
func NewGiftTicket(senderID int64) string { return newTicket('g', senderID) }

// ParseTicket returns a ticket's kind ("order" or "gift") and the id it is
// keyed by: the event id of an order, the sender id of a gift.
func ParseTicket(t string) (kind string, id int64, ok bool) {
	if len(t) < 4 || len(t) > 64 {
		return "", 0, false
	}
	switch t[0] {
	case 'o':
		kind = "order"
	case 'g':
		kind = "gift"
	default:
		return "", 0, false
	}
	dash := strings.IndexByte(t, '-')
	if dash < 2 || len(t)-dash-1 != 16 {
		return "", 0, false
	}
	id, err := strconv.ParseInt(t[1:dash], 10, 64)
	if err != nil || id <= 0 || t[1] == '0' {
		return "", 0, false
	}
	for _, c := range t[dash+1:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", 0, false
		}
	}
	return kind, id, true
}

// TicketState is what Redis knows of a ticket. In the event's tickets hash
// it is one field per ticket, "status|user|created ms|reason|order
// no|marked ms", written by reserve.lua and moved on by claim, settle,
// compensate and mark_pending.
type TicketState struct {
	UserID    int64
	Status    string // pending, committing, aborted, succeeded, failed
	Reason    string
	OrderNo   string
	CreatedAt time.Time
	Marked    bool // the reconciler sent an abort marker for it
}

// ErrNoTicket means Redis does not know the ticket.
var ErrNoTicket = errors.New("ticket not in Redis")

// Ticket reads a ticket's state.
func (s *Redis) Ticket(ctx context.Context, eventID int64, ticket string) (TicketState, error) {
	v, err := s.c.Do(ctx, s.c.B().Hget().Key(TicketsKey(eventID)).Field(ticket).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return TicketState{}, ErrNoTicket
	}
	if err != nil {
		return TicketState{}, err
	}
	st, ok := parseTicketState(v)
	if !ok {
		return TicketState{}, ErrNoTicket
	}
	return st, nil
}

// parseTicketState reads a tickets hash field; ok is false when it names
// no owner.
func parseTicketState(v string) (TicketState, bool) {
	var f [6]string
	for i := range f {
		var ok bool
		if f[i], v, ok = strings.Cut(v, "|"); !ok {
			break
		}
	}
	uid, _ := strconv.ParseInt(f[1], 10, 64)
	if uid <= 0 {
		return TicketState{}, false
	}
	ms, _ := strconv.ParseInt(f[2], 10, 64)
	return TicketState{UserID: uid, Status: f[0], Reason: f[3], OrderNo: f[4], CreatedAt: time.UnixMilli(ms).UTC(), Marked: f[5] != ""}, true
}

// idemAnswerKey is the key of the answer to a user's request with an
// Idempotency-Key in scope (an admin route: "admin-event").
func idemAnswerKey(userID int64, scope, key string) string {
	return userTag(userID) + ":idem:" + scope + ":" + key
}

// IdemAnswer returns the answer kept for an earlier request of the user
// with the Idempotency-Key in scope; ok is false when there is none or
// Redis could not say.
func (s *Redis) IdemAnswer(ctx context.Context, userID int64, scope, key string) (answer []byte, ok bool) {
	b, err := s.c.Do(ctx, s.c.B().Get().Key(idemAnswerKey(userID, scope, key)).Build()).AsBytes()
	return b, err == nil
}

// SaveIdemAnswer keeps the answer to the user's request with the
// Idempotency-Key in scope for IdemTTL.
func (s *Redis) SaveIdemAnswer(ctx context.Context, userID int64, scope, key string, answer []byte) error {
	return s.c.Do(ctx, s.c.B().Set().Key(idemAnswerKey(userID, scope, key)).Value(string(answer)).Ex(IdemTTL).Build()).Error()
}
