// Command flashgate is the one binary of flashgate: the gateway, worker and
// ws services, the migration and token tools, and `flashgate dev`, which
// runs everything on one machine. See `flashgate help`.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/flashgate/flashgate/gateway"
	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/dev"
	"github.com/flashgate/flashgate/internal/obs"
	"github.com/flashgate/flashgate/worker"
	"github.com/flashgate/flashgate/ws"
)

type command struct {
	name    string
	summary string
	usage   string // first lines of --help
	run     func(fs *config.FlagSet, args []string) error
}

var commands = []command{
	{"gateway", "serve the public HTTP API (flash-sale orders, gifts, wallet)",
		"Usage: flashgate gateway [flags]\n\nServes the public HTTP API on FLASHGATE_GATEWAY_ADDR: verifies tokens, rate-limits, reserves\nstock and coins in Redis and hands accepted orders to Kafka. Stops cleanly on SIGINT/SIGTERM.",
		serviceCmd("gateway", func(ctx context.Context, cfg config.Config, ln net.Listener) error {
			return gateway.Run(ctx, gateway.Config{Config: cfg, Listener: ln})
		}, func(c config.Config) string { return c.GatewayAddr })},
	{"worker", "consume orders into MySQL, publish outcomes, run the timers",
		"Usage: flashgate worker [flags]\n\nConsumes accepted orders and gifts from Kafka, writes them to MySQL, publishes outcomes to the\nresults topic and runs warm-up, expiry, reconciliation and payouts. Health and metrics are on\nFLASHGATE_WORKER_ADDR. Stops cleanly on SIGINT/SIGTERM.",
		serviceCmd("worker", func(ctx context.Context, cfg config.Config, ln net.Listener) error {
			return worker.Run(ctx, worker.Config{Config: cfg, Listener: ln})
		}, func(c config.Config) string { return c.WorkerAddr })},
	{"ws", "push ticket, gift and stock updates to WebSocket clients",
		"Usage: flashgate ws [flags]\n\nServes WebSocket push on FLASHGATE_WS_ADDR (/ws): consumes the results topic and delivers each\noutcome to its user's and room's connections. Stops cleanly on SIGINT/SIGTERM.",
		serviceCmd("ws", func(ctx context.Context, cfg config.Config, ln net.Listener) error {
			return ws.Run(ctx, ws.Config{Config: cfg, Listener: ln})
		}, func(c config.Config) string { return c.WSAddr })},
	{"migrate", "create the MySQL database if needed and apply pending migrations",
		"Usage: flashgate migrate [flags]\n\nCreates the database named in FLASHGATE_MYSQL_DSN if it does not exist and applies the embedded\nmigrations that have not been applied yet. Safe to run repeatedly and concurrently.",
		migrateCmd},
	{"token", "print a signed bearer token",
		"Usage: flashgate token --user N [--admin] [--ttl 24h] [flags]\n       flashgate token --users FIRST-LAST [--out FILE] [--format txt|csv] [flags]\n\nPrints a bearer token for user N signed with FLASHGATE_TOKEN_SECRET (the dev secret when\nFLASHGATE_DEV=1 and no secret is set). With --users it mints one token per user of the range\nfor load tests, offline: txt is one token per line in user order, csv is user_id,token with a\nheader line.",
		tokenCmd},
	{"dev", "run everything locally: Redis, MariaDB, embedded Kafka and all services",
		"Usage: flashgate dev [--deps-only] [flags]\n\nRuns flashgate on this machine in dev mode (FLASHGATE_DEV=1). Installs redis-server and\nmariadb-server with apt-get when missing (as root), starts them on loopback ports with data under\nFLASHGATE_RUN_DIR (or reuses servers that already answer there), starts an embedded Kafka broker\n(kfake, data under FLASHGATE_RUN_DIR/kafka) unless FLASHGATE_KAFKA_BROKERS is set, migrates,\nseeds a demo event and runs gateway, worker and ws in this process, printing URLs, tokens and\nexample requests. Ctrl-C stops everything it started.\n\nWith --deps-only it stops after the dependencies are up and migrated, writes\nFLASHGATE_RUN_DIR/" + dev.ReadyFile + " and waits (this is how `make test` gets its MariaDB).",
		devCmd},
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		usage(os.Stdout)
		return 0
	}
	name, args := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 0 {
			return run([]string{args[0], "--help"})
		}
		usage(os.Stdout)
		return 0
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		fs := config.NewFlagSet("flashgate "+c.name, c.usage)
		if wantsHelp(args) {
			fs.SetOutput(os.Stdout)
		}
		if err := c.run(fs, args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			var ue usageError
			if errors.As(err, &ue) {
				if ue.printed {
					return 2
				}
				fmt.Fprintf(os.Stderr, "flashgate %s: %v\nRun `flashgate %s --help` for usage.\n", c.name, err, c.name)
				return 2
			}
			fmt.Fprintf(os.Stderr, "flashgate %s: %v\n", c.name, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "flashgate: unknown command %q\n\n", name)
	usage(os.Stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "flashgate — flash-sale and live-gift gateway\n\nUsage: flashgate <command> [flags]\n\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	fmt.Fprintf(tw, "  help\tthis list; `flashgate help <command>` or `flashgate <command> --help` for details\n")
	tw.Flush()
	fmt.Fprintf(w, "\nSettings come from FLASHGATE_* environment variables (flags of the same name override them);\n"+
		"`flashgate <command> --help` lists them with their defaults. `make run` runs `flashgate dev`.\n")
}

func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			return true
		case "--", "-":
			return false
		}
	}
	return false
}

