package obs

import (
	"context"
	"log/slog"
	"time"
)

// Runs says how Every runs its function. The zero value waits a tick
// before the first run and runs with ctx, without a timeout.
type Runs struct {
	Now   bool            // run once at once, before the first tick
	Base  context.Context // each run's context derives from it; nil means ctx
	Limit time.Duration   // a run's timeout; 0 means none
	Wake  <-chan struct{} // a run starts at once when it fires (nil: never)
}

// Every runs f every d, or at once when o.Wake fires, until ctx is done.
// A failed run is logged at warn with the message failed and the error,
// unless ctx ended meanwhile, and the loop goes on: the background jobs of
// the gateway and the worker (refreshes, reconcilers, relays) are retried
// by their next tick, not by a loop of their own.
func Every(ctx context.Context, d time.Duration, log *slog.Logger, failed string, f func(context.Context) error, o Runs) {
	t := time.NewTicker(d)
	defer t.Stop()
	wait := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		case <-o.Wake:
		}
		return true
	}
	base := o.Base
	if base == nil {
		base = ctx
	}
	if !o.Now && !wait() {
		return
	}
	for {
		rctx, cancel := base, context.CancelFunc(func() {})
		if o.Limit > 0 {
			rctx, cancel = context.WithTimeout(base, o.Limit)
		}
		if err := f(rctx); err != nil && ctx.Err() == nil {
			log.Warn(failed, "err", err)
		}
		cancel()
		if !wait() {
			return
		}
	}
}
