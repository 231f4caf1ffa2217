package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flashgate/flashgate/internal/apierr"
	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/obs"
	"github.com/flashgate/flashgate/internal/sandbox"
	"github.com/flashgate/flashgate/internal/store"
)

var (
	undoTooLate = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "gateway", Name: "undo_too_late_total",
		Help: "Orders and gifts answered 503 whose undo failed and which the worker then committed anyway.",
	})
	// orderResults are the ticketsTotal children of orders, resolved once.
	orderResults = resolve(ticketsTotal, "order", "accepted", "accepted_late", "replay", "already_purchased", "sold_out", "sold_out_memory",
		"not_found", "not_started", "ended", "not_warm", "redis_error", "kafka_error")
	orderLimited    = rateLimited.WithLabelValues(ClassOrder.String(), "memory")
	orderLuaSeconds = luaSeconds.WithLabelValues("order")
)

// PlaceOrder is the order path: memory checks, one Lua call, one produce.
// It returns the ticket of an accepted reservation; every error it returns
// left nothing reserved.
func (s *Server) PlaceOrder(ctx context.Context, userID, eventID int64, idemKey string) (string, *apierr.Error) {
	ev := s.events.get(eventID)
	if ev == nil {
		orderResults["not_found"].Inc()
		return "", apierr.NotFound.With("no such event")
	}
	now := s.now()
	switch {
	case now.Before(ev.StartsAt):
		orderResults["not_started"].Inc()
		return "", apierr.NotStarted
	case !now.Before(ev.EndsAt):
		orderResults["ended"].Inc()
		return "", apierr.Ended
	case ev.stockLeft.Load() <= 0 && idemKey == "":
		// With an idempotency key the user may be replaying a success, which
		// only Redis can tell, so only keyless requests are refused here.
		orderResults["sold_out_memory"].Inc()
		return "", apierr.SoldOut
	}
	// Only what would reach Redis is limited. The reserve script answers a
	// repeat buyer, so the limit only has to stop a flood, in memory.
	if wait := s.orderLim.allow(userID, now.UnixNano()); wait > 0 {
		orderLimited.Inc()
		return "", retryAfter(wait)
	}

	ticket := store.NewOrderTicket(eventID)
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RedisTimeout)
	start := time.Now()
	res, err := s.redis.Reserve(rctx, eventID, userID, ticket, idemKey)
	cancel()
	orderLuaSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		// The script may still have run (a timeout after Redis got it): undo
		// whatever it did, so a 503 leaves nothing reserved.
		if _, cerr := s.compensate(eventID, userID, ticket); cerr != nil {
			s.undoLater("reservation "+ticket, func(ctx context.Context) (bool, error) {
				return s.redis.Compensate(ctx, eventID, userID, ticket)
			})
		}
		s.log.Warn("reserve failed", "event", eventID, "err", err)
		orderResults["redis_error"].Inc()
		return "", apierr.Unavailable
	}
	switch res.Status {
	case store.AlreadyBought:
		if res.Replay {
			orderResults["replay"].Inc()
			return res.Ticket, nil
		}
		orderResults["already_purchased"].Inc()
		return "", apierr.AlreadyPurchased.WithTicket(res.Ticket)
	case store.SoldOut:
		ev.stockLeft.Store(0)
		orderResults["sold_out"].Inc()
		return "", apierr.SoldOut
	case store.NotWarm:
		orderResults["not_warm"].Inc()
		return "", apierr.Unavailable.With("the sale is being loaded, try again in a moment")
	}
	ev.stockLeft.Store(res.StockLeft)

	if err := s.produce(ctx, bus.OrderRecord(s.cfg.OrdersTopic(), bus.Order{
		Ticket: ticket, EventID: eventID, UserID: userID, Price: ev.Price, ReservedAt: res.ReservedAt.UnixMilli(),
	})); err != nil {
		undone, cerr := s.compensate(eventID, userID, ticket)
		switch {
		case cerr != nil:
			// Keep trying in the background: the record may still land,
			// and only an "aborted" ticket makes the worker drop it.
			s.log.Error("produce failed and the reservation could not be undone yet", "ticket", ticket, "produce_err", err, "err", cerr)
			s.undoLater("reservation "+ticket, func(ctx context.Context) (bool, error) {
				return s.redis.Compensate(ctx, eventID, userID, ticket)
			})
		case !undone:
			// The worker already claimed it: the order did reach Kafka.
			orderResults["accepted_late"].Inc()
			return ticket, nil
		}
		if undone {
			ev.stockLeft.Add(1)
		}
		s.log.Warn("produce failed; reservation undone", "ticket", ticket, "err", err)
		orderResults["kafka_error"].Inc()
		return "", apierr.Unavailable
	}
	orderResults["accepted"].Inc()
	return ticket, nil
}

