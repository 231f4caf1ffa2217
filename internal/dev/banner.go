package dev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/db"
)

// urlHost turns a listen address into one a client on this machine can
// dial: a wildcard or empty host becomes 127.0.0.1.
func urlHost(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// waitHealthy polls GET /healthz on every address until all answer 200, the
// services exit (done), ctx ends or timeout passes.
func waitHealthy(ctx context.Context, done <-chan struct{}, timeout time.Duration, addrs ...string) error {
	cl := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	pending := append([]string(nil), addrs...)
	for {
		var still []string
		for _, a := range pending {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+urlHost(a)+"/healthz", nil)
			resp, err := cl.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					continue
				}
			}
			still = append(still, a)
		}
		if pending = still; len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer from %s within %s", strings.Join(pending, ", "), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return errors.New("the services stopped")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (e *env) depsSummary() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  Redis\t%s\t(%s)\n", e.cfg.RedisAddr, e.redisState)
	fmt.Fprintf(tw, "  MariaDB\t%s\t(%s)\n", e.cfg.MySQLDSN, e.mysqlState)
	fmt.Fprintf(tw, "  Kafka\t%s\t(%s)\n", strings.Join(e.cfg.KafkaBrokers, ","), e.kafkaState)
	tw.Flush()
	return b.String()
}

func (e *env) printDeps() {
	fmt.Fprintf(e.opts.Out, "\nflashgate dev: dependencies are up and migrated. Ctrl-C stops what was started here.\n\n%s\n", e.depsSummary())
}

// writeReady writes the ready file atomically, so a script polling for it
// never reads half of it.
func writeReady(path string, cfg config.Config) error {
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	body := fmt.Sprintf("# written by flashgate dev --deps-only (pid %d); removed when it stops\n"+
		"FLASHGATE_REDIS_ADDR=%s\nFLASHGATE_MYSQL_DSN=%s\nFLASHGATE_KAFKA_BROKERS=%s\nFLASHGATE_TOPIC_PREFIX=%s\n",
		os.Getpid(), q(cfg.RedisAddr), q(cfg.MySQLDSN), q(strings.Join(cfg.KafkaBrokers, ",")), q(cfg.TopicPrefix))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		return fmt.Errorf("cannot write the ready file: %w", err)
	}
	return os.Rename(tmp, path)
}

// printBanner tells a person where everything is and how to try it.
func printBanner(w io.Writer, cfg config.Config, ev db.Event, deps string) {
	signer := auth.NewSigner(cfg.TokenSecret)
	tok := func(uid int64, role string) string { return signer.Sign(uid, role, cfg.DevTokenTTL()) }
	gw := "http://" + urlHost(cfg.GatewayAddr)
	wsURL := "ws://" + urlHost(cfg.WSAddr) + "/ws"
	t1 := tok(1, auth.RoleUser)

	status := "live"
	if now := time.Now(); ev.StartsAt.After(now) {
		status = "starts " + ev.StartsAt.UTC().Format(time.RFC3339)
	}
	buy := fmt.Sprintf(`curl -s -X POST %s/api/v1/events/%d/orders -H "Authorization: Bearer %s" -d '{}'`, gw, ev.ID, t1)

	fmt.Fprintf(w, "\nflashgate is running in dev mode. Ctrl-C stops everything.\n\n")
	fmt.Fprintf(w, "Open %s/ in a browser: the flash sale there, the live room at %s/room; pick a user to sign in.\n", gw, gw)
	if cfg.InternalAddr != "" {
		fmt.Fprintf(w, "Admin page (create a sale, add stock; paste the admin token below): http://%s/admin\n", urlHost(cfg.InternalAddr))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  gateway\t%s/\t(web pages at /, /room; API under /api/v1; /healthz, /readyz)\n", gw)
	fmt.Fprintf(tw, "  gateway internal\thttp://%s\t(admin page /admin, admin routes /api/v1/admin/...; /healthz, /readyz, /metrics)\n", urlHost(cfg.InternalAddr))
	fmt.Fprintf(tw, "  ws\t%s\t(WebSocket push; /healthz, /readyz on http://%s)\n", wsURL, urlHost(cfg.WSAddr))
	fmt.Fprintf(tw, "  ws internal\thttp://%s\t(/healthz, /readyz, /metrics)\n", urlHost(cfg.WSInternalAddr))
	fmt.Fprintf(tw, "  worker\thttp://%s\t(internal: /healthz, /readyz, /metrics)\n", urlHost(cfg.WorkerAddr))
	tw.Flush()
	fmt.Fprintf(w, "\n%s\n", deps)
	fmt.Fprintf(w, "Demo event %d %q: %s, %d of %d left, price %d cents, ends %s\n\n",
		ev.ID, ev.Name, status, ev.Stock, ev.StockTotal, ev.Price, ev.EndsAt.UTC().Format(time.RFC3339))

	fmt.Fprintf(w, "Tokens (valid %s; more with `flashgate token --user N`):\n", cfg.DevTokenTTL())
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  user 1\t%s\n", t1)
	fmt.Fprintf(tw, "  user 2\t%s\n", tok(2, auth.RoleUser))
	fmt.Fprintf(tw, "  user 3\t%s\n", tok(3, auth.RoleUser))
	fmt.Fprintf(tw, "  admin %d\t%s\n", demoAdminID, tok(demoAdminID, auth.RoleAdmin))
	tw.Flush()

	fmt.Fprintf(w, "\nBuy one unit of the demo event as user 1:\n  %s\n", buy)
	fmt.Fprintf(w, "\nRead user 1's ticket (a repeated buy answers 409 with the same ticket):\n")
	fmt.Fprintf(w, "  TICKET=$(%s | sed -n 's/.*\"ticket\":\"\\([^\"]*\\)\".*/\\1/p')\n", buy)
	fmt.Fprintf(w, "  curl -s %s/api/v1/tickets/$TICKET -H \"Authorization: Bearer %s\"\n", gw, t1)
	fmt.Fprintf(w, "\nWatch user 1's outcomes and the event's stock over WebSocket (websocat or wscat), then send {\"type\":\"watch\",\"event_id\":%d}:\n", ev.ID)
	fmt.Fprintf(w, "  websocat '%s?token=%s'\n", wsURL, t1)
	fmt.Fprintf(w, "  wscat -c '%s?token=%s'\n\n", wsURL, t1)
}
