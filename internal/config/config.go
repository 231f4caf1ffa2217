// Package config holds the settings shared by every flashgate service. Each
// setting comes from a FLASHGATE_* environment variable with a documented
// default; command-line flags may override it.
package config

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// DevTokenSecret is the token secret used in dev mode when none is set. It is
// public knowledge, so services outside dev mode refuse to run with it.
const DevTokenSecret = "flashgate-dev-secret-do-not-use-in-production"

// DevPaySecret is the payment-callback secret used in dev mode when none is set.
const DevPaySecret = "flashgate-dev-pay-secret"

// Config is the whole configuration. A zero field means the documented default.
type Config struct {
	GatewayAddr string // FLASHGATE_GATEWAY_ADDR
	WSAddr      string // FLASHGATE_WS_ADDR
	WorkerAddr  string // FLASHGATE_WORKER_ADDR

	RedisAddr       string   // FLASHGATE_REDIS_ADDR
	MySQLDSN        string   // FLASHGATE_MYSQL_DSN
	KafkaBrokers    []string // FLASHGATE_KAFKA_BROKERS
	KafkaPartitions int      // FLASHGATE_KAFKA_PARTITIONS
	TopicPrefix     string   // FLASHGATE_TOPIC_PREFIX

	Dev         bool   // FLASHGATE_DEV
	TokenSecret string // FLASHGATE_TOKEN_SECRET
	// TokenSecretPrevious verifies (never signs) tokens during a key
	// rotation, until TokenPreviousUntil.
	TokenSecretPrevious string    // FLASHGATE_TOKEN_SECRET_PREVIOUS
	TokenPreviousUntil  time.Time // FLASHGATE_TOKEN_PREVIOUS_UNTIL
	PaySecret           string    // FLASHGATE_PAY_SECRET

	// Recharge and withdrawals (gateway/pay.go, worker/payouts.go).
	PayNotifyURL   string        // FLASHGATE_PAY_NOTIFY_URL
	OutboxInterval time.Duration // FLASHGATE_OUTBOX_INTERVAL
	PayoutAttempts int           // FLASHGATE_PAYOUT_ATTEMPTS
	PayoutBackoff  time.Duration // FLASHGATE_PAYOUT_BACKOFF
	PayoutTimeout  time.Duration // FLASHGATE_PAYOUT_TIMEOUT

	OrderTTL        time.Duration // FLASHGATE_ORDER_TTL
	ProduceTimeout  time.Duration // FLASHGATE_PRODUCE_TIMEOUT
	RedisTimeout    time.Duration // FLASHGATE_REDIS_TIMEOUT
	EventRefresh    time.Duration // FLASHGATE_EVENT_REFRESH
	WarmInterval    time.Duration // FLASHGATE_WARM_INTERVAL
	WarmAhead       time.Duration // FLASHGATE_WARM_AHEAD
	ExpireInterval  time.Duration // FLASHGATE_EXPIRE_INTERVAL
	PendingTimeout  time.Duration // FLASHGATE_PENDING_TIMEOUT
	ReconcileEvery  time.Duration // FLASHGATE_RECONCILE_INTERVAL
	ShutdownTimeout time.Duration // FLASHGATE_SHUTDOWN_TIMEOUT
	WorkerBatch     int           // FLASHGATE_WORKER_BATCH
	GiftCatalogTTL  time.Duration // FLASHGATE_GIFT_CATALOG_TTL
	WSSendQueue     int           // FLASHGATE_WS_SEND_QUEUE
	WSOrigins       string        // FLASHGATE_WS_ORIGINS
	WSMsgRate       Rate          // FLASHGATE_WS_MSG_RATE
	RateOrder       Rate          // FLASHGATE_RATE_ORDER
	RateGift        Rate          // FLASHGATE_RATE_GIFT
	RatePay         Rate          // FLASHGATE_RATE_PAY
	RateOther       Rate          // FLASHGATE_RATE_OTHER
	RateIP          Rate          // FLASHGATE_RATE_IP
	MaxInflight     int           // FLASHGATE_MAX_INFLIGHT
	InflightWait    time.Duration // FLASHGATE_INFLIGHT_WAIT
	LogFormat       string        // FLASHGATE_LOG_FORMAT
	LogLevel        string        // FLASHGATE_LOG_LEVEL
	RunDir          string        // FLASHGATE_RUN_DIR
}

