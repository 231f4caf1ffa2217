package wallet

import (
	"context"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/obs"
)

// Loader batches the MySQL reads of concurrent wallet loads. When a crowd
// sends its first gifts, every sender's wallet is cold: one read each
// would be a statement per gift on the request path. Instead, while
// loaderReads reads are in flight, the loads that arrive queue, and the
// next read takes the whole queue (up to loaderBatch) in one statement. A
// lone load waits for nothing: batches grow only with the crowd.
type Loader struct {
	DB *sqlx.DB

	mu      sync.Mutex
	queue   []*loadReq
	reading int // reads in flight

	beforeRead func(n int) // a test's hook, before each read's statement of n loads
	reads      int         // statements run, under mu
}

const (
	loaderReads = 2   // reads in flight at once
	loaderBatch = 200 // most users one read asks for
	// loaderTimeout bounds a batch's read; a load whose own context ends
	// first stops waiting for it.
	loaderTimeout = 5 * time.Second
)

type loadReq struct {
	user  int64
	since time.Time // Idempotency-Keys since then
	done  chan loadResult
}

type loadResult struct {
	snap db.WalletSnapshot
	err  error
}

// Snapshot reads the user's wallet snapshot (db.ReadWalletSnapshot, with
// the recent credits and the Idempotency-Keys since idemSince), in a batch
// with the other loads of the moment.
func (l *Loader) Snapshot(ctx context.Context, userID int64, idemSince time.Time) (db.WalletSnapshot, error) {
	r := &loadReq{user: userID, since: idemSince, done: make(chan loadResult, 1)}
	l.mu.Lock()
	l.queue = append(l.queue, r)
	start := l.reading < loaderReads
	if start {
		l.reading++
	}
	l.mu.Unlock()
	if start {
		go l.read()
	}
	select {
	case res := <-r.done:
		return res.snap, res.err
	case <-ctx.Done():
		return db.WalletSnapshot{}, ctx.Err()
	}
}

// read reads batches from the queue until it is empty.
func (l *Loader) read() {
	for {
		l.mu.Lock()
		n := min(len(l.queue), loaderBatch)
		if n == 0 {
			l.reading--
			l.mu.Unlock()
			return
		}
		batch := make([]*loadReq, n)
		copy(batch, l.queue)
		l.queue = append(l.queue[:0], l.queue[n:]...)
		l.reads++
		hook := l.beforeRead
		l.mu.Unlock()
		if hook != nil {
			hook(n)
		}

		users := make([]int64, 0, n)
		seen := make(map[int64]bool, n)
		since := batch[0].since
		for _, r := range batch {
			if !seen[r.user] {
				seen[r.user] = true
				users = append(users, r.user)
			}
			if r.since.Before(since) {
				since = r.since
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), loaderTimeout)
		snaps, err := db.ReadWalletSnapshots(ctx, l.DB, users, creditWindow, since)
		cancel()
		loaderBatchSize.Observe(float64(len(users)))
		for _, r := range batch {
			r.done <- loadResult{snaps[r.user], err}
		}
	}
}

var loaderBatchSize = promauto.NewHistogram(prometheus.HistogramOpts{
	Namespace: obs.Namespace, Subsystem: "wallet", Name: "load_batch_users",
	Help:    "Wallets read from MySQL by one statement of the batched loader (a crowd's first gifts).",
	Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 200},
})
