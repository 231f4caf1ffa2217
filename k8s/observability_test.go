package k8s_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// registered returns the flashgate_* metric names the Go code registers,
// read from the source: every metric is declared with a Namespace (always
// flashgate), an optional Subsystem and a Name.
func registered(t *testing.T) map[string]bool {
	t.Helper()
	decl := regexp.MustCompile(`Namespace:\s*(?:obs\.)?Namespace,\s*(?:Subsystem:\s*"([a-z_]+)",\s*)?Name:\s*"([a-z_]+)"`)
	names := map[string]bool{}
	err := filepath.WalkDir("..", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".run" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".") && p != "..") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			n := "flashgate_" + m[2]
			if m[1] != "" {
				n = "flashgate_" + m[1] + "_" + m[2]
			}
			names[n] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !names["flashgate_ws_connections"] || !names["flashgate_kafka_produce_seconds"] {
		t.Fatalf("the metric declarations were not found in the source (found %d names): the pattern needs updating", len(names))
	}
	return names
}

var metricRef = regexp.MustCompile(`flashgate_[a-z_]+`)

// checkNames fails for each flashgate_* name in text that the code does not
// register: an alert or a panel on a renamed metric shows nothing and never
// fires.
func checkNames(t *testing.T, where, text string, names map[string]bool) int {
	t.Helper()
	n := 0
	for _, ref := range metricRef.FindAllString(text, -1) {
		base := ref
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if !names[base] {
				base = strings.TrimSuffix(base, suf)
			}
		}
		if !names[base] {
			t.Errorf("%s uses %s, which no Go code registers", where, ref)
		}
		n++
	}
	return n
}

func TestObservabilityMetricNames(t *testing.T) {
	names := registered(t)
	objs := render(t, "observability")
	decode(t, "observability", objs)
	var rules, dashboards int
	for _, o := range objs {
		switch o.Kind {
		case "PrometheusRule":
			var r struct {
				Spec struct {
					Groups []struct {
						Rules []struct {
							Alert string `json:"alert"`
							Expr  string `json:"expr"`
						} `json:"rules"`
					} `json:"groups"`
				} `json:"spec"`
			}
			if err := json.Unmarshal(o.raw, &r); err != nil {
				t.Fatal(err)
			}
			for _, g := range r.Spec.Groups {
				for _, rule := range g.Rules {
					if checkNames(t, "alert "+rule.Alert, rule.Expr, names) == 0 {
						t.Errorf("alert %s uses no flashgate metric", rule.Alert)
					}
					rules++
				}
			}
		case "ConfigMap":
			var cm struct {
				Data map[string]string `json:"data"`
			}
			if err := json.Unmarshal(o.raw, &cm); err != nil {
				t.Fatal(err)
			}
			for file, text := range cm.Data {
				var d struct {
					Panels []struct {
						Title   string `json:"title"`
						Targets []struct {
							Expr string `json:"expr"`
						} `json:"targets"`
					} `json:"panels"`
				}
				if err := json.Unmarshal([]byte(text), &d); err != nil {
					t.Fatalf("%s is not a dashboard: %v", file, err)
				}
				for _, p := range d.Panels {
					for _, tg := range p.Targets {
						checkNames(t, file+" panel "+p.Title, tg.Expr, names)
					}
				}
				dashboards += len(d.Panels)
			}
		}
	}
	// What the issue asks the alerts to cover, by the metric each watches.
	var text strings.Builder
	for _, o := range objs {
		text.Write(o.raw)
	}
	for _, m := range []string{
		"flashgate_gateway_requests_total", "flashgate_gateway_shed_total", "flashgate_worker_consumer_lag_records",
		"flashgate_worker_abort_markers_total", "flashgate_worker_dead_letters_total",
		"flashgate_worker_payout_conflicts_total", "flashgate_ws_dropped_connections_total",
	} {
		if !strings.Contains(text.String(), m) {
			t.Errorf("nothing watches %s", m)
		}
	}
	if rules < 7 || dashboards < 8 {
		t.Errorf("%d alerts and %d dashboard panels: the observability kustomization lost some", rules, dashboards)
	}
}
