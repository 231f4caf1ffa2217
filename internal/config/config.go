// Package config holds the settings shared by every flashgate service. Each
// setting comes from a FLASHGATE_* environment variable with a documented
// default; command-line flags may override it.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
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

// PublicSecrets are secrets anyone can read: the dev defaults and every
// example value the README and docs print (a test keeps this list in step
// with them). Outside dev mode no secret may contain one: with a public
// token secret anyone signs an admin token, with a public pay secret anyone
// signs a payment notify and mints coins.
var PublicSecrets = []string{DevTokenSecret, DevPaySecret}

// MinSecretLen is the shortest secret accepted outside dev mode, in bytes:
// an HMAC-SHA256 key of 32 random bytes cannot be guessed.
const MinSecretLen = 32

// Config is the whole configuration. A zero field means the documented default.
type Config struct {
	GatewayAddr string // FLASHGATE_GATEWAY_ADDR
	WSAddr      string // FLASHGATE_WS_ADDR
	WorkerAddr  string // FLASHGATE_WORKER_ADDR
	// Internal listeners: metrics, detailed readiness and (gateway) the
	// admin routes, off the internet-facing addresses. Empty: none.
	InternalAddr   string // FLASHGATE_INTERNAL_ADDR (gateway)
	WSInternalAddr string // FLASHGATE_WS_INTERNAL_ADDR

	RedisAddr       string   // FLASHGATE_REDIS_ADDR
	RedisUsername   string   // FLASHGATE_REDIS_USERNAME
	RedisPassword   string   // FLASHGATE_REDIS_PASSWORD
	RedisTLS        bool     // FLASHGATE_REDIS_TLS
	RedisTLSCA      string   // FLASHGATE_REDIS_TLS_CA: PEM file; empty means the system's roots
	MySQLDSN        string   // FLASHGATE_MYSQL_DSN
	KafkaBrokers    []string // FLASHGATE_KAFKA_BROKERS
	KafkaSASL       string   // FLASHGATE_KAFKA_SASL_MECHANISM: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or empty
	KafkaUsername   string   // FLASHGATE_KAFKA_SASL_USERNAME
	KafkaPassword   string   // FLASHGATE_KAFKA_SASL_PASSWORD
	KafkaTLS        bool     // FLASHGATE_KAFKA_TLS
	KafkaTLSCA      string   // FLASHGATE_KAFKA_TLS_CA: PEM file; empty means the system's roots
	KafkaPartitions int      // FLASHGATE_KAFKA_PARTITIONS
	TopicPrefix     string   // FLASHGATE_TOPIC_PREFIX

	Dev         bool   // FLASHGATE_DEV
	Pprof       bool   // FLASHGATE_PPROF
	DevPublic   bool   // FLASHGATE_DEV_PUBLIC: dev mode may listen beyond loopback
	TokenSecret string // FLASHGATE_TOKEN_SECRET
	// TokenSecretPrevious verifies (never signs) tokens during a key
	// rotation, until TokenPreviousUntil.
	TokenSecretPrevious string    // FLASHGATE_TOKEN_SECRET_PREVIOUS
	TokenPreviousUntil  time.Time // FLASHGATE_TOKEN_PREVIOUS_UNTIL
	// TokenMaxTTL: tokens that expire further ahead are refused.
	TokenMaxTTL time.Duration // FLASHGATE_TOKEN_MAX_TTL
	PaySecret   string        // FLASHGATE_PAY_SECRET

	// Recharge and withdrawals (gateway/recharge.go, gateway/withdrawals.go, worker/payouts.go).
	// SandboxPayments lets a service run outside dev mode with a sandbox
	// provider, which moves no money.
	SandboxPayments bool          // FLASHGATE_SANDBOX_PAYMENTS
	PayNotifyURL    string        // FLASHGATE_PAY_NOTIFY_URL
	OutboxInterval  time.Duration // FLASHGATE_OUTBOX_INTERVAL
	PayoutAttempts  int           // FLASHGATE_PAYOUT_ATTEMPTS
	PayoutBackoff   time.Duration // FLASHGATE_PAYOUT_BACKOFF
	PayoutTimeout   time.Duration // FLASHGATE_PAYOUT_TIMEOUT

	OrderTTL        time.Duration // FLASHGATE_ORDER_TTL
	ProduceTimeout  time.Duration // FLASHGATE_PRODUCE_TIMEOUT
	RedisTimeout    time.Duration // FLASHGATE_REDIS_TIMEOUT
	EventRefresh    time.Duration // FLASHGATE_EVENT_REFRESH
	WarmInterval    time.Duration // FLASHGATE_WARM_INTERVAL
	WarmAhead       time.Duration // FLASHGATE_WARM_AHEAD
	ExpireInterval  time.Duration // FLASHGATE_EXPIRE_INTERVAL
	PendingTimeout  time.Duration // FLASHGATE_PENDING_TIMEOUT
	ReconcileEvery  time.Duration // FLASHGATE_RECONCILE_INTERVAL
	WalletsEvery    time.Duration // FLASHGATE_WALLET_RECONCILE_INTERVAL
	ShutdownTimeout time.Duration // FLASHGATE_SHUTDOWN_TIMEOUT
	DrainDelay      time.Duration // FLASHGATE_DRAIN_DELAY; zero means none
	WorkerBatch     int           // FLASHGATE_WORKER_BATCH
	GiftCatalogTTL  time.Duration // FLASHGATE_GIFT_CATALOG_TTL
	WSSendQueue     int           // FLASHGATE_WS_SEND_QUEUE
	WSSendBytes     int           // FLASHGATE_WS_SEND_BYTES
	WSOrigins       string        // FLASHGATE_WS_ORIGINS
	WSPublicURL     string        // FLASHGATE_WS_PUBLIC_URL
	WSMsgRate       Rate          // FLASHGATE_WS_MSG_RATE
	WSMaxConns      int           // FLASHGATE_WS_MAX_CONNS
	WSMaxPerUser    int           // FLASHGATE_WS_MAX_CONNS_PER_USER
	WSMaxPerIP      int           // FLASHGATE_WS_MAX_CONNS_PER_IP; zero means no limit
	RateOrder       Rate          // FLASHGATE_RATE_ORDER
	RateGift        Rate          // FLASHGATE_RATE_GIFT
	RatePay         Rate          // FLASHGATE_RATE_PAY
	RateOther       Rate          // FLASHGATE_RATE_OTHER
	RateIP          Rate          // FLASHGATE_RATE_IP
	RateNotify      Rate          // FLASHGATE_RATE_NOTIFY
	// TrustedProxies are the proxies whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix // FLASHGATE_TRUSTED_PROXIES
	// The gateway's HTTP listener.
	GatewayMaxConns       int           // FLASHGATE_GATEWAY_MAX_CONNS
	GatewayMaxConnsPerIP  int           // FLASHGATE_GATEWAY_MAX_CONNS_PER_IP; zero means no limit
	GatewayReadTimeout    time.Duration // FLASHGATE_GATEWAY_READ_TIMEOUT
	GatewayIdleTimeout    time.Duration // FLASHGATE_GATEWAY_IDLE_TIMEOUT
	GatewayMaxHeaderBytes int           // FLASHGATE_GATEWAY_MAX_HEADER_BYTES
	MaxInflight           int           // FLASHGATE_MAX_INFLIGHT
	InflightWait          time.Duration // FLASHGATE_INFLIGHT_WAIT
	LogFormat             string        // FLASHGATE_LOG_FORMAT
	LogLevel              string        // FLASHGATE_LOG_LEVEL
	RunDir                string        // FLASHGATE_RUN_DIR

	// In-flight budgets of the gateway's route classes, within MaxInflight;
	// zero means the default that InflightBudgets derives from MaxInflight.
	InflightOrders   int // FLASHGATE_INFLIGHT_ORDERS
	InflightGifts    int // FLASHGATE_INFLIGHT_GIFTS
	InflightReads    int // FLASHGATE_INFLIGHT_READS
	InflightPayments int // FLASHGATE_INFLIGHT_PAYMENTS
}