// undoLater retries an undo (compensate, gift undo) that failed while the
// client was answered 503, until it runs or PendingTimeout has half passed;
// past that the reconciler's abort marker fails the ticket anyway. A record
// the worker claimed in the meantime is committed although its client got
// a 503: that is logged, as it breaks the 503's promise.
func (s *Server) undoLater(what string, undo func(context.Context) (bool, error)) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		deadline := time.Now().Add(s.cfg.PendingTimeout / 2)
		for backoff := 50 * time.Millisecond; time.Now().Before(deadline); backoff = min(2*backoff, time.Second) {
			time.Sleep(backoff)
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RedisTimeout)
			undone, err := undo(ctx)
			cancel()
			switch {
			case err != nil:
				continue
			case undone:
				s.log.Info("undone after a retry", "what", what)
			default:
				undoTooLate.Inc()
				s.log.Error("a 503 answer could not be undone in time: the worker took it", "what", what)
			}
			return
		}
		s.log.Error("could not undo; the reconciler's abort marker will fail it", "what", what)
	}()
}

// compensate runs the compensate script with its own deadline: the
// request's may be spent.
func (s *Server) compensate(eventID, userID int64, ticket string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RedisTimeout)
	defer cancel()
	return s.redis.Compensate(ctx, eventID, userID, ticket)
}

// resolve returns the children of a {kind, result} counter for kind and
// the given results, so the hot paths index a map instead of hashing label
// values.
func resolve(vec *prometheus.CounterVec, kind string, results ...string) map[string]prometheus.Counter {
	m := make(map[string]prometheus.Counter, len(results))
	for _, r := range results {
		m[r] = vec.WithLabelValues(kind, r)
	}
	return m
}

// produceSeconds is the produce latency histogram of a topic; the order and
// gift topics' are resolved once.
func (s *Server) produceSeconds(topic string) prometheus.Observer {
	if o, ok := s.produceObs[topic]; ok {
		return o
	}
	return obs.KafkaProduceSeconds.WithLabelValues(topic)
}

// produce sends one record and waits for the broker's acknowledgement, at
// most ProduceTimeout. A full producer buffer fails at once.
func (s *Server) produce(ctx context.Context, r *kgo.Record) error {
	pctx, cancel := context.WithTimeout(ctx, s.cfg.ProduceTimeout)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	s.kafka.TryProduce(pctx, r, func(_ *kgo.Record, err error) { done <- err })
	select {
	case err := <-done:
		s.produceSeconds(r.Topic).Observe(time.Since(start).Seconds())
		return err
	case <-pctx.Done():
		return pctx.Err()
	}
}

func (s *Server) createOrder(rc *reqCtx) *apierr.Error {
	eventID, e := pathID(rc.params[0])
	if e != nil {
		return e
	}
	var body struct{}
	if e := rc.decode(&body, true); e != nil {
		return e
	}
	key, e := rc.idemKey()
	if e != nil {
		return e
	}
	ticket, e := s.PlaceOrder(context.Background(), rc.claims.UserID, eventID, key)
	if e != nil {
		return e
	}
	rc.SetStatusCode(202)
	rc.SetContentType("application/json")
	// Appended by hand rather than by json.Marshal, which reflects and
	// allocates: this is the hottest answer of a sale. A ticket is made of
	// letters, digits and '-', so it needs no escaping.
	b := make([]byte, 0, 64)
	b = append(b, `{"ticket":"`...)
	b = append(b, ticket...)
	b = append(b, `","status":"pending"}`...)
	rc.SetBody(b)
	return nil
}

// ticketJSON is the API's Ticket.
type ticketJSON struct {
	Ticket    string `json:"ticket"`
	Kind      string `json:"kind"`
	Status    string `json:"status"`
	Reason    string `json:"reason,omitempty"`
	OrderNo   string `json:"order_no,omitempty"`
	CreatedAt string `json:"created_at"`
}

