package config

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// env turns a map into a lookup function like os.LookupEnv.
func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestVarsAreWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, v := range Vars {
		if !strings.HasPrefix(v.Name, "FLASHGATE_") {
			t.Errorf("%s: name must start with FLASHGATE_", v.Name)
		}
		if seen[v.Name] {
			t.Errorf("%s is listed twice", v.Name)
		}
		seen[v.Name] = true
		if strings.TrimSpace(v.Help) == "" {
			t.Errorf("%s has no help text", v.Name)
		}
		if v.set == nil {
			t.Errorf("%s has no setter", v.Name)
		}
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"GatewayAddr", c.GatewayAddr, "127.0.0.1:8080"},
		{"WSAddr", c.WSAddr, "127.0.0.1:8081"},
		{"WorkerAddr", c.WorkerAddr, "127.0.0.1:8082"},
		{"InternalAddr", c.InternalAddr, "127.0.0.1:9090"},
		{"WSInternalAddr", c.WSInternalAddr, "127.0.0.1:9091"},
		{"RedisAddr", c.RedisAddr, "127.0.0.1:16379"},
		{"MySQLDSN", c.MySQLDSN, "root@tcp(127.0.0.1:13306)/flashgate"},
		{"KafkaBrokers", c.KafkaBrokers, []string{"127.0.0.1:19092"}},
		{"KafkaPartitions", c.KafkaPartitions, 8},
		{"TopicPrefix", c.TopicPrefix, "flashgate"},
		{"Dev", c.Dev, false},
		{"TokenSecret", c.TokenSecret, ""},
		{"TokenMaxTTL", c.TokenMaxTTL, 24 * time.Hour},
		{"OrderTTL", c.OrderTTL, 15 * time.Minute},
		{"ProduceTimeout", c.ProduceTimeout, 2 * time.Second},
		{"RedisTimeout", c.RedisTimeout, 500 * time.Millisecond},
		{"WarmAhead", c.WarmAhead, 10 * time.Minute},
		{"PendingTimeout", c.PendingTimeout, 45 * time.Second},
		{"WorkerBatch", c.WorkerBatch, 500},
		{"WSSendQueue", c.WSSendQueue, 256},
		{"WSSendBytes", c.WSSendBytes, 1 << 20},
		{"RateOrder", c.RateOrder, Rate{PerSecond: 5, Burst: 10}},
		{"RateIP", c.RateIP, Rate{PerSecond: 50, Burst: 100}},
		{"MaxInflight", c.MaxInflight, 2048},
		{"InflightWait", c.InflightWait, 5 * time.Millisecond},
		{"LogLevel", c.LogLevel, "info"},
		{"RunDir", c.RunDir, ".run"},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("Default().%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestRateVar(t *testing.T) {
	for in, want := range map[string]Rate{"5:10": {5, 10}, "0.5:1": {0.5, 1}, "0": {}} {
		c, err := fromLookup(env(map[string]string{"FLASHGATE_RATE_ORDER": in}))
		if err != nil || c.RateOrder != want {
			t.Errorf("FLASHGATE_RATE_ORDER=%s: %+v, %v", in, c.RateOrder, err)
		}
	}
	for _, bad := range []string{"5", "x:1", "5:0", "-1:3", "5:x"} {
		if _, err := fromLookup(env(map[string]string{"FLASHGATE_RATE_ORDER": bad})); err == nil || !strings.Contains(err.Error(), "FLASHGATE_RATE_ORDER") {
			t.Errorf("FLASHGATE_RATE_ORDER=%s: err %v", bad, err)
		}
	}
}

func TestFromLookupEmptyEnvironmentIsDefault(t *testing.T) {
	c, err := fromLookup(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("fromLookup(empty) = %+v, want the defaults", c)
	}
	// A variable set to "" means "use the default", as an unset one does.
	blank := map[string]string{}
	for _, v := range Vars {
		blank[v.Name] = ""
	}
	c, err = fromLookup(env(blank))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("fromLookup(all blank) = %+v, want the defaults", c)
	}
}

func TestFromLookupOverrides(t *testing.T) {
	c, err := fromLookup(env(map[string]string{
		"FLASHGATE_GATEWAY_ADDR":     "0.0.0.0:9000",
		"FLASHGATE_REDIS_ADDR":       "redis:6379",
		"FLASHGATE_MYSQL_DSN":        "app:pw@tcp(db:3306)/fg",
		"FLASHGATE_KAFKA_PARTITIONS": "32",
		"FLASHGATE_TOPIC_PREFIX":     "prod",
		"FLASHGATE_TOKEN_SECRET":     "0123456789abcdef0123456789abcdef",
		"FLASHGATE_ORDER_TTL":        "30s",
		"FLASHGATE_REDIS_TIMEOUT":    "150ms",
		"FLASHGATE_WORKER_BATCH":     "1000",
		"FLASHGATE_LOG_FORMAT":       "json",
		"FLASHGATE_DEV":              "false",
	}))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"GatewayAddr", c.GatewayAddr, "0.0.0.0:9000"},
		{"RedisAddr", c.RedisAddr, "redis:6379"},
		{"MySQLDSN", c.MySQLDSN, "app:pw@tcp(db:3306)/fg"},
		{"KafkaPartitions", c.KafkaPartitions, 32},
		{"TopicPrefix", c.TopicPrefix, "prod"},
		{"TokenSecret", c.TokenSecret, "0123456789abcdef0123456789abcdef"},
		{"OrderTTL", c.OrderTTL, 30 * time.Second},
		{"RedisTimeout", c.RedisTimeout, 150 * time.Millisecond},
		{"WorkerBatch", c.WorkerBatch, 1000},
		{"LogFormat", c.LogFormat, "json"},
		{"Dev", c.Dev, false},
		// untouched settings keep their defaults
		{"WSAddr", c.WSAddr, "127.0.0.1:8081"},
		{"WarmAhead", c.WarmAhead, 10 * time.Minute},
		{"PaySecret", c.PaySecret, ""},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if got := c.OrdersTopic(); got != "prod.orders" {
		t.Errorf("OrdersTopic() = %q", got)
	}
	if got := c.ResultsTopic(); got != "prod.results" {
		t.Errorf("ResultsTopic() = %q", got)
	}
	if got := c.DLQTopic(); got != "prod.orders.dlq" {
		t.Errorf("DLQTopic() = %q", got)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() with a real secret outside dev mode: %v", err)
	}
	if err := c.ValidateGateway(); err == nil || !strings.Contains(err.Error(), "FLASHGATE_PAY_SECRET") {
		t.Errorf("ValidateGateway() without a payment secret outside dev mode: %v", err)
	}
	c.PaySecret = "a-payment-provider-secret-0123456789"
	if err := c.ValidateGateway(); err != nil {
		t.Errorf("ValidateGateway() with real secrets outside dev mode: %v", err)
	}
}

