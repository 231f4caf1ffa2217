package ws

import "errors"

// Configuration errors returned by Run before it starts anything.
var (
	ErrNoTokenSecret = errors.New("ws: FLASHGATE_TOKEN_SECRET is empty: connections cannot be authenticated")
	ErrNoBrokers     = errors.New("ws: FLASHGATE_KAFKA_BROKERS is empty: results cannot be consumed")
	ErrNoAddr        = errors.New("ws: FLASHGATE_WS_ADDR is empty and no listener was given")
)