// Var documents one environment variable.
type Var struct {
	Name    string
	Default string
	Help    string
	set     func(c *Config, v string) error
	// dur is the field of a duration setting, for Validate; zeroOK when
	// zero has a documented meaning there.
	dur    func(c *Config) *time.Duration
	zeroOK bool
	// Secret settings come from the environment or from a file named by
	// <Name>_FILE, never from a flag: a command line is visible to every
	// user of the machine (ps, /proc/*/cmdline) and in k8s args.
	Secret bool
}

// secret marks v as a secret setting.
func secret(v Var) Var {
	v.Secret = true
	return v
}

// durVar is a duration that must be positive.
func durVar(name, def, help string, f func(c *Config) *time.Duration) Var {
	return durationVar(name, def, help, f, false)
}

// durVarZeroOK is a duration for which zero means something (its help says what).
func durVarZeroOK(name, def, help string, f func(c *Config) *time.Duration) Var {
	return durationVar(name, def, help, f, true)
}

func durationVar(name, def, help string, f func(c *Config) *time.Duration, zeroOK bool) Var {
	want := "a positive duration such as 500ms or 15m"
	if zeroOK {
		want = "a duration such as 500ms or 15m, or 0"
	}
	return Var{Name: name, Default: def, Help: help, dur: f, zeroOK: zeroOK, set: func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || (d == 0 && !zeroOK) {
			return fmt.Errorf("%s=%q: want %s", name, v, want)
		}
		*f(c) = d
		return nil
	}}
}

// intVarZeroOK is a count for which 0 means something (its help says what).
func intVarZeroOK(name, def, help string, f func(c *Config) *int) Var {
	return Var{Name: name, Default: def, Help: help, set: func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("%s=%q: want an integer of 0 or more", name, v)
		}
		*f(c) = n
		return nil
	}}
}

