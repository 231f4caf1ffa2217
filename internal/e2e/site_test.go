package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// get fetches a URL with optional headers, returning status, headers and body.
func (s *system) get(method, url string, hdr ...string) (int, http.Header, string) {
	s.t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestSiteServed: the gateway serves the web client's pages with their
// types and caching, the admin page on the internal listener only, and
// /config.json; the API and its JSON 404 are as before.
func TestSiteServed(t *testing.T) {
	s := start(t, options{noWorker: true})
	for _, c := range []struct {
		base, path, ctype, contains string
	}{
		{s.gateway, "/", "text/html; charset=utf-8", `src="/static/js/sale.js"`},
		{s.gateway, "/room", "text/html; charset=utf-8", `src="/static/js/room.js"`},
		{s.gateway, "/static/js/common.js", "text/javascript; charset=utf-8", "export async function api("},
		{s.gateway, "/static/css/app.css", "text/css; charset=utf-8", ":focus-visible"},
		{s.gatewayInternal, "/admin", "text/html; charset=utf-8", `src="/static/js/admin.js"`},
		{s.gatewayInternal, "/static/js/admin.js", "text/javascript; charset=utf-8", "/api/v1/admin/events"},
	} {
		st, h, body := s.get("GET", c.base+c.path)
		if st != 200 || h.Get("Content-Type") != c.ctype || !strings.Contains(body, c.contains) {
			t.Errorf("GET %s: %d %q, body has %q: %v", c.path, st, h.Get("Content-Type"), c.contains, strings.Contains(body, c.contains))
			continue
		}
		if h.Get("Cache-Control") != "no-cache" || h.Get("ETag") == "" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: Cache-Control %q, ETag %q, X-Content-Type-Options %q", c.path, h.Get("Cache-Control"), h.Get("ETag"), h.Get("X-Content-Type-Options"))
		}
		if strings.HasPrefix(c.ctype, "text/html") && !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", c.path, h.Get("Content-Security-Policy"))
		}
		if st, _, body := s.get("GET", c.base+c.path, "If-None-Match", h.Get("ETag")); st != 304 || body != "" {
			t.Errorf("GET %s with its ETag: %d, %d bytes; want 304 and none", c.path, st, len(body))
		}
		if st, _, body := s.get("HEAD", c.base+c.path); st != 200 || body != "" {
			t.Errorf("HEAD %s: %d, %d bytes", c.path, st, len(body))
		}
	}
	// Each page on its listener only; anything else stays the API's JSON 404.
	for _, c := range []struct{ base, path string }{
		{s.gateway, "/admin"}, {s.gatewayInternal, "/"}, {s.gatewayInternal, "/room"},
		{s.gateway, "/static/"}, {s.gateway, "/static/js/nope.js"}, {s.gateway, "/static/../web.go"}, {s.gateway, "/index.html"},
		{s.gateway, "/api/v1/static/css/app.css"},
	} {
		st, h, body := s.get("GET", c.base+c.path)
		if st != 404 || h.Get("Content-Type") != "application/json" || !strings.Contains(body, `"not_found"`) {
			t.Errorf("GET %s%s: %d %q %s, want the JSON 404", c.base, c.path, st, h.Get("Content-Type"), body)
		}
	}
	if st, h, body := s.get("POST", s.gateway+"/"); st != 405 || h.Get("Allow") != "GET, HEAD" || !strings.Contains(body, `"method_not_allowed"`) {
		t.Errorf("POST /: %d Allow %q %s", st, h.Get("Allow"), body)
	}

	// /config.json: dev mode, where the WebSocket is, which listener.
	for _, c := range []struct {
		base     string
		internal bool
	}{{s.gateway, false}, {s.gatewayInternal, true}} {
		st, h, body := s.get("GET", c.base+"/config.json")
		var cfg struct {
			Dev      bool   `json:"dev"`
			WSURL    string `json:"ws_url"`
			Internal bool   `json:"internal"`
		}
		if err := json.Unmarshal([]byte(body), &cfg); st != 200 || err != nil || h.Get("Cache-Control") != "no-store" {
			t.Fatalf("GET %s/config.json: %d %q %s %v", c.base, st, h.Get("Cache-Control"), body, err)
		}
		if !cfg.Dev || cfg.WSURL != s.ws+"/ws" || cfg.Internal != c.internal {
			t.Errorf("GET %s/config.json = %+v, want dev, ws_url %s/ws, internal %v", c.base, cfg, s.ws, c.internal)
		}
	}

	// The API is untouched.
	if a := s.do("GET", "/api/v1/events", "", ""); a.Status != 200 {
		t.Errorf("GET /api/v1/events: %d %s", a.Status, a.Raw)
	}
	if a := s.do("GET", "/api/v1/nope", "", ""); a.Status != 404 || a.errCode() != "not_found" {
		t.Errorf("GET /api/v1/nope: %d %s", a.Status, a.Raw)
	}
}

