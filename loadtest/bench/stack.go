package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/db"
)

// The bench stack listens on its own loopback ports, so that it runs beside
// `make run` and the test dependencies without touching their data.
var benchEnv = map[string]string{
	"FLASHGATE_DEV":          "1",
	"FLASHGATE_RUN_DIR":      ".run/bench",
	"FLASHGATE_GATEWAY_ADDR": "127.0.0.1:28080",
	"FLASHGATE_WS_ADDR":      "127.0.0.1:28081",
	"FLASHGATE_WORKER_ADDR":  "127.0.0.1:28082",
	// Metrics and the admin routes are on the internal listeners.
	"FLASHGATE_INTERNAL_ADDR":    "127.0.0.1:28083",
	"FLASHGATE_WS_INTERNAL_ADDR": "127.0.0.1:28084",
	"FLASHGATE_REDIS_ADDR":       "127.0.0.1:26379",
	"FLASHGATE_MYSQL_DSN":        "root@tcp(127.0.0.1:23306)/flashgate_bench",
	"FLASHGATE_KAFKA_BROKERS":    "127.0.0.1:29092",
	"FLASHGATE_LOG_LEVEL":        "warn",
	"FLASHGATE_DRAIN_DELAY":      "0s",
	// go tool pprof http://127.0.0.1:28083/debug/pprof/profile, with --keep.
	"FLASHGATE_PPROF": "1",
}

const bareAddr = "127.0.0.1:28090"

// proc is a child process whose output goes to a log file in the run dir.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (b *bench) start(name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(b.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	b.procs = append(b.procs, p)
	return p, nil
}

// stop asks the process to stop (SIGTERM) and kills it after 30 s.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// brokerArg, as the bench's only argument, makes it the Kafka broker of
// the stack (kfake, in memory) until SIGTERM.
const (
	brokerArg  = "kafka-broker"
	brokerAddr = "127.0.0.1:29092"
)

// runBroker is the bench as the stack's Kafka broker.
func runBroker() int {
	envFlags()
	cfg, err := config.FromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench kafka-broker:", err)
		return 2
	}
	c, err := kfake.NewCluster(kfake.Ports(29092), kfake.SeedTopics(int32(cfg.KafkaPartitions), cfg.Topics()...))
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: cannot start the Kafka broker (kfake) on %s: %v\n", brokerAddr, err)
		return 1
	}
	defer c.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	return 0
}

// upStack starts kfake, the dependencies (`flashgate dev --deps-only`), a
// fresh database and Redis, the three services and the bare server.
func (b *bench) upStack(ctx context.Context) error {
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	b.cfg = cfg
	// The broker runs in a process of its own, as Kafka does anywhere: in
	// this one it shared the Go runtime with the fan-out row's 2,000
	// readers, and every hop through Kafka waited behind them.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	broker, err := b.start("kafka", self, brokerArg)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, 30*time.Second, "the Kafka broker (kfake)", func() (bool, error) {
		if broker.exited() {
			return false, fmt.Errorf("the Kafka broker exited: %v (see %s/kafka.log)", broker.err, b.dir)
		}
		c, err := net.DialTimeout("tcp", brokerAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil, nil
	}); err != nil {
		return err
	}

	ready := filepath.Join(b.dir, "deps.ready")
	os.Remove(ready)
	b.logf("starting Redis and MariaDB (flashgate dev --deps-only, log %s/deps.log)", b.dir)
	deps, err := b.start("deps", b.bin, "dev", "--deps-only")
	if err != nil {
		return err
	}
	b.deps = deps
	if err := waitFor(ctx, 10*time.Minute, "the dependencies", func() (bool, error) {
		if deps.exited() {
			return false, fmt.Errorf("flashgate dev --deps-only exited: %v (see %s/deps.log)", deps.err, b.dir)
		}
		_, err := os.Stat(ready)
		return err == nil, nil
	}); err != nil {
		return err
	}

	if err := b.resetData(ctx); err != nil {
		return err
	}
	for _, svc := range []string{"gateway", "worker", "ws"} {
		if _, err := b.startService(ctx, svc); err != nil {
			return err
		}
	}
	if _, err := b.start("bare", b.bareBin, "--addr", bareAddr); err != nil {
		return err
	}
	return waitFor(ctx, 30*time.Second, "the bare server", func() (bool, error) {
		resp, err := http.Get("http://" + bareAddr + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil, nil
	})
}

// resetData gives every run the same start: a new database, an empty Redis.
func (b *bench) resetData(ctx context.Context) error {
	mc, err := db.ParseDSN(b.cfg.MySQLDSN)
	if err != nil {
		return err
	}
	name := mc.DBName
	mc.DBName = ""
	root, err := sqlx.Open("mysql", mc.FormatDSN())
	if err != nil {
		return err
	}
	_, err = root.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`")
	root.Close()
	if err != nil {
		return fmt.Errorf("cannot drop the bench database: %w", err)
	}
	if out, err := exec.CommandContext(ctx, b.bin, "migrate").CombinedOutput(); err != nil {
		return fmt.Errorf("flashgate migrate: %v: %s", err, out)
	}
	if b.db, err = sqlx.Open("mysql", b.cfg.MySQLDSN); err != nil {
		return err
	}
	b.db.SetMaxOpenConns(8)
	b.rdb, err = rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{b.cfg.RedisAddr}, DisableCache: true})
	if err != nil {
		return fmt.Errorf("cannot reach the bench Redis: %w", err)
	}
	return b.rdb.Do(ctx, b.rdb.B().Flushall().Build()).Error()
}

// startService starts gateway, worker or ws and waits for its /readyz.
func (b *bench) startService(ctx context.Context, name string) (*proc, error) {
	p, err := b.start(name, b.bin, name)
	if err != nil {
		return nil, err
	}
	addr := map[string]string{"gateway": b.cfg.GatewayAddr, "worker": b.cfg.WorkerAddr, "ws": b.cfg.WSAddr}[name]
	err = waitFor(ctx, 60*time.Second, name+" /readyz", func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("%s exited: %v (see %s/%s.log)", name, p.err, b.dir, name)
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == 200, nil
	})
	if name == "worker" {
		b.worker = p
	}
	return p, err
}

// downStack stops what upStack started, services first.
func (b *bench) downStack() {
	for i := len(b.procs) - 1; i >= 0; i-- {
		b.procs[i].stop()
	}
	if b.db != nil {
		b.db.Close()
	}
	if b.rdb != nil {
		b.rdb.Close()
	}

}

// waitFor polls cond every 50 ms until it holds, fails, or d passes.
func waitFor(ctx context.Context, d time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up after %s waiting for %s", d, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// envFlags sets the bench stack's environment in this process, so that the
// children inherit it; a FLASHGATE_* already set by the caller wins.
func envFlags() {
	for k, v := range benchEnv {
		if _, ok := os.LookupEnv(k); !ok {
			os.Setenv(k, v)
		}
	}
}