// getTicket answers GET /tickets/{ticket}. An order ticket's state in Redis
// ({ev:N}:tickets) lives as long as the event's keys and knows it from the
// reservation on: pending, being committed, decided or undone. While Redis
// knows it the answer comes from there, without a MySQL read, so that
// buyers polling after a sale are answered while MySQL is slow. MySQL is
// read only for tickets Redis does not know (expired, or lost in a flush),
// and its failure is a 503 only then.
func (s *Server) getTicket(rc *reqCtx) *apierr.Error {
	t := rc.params[0]
	if kind, senderID, ok := store.ParseTicket(t); ok && kind == "gift" {
		return s.getGiftTicket(rc, t, senderID)
	}
	eventID, ok := store.ParseOrderTicket(t)
	if !ok {
		return apierr.NotFound.With("no such ticket")
	}
	out := ticketJSON{Ticket: t, Kind: "order"}
	rctx, rcancel := context.WithTimeout(context.Background(), s.cfg.RedisTimeout)
	st, err := s.redis.Ticket(rctx, eventID, t)
	rcancel()
	switch {
	case err == nil && st.UserID != rc.claims.UserID:
		return apierr.NotFound.With("no such ticket")
	case err == nil && (st.Status == "succeeded" || st.Status == "failed"):
		out.Status, out.Reason, out.OrderNo, out.CreatedAt = st.Status, st.Reason, st.OrderNo, ts(st.CreatedAt)
		return rc.writeJSON(200, out)
	case err == nil && st.Status == "aborted":
		// Undone after a failed produce. The first request got 503, but a
		// concurrent repeat with its Idempotency-Key may have been answered
		// 202 with this ticket, and a 202 ticket must end failed or succeeded.
		out.Status, out.Reason, out.CreatedAt = "failed", "aborted", ts(st.CreatedAt)
		return rc.writeJSON(200, out)
	case err == nil && (st.Status == "pending" || st.Status == "committing"):
		// The worker settles Redis right after its MySQL commit; if that
		// settle fails, the reconciler settles it after
		// FLASHGATE_PENDING_TIMEOUT, and the WebSocket push has the outcome
		// meanwhile.
		out.Status, out.CreatedAt = "pending", ts(st.CreatedAt)
		return rc.writeJSON(200, out)
	case err != nil && !errors.Is(err, store.ErrNoTicket):
		s.log.Warn("cannot read ticket from Redis; asking MySQL", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	dt, derr := s.mysql.Ticket(ctx, t)
	switch {
	case derr == nil:
		if dt.UserID != rc.claims.UserID {
			return apierr.NotFound.With("no such ticket")
		}
		out.Status, out.Reason, out.OrderNo, out.CreatedAt = dt.Status, dt.Reason.String, dt.OrderNo.String, ts(dt.CreatedAt)
		return rc.writeJSON(200, out)
	case !errors.Is(derr, db.ErrNotFound):
		s.log.Warn("cannot read a ticket from MySQL", "err", derr)
		return apierr.Unavailable
	}
	return apierr.NotFound.With("no such ticket")
}

// orderJSON is the API's Order.
type orderJSON struct {
	OrderNo   string  `json:"order_no"`
	EventID   int64   `json:"event_id"`
	UserID    int64   `json:"user_id"`
	Price     int64   `json:"price"`
	Status    string  `json:"status"`
	CreatedAt string  `json:"created_at"`
	ExpiresAt string  `json:"expires_at"`
	PaidAt    *string `json:"paid_at,omitempty"`
}

func orderOut(o db.Order) orderJSON {
	j := orderJSON{OrderNo: o.OrderNo, EventID: o.EventID, UserID: o.UserID, Price: o.Price, Status: o.Status,
		CreatedAt: ts(o.CreatedAt), ExpiresAt: ts(o.ExpiresAt)}
	if o.PaidAt != nil {
		p := ts(*o.PaidAt)
		j.PaidAt = &p
	}
	return j
}

func (s *Server) listOrders(rc *reqCtx) *apierr.Error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	os, err := s.mysql.OrdersOfUser(ctx, rc.claims.UserID, 100)
	if err != nil {
		return apierr.Unavailable
	}
	out := make([]orderJSON, len(os))
	for i, o := range os {
		out[i] = orderOut(o)
	}
	return rc.writeJSON(200, map[string]any{"orders": out})
}

// ownOrder loads the caller's order named in the path.
func (s *Server) ownOrder(ctx context.Context, rc *reqCtx) (db.Order, *apierr.Error) {
	no := rc.params[0]
	if len(no) > 32 {
		return db.Order{}, apierr.NotFound.With("no such order")
	}
	o, err := s.mysql.Order(ctx, no)
	if errors.Is(err, db.ErrNotFound) {
		return o, apierr.NotFound.With("no such order")
	}
	if err != nil {
		return o, apierr.Unavailable
	}
	if o.UserID != rc.claims.UserID {
		return o, apierr.Forbidden.With("this order belongs to another user")
	}
	return o, nil
}

func (s *Server) getOrder(rc *reqCtx) *apierr.Error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	o, e := s.ownOrder(ctx, rc)
	if e != nil {
		return e
	}
	return rc.writeJSON(200, orderOut(o))
}

