package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/testenv"
	"github.com/flashgate/flashgate/worker"
)

// Services in processes of their own, for the faults that need a process to
// die: kill -9 (no deferred cleanup, no commit, no flush) and SIGTERM (the
// real signal path of main.go).

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// flashgateBinary builds the flashgate binary once per test run.
func flashgateBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "flashgate-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "flashgate")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/flashgate/flashgate").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// envOf returns the FLASHGATE_* environment that configures a service
// process like cfg.
func envOf(cfg config.Config) []string {
	d := func(x time.Duration) string { return x.String() }
	return []string{
		"FLASHGATE_DEV=1",
		"FLASHGATE_REDIS_ADDR=" + cfg.RedisAddr,
		"FLASHGATE_MYSQL_DSN=" + cfg.MySQLDSN,
		"FLASHGATE_KAFKA_BROKERS=" + strings.Join(cfg.KafkaBrokers, ","),
		fmt.Sprintf("FLASHGATE_KAFKA_PARTITIONS=%d", cfg.KafkaPartitions),
		"FLASHGATE_TOPIC_PREFIX=" + cfg.TopicPrefix,
		"FLASHGATE_TOKEN_SECRET=" + cfg.TokenSecret,
		"FLASHGATE_PAY_SECRET=" + cfg.PaySecret,
		"FLASHGATE_ORDER_TTL=" + d(cfg.OrderTTL),
		"FLASHGATE_PRODUCE_TIMEOUT=" + d(cfg.ProduceTimeout),
		"FLASHGATE_REDIS_TIMEOUT=" + d(cfg.RedisTimeout),
		"FLASHGATE_EVENT_REFRESH=" + d(cfg.EventRefresh),
		"FLASHGATE_WARM_INTERVAL=" + d(cfg.WarmInterval),
		"FLASHGATE_EXPIRE_INTERVAL=" + d(cfg.ExpireInterval),
		"FLASHGATE_PENDING_TIMEOUT=" + d(cfg.PendingTimeout),
		"FLASHGATE_RECONCILE_INTERVAL=" + d(cfg.ReconcileEvery),
		"FLASHGATE_WALLET_RECONCILE_INTERVAL=" + d(cfg.WalletsEvery),
		"FLASHGATE_SHUTDOWN_TIMEOUT=" + d(cfg.ShutdownTimeout),
		"FLASHGATE_DRAIN_DELAY=0s",
		fmt.Sprintf("FLASHGATE_WORKER_BATCH=%d", cfg.WorkerBatch),
		"FLASHGATE_RATE_ORDER=0", "FLASHGATE_RATE_GIFT=0", "FLASHGATE_RATE_PAY=0", "FLASHGATE_RATE_OTHER=0", "FLASHGATE_RATE_IP=0", "FLASHGATE_RATE_NOTIFY=0",
		fmt.Sprintf("FLASHGATE_MAX_INFLIGHT=%d", cfg.MaxInflight),
		"FLASHGATE_LOG_FORMAT=text",
		"FLASHGATE_LOG_LEVEL=warn",
		// Free ports, unless startProc names them.
		"FLASHGATE_INTERNAL_ADDR=127.0.0.1:0",
		"FLASHGATE_WS_INTERNAL_ADDR=127.0.0.1:0",
	}
}

// proc is one service process.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	base string // http://host:port of its listener
	// internal is http://host:port of its internal listener (gateway, ws):
	// metrics, readiness details, admin routes.
	internal string
	log      string // its output
	done     chan struct{}
	err      error
}

// startProc runs `flashgate <service>` configured like the system, with
// extra environment, and waits until its /readyz answers 200.
func (s *system) startProc(service string, extra ...string) *proc {
	s.t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(s.t))
	iaddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(s.t))
	env := append(os.Environ(), envOf(s.cfg)...)
	switch service {
	case "gateway":
		env = append(env, "FLASHGATE_GATEWAY_ADDR="+addr, "FLASHGATE_INTERNAL_ADDR="+iaddr)
	case "worker":
		env = append(env, "FLASHGATE_WORKER_ADDR="+addr)
		iaddr = addr // its one listener is internal
	case "ws":
		env = append(env, "FLASHGATE_WS_ADDR="+addr, "FLASHGATE_WS_INTERNAL_ADDR="+iaddr)
	}
	env = append(env, extra...)
	p := &proc{t: s.t, name: service, base: "http://" + addr, internal: "http://" + iaddr, done: make(chan struct{}),
		log: filepath.Join(s.t.TempDir(), service+".log")}
	out, err := os.Create(p.log)
	if err != nil {
		s.t.Fatal(err)
	}
	p.cmd = exec.Command(flashgateBinary(s.t), service)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); out.Close(); close(p.done) }()
	s.t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(p.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.done:
			s.t.Fatalf("%s exited at start: %v\n%s", service, p.err, p.output())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s never became ready:\n%s", service, p.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// term sends SIGTERM and waits until the process exits; it fails the test
// when the process does not exit in time or exits with an error.
func (p *proc) term(within time.Duration) {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			p.t.Errorf("%s exited with %v after SIGTERM:\n%s", p.name, p.err, p.output())
		}
	case <-time.After(within):
		p.t.Errorf("%s still running %s after SIGTERM", p.name, within)
		p.kill()
	}
}

// runProc runs `flashgate <service>` configured like the system, with extra
// environment, for a service that is expected to exit by itself (refusing to
// start); it returns the output and the exit status.
func (s *system) runProc(service string, extra ...string) (string, int) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, flashgateBinary(s.t), service)
	cmd.Env = append(append(os.Environ(), envOf(s.cfg)...), extra...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	s.t.Fatalf("%s: %v\n%s", service, err, out)
	return "", -1
}

// startWorker runs a worker in-process, as start does; for tests that start
// it late. It stops with the system.
func (s *system) startWorker() {
	s.t.Helper()
	wln := testenv.Listener(s.t)
	s.worker = "http://" + wln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	prev := s.stop
	s.stop = func() { cancel(); prev() }
	s.run("worker", func() error { return worker.Run(ctx, worker.Config{Config: s.cfg, Listener: wln}) })
	s.waitReady(s.worker)
}
