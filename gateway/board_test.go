package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashgate/flashgate/internal/apierr"
)

// fakeBoards is a leaderboard source a test controls: a query blocks while
// the source is stalled and then fails, as a MySQL that hangs and times out.
type fakeBoards struct {
	mu      sync.Mutex
	calls   int
	coins   int64
	fail    bool
	stall   chan struct{} // non-nil: queries wait for it to close, then fail
	entered chan struct{} // a query started
	running atomic.Int32
	most    atomic.Int32 // most queries seen running at once
}

func (f *fakeBoards) load(ctx context.Context, roomID int64) ([]boardEntry, error) {
	n := f.running.Add(1)
	defer f.running.Add(-1)
	for {
		m := f.most.Load()
		if n <= m || f.most.CompareAndSwap(m, n) {
			break
		}
	}
	f.mu.Lock()
	f.calls++
	stall, coins, fail := f.stall, f.coins, f.fail
	f.mu.Unlock()
	select {
	case f.entered <- struct{}{}:
	default:
	}
	if stall != nil {
		<-stall
		return nil, errors.New("i/o timeout")
	}
	if fail {
		return nil, errors.New("connection refused")
	}
	return []boardEntry{{UserID: 7, Coins: coins}}, nil
}

func (f *fakeBoards) set(fn func(f *fakeBoards)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeBoards) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func boardServer() (*Server, *fakeBoards, func(time.Duration)) {
	f := &fakeBoards{coins: 10, entered: make(chan struct{}, 1)}
	var clock atomic.Int64
	clock.Store(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	s := &Server{log: discardLogger(), now: func() time.Time { return time.Unix(0, clock.Load()) }}
	s.gifts.boards.load = f.load
	return s, f, func(d time.Duration) { clock.Add(int64(d)) }
}

func boardJSON(room, coins int64) string {
	return fmt.Sprintf(`{"room_id":%d,"top":[{"user_id":7,"coins":%d}]}`, room, coins)
}

// TestLeaderboardServesLastGoodWhileMySQLHangs: with the board stale and
// its query hanging, 200 concurrent viewers get the last good board at once
// (none waits for the query, none starts another); the hung query fails and
// its own request still gets the last good board; no query is retried
// within the TTL; after it, a query that succeeds replaces the board.
func TestLeaderboardServesLastGoodWhileMySQLHangs(t *testing.T) {
	s, f, advance := boardServer()
	if body, e := s.boardBody(1); e != nil || string(body) != boardJSON(1, 10) {
		t.Fatalf("first load: %s %v", body, e)
	}
	advance(boardTTL)
	stall := make(chan struct{})
	f.set(func(f *fakeBoards) { f.stall, f.coins = stall, 20 })
	<-f.entered // drain the first query's signal
	leader := make(chan string, 1)
	go func() {
		body, e := s.boardBody(1)
		leader <- fmt.Sprintf("%s %v", body, e)
	}()
	<-f.entered

	var wg sync.WaitGroup
	answers := make(chan string, 200)
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, e := s.boardBody(1)
			answers <- fmt.Sprintf("%s %v", body, e)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		close(stall)
		t.Fatal("viewers waited for the hung query instead of getting the last good board")
	}
	close(answers)
	for a := range answers {
		if a != boardJSON(1, 10)+" <nil>" {
			t.Fatalf("viewer during the hang got %q", a)
		}
	}
	if n := f.callCount(); n != 2 {
		t.Errorf("%d queries, want 2: viewers must not query while one query runs", n)
	}
	close(stall)
	if a := <-leader; a != boardJSON(1, 10)+" <nil>" {
		t.Errorf("the request whose query failed got %q, want the last good board", a)
	}
	f.set(func(f *fakeBoards) { f.stall = nil })
	for range 50 {
		if body, e := s.boardBody(1); e != nil || string(body) != boardJSON(1, 10) {
			t.Fatalf("after the failure, within the TTL: %s %v", body, e)
		}
	}
	if n := f.callCount(); n != 2 {
		t.Errorf("%d queries, want 2: a failed query is retried once per TTL at most", n)
	}
	advance(boardTTL)
	if body, e := s.boardBody(1); e != nil || string(body) != boardJSON(1, 20) {
		t.Errorf("after the TTL with MySQL back: %s %v", body, e)
	}
	if m := f.most.Load(); m != 1 {
		t.Errorf("%d queries ran at once, want 1", m)
	}
}

// TestLeaderboardColdRoomFailing: a room with no board yet and a failing
// MySQL answers 503, and the answers that follow within the TTL are 503
// without a query; once MySQL answers, the room gets its board.
func TestLeaderboardColdRoomFailing(t *testing.T) {
	s, f, advance := boardServer()
	f.set(func(f *fakeBoards) { f.fail = true })
	if _, e := s.boardBody(2); e != apierr.Unavailable {
		t.Fatalf("cold room, MySQL down: %v, want 503", e)
	}
	var wg sync.WaitGroup
	var not503 atomic.Int32
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, e := s.boardBody(2); e != apierr.Unavailable {
				not503.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := not503.Load(); n != 0 {
		t.Errorf("%d answers were not 503", n)
	}
	if n := f.callCount(); n != 1 {
		t.Errorf("%d queries within one TTL, want 1", n)
	}
	f.set(func(f *fakeBoards) { f.fail = false })
	advance(boardTTL)
	if body, e := s.boardBody(2); e != nil || string(body) != boardJSON(2, 10) {
		t.Errorf("after the TTL with MySQL back: %s %v", body, e)
	}
}

// TestLeaderboardFirstLoadShared: viewers arriving while a room's first
// query runs wait for it and share its answer: one query, 50 boards.
func TestLeaderboardFirstLoadShared(t *testing.T) {
	s, f, _ := boardServer()
	gate := make(chan struct{})
	slow := func(ctx context.Context, roomID int64) ([]boardEntry, error) {
		<-gate
		return f.load(ctx, roomID)
	}
	s.gifts.boards.load = slow
	var wg sync.WaitGroup
	var bad atomic.Int32
	var started sync.WaitGroup
	for range 50 {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			if body, e := s.boardBody(3); e != nil || string(body) != boardJSON(3, 10) {
				bad.Add(1)
			}
		}()
	}
	started.Wait()
	close(gate)
	wg.Wait()
	if n := bad.Load(); n != 0 {
		t.Errorf("%d of 50 viewers did not get the board", n)
	}
	if n := f.callCount(); n != 1 {
		t.Errorf("%d queries, want 1", n)
	}
}
