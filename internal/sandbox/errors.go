package sandbox

import "errors"

// Errors a caller tells apart with errors.Is; each says whether asking again
// can help.
var (
	// ErrRejected means the receiver answered a notify with a 4xx other than
	// 429: the notify is wrong, so sending it again cannot help.
	ErrRejected = errors.New("notify rejected")
	// ErrKeyReused means a payout idempotency key came back with another
	// user or amount than it was first used with. Asking again cannot help:
	// the key belongs to another payout.
	ErrKeyReused = errors.New("payout idempotency key reused with different details")
	// ErrVoided means a payout's idempotency key was voided: nothing was
	// paid, and nothing will ever be paid under that key.
	ErrVoided = errors.New("payout idempotency key voided")
)
