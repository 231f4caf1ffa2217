// Package testenv gives integration tests real dependencies: a private
// redis-server process per test, a fresh MariaDB database per test on the
// server `make test` starts, and an in-process kfake Kafka cluster.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/db"
)

// DefaultMySQLServer is the MariaDB that `make test` starts.
const DefaultMySQLServer = "root@tcp(127.0.0.1:13306)/"

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Redis starts a private redis-server for the test and returns its address.
// A private server lets a test FLUSHALL or kill Redis without hurting others.
func Redis(t testing.TB) string { return NewRedis(t).Addr }

// RedisServer is a private redis-server that a test can restart on the same
// port, losing everything it held (no persistence), as a crashed Redis does.
type RedisServer struct {
	Addr string
	bin  string
	port int
	dir  string
	cmd  *exec.Cmd
}

// NewRedis starts a private redis-server; it stops with the test.
func NewRedis(t testing.TB) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not installed: run `make test`, which installs and starts the test dependencies")
	}
	for attempt := 0; attempt < 5; attempt++ {
		r := &RedisServer{bin: bin, port: FreePort(t), dir: t.TempDir()}
		r.Addr = fmt.Sprintf("127.0.0.1:%d", r.port)
		if err := r.start(); err != nil {
			t.Fatalf("cannot start redis-server: %v", err)
		}
		if waitTCP(r.Addr, 5*time.Second) {
			t.Cleanup(r.kill)
			return r
		}
		r.kill()
	}
	t.Fatal("redis-server did not start")
	return nil
}

