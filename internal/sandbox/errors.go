package sandbox

import "errors"

// Errors.
var (
	// ErrRejected means the receiver answered a notify with a 4xx other than
	// 429: the notify is wrong, so sending it again cannot help.
	ErrRejected = errors.New("notify rejected")
	// ErrKeyReused means a payout idempotency key came back with another
	// user or amount than it was first used with.
	ErrKeyReused = errors.New("payout idempotency key reused with different details")
)