func TestFromLookupRejectsBadValues(t *testing.T) {
	tests := []struct{ name, value string }{
		{"FLASHGATE_ORDER_TTL", "15"},
		{"FLASHGATE_ORDER_TTL", "soon"},
		{"FLASHGATE_ORDER_TTL", "-1m"},
		{"FLASHGATE_PRODUCE_TIMEOUT", "2 s"},
		{"FLASHGATE_WARM_AHEAD", "1d"},
		{"FLASHGATE_KAFKA_PARTITIONS", "eight"},
		{"FLASHGATE_KAFKA_PARTITIONS", "0"},
		{"FLASHGATE_WORKER_BATCH", "-5"},
		{"FLASHGATE_WORKER_BATCH", "1.5"},
		{"FLASHGATE_WS_SEND_QUEUE", "many"},
		{"FLASHGATE_WS_SEND_BYTES", "1MiB"},
		{"FLASHGATE_WS_SEND_BYTES", "0"},
		{"FLASHGATE_DEV", "yes"},
		{"FLASHGATE_DEV", "2"},
		{"FLASHGATE_KAFKA_BROKERS", ","},
		{"FLASHGATE_KAFKA_BROKERS", " , ,"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			_, err := fromLookup(env(map[string]string{tt.name: tt.value}))
			if err == nil {
				t.Fatalf("%s=%q was accepted", tt.name, tt.value)
			}
			if !strings.Contains(err.Error(), tt.name) {
				t.Errorf("error %q does not name %s", err, tt.name)
			}
		})
	}
}

func TestKafkaBrokers(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"k1:9092", []string{"k1:9092"}},
		{"k1:9092,k2:9092,k3:9092", []string{"k1:9092", "k2:9092", "k3:9092"}},
		{" k1:9092 , k2:9092 ", []string{"k1:9092", "k2:9092"}},
		{"k1:9092,,k2:9092,", []string{"k1:9092", "k2:9092"}},
	}
	for _, tt := range tests {
		c, err := fromLookup(env(map[string]string{"FLASHGATE_KAFKA_BROKERS": tt.in}))
		if err != nil {
			t.Errorf("FLASHGATE_KAFKA_BROKERS=%q: %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(c.KafkaBrokers, tt.want) {
			t.Errorf("FLASHGATE_KAFKA_BROKERS=%q gave %q, want %q", tt.in, c.KafkaBrokers, tt.want)
		}
	}
}

