package worker

import "context"

// runPayouts relays the withdrawal outbox and pays withdrawals out: being built (issue 3).
func (w *Worker) runPayouts(ctx context.Context) error { <-ctx.Done(); return nil }
