package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// report renders the table, the levers (work per order and per gift) and
// what the ratio means.
func (b *bench) report(took time.Duration) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n## make bench, %s (%s, wrk -t%d -c%d, %s per side)\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), took.Round(time.Second), b.threads, b.conns, b.duration)
	sb.WriteString("| scenario | rate | of bare | p50 | p99 | answers | check |\n")
	sb.WriteString("|---|---:|---:|---:|---:|---|---|\n")
	for _, r := range b.rows {
		rate, ratio, p50, p99 := "—", "—", "—", "—"
		if r.rate > 0 {
			rate = fmt.Sprintf("%.0f %s", r.rate, r.unit)
		}
		if r.bare > 0 {
			ratio = fmt.Sprintf("%.2f", r.rate/r.bare)
		}
		if r.p50 > 0 {
			p50 = fmtDur(r.p50)
		}
		if r.p99 > 0 {
			p99 = fmtDur(r.p99)
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s | %s |\n", r.name, rate, ratio, p50, p99, r.answers, r.check)
	}
	if len(b.levers) > 0 {
		sb.WriteString("\n")
		for _, l := range b.levers {
			sb.WriteString("- " + l + "\n")
		}
	}
	sb.WriteString("\n\"of bare\" is flashgate's rate over a bare fasthttp server's rate (a fixed 202 JSON) for the same\n" +
		"wrk script in the same run: what flashgate keeps of what this box serves over HTTP. Absolute\n" +
		"rates vary from box to box; the ratios are what to compare.\n")
	return sb.String()
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", d.Seconds()*1000)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", d.Seconds()*1000)
	default:
		return fmt.Sprintf("%.0f µs", d.Seconds()*1e6)
	}
}

// save writes the report under the run dir, dated, and as latest.md.
func (b *bench) save(report string) error {
	dir := filepath.Join(b.dir, "results")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := filepath.Join(dir, time.Now().UTC().Format("2006-01-02T15-04-05")+".md")
	if err := os.WriteFile(name, []byte(report), 0o644); err != nil {
		return err
	}
	b.logf("table written to %s", name)
	return os.WriteFile(filepath.Join(dir, "latest.md"), []byte(report), 0o644)
}
