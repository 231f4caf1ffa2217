package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestRequestsScript runs wrk with requests.lua against a server that
// records what arrives: every request is one of the file's lines, with its
// token and body, and the statuses wrk counts are the server's.
func TestRequestsScript(t *testing.T) {
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk is not installed (make test and make bench install it)")
	}
	var mu sync.Mutex
	seen := map[string]int{}
	base := serveWrk(t, func(ctx *fasthttp.RequestCtx) {
		key := string(ctx.Method()) + " " + string(ctx.Path()) + " " + string(ctx.Request.Header.Peek("Authorization")) +
			" " + string(ctx.Request.Header.ContentType()) + " " + string(ctx.PostBody())
		mu.Lock()
		seen[key]++
		mu.Unlock()
		if strings.HasPrefix(string(ctx.Path()), "/gone") {
			ctx.SetStatusCode(410)
			return
		}
		ctx.SetStatusCode(202)
	})

	b := &bench{dir: t.TempDir(), threads: 2, conns: 4, script: "../wrk/requests.lua"}
	file, err := b.writeRequests("mixed", 4, func(i int) (string, string, string, string) {
		switch i {
		case 0:
			return "POST", "/api/v1/events/1/orders", "tok-a", "{}"
		case 1:
			return "GET", "/api/v1/tickets/o1-x", "tok-b", ""
		case 2:
			return "POST", "/gone", "tok-c", `{"gift_id":1}`
		default:
			return "GET", "/healthz", "", ""
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Ext(file) != ".tsv" {
		t.Errorf("request file %s", file)
	}
	r, err := b.wrk(context.Background(), base, file, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests == 0 || r.rate() <= 0 || r.P99US < r.P50US {
		t.Errorf("result %+v", r)
	}
	if r.Statuses["202"] == 0 || r.Statuses["410"] == 0 || r.Statuses["202"]+r.Statuses["410"] != r.Requests {
		t.Errorf("statuses %v for %d requests", r.Statuses, r.Requests)
	}
	if r.unexpected(202) != r.Statuses["410"] {
		t.Errorf("unexpected(202) = %d, want the 410s", r.unexpected(202))
	}
	want := []string{
		"POST /api/v1/events/1/orders Bearer tok-a application/json {}",
		"GET /api/v1/tickets/o1-x Bearer tok-b  ",
		`POST /gone Bearer tok-c application/json {"gift_id":1}`,
		"GET /healthz   ",
	}
	mu.Lock()
	defer mu.Unlock()
	for _, k := range want {
		if seen[k] == 0 {
			t.Errorf("never received %q; received %v", k, seen)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("received %d kinds of request, want %d: %v", len(seen), len(want), seen)
	}
}

// TestRequestsScriptGate: no request reaches the server before every wrk
// thread has read the request file. wrk starts thread 0 as soon as its own
// init is done and its clock only after the last thread's init, so requests
// sent in between were counted in a run that did not time them. The file is
// a FIFO, so the test holds thread 1's init open for as long as it likes.
func TestRequestsScriptGate(t *testing.T) {
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk is not installed (make test and make bench install it)")
	}
	var arrived atomic.Int64
	base := serveWrk(t, func(ctx *fasthttp.RequestCtx) {
		arrived.Add(1)
		ctx.SetStatusCode(202)
	})

	fifo := filepath.Join(t.TempDir(), "requests.tsv")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	lines := "GET\t/a\t\t\nGET\t/b\t\t\n"
	b := &bench{threads: 2, conns: 2, script: "../wrk/requests.lua"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := b.wrk(ctx, base, fifo, time.Second)
		done <- err
	}()
	// feed gives the file to the next thread's init, once it opens it.
	feed := func(which string) {
		fed := make(chan error, 1)
		go func() { fed <- os.WriteFile(fifo, []byte(lines), 0o600) }()
		select {
		case err := <-fed:
			if err != nil {
				t.Fatal(err)
			}
		case err := <-done:
			t.Fatalf("wrk ended before %s read the file: %v", which, err)
		}
	}
	feed("thread 0")
	time.Sleep(500 * time.Millisecond) // thread 1's init is still waiting for the file
	if n := arrived.Load(); n != 0 {
		t.Errorf("%d requests arrived while thread 1 was still reading the file", n)
	}
	feed("thread 1")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if arrived.Load() == 0 {
		t.Error("no request arrived after every thread had read the file")
	}
}

// serveWrk serves handler on a loopback port until the test ends, and
// returns its base URL.
func serveWrk(t *testing.T, handler fasthttp.RequestHandler) string {
	srv := &fasthttp.Server{Handler: handler}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return "http://" + ln.Addr().String()
}

func TestGiftTicket(t *testing.T) {
	for msg, want := range map[string]string{
		`{"type":"gift","room_id":2,"ticket":"g5-abc","sender_id":5}`: "g5-abc",
		`{"type":"ticket","ticket":"o1-abc","status":"succeeded"}`:    "",
		`{"type":"gift","room_id":2}`:                                 "",
		`{"type":"gift","ticket":"g5-cut`:                             "",
	} {
		if got := giftTicket([]byte(msg)); got != want {
			t.Errorf("%s: %q, want %q", msg, got, want)
		}
	}
}

func TestPerItem(t *testing.T) {
	before := counters{redis: map[string]int64{"evalsha": 10, "info": 5}, mysql: map[string]int64{"insert": 1, "select": 2}, questions: 100}
	after := counters{redis: map[string]int64{"evalsha": 30, "get": 10, "info": 9}, mysql: map[string]int64{"insert": 3, "select": 7, "show_status": 4}, questions: 110}
	got := perItem(before, after, 10, 3, "order")
	want := "per order (over 10, all steps): **3.0 Redis commands** (evalsha 2.00, get 1.00); **0.70 MariaDB statements** (insert 0.20, select 0.20)"
	if got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}

func TestSelectRows(t *testing.T) {
	rows, err := selectRows("ws_fanout, order")
	if err != nil || len(rows) != 2 || rows[0].name != "order" || rows[1].name != "ws_fanout" {
		t.Errorf("rows %v, %v: want order then ws_fanout, in the table's order", rows, err)
	}
	if _, err := selectRows("order,nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown row: %v", err)
	}
}