// unpaidOrder loads the caller's order named in the path for pay or cancel
// (an empty body or {}), refusing one that is no longer unpaid.
func (s *Server) unpaidOrder(ctx context.Context, rc *reqCtx) (db.Order, *apierr.Error) {
	if e := rc.decode(&struct{}{}, true); e != nil {
		return db.Order{}, e
	}
	o, e := s.ownOrder(ctx, rc)
	if e != nil {
		return o, e
	}
	if o.Status != db.OrderUnpaid {
		return o, apierr.InvalidState.With("the order is " + o.Status)
	}
	return o, nil
}

func (s *Server) payOrder(rc *reqCtx) *apierr.Error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o, e := s.unpaidOrder(ctx, rc)
	if e != nil {
		return e
	}
	txn, err := s.payments.Charge(ctx, o.OrderNo, o.UserID, o.Price)
	if err != nil {
		s.log.Warn("payment provider refused or failed a charge", "order", o.OrderNo, "err", err)
		return apierr.Unavailable.With("the payment provider did not confirm the charge; the order is still unpaid")
	}
	paid, err := s.mysql.PayOrder(ctx, o.OrderNo, o.UserID, txn)
	if errors.Is(err, db.ErrInvalidState) {
		// Expired (or cancelled) between the check and the charge: give
		// the money back.
		if rerr := s.payments.Refund(ctx, o.OrderNo, txn, o.Price); rerr != nil {
			s.log.Error("charged an order that could not be paid, and the refund failed: refund it by hand",
				"order", o.OrderNo, "txn", txn, "amount", o.Price, "err", rerr)
		}
		cur, _ := s.mysql.Order(ctx, o.OrderNo)
		return apierr.InvalidState.With("the order is " + orDefault(cur.Status, "no longer unpaid"))
	}
	if err != nil {
		return apierr.Unavailable
	}
	return rc.writeJSON(200, orderOut(paid))
}

func (s *Server) cancelOrder(rc *reqCtx) *apierr.Error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o, e := s.unpaidOrder(ctx, rc)
	if e != nil {
		return e
	}
	err := s.mysql.ReleaseOrder(ctx, o.ID, db.OrderCancelled)
	if errors.Is(err, db.ErrInvalidState) {
		cur, _ := s.mysql.Order(ctx, o.OrderNo)
		return apierr.InvalidState.With("the order is " + orDefault(cur.Status, "no longer unpaid"))
	}
	if err != nil {
		return apierr.Unavailable
	}
	if err := s.redis.Release(ctx, o.EventID, o.UserID, o.Ticket); err != nil {
		// MySQL has the unit back and the order marked unreleased: the
		// worker repeats the release until it sticks.
		s.log.Warn("cancelled order's unit not returned to Redis yet", "order", o.OrderNo, "err", err)
	} else if err := s.mysql.MarkReleased(ctx, o.ID); err != nil {
		s.log.Warn("cannot record a cancelled order's release; the worker will repeat it", "order", o.OrderNo, "err", err)
	}
	cur, err := s.mysql.Order(ctx, o.OrderNo)
	if err != nil {
		return apierr.Unavailable
	}
	return rc.writeJSON(200, orderOut(cur))
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// OrderPayments is the provider that POST /orders/{no}/pay charges the
// buyer through: the seam where a real payment provider plugs in
// (Config.OrderPayments). The gateway marks an order paid only after Charge
// returned a transaction, and never leaves money collected for an order it
// could not mark paid, on this contract:
//
//   - Charge collects amount (minor units) from userID for the order and
//     returns the provider's transaction id once the money is collected.
//     It charges one order number at most once: a repeat returns the first
//     charge's transaction and collects nothing more, so a client that
//     retries after a 503 is never charged twice. An error means nothing
//     was collected by this call (a charge made by an earlier call stays,
//     and the next call returns it).
//   - Refund gives back the charge txn of an order that expired or was
//     cancelled between the charge and the payment being recorded. It is
//     idempotent per order number and returns nil once the money is back
//     (or was never collected).
//
// Each call gets the request's deadline (5 s in all). The built-in provider
// is sandbox.Charges, which collects nothing: outside dev mode the gateway
// runs with it only when FLASHGATE_SANDBOX_PAYMENTS=1.
type OrderPayments interface {
	Charge(ctx context.Context, orderNo string, userID, amount int64) (txn string, err error)
	Refund(ctx context.Context, orderNo, txn string, amount int64) error
}

var _ OrderPayments = sandbox.Charges{}
