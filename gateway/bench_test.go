package gateway

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/testenv"
)

// benchServer is a gateway on a private Redis, a fresh database and kfake,
// with one live event of plenty of stock, warm in Redis.
func benchServer(b testing.TB, stock int64) (*Server, int64) {
	b.Helper()
	cfg := testenv.Config(b)
	cfg.LogLevel = "error"
	ctx := context.Background()
	s, err := New(ctx, Config{Config: cfg}, discardLogger())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	ev, err := s.mysql.CreateEvent(ctx, "bench", 100, stock, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.redis.Warm(ctx, ev.ID, ev.Stock, ev.EndsAt.Add(time.Hour), nil); err != nil {
		b.Fatal(err)
	}
	if err := s.refreshEvents(ctx); err != nil {
		b.Fatal(err)
	}
	return s, ev.ID
}

// BenchmarkPlaceOrder: the accepted-order path, one reserve script and one
// acknowledged produce per order, 64 buyers at a time.
func BenchmarkPlaceOrder(b *testing.B) {
	s, ev := benchServer(b, 100_000_000)
	var uid atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32) // × GOMAXPROCS concurrent buyers: the path waits on Redis and Kafka
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, e := s.PlaceOrder(context.Background(), uid.Add(1), ev, ""); e != nil {
				b.Error(e)
				return
			}
		}
	})
}

// BenchmarkSoldOutFromMemory: a buyer of a sold-out event through the whole
// fasthttp handler (token check, routing, the in-memory answer), no I/O.
func BenchmarkSoldOutFromMemory(b *testing.B) {
	s, soldOut := soldOutServer(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		for pb.Next() {
			soldOut(&ctx)
			s.Handler(&ctx)
			if ctx.Response.StatusCode() != 410 {
				b.Fatalf("status %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
		}
	})
}

// A sold-out answer is the crowd's most common one: the handler gives it
// without allocating, token check and metrics included.
func TestSoldOutAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items on purpose)")
	}
	s, soldOut := soldOutServer(t)
	var ctx fasthttp.RequestCtx
	n := testing.AllocsPerRun(200, func() {
		soldOut(&ctx)
		s.Handler(&ctx)
	})
	if ctx.Response.StatusCode() != 410 {
		t.Fatalf("status %d %s, want 410", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if n != 0 {
		t.Errorf("a sold-out answer allocates %v times, want 0", n)
	}
}

// soldOutServer is a bench server whose event is sold out, and a function
// that fills a request context with a buyer's order for it.
func soldOutServer(tb testing.TB) (*Server, func(*fasthttp.RequestCtx)) {
	s, ev := benchServer(tb, 1)
	s.events.get(ev).stockLeft.Store(0)
	tok := "Bearer " + s.signer.Sign(1, auth.RoleUser, time.Hour)
	path := "/api/v1/events/" + itoa(ev) + "/orders"
	return s, func(ctx *fasthttp.RequestCtx) {
		ctx.Request.Reset()
		ctx.Response.Reset()
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI(path)
		ctx.Request.Header.Set("Authorization", tok)
		ctx.Request.SetBodyString("{}")
	}
}
