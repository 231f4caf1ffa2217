// Command bench is `make bench`: it starts flashgate the way `make run` does
// (Redis, MariaDB, a Kafka broker, gateway, worker and ws, on ports of its
// own), plus a bare fasthttp server, drives both with wrk and the same
// precomputed requests, and prints one markdown table of throughput as a
// ratio to the bare server. After each load it checks the promises (no
// oversell, every 202 decided, sums equal); a fast but wrong build fails.
//
//	go run ./loadtest/bench [--rows sold_out,order,...] [--duration 6s]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/redis/rueidis"

	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/config"
)

// rowFuncs are the rows in the order they run: later rows use what earlier
// ones left (tickets to read, warm wallets).
var rowFuncs = []struct {
	name string
	run  func(*bench, context.Context) error
}{
	{"sold_out", (*bench).rowSoldOut},
	{"not_started", (*bench).rowNotStarted},
	{"order", (*bench).rowOrder},
	{"ticket", (*bench).rowTicket},
	{"gift_cold", (*bench).rowGiftCold},
	{"gift_warm", (*bench).rowGiftWarm},
	{"order_writer", (*bench).rowOrderWriter},
	{"gift_writer", (*bench).rowGiftWriter},
	{"ws_fanout", (*bench).rowFanout},
}

type bench struct {
	dir, bin, bareBin, script string
	threads, conns            int
	duration                  time.Duration

	cfg    config.Config
	deps   *proc
	worker *proc
	procs  []*proc
	db     *sqlx.DB
	rdb    rueidis.Client
	signer *auth.Signer
	admin  string

	queries atomic.Int64 // statements the bench sent MariaDB itself

	rows   []row
	levers []string // Redis and MariaDB work per order and per gift
	failed bool

	orderEvent int64 // the order row's event, whose tickets the ticket row reads
}

// row is one line of the table.
type row struct {
	name     string
	rate     float64 // requests (or items) per second
	unit     string
	bare     float64 // the bare server's rate for the same requests; 0: no ratio
	p50, p99 time.Duration
	answers  string // HTTP statuses, or what the row counts
	check    string // "ok", or the promise that broke
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == brokerArg {
		os.Exit(runBroker())
	}
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: go run ./loadtest/bench [flags]   (make bench)

Starts flashgate (Redis, MariaDB, kfake, gateway, worker, ws) on its own loopback ports, with data
under .run/bench, plus a bare fasthttp server, and prints a markdown table: each HTTP row is
flashgate's rate over the bare server's rate for the same wrk script in the same run. After each
load it checks flashgate's promises and marks the row FAIL when one broke; the exit status is 1 then.

Rows: %s

Flags:
`, rowNames())
		fs.PrintDefaults()
	}
	rowsFlag := fs.String("rows", "", "comma-separated rows to run (default: all, in the order above)")
	b := &bench{}
	fs.DurationVar(&b.duration, "duration", 6*time.Second, "how long wrk drives flashgate in an HTTP row, and the bare server in all (half before flashgate, half after); at most 7s, so a row loads for at most 15s")
	fs.IntVar(&b.threads, "threads", 2, "wrk threads")
	fs.IntVar(&b.conns, "connections", 128, "wrk connections")
	fs.StringVar(&b.bin, "flashgate", "bin/flashgate", "the flashgate binary")
	fs.StringVar(&b.bareBin, "bare", "bin/bare", "the bare reference server (go build ./loadtest/bare)")
	fs.StringVar(&b.script, "script", "loadtest/wrk/requests.lua", "the wrk script")
	keep := fs.Bool("keep", false, "after the table, keep the stack running until Ctrl-C (to look at /metrics, profile or poke it)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if b.duration <= 0 || b.duration > 7*time.Second {
		fmt.Fprintln(os.Stderr, "bench: --duration must be between 1s and 7s")
		return 2
	}
	selected, err := selectRows(*rowsFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	envFlags()
	b.dir = os.Getenv("FLASHGATE_RUN_DIR")
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	for _, p := range []*string{&b.bin, &b.bareBin, &b.script} {
		if *p, err = filepath.Abs(*p); err == nil {
			_, err = os.Stat(*p)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v (make bench builds it)\n", err)
			return 1
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	began := time.Now()
	defer b.downStack()
	if err := b.upStack(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if err := b.seed(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	for _, r := range selected {
		b.logf("row %s", r.name)
		if err := r.run(b, ctx); err != nil {
			if ctx.Err() != nil {
				fmt.Fprintln(os.Stderr, "bench: interrupted")
				return 130
			}
			b.failed = true
			b.rows = append(b.rows, row{name: r.name, check: "FAIL: " + err.Error()})
			b.logf("row %s failed: %v", r.name, err)
		}
	}
	report := b.report(time.Since(began))
	fmt.Print(report)
	if err := b.save(report); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
	if *keep {
		b.logf("the stack keeps running (gateway %s, internal %s; ws %s, internal %s; worker %s; logs in %s); Ctrl-C stops it",
			b.cfg.GatewayAddr, b.cfg.InternalAddr, b.cfg.WSAddr, b.cfg.WSInternalAddr, b.cfg.WorkerAddr, b.dir)
		<-ctx.Done()
	}
	if b.failed {
		fmt.Fprintln(os.Stderr, "bench: FAIL: a row broke a promise (see the check column)")
		return 1
	}
	return 0
}

func rowNames() string {
	names := make([]string, len(rowFuncs))
	for i, r := range rowFuncs {
		names[i] = r.name
	}
	return strings.Join(names, ", ")
}

func selectRows(list string) (out []struct {
	name string
	run  func(*bench, context.Context) error
}, err error) {
	if list == "" {
		return rowFuncs, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		want[strings.TrimSpace(n)] = true
	}
	for _, r := range rowFuncs {
		if want[r.name] {
			out = append(out, r)
			delete(want, r.name)
		}
	}
	for n := range want {
		return nil, fmt.Errorf("--rows: unknown row %q (rows: %s)", n, rowNames())
	}
	return out, nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
