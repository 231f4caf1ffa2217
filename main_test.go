package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/config"
)

// capture runs f with os.Stdout and os.Stderr redirected and returns what
// they received.
func capture(t *testing.T, f func()) (stdout, stderr string) {
	t.Helper()
	read := func(p *os.File) <-chan string {
		c := make(chan string, 1)
		go func() { b, _ := io.ReadAll(p); c <- string(b) }()
		return c
	}
	or, ow, _ := os.Pipe()
	er, ew, _ := os.Pipe()
	oc, ec := read(or), read(er)
	saveOut, saveErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = ow, ew
	defer func() { os.Stdout, os.Stderr = saveOut, saveErr }()
	f()
	ow.Close()
	ew.Close()
	return <-oc, <-ec
}

func clearEnv(t *testing.T) {
	for _, v := range config.Vars {
		t.Setenv(v.Name, "")
		if v.Secret {
			t.Setenv(v.Name+"_FILE", "")
		}
	}
}

func TestCommandLine(t *testing.T) {
	const (
		goodSecret    = "a-random-token-secret-of-32-byte"
		goodPaySecret = "a-random-pay-secret-of-32-bytes!"
	)
	soon := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	secretFile := filepath.Join(t.TempDir(), "token-secret")
	if err := os.WriteFile(secretFile, []byte(goodSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		env        map[string]string
		args       []string
		code       int
		stdout     string // substring expected on stdout
		stderr     string // substring expected on stderr
		noStdout   bool
		tokenUser  int64
		tokenAdmin bool
		tokenTTL   time.Duration
	}{
		{name: "no args lists commands", code: 0, stdout: "dev "},
		{name: "help", args: []string{"help"}, code: 0, stdout: "migrate "},
		{name: "help of a command", args: []string{"help", "token"}, code: 0, stdout: "FLASHGATE_TOKEN_SECRET"},
		{name: "command --help lists env with defaults", args: []string{"dev", "--help"}, code: 0, stdout: "FLASHGATE_RUN_DIR"},
		{name: "unknown command", args: []string{"bogus"}, code: 2, stderr: `unknown command "bogus"`, noStdout: true},
		{name: "unknown flag", args: []string{"migrate", "--bogus"}, code: 2, stderr: "flag provided but not defined", noStdout: true},
		{name: "stray argument", args: []string{"worker", "now"}, code: 2, stderr: `unexpected argument "now"`},
		{name: "bad env", env: map[string]string{"FLASHGATE_ORDER_TTL": "soon"}, args: []string{"gateway"}, code: 2, stderr: "FLASHGATE_ORDER_TTL"},
		{name: "service refuses without secret", args: []string{"gateway"}, code: 1, stderr: "refusing to start: FLASHGATE_TOKEN_SECRET"},
		{name: "service refuses the dev secret outside dev mode", env: map[string]string{"FLASHGATE_TOKEN_SECRET": config.DevTokenSecret}, args: []string{"ws"}, code: 1, stderr: "refusing to start"},
		{name: "gateway refuses a public previous secret", env: map[string]string{"FLASHGATE_TOKEN_SECRET": goodSecret, "FLASHGATE_TOKEN_SECRET_PREVIOUS": config.DevTokenSecret, "FLASHGATE_TOKEN_PREVIOUS_UNTIL": soon, "FLASHGATE_PAY_SECRET": goodPaySecret}, args: []string{"gateway"}, code: 1, stderr: "refusing to start: FLASHGATE_TOKEN_SECRET_PREVIOUS is a public value"},
		{name: "gateway refuses the dev pay secret", env: map[string]string{"FLASHGATE_TOKEN_SECRET": goodSecret, "FLASHGATE_PAY_SECRET": config.DevPaySecret}, args: []string{"gateway"}, code: 1, stderr: "refusing to start: FLASHGATE_PAY_SECRET is a public value"},
		{name: "gateway refuses a short pay secret", env: map[string]string{"FLASHGATE_TOKEN_SECRET": goodSecret, "FLASHGATE_PAY_SECRET": "short-pay-secret"}, args: []string{"gateway"}, code: 1, stderr: "refusing to start: FLASHGATE_PAY_SECRET is too short (16 bytes)"},
		{name: "gateway refuses without a pay secret", env: map[string]string{"FLASHGATE_TOKEN_SECRET": goodSecret}, args: []string{"gateway"}, code: 1, stderr: "refusing to start: FLASHGATE_PAY_SECRET is empty"},
		{name: "worker refuses a short token secret", env: map[string]string{"FLASHGATE_TOKEN_SECRET": "a-real-secret-of-enough-length"}, args: []string{"worker"}, code: 1, stderr: "refusing to start: FLASHGATE_TOKEN_SECRET is too short (30 bytes)"},
		{name: "rotation without an end", env: map[string]string{"FLASHGATE_TOKEN_SECRET": goodSecret, "FLASHGATE_TOKEN_SECRET_PREVIOUS": "the-old-random-secret-32-bytes-x"}, args: []string{"ws"}, code: 1, stderr: "refusing to start: FLASHGATE_TOKEN_PREVIOUS_UNTIL is empty"},
		{name: "rotation ending next month", env: map[string]string{"FLASHGATE_TOKEN_SECRET": goodSecret, "FLASHGATE_TOKEN_SECRET_PREVIOUS": "the-old-random-secret-32-bytes-x", "FLASHGATE_TOKEN_PREVIOUS_UNTIL": time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)}, args: []string{"worker"}, code: 1, stderr: "is more than 7 days ahead"},
		{name: "token longer than the max ttl", env: map[string]string{"FLASHGATE_DEV": "1"}, args: []string{"token", "--user", "1", "--ttl", "87600h"}, code: 2, stderr: "longer than FLASHGATE_TOKEN_MAX_TTL (24h0m0s)", noStdout: true},
		{name: "gateway refuses the sandbox outside dev mode", env: map[string]string{"FLASHGATE_TOKEN_SECRET": goodSecret, "FLASHGATE_PAY_SECRET": goodPaySecret}, args: []string{"gateway"}, code: 1, stderr: "refusing to start: FLASHGATE_SANDBOX_PAYMENTS is not set and the gateway's built-in payment provider is a sandbox"},
		{name: "worker refuses the sandbox outside dev mode", env: map[string]string{"FLASHGATE_TOKEN_SECRET": goodSecret}, args: []string{"worker"}, code: 1, stderr: "refusing to start: FLASHGATE_SANDBOX_PAYMENTS is not set and the worker's built-in payout provider is a sandbox"},
		{name: "dev mode refuses a public address", env: map[string]string{"FLASHGATE_DEV": "1", "FLASHGATE_GATEWAY_ADDR": "0.0.0.0:0"}, args: []string{"gateway"}, code: 1, stderr: `refusing to start: FLASHGATE_GATEWAY_ADDR="0.0.0.0:0" is not a loopback address`},
		{name: "flashgate dev refuses a public address", env: map[string]string{"FLASHGATE_WS_ADDR": ":0"}, args: []string{"dev"}, code: 1, stderr: `refusing to start: FLASHGATE_WS_ADDR=":0" is not a loopback address: dev mode serves routes that mint admin tokens`},
		{name: "a secret is not a flag", env: map[string]string{"FLASHGATE_DEV": "1"}, args: []string{"gateway", "--token-secret", goodSecret}, code: 2, stderr: "flag provided but not defined: -token-secret"},
		{name: "token with the secret from a file", env: map[string]string{"FLASHGATE_TOKEN_SECRET_FILE": secretFile}, args: []string{"token", "--user", "9"}, code: 0, tokenUser: 9, tokenTTL: 24 * time.Hour},
		{name: "token needs a secret", args: []string{"token", "--user", "42"}, code: 1, stderr: "FLASHGATE_TOKEN_SECRET is not set", noStdout: true},
		{name: "token needs a user", env: map[string]string{"FLASHGATE_DEV": "1"}, args: []string{"token"}, code: 2, stderr: "--user"},
		{name: "dev token", env: map[string]string{"FLASHGATE_DEV": "1"}, args: []string{"token", "--user", "42"}, code: 0, tokenUser: 42, tokenTTL: 24 * time.Hour},
		{name: "admin token with ttl", env: map[string]string{"FLASHGATE_TOKEN_SECRET": "a-real-secret-of-enough-length"}, args: []string{"token", "--user", "7", "--admin", "--ttl", "1h"}, code: 0, tokenUser: 7, tokenAdmin: true, tokenTTL: time.Hour},
		{name: "user and users", env: map[string]string{"FLASHGATE_DEV": "1"}, args: []string{"token", "--user", "1", "--users", "1-2"}, code: 2, stderr: "not both", noStdout: true},
		{name: "users backwards", env: map[string]string{"FLASHGATE_DEV": "1"}, args: []string{"token", "--users", "9-3"}, code: 2, stderr: "below the first", noStdout: true},
		{name: "users not a range", env: map[string]string{"FLASHGATE_DEV": "1"}, args: []string{"token", "--users", "1-x"}, code: 2, stderr: "FIRST-LAST", noStdout: true},
		{name: "users bad format", env: map[string]string{"FLASHGATE_DEV": "1"}, args: []string{"token", "--users", "1-2", "--format", "json"}, code: 2, stderr: "txt or csv", noStdout: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var code int
			out, errOut := capture(t, func() { code = run(tc.args) })
			if code != tc.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			if !strings.Contains(out, tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, out)
			}
			if !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errOut)
			}
			if tc.noStdout && out != "" {
				t.Errorf("unexpected stdout: %s", out)
			}
			if tc.tokenUser == 0 {
				return
			}
			cfg, _ := config.FromEnv()
			claims, err := auth.NewSigner(cfg.TokenSecret).Verify(strings.TrimSpace(out))
			if err != nil {
				t.Fatalf("printed token %q does not verify: %v", out, err)
			}
			if claims.UserID != tc.tokenUser || claims.IsAdmin() != tc.tokenAdmin {
				t.Errorf("claims %+v, want user %d admin %v", claims, tc.tokenUser, tc.tokenAdmin)
			}
			if left := time.Until(claims.Expires); left > tc.tokenTTL || left < tc.tokenTTL-time.Minute {
				t.Errorf("token valid for %s, want %s", left, tc.tokenTTL)
			}
		})
	}
}

