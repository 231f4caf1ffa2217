package ws

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flashgate/flashgate/internal/obs"
)

// Reasons a connection is dropped by the server (label of droppedConns).
// A client that closes its side, or a server shutdown, is not a drop.
const (
	dropSlow        = "slow"          // its send queue overflowed
	dropPongTimeout = "pong_timeout"  // no pong (or anything) within the read deadline
	dropTooLarge    = "too_large"     // it sent a frame over maxFrameSize
	dropWriteFailed = "write_failed"  // a write to it failed or timed out
	dropFlood       = "flood"         // it sent messages (pings and pongs included) faster than FLASHGATE_WS_MSG_RATE
	dropExpired     = "token_expired" // its token expired (close 4001)
)

var (
	connections = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: obs.Namespace, Subsystem: "ws", Name: "connections",
		Help: "Open WebSocket connections.",
	})
	delivered = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "ws", Name: "messages_delivered_total",
		Help: "Push messages written to a connection, by type (ticket, stock, gift).",
	}, []string{"type"})
	droppedConns = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "ws", Name: "dropped_connections_total",
		Help: "Connections closed by the server because of the client, by reason (slow, pong_timeout, too_large, write_failed, flood, token_expired).",
	}, []string{"reason"})
	refusedConns = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "ws", Name: "refused_connections_total",
		Help: "Connections refused before the upgrade because a limit was reached, by limit (per_user, per_ip, total).",
	}, []string{"limit"})
	resultAge = promauto.NewHistogram(prometheus.HistogramOpts{
		Namespace: obs.Namespace, Subsystem: "ws", Name: "result_age_seconds",
		Help:    "Time from a result's production (its Kafka timestamp) to this service reading it: the latency before ws.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	pushSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Namespace: obs.Namespace, Subsystem: "ws", Name: "push_seconds",
		Help:    "Time from reading a result to writing its push to a connection's socket, once per recipient: the latency in ws.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	writeBatch = promauto.NewHistogram(prometheus.HistogramOpts{
		Namespace: obs.Namespace, Subsystem: "ws", Name: "write_batch_messages",
		Help:    "Pushes written to a connection's socket at once: more than 1 when pushes queue up faster than the connection's writer writes them.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
	})
	consumedRecords = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "ws", Name: "consumed_records_total",
		Help: "Records read from the results topic.",
	})
	skippedRecords = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "ws", Name: "skipped_records_total",
		Help: "Results-topic records that could not be delivered to anyone, by reason (decode, unknown_type, no_target).",
	}, []string{"reason"})
)

// Resolved once so the dispatcher does not look labels up per message.
var (
	deliveredTicket = delivered.WithLabelValues(resultTicket)
	deliveredStock  = delivered.WithLabelValues(resultStock)
	deliveredGift   = delivered.WithLabelValues(resultGift)
)

func init() {
	// Pre-create the drop series so dashboards and alerts see 0, not "no data".
	for _, r := range []string{dropSlow, dropPongTimeout, dropTooLarge, dropWriteFailed} {
		droppedConns.WithLabelValues(r)
	}
}
