package worker

import (
	"context"
	"errors"
	"time"

	"github.com/flashgate/flashgate/internal/db"
)

// How the writers meet failure. A transient error (MySQL or Redis cannot do
// the work right now: a lock conflict, read-only, unreachable, a timeout) is
// retried with backoff for as long as it takes; nothing is failed for it.
// Any other error is retried a few times, then the batch is split in halves
// until the one record MySQL keeps refusing is found; only that record is
// dead-lettered and its ticket fails as "invalid".

// maxAttempts is how often a batch that fails with a non-transient error is
// tried before it is split, or, alone, treated as poison.
const maxAttempts = 4

// maxBackoff caps the wait between attempts.
const maxBackoff = 5 * time.Second

// errStopped means the worker's context ended before the work was done: the
// batch stays uncommitted and is redelivered.
var errStopped = errors.New("worker stopped")

// sleep waits d, or less if ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// transient reports whether err is one that waiting cures: one db.IsTransient
// knows, or any error while MySQL does not answer a ping.
func (w *Worker) transient(ctx context.Context, err error) bool {
	if db.IsTransient(err) {
		return true
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return w.mysql.DB.PingContext(pctx) != nil
}

// retry runs f until it succeeds or ctx ends, backing off up to maxBackoff.
// For steps that fail only while a dependency is unwell (Redis, Kafka, a
// single-row MySQL write), never for anything a record could cause.
func (w *Worker) retry(ctx context.Context, what string, f func() error) error {
	backoff := 50 * time.Millisecond
	for n := 1; ; n++ {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return errStopped
		}
		if n == 1 || n%20 == 0 {
			w.log.Warn("cannot "+what+"; retrying", "attempt", n, "backoff", backoff, "err", err)
		}
		if !sleep(ctx, backoff) {
			return errStopped
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// writeBatch writes items with write, and returns their outcomes in order.
// Transient errors are retried without limit; other errors maxAttempts
// times, then the batch is split and each half written (first half first,
// so log order holds); a single item that still fails goes to poison, which
// must decide it without MySQL's help beyond recording the failure.
func writeBatch[T, O any](ctx context.Context, w *Worker, what string, items []T,
	write func(context.Context, []T) ([]O, error), poison func(context.Context, T, error) (O, error)) ([]O, error) {
	backoff := 50 * time.Millisecond
	for n := 1; ; {
		outs, err := write(ctx, items)
		if err == nil {
			return outs, nil
		}
		if ctx.Err() != nil {
			return nil, errStopped
		}
		if w.transient(ctx, err) {
			w.log.Warn("cannot "+what+"; MySQL is unavailable, retrying", "records", len(items), "backoff", backoff, "err", err)
		} else if n++; n > maxAttempts {
			if len(items) == 1 {
				w.log.Error("giving up on a record MySQL keeps refusing: "+what, "attempts", maxAttempts, "err", err)
				o, err := poison(ctx, items[0], err)
				return []O{o}, err
			}
			w.log.Warn("a batch keeps failing: "+what+"; splitting it to find the bad record", "records", len(items), "err", err)
			h := len(items) / 2
			a, err := writeBatch(ctx, w, what, items[:h], write, poison)
			if err != nil {
				return nil, err
			}
			b, err := writeBatch(ctx, w, what, items[h:], write, poison)
			if err != nil {
				return nil, err
			}
			return append(a, b...), nil
		} else {
			w.log.Warn("cannot "+what+"; retrying", "attempt", n-1, "records", len(items), "err", err)
		}
		if !sleep(ctx, backoff) {
			return nil, errStopped
		}
		backoff = min(backoff*2, maxBackoff)
	}
}
