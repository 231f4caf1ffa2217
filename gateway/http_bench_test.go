package gateway

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/flashgate/flashgate/internal/auth"
)

// BenchmarkHTTPRatios measures the gateway over real loopback HTTP, as a
// ratio to a bare fasthttp server answering a fixed 202 to the same
// requests, with the same client, in the same run: the ratios hold on any
// box, the absolute numbers do not. The client shares the machine's cores
// with the servers (and with Redis, MariaDB and kfake), so a ratio is what
// the gateway keeps of what this box can serve, not a ceiling.
//
//	sold_out  a sold-out event, answered from memory
//	order     an accepted order: one Lua call, one acknowledged produce
//	gift_warm a gift from a loaded wallet: one Lua call, one produce
//	gift_cold a viewer's first gift: the wallet is loaded from MySQL first
func BenchmarkHTTPRatios(b *testing.B) {
	const n, conc = 10_000, 64
	for range b.N {
		s, live := benchServer(b, 100_000_000)
		ctx := context.Background()
		sold, err := s.mysql.CreateEvent(ctx, "sold out", 100, 1, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.redis.Warm(ctx, sold.ID, 0, sold.EndsAt.Add(time.Hour), nil); err != nil {
			b.Fatal(err)
		}
		if err := s.refreshEvents(ctx); err != nil {
			b.Fatal(err)
		}
		s.events.get(sold.ID).stockLeft.Store(0)

		// Users 1..n buy; n+1..2n send warm gifts; 2n+1..3n cold ones.
		tokens := make([]string, 3*n+1)
		for u := range tokens {
			tokens[u] = "Bearer " + s.signer.Sign(int64(u), auth.RoleUser, time.Hour)
		}
		if _, err := s.mysql.DB.Exec("INSERT INTO wallets (user_id, balance) SELECT seq, 1000 FROM seq_1_to_100000 WHERE seq > ? AND seq <= ?", n, 3*n); err != nil {
			b.Fatal(err)
		}
		parallel(conc, n, func(i int) {
			if _, err := s.wallets().HotBalance(ctx, int64(n+1+i)); err != nil {
				b.Error(err)
			}
		})

		gw := serveBench(b, s.HTTPServer())
		bare := serveBench(b, &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetStatusCode(202)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"ticket":"o1-0123456789abcdef","status":"pending"}`)
		}})
		order := func(ev int64) func(i int, r *fasthttp.Request) {
			path := fmt.Sprintf("/api/v1/events/%d/orders", ev)
			return func(i int, r *fasthttp.Request) {
				r.Header.SetMethod("POST")
				r.SetRequestURI(path)
				r.Header.Set("Authorization", tokens[1+i])
				r.SetBodyString("{}")
			}
		}
		gift := func(first int) func(i int, r *fasthttp.Request) {
			return func(i int, r *fasthttp.Request) {
				r.Header.SetMethod("POST")
				r.SetRequestURI("/api/v1/rooms/1/gifts")
				r.Header.Set("Authorization", tokens[first+i])
				r.SetBodyString(`{"gift_id":1,"receiver_id":7,"count":1}`)
			}
		}
		base := loadHTTP(b, bare, n, conc, order(sold.ID), 202)
		b.ReportMetric(base, "bare_req/s")
		for _, sc := range []struct {
			name string
			req  func(int, *fasthttp.Request)
			want int
		}{
			{"sold_out", order(sold.ID), 410},
			{"order", order(live), 202},
			{"gift_warm", gift(n + 1), 202},
			{"gift_cold", gift(2*n + 1), 202},
		} {
			got := loadHTTP(b, gw, n, conc, sc.req, sc.want)
			b.ReportMetric(got, sc.name+"_req/s")
			b.ReportMetric(got/base, sc.name+"_of_bare")
		}
	}
}

// serveBench serves srv on a loopback port until the benchmark ends.
func serveBench(b *testing.B, srv *fasthttp.Server) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(countingListener{Listener: ln})
	b.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// loadHTTP sends n requests (mk fills request i) from conc keep-alive
// connections and returns requests per second; every answer must be want.
func loadHTTP(b *testing.B, addr string, n, conc int, mk func(int, *fasthttp.Request), want int) float64 {
	cl := &fasthttp.HostClient{Addr: addr, MaxConns: conc, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	var bad atomic.Int64
	began := time.Now()
	parallel(conc, n, func(i int) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		mk(i, req)
		req.SetHost(addr)
		if err := cl.Do(req, resp); err != nil || resp.StatusCode() != want {
			if bad.Add(1) == 1 {
				b.Errorf("request %d: %v %d %s, want %d", i, err, resp.StatusCode(), resp.Body(), want)
			}
		}
	})
	return float64(n) / time.Since(began).Seconds()
}

// parallel calls f(0..n-1) from conc goroutines.
func parallel(conc, n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		}()
	}
	wg.Wait()
}