// usageError is a mistake on the command line (exit status 2). printed
// means the flag package has already reported it.
type usageError struct {
	error
	printed bool
}

// parse parses flags, refuses positional arguments and reads the settings.
func parse(fs *config.FlagSet, args []string) (config.Config, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config.Config{}, err
		}
		return config.Config{}, usageError{err, true}
	}
	if fs.NArg() > 0 {
		return config.Config{}, usageError{error: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	cfg, err := fs.Apply()
	if err != nil {
		return cfg, usageError{error: err}
	}
	return cfg, nil
}

// signalContext is cancelled by SIGINT or SIGTERM; a second signal after
// that kills the process the default way.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // restore default handling: a second Ctrl-C is not ignored
	}()
	return ctx, stop
}

func serviceCmd(name string, runFn func(context.Context, config.Config, net.Listener) error, addr func(config.Config) string) func(*config.FlagSet, []string) error {
	return func(fs *config.FlagSet, args []string) error {
		cfg, err := parse(fs, args)
		if err != nil {
			return err
		}
		validate := cfg.Validate
		if name == "gateway" {
			validate = cfg.ValidateGateway
		}
		if err := validate(); err != nil {
			return fmt.Errorf("refusing to start: %w", err)
		}
		// This binary has no real payment or payout provider built in.
		if name == "gateway" || name == "worker" {
			if err := cfg.ValidateSandbox(name); err != nil {
				return fmt.Errorf("refusing to start: %w", err)
			}
		}
		ln, err := net.Listen("tcp", addr(cfg))
		if err != nil {
			return fmt.Errorf("cannot listen: %w", err)
		}
		ctx, stop := signalContext()
		defer stop()
		if err := runFn(ctx, cfg, ln); err != nil && !(ctx.Err() != nil && errors.Is(err, context.Canceled)) {
			return err
		}
		return nil
	}
}

func migrateCmd(fs *config.FlagSet, args []string) error {
	cfg, err := parse(fs, args)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	mc, err := db.ParseDSN(cfg.MySQLDSN)
	if err != nil {
		return err
	}
	if err := db.CreateDatabase(ctx, cfg.MySQLDSN); err != nil {
		return err
	}
	d, err := db.Open(ctx, cfg.MySQLDSN)
	if err != nil {
		return err
	}
	defer d.Close()
	applied, err := db.Migrate(ctx, d)
	for _, m := range applied {
		fmt.Printf("applied %s\n", m)
	}
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Printf("database %s at %s is up to date\n", mc.DBName, mc.Addr)
	} else {
		fmt.Printf("database %s at %s: %d migration(s) applied\n", mc.DBName, mc.Addr, len(applied))
	}
	return nil
}

func tokenCmd(fs *config.FlagSet, args []string) error {
	uid := fs.Int64("user", 0, "user id the token is for")
	users := fs.String("users", "", "a range of user ids, FIRST-LAST (e.g. 1-100000): one token per user, for load tests")
	out := fs.String("out", "", "with --users: write to this file instead of standard output")
	format := fs.String("format", "txt", "with --users: txt (one token per line, in user order) or csv (user_id,token with a header)")
	admin := fs.Bool("admin", false, "give the token the admin role")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	cfg, err := parse(fs, args)
	if err != nil {
		return err
	}
	first, last := *uid, *uid
	switch {
	case *users != "" && *uid != 0:
		return usageError{error: errors.New("give --user N or --users FIRST-LAST, not both")}
	case *users != "":
		if first, last, err = parseUserRange(*users); err != nil {
			return usageError{error: err}
		}
	case *uid <= 0:
		return usageError{error: errors.New("--user N (a positive user id) or --users FIRST-LAST is required")}
	}
	if *format != "txt" && *format != "csv" {
		return usageError{error: fmt.Errorf("--format %q: want txt or csv", *format)}
	}
	if *ttl <= 0 {
		return usageError{error: errors.New("--ttl must be positive")}
	}
	if *ttl > cfg.TokenMaxTTL {
		return usageError{error: fmt.Errorf("--ttl %v is longer than FLASHGATE_TOKEN_MAX_TTL (%v): the services would refuse the token", *ttl, cfg.TokenMaxTTL)}
	}
	if cfg.TokenSecret == "" {
		return errors.New("FLASHGATE_TOKEN_SECRET is not set: set the secret the services use, or FLASHGATE_DEV=1 for the dev secret")
	}
	role := auth.RoleUser
	if *admin {
		role = auth.RoleAdmin
	}
	signer := auth.NewSigner(cfg.TokenSecret)
	if *users == "" {
		fmt.Println(signer.Sign(*uid, role, *ttl))
		return nil
	}
	return writeTokens(*out, *format == "csv", first, last, func(id int64) string { return signer.Sign(id, role, *ttl) })
}