func TestDevDefaults(t *testing.T) {
	c, err := fromLookup(env(map[string]string{"FLASHGATE_DEV": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Dev || c.TokenSecret != DevTokenSecret || c.PaySecret != DevPaySecret || c.LogFormat != "text" {
		t.Errorf("dev mode: Dev=%v TokenSecret=%q PaySecret=%q LogFormat=%q; want the dev secrets and text logs",
			c.Dev, c.TokenSecret, c.PaySecret, c.LogFormat)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() in dev mode with the dev secret: %v", err)
	}

	// Explicit settings win over the dev defaults.
	c, err = fromLookup(env(map[string]string{
		"FLASHGATE_DEV":          "true",
		"FLASHGATE_TOKEN_SECRET": "my-own-token-secret-123",
		"FLASHGATE_PAY_SECRET":   "my-own-pay-secret",
		"FLASHGATE_LOG_FORMAT":   "json",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.TokenSecret != "my-own-token-secret-123" || c.PaySecret != "my-own-pay-secret" || c.LogFormat != "json" {
		t.Errorf("dev defaults overwrote explicit settings: %+v", c)
	}

	// Outside dev mode nothing is filled in.
	c = Default()
	c.ApplyDevDefaults()
	if c.TokenSecret != "" || c.PaySecret != "" || c.LogFormat != "" {
		t.Errorf("ApplyDevDefaults outside dev mode changed the config: %+v", c)
	}
}

func TestValidate(t *testing.T) {
	const good = "a-random-secret-of-32-characters"
	tests := []struct {
		name    string
		dev     bool
		secret  string
		wantErr bool
	}{
		{"production, empty secret", false, "", true},
		{"production, public dev secret", false, DevTokenSecret, true},
		{"production, short secret", false, "short", true},
		{"production, real secret", false, good, false},
		{"dev, empty secret after ApplyDevDefaults", true, "", false},
		{"dev, public dev secret", true, DevTokenSecret, false},
		{"dev, real secret", true, good, false},
		{"dev, short secret", true, "short", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Dev = tt.dev
			c.TokenSecret = tt.secret
			c.PaySecret = "a-payment-provider-secret-0123456789"
			c.ApplyDevDefaults()
			err := c.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, want error: %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "FLASHGATE_TOKEN_SECRET") {
				t.Errorf("error %q does not name FLASHGATE_TOKEN_SECRET", err)
			}
		})
	}
	// Without ApplyDevDefaults an empty secret is refused even in dev mode:
	// a service must not sign tokens with an empty key.
	c := Default()
	c.Dev = true
	if err := c.Validate(); err == nil {
		t.Error("Validate() accepted an empty token secret in dev mode without ApplyDevDefaults")
	}
}

// TestValidateWSPublicURL: the pages' WebSocket URL must be ws:// or wss://.
func TestValidateWSPublicURL(t *testing.T) {
	for _, tt := range []struct {
		url     string
		wantErr bool
	}{
		{"", false}, {"ws://127.0.0.1:8081/ws", false}, {"wss://push.example.com/ws", false},
		{"http://push.example.com/ws", true}, {"push.example.com/ws", true},
	} {
		c := Default()
		c.Dev = true
		c.ApplyDevDefaults()
		c.WSPublicURL = tt.url
		err := c.Validate()
		if (err != nil) != tt.wantErr || err != nil && !strings.Contains(err.Error(), "FLASHGATE_WS_PUBLIC_URL") {
			t.Errorf("FLASHGATE_WS_PUBLIC_URL=%q: Validate() = %v, want error: %v", tt.url, err, tt.wantErr)
		}
	}
}

func TestFlagsOverrideEnvironment(t *testing.T) {
	t.Setenv("FLASHGATE_REDIS_ADDR", "from-env:1")
	t.Setenv("FLASHGATE_ORDER_TTL", "1m")
	t.Setenv("FLASHGATE_WORKER_BATCH", "")
	fs := NewFlagSet("gateway", "flashgate gateway: the HTTP edge")
	fs.SetOutput(new(bytes.Buffer))
	if err := fs.Parse([]string{"-redis-addr", "from-flag:2", "-worker-batch", "7"}); err != nil {
		t.Fatal(err)
	}
	c, err := fs.Apply()
	if err != nil {
		t.Fatal(err)
	}
	if c.RedisAddr != "from-flag:2" {
		t.Errorf("RedisAddr = %q, want the flag's value", c.RedisAddr)
	}
	if c.OrderTTL != time.Minute {
		t.Errorf("OrderTTL = %v, want the environment's 1m", c.OrderTTL)
	}
	if c.WorkerBatch != 7 {
		t.Errorf("WorkerBatch = %d, want the flag's 7", c.WorkerBatch)
	}

	fs = NewFlagSet("gateway", "usage")
	fs.SetOutput(new(bytes.Buffer))
	if err := fs.Parse([]string{"-order-ttl", "forever"}); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Apply(); err == nil || !strings.Contains(err.Error(), "FLASHGATE_ORDER_TTL") {
		t.Errorf("a bad flag value gave %v, want an error naming FLASHGATE_ORDER_TTL", err)
	}
}

func TestUsageListsEveryVar(t *testing.T) {
	var buf bytes.Buffer
	fs := NewFlagSet("worker", "flashgate worker")
	fs.SetOutput(&buf)
	fs.Usage()
	out := buf.String()
	for _, v := range Vars {
		if !strings.Contains(out, v.Name) {
			t.Errorf("--help does not list %s", v.Name)
		}
	}
	if !strings.Contains(out, "(empty)") {
		t.Error("--help does not show empty defaults as (empty)")
	}
}

// readmeDefault is how the README's configuration table shows a default.
func readmeDefault(def string) string {
	if def == "" {
		return "(empty)"
	}
	return "`" + def + "`"
}

// TestREADMEDocumentsEveryVar keeps the README's configuration table in step
// with Vars: each variable has a row "| `NAME` | `default` | meaning |"
// (an empty default is written "(empty)"), and the table has no rows for
// variables that no longer exist.
func TestREADMEDocumentsEveryVar(t *testing.T) {
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatalf("cannot read the README: %v", err)
	}
	defer f.Close()

	rows := map[string][]string{} // variable name -> cells of its table row
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		name := strings.Trim(cells[0], "`")
		if len(cells) < 2 || !strings.HasPrefix(name, "FLASHGATE_") || cells[0] != "`"+name+"`" {
			continue
		}
		if _, dup := rows[name]; dup {
			t.Errorf("README: %s has two table rows", name)
		}
		rows[name] = cells
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}

	known := map[string]bool{}
	for _, v := range Vars {
		known[v.Name] = true
		cells, ok := rows[v.Name]
		if !ok {
			t.Errorf("README: no configuration table row for %s; add\n| `%s` | %s | %s |", v.Name, v.Name, readmeDefault(v.Default), v.Help)
			continue
		}
		if want := readmeDefault(v.Default); cells[1] != want {
			t.Errorf("README: %s default is %s, the code says %s", v.Name, cells[1], want)
		}
	}
	for name := range rows {
		if !known[name] {
			t.Errorf("README: table row for %s, which config.Vars does not have", name)
		}
	}
}

// validConfig is a configuration Validate accepts, for tests that break one
// setting of it.
func validConfig() Config {
	c := Default()
	c.TokenSecret = "a-random-secret-of-32-characters"
	return c
}

// TestValidateDurations: every duration setting refuses zero and negative
// values, naming the variable, except those whose help documents what zero
// means; those refuse only negative values.
func TestValidateDurations(t *testing.T) {
	if c := validConfig(); c.Validate() != nil {
		err := c.Validate()
		t.Fatalf("Validate() of the defaults: %v", err)
	}
	zeroOK := map[string]bool{"FLASHGATE_DRAIN_DELAY": true, "FLASHGATE_INFLIGHT_WAIT": true}
	n := 0
	for _, v := range Vars {
		if v.dur == nil {
			continue
		}
		n++
		if v.zeroOK != zeroOK[v.Name] {
			t.Errorf("%s: zero allowed = %v, want %v", v.Name, v.zeroOK, zeroOK[v.Name])
		}
		if v.zeroOK && !strings.Contains(v.Help, "0 means") {
			t.Errorf("%s allows zero but its help does not say what 0 means: %q", v.Name, v.Help)
		}
		for _, d := range []time.Duration{0, -time.Second} {
			t.Run(fmt.Sprintf("%s=%v", v.Name, d), func(t *testing.T) {
				c := validConfig()
				*v.dur(&c) = d
				err := c.Validate()
				if d == 0 && v.zeroOK {
					if err != nil {
						t.Fatalf("Validate() refused a documented zero: %v", err)
					}
					return
				}
				if err == nil {
					t.Fatal("Validate() accepted it")
				}
				if !strings.Contains(err.Error(), v.Name) {
					t.Errorf("error %q does not name %s", err, v.Name)
				}
			})
		}
		// The same from the environment, where the value is a string.
		_, err := fromLookup(env(map[string]string{v.Name: "0"}))
		if v.zeroOK && err != nil {
			t.Errorf("%s=0 from the environment: %v", v.Name, err)
		}
		if !v.zeroOK && (err == nil || !strings.Contains(err.Error(), v.Name)) {
			t.Errorf("%s=0 from the environment: err %v, want one naming the variable", v.Name, err)
		}
	}
	if n < 15 {
		t.Errorf("only %d duration settings are validated", n)
	}
}

// TestValidatePendingTimeout: the reconciler must not release a reservation
// while its gateway may still be waiting on Redis and Kafka to answer 202.
func TestValidatePendingTimeout(t *testing.T) {
	tests := []struct {
		name                    string
		pending, produce, redis time.Duration
		wantErr                 bool
	}{
		{"defaults", 45 * time.Second, 2 * time.Second, 500 * time.Millisecond, false},
		{"just above", 3*time.Second + time.Millisecond, 2 * time.Second, 500 * time.Millisecond, false},
		{"equal", 3 * time.Second, 2 * time.Second, 500 * time.Millisecond, true},
		{"below", time.Second, 2 * time.Second, 500 * time.Millisecond, true},
		{"long produce timeout", 45 * time.Second, 45 * time.Second, 500 * time.Millisecond, true},
		{"long redis timeout", 45 * time.Second, 2 * time.Second, 22 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			c.PendingTimeout, c.ProduceTimeout, c.RedisTimeout = tt.pending, tt.produce, tt.redis
			err := c.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, want error: %v", err, tt.wantErr)
			}
			if err == nil {
				return
			}
			for _, want := range []string{"FLASHGATE_PENDING_TIMEOUT", "FLASHGATE_PRODUCE_TIMEOUT", "FLASHGATE_REDIS_TIMEOUT", "reconciler"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %s", err, want)
				}
			}
		})
	}
}