func intVar(name, def, help string, f func(c *Config) *int) Var {
	return Var{Name: name, Default: def, Help: help, set: func(c *Config, v string) error {
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
	return Var{Name: name, Default: def, Help: help, set: func(c *Config, v string) error {
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

func boolVar(name, def, help string, f func(c *Config) *bool) Var {
	return Var{Name: name, Default: def, Help: help, set: func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s=%q: want 0 or 1", name, v)
		}
		*f(c) = b
		return nil
	}}
}

func strVar(name, def, help string, f func(c *Config) *string) Var {
	return Var{Name: name, Default: def, Help: help, set: func(c *Config, v string) error { *f(c) = v; return nil }}
}

// Vars lists every setting with its default, in the order --help prints them.
var Vars = []Var{
	strVar("FLASHGATE_GATEWAY_ADDR", "127.0.0.1:8080", "gateway HTTP listen address", func(c *Config) *string { return &c.GatewayAddr }),
	strVar("FLASHGATE_WS_ADDR", "127.0.0.1:8081", "ws (WebSocket push) listen address", func(c *Config) *string { return &c.WSAddr }),
	strVar("FLASHGATE_WORKER_ADDR", "127.0.0.1:8082", "worker health and metrics listen address (internal: not for the internet)", func(c *Config) *string { return &c.WorkerAddr }),
	strVar("FLASHGATE_INTERNAL_ADDR", "127.0.0.1:9090", "gateway internal listen address: /metrics, /readyz with the failing dependency, /healthz and the admin routes (/api/v1/admin/...), none of which the public address serves; keep it off the internet", func(c *Config) *string { return &c.InternalAddr }),
	strVar("FLASHGATE_WS_INTERNAL_ADDR", "127.0.0.1:9091", "ws internal listen address: /metrics, /readyz with the failing dependency and /healthz, which the public address (FLASHGATE_WS_ADDR) serves only as /healthz and a bare /readyz", func(c *Config) *string { return &c.WSInternalAddr }),
	strVar("FLASHGATE_REDIS_ADDR", "127.0.0.1:16379", "Redis address (host:port), or comma-separated seed nodes of a Redis Cluster (host:port,host:port,...)", func(c *Config) *string { return &c.RedisAddr }),
	strVar("FLASHGATE_REDIS_USERNAME", "", "Redis ACL user (empty: the default user, or none)", func(c *Config) *string { return &c.RedisUsername }),
	secret(strVar("FLASHGATE_REDIS_PASSWORD", "", "Redis password (AUTH); empty: none", func(c *Config) *string { return &c.RedisPassword })),
	boolVar("FLASHGATE_REDIS_TLS", "0", "1 connects to Redis over TLS", func(c *Config) *bool { return &c.RedisTLS }),
	strVar("FLASHGATE_REDIS_TLS_CA", "", "PEM file of the CA that signs Redis's certificate (empty: the system's roots); needs FLASHGATE_REDIS_TLS=1", func(c *Config) *string { return &c.RedisTLSCA }),
	secret(strVar("FLASHGATE_MYSQL_DSN", "root@tcp(127.0.0.1:13306)/flashgate", "MySQL/MariaDB DSN (go-sql-driver format; parseTime is added)", func(c *Config) *string { return &c.MySQLDSN })),
	{Name: "FLASHGATE_KAFKA_BROKERS", Default: "127.0.0.1:19092", Help: "comma-separated Kafka seed brokers; flashgate dev starts an embedded broker unless this is set", set: func(c *Config, v string) error {
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
	{Name: "FLASHGATE_KAFKA_SASL_MECHANISM", Default: "", Help: "SASL mechanism of the Kafka brokers: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL); PLAIN needs FLASHGATE_KAFKA_TLS=1 outside dev mode", set: func(c *Config, v string) error {
		switch m := strings.ToUpper(v); m {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
			c.KafkaSASL = m
			return nil
		}
		return fmt.Errorf("FLASHGATE_KAFKA_SASL_MECHANISM=%q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", v)
	}},
	strVar("FLASHGATE_KAFKA_SASL_USERNAME", "", "Kafka SASL user", func(c *Config) *string { return &c.KafkaUsername }),
	secret(strVar("FLASHGATE_KAFKA_SASL_PASSWORD", "", "Kafka SASL password", func(c *Config) *string { return &c.KafkaPassword })),
	boolVar("FLASHGATE_KAFKA_TLS", "0", "1 connects to the Kafka brokers over TLS", func(c *Config) *bool { return &c.KafkaTLS }),
	boolVar("FLASHGATE_PPROF", "0", "1 serves Go's runtime profiles at /debug/pprof/ on the internal listeners of gateway and ws and on the worker's (go tool pprof http://HOST/debug/pprof/profile); a CPU profile or trace costs the service CPU while it runs", func(c *Config) *bool { return &c.Pprof }),
	strVar("FLASHGATE_KAFKA_TLS_CA", "", "PEM file of the CA that signs the brokers' certificates (empty: the system's roots); needs FLASHGATE_KAFKA_TLS=1", func(c *Config) *string { return &c.KafkaTLSCA }),
	intVar("FLASHGATE_KAFKA_PARTITIONS", "8", "partitions for topics flashgate creates", func(c *Config) *int { return &c.KafkaPartitions }),
	strVar("FLASHGATE_TOPIC_PREFIX", "flashgate", "prefix of the Kafka topic names (<prefix>.orders, .results, .gifts, .withdrawals and dead-letter topics)", func(c *Config) *string { return &c.TopicPrefix }),
	{Name: "FLASHGATE_DEV", Default: "0", Help: "1 enables dev mode: dev endpoints, dev secrets, text logs", set: func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("FLASHGATE_DEV=%q: want 0 or 1", v)
		}
		c.Dev = b
		return nil
	}},
	{Name: "FLASHGATE_DEV_PUBLIC", Default: "0", Help: "1 lets dev mode listen on addresses other than loopback (anyone who reaches a dev gateway can mint an admin token); without it dev mode refuses to start on them", set: func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("FLASHGATE_DEV_PUBLIC=%q: want 0 or 1", v)
		}
		c.DevPublic = b
		return nil
	}},
	secret(strVar("FLASHGATE_TOKEN_SECRET", "", "HMAC secret that signs tokens (required outside dev mode: 32 or more random bytes, not a value printed in the README)", func(c *Config) *string { return &c.TokenSecret })),
	secret(strVar("FLASHGATE_TOKEN_SECRET_PREVIOUS", "", "during a key rotation, the old secret: tokens it signed are still accepted until FLASHGATE_TOKEN_PREVIOUS_UNTIL", func(c *Config) *string { return &c.TokenSecretPrevious })),
	{Name: "FLASHGATE_TOKEN_PREVIOUS_UNTIL", Default: "", Help: "end of the rotation window, RFC 3339, the same on every replica: required when FLASHGATE_TOKEN_SECRET_PREVIOUS is set, and at most 7 days ahead", set: func(c *Config, v string) error {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return fmt.Errorf("FLASHGATE_TOKEN_PREVIOUS_UNTIL=%q: want an RFC 3339 time such as 2026-12-01T00:00:00Z", v)
		}
		c.TokenPreviousUntil = t
		return nil
	}},
	durVar("FLASHGATE_TOKEN_MAX_TTL", "24h", "longest token lifetime honoured: a token that expires further ahead (plus a minute of clock skew) is refused with 401, whoever signed it; flashgate token --ttl and the dev token route stay within it", func(c *Config) *time.Duration { return &c.TokenMaxTTL }),
	secret(strVar("FLASHGATE_PAY_SECRET", "", "HMAC secret of payment-provider callbacks (required by the gateway outside dev mode: 32 or more random bytes, not a value printed in the README)", func(c *Config) *string { return &c.PaySecret })),
	{Name: "FLASHGATE_SANDBOX_PAYMENTS", Default: "0", Help: "1 lets gateway and worker run outside dev mode with the built-in sandbox providers, which mark flash-sale orders paid and withdrawals paid out without moving any money (a warning is logged at every start); without it they refuse to start outside dev mode unless built with real providers", set: func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("FLASHGATE_SANDBOX_PAYMENTS=%q: want 0 or 1", v)
		}
		c.SandboxPayments = b
		return nil
	}},
	strVar("FLASHGATE_PAY_NOTIFY_URL", "", "where the dev sandbox payment provider sends its signed notifies (empty: this gateway's /api/v1/pay/notify at the address the request came in on)", func(c *Config) *string { return &c.PayNotifyURL }),
	durVar("FLASHGATE_OUTBOX_INTERVAL", "200ms", "how often the worker relays new outbox messages (accepted withdrawals) to Kafka", func(c *Config) *time.Duration { return &c.OutboxInterval }),
	intVar("FLASHGATE_PAYOUT_ATTEMPTS", "8", "payout calls made for one withdrawal before the worker voids its payout key; the earnings are refunded only once the provider confirms the void", func(c *Config) *int { return &c.PayoutAttempts }),
	durVar("FLASHGATE_PAYOUT_BACKOFF", "100ms", "wait after a failed payout call; doubles after each failure, up to 5s", func(c *Config) *time.Duration { return &c.PayoutBackoff }),
	durVar("FLASHGATE_PAYOUT_TIMEOUT", "10s", "timeout of one call to the payout provider (a payout, a void or a status query); a payout call that times out counts as a failed attempt, and an answer it gives later is still recorded", func(c *Config) *time.Duration { return &c.PayoutTimeout }),
	durVar("FLASHGATE_ORDER_TTL", "15m", "an unpaid order expires after this and its unit goes back on sale", func(c *Config) *time.Duration { return &c.OrderTTL }),
	durVar("FLASHGATE_PRODUCE_TIMEOUT", "2s", "how long the gateway waits for Kafka to acknowledge before answering 503", func(c *Config) *time.Duration { return &c.ProduceTimeout }),
	durVar("FLASHGATE_REDIS_TIMEOUT", "500ms", "timeout of one Redis call on the request path", func(c *Config) *time.Duration { return &c.RedisTimeout }),
	durVar("FLASHGATE_EVENT_REFRESH", "1s", "how often the gateway refreshes its in-memory copy of events and stock", func(c *Config) *time.Duration { return &c.EventRefresh }),
	durVar("FLASHGATE_WARM_INTERVAL", "1s", "how often the worker checks that upcoming and live events are warm in Redis", func(c *Config) *time.Duration { return &c.WarmInterval }),
	durVar("FLASHGATE_WARM_AHEAD", "10m", "events are warmed into Redis this long before they start", func(c *Config) *time.Duration { return &c.WarmAhead }),
	durVar("FLASHGATE_EXPIRE_INTERVAL", "1s", "how often the worker expires unpaid orders", func(c *Config) *time.Duration { return &c.ExpireInterval }),
	durVar("FLASHGATE_PENDING_TIMEOUT", "45s", "a reservation or gift hold still pending after this long gets an abort marker behind its record: a record that never reached Kafka fails (timeout) and gives its unit or coins back, one that did is decided however late; must be greater than FLASHGATE_PRODUCE_TIMEOUT + 2 × FLASHGATE_REDIS_TIMEOUT", func(c *Config) *time.Duration { return &c.PendingTimeout }),
	durVar("FLASHGATE_RECONCILE_INTERVAL", "10s", "how often the worker reconciles Redis against MySQL", func(c *Config) *time.Duration { return &c.ReconcileEvery }),
	durVar("FLASHGATE_WALLET_RECONCILE_INTERVAL", "1m", "how often the worker compares every loaded hot balance with MySQL (a pass reads each loaded wallet, so it is slower than the other reconcilers)", func(c *Config) *time.Duration { return &c.WalletsEvery }),
	durVar("FLASHGATE_SHUTDOWN_TIMEOUT", "10s", "how long a service drains in-flight work on shutdown, after FLASHGATE_DRAIN_DELAY", func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
	durVarZeroOK("FLASHGATE_DRAIN_DELAY", "5s", "on shutdown, how long gateway and ws keep serving with /readyz answering 503, so load balancers stop sending before the listener closes; 0 means no delay (the default in dev mode)", func(c *Config) *time.Duration { return &c.DrainDelay }),
	intVar("FLASHGATE_WORKER_BATCH", "500", "most records the worker writes to MySQL in one transaction; the order and gift writers poll four times this at once", func(c *Config) *int { return &c.WorkerBatch }),
	durVar("FLASHGATE_GIFT_CATALOG_TTL", "5s", "how often the gateway reloads the gift catalog from MySQL (a change is served within this long)", func(c *Config) *time.Duration { return &c.GiftCatalogTTL }),
	intVar("FLASHGATE_WS_SEND_QUEUE", "256", "messages queued per WebSocket connection before a slow client is dropped", func(c *Config) *int { return &c.WSSendQueue }),
	intVar("FLASHGATE_WS_SEND_BYTES", "1048576", "bytes of messages queued per WebSocket connection before a slow client is dropped, whichever of this and FLASHGATE_WS_SEND_QUEUE comes first (close 1008)", func(c *Config) *int { return &c.WSSendBytes }),
	strVar("FLASHGATE_WS_ORIGINS", "", "comma-separated origins (scheme://host[:port]) allowed to open WebSockets, or * for any; empty: any in dev mode, else only the ws host itself and clients that send no Origin", func(c *Config) *string { return &c.WSOrigins }),
	strVar("FLASHGATE_WS_PUBLIC_URL", "", "the WebSocket URL (ws:// or wss://, ending in /ws) that the web pages the gateway serves connect to; empty: ws://<the page's host>:<port of FLASHGATE_WS_ADDR>/ws, right for make run, wrong behind a load balancer or TLS", func(c *Config) *string { return &c.WSPublicURL }),
	rateVar("FLASHGATE_WS_MSG_RATE", "10:20", "messages a WebSocket client may send, pings and pongs included: <per second>:<burst>; past it the connection is closed (1008)", func(c *Config) *Rate { return &c.WSMsgRate }),
	intVar("FLASHGATE_WS_MAX_CONNS", "50000", "WebSocket connections one ws holds at once; past it a new one is answered 503 before the upgrade (each costs about 30 KiB: size it to the box)", func(c *Config) *int { return &c.WSMaxConns }),
	intVar("FLASHGATE_WS_MAX_CONNS_PER_USER", "5", "WebSocket connections one user may hold on one ws; past it a new one is answered 429 before the upgrade", func(c *Config) *int { return &c.WSMaxPerUser }),
	intVarZeroOK("FLASHGATE_WS_MAX_CONNS_PER_IP", "0", "WebSocket connections one client address (an IPv4 address or IPv6 /64, through FLASHGATE_TRUSTED_PROXIES) may hold on one ws; past it a new one is answered 429 before the upgrade. 0 means no limit (carrier NAT puts many viewers behind one address)", func(c *Config) *int { return &c.WSMaxPerIP }),
	rateVar("FLASHGATE_RATE_ORDER", "5:10", "per-user limit of order requests that reach Redis, kept in each gateway's memory: <per second>:<burst>; 0 turns it off", func(c *Config) *Rate { return &c.RateOrder }),
	rateVar("FLASHGATE_RATE_GIFT", "20:40", "per-user limit of gift requests that reach Redis, applied by the gift-hold script: <per second>:<burst>; 0 turns it off", func(c *Config) *Rate { return &c.RateGift }),
	rateVar("FLASHGATE_RATE_PAY", "2:5", "per-user limit of payment and withdrawal requests: <per second>:<burst>; 0 turns it off", func(c *Config) *Rate { return &c.RatePay }),
	rateVar("FLASHGATE_RATE_OTHER", "20:50", "per-user limit of all other authenticated requests: <per second>:<burst>; 0 turns it off", func(c *Config) *Rate { return &c.RateOther }),
	rateVar("FLASHGATE_RATE_NOTIFY", "100:500", "per-source limit of payment notifies (POST /api/v1/pay/notify), kept in each gateway's memory apart from FLASHGATE_RATE_IP, so that public reads behind the same proxy never make a provider's notify get 429; a source is a client as FLASHGATE_RATE_IP counts them; 0 turns it off", func(c *Config) *Rate { return &c.RateNotify }),
	rateVar("FLASHGATE_RATE_IP", "50:100", "per-client limit of unauthenticated requests (public reads; not the pay notify, see FLASHGATE_RATE_NOTIFY, nor the dev-mode routes), kept in each gateway's memory for at most 131072 clients; a client is an IPv4 address or an IPv6 /64 (see FLASHGATE_TRUSTED_PROXIES); 0 turns it off", func(c *Config) *Rate { return &c.RateIP }),
	{Name: "FLASHGATE_TRUSTED_PROXIES", Default: "", Help: "comma-separated CIDRs (or addresses) of the load balancers and proxies in front of the gateway: from one of them the client address is the right-most X-Forwarded-For entry that is not itself a trusted proxy; from anyone else X-Forwarded-For is ignored. Empty: the TCP peer is the client", set: func(c *Config, v string) error {
		c.TrustedProxies = nil
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			p, err := netip.ParsePrefix(f)
			if err != nil {
				a, aerr := netip.ParseAddr(f)
				if aerr != nil || a.Zone() != "" {
					return fmt.Errorf("FLASHGATE_TRUSTED_PROXIES: %q: want a CIDR such as 10.0.0.0/8 or an address", f)
				}
				a = a.Unmap()
				p = netip.PrefixFrom(a, a.BitLen())
			}
			if p.Addr().Is4In6() {
				p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
			}
			c.TrustedProxies = append(c.TrustedProxies, p.Masked())
		}
		return nil
	}},
	intVar("FLASHGATE_GATEWAY_MAX_CONNS", "16384", "connections the gateway holds open at once; past it a new connection is answered 503 and closed (each costs about 20 KiB: size it to the box)", func(c *Config) *int { return &c.GatewayMaxConns }),
	intVarZeroOK("FLASHGATE_GATEWAY_MAX_CONNS_PER_IP", "0", "connections one TCP peer may hold open on the gateway; past it a new one is answered 429 and closed. 0 means no limit, which is right behind a load balancer (every connection comes from it); set it when clients connect directly", func(c *Config) *int { return &c.GatewayMaxConnsPerIP }),
	durVar("FLASHGATE_GATEWAY_READ_TIMEOUT", "10s", "how long the gateway waits for a whole request (headers and body) from its first byte; a request cut off is answered 408, a connection that sent nothing is closed", func(c *Config) *time.Duration { return &c.GatewayReadTimeout }),
	durVar("FLASHGATE_GATEWAY_IDLE_TIMEOUT", "60s", "how long a keep-alive connection to the gateway may wait for its next request", func(c *Config) *time.Duration { return &c.GatewayIdleTimeout }),
	intVar("FLASHGATE_GATEWAY_MAX_HEADER_BYTES", "4096", "largest request line and headers the gateway reads; a larger head is answered 400 (it is also each connection's read buffer)", func(c *Config) *int { return &c.GatewayMaxHeaderBytes }),
	intVar("FLASHGATE_MAX_INFLIGHT", "2048", "requests a gateway works on at once, all routes together; past it new requests get 503 at once. Each route class also has its own budget within it (FLASHGATE_INFLIGHT_*)", func(c *Config) *int { return &c.MaxInflight }),
	intVar("FLASHGATE_INFLIGHT_ORDERS", "", "order requests (POST /events/{id}/orders) a gateway works on at once; past it they get 503 at once (empty: FLASHGATE_MAX_INFLIGHT)", func(c *Config) *int { return &c.InflightOrders }),
	intVar("FLASHGATE_INFLIGHT_GIFTS", "", "gift requests (POST /rooms/{id}/gifts) a gateway works on at once; past it they get 503 at once (empty: FLASHGATE_MAX_INFLIGHT)", func(c *Config) *int { return &c.InflightGifts }),
	intVar("FLASHGATE_INFLIGHT_READS", "", "requests on routes that may wait on MySQL (tickets, orders, wallet, leaderboards, events by id, cancel, admin, pay and withdrawal status) a gateway works on at once; past it they get 503 while orders and gifts go on (empty: 1/8 of FLASHGATE_MAX_INFLIGHT)", func(c *Config) *int { return &c.InflightReads }),
	intVar("FLASHGATE_INFLIGHT_PAYMENTS", "", "payment requests (pay an order, recharge, the provider's notify, withdrawals) a gateway works on at once (empty: 1/16 of FLASHGATE_MAX_INFLIGHT). READS + PAYMENTS must stay below FLASHGATE_MAX_INFLIGHT, so a slow MySQL always leaves slots to orders and gifts", func(c *Config) *int { return &c.InflightPayments }),
	durVarZeroOK("FLASHGATE_INFLIGHT_WAIT", "5ms", "how long a request waits for a free in-flight slot before the 503; 0 means no wait", func(c *Config) *time.Duration { return &c.InflightWait }),
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

