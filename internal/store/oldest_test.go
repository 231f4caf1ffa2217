package store

import (
	"context"
	"testing"
	"time"

	"github.com/flashgate/flashgate/internal/testenv"
)

// The oldest-pending gauges read what the reconcilers watch: the oldest
// reservation and the oldest gift hold still pending, and nothing once
// they are settled.
func TestOldestPending(t *testing.T) {
	s, err := New(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.SyncClock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.OldestReservation(ctx, []int64{1, 2}); err != nil || ok {
		t.Fatalf("before any reservation: %v %v", ok, err)
	}
	if _, ok, err := s.OldestHold(ctx); err != nil || ok {
		t.Fatalf("before any hold: %v %v", ok, err)
	}

	const ev = 2
	if _, err := s.Warm(ctx, ev, 10, time.Now().Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	first := NewOrderTicket(ev)
	before := s.Clock()
	if r, err := s.Reserve(ctx, ev, 1, first, ""); err != nil || r.Status != Reserved {
		t.Fatalf("reserve: %+v %v", r, err)
	}
	second := NewOrderTicket(ev)
	if r, err := s.Reserve(ctx, ev, 2, second, ""); err != nil || r.Status != Reserved {
		t.Fatalf("reserve: %+v %v", r, err)
	}
	at, ok, err := s.OldestReservation(ctx, []int64{1, ev})
	if err != nil || !ok || at.Before(before.Add(-time.Second)) || at.After(s.Clock()) {
		t.Fatalf("oldest reservation %v %v %v, want about %v", at, ok, err, before)
	}
	if err := s.Settle(ctx, []Outcome{
		{EventID: ev, UserID: 1, Ticket: first, Succeeded: true, OrderNo: OrderNo(first)},
		{EventID: ev, UserID: 2, Ticket: second, Succeeded: true, OrderNo: OrderNo(second)},
	}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.OldestReservation(ctx, []int64{ev}); err != nil || ok {
		t.Fatalf("after the settle: %v %v, want none pending", ok, err)
	}

	const sender = 77
	if _, err := s.FinishWalletLoad(ctx, sender, 100, nil); err != nil {
		t.Fatal(err)
	}
	ticket := NewGiftTicket(sender)
	if r, err := s.HoldGift(ctx, sender, ticket, 5, "", Limit{}); err != nil || r.Status != Held {
		t.Fatalf("hold: %+v %v", r, err)
	}
	if at, ok, err := s.OldestHold(ctx); err != nil || !ok || at.Before(before.Add(-time.Second)) || at.After(s.Clock()) {
		t.Fatalf("oldest hold %v %v %v, want about %v", at, ok, err, before)
	}
}
