package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flashgate/flashgate/internal/auth"
)

// writeRequests writes n precomputed requests for requests.lua, one per
// line: method, path, token, body, tab-separated.
func (b *bench) writeRequests(name string, n int, line func(i int) (method, path, token, body string)) (string, error) {
	dir := filepath.Join(b.dir, "requests")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name+".tsv")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriterSize(f, 1<<16)
	for i := range n {
		m, p, t, body := line(i)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", m, p, t, body)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// wrkResult is what requests.lua prints at the end of a run.
type wrkResult struct {
	Requests   int64            `json:"requests"`
	DurationUS int64            `json:"duration_us"`
	P50US      int64            `json:"p50_us"`
	P99US      int64            `json:"p99_us"`
	Errors     map[string]int64 `json:"errors"`
	Statuses   map[string]int64 `json:"statuses"`
}

func (r wrkResult) rate() float64 {
	if r.DurationUS == 0 {
		return 0
	}
	return float64(r.Requests) / (float64(r.DurationUS) / 1e6)
}

// answers lists the statuses (and socket errors) wrk saw, most frequent first.
func (r wrkResult) answers() string {
	type kv struct {
		k string
		n int64
	}
	var all []kv
	for k, n := range r.Statuses {
		all = append(all, kv{k, n})
	}
	for k, n := range r.Errors {
		if n > 0 {
			all = append(all, kv{k + " error", n})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n || all[i].n == all[j].n && all[i].k < all[j].k })
	parts := make([]string, len(all))
	for i, e := range all {
		parts[i] = fmt.Sprintf("%s×%d", e.k, e.n)
	}
	return strings.Join(parts, ", ")
}

// unexpected counts the answers other than want, socket errors included.
func (r wrkResult) unexpected(want int) int64 {
	var n int64
	for k, c := range r.Statuses {
		if k != strconv.Itoa(want) {
			n += c
		}
	}
	for _, c := range r.Errors {
		n += c
	}
	return n
}

// wrk drives base with the requests in file for d.
func (b *bench) wrk(ctx context.Context, base, file string, d time.Duration) (wrkResult, error) {
	cmd := exec.CommandContext(ctx, "wrk", "-t"+strconv.Itoa(b.threads), "-c"+strconv.Itoa(b.conns),
		"-d"+strconv.Itoa(int(d.Seconds()))+"s", "--timeout", "10s", "-s", b.script, base, "--", file, strconv.Itoa(b.threads))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	_, js, ok := strings.Cut(string(out), "wrk-result ")
	if !ok {
		return wrkResult{}, fmt.Errorf("wrk printed no result: %s", out)
	}
	var r wrkResult
	if err := json.Unmarshal([]byte(strings.TrimSpace(js)), &r); err != nil {
		return wrkResult{}, fmt.Errorf("wrk result %q: %v", js, err)
	}
	return r, nil
}

// httpRow runs the same requests against flashgate and, around it, the
// bare server, and returns the row. check checks flashgate's promises
// after its load and gives the row's check column; it waits until the
// worker decided all that was accepted.
//
// The bare server runs half the time before flashgate and half after, and
// its rate is the mean of the two: this box's speed drifts (the bare rate
// of one run ranged from 57k to 93k req/s over a day), and a reference
// taken on both sides of the measure cancels a drift within the row. The
// second half runs after check, so that a worker still writing a backlog
// does not slow the reference down.
func (b *bench) httpRow(ctx context.Context, name, file string, check func(gw wrkResult) string) (row, error) {
	half := max(time.Second, (b.duration / 2).Truncate(time.Second))
	before, err := b.wrk(ctx, "http://"+bareAddr, file, half)
	if err != nil {
		return row{}, err
	}
	gw, err := b.wrk(ctx, "http://"+b.cfg.GatewayAddr, file, b.duration)
	if err != nil {
		return row{}, err
	}
	checked := check(gw)
	after, err := b.wrk(ctx, "http://"+bareAddr, file, half)
	if err != nil {
		return row{}, err
	}
	bare := (before.rate() + after.rate()) / 2
	b.logf("  %s: flashgate %.0f req/s, bare %.0f req/s (%.0f before, %.0f after)", name, gw.rate(), bare, before.rate(), after.rate())
	return row{
		name: name, rate: gw.rate(), unit: "req/s", bare: bare,
		p50: time.Duration(gw.P50US) * time.Microsecond, p99: time.Duration(gw.P99US) * time.Microsecond,
		answers: gw.answers(), check: checked,
	}, nil
}

var httpc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

// api calls the gateway and decodes the JSON answer.
func (b *bench) api(method, path, token, body string) (int, map[string]any, error) {
	addr := b.cfg.GatewayAddr
	if strings.HasPrefix(path, "/api/v1/admin/") {
		addr = b.cfg.InternalAddr // the only listener that serves admin routes
	}
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		json.Unmarshal(raw, &out)
	}
	return resp.StatusCode, out, nil
}