// FromLookup is FromEnv with the variables read through lookup instead of
// the environment, as a service would see them: k8s/ checks its manifests'
// settings with it.
func FromLookup(lookup func(name string) (string, bool)) (Config, error) { return fromLookup(lookup) }

func fromLookup(lookup func(string) (string, bool)) (Config, error) {
	c := Default()
	for _, v := range Vars {
		s, ok := lookup(v.Name)
		if v.Secret {
			var err error
			if s, ok, err = secretValue(v.Name, s, ok, lookup); err != nil {
				return c, err
			}
		}
		if ok && s != "" {
			if err := v.set(&c, s); err != nil {
				return c, err
			}
		}
	}
	c.ApplyDevDefaults()
	if s, ok := lookup("FLASHGATE_DRAIN_DELAY"); c.Dev && (!ok || s == "") {
		// No load balancer waits for a dev process: Ctrl-C stops at once.
		c.DrainDelay = 0
	}
	return c, nil
}

// secretValue is the value of a secret setting: from its variable, or read
// from the file named by <name>_FILE (without the trailing newline that
// editors and echo leave), not both.
func secretValue(name, v string, ok bool, lookup func(string) (string, bool)) (string, bool, error) {
	path, _ := lookup(name + "_FILE")
	if path == "" {
		return v, ok, nil
	}
	if ok && v != "" {
		return "", false, fmt.Errorf("%s and %s_FILE are both set: set one", name, name)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false, fmt.Errorf("%s_FILE: cannot read the secret: %w", name, err)
	}
	v = strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", false, fmt.Errorf("%s_FILE=%q: the file is empty", name, path)
	}
	return v, true, nil
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

