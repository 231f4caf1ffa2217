package obs

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// HandleProfiles serves what go tool pprof asks for.
func TestHandleProfiles(t *testing.T) {
	mux := http.NewServeMux()
	HandleProfiles(mux)
	for path, want := range map[string]string{
		"/debug/pprof/":                  "Types of profiles available",
		"/debug/pprof/goroutine?debug=1": "goroutine profile:",
		"/debug/pprof/cmdline":           "",
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("GET %s: %d %.200s, want 200 with %q", path, rec.Code, rec.Body.String(), want)
		}
	}
}