func TestKafkaExplicit(t *testing.T) {
	for _, tc := range []struct {
		env  string
		args []string
		want bool
	}{
		{"", nil, false},
		{"", []string{"--redis-addr", "127.0.0.1:1"}, false},
		{"127.0.0.1:9092", nil, true},
		{"", []string{"--kafka-brokers", "127.0.0.1:9092"}, true},
	} {
		clearEnv(t)
		t.Setenv("FLASHGATE_KAFKA_BROKERS", tc.env)
		fs := config.NewFlagSet("flashgate dev", "")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if got := kafkaExplicit(fs); got != tc.want {
			t.Errorf("env %q args %q: kafkaExplicit = %v, want %v", tc.env, tc.args, got, tc.want)
		}
	}
}

// --help shows each variable with its default on one line, whatever the
// width of the longest name.
func TestHelpShowsDefaults(t *testing.T) {
	clearEnv(t)
	out, _ := capture(t, func() { run([]string{"worker", "--help"}) })
	if !regexp.MustCompile(`(?m)^\s+FLASHGATE_RUN_DIR\s+\.run\s`).MatchString(out) {
		t.Errorf("no FLASHGATE_RUN_DIR line with its default .run:\n%s", out)
	}
}

// TestTokenRange: `flashgate token --users` mints one verifiable token per
// user of the range, in order, as plain lines or csv, to a file or stdout.
func TestTokenRange(t *testing.T) {
	clearEnv(t)
	t.Setenv("FLASHGATE_DEV", "1")
	cfg, _ := config.FromEnv()
	signer := auth.NewSigner(cfg.TokenSecret)
	check := func(lines []string, first int64, csv bool) {
		t.Helper()
		for i, line := range lines {
			want := first + int64(i)
			tok := line
			if csv {
				id, rest, _ := strings.Cut(line, ",")
				if id != strconv.FormatInt(want, 10) {
					t.Fatalf("line %d: user %q, want %d", i, id, want)
				}
				tok = rest
			}
			c, err := signer.Verify(tok)
			if err != nil || c.UserID != want || c.IsAdmin() {
				t.Fatalf("line %d: claims %+v %v, want user %d", i, c, err, want)
			}
		}
	}

	path := filepath.Join(t.TempDir(), "tokens.txt")
	var code int
	_, errOut := capture(t, func() { code = run([]string{"token", "--users", "10-1009", "--out", path}) })
	if code != 0 || !strings.Contains(errOut, "1000 tokens") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 1000 {
		t.Fatalf("%d lines, want 1000", len(lines))
	}
	check(lines, 10, false)

	out, _ := capture(t, func() { code = run([]string{"token", "--users", "5-7", "--format", "csv"}) })
	lines = strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 4 || lines[0] != "user_id,token" {
		t.Fatalf("exit %d, csv:\n%s", code, out)
	}
	check(lines[1:], 5, true)
}
