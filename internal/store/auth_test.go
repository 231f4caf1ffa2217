package store

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/testenv"
)

// TestAuthAndTLS: a Redis that wants a user, a password and TLS is reached
// with the FLASHGATE_REDIS_* settings, and refuses a client with the wrong
// password or without TLS.
func TestAuthAndTLS(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed: `make test` installs it")
	}
	tf := testenv.SelfSignedTLS(t)
	port := testenv.FreePort(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", "0", "--tls-port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--tls-cert-file", tf.CertFile, "--tls-key-file", tf.KeyFile, "--tls-ca-cert-file", tf.CAFile, "--tls-auth-clients", "no",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"),
		"--user", "default", "off", "--user", "flashgate", "on", ">s3cret-password", "~*", "&*", "+@all")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Skipf("redis-server did not listen on its TLS port (built without TLS?); see %s", filepath.Join(dir, "redis.log"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	try := func(mod func(*config.Config)) error {
		cfg := config.Default()
		cfg.RedisAddr = addr
		cfg.RedisUsername, cfg.RedisPassword = "flashgate", "s3cret-password"
		cfg.RedisTLS, cfg.RedisTLSCA = true, tf.CAFile
		mod(&cfg)
		s, err := Dial(cfg)
		if err != nil {
			return err
		}
		defer s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return s.Ping(ctx)
	}
	if err := try(func(*config.Config) {}); err != nil {
		t.Fatalf("with the right settings: %v", err)
	}
	for name, mod := range map[string]func(*config.Config){
		"wrong password":   func(c *config.Config) { c.RedisPassword = "wrong" },
		"no user":          func(c *config.Config) { c.RedisUsername, c.RedisPassword = "", "" },
		"no TLS":           func(c *config.Config) { c.RedisTLS, c.RedisTLSCA = false, "" },
		"untrusted server": func(c *config.Config) { c.RedisTLSCA = "" },
	} {
		if err := try(mod); err == nil {
			t.Errorf("%s: Redis let the client in", name)
		}
	}
}