// TestInflightBudgets: the per-class budgets default to shares of
// FLASHGATE_MAX_INFLIGHT, and Validate refuses budgets with which requests
// stuck on MySQL could take every slot.
func TestInflightBudgets(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    InflightBudgets
		wantErr string // a variable the error must name; "" = valid
	}{
		{"defaults", nil, InflightBudgets{Total: 2048, Orders: 2048, Gifts: 2048, Reads: 256, Payments: 128}, ""},
		{"defaults follow the total", map[string]string{"FLASHGATE_MAX_INFLIGHT": "64"},
			InflightBudgets{Total: 64, Orders: 64, Gifts: 64, Reads: 8, Payments: 4}, ""},
		{"a small total still leaves room", map[string]string{"FLASHGATE_MAX_INFLIGHT": "4"},
			InflightBudgets{Total: 4, Orders: 4, Gifts: 4, Reads: 1, Payments: 1}, ""},
		{"explicit budgets", map[string]string{"FLASHGATE_MAX_INFLIGHT": "1000", "FLASHGATE_INFLIGHT_ORDERS": "600",
			"FLASHGATE_INFLIGHT_GIFTS": "300", "FLASHGATE_INFLIGHT_READS": "50", "FLASHGATE_INFLIGHT_PAYMENTS": "20"},
			InflightBudgets{Total: 1000, Orders: 600, Gifts: 300, Reads: 50, Payments: 20}, ""},
		{"too small a total", map[string]string{"FLASHGATE_MAX_INFLIGHT": "2"},
			InflightBudgets{Total: 2, Orders: 2, Gifts: 2, Reads: 1, Payments: 1}, "FLASHGATE_INFLIGHT_READS"},
		{"reads and payments fill the total", map[string]string{"FLASHGATE_MAX_INFLIGHT": "100",
			"FLASHGATE_INFLIGHT_READS": "90", "FLASHGATE_INFLIGHT_PAYMENTS": "10"},
			InflightBudgets{Total: 100, Orders: 100, Gifts: 100, Reads: 90, Payments: 10}, "FLASHGATE_MAX_INFLIGHT"},
		{"a class over the total", map[string]string{"FLASHGATE_MAX_INFLIGHT": "100", "FLASHGATE_INFLIGHT_GIFTS": "200"},
			InflightBudgets{Total: 100, Orders: 100, Gifts: 200, Reads: 12, Payments: 6}, "FLASHGATE_INFLIGHT_GIFTS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[string]string{"FLASHGATE_TOKEN_SECRET": "a-random-secret-of-32-characters"}
			for k, v := range tt.env {
				m[k] = v
			}
			c, err := fromLookup(env(m))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.InflightBudgets(); got != tt.want {
				t.Errorf("InflightBudgets() = %+v, want %+v", got, tt.want)
			}
			err = c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v", err)
			case tt.wantErr != "" && err == nil:
				t.Error("Validate() accepted it")
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("error %q does not name %s", err, tt.wantErr)
			}
		})
	}
	for _, bad := range []string{"0", "-1", "many"} {
		if _, err := fromLookup(env(map[string]string{"FLASHGATE_INFLIGHT_READS": bad})); err == nil || !strings.Contains(err.Error(), "FLASHGATE_INFLIGHT_READS") {
			t.Errorf("FLASHGATE_INFLIGHT_READS=%s: err %v", bad, err)
		}
	}
}

