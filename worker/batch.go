package worker

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/obs"
)

// How the writers meet failure. A transient error (MySQL or Redis cannot do
// the work right now: a lock conflict, read-only, unreachable, a timeout) is
// retried with backoff for as long as it takes; nothing is failed for it.
// Any other error is retried a few times, then the batch is split in halves
// until the one record MySQL keeps refusing is found; only that record is
// dead-lettered and its ticket fails as "invalid".

var deadLetters = promauto.NewCounterVec(prometheus.CounterOpts{
	Namespace: obs.Namespace, Subsystem: "worker", Name: "dead_letters_total",
	Help: "Records sent to a dead-letter topic, by topic.",
}, []string{"topic"})

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

// deadLetter produces a record that cannot be written to the topic's
// dead-letter topic, with the reason in a header, before its offset is
// committed.
func (w *Worker) deadLetter(ctx context.Context, topic string, value []byte, why string) error {
	rec := &kgo.Record{Topic: topic, Value: value, Headers: []kgo.RecordHeader{{Key: "reason", Value: []byte(why)}}}
	err := w.retry(ctx, "produce to the dead-letter topic", func() error {
		return w.kafka.ProduceSync(ctx, rec).FirstErr()
	})
	if err == nil {
		deadLetters.WithLabelValues(topic).Inc()
	}
	return err
}

// failPoison dead-letters a record the writer of kind m gives up on (value,
// as JSON) to topic with the reason why, and fails its ticket t as invalid
// unless it was decided already, so that it does not stay pending and its
// unit or coins come back. It returns the ticket's decision: this one (won)
// or the earlier one. Only a transient error stops it; it waits those out.
func (w *Worker) failPoison(ctx context.Context, m *kindMetrics, topic string, value any, why string, t db.NewTicket) (d db.Ticket, won bool, err error) {
	v, _ := json.Marshal(value)
	if err := w.deadLetter(ctx, topic, v, why); err != nil {
		return db.Ticket{}, false, err
	}
	t.Kind, t.Reason = m.kind, ReasonInvalid
	err = w.retry(ctx, "fail a poison "+m.kind+"'s ticket", func() (err error) {
		d, won, err = db.DecideFailed(ctx, w.mysql.DB, t)
		return err
	})
	if err != nil {
		return db.Ticket{}, false, err
	}
	if won {
		m.decided(false, ReasonInvalid)
	}
	return d, won, nil
}

// pipeline runs each chunk through three steps: claim (mark its records
// in Redis as being written, so a gateway can no longer undo them), write
// (one MySQL transaction) and publish (settle in Redis, produce the
// results). The steps of neighbouring chunks overlap: chunk k+1 is claimed
// while chunk k is written, and chunk k is published while chunk k+1 is
// written, so MySQL does not sit idle while Redis and Kafka answer. Each
// step takes the chunks one at a time and in order, so MySQL decides them
// in the log's order and the results keep it too. pipeline returns once no
// step runs any more: nil when every chunk is published, else the first
// error, and the caller then commits no offset.
//
// One after the other, a gift chunk's wall time was 77% MySQL, 7% Redis
// and 7% the results produce (phase timers in BenchmarkGiftWriterOneAnchor);
// under make bench mariadbd used 0.7 of a core during the gift writer row
// while the box had 0.8 of one idle.
func pipeline[T, C, O any](ctx context.Context, chunks [][]T,
	claim func(context.Context, []T) (C, error),
	write func(context.Context, C) (O, error),
	publish func(context.Context, O) error) error {
	type claimed struct {
		c   C
		err error
	}
	next := make(chan claimed, 1)
	stop, claimerDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(claimerDone)
		defer close(next)
		for _, chunk := range chunks {
			c, err := claim(ctx, chunk)
			select {
			case next <- claimed{c, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	published := make(chan error, 1)
	publishing := false
	waitPublish := func() error {
		if !publishing {
			return nil
		}
		publishing = false
		return <-published
	}
	var err error
	for c := range next {
		if err = c.err; err != nil {
			break
		}
		var outs O
		if outs, err = write(ctx, c.c); err != nil {
			break
		}
		if err = waitPublish(); err != nil {
			break
		}
		publishing = true
		go func() { published <- publish(ctx, outs) }()
	}
	close(stop)
	<-claimerDone
	if perr := waitPublish(); err == nil {
		err = perr
	}
	return err
}

// chunked cuts items into chunks of at most n (all in one when n < 1).
func chunked[T any](items []T, n int) [][]T {
	if n < 1 {
		n = len(items)
	}
	var out [][]T
	for len(items) > 0 {
		k := min(len(items), n)
		out, items = append(out, items[:k]), items[k:]
	}
	return out
}