func (b *bench) token(uid int64) string { return b.signer.Sign(uid, auth.RoleUser, 2*time.Hour) }

// gatewayCount sums the children of flashgate_gateway_tickets_total of kind
// (order or gift) whose result label starts with prefix (accepted and
// accepted_late), from /metrics.
func (b *bench) gatewayCount(kind, prefix string) (int64, error) {
	resp, err := httpc.Get("http://" + b.cfg.InternalAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum int64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, `flashgate_gateway_tickets_total{kind="`+kind+`",result="`+prefix) {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += int64(v)
	}
	return sum, sc.Err()
}

// buckets reads a histogram's cumulative bucket counts from a service's
// /metrics, by upper bound ("+Inf" included).
func buckets(addr, name string) (map[string]float64, error) {
	resp, err := httpc.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	prefix := name + `_bucket{le="`
	for sc.Scan() {
		le, rest, ok := strings.Cut(strings.TrimPrefix(sc.Text(), prefix), `"} `)
		if !ok || !strings.HasPrefix(sc.Text(), prefix) {
			continue
		}
		v, _ := strconv.ParseFloat(rest, 64)
		out[le] = v
	}
	return out, sc.Err()
}

// quantile is the upper bound of the bucket holding quantile q of the
// observations between two reads of a histogram's buckets.
func quantile(before, after map[string]float64, q float64) string {
	type b struct {
		le float64
		n  float64
	}
	var bs []b
	for le, n := range after {
		v, err := strconv.ParseFloat(le, 64)
		if err != nil {
			continue // +Inf
		}
		bs = append(bs, b{v, n - before[le]})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	total := after["+Inf"] - before["+Inf"]
	for _, x := range bs {
		if total > 0 && x.n >= q*total {
			return "≤ " + time.Duration(x.le*float64(time.Second)).String()
		}
	}
	return "over the largest bucket"
}

// counters is a snapshot of the work Redis and MariaDB did: calls per
// Redis command, and MariaDB's Questions (statements from clients).
type counters struct {
	redis     map[string]int64
	mysql     map[string]int64 // Com_* by statement kind
	questions int64
}

func (b *bench) counters(ctx context.Context) (counters, error) {
	c := counters{redis: map[string]int64{}}
	info, err := b.rdb.Do(ctx, b.rdb.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		return c, err
	}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		c.redis[strings.TrimPrefix(name, "cmdstat_")], _ = strconv.ParseInt(calls, 10, 64)
	}
	c.mysql = map[string]int64{}
	rows, err := b.db.QueryContext(ctx, `SHOW GLOBAL STATUS WHERE Variable_name = 'Questions' OR Variable_name LIKE 'Com\_%'`)
	if err != nil {
		return c, err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var v int64
		if err := rows.Scan(&name, &v); err != nil {
			return c, err
		}
		if name == "Questions" {
			c.questions = v
		} else {
			c.mysql[strings.ToLower(strings.TrimPrefix(name, "Com_"))] = v
		}
	}
	return c, rows.Err()
}

// breakdown lists the per-item deltas of a counter map, largest first,
// leaving out skip and anything under 0.01 per item.
func breakdown(before, after map[string]int64, items int64, skip ...string) (string, int64) {
	type kv struct {
		k string
		n int64
	}
	var all []kv
	var total int64
	for k, v := range after {
		d := v - before[k]
		if d <= 0 || slices.Contains(skip, k) {
			continue
		}
		all = append(all, kv{k, d})
		total += d
	}
	// Largest first, ties by name, so the line reads the same every run.
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n || all[i].n == all[j].n && all[i].k < all[j].k })
	var parts []string
	for _, c := range all {
		if per := float64(c.n) / float64(items); per >= 0.01 {
			parts = append(parts, fmt.Sprintf("%s %.2f", c.k, per))
		}
	}
	return strings.Join(parts, ", "), total
}

// perItem describes the work between two snapshots per item (order or
// gift): Redis commands by name (those scripts run included), and MariaDB
// statements from clients by kind. ownQueries is the statements the bench
// itself sent in between; they are left out.
func perItem(before, after counters, items, ownQueries int64, what string) string {
	if items <= 0 {
		return ""
	}
	redis, calls := breakdown(before.redis, after.redis, items, "info")
	after.mysql["select"] -= ownQueries
	sql, _ := breakdown(before.mysql, after.mysql, items, "show_status")
	stmts := after.questions - before.questions - ownQueries
	return fmt.Sprintf("per %s (over %d, all steps): **%.1f Redis commands** (%s); **%.2f MariaDB statements** (%s)",
		what, items, float64(calls)/float64(items), redis, float64(stmts)/float64(items), sql)
}
