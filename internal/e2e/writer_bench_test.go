package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/config"
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
		took := benchDrain(b, d, cfg, worker.GiftGroupName(cfg), func(ctx context.Context) error { return w.ConsumeGifts(ctx) })
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
		ev, err := db.MySQL{DB: d}.CreateEvent(context.Background(), "bench", 100, writerBacklog, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
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
		took := benchDrain(b, d, cfg, worker.GroupName(cfg), func(ctx context.Context) error { return w.ConsumeOrders(ctx) })
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

// benchDrain runs consume until the writers' group has committed every
// record of the backlog (the worker commits offsets only after MySQL
// committed and the outcomes were published), and returns how long that
// took. It asks the broker, not MySQL, so that the polling costs MariaDB
// nothing: a COUNT(*) over the tickets every 20 ms was a tenth of
// mariadbd's time. When MariaDB runs on this machine it also reports the
// CPU time mariadbd spent per record ("mysqld-µs/rec"), and this process's
// ("self-µs/rec": the worker and the in-process kfake broker): the writers
// are bound by the two, and on a shared 2-core box CPU time moves far less
// with the neighbours than wall time does.
func benchDrain(b *testing.B, d *sqlx.DB, cfg config.Config, group string, consume func(context.Context) error) time.Duration {
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.KafkaBrokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	cpu := mysqldCPU(d)
	before, selfBefore := cpu(), selfCPU()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	began := time.Now()
	go func() { done <- consume(ctx) }()
	for {
		lags, err := adm.Lag(ctx, group)
		if err != nil {
			b.Fatal(err)
		}
		var committed int64
		lags.Each(func(l kadm.DescribedGroupLag) {
			for _, m := range l.Lag.Sorted() {
				committed += max(m.Commit.At, 0)
			}
		})
		if committed >= writerBacklog {
			break
		}
		if time.Since(began) > 5*time.Minute {
			b.Fatalf("%d of %d records committed after 5 minutes", committed, writerBacklog)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(began)
	if after := cpu(); before >= 0 && after >= 0 {
		b.ReportMetric(float64(after-before)/float64(time.Microsecond)/writerBacklog, "mysqld-µs/rec")
	}
	b.ReportMetric(float64(selfCPU()-selfBefore)/float64(time.Microsecond)/writerBacklog, "self-µs/rec")
	cancel()
	<-done
	return took
}

// selfCPU is the CPU time this process has used: the worker, and the
// in-process kfake broker it reads from.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// mysqldCPU returns a reader of the CPU time (user + system) the MariaDB
// server behind d has used, or one that returns -1 when the server's
// process is not readable here (another machine, another user).
func mysqldCPU(d *sqlx.DB) func() time.Duration {
	none := func() time.Duration { return -1 }
	var pidFile string
	if err := d.Get(&pidFile, "SELECT @@pid_file"); err != nil {
		return none
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		return none
	}
	stat := "/proc/" + strings.TrimSpace(string(raw)) + "/stat"
	return func() time.Duration {
		b, err := os.ReadFile(stat)
		if err != nil {
			return -1
		}
		// Fields after the command name, which ends with the last ')':
		// state is field 3, utime 14 and stime 15, in clock ticks (100/s
		// on Linux).
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 13 {
			return -1
		}
		u, err1 := strconv.ParseInt(f[11], 10, 64)
		s, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return -1
		}
		return time.Duration(u+s) * 10 * time.Millisecond
	}
}
