package worker

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// ticketsValue reads flashgate_worker_tickets_total{kind,status,reason} as
// /metrics serves it, 0 when absent.
func ticketsValue(t *testing.T, kind, status, reason string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"kind": kind, "status": status, "reason": reason}
	for _, mf := range mfs {
		if mf.GetName() != "flashgate_worker_tickets_total" {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestKindMetricsDecided: a decision is counted in tickets_total under its
// kind, status and reason, whether or not the reason was resolved at init,
// and the pre-resolved children do not allocate.
func TestKindMetricsDecided(t *testing.T) {
	cases := []struct {
		m         *kindMetrics
		succeeded bool
		reason    string
		status    string
	}{
		{orderMetrics, true, "", "succeeded"},
		{orderMetrics, false, ReasonSoldOut, "failed"},
		{giftMetrics, true, "", "succeeded"},
		{giftMetrics, false, ReasonInsufficientBalance, "failed"},
		{giftMetrics, false, "a_reason_not_listed", "failed"},
	}
	for _, c := range cases {
		other := "gift"
		if c.m.kind == "gift" {
			other = "order"
		}
		before, otherBefore := ticketsValue(t, c.m.kind, c.status, c.reason), ticketsValue(t, other, c.status, c.reason)
		c.m.decided(c.succeeded, c.reason)
		if got := ticketsValue(t, c.m.kind, c.status, c.reason) - before; got != 1 {
			t.Errorf("%s %s %q: counted %v, want 1", c.m.kind, c.status, c.reason, got)
		}
		if got := ticketsValue(t, other, c.status, c.reason) - otherBefore; got != 0 {
			t.Errorf("%s %s %q: counted %v under kind %s", c.m.kind, c.status, c.reason, got, other)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		orderMetrics.decided(true, "")
		giftMetrics.decided(false, ReasonTimeout)
	}); n != 0 {
		t.Errorf("a pre-resolved decision allocates %v times", n)
	}
}
