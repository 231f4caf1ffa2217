package web

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestEveryErrorHasASentence: every error code of the API (internal/apierr)
// and every failure reason of a ticket (worker/decide.go) has a sentence in
// the pages' humanError, so no person ever reads a bare code.
func TestEveryErrorHasASentence(t *testing.T) {
	js, err := os.ReadFile("static/js/common.js")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?s)const sentences = \{(.*?)\n\};`).FindSubmatch(js)
	if block == nil {
		t.Fatal("common.js has no sentences table")
	}
	have := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z_]+): `).FindAllSubmatch(block[1], -1) {
		have[string(m[1])] = true
	}
	sources := []struct {
		glob string
		re   *regexp.Regexp
	}{
		{"../internal/apierr/*.go", regexp.MustCompile(`Code: "([a-z_]+)"`)},
		{"../worker/decide.go", regexp.MustCompile(`Reason\w+\s*=\s*"([a-z_]+)"`)},
	}
	n := 0
	for _, src := range sources {
		files, _ := filepath.Glob(src.glob)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range src.re.FindAllSubmatch(b, -1) {
				n++
				if !have[string(m[1])] {
					t.Errorf("%s: code %q has no sentence in web/static/js/common.js", f, m[1])
				}
			}
		}
	}
	if n < 20 {
		t.Fatalf("found only %d codes: the patterns no longer match the sources", n)
	}
}

// TestLoad: every page and file is served, with its type, and the admin
// page on the internal listener only.
func TestLoad(t *testing.T) {
	s := Load()
	for _, p := range []string{"/", "/room", "/static/js/common.js", "/static/js/push.js", "/static/js/sale.js", "/static/js/room.js", "/static/css/app.css"} {
		if s.Public[p] == nil || len(s.Public[p].Body) == 0 {
			t.Errorf("public %s missing", p)
		}
	}
	if s.Public["/admin"] != nil || s.Internal["/admin"] == nil || s.Internal["/"] != nil {
		t.Error("the admin page must be on the internal listener only, and the others on the public one only")
	}
	if a := s.Public["/"]; !a.HTML || a.ContentType != "text/html; charset=utf-8" || !strings.HasPrefix(a.ETag, `"`) {
		t.Errorf("/ = %+v", a)
	}
}
