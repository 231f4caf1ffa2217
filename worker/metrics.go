package worker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flashgate/flashgate/internal/obs"
)

// The order and gift writers and reconcilers are watched with the same
// families, told apart by a kind label ("order" or "gift"), as centrifugo's
// consumers share theirs by consumer_name. The children of each kind are
// resolved once (kindMetrics), so a batch or a ticket costs no label lookup.

var (
	batchRecords = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "batch_records",
		Help:    "Records per polled batch, by kind: order (the orders topic) or gift (the gifts topic).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	}, []string{"kind"})
	ticketsDecided = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "tickets_total",
		Help: "Tickets decided, by kind (order or gift), status and reason (replays of decided tickets are not counted).",
	}, []string{"kind", "status", "reason"})
	commitSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "mysql_commit_seconds",
		Help:    "Time to write one batch to MySQL, by kind: one event's orders (order) or one chunk of gifts (gift).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	}, []string{"kind"})
	redecided = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "batches_redecided_total",
		Help: "Batches of orders (kind=order) or gifts (kind=gift) a unique key refused on their first write (a redelivery, or a buyer who holds a unit), decided again with MySQL's reads.",
	}, []string{"kind"})
	abortMarkers = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "abort_markers_total",
		Help: "Abort markers sent for reservations (kind=order) and gift holds (kind=gift) that waited longer than FLASHGATE_PENDING_TIMEOUT.",
	}, []string{"kind"})
	oldestPending = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "oldest_pending_seconds",
		Help: "Age of the oldest reservation (kind=order) or gift hold (kind=gift) still pending, by Redis's clock, as of the last reconcile; 0 when none. Above FLASHGATE_PENDING_TIMEOUT and rising: the writers are stuck or far behind.",
	}, []string{"kind"})
)

// The children of each kind.
var (
	orderMetrics = newKindMetrics("order", ReasonSoldOut, ReasonAlreadyPurchased, ReasonAborted, ReasonNotFound, ReasonTimeout, ReasonInvalid)
	giftMetrics  = newKindMetrics("gift", ReasonAborted, ReasonTimeout, ReasonInvalid, ReasonInsufficientBalance, ReasonDuplicate)
)

// kindMetrics are the worker's metrics of one kind of ticket.
type kindMetrics struct {
	kind          string
	batchRecords  prometheus.Observer
	commitSeconds prometheus.Observer
	redecided     prometheus.Counter
	abortMarkers  prometheus.Counter
	oldestPending prometheus.Gauge
	succeeded     prometheus.Counter
	failed        map[string]prometheus.Counter // by reason; read-only once built
}

// newKindMetrics resolves kind's children, failed ones for each of reasons.
func newKindMetrics(kind string, reasons ...string) *kindMetrics {
	m := &kindMetrics{
		kind:          kind,
		batchRecords:  batchRecords.WithLabelValues(kind),
		commitSeconds: commitSeconds.WithLabelValues(kind),
		redecided:     redecided.WithLabelValues(kind),
		abortMarkers:  abortMarkers.WithLabelValues(kind),
		oldestPending: oldestPending.WithLabelValues(kind),
		succeeded:     ticketsDecided.WithLabelValues(kind, "succeeded", ""),
		failed:        make(map[string]prometheus.Counter, len(reasons)),
	}
	for _, r := range reasons {
		m.failed[r] = ticketsDecided.WithLabelValues(kind, "failed", r)
	}
	return m
}

// decided counts a new decision.
func (m *kindMetrics) decided(succeeded bool, reason string) {
	switch c, ok := m.failed[reason]; {
	case succeeded:
		m.succeeded.Inc()
	case ok:
		c.Inc()
	default: // a reason not listed at init
		ticketsDecided.WithLabelValues(m.kind, "failed", reason).Inc()
	}
}

// setOldest sets the oldest-pending gauge: now - oldest, or 0 when there
// is none (ok false).
func (m *kindMetrics) setOldest(now, oldest time.Time, ok bool) {
	age := 0.0
	if ok {
		age = max(0, now.Sub(oldest).Seconds())
	}
	m.oldestPending.Set(age)
}