// checkSecret refuses, outside dev mode, a secret that anyone could know or
// guess: one that contains a public value or is shorter than MinSecretLen.
func checkSecret(name, v string) error {
	for _, p := range PublicSecrets {
		if strings.Contains(v, p) {
			return fmt.Errorf("%s is a public value (a dev secret or an example printed in the README): anyone could sign with it; "+
				"set %d or more random bytes (for example `openssl rand -base64 48`), or FLASHGATE_DEV=1 for local use", name, MinSecretLen)
		}
	}
	if len(v) < MinSecretLen {
		return fmt.Errorf("%s is too short (%d bytes): outside dev mode use at least %d random bytes (for example `openssl rand -base64 48`)", name, len(v), MinSecretLen)
	}
	return nil
}

// Validate reports settings a service must not start with.
func (c *Config) Validate() error {
	if !c.Dev {
		if c.TokenSecret == "" {
			return fmt.Errorf("FLASHGATE_TOKEN_SECRET is empty: set %d or more random bytes, or FLASHGATE_DEV=1 for local use", MinSecretLen)
		}
		for _, s := range []struct{ name, v string }{
			{"FLASHGATE_TOKEN_SECRET", c.TokenSecret},
			{"FLASHGATE_TOKEN_SECRET_PREVIOUS", c.TokenSecretPrevious},
			{"FLASHGATE_PAY_SECRET", c.PaySecret},
		} {
			if s.v == "" {
				continue // required or not: see below and ValidateGateway
			}
			if err := checkSecret(s.name, s.v); err != nil {
				return err
			}
		}
	}
	if len(c.TokenSecret) < 16 {
		return fmt.Errorf("FLASHGATE_TOKEN_SECRET is too short (%d characters): use at least 16", len(c.TokenSecret))
	}
	if p := c.TokenSecretPrevious; p != "" && (len(p) < 16 || p == c.TokenSecret) {
		return fmt.Errorf("FLASHGATE_TOKEN_SECRET_PREVIOUS must be the old secret (16+ characters), different from FLASHGATE_TOKEN_SECRET")
	}
	if err := c.validateRotation(time.Now()); err != nil {
		return err
	}
	if u := c.WSPublicURL; u != "" && !strings.HasPrefix(u, "ws://") && !strings.HasPrefix(u, "wss://") {
		return fmt.Errorf("FLASHGATE_WS_PUBLIC_URL=%q: want a ws:// or wss:// URL", u)
	}
	if err := c.validateDevListen(); err != nil {
		return err
	}
	if err := c.validateTransport(); err != nil {
		return err
	}
	for _, v := range Vars {
		if v.dur == nil {
			continue
		}
		// A zero interval panics in time.NewTicker, a zero timeout fails
		// every call: only settings that document a zero may have one.
		if d := *v.dur(c); d < 0 || (d == 0 && !v.zeroOK) {
			if v.zeroOK {
				return fmt.Errorf("%s is %v: want a duration of 0 or more", v.Name, d)
			}
			return fmt.Errorf("%s is %v: want a positive duration", v.Name, d)
		}
	}
	// The gateway may hold a reservation in doubt for a Redis call (the
	// reserve), the produce and another Redis call (the undo) before it
	// answers 202 or 503. A reconciler that released the reservation before
	// that could free a unit whose order the client was just told is accepted.
	if limit := c.ProduceTimeout + 2*c.RedisTimeout; c.PendingTimeout <= limit {
		return fmt.Errorf("FLASHGATE_PENDING_TIMEOUT (%v) must be greater than FLASHGATE_PRODUCE_TIMEOUT + 2 × FLASHGATE_REDIS_TIMEOUT (%v): "+
			"the reconciler must never release a reservation whose gateway may still be waiting on Kafka and Redis to answer 202", c.PendingTimeout, limit)
	}
	if err := c.validateInflight(); err != nil {
		return err
	}
	return nil
}

