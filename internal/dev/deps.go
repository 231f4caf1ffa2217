package dev

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/db"
)

// How long a dependency may take to answer after it was started.
const (
	redisStartTimeout = 60 * time.Second
	mysqlStartTimeout = 90 * time.Second
	mysqlInitTimeout  = 3 * time.Minute
)

// Debian packages and the binaries that tell they are installed.
var (
	redisPkg = pkg{name: "redis-server", bins: []string{"redis-server"}}
	mysqlPkg = pkg{name: "mariadb-server", bins: []string{"mariadbd", "mariadb-install-db"}}
)

type pkg struct {
	name string
	bins []string
}

// findBin looks for an executable in PATH and in the sbin/bin directories a
// non-login root shell may lack in PATH (mariadbd lives in /usr/sbin).
func findBin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

func (p pkg) installed() bool {
	for _, b := range p.bins {
		if findBin(b) == "" {
			return false
		}
	}
	return true
}

// install installs the packages that are missing with apt-get. Installing
// needs root; anyone else is told what to install.
func (e *env) install(ctx context.Context, pkgs ...pkg) error {
	var missing []string
	for _, p := range pkgs {
		if !p.installed() {
			missing = append(missing, p.name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	list := strings.Join(missing, " ")
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s not installed and flashgate dev is not root, so it cannot install it: run `sudo apt-get install -y %s` (or run as root)", list, list)
	}
	apt := findBin("apt-get")
	if apt == "" {
		return fmt.Errorf("%s not installed and apt-get is not available: install %s with your package manager", list, list)
	}
	e.log.Info("installing with apt-get (first run only)", "packages", list)
	for _, args := range [][]string{{"update"}, append([]string{"install", "-y", "--no-install-recommends"}, missing...)} {
		cmd := exec.CommandContext(ctx, apt, args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout = os.Stderr // apt's progress is for the person watching, not for Out
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s failed: %w", args[0], err)
		}
	}
	for _, p := range pkgs {
		if !p.installed() {
			return fmt.Errorf("apt-get installed %s but %s is still not found", p.name, strings.Join(p.bins, "/"))
		}
	}
	return nil
}

// loopbackBind returns the IP to bind and the port for a dependency that
// flashgate dev starts itself; it refuses addresses on other hosts.
func loopbackBind(what, addr string) (ip string, port int, err error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("bad %s address %q: %w", what, addr, err)
	}
	port, err = strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad %s port in %q", what, addr)
	}
	switch {
	case host == "" || host == "localhost":
		return "127.0.0.1", port, nil
	case net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback():
		return host, port, nil
	}
	return "", 0, fmt.Errorf("%s at %s does not answer, and flashgate dev only starts %s on a loopback address", what, addr, what)
}

// listening reports whether something accepts TCP connections at addr.
func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ---- Redis ----

