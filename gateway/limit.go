package gateway

import (
	"context"
	"time"
)

// RateClass groups routes that share a per-user rate limit.
type RateClass int

// Rate classes.
const (
	ClassOther RateClass = iota
	ClassOrder
	ClassGift
	ClassPay
)

// Limiter is the seam for per-user rate limits: Allow returns 0 to let a
// request through, or how long the user must wait. An error lets the request
// through (a limiter outage must not stop the sale) and is logged.
type Limiter interface {
	Allow(ctx context.Context, userID int64, class RateClass) (retryAfter time.Duration, err error)
}

type allowAll struct{}

func (allowAll) Allow(context.Context, int64, RateClass) (time.Duration, error) { return 0, nil }