// TestDrainDelay: 5s by default, 0 allowed, and none in dev mode unless set:
// no load balancer waits for a dev process.
func TestDrainDelay(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want time.Duration
	}{
		{nil, 5 * time.Second},
		{map[string]string{"FLASHGATE_DRAIN_DELAY": "0"}, 0},
		{map[string]string{"FLASHGATE_DRAIN_DELAY": "30s"}, 30 * time.Second},
		{map[string]string{"FLASHGATE_DEV": "1"}, 0},
		{map[string]string{"FLASHGATE_DEV": "1", "FLASHGATE_DRAIN_DELAY": "2s"}, 2 * time.Second},
	}
	for _, tt := range tests {
		c, err := fromLookup(env(tt.env))
		if err != nil {
			t.Fatalf("%v: %v", tt.env, err)
		}
		if c.DrainDelay != tt.want {
			t.Errorf("%v: DrainDelay = %v, want %v", tt.env, c.DrainDelay, tt.want)
		}
	}
	if _, err := fromLookup(env(map[string]string{"FLASHGATE_DRAIN_DELAY": "-1s"})); err == nil || !strings.Contains(err.Error(), "FLASHGATE_DRAIN_DELAY") {
		t.Errorf("FLASHGATE_DRAIN_DELAY=-1s: err %v", err)
	}
}

// TestValidateSecrets: outside dev mode a service refuses to start when a
// secret is a public value (a dev secret or one the README prints, or a
// longer string containing one) or shorter than 32 bytes, naming the
// variable; in dev mode the dev values are what it runs with.
func TestValidateSecrets(t *testing.T) {
	const (
		good     = "a-random-secret-of-32-characters"
		goodPay  = "another-random-secret-of-32-byte"
		goodPrev = "the-old-random-secret-32-bytes-x"
	)
	tests := []struct {
		name           string
		dev            bool
		token, prev    string
		pay            string
		wantErr        string // the variable the error names; "" = accepted
		wantErrMention string
	}{
		{"production, all good", false, good, goodPrev, goodPay, "", ""},
		{"production, no previous", false, good, "", goodPay, "", ""},
		{"production, token is the dev secret", false, DevTokenSecret, "", goodPay, "FLASHGATE_TOKEN_SECRET", "public"},
		{"production, token contains the dev secret", false, DevTokenSecret + "-2", "", goodPay, "FLASHGATE_TOKEN_SECRET", "public"},
		{"production, token is the dev pay secret", false, DevPaySecret + "-padded-to-32-bytes", "", goodPay, "FLASHGATE_TOKEN_SECRET", "public"},
		{"production, token 31 bytes", false, good[:31], "", goodPay, "FLASHGATE_TOKEN_SECRET", "too short"},
		{"production, previous is the dev secret", false, good, DevTokenSecret, goodPay, "FLASHGATE_TOKEN_SECRET_PREVIOUS", "public"},
		{"production, previous 16 bytes", false, good, "the-old-secret16", goodPay, "FLASHGATE_TOKEN_SECRET_PREVIOUS", "too short"},
		{"production, pay is the dev pay secret", false, good, "", DevPaySecret, "FLASHGATE_PAY_SECRET", "public"},
		{"production, pay is the dev token secret", false, good, "", DevTokenSecret, "FLASHGATE_PAY_SECRET", "public"},
		{"production, pay one byte", false, good, "", "x", "FLASHGATE_PAY_SECRET", "too short"},
		{"production, pay 31 bytes", false, good, "", goodPay[:31], "FLASHGATE_PAY_SECRET", "too short"},
		{"dev, the dev secrets", true, DevTokenSecret, "", DevPaySecret, "", ""},
		{"dev, short pay secret", true, good, "", "x", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Dev = tt.dev
			c.TokenSecret, c.TokenSecretPrevious, c.PaySecret = tt.token, tt.prev, tt.pay
			if tt.prev != "" {
				c.TokenPreviousUntil = time.Now().Add(time.Hour)
			}
			err := c.ValidateGateway()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateGateway() = %v, want it accepted", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateGateway() accepted it")
			}
			// The error names the variable (and not a longer one that
			// contains its name) and says why.
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.wantErr+" ") || !strings.Contains(msg, tt.wantErrMention) {
				t.Errorf("error %q: want it to start with %s and mention %q", msg, tt.wantErr, tt.wantErrMention)
			}
			for _, secret := range []string{tt.token, tt.prev, tt.pay} {
				if len(secret) > 1 && strings.Contains(msg, secret) {
					t.Errorf("error %q prints a secret", msg)
				}
			}
			// The worker and ws refuse public token and pay secrets too: they
			// run from the same environment.
			if err := c.Validate(); err == nil {
				t.Errorf("Validate() accepted it")
			}
		})
	}
}