// redisPing sends PING and returns the first reply line ("+PONG" when all is
// well, "-LOADING ..." while Redis replays its append-only file).
func redisPing(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func (e *env) startRedis(ctx context.Context) error {
	addr := e.cfg.RedisAddr
	if reply, err := redisPing(addr); err == nil || listening(addr) {
		if reply == "+PONG" {
			e.log.Info("reusing the Redis that answers", "addr", addr)
			e.redisState = "reused"
			return nil
		}
		if strings.HasPrefix(reply, "-LOADING") {
			e.log.Info("reusing the Redis that answers; it is still loading its data", "addr", addr)
			e.redisState = "reused"
			return e.waitRedis(ctx, nil)
		}
		return fmt.Errorf("something listens on %s (FLASHGATE_REDIS_ADDR) but does not answer PING like a usable Redis (reply %q, %v): stop it or choose another address", addr, reply, err)
	}
	ip, port, err := loopbackBind("Redis", addr)
	if err != nil {
		return err
	}
	if err := e.install(ctx, redisPkg); err != nil {
		return err
	}
	dir := filepath.Join(e.cfg.RunDir, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	c, err := startChild("redis-server", filepath.Join(e.cfg.RunDir, "redis.log"), findBin("redis-server"),
		"--port", strconv.Itoa(port), "--bind", ip, "--protected-mode", "no", "--daemonize", "no",
		"--dir", dir, "--appendonly", "yes", "--appendfsync", "everysec",
		// Redis ignores SIGTERM when its final save fails (full disk, a
		// deleted directory); the parent-death signal must always work.
		"--shutdown-on-sigterm", "force")
	if err != nil {
		return err
	}
	e.children = append(e.children, c)
	if err := e.waitRedis(ctx, c); err != nil {
		return err
	}
	e.redisState = "started, data in " + dir
	e.log.Info("started redis-server", "addr", addr, "pid", c.cmd.Process.Pid, "data", dir, "log", c.logPath)
	return nil
}

func (e *env) waitRedis(ctx context.Context, c *child) error {
	deadline := time.Now().Add(redisStartTimeout)
	for {
		reply, err := redisPing(e.cfg.RedisAddr)
		if reply == "+PONG" {
			return nil
		}
		if c != nil && c.exited() {
			return c.exitError()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer to PING from Redis at %s within %s (last reply %q, %v)", e.cfg.RedisAddr, redisStartTimeout, reply, err)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// ---- MariaDB ----

// mysqlSelect1 runs SELECT 1 on the server of mc, without selecting a
// database. Unlike `mariadb-admin ping`, it fails on access denied.
func mysqlSelect1(ctx context.Context, mc *mysql.Config) error {
	c := mc.Clone()
	c.DBName = ""
	c.Timeout = time.Second
	c.ReadTimeout = 5 * time.Second
	conn, err := mysql.NewConnector(c)
	if err != nil {
		return err
	}
	d := sql.OpenDB(conn)
	defer d.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var one int
	return d.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

func (e *env) startMySQL(ctx context.Context) error {
	mc, err := db.ParseDSN(e.cfg.MySQLDSN)
	if err != nil {
		return fmt.Errorf("FLASHGATE_MYSQL_DSN: %w", err)
	}
	if mc.Net == "tcp" && listening(mc.Addr) || mc.Net == "unix" {
		if err := mysqlSelect1(ctx, mc); err != nil {
			return fmt.Errorf("a MySQL server at %s %s accepts connections but SELECT 1 as user %q fails: %w (stop it, fix FLASHGATE_MYSQL_DSN or choose another port)", mc.Net, mc.Addr, mc.User, err)
		}
		e.log.Info("reusing the MariaDB that answers", "addr", mc.Addr, "user", mc.User)
		e.mysqlState = "reused"
		return nil
	}
	if mc.Net != "tcp" {
		return fmt.Errorf("FLASHGATE_MYSQL_DSN: flashgate dev starts MariaDB only for tcp(127.0.0.1:PORT) addresses, not %s(%s)", mc.Net, mc.Addr)
	}
	ip, port, err := loopbackBind("MariaDB", mc.Addr)
	if err != nil {
		return err
	}
	if err := e.install(ctx, mysqlPkg); err != nil {
		return err
	}
	runAs := "root"
	if os.Geteuid() != 0 {
		if u, err := user.Current(); err == nil {
			runAs = u.Username
		}
	}
	dir := filepath.Join(e.cfg.RunDir, "mysql")
	if err := e.initMySQL(ctx, dir, runAs); err != nil {
		return err
	}
	rd := e.cfg.RunDir
	c, err := startChild("mariadbd", filepath.Join(rd, "mysql.err"), findBin("mariadbd"),
		"--no-defaults", // must come first
		"--user="+runAs,
		"--datadir="+dir,
		"--port="+strconv.Itoa(port),
		"--bind-address="+ip,
		"--socket="+filepath.Join(rd, "mysql.sock"),
		"--pid-file="+filepath.Join(rd, "mysql.pid"),
		"--log-error="+filepath.Join(rd, "mysql.err"),
		// go test ./... runs packages in parallel, each with its pools.
		"--max-connections=1000",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_unicode_ci",
		// MariaDB's default pool of 128 MiB is smaller than one make bench
		// run's tables (about 370 MiB): the tickets, ledger and gift record
		// keys are random, so their inserts then read pages from disk.
		// With 1 GiB the gift writer after the HTTP rows went from 8.2k to
		// 10.7k gifts/s, and the fan-out p99 from 173 ms to 36 ms (a push
		// waits for the gift's MySQL commit). The pool is reserved, not
		// used, until the data is there.
		"--innodb-buffer-pool-size=1G",
	)
	if err != nil {
		return err
	}
	e.children = append(e.children, c)
	deadline := time.Now().Add(mysqlStartTimeout)
	for {
		err := mysqlSelect1(ctx, mc)
		if err == nil {
			break
		}
		if c.exited() {
			return c.exitError()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("MariaDB at %s did not answer SELECT 1 within %s: %v; see %s", mc.Addr, mysqlStartTimeout, err, c.logPath)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	if err := e.ensureMySQLUser(ctx, mc); err != nil {
		return err
	}
	e.mysqlState = "started, data in " + dir
	e.log.Info("started mariadbd", "addr", mc.Addr, "pid", c.cmd.Process.Pid, "data", dir, "log", c.logPath)
	return nil
}

// initMySQL creates the data directory once. A marker written after a
// successful mariadb-install-db tells a finished directory from one that an
// interrupted first run left behind, which is wiped and made again.
func (e *env) initMySQL(ctx context.Context, dir, runAs string) error {
	marker := filepath.Join(dir, "flashgate-initialised")
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	e.log.Info("initialising the MariaDB data directory (first run only)", "dir", dir)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	logPath := filepath.Join(e.cfg.RunDir, "mysql-install.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	ictx, cancel := context.WithTimeout(ctx, mysqlInitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ictx, findBin("mariadb-install-db"),
		"--no-defaults", "--user="+runAs, "--datadir="+dir,
		"--auth-root-authentication-method=normal", "--skip-test-db")
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("mariadb-install-db failed (%w); end of %s:\n%s", err, logPath, tail(logPath, 20))
	}
	return os.WriteFile(marker, []byte("mariadb-install-db completed "+time.Now().Format(time.RFC3339)+"\n"), 0o644)
}

// ensureMySQLUser creates the DSN's user on a server flashgate dev started,
// whose only account is a root without password.
func (e *env) ensureMySQLUser(ctx context.Context, mc *mysql.Config) error {
	if mc.User == "root" || mc.User == "" {
		return nil
	}
	rc := mc.Clone()
	rc.User, rc.Passwd = "root", ""
	if mysqlSelect1(ctx, mc) == nil {
		return nil
	}
	rc.DBName = ""
	conn, err := mysql.NewConnector(rc)
	if err != nil {
		return err
	}
	d := sql.OpenDB(conn)
	defer d.Close()
	for _, host := range []string{"%", "localhost", "127.0.0.1"} {
		for _, q := range []string{
			"CREATE USER IF NOT EXISTS ?@? IDENTIFIED BY ?",
			"GRANT ALL PRIVILEGES ON *.* TO ?@?",
		} {
			args := []any{mc.User, host, mc.Passwd}
			if strings.HasPrefix(q, "GRANT") {
				args = args[:2]
			}
			if _, err := d.ExecContext(ctx, q, args...); err != nil {
				return fmt.Errorf("cannot create MySQL user %q of FLASHGATE_MYSQL_DSN: %w", mc.User, err)
			}
		}
	}
	return nil
}

// ---- Kafka ----

func (e *env) startKafka(ctx context.Context) error {
	if len(e.cfg.KafkaBrokers) == 0 {
		return errors.New("FLASHGATE_KAFKA_BROKERS is empty")
	}
	addr := e.cfg.KafkaBrokers[0]
	switch {
	case e.opts.KafkaExplicit:
		e.log.Info("using the Kafka of FLASHGATE_KAFKA_BROKERS; no embedded broker", "brokers", strings.Join(e.cfg.KafkaBrokers, ","))
		e.kafkaState = "from FLASHGATE_KAFKA_BROKERS"
	case listening(addr):
		e.log.Info("reusing the Kafka broker that answers", "addr", addr)
		e.kafkaState = "reused"
	default:
		_, port, err := loopbackBind("Kafka", addr)
		if err != nil {
			return err
		}
		if len(e.cfg.KafkaBrokers) > 1 {
			e.log.Warn("the embedded broker listens only on the first of FLASHGATE_KAFKA_BROKERS", "addr", addr)
		}
		dir := filepath.Join(e.cfg.RunDir, "kafka")
		c, err := kfake.NewCluster(
			kfake.Ports(port), // one broker, on 127.0.0.1
			kfake.DataDir(dir),
			// Seeds only a new DataDir; EnsureTopics below covers a changed prefix.
			kfake.SeedTopics(int32(e.cfg.KafkaPartitions), e.cfg.Topics()...),
			kfake.WithLogger(kfakeLogger{e.log.With("component", "kfake")}),
		)
		if err != nil {
			return fmt.Errorf("cannot start the embedded Kafka broker on %s (data %s): %w", addr, dir, err)
		}
		e.kfake = c
		e.kafkaState = "embedded (kfake), data in " + dir
		e.log.Info("started the embedded Kafka broker (kfake)", "addr", addr, "data", dir)
	}
	cl, err := bus.NewClient(e.cfg, e.log)
	if err != nil {
		return err
	}
	defer cl.Close()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := bus.EnsureTopics(tctx, cl, e.cfg); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("cannot reach Kafka at %s: %w", strings.Join(e.cfg.KafkaBrokers, ","), err)
	}
	return nil
}

// kfakeLogger sends kfake's logs to slog; its info level is per request, so
// it becomes debug.
type kfakeLogger struct{ log *slog.Logger }

func (l kfakeLogger) Logf(lv kfake.LogLevel, format string, args ...any) {
	level := slog.LevelDebug
	switch lv {
	case kfake.LogLevelNone:
		return
	case kfake.LogLevelError:
		level = slog.LevelError
	case kfake.LogLevelWarn:
		level = slog.LevelWarn
	}
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}