// IsLoopbackAddr reports whether the listen address host:port is reachable
// from this machine only: a loopback IP or "localhost". An empty host, an
// unspecified address (0.0.0.0, ::) or any other name is not.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// devExposed says why a dev-mode service must not be reachable from the
// network.
const devExposed = "dev mode serves routes that mint admin tokens (POST /api/v1/dev/token) and pay anyone's pay orders, " +
	"and signs with public dev secrets: listen on 127.0.0.1, or set FLASHGATE_DEV_PUBLIC=1 on a network you trust"

// validateDevListen refuses, in dev mode, listen addresses beyond loopback
// unless FLASHGATE_DEV_PUBLIC=1.
func (c *Config) validateDevListen() error {
	if !c.Dev || c.DevPublic {
		return nil
	}
	for _, a := range []struct{ name, addr string }{
		{"FLASHGATE_GATEWAY_ADDR", c.GatewayAddr}, {"FLASHGATE_WS_ADDR", c.WSAddr}, {"FLASHGATE_WORKER_ADDR", c.WorkerAddr},
		{"FLASHGATE_INTERNAL_ADDR", c.InternalAddr}, {"FLASHGATE_WS_INTERNAL_ADDR", c.WSInternalAddr},
	} {
		if a.addr != "" && !IsLoopbackAddr(a.addr) {
			return fmt.Errorf("%s=%q is not a loopback address: %s", a.name, a.addr, devExposed)
		}
	}
	return nil
}

