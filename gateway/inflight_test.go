package gateway

import (
	"sync"
	"testing"
	"time"

	"github.com/flashgate/flashgate/internal/config"
)

// TestInflightClassesAreIsolated: requests of a class whose budget is full
// (reads stuck on a slow MySQL) are shed while orders, gifts and memory-only
// routes are still admitted; a full total sheds every class; released slots
// are taken again. Holders are real goroutines that never let go until told.
func TestInflightClassesAreIsolated(t *testing.T) {
	b := config.InflightBudgets{Total: 16, Orders: 16, Gifts: 16, Reads: 4, Payments: 2}
	f := newInflight(b, time.Millisecond)

	// 20 goroutines try to get in as reads at once; exactly 4 do, and hold.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		admitted int
		release  = make(chan struct{})
	)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !f.admit(budgetReads) {
				return
			}
			mu.Lock()
			admitted++
			mu.Unlock()
			<-release
			f.release(budgetReads)
		}()
	}
	waitUntil(t, "the reads budget to fill", func() bool { return len(f.classes[budgetReads]) == b.Reads })
	if f.admit(budgetReads) {
		t.Fatal("a read was admitted over its budget")
	}
	for _, c := range []budgetClass{budgetOrders, budgetGifts, budgetMemory, budgetPayments} {
		if !f.admit(c) {
			t.Errorf("%s shed while only reads are full", budgetNames[c])
		} else {
			f.release(c)
		}
	}

	// Fill the rest of the total with orders: then everyone is shed.
	for i := 0; i < b.Total-b.Reads; i++ {
		if !f.admit(budgetOrders) {
			t.Fatalf("order %d shed with %d of %d slots taken", i, b.Reads+i, b.Total)
		}
	}
	for c := range numBudgets {
		if f.admit(c) {
			t.Errorf("%s admitted with the total full", budgetNames[c])
			f.release(c)
		}
	}
	// A class that was shed by the total gave its own slot back.
	if n := len(f.classes[budgetGifts]); n != 0 {
		t.Errorf("gifts hold %d class slots after being shed", n)
	}
	for i := 0; i < b.Total-b.Reads; i++ {
		f.release(budgetOrders)
	}
	close(release)
	wg.Wait()
	if admitted != b.Reads {
		t.Errorf("%d reads admitted at once, want %d", admitted, b.Reads)
	}
	if len(f.total) != 0 || len(f.classes[budgetReads]) != 0 {
		t.Errorf("slots leaked: total %d, reads %d", len(f.total), len(f.classes[budgetReads]))
	}
	// A waiting request gets a slot freed within its wait.
	f = newInflight(config.InflightBudgets{Total: 4, Orders: 1, Gifts: 4, Reads: 1, Payments: 1}, time.Minute)
	if !f.admit(budgetOrders) {
		t.Fatal("first order shed")
	}
	got := make(chan bool)
	go func() { got <- f.admit(budgetOrders) }()
	time.Sleep(10 * time.Millisecond) // let it wait; the answer does not depend on it
	f.release(budgetOrders)
	if !<-got {
		t.Error("an order waiting for a slot was shed although one was freed")
	}
}

// TestRouteBudgets: the order and gift paths count against their own
// budgets, and no route that may wait on MySQL is outside reads or payments.
func TestRouteBudgets(t *testing.T) {
	want := map[string]budgetClass{
		"POST /api/v1/events/{id}/orders":         budgetOrders,
		"POST /api/v1/rooms/{room_id}/gifts":      budgetGifts,
		"GET /api/v1/events":                      budgetMemory,
		"GET /api/v1/gifts":                       budgetMemory,
		"POST /api/v1/dev/token":                  budgetMemory,
		"GET /api/v1/events/{id}":                 budgetReads,
		"GET /api/v1/tickets/{ticket}":            budgetReads,
		"GET /api/v1/rooms/{room_id}/leaderboard": budgetReads,
		"GET /api/v1/wallet":                      budgetReads,
		"POST /api/v1/pay/notify":                 budgetPayments,
		"POST /api/v1/orders/{order_no}/pay":      budgetPayments,
		"POST /api/v1/withdrawals":                budgetPayments,
	}
	for _, r := range routes {
		key := r.method + " " + r.pattern
		if w, ok := want[key]; ok && r.budget != w {
			t.Errorf("%s counts against %s, want %s", key, budgetNames[r.budget], budgetNames[w])
		}
		if _, ok := want[key]; !ok && (r.budget == budgetMemory || r.budget == budgetOrders || r.budget == budgetGifts) {
			t.Errorf("%s counts against %s: a route not known to be MySQL-free belongs to reads or payments", key, budgetNames[r.budget])
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