// Var documents one environment variable.
type Var struct {
	Name    string
	Default string
	Help    string
	set     func(c *Config, v string) error
}

func durVar(name, def, help string, f func(c *Config) *time.Duration) Var {
	return Var{name, def, help, func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("%s=%q: want a duration such as 500ms or 15m", name, v)
		}
		*f(c) = d
		return nil
	}}
}

func intVar(name, def, help string, f func(c *Config) *int) Var {
	return Var{name, def, help, func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("%s=%q: want a positive integer", name, v)
		}
		*f(c) = n
		return nil
	}}
}

// Rate is a rate limit: PerSecond requests a second on average, Burst at
// once. A zero PerSecond means no limit.
type Rate struct {
	PerSecond float64
	Burst     int
}

// Off reports whether the limit is turned off.
func (r Rate) Off() bool { return r.PerSecond <= 0 }

func rateVar(name, def, help string, f func(c *Config) *Rate) Var {
	return Var{name, def, help, func(c *Config, v string) error {
		if v == "0" {
			*f(c) = Rate{}
			return nil
		}
		ps, b, ok := strings.Cut(v, ":")
		per, err1 := strconv.ParseFloat(ps, 64)
		burst, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || per <= 0 || burst < 1 {
			return fmt.Errorf("%s=%q: want <requests per second>:<burst>, such as 5:10, or 0 for no limit", name, v)
		}
		*f(c) = Rate{PerSecond: per, Burst: burst}
		return nil
	}}
}

func strVar(name, def, help string, f func(c *Config) *string) Var {
	return Var{name, def, help, func(c *Config, v string) error { *f(c) = v; return nil }}
}

