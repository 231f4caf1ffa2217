package k6

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// scripts lists every .js file here and under lib/.
func scripts(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".js") {
			out = append(out, path)
		}
		return err
	})
	if err != nil || len(out) == 0 {
		t.Fatalf("no scripts found: %v", err)
	}
	return out
}

// TestScriptsParse runs node's syntax check on each script as an ES module,
// as k6 loads it. Imports are not resolved, so k6's modules are not needed.
func TestScriptsParse(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH: cannot check that the k6 scripts parse (install nodejs to run this check)")
	}
	for _, path := range scripts(t) {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(node, "--check", "--input-type=module")
		cmd.Stdin = bytes.NewReader(src)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s does not parse as an ES module: %v\n%s", path, err, out)
		}
	}
}

// section is the README text from the heading that starts with title to the
// next heading of the same or a higher level.
func section(t *testing.T, readme, title string) string {
	t.Helper()
	i := strings.Index(readme, title)
	if i < 0 {
		t.Fatalf("loadtest/README.md has no %q", title)
	}
	level := strings.Index(title, " ") + 1 // "### x" -> "\n### " ends it, as does "\n## "
	rest := readme[i+len(title):]
	end := len(rest)
	for l := 2; l <= level-1; l++ {
		if j := strings.Index(rest, "\n"+strings.Repeat("#", l)+" "); j >= 0 && j < end {
			end = j
		}
	}
	return rest[:end]
}

var (
	tableHeader = regexp.MustCompile(`(?m)^\| (Metric|Variable) \|.*$`)
	tableRow    = regexp.MustCompile("^\\| `([A-Za-z_0-9]+)` \\|([^|]*)\\|([^|]*)\\|")
	declared    = regexp.MustCompile(`new (Counter|Trend|Rate|Gauge)\('([a-z_0-9]+)'`)
)

// reads reports whether src reads the variable through env() or num().
func reads(src, name string) bool {
	return strings.Contains(src, "env('"+name+"'") || strings.Contains(src, "num('"+name+"'")
}

// table returns the rows of each table with the given header ("Metric" or
// "Variable") in text: the backticked first column, then the next two cells.
func table(text, header string) [][3]string {
	var rows [][3]string
	for _, loc := range tableHeader.FindAllStringSubmatchIndex(text, -1) {
		if text[loc[2]:loc[3]] != header {
			continue
		}
		for _, line := range strings.Split(text[loc[1]:], "\n")[2:] { // skip the |---| line
			m := tableRow.FindStringSubmatch(line)
			if m == nil {
				break
			}
			rows = append(rows, [3]string{m[1], strings.TrimSpace(m[2]), strings.TrimSpace(m[3])})
		}
	}
	return rows
}

// TestReadmeMatchesScripts: every metric the README documents for a scenario
// is declared in it with that type and threshold, every metric the script
// declares is documented, and every documented variable is read.
func TestReadmeMatchesScripts(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	lib, err := os.ReadFile(filepath.Join("lib", "flashgate.js"))
	if err != nil {
		t.Fatal(err)
	}
	common := table(section(t, readme, "### Tokens and users"), "Variable")
	if len(common) == 0 {
		t.Fatal("loadtest/README.md: no table of common variables under ### Tokens and users")
	}
	for _, name := range []string{"flash_sale", "live_room"} {
		src, err := os.ReadFile(name + ".js")
		if err != nil {
			t.Fatal(err)
		}
		script := string(src)
		text := section(t, readme, "### "+name+".js")
		metrics := table(text, "Metric")
		vars := table(text, "Variable")
		if len(metrics) == 0 || len(vars) == 0 {
			t.Fatalf("loadtest/README.md: ### %s.js lacks its Metric or Variable table", name)
		}

		documented := map[string]bool{}
		for _, row := range metrics {
			metric, typ, threshold := row[0], strings.Fields(row[1])[0], strings.Trim(row[2], "`")
			documented[metric] = true
			if !strings.Contains(script, "new "+typ+"('"+metric+"'") {
				t.Errorf("%s.js does not declare %s %q as loadtest/README.md says", name, typ, metric)
			}
			wantThreshold := metric + ": ['" + threshold + "']"
			if threshold != "" && !strings.Contains(script, wantThreshold) {
				t.Errorf("%s.js has no threshold %s, which loadtest/README.md documents", name, wantThreshold)
			}
			if threshold == "" && strings.Contains(script, "\n    "+metric+": [") {
				t.Errorf("%s.js has a threshold on %s that loadtest/README.md does not document", name, metric)
			}
		}
		for _, m := range declared.FindAllStringSubmatch(script, -1) {
			if !documented[m[2]] {
				t.Errorf("%s.js declares metric %q, which loadtest/README.md does not document", name, m[2])
			}
		}
		for _, row := range vars {
			if !reads(script, row[0]) {
				t.Errorf("%s.js does not read %s, which loadtest/README.md documents", name, row[0])
			}
		}
		for _, row := range common {
			if !reads(script, row[0]) && !reads(string(lib), row[0]) {
				t.Errorf("neither %s.js nor lib/flashgate.js reads %s, which loadtest/README.md documents", name, row[0])
			}
		}
	}
}