// maxTokenRange bounds --users: a million tokens are about 150 MB.
const maxTokenRange = 1_000_000

// parseUserRange reads FIRST-LAST (or a single id) as an inclusive range
// of positive user ids.
func parseUserRange(s string) (first, last int64, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		b = a
	}
	first, err1 := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	last, err2 := strconv.ParseInt(strings.TrimSpace(b), 10, 64)
	switch {
	case err1 != nil || err2 != nil || first <= 0 || last <= 0:
		return 0, 0, fmt.Errorf("--users %q: want FIRST-LAST, two positive user ids", s)
	case last < first:
		return 0, 0, fmt.Errorf("--users %q: the last id is below the first", s)
	case last-first >= maxTokenRange:
		return 0, 0, fmt.Errorf("--users %q: at most %d users at once", s, maxTokenRange)
	}
	return first, last, nil
}

// writeTokens writes one token per user of [first, last] to path (standard
// output when empty), replacing the file only once it is complete.
func writeTokens(path string, csv bool, first, last int64, sign func(int64) string) error {
	var w io.Writer = os.Stdout
	var tmp *os.File
	if path != "" {
		var err error
		if tmp, err = os.CreateTemp(filepath.Dir(path), ".tokens-*"); err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		w = tmp
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	if csv {
		bw.WriteString("user_id,token\n")
	}
	for id := first; id <= last; id++ {
		if csv {
			bw.WriteString(strconv.FormatInt(id, 10))
			bw.WriteByte(',')
		}
		bw.WriteString(sign(id))
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil || tmp == nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%d tokens for users %d-%d written to %s\n", last-first+1, first, last, path)
	return nil
}

func devCmd(fs *config.FlagSet, args []string) error {
	depsOnly := fs.Bool("deps-only", false, "start and migrate the dependencies only, write FLASHGATE_RUN_DIR/"+dev.ReadyFile+" and wait")
	cfg, err := parse(fs, args)
	if err != nil {
		return err
	}
	cfg.Dev = true
	cfg.ApplyDevDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}

	ctx, stop := signalContext()
	defer stop()
	return dev.Run(ctx, cfg, dev.Options{
		DepsOnly:      *depsOnly,
		KafkaExplicit: kafkaExplicit(fs),
		Services:      runServices,
		Out:           os.Stdout,
		Log:           obs.NewLogger(cfg.LogFormat, cfg.LogLevel).With("component", "dev"),
	})
}

// kafkaExplicit reports whether brokers were named on purpose, by
// FLASHGATE_KAFKA_BROKERS or --kafka-brokers, rather than left at the
// default, where dev starts its embedded broker.
func kafkaExplicit(fs *config.FlagSet) bool {
	explicit := os.Getenv("FLASHGATE_KAFKA_BROKERS") != ""
	fs.Visit(func(f *flag.Flag) {
		explicit = explicit || f.Name == "kafka-brokers" && f.Value.String() != ""
	})
	return explicit
}

// runServices runs gateway, worker and ws in this process until ctx is done
// or one of them fails, which stops the other two.
func runServices(ctx context.Context, cfg config.Config) error {
	type svc struct {
		name        string
		addr, iaddr string // public and internal ("": none)
		run         func(ctx context.Context, ln, iln net.Listener) error
	}
	svcs := []svc{
		{"gateway", cfg.GatewayAddr, cfg.InternalAddr, func(ctx context.Context, ln, iln net.Listener) error {
			return gateway.Run(ctx, gateway.Config{Config: cfg, Listener: ln, InternalListener: iln})
		}},
		{"worker", cfg.WorkerAddr, "", func(ctx context.Context, ln, _ net.Listener) error {
			return worker.Run(ctx, worker.Config{Config: cfg, Listener: ln})
		}},
		{"ws", cfg.WSAddr, cfg.WSInternalAddr, func(ctx context.Context, ln, iln net.Listener) error {
			return ws.Run(ctx, ws.Config{Config: cfg, Listener: ln, InternalListener: iln})
		}},
	}
	// Listen first, so that a busy port fails before anything starts.
	var all []net.Listener
	listen := func(name, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range all {
				l.Close()
			}
			return nil, fmt.Errorf("%s cannot listen on %s: %w", name, addr, err)
		}
		all = append(all, ln)
		return ln, nil
	}
	lns := make([]net.Listener, len(svcs))
	ilns := make([]net.Listener, len(svcs))
	for i, s := range svcs {
		var err error
		if lns[i], err = listen(s.name, s.addr); err != nil {
			return err
		}
		if s.iaddr != "" {
			if ilns[i], err = listen(s.name, s.iaddr); err != nil {
				return err
			}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for i, s := range svcs {
		g.Go(func() error {
			err := s.run(gctx, lns[i], ilns[i])
			switch {
			case gctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)):
				return nil
			case err == nil:
				return fmt.Errorf("%s stopped on its own", s.name)
			}
			return fmt.Errorf("%s: %w", s.name, err)
		})
	}
	return g.Wait()
}