// Vars lists every setting with its default, in the order --help prints them.
var Vars = []Var{
	strVar("FLASHGATE_GATEWAY_ADDR", "127.0.0.1:8080", "gateway HTTP listen address", func(c *Config) *string { return &c.GatewayAddr }),
	strVar("FLASHGATE_WS_ADDR", "127.0.0.1:8081", "ws (WebSocket push) listen address", func(c *Config) *string { return &c.WSAddr }),
	strVar("FLASHGATE_WORKER_ADDR", "127.0.0.1:8082", "worker health and metrics listen address", func(c *Config) *string { return &c.WorkerAddr }),
	strVar("FLASHGATE_REDIS_ADDR", "127.0.0.1:16379", "Redis address (host:port)", func(c *Config) *string { return &c.RedisAddr }),
	strVar("FLASHGATE_MYSQL_DSN", "root@tcp(127.0.0.1:13306)/flashgate", "MySQL/MariaDB DSN (go-sql-driver format; parseTime is added)", func(c *Config) *string { return &c.MySQLDSN }),
	{"FLASHGATE_KAFKA_BROKERS", "127.0.0.1:19092", "comma-separated Kafka seed brokers; flashgate dev starts an embedded broker unless this is set", func(c *Config, v string) error {
		c.KafkaBrokers = nil
		for _, b := range strings.Split(v, ",") {
			if b = strings.TrimSpace(b); b != "" {
				c.KafkaBrokers = append(c.KafkaBrokers, b)
			}
		}
		if len(c.KafkaBrokers) == 0 {
			return fmt.Errorf("FLASHGATE_KAFKA_BROKERS=%q: want host:port[,host:port...]", v)
		}
		return nil
	}},
	intVar("FLASHGATE_KAFKA_PARTITIONS", "8", "partitions for topics flashgate creates", func(c *Config) *int { return &c.KafkaPartitions }),
	strVar("FLASHGATE_TOPIC_PREFIX", "flashgate", "prefix of the Kafka topic names (<prefix>.orders, .results, .gifts, .withdrawals and dead-letter topics)", func(c *Config) *string { return &c.TopicPrefix }),
	{"FLASHGATE_DEV", "0", "1 enables dev mode: dev endpoints, dev secrets, text logs", func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("FLASHGATE_DEV=%q: want 0 or 1", v)
		}
		c.Dev = b
		return nil
	}},
	strVar("FLASHGATE_TOKEN_SECRET", "", "HMAC secret that signs tokens (required outside dev mode)", func(c *Config) *string { return &c.TokenSecret }),
	strVar("FLASHGATE_TOKEN_SECRET_PREVIOUS", "", "during a key rotation, the old secret: tokens it signed are still accepted until FLASHGATE_TOKEN_PREVIOUS_UNTIL", func(c *Config) *string { return &c.TokenSecretPrevious }),
	{"FLASHGATE_TOKEN_PREVIOUS_UNTIL", "", "end of the rotation window, RFC 3339 (empty: 24h after the service starts)", func(c *Config, v string) error {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return fmt.Errorf("FLASHGATE_TOKEN_PREVIOUS_UNTIL=%q: want an RFC 3339 time such as 2026-12-01T00:00:00Z", v)
		}
		c.TokenPreviousUntil = t
		return nil
	}},
	strVar("FLASHGATE_PAY_SECRET", "", "HMAC secret of payment-provider callbacks (required outside dev mode)", func(c *Config) *string { return &c.PaySecret }),
	strVar("FLASHGATE_PAY_NOTIFY_URL", "", "where the dev sandbox payment provider sends its signed notifies (empty: this gateway's /api/v1/pay/notify at the address the request came in on)", func(c *Config) *string { return &c.PayNotifyURL }),
	durVar("FLASHGATE_OUTBOX_INTERVAL", "200ms", "how often the worker relays new outbox messages (accepted withdrawals) to Kafka", func(c *Config) *time.Duration { return &c.OutboxInterval }),
	intVar("FLASHGATE_PAYOUT_ATTEMPTS", "8", "payout calls made for one withdrawal before it fails and its earnings are refunded", func(c *Config) *int { return &c.PayoutAttempts }),
	durVar("FLASHGATE_PAYOUT_BACKOFF", "100ms", "wait after a failed payout call; doubles after each failure, up to 5s", func(c *Config) *time.Duration { return &c.PayoutBackoff }),
	durVar("FLASHGATE_PAYOUT_TIMEOUT", "10s", "timeout of one call to the payout provider (a payout, a void or a status query); a payout call that times out counts as a failed attempt, and an answer it gives later is still recorded", func(c *Config) *time.Duration { return &c.PayoutTimeout }),
	durVar("FLASHGATE_ORDER_TTL", "15m", "an unpaid order expires after this and its unit goes back on sale", func(c *Config) *time.Duration { return &c.OrderTTL }),
	durVar("FLASHGATE_PRODUCE_TIMEOUT", "2s", "how long the gateway waits for Kafka to acknowledge before answering 503", func(c *Config) *time.Duration { return &c.ProduceTimeout }),
	durVar("FLASHGATE_REDIS_TIMEOUT", "500ms", "timeout of one Redis call on the request path", func(c *Config) *time.Duration { return &c.RedisTimeout }),
	durVar("FLASHGATE_EVENT_REFRESH", "1s", "how often the gateway refreshes its in-memory copy of events and stock", func(c *Config) *time.Duration { return &c.EventRefresh }),
	durVar("FLASHGATE_WARM_INTERVAL", "1s", "how often the worker checks that upcoming and live events are warm in Redis", func(c *Config) *time.Duration { return &c.WarmInterval }),
	durVar("FLASHGATE_WARM_AHEAD", "10m", "events are warmed into Redis this long before they start", func(c *Config) *time.Duration { return &c.WarmAhead }),
	durVar("FLASHGATE_EXPIRE_INTERVAL", "1s", "how often the worker expires unpaid orders", func(c *Config) *time.Duration { return &c.ExpireInterval }),
	durVar("FLASHGATE_PENDING_TIMEOUT", "45s", "a reservation with no order after this long is released and its ticket fails", func(c *Config) *time.Duration { return &c.PendingTimeout }),
	durVar("FLASHGATE_RECONCILE_INTERVAL", "10s", "how often the worker reconciles Redis against MySQL", func(c *Config) *time.Duration { return &c.ReconcileEvery }),
	durVar("FLASHGATE_SHUTDOWN_TIMEOUT", "10s", "how long a service drains in-flight work on shutdown", func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
	intVar("FLASHGATE_WORKER_BATCH", "500", "most records the worker writes to MySQL in one batch", func(c *Config) *int { return &c.WorkerBatch }),
	durVar("FLASHGATE_GIFT_CATALOG_TTL", "5s", "how often the gateway reloads the gift catalog from MySQL (a change is served within this long)", func(c *Config) *time.Duration { return &c.GiftCatalogTTL }),
	intVar("FLASHGATE_WS_SEND_QUEUE", "256", "messages queued per WebSocket connection before a slow client is dropped", func(c *Config) *int { return &c.WSSendQueue }),
	strVar("FLASHGATE_WS_ORIGINS", "", "comma-separated origins (scheme://host[:port]) allowed to open WebSockets, or * for any; empty: any in dev mode, else only the ws host itself and clients that send no Origin", func(c *Config) *string { return &c.WSOrigins }),
	rateVar("FLASHGATE_WS_MSG_RATE", "10:20", "messages a WebSocket client may send: <per second>:<burst>; past it the connection is closed (1008)", func(c *Config) *Rate { return &c.WSMsgRate }),
	rateVar("FLASHGATE_RATE_ORDER", "5:10", "per-user limit of order requests: <per second>:<burst>; 0 turns it off", func(c *Config) *Rate { return &c.RateOrder }),
	rateVar("FLASHGATE_RATE_GIFT", "20:40", "per-user limit of gift requests: <per second>:<burst>; 0 turns it off", func(c *Config) *Rate { return &c.RateGift }),
	rateVar("FLASHGATE_RATE_PAY", "2:5", "per-user limit of payment and withdrawal requests: <per second>:<burst>; 0 turns it off", func(c *Config) *Rate { return &c.RatePay }),
	rateVar("FLASHGATE_RATE_OTHER", "20:50", "per-user limit of all other authenticated requests: <per second>:<burst>; 0 turns it off", func(c *Config) *Rate { return &c.RateOther }),
	rateVar("FLASHGATE_RATE_IP", "50:100", "per-client-IP limit of unauthenticated requests (public reads, dev token, pay notify), kept in each gateway's memory; 0 turns it off", func(c *Config) *Rate { return &c.RateIP }),
	intVar("FLASHGATE_MAX_INFLIGHT", "2048", "requests a gateway works on at once; past it new requests get 503 at once", func(c *Config) *int { return &c.MaxInflight }),
	durVar("FLASHGATE_INFLIGHT_WAIT", "5ms", "how long a request waits for a free in-flight slot before the 503", func(c *Config) *time.Duration { return &c.InflightWait }),
	strVar("FLASHGATE_LOG_FORMAT", "", "json or text (default: text in dev mode, json otherwise)", func(c *Config) *string { return &c.LogFormat }),
	strVar("FLASHGATE_LOG_LEVEL", "info", "debug, info, warn or error", func(c *Config) *string { return &c.LogLevel }),
	strVar("FLASHGATE_RUN_DIR", ".run", "where flashgate dev keeps Redis, MariaDB and Kafka data", func(c *Config) *string { return &c.RunDir }),
}

