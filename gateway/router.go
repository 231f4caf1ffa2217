package gateway

import (
	"strings"

	"github.com/flashgate/flashgate/internal/apierr"
	"github.com/prometheus/client_golang/prometheus"
)

// access says who may call a route.
type access int

const (
	public access = iota // anyone
	user                 // any valid token
	admin                // a token with the admin role
	dev                  // anyone, and only in dev mode (404 otherwise)
)

// route is one API endpoint. Pattern segments in braces are parameters,
// handed to the handler in order.
type route struct {
	method  string
	pattern string
	access  access
	class   RateClass
	// budget is the in-flight budget the route's requests count against:
	// reads for every route that may wait on MySQL, so that a slow MySQL
	// sheds those and never the order and gift paths. Zero (budgetMemory)
	// is for routes answered from memory alone.
	budget budgetClass
	// perSource: a public route limited per source by its own limiter
	// (FLASHGATE_RATE_NOTIFY), not by the per-client bucket of public reads.
	perSource bool
	// limitLate: the handler applies the user's rate limit itself, after
	// the answers memory can give (sold out, not started, bad input), so
	// that those cost no Redis call and an accepted request one.
	limitLate bool
	handle    func(s *Server, rc *reqCtx) *apierr.Error
	segs      []string
	ok        prometheus.Counter // requestsTotal{route, "ok"}, resolved once
}

// Route is a documented endpoint: its method and path pattern in OpenAPI form.
type Route struct {
	Method string
	Path   string
}

var routes = []*route{
	{method: "GET", pattern: "/api/v1/events", handle: (*Server).listEvents},
	{method: "GET", pattern: "/api/v1/events/{id}", budget: budgetReads, handle: (*Server).getEvent},
	{method: "POST", pattern: "/api/v1/events/{id}/orders", access: user, class: ClassOrder, budget: budgetOrders, limitLate: true, handle: (*Server).createOrder},
	{method: "GET", pattern: "/api/v1/tickets/{ticket}", access: user, budget: budgetReads, handle: (*Server).getTicket},
	{method: "GET", pattern: "/api/v1/orders", access: user, budget: budgetReads, handle: (*Server).listOrders},
	{method: "GET", pattern: "/api/v1/orders/{order_no}", access: user, budget: budgetReads, handle: (*Server).getOrder},
	{method: "POST", pattern: "/api/v1/orders/{order_no}/pay", access: user, class: ClassPay, budget: budgetPayments, handle: (*Server).payOrder},
	{method: "POST", pattern: "/api/v1/orders/{order_no}/cancel", access: user, budget: budgetReads, handle: (*Server).cancelOrder},
	{method: "POST", pattern: "/api/v1/admin/events", access: admin, budget: budgetReads, handle: (*Server).adminCreateEvent},
	{method: "POST", pattern: "/api/v1/admin/events/{id}/stock", access: admin, budget: budgetReads, handle: (*Server).adminAddStock},
	{method: "POST", pattern: "/api/v1/dev/token", access: dev, handle: (*Server).devToken},

	{method: "GET", pattern: "/api/v1/gifts", handle: (*Server).listGifts},
	{method: "GET", pattern: "/api/v1/wallet", access: user, budget: budgetReads, handle: (*Server).getWallet},
	{method: "POST", pattern: "/api/v1/rooms/{room_id}/gifts", access: user, class: ClassGift, budget: budgetGifts, limitLate: true, handle: (*Server).sendGift},
	{method: "GET", pattern: "/api/v1/rooms/{room_id}/gifts", budget: budgetReads, handle: (*Server).roomGifts},
	{method: "GET", pattern: "/api/v1/rooms/{room_id}/leaderboard", budget: budgetReads, handle: (*Server).leaderboard},

	{method: "GET", pattern: "/api/v1/pay/products", budget: budgetReads, handle: (*Server).listPayProducts},
	{method: "POST", pattern: "/api/v1/pay/orders", access: user, class: ClassPay, budget: budgetPayments, handle: (*Server).createPayOrder},
	{method: "GET", pattern: "/api/v1/pay/orders/{order_id}", access: user, budget: budgetReads, handle: (*Server).getPayOrder},
	{method: "POST", pattern: "/api/v1/pay/notify", budget: budgetPayments, perSource: true, handle: (*Server).payNotify},
	{method: "POST", pattern: "/api/v1/dev/pay/orders/{order_id}/complete", access: dev, budget: budgetPayments, handle: (*Server).devCompletePayOrder},
	{method: "POST", pattern: "/api/v1/withdrawals", access: user, class: ClassPay, budget: budgetPayments, handle: (*Server).createWithdrawal},
	{method: "GET", pattern: "/api/v1/withdrawals/{withdrawal_id}", access: user, budget: budgetReads, handle: (*Server).getWithdrawal},
}

func init() {
	for _, r := range routes {
		r.segs = strings.Split(strings.TrimPrefix(r.pattern, "/"), "/")
		r.ok = requestsTotal.WithLabelValues(r.pattern, "ok")
	}
}

// RouteTable lists every /api/v1 endpoint the gateway serves, on either
// listener, so that a test can hold docs/openapi.yaml to the routes.
func RouteTable() []Route {
	out := make([]Route, len(routes))
	for i, r := range routes {
		out[i] = Route{r.method, r.pattern}
	}
	return out
}

// match finds the route for a path among those of one listener: the admin
// routes on the internal one, all others on the public one. It returns the
// route for the method, or nil with methodMismatch=true when the path exists
// for other methods only. params receives the values of the pattern's
// {parameters}.
func match(method string, path []byte, params *[4]string, internal bool) (r *route, n int, methodMismatch bool) {
	if len(path) == 0 || path[0] != '/' {
		return nil, 0, false
	}
	var segs [8][]byte
	ns := 0
	p := path[1:]
	for {
		if ns == len(segs) {
			return nil, 0, false
		}
		i := indexByte(p, '/')
		if i < 0 {
			segs[ns] = p
			ns++
			break
		}
		segs[ns] = p[:i]
		ns++
		p = p[i+1:]
	}
	for _, cand := range routes {
		if len(cand.segs) != ns || (cand.access == admin) != internal {
			continue
		}
		k := 0
		ok := true
		for i, s := range cand.segs {
			if s[0] == '{' {
				if len(segs[i]) == 0 {
					ok = false
					break
				}
				if cand.method == method {
					params[k] = string(segs[i])
				}
				k++
				continue
			}
			if s != string(segs[i]) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		if cand.method == method {
			return cand, k, false
		}
		methodMismatch = true
	}
	return nil, 0, methodMismatch
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
