package e2e

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flashgate/flashgate/worker"
)

// committed sums a group's committed offsets on a topic.
func (s *system) committed(group, topic string) int64 {
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.cfg.KafkaBrokers...))
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()
	return committedRecords(cl, group, topic)
}

// committedRecords sums a group's committed offsets on a topic.
func committedRecords(cl *kgo.Client, group, topic string) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		return 0
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			sum += o.At
		}
	})
	return sum
}

// readTopic reads the first n records of a topic without a consumer group,
// as a worker that never commits would see them.
func (s *system) readTopic(topic string, n int) []*kgo.Record {
	s.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.cfg.KafkaBrokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(recs) < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			s.t.Fatalf("read %d of %d records of %s", len(recs), n, topic)
		}
		recs = append(recs, f.Records()...)
	}
	return recs
}

// crashAndRedeliver plays a worker that died before committing offsets: it
// reads the first n records of topic without a group, has one worker process
// them twice, then lets that worker's consumer group (which never saw a
// commit) consume them a third time, until the group's commits cover them.
func (s *system) crashAndRedeliver(topic, group string, n int,
	process func(*worker.Worker, context.Context, []*kgo.Record) error,
	consume func(*worker.Worker, context.Context) error) {
	s.t.Helper()
	recs := s.readTopic(topic, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := worker.New(ctx, worker.Config{Config: s.cfg}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		s.t.Fatal(err)
	}
	defer w.Close()
	for range 2 {
		if err := process(w, ctx, recs); err != nil {
			s.t.Fatal(err)
		}
	}
	wctx, wcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- consume(w, wctx) }()
	s.waitFor(group+" consumed and committed", func() bool { return s.committed(group, topic) >= int64(n) })
	wcancel()
	<-done
}

// topicEnd sums a topic's end offsets: the records ever produced to it.
func (s *system) topicEnd(topic string) int64 {
	s.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.cfg.KafkaBrokers...))
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		s.t.Fatal(err)
	}
	var sum int64
	ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
	return sum
}