// Default returns the configuration with every default applied.
func Default() Config {
	var c Config
	for _, v := range Vars {
		if v.Default == "" {
			continue
		}
		if err := v.set(&c, v.Default); err != nil {
			panic(err) // a bad default is a programming error
		}
	}
	return c
}

// FromEnv returns the defaults overridden by the environment.
func FromEnv() (Config, error) { return fromLookup(os.LookupEnv) }

func fromLookup(lookup func(string) (string, bool)) (Config, error) {
	c := Default()
	for _, v := range Vars {
		if s, ok := lookup(v.Name); ok && s != "" {
			if err := v.set(&c, s); err != nil {
				return c, err
			}
		}
	}
	c.ApplyDevDefaults()
	return c, nil
}

// ApplyDevDefaults fills the dev secrets and log format when dev mode is on.
func (c *Config) ApplyDevDefaults() {
	if !c.Dev {
		return
	}
	if c.TokenSecret == "" {
		c.TokenSecret = DevTokenSecret
	}
	if c.PaySecret == "" {
		c.PaySecret = DevPaySecret
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
	}
}

// Validate reports settings a service must not start with.
func (c *Config) Validate() error {
	if !c.Dev {
		if c.TokenSecret == "" || c.TokenSecret == DevTokenSecret {
			return fmt.Errorf("FLASHGATE_TOKEN_SECRET is empty or the public dev secret: set a random secret of 32+ characters, or FLASHGATE_DEV=1 for local use")
		}
	}
	if len(c.TokenSecret) < 16 {
		return fmt.Errorf("FLASHGATE_TOKEN_SECRET is too short (%d characters): use at least 16", len(c.TokenSecret))
	}
	if p := c.TokenSecretPrevious; p != "" && (len(p) < 16 || p == c.TokenSecret) {
		return fmt.Errorf("FLASHGATE_TOKEN_SECRET_PREVIOUS must be the old secret (16+ characters), different from FLASHGATE_TOKEN_SECRET")
	}
	return nil
}