// TestRoomRecentGifts: GET /api/v1/rooms/{room_id}/gifts lists a room's
// committed gifts, newest first, and only that room's.
func TestRoomRecentGifts(t *testing.T) {
	s := start(t, options{noWS: true})
	const sender, anchor = 701, 7
	s.seedWallet(sender, 1000)
	var tickets []string
	for i, room := range []int64{11, 11, 12} {
		a := s.gift(room, sender, anchor, 2, int64(i+1))
		if a.Status != 202 {
			t.Fatalf("gift: %d %s", a.Status, a.Raw)
		}
		if st := s.waitTicket(sender, a.str("ticket")).str("status"); st != "succeeded" {
			t.Fatalf("gift %s: %s", a.str("ticket"), st)
		}
		tickets = append(tickets, a.str("ticket"))
	}
	var got struct {
		RoomID int64 `json:"room_id"`
		Gifts  []struct {
			Ticket      string `json:"ticket"`
			SenderID    int64  `json:"sender_id"`
			ReceiverID  int64  `json:"receiver_id"`
			GiftID      int64  `json:"gift_id"`
			Count       int64  `json:"count"`
			Coins       int64  `json:"coins"`
			CommittedAt string `json:"committed_at"`
		} `json:"gifts"`
	}
	a := s.do("GET", "/api/v1/rooms/11/gifts", "", "")
	if err := json.Unmarshal([]byte(a.Raw), &got); a.Status != 200 || err != nil {
		t.Fatalf("GET /rooms/11/gifts: %d %s %v", a.Status, a.Raw, err)
	}
	if got.RoomID != 11 || len(got.Gifts) != 2 {
		t.Fatalf("room 11 lists %s, want its 2 gifts", a.Raw)
	}
	for i, want := range []struct {
		ticket       string
		count, coins int64
	}{{tickets[1], 2, 20}, {tickets[0], 1, 10}} {
		g := got.Gifts[i]
		if g.Ticket != want.ticket || g.Count != want.count || g.Coins != want.coins || g.SenderID != sender || g.ReceiverID != anchor || g.GiftID != 2 || g.CommittedAt == "" {
			t.Errorf("gift %d = %+v, want ticket %s count %d coins %d (newest first)", i, g, want.ticket, want.count, want.coins)
		}
	}
	if a := s.do("GET", "/api/v1/rooms/13/gifts", "", ""); a.Status != 200 || !strings.Contains(a.Raw, `"gifts":[]`) {
		t.Errorf("a room without gifts: %d %s", a.Status, a.Raw)
	}
	for _, bad := range []string{"0", "-1", "x", "01"} {
		if a := s.do("GET", fmt.Sprintf("/api/v1/rooms/%s/gifts", bad), "", ""); a.Status != 404 {
			t.Errorf("GET /rooms/%s/gifts: %d %s, want 404", bad, a.Status, a.Raw)
		}
	}
	if a := s.do("DELETE", "/api/v1/rooms/11/gifts", "", ""); a.Status != 405 {
		t.Errorf("DELETE /rooms/11/gifts: %d %s", a.Status, a.Raw)
	}
}
