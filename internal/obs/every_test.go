package obs

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a log sink the loop's goroutine and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestEvery(t *testing.T) {
	const tick = 50 * time.Millisecond
	cases := []struct {
		name      string
		runs      Runs
		wake      bool          // fire Wake once, at once
		wantFirst time.Duration // no run before this
		wantBy    time.Duration // a run by this
	}{
		{"waits a tick first", Runs{}, false, tick / 2, 10 * tick},
		{"runs at once", Runs{Now: true}, false, 0, tick / 2},
		{"wake runs at once", Runs{}, true, 0, tick / 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			var logs lockedBuffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			wake := make(chan struct{}, 1)
			if c.wake {
				c.runs.Wake = wake
				wake <- struct{}{}
			}
			ran := make(chan time.Duration, 100)
			start := time.Now()
			done := make(chan struct{})
			go func() {
				defer close(done)
				Every(ctx, tick, log, "job failed", func(context.Context) error {
					ran <- time.Since(start)
					return errors.New("boom")
				}, c.runs)
			}()
			select {
			case at := <-ran:
				if at < c.wantFirst {
					t.Errorf("first run after %v, want none before %v", at, c.wantFirst)
				}
				if at > c.wantBy {
					t.Errorf("first run after %v, want one by %v", at, c.wantBy)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("no run")
			}
			cancel()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				t.Fatal("Every did not return when ctx ended")
			}
			if !strings.Contains(logs.String(), `msg="job failed" err=boom`) {
				t.Errorf("the failed run was not logged: %q", logs.String())
			}
		})
	}
}

func TestEveryRunContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Every(ctx, time.Hour, slog.New(slog.DiscardHandler), "", func(rctx context.Context) error {
			// A run in hand when ctx ends goes on (it has Base's context),
			// within Limit.
			cancel()
			if rctx.Err() != nil {
				t.Error("the run's context ended with ctx; it derives from Base")
			}
			if dl, ok := rctx.Deadline(); !ok || time.Until(dl) > time.Minute {
				t.Errorf("the run's deadline is %v (%v), want within Limit", dl, ok)
			}
			return nil
		}, Runs{Now: true, Base: context.Background(), Limit: time.Minute})
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Every did not return when ctx ended")
	}
}