// ValidateGateway is Validate plus what only the gateway needs: the secret
// that payment callbacks are signed with.
func (c *Config) ValidateGateway() error {
	if err := c.Validate(); err != nil {
		return err
	}
	if !c.Dev && c.PaySecret == "" {
		return fmt.Errorf("FLASHGATE_PAY_SECRET is empty: set the secret your payment provider signs callbacks with, or FLASHGATE_DEV=1 for local use")
	}
	return nil
}

// Topic names.
func (c *Config) OrdersTopic() string      { return c.TopicPrefix + ".orders" }
func (c *Config) ResultsTopic() string     { return c.TopicPrefix + ".results" }
func (c *Config) DLQTopic() string         { return c.TopicPrefix + ".orders.dlq" }
func (c *Config) GiftsTopic() string       { return c.TopicPrefix + ".gifts" }
func (c *Config) GiftsDLQTopic() string    { return c.TopicPrefix + ".gifts.dlq" }
func (c *Config) WithdrawalsTopic() string { return c.TopicPrefix + ".withdrawals" }

// Topics lists every topic flashgate uses.
func (c *Config) Topics() []string {
	return []string{c.OrdersTopic(), c.ResultsTopic(), c.DLQTopic(), c.GiftsTopic(), c.GiftsDLQTopic(), c.WithdrawalsTopic()}
}

// FlagSet returns a flag set whose flags override the environment settings
// (flag -redis-addr overrides FLASHGATE_REDIS_ADDR, and so on). Call Apply
// after parsing.
type FlagSet struct {
	*flag.FlagSet
	vals map[string]*string
}

// NewFlagSet makes a flag set for a subcommand; usage describes it.
func NewFlagSet(name, usage string) *FlagSet {
	fs := &FlagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), vals: map[string]*string{}}
	for _, v := range Vars {
		fname := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(v.Name, "FLASHGATE_"), "_", "-"))
		fs.vals[v.Name] = fs.String(fname, "", v.Help+" (env "+v.Name+")")
	}
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "%s\n\nEnvironment (flags of the same name in lower case override them):\n", usage)
		PrintVars(w)
		fmt.Fprintf(w, "\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// Apply reads the environment and then the flags that were set.
func (fs *FlagSet) Apply() (Config, error) {
	return fromLookup(func(name string) (string, bool) {
		if p := fs.vals[name]; p != nil && *p != "" {
			return *p, true
		}
		return os.LookupEnv(name)
	})
}

// PrintVars writes the table of environment variables with their defaults.
func PrintVars(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, v := range Vars {
		def := v.Default
		if def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Name, def, v.Help)
	}
	tw.Flush()
}