// CheckDevListener is validateDevListen for a listener a service was handed
// (tests and `flashgate dev` listen before the service starts): service
// names it in the error.
func (c *Config) CheckDevListener(service string, a net.Addr) error {
	if !c.Dev || c.DevPublic || a == nil {
		return nil
	}
	if tcp, ok := a.(*net.TCPAddr); ok && tcp.IP.IsLoopback() {
		return nil
	}
	if a.Network() == "unix" {
		return nil
	}
	return fmt.Errorf("%s listens on %s, not a loopback address: %s", service, a.String(), devExposed)
}

// validateTransport checks the Kafka and Redis credentials and TLS settings
// fit together, and that the CA files load.
func (c *Config) validateTransport() error {
	switch {
	case c.KafkaSASL != "" && (c.KafkaUsername == "" || c.KafkaPassword == ""):
		return fmt.Errorf("FLASHGATE_KAFKA_SASL_MECHANISM=%s needs FLASHGATE_KAFKA_SASL_USERNAME and FLASHGATE_KAFKA_SASL_PASSWORD", c.KafkaSASL)
	case c.KafkaSASL == "" && (c.KafkaUsername != "" || c.KafkaPassword != ""):
		return fmt.Errorf("FLASHGATE_KAFKA_SASL_USERNAME or _PASSWORD is set without FLASHGATE_KAFKA_SASL_MECHANISM: they would not be used")
	case c.KafkaSASL == "PLAIN" && !c.KafkaTLS && !c.Dev:
		return fmt.Errorf("FLASHGATE_KAFKA_SASL_MECHANISM=PLAIN sends the password in clear: set FLASHGATE_KAFKA_TLS=1, or use SCRAM-SHA-512")
	case c.KafkaTLSCA != "" && !c.KafkaTLS:
		return fmt.Errorf("FLASHGATE_KAFKA_TLS_CA is set but FLASHGATE_KAFKA_TLS is not: set FLASHGATE_KAFKA_TLS=1")
	case c.RedisTLSCA != "" && !c.RedisTLS:
		return fmt.Errorf("FLASHGATE_REDIS_TLS_CA is set but FLASHGATE_REDIS_TLS is not: set FLASHGATE_REDIS_TLS=1")
	case c.RedisUsername != "" && c.RedisPassword == "":
		return fmt.Errorf("FLASHGATE_REDIS_USERNAME is set without FLASHGATE_REDIS_PASSWORD")
	}
	if _, err := c.KafkaTLSConfig(); err != nil {
		return err
	}
	if _, err := c.RedisTLSConfig(); err != nil {
		return err
	}
	return nil
}

// KafkaTLSConfig is the TLS configuration of the Kafka connections, nil
// without FLASHGATE_KAFKA_TLS.
func (c *Config) KafkaTLSConfig() (*tls.Config, error) {
	return tlsConfig(c.KafkaTLS, "FLASHGATE_KAFKA_TLS_CA", c.KafkaTLSCA)
}

// RedisTLSConfig is the TLS configuration of the Redis connections, nil
// without FLASHGATE_REDIS_TLS.
func (c *Config) RedisTLSConfig() (*tls.Config, error) {
	return tlsConfig(c.RedisTLS, "FLASHGATE_REDIS_TLS_CA", c.RedisTLSCA)
}

func tlsConfig(on bool, caVar, caFile string) (*tls.Config, error) {
	if !on {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s: cannot read the CA file: %w", caVar, err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s=%q: no PEM certificate in the file", caVar, caFile)
		}
	}
	return tc, nil
}

// MaxRotationWindow is the furthest ahead FLASHGATE_TOKEN_PREVIOUS_UNTIL may
// be: an old key, perhaps leaked, stays good for at most this long.
const MaxRotationWindow = 7 * 24 * time.Hour

// validateRotation: a previous token secret needs an end that every replica
// agrees on, so it is configured, never derived from a process's start
// (every restart would reopen the window), and it is near.
func (c *Config) validateRotation(now time.Time) error {
	if c.TokenSecretPrevious == "" {
		return nil
	}
	if c.TokenPreviousUntil.IsZero() {
		return fmt.Errorf("FLASHGATE_TOKEN_PREVIOUS_UNTIL is empty while FLASHGATE_TOKEN_SECRET_PREVIOUS is set: " +
			"set the end of the rotation window (RFC 3339, the same on every replica, at most 7 days ahead), or unset the previous secret")
	}
	if limit := now.Add(MaxRotationWindow); c.TokenPreviousUntil.After(limit) {
		return fmt.Errorf("FLASHGATE_TOKEN_PREVIOUS_UNTIL (%s) is more than 7 days ahead: tokens of the old secret would be accepted until then; "+
			"end the rotation window by %s", c.TokenPreviousUntil.UTC().Format(time.RFC3339), limit.UTC().Format(time.RFC3339))
	}
	return nil
}

