package worker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// TestSuperviseRestarts: a consume loop that ends with an error is started
// again, and the worker says it is not consuming while it waits to; a loop
// that ends because the worker stops is not restarted.
func TestSuperviseRestarts(t *testing.T) {
	w := &Worker{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	c := w.newConsumer("test", "test-group")
	if w.notConsuming() == nil {
		t.Fatal("a consumer that never ran counts as consuming")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runs atomic.Int32
	downSeen := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		done <- w.supervise(ctx, c, func(ctx context.Context) error {
			switch runs.Add(1) {
			case 1:
				return errors.New("fetch loop died")
			case 2:
				return nil // ended without an error: still not a reason to stop
			}
			<-ctx.Done()
			return nil
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for runs.Load() < 3 && time.Now().Before(deadline) {
		if err := w.notConsuming(); err != nil {
			select {
			case downSeen <- err:
			default:
			}
		}
		time.Sleep(time.Millisecond)
	}
	if runs.Load() < 3 {
		t.Fatalf("the loop ran %d times, want it restarted twice", runs.Load())
	}
	select {
	case err := <-downSeen:
		t.Logf("while restarting: %v", err)
	default:
		t.Error("readiness never said the consumer was down while it restarted")
	}
	time.Sleep(10 * time.Millisecond)
	if err := w.notConsuming(); err != nil {
		t.Errorf("consuming again, but: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("supervise returned %v on shutdown", err)
	}
	if runs.Load() != 3 {
		t.Errorf("restarted after shutdown: %d runs", runs.Load())
	}
}
