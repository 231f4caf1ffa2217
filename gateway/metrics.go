package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flashgate/flashgate/internal/obs"
)

// The order and gift paths are watched with the same families, told apart
// by a kind label ("order" or "gift"). Each path resolves its children once
// (orderResults, giftResults, orderLuaSeconds, giftLuaSeconds):
// WithLabelValues on every request would allocate on the hot path.
var (
	ticketsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "gateway", Name: "tickets_total",
		Help: "Order (kind=order) and gift (kind=gift) requests by result: accepted, or the reason they were rejected.",
	}, []string{"kind", "result"})
	luaSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: obs.Namespace, Subsystem: "gateway", Name: "lua_seconds",
		Help:    "Latency of the script that takes a ticket's unit or coins: reserve (kind=order) or gift_hold (kind=gift).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
	}, []string{"kind"})
)