// TestPublicSecretsCoverTheDocs: every secret value the README or the docs
// print (an example for curl or openssl, an environment assignment) is
// refused outside dev mode, so that copying an example into production
// cannot work.
func TestPublicSecretsCoverTheDocs(t *testing.T) {
	patterns := []*regexp.Regexp{
		regexp.MustCompile(`FLASHGATE_\w*SECRET\w*\s*[=:]\s*["']?([^\s"'` + "`" + `]+)`),
		regexp.MustCompile(`-hmac\s+["']?([^\s"'` + "`" + `|]+)`),
		regexp.MustCompile(`(?i)secret(?: is|:)\s+` + "`" + `([^` + "`" + `]+)` + "`"),
	}
	found := 0
	for _, path := range []string{"../../README.md", "../../k8s/README.md", "../../loadtest/README.md", "../../docs/openapi.yaml"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, re := range patterns {
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				v := m[1]
				// Placeholders, not values.
				if strings.HasPrefix(v, "$") || strings.HasPrefix(v, "<") || strings.Trim(v, ".") == "" {
					continue
				}
				found++
				if err := checkSecret("FLASHGATE_TOKEN_SECRET", v); err == nil {
					t.Errorf("%s prints the secret %q, which is accepted outside dev mode: add it to PublicSecrets", path, v)
				}
			}
		}
	}
	if found == 0 {
		t.Error("found no secret in the docs: the README's curl example of the dev pay secret should be one")
	}
}

// TestValidateRotation: a previous token secret needs an explicit end to its
// window, the same for every replica, at most 7 days ahead. One that has
// passed is not refused (a restart must not fail because a rotation ended)
// but warned about.
func TestValidateRotation(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name    string
		dev     bool
		until   time.Time
		wantErr string
		warn    bool
	}{
		{"no end", false, time.Time{}, "FLASHGATE_TOKEN_PREVIOUS_UNTIL is empty", false},
		{"no end in dev mode", true, time.Time{}, "FLASHGATE_TOKEN_PREVIOUS_UNTIL is empty", false},
		{"in an hour", false, now.Add(time.Hour), "", false},
		{"in 6 days", false, now.Add(6 * 24 * time.Hour), "", false},
		{"in 7 days and a minute", false, now.Add(MaxRotationWindow + time.Minute), "more than 7 days ahead", false},
		{"in 2099", false, time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), "more than 7 days ahead", false},
		{"ended", false, now.Add(-time.Hour), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			c.Dev = tt.dev
			c.TokenSecretPrevious = "the-old-random-secret-32-bytes-x"
			c.TokenPreviousUntil = tt.until
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate() = %v, want an error saying %q", err, tt.wantErr)
			}
			if w := c.Warnings(); (len(w) > 0) != tt.warn {
				t.Errorf("Warnings() = %q, want a warning: %v", w, tt.warn)
			}
		})
	}
	// Without a previous secret there is no window to configure.
	c := validConfig()
	if err := c.Validate(); err != nil || len(c.Warnings()) > 0 {
		t.Errorf("no rotation: %v, %q", err, c.Warnings())
	}
}

func TestDevTokenTTL(t *testing.T) {
	for _, tc := range []struct{ max, want time.Duration }{
		{24 * time.Hour, 24 * time.Hour}, {time.Hour, time.Hour}, {72 * time.Hour, 24 * time.Hour},
	} {
		c := Config{TokenMaxTTL: tc.max}
		if got := c.DevTokenTTL(); got != tc.want {
			t.Errorf("TokenMaxTTL %v: DevTokenTTL() = %v, want %v", tc.max, got, tc.want)
		}
	}
}