// Warnings are settings a service starts with but should not keep, for it
// to log at every start.
func (c *Config) Warnings() []string {
	var w []string
	if c.Dev && c.DevPublic {
		w = append(w, "FLASHGATE_DEV_PUBLIC=1: dev mode may be reachable from the network; anyone who reaches the gateway can mint an admin token")
	}
	if c.TokenSecretPrevious != "" && !c.TokenPreviousUntil.IsZero() && !time.Now().Before(c.TokenPreviousUntil) {
		w = append(w, fmt.Sprintf("FLASHGATE_TOKEN_SECRET_PREVIOUS is still set but its window ended at %s: "+
			"tokens it signed are refused; unset it and FLASHGATE_TOKEN_PREVIOUS_UNTIL", c.TokenPreviousUntil.UTC().Format(time.RFC3339)))
	}
	return w
}

// LogStartup logs, at every start of a service, what an operator should
// know about its security settings: each of Warnings at warn, and the key
// rotation window while there is one.
func (c *Config) LogStartup(log *slog.Logger) {
	if c.TokenSecretPrevious != "" && time.Now().Before(c.TokenPreviousUntil) {
		log.Info("token key rotation: tokens of the previous secret are accepted until the window ends",
			"until", c.TokenPreviousUntil.UTC().Format(time.RFC3339))
	}
	for _, w := range c.Warnings() {
		log.Warn(w)
	}
}

// DevTokenTTL is the lifetime of the tokens that dev mode hands out: a day,
// or FLASHGATE_TOKEN_MAX_TTL if that is shorter, so they are honoured.
func (c *Config) DevTokenTTL() time.Duration {
	if c.TokenMaxTTL > 0 && c.TokenMaxTTL < 24*time.Hour {
		return c.TokenMaxTTL
	}
	return 24 * time.Hour
}

// InflightBudgets is how many requests of each route class a gateway works on
// at once; every request also takes one of the Total.
type InflightBudgets struct {
	Total, Orders, Gifts, Reads, Payments int
}

// InflightBudgets returns the budgets with the documented defaults filled in:
// orders and gifts may use all of FLASHGATE_MAX_INFLIGHT, reads an eighth of
// it and payments a sixteenth (at least one each).
func (c *Config) InflightBudgets() InflightBudgets {
	b := InflightBudgets{Total: c.MaxInflight, Orders: c.InflightOrders, Gifts: c.InflightGifts,
		Reads: c.InflightReads, Payments: c.InflightPayments}
	if b.Total <= 0 {
		b.Total = 2048
	}
	if b.Orders <= 0 {
		b.Orders = b.Total
	}
	if b.Gifts <= 0 {
		b.Gifts = b.Total
	}
	if b.Reads <= 0 {
		b.Reads = max(1, b.Total/8)
	}
	if b.Payments <= 0 {
		b.Payments = max(1, b.Total/16)
	}
	return b
}

func (c *Config) validateInflight() error {
	b := c.InflightBudgets()
	for _, v := range []struct {
		name string
		n    int
	}{
		{"FLASHGATE_INFLIGHT_ORDERS", b.Orders}, {"FLASHGATE_INFLIGHT_GIFTS", b.Gifts},
		{"FLASHGATE_INFLIGHT_READS", b.Reads}, {"FLASHGATE_INFLIGHT_PAYMENTS", b.Payments},
	} {
		if v.n > b.Total {
			return fmt.Errorf("%s (%d) is more than FLASHGATE_MAX_INFLIGHT (%d): a class budget is a part of the total", v.name, v.n, b.Total)
		}
	}
	if b.Reads+b.Payments >= b.Total {
		return fmt.Errorf("FLASHGATE_INFLIGHT_READS (%d) + FLASHGATE_INFLIGHT_PAYMENTS (%d) must be less than FLASHGATE_MAX_INFLIGHT (%d): "+
			"requests waiting on a slow MySQL must leave slots for orders and gifts", b.Reads, b.Payments, b.Total)
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
		return fmt.Errorf("FLASHGATE_PAY_SECRET is empty: set the secret your payment provider signs callbacks with (%d or more random bytes), or FLASHGATE_DEV=1 for local use", MinSecretLen)
	}
	return nil
}

// sandboxDoes says what the sandbox provider of a service fakes.
var sandboxDoes = map[string]string{
	"gateway": "the gateway's built-in payment provider is a sandbox that marks flash-sale orders paid (POST /orders/{no}/pay) without collecting any money",
	"worker":  "the worker's built-in payout provider is a sandbox that marks withdrawals paid out without sending any money",
}

// ValidateSandbox refuses, outside dev mode, to run service ("gateway" or
// "worker") with its sandbox provider unless FLASHGATE_SANDBOX_PAYMENTS=1
// says so: a sandbox in production gives flash-sale units away and marks
// withdrawals paid that nobody received.
func (c *Config) ValidateSandbox(service string) error {
	if c.Dev || c.SandboxPayments {
		return nil
	}
	return fmt.Errorf("FLASHGATE_SANDBOX_PAYMENTS is not set and %s: outside dev mode, build flashgate with a real provider, "+
		"or set FLASHGATE_SANDBOX_PAYMENTS=1 for a system where no real money or goods change hands", sandboxDoes[service])
}

// SandboxWarning is what a service logs at every start outside dev mode
// when it runs with its sandbox provider.
func SandboxWarning(service string) string {
	return "FLASHGATE_SANDBOX_PAYMENTS=1: " + sandboxDoes[service] + "; never run this where real money or goods change hands"
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
		if v.Secret {
			continue // environment or file only
		}
		fname := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(v.Name, "FLASHGATE_"), "_", "-"))
		fs.vals[v.Name] = fs.String(fname, "", v.Help+" (env "+v.Name+")")
	}
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "%s\n\nEnvironment (flags of the same name in lower case override them, except for secrets, which come\n"+
			"only from the environment or from a file named by <NAME>_FILE):\n", usage)
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
		help := v.Help
		if v.Secret {
			help += " [secret: environment or " + v.Name + "_FILE only, no flag]"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Name, def, help)
	}
	tw.Flush()
}
