package bus

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/testenv"
)

// TestSASLAndTLS: a broker that wants SASL over TLS is reached with the
// FLASHGATE_KAFKA_* settings, and refuses a client with the wrong password,
// without TLS, or without SASL.
func TestSASLAndTLS(t *testing.T) {
	tf := testenv.SelfSignedTLS(t)
	for _, mech := range []string{"SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"} {
		t.Run(mech, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser(mech, "flashgate", "s3cret-password"),
				kfake.TLS(tf.Server), kfake.SeedTopics(1, "t"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			try := func(mod func(*config.Config)) error {
				cfg := config.Default()
				cfg.KafkaBrokers = c.ListenAddrs()
				cfg.KafkaSASL, cfg.KafkaUsername, cfg.KafkaPassword = mech, "flashgate", "s3cret-password"
				cfg.KafkaTLS, cfg.KafkaTLSCA = true, tf.CAFile
				mod(&cfg)
				cl, err := NewClient(cfg, log)
				if err != nil {
					return err
				}
				defer cl.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				return cl.Ping(ctx)
			}
			if err := try(func(*config.Config) {}); err != nil {
				t.Fatalf("with the right settings: %v", err)
			}
			for name, mod := range map[string]func(*config.Config){
				"wrong password":   func(c *config.Config) { c.KafkaPassword = "wrong" },
				"no TLS":           func(c *config.Config) { c.KafkaTLS, c.KafkaTLSCA = false, "" },
				"no SASL":          func(c *config.Config) { c.KafkaSASL, c.KafkaUsername, c.KafkaPassword = "", "", "" },
				"untrusted server": func(c *config.Config) { c.KafkaTLSCA = "" },
			} {
				if err := try(mod); err == nil {
					t.Errorf("%s: the broker let the client in", name)
				}
			}
		})
	}
}