// TestDevListen: dev mode mints admin tokens for anyone who asks, so it
// refuses listen addresses beyond loopback unless FLASHGATE_DEV_PUBLIC=1,
// and then warns at every start.
func TestDevListen(t *testing.T) {
	tests := []struct {
		env     map[string]string
		wantErr string
	}{
		{map[string]string{"FLASHGATE_DEV": "1"}, ""},
		{map[string]string{"FLASHGATE_DEV": "1", "FLASHGATE_GATEWAY_ADDR": "localhost:8080", "FLASHGATE_WS_ADDR": "[::1]:8081"}, ""},
		{map[string]string{"FLASHGATE_DEV": "1", "FLASHGATE_GATEWAY_ADDR": "0.0.0.0:8080"}, "FLASHGATE_GATEWAY_ADDR"},
		{map[string]string{"FLASHGATE_DEV": "1", "FLASHGATE_WS_ADDR": ":8081"}, "FLASHGATE_WS_ADDR"},
		{map[string]string{"FLASHGATE_DEV": "1", "FLASHGATE_WORKER_ADDR": "[::]:8082"}, "FLASHGATE_WORKER_ADDR"},
		{map[string]string{"FLASHGATE_DEV": "1", "FLASHGATE_GATEWAY_ADDR": "10.1.2.3:8080"}, "FLASHGATE_GATEWAY_ADDR"},
		{map[string]string{"FLASHGATE_DEV": "1", "FLASHGATE_GATEWAY_ADDR": "myhost:8080"}, "FLASHGATE_GATEWAY_ADDR"},
		{map[string]string{"FLASHGATE_DEV": "1", "FLASHGATE_DEV_PUBLIC": "1", "FLASHGATE_GATEWAY_ADDR": "0.0.0.0:8080"}, ""},
		// Outside dev mode there is nothing to mint: any address is fine.
		{map[string]string{"FLASHGATE_TOKEN_SECRET": "a-random-secret-of-32-characters", "FLASHGATE_GATEWAY_ADDR": "0.0.0.0:8080"}, ""},
	}
	for _, tt := range tests {
		c, err := fromLookup(env(tt.env))
		if err != nil {
			t.Fatal(err)
		}
		err = c.Validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%v: Validate() = %v", tt.env, err)
		case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr+"=") || !strings.Contains(err.Error(), "FLASHGATE_DEV_PUBLIC=1")):
			t.Errorf("%v: Validate() = %v, want an error naming %s and FLASHGATE_DEV_PUBLIC", tt.env, err, tt.wantErr)
		}
		if warned := len(c.Warnings()) > 0; warned != (c.Dev && c.DevPublic) {
			t.Errorf("%v: Warnings() = %q", tt.env, c.Warnings())
		}
	}

	c := Default()
	c.Dev = true
	for addr, ok := range map[string]bool{"127.0.0.1:1": true, "[::1]:1": true, "0.0.0.0:1": false, "192.168.1.2:1": false} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.CheckDevListener("gateway", a); (err == nil) != ok {
			t.Errorf("CheckDevListener(%s) = %v", addr, err)
		}
	}
	c.DevPublic = true
	if a, _ := net.ResolveTCPAddr("tcp", "0.0.0.0:1"); c.CheckDevListener("gateway", a) != nil {
		t.Error("FLASHGATE_DEV_PUBLIC=1 and still refused")
	}
}

// TestSecretsAreNeverFlags: a command line is visible to every user of the
// machine and in k8s args, so secrets have no flag; they come from the
// environment or from a file.
func TestSecretsAreNeverFlags(t *testing.T) {
	want := map[string]bool{"FLASHGATE_TOKEN_SECRET": true, "FLASHGATE_TOKEN_SECRET_PREVIOUS": true, "FLASHGATE_PAY_SECRET": true, "FLASHGATE_MYSQL_DSN": true,
		"FLASHGATE_REDIS_PASSWORD": true, "FLASHGATE_KAFKA_SASL_PASSWORD": true}
	for _, v := range Vars {
		if v.Secret != want[v.Name] {
			t.Errorf("%s: secret = %v, want %v", v.Name, v.Secret, want[v.Name])
		}
	}
	for _, flagName := range []string{"token-secret", "token-secret-previous", "pay-secret", "mysql-dsn"} {
		fs := NewFlagSet("gateway", "usage")
		fs.SetOutput(new(bytes.Buffer))
		if fs.Lookup(flagName) != nil {
			t.Errorf("--%s is a flag", flagName)
		}
		if err := fs.Parse([]string{"-" + flagName, "x"}); err == nil {
			t.Errorf("--%s x was accepted", flagName)
		}
	}
	var buf bytes.Buffer
	PrintVars(&buf)
	if !strings.Contains(buf.String(), "FLASHGATE_PAY_SECRET_FILE only, no flag") {
		t.Errorf("--help does not say how to pass a secret:\n%s", buf.String())
	}
}

// TestSecretFiles: FLASHGATE_<SECRET>_FILE names a file holding the secret
// (a mounted k8s Secret); the trailing newline is not part of it.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tok := write("token", "a-random-secret-of-32-characters\n")
	pay := write("pay", "another-random-secret-of-32-byte\r\n")
	empty := write("empty", "\n")

	c, err := fromLookup(env(map[string]string{"FLASHGATE_TOKEN_SECRET_FILE": tok, "FLASHGATE_PAY_SECRET_FILE": pay}))
	if err != nil {
		t.Fatal(err)
	}
	if c.TokenSecret != "a-random-secret-of-32-characters" || c.PaySecret != "another-random-secret-of-32-byte" {
		t.Errorf("secrets from files: %q, %q", c.TokenSecret, c.PaySecret)
	}
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"FLASHGATE_TOKEN_SECRET_FILE": tok, "FLASHGATE_TOKEN_SECRET": "x"}, "FLASHGATE_TOKEN_SECRET and FLASHGATE_TOKEN_SECRET_FILE are both set"},
		{map[string]string{"FLASHGATE_PAY_SECRET_FILE": dir + "/missing"}, "FLASHGATE_PAY_SECRET_FILE: cannot read the secret"},
		{map[string]string{"FLASHGATE_TOKEN_SECRET_PREVIOUS_FILE": empty}, "FLASHGATE_TOKEN_SECRET_PREVIOUS_FILE=" + fmt.Sprintf("%q", empty) + ": the file is empty"},
	} {
		if _, err := fromLookup(env(tc.env)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error saying %q", tc.env, err, tc.want)
		}
	}
	// A _FILE variable of a setting that is not secret means nothing.
	if c, err := fromLookup(env(map[string]string{"FLASHGATE_REDIS_ADDR_FILE": tok})); err != nil || c.RedisAddr != Default().RedisAddr {
		t.Errorf("FLASHGATE_REDIS_ADDR_FILE: %q, %v", c.RedisAddr, err)
	}
}