func (r *RedisServer) start() error {
	r.cmd = exec.Command(r.bin, "--port", fmt.Sprint(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--protected-mode", "no", "--logfile", filepath.Join(r.dir, "redis.log"))
	return r.cmd.Start()
}

func (r *RedisServer) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}

// Restart kills the server (SIGKILL: no save, every key is lost) and starts
// it again on the same port after down has passed.
func (r *RedisServer) Restart(t testing.TB, down time.Duration) {
	t.Helper()
	r.kill()
	time.Sleep(down)
	if err := r.start(); err != nil {
		t.Fatalf("cannot restart redis-server: %v", err)
	}
	if !waitTCP(r.Addr, 10*time.Second) {
		t.Fatalf("redis-server did not come back on %s", r.Addr)
	}
}

func waitTCP(addr string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// MySQL creates a fresh, migrated database for the test and returns its DSN.
// The server comes from FLASHGATE_TEST_MYSQL_SERVER (a DSN without database).
func MySQL(t testing.TB) string {
	t.Helper()
	server := os.Getenv("FLASHGATE_TEST_MYSQL_SERVER")
	if server == "" {
		server = DefaultMySQLServer
	}
	var b [6]byte
	rand.Read(b[:])
	name := "fgtest_" + hex.EncodeToString(b[:])
	c, err := db.ParseDSN(server)
	if err != nil {
		t.Fatal(err)
	}
	c.DBName = name
	dsn := c.FormatDSN()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.CreateDatabase(ctx, dsn); err != nil {
		t.Fatalf("cannot create test database (is MariaDB running? `make test` starts it): %v", err)
	}
	t.Cleanup(func() {
		c.DBName = ""
		if d, err := db.Open(context.Background(), c.FormatDSN()); err == nil {
			d.Exec("DROP DATABASE IF EXISTS `" + name + "`")
			d.Close()
		}
	})
	d, err := db.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := db.Migrate(ctx, d); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return dsn
}

// Kafka starts an in-process kfake cluster with flashgate's topics for the
// test and returns it (its ListenAddrs are the seed brokers).
func Kafka(t testing.TB, cfg config.Config) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(int32(cfg.KafkaPartitions), cfg.Topics()...),
	)
	if err != nil {
		t.Fatalf("cannot start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// Config returns a dev-mode configuration wired to a private Redis, a fresh
// database and an in-process Kafka, with timers fast enough for tests.
// Listen addresses are left to the caller (use listeners on 127.0.0.1:0).
func Config(t testing.TB) config.Config {
	t.Helper()
	cfg, _ := ConfigKafka(t)
	return cfg
}

// ConfigKafka is Config that also returns the kfake cluster, for tests that
// inject broker faults.
func ConfigKafka(t testing.TB) (config.Config, *kfake.Cluster) {
	t.Helper()
	cfg := config.Default()
	cfg.Dev = true
	cfg.ApplyDevDefaults()
	cfg.LogFormat = "text"
	cfg.LogLevel = "warn"
	if os.Getenv("FLASHGATE_TEST_LOG") != "" {
		cfg.LogLevel = os.Getenv("FLASHGATE_TEST_LOG")
	}
	cfg.KafkaPartitions = 4
	cfg.TopicPrefix = "fgtest"
	cfg.RedisAddr = Redis(t)
	cfg.MySQLDSN = MySQL(t)
	kc := Kafka(t, cfg)
	cfg.KafkaBrokers = kc.ListenAddrs()
	cfg.EventRefresh = 100 * time.Millisecond
	cfg.WarmInterval = 100 * time.Millisecond
	cfg.ExpireInterval = 100 * time.Millisecond
	cfg.ReconcileEvery = 500 * time.Millisecond
	cfg.WalletsEvery = 500 * time.Millisecond
	cfg.ShutdownTimeout = 3 * time.Second
	// No load balancer watches /readyz in tests; the drain tests turn it on.
	cfg.DrainDelay = 0
	// Tests run the load generator, the services and the race detector on
	// two cores: a burst of 2,500 requests starves the producer for a second
	// or more. Tests assert outcomes, not latency, so wait longer.
	cfg.ProduceTimeout = 15 * time.Second
	cfg.RedisTimeout = 5 * time.Second
	// Crowds in tests come from one IP and hammer one user on purpose; the
	// tests of the limits themselves turn them back on.
	cfg.RateOrder, cfg.RateGift, cfg.RatePay, cfg.RateOther, cfg.RateIP = config.Rate{}, config.Rate{}, config.Rate{}, config.Rate{}, config.Rate{}
	cfg.RateNotify = config.Rate{}
	cfg.MaxInflight = 100_000
	// Many gateways and ws run at once in tests: their internal listeners
	// take free ports unless a test hands them a listener of its own.
	cfg.InternalAddr = "127.0.0.1:0"
	cfg.WSInternalAddr = "127.0.0.1:0"
	return cfg, kc
}

// Listener returns a listener on a free loopback port.
func Listener(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// RedisCluster starts a Redis Cluster of masters private redis-servers on
// loopback (no persistence), each with replicas replicas, joined with
// redis-cli --cluster create, and returns every node's address once every
// slot is served. The servers stop with the test.
func RedisCluster(t testing.TB, masters, replicas int) []string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not installed: run `make test`, which installs and starts the test dependencies")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli is not installed (Debian's redis-tools)")
	}
	var addrs []string
	for len(addrs) < masters*(1+replicas) {
		// The cluster bus listens on the port + 10000: both must be free.
		port := FreePort(t)
		if port+10000 > 65535 {
			continue
		}
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+10000)); err != nil {
			continue
		} else {
			ln.Close()
		}
		dir := t.TempDir()
		cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--protected-mode", "no", "--logfile", filepath.Join(dir, "redis.log"),
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--cluster-node-timeout", "2000")
		if err := cmd.Start(); err != nil {
			t.Fatalf("cannot start redis-server: %v", err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if !waitTCP(addr, 5*time.Second) {
			continue // lost the port to someone else: its Cleanup kills it
		}
		addrs = append(addrs, addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", fmt.Sprint(replicas), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		for {
			out, _ := exec.Command(cli, "-h", host, "-p", port, "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the Redis Cluster did not become ok on %s:\n%s", a, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return addrs
}
