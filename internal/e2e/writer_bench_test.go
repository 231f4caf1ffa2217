package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/store"
	"github.com/flashgate/flashgate/internal/testenv"
	"github.com/flashgate/flashgate/worker"
)

// The write side, measured: a backlog of records already in Kafka, drained
// by one worker into MariaDB. Each benchmark reports records per second
// (gifts/s, orders/s) and checks what it wrote.

const writerBacklog = 20_000

// BenchmarkGiftWriterOneAnchor: 20,000 one-coin gifts from distinct
// senders, all to one anchor, the hottest wallet row there is.
func BenchmarkGiftWriterOneAnchor(b *testing.B) {
	for range b.N {
		b.StopTimer()
		cfg, _ := testenv.ConfigKafka(b)
		d := benchDB(b, cfg.MySQLDSN)
		var sb strings.Builder
		sb.WriteString("INSERT INTO wallets (user_id, balance) VALUES ")
		for i := range writerBacklog {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, "(%d, 5)", 100_000+i)
		}
		if _, err := d.Exec(sb.String()); err != nil {
			b.Fatal(err)
		}
		recs := make([]*kgo.Record, writerBacklog)
		for i := range recs {
			sender := int64(100_000 + i)
			recs[i] = bus.GiftRecord(cfg.GiftsTopic(), bus.Gift{Ticket: store.NewGiftTicket(sender), RoomID: 1, SenderID: sender,
				ReceiverID: 7, GiftID: 1, Count: 1, Coins: 1, HeldAt: time.Now().UnixMilli()})
		}
		benchProduce(b, cfg.KafkaBrokers, recs)
		w := benchWorker(b, worker.Config{Config: cfg})
		b.StartTimer()
		took := benchDrain(b, d, func(ctx context.Context) error { return w.ConsumeGifts(ctx) })
		b.StopTimer()
		b.ReportMetric(writerBacklog/took.Seconds(), "gifts/s")
		var earned int
		if err := d.Get(&earned, "SELECT earnings FROM wallets WHERE user_id = 7"); err != nil || earned != writerBacklog {
			b.Fatalf("anchor earned %d (%v), want %d", earned, err, writerBacklog)
		}
	}
}

// BenchmarkOrderWriter: 20,000 orders of one event with enough stock.
func BenchmarkOrderWriter(b *testing.B) {
	for range b.N {
		b.StopTimer()
		cfg, _ := testenv.ConfigKafka(b)
		d := benchDB(b, cfg.MySQLDSN)
		ev, err := db.Store{DB: d}.CreateEvent(context.Background(), "bench", 100, writerBacklog, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		recs := make([]*kgo.Record, writerBacklog)
		for i := range recs {
			recs[i] = bus.OrderRecord(cfg.OrdersTopic(), bus.Order{Ticket: store.NewOrderTicket(ev.ID), EventID: ev.ID,
				UserID: int64(100_000 + i), Price: 100, ReservedAt: time.Now().UnixMilli()})
		}
		benchProduce(b, cfg.KafkaBrokers, recs)
		w := benchWorker(b, worker.Config{Config: cfg})
		b.StartTimer()
		took := benchDrain(b, d, func(ctx context.Context) error { return w.ConsumeOrders(ctx) })
		b.StopTimer()
		b.ReportMetric(writerBacklog/took.Seconds(), "orders/s")
		var left int
		if err := d.Get(&left, "SELECT stock FROM events WHERE id = ?", ev.ID); err != nil || left != 0 {
			b.Fatalf("stock left %d (%v), want 0", left, err)
		}
	}
}

func benchDB(b *testing.B, dsn string) *sqlx.DB {
	d, err := db.Open(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}

func benchProduce(b *testing.B, brokers []string, recs []*kgo.Record) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
}

func benchWorker(b *testing.B, cfg worker.Config) *worker.Worker {
	w, err := worker.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.Close)
	return w
}

// benchDrain runs consume until every record of the backlog has a ticket
// in MySQL, and returns how long that took.
func benchDrain(b *testing.B, d *sqlx.DB, consume func(context.Context) error) time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	began := time.Now()
	go func() { done <- consume(ctx) }()
	for {
		var n int
		if err := d.Get(&n, "SELECT COUNT(*) FROM tickets"); err != nil {
			b.Fatal(err)
		}
		if n >= writerBacklog {
			break
		}
		if time.Since(began) > 5*time.Minute {
			b.Fatalf("%d of %d records written after 5 minutes", n, writerBacklog)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(began)
	cancel()
	<-done
	return took
}