func TestTrustedProxies(t *testing.T) {
	c, err := fromLookup(env(map[string]string{"FLASHGATE_TRUSTED_PROXIES": " 10.0.0.0/8, 192.168.1.7 ,fd00::/8,::ffff:172.16.0.0/108, 10.1.2.3/8"}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.168.1.7/32", "fd00::/8", "172.16.0.0/12", "10.0.0.0/8"}
	if len(c.TrustedProxies) != len(want) {
		t.Fatalf("TrustedProxies = %v, want %v", c.TrustedProxies, want)
	}
	for i, p := range c.TrustedProxies {
		if p.String() != want[i] {
			t.Errorf("TrustedProxies[%d] = %v, want %s", i, p, want[i])
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.internal", "10.0.0.1-10.0.0.9", "fe80::1%eth0"} {
		if _, err := fromLookup(env(map[string]string{"FLASHGATE_TRUSTED_PROXIES": bad})); err == nil || !strings.Contains(err.Error(), "FLASHGATE_TRUSTED_PROXIES") {
			t.Errorf("FLASHGATE_TRUSTED_PROXIES=%s: %v", bad, err)
		}
	}
}

// TestTransportSettings: Kafka SASL and TLS and Redis credentials and TLS
// are refused at start when they do not fit together, naming the variable.
func TestTransportSettings(t *testing.T) {
	ca := t.TempDir() + "/ca.pem"
	if err := os.WriteFile(ca, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env     map[string]string
		wantErr string
	}{
		{map[string]string{"FLASHGATE_KAFKA_SASL_MECHANISM": "scram-sha-512", "FLASHGATE_KAFKA_SASL_USERNAME": "u", "FLASHGATE_KAFKA_SASL_PASSWORD": "p"}, ""},
		{map[string]string{"FLASHGATE_KAFKA_SASL_MECHANISM": "PLAIN", "FLASHGATE_KAFKA_SASL_USERNAME": "u", "FLASHGATE_KAFKA_SASL_PASSWORD": "p", "FLASHGATE_KAFKA_TLS": "1"}, ""},
		{map[string]string{"FLASHGATE_KAFKA_SASL_MECHANISM": "PLAIN", "FLASHGATE_KAFKA_SASL_USERNAME": "u", "FLASHGATE_KAFKA_SASL_PASSWORD": "p"}, "sends the password in clear"},
		{map[string]string{"FLASHGATE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "FLASHGATE_KAFKA_SASL_USERNAME": "u"}, "needs FLASHGATE_KAFKA_SASL_USERNAME and FLASHGATE_KAFKA_SASL_PASSWORD"},
		{map[string]string{"FLASHGATE_KAFKA_SASL_PASSWORD": "p"}, "without FLASHGATE_KAFKA_SASL_MECHANISM"},
		{map[string]string{"FLASHGATE_KAFKA_TLS_CA": ca}, "FLASHGATE_KAFKA_TLS is not"},
		{map[string]string{"FLASHGATE_KAFKA_TLS": "1", "FLASHGATE_KAFKA_TLS_CA": ca}, "no PEM certificate"},
		{map[string]string{"FLASHGATE_KAFKA_TLS": "1", "FLASHGATE_KAFKA_TLS_CA": ca + ".missing"}, "FLASHGATE_KAFKA_TLS_CA: cannot read"},
		{map[string]string{"FLASHGATE_REDIS_USERNAME": "u", "FLASHGATE_REDIS_PASSWORD": "p", "FLASHGATE_REDIS_TLS": "1"}, ""},
		{map[string]string{"FLASHGATE_REDIS_USERNAME": "u"}, "without FLASHGATE_REDIS_PASSWORD"},
		{map[string]string{"FLASHGATE_REDIS_TLS_CA": ca}, "FLASHGATE_REDIS_TLS is not"},
		{map[string]string{"FLASHGATE_REDIS_TLS": "1", "FLASHGATE_REDIS_TLS_CA": ca}, "no PEM certificate"},
	} {
		m := map[string]string{"FLASHGATE_TOKEN_SECRET": "a-random-secret-of-32-characters"}
		for k, v := range tc.env {
			m[k] = v
		}
		c, err := fromLookup(env(m))
		if err != nil {
			t.Fatalf("%v: %v", tc.env, err)
		}
		err = c.Validate()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%v: Validate() = %v", tc.env, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%v: Validate() = %v, want an error saying %q", tc.env, err, tc.wantErr)
		}
	}
	if _, err := fromLookup(env(map[string]string{"FLASHGATE_KAFKA_SASL_MECHANISM": "GSSAPI"})); err == nil || !strings.Contains(err.Error(), "FLASHGATE_KAFKA_SASL_MECHANISM") {
		t.Errorf("GSSAPI: %v", err)
	}
	c := validConfig()
	c.KafkaTLS = true
	if tc, err := c.KafkaTLSConfig(); err != nil || tc == nil || tc.RootCAs != nil || tc.MinVersion < tls.VersionTLS12 {
		t.Errorf("KafkaTLSConfig() without a CA file: %+v, %v; want the system's roots and TLS 1.2 at least", tc, err)
	}
}
