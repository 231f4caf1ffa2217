package worker

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flashgate/flashgate/internal/obs"
)

// The worker's consume loops (orders, gifts, payouts) share one shape:
// poll, process until durable, commit the offsets, repeat. A loop that ends
// for any reason but shutdown is started again after a backoff, and the
// worker reports not ready while any loop is not consuming, so a consumer
// can no longer die silently while its process looks healthy.

var (
	consumerUp = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "consumer_up",
		Help: "1 while the consume loop runs, 0 while it is restarting after a failure.",
	}, []string{"consumer"})
	consumerRestarts = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "consumer_restarts_total",
		Help: "Consume loops that ended with an error and were started again.",
	}, []string{"consumer"})
	consumerLag = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "consumer_lag_records",
		Help: "Records of a partition that the group has not committed yet (end offset minus committed offset).",
	}, []string{"group", "topic", "partition"})
	lastCommitAge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "last_commit_age_seconds",
		Help: "Seconds since this process last committed offsets for the group (-1: never). Alert when it grows while the group's lag is above zero.",
	}, []string{"group"})
)

// consumer is the state of one consume loop, for readiness and metrics.
type consumer struct {
	name       string
	group      string
	up         atomic.Bool
	lastCommit atomic.Int64 // unix nanoseconds
}

func (w *Worker) newConsumer(name, group string) *consumer {
	c := &consumer{name: name, group: group}
	w.consumers = append(w.consumers, c)
	consumerUp.WithLabelValues(name).Set(0)
	return c
}

// notConsuming returns an error naming the first consume loop that is down.
func (w *Worker) notConsuming() error {
	for _, c := range w.consumers {
		if !c.up.Load() {
			return fmt.Errorf("the %s consumer is not consuming", c.name)
		}
	}
	return nil
}

// supervise runs a consume loop until ctx ends, starting it again with
// backoff whenever it returns for another reason.
func (w *Worker) supervise(ctx context.Context, c *consumer, run func(ctx context.Context) error) error {
	backoff := time.Second
	for {
		c.up.Store(true)
		consumerUp.WithLabelValues(c.name).Set(1)
		err := run(ctx)
		c.up.Store(false)
		consumerUp.WithLabelValues(c.name).Set(0)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("returned without an error")
		}
		consumerRestarts.WithLabelValues(c.name).Inc()
		w.log.Error("consumer stopped; starting it again", "consumer", c.name, "in", backoff, "err", err)
		if !sleep(ctx, backoff) {
			return nil
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// pollChunks is how many of FLASHGATE_WORKER_BATCH the order and gift
// writers poll at once: a poll's chunks are written one after the other,
// each published while the next is written (behind), so the fewer polls,
// the less MySQL waits for the last chunk's publish, the offset commit and
// the poll itself.
const pollChunks = 4

// consume polls up to max records, processes them, and commits their
// offsets once process has made them durable. Polling stops when ctx ends;
// the batch in hand is processed with the worker's work context, which
// outlives ctx by the shutdown timeout, so a SIGTERM finishes and commits
// it instead of abandoning it. Rebalances wait while a batch is in hand
// (BlockRebalanceOnPoll), so no other member gets records this one is
// writing. It returns nil when ctx ends, and process's error otherwise.
func (w *Worker) consume(ctx context.Context, cl *kgo.Client, c *consumer, max int, process func(context.Context, []*kgo.Record) error) error {
	for {
		fetches := cl.PollRecords(ctx, max)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			cl.AllowRebalance()
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			w.log.Warn("fetch error", "consumer", c.name, "topic", t, "partition", p, "err", err)
		})
		recs := fetches.Records()
		if len(recs) == 0 {
			cl.AllowRebalance()
			continue
		}
		if err := process(w.work, recs); err != nil {
			cl.AllowRebalance()
			if errors.Is(err, errStopped) {
				return nil // shutdown ran out of time: the batch is redelivered
			}
			return err
		}
		cctx, cancel := context.WithTimeout(w.work, 10*time.Second)
		if err := cl.CommitRecords(cctx, recs...); err != nil {
			w.log.Warn("offset commit failed; the batch may be redelivered", "consumer", c.name, "err", err)
		} else {
			c.lastCommit.Store(time.Now().UnixNano())
		}
		cancel()
		cl.AllowRebalance()
	}
}

// reportLag refreshes the lag and commit-age gauges of the worker's groups.
func (w *Worker) reportLag(ctx context.Context) error {
	for _, c := range w.consumers {
		age := -1.0
		if at := c.lastCommit.Load(); at != 0 {
			age = time.Since(time.Unix(0, at)).Seconds()
		}
		lastCommitAge.WithLabelValues(c.group).Set(age)
	}
	groups := make([]string, 0, len(w.consumers))
	for _, c := range w.consumers {
		groups = append(groups, c.group)
	}
	lags, err := kadm.NewClient(w.kafka).Lag(ctx, groups...)
	if err != nil {
		return fmt.Errorf("cannot read consumer lag: %w", err)
	}
	lags.Each(func(l kadm.DescribedGroupLag) {
		for _, m := range l.Lag.Sorted() {
			if m.Err == nil {
				consumerLag.WithLabelValues(l.Group, m.Topic, fmt.Sprint(m.Partition)).Set(float64(m.Lag))
			}
		}
	})
	return nil
}
