package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/flashgate/flashgate/internal/apierr"
	"github.com/flashgate/flashgate/internal/auth"
	"github.com/flashgate/flashgate/internal/db"
)

// maxStock bounds one event's stock and one stock delta.
const maxStock = 10_000_000

// createEventReq is the body of POST /admin/events. Pointers tell a missing
// field from a zero one.
type createEventReq struct {
	Name     *string `json:"name"`
	Price    *int64  `json:"price"`
	Stock    *int64  `json:"stock"`
	StartsAt *string `json:"starts_at"`
	EndsAt   *string `json:"ends_at"`
}

func (s *Server) adminCreateEvent(rc *reqCtx) *apierr.Error {
	var req createEventReq
	if e := rc.decode(&req, false); e != nil {
		return e
	}
	key, e := rc.idemKey()
	if e != nil {
		return e
	}
	if req.Name == nil || req.Price == nil || req.Stock == nil || req.StartsAt == nil || req.EndsAt == nil {
		return apierr.InvalidRequest.With("name, price, stock, starts_at and ends_at are required")
	}
	name := strings.TrimSpace(*req.Name)
	if name == "" || utf8.RuneCountInString(name) > 200 {
		return apierr.InvalidRequest.With("name must be 1 to 200 characters")
	}
	price := *req.Price
	if price < 0 {
		return apierr.InvalidRequest.With("price must be a non-negative integer (cents)")
	}
	stock := *req.Stock
	if stock <= 0 || stock > maxStock {
		return apierr.InvalidRequest.With("stock must be an integer from 1 to 10000000")
	}
	starts, err1 := time.Parse(time.RFC3339, *req.StartsAt)
	ends, err2 := time.Parse(time.RFC3339, *req.EndsAt)
	if err1 != nil || err2 != nil {
		return apierr.InvalidRequest.With("starts_at and ends_at must be RFC 3339 times")
	}
	if !ends.After(starts) || !ends.After(s.now()) {
		return apierr.InvalidRequest.With("ends_at must be after starts_at and in the future")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if key != "" {
		if body, ok := s.redis.IdemAnswer(ctx, rc.claims.UserID, "admin-event", key); ok {
			rc.SetStatusCode(201)
			rc.SetContentType("application/json")
			rc.SetBody(body)
			return nil
		}
	}
	ev, err := s.mysql.CreateEvent(ctx, name, price, stock, starts, ends)
	if err != nil {
		s.log.Error("cannot create event", "err", err)
		return apierr.Unavailable
	}
	le := &liveEvent{Event: ev}
	le.stockLeft.Store(ev.Stock)
	if !ev.StartsAt.After(s.now().Add(s.cfg.WarmAhead)) {
		// Open it in Redis now rather than on the worker's next tick.
		if _, err := s.redis.Warm(ctx, ev.ID, ev.Stock, ev.EndsAt.Add(refreshWindow), nil); err != nil {
			s.log.Warn("new event not warmed yet; the worker will", "event", ev.ID, "err", err)
		}
	}
	s.events.put(le)
	s.log.Info("event created", "event", ev.ID, "by", rc.claims.UserID, "stock", ev.Stock)
	body, _ := json.Marshal(le.json(s.now()))
	if key != "" {
		_ = s.redis.SaveIdemAnswer(ctx, rc.claims.UserID, "admin-event", key, body)
	}
	rc.SetStatusCode(201)
	rc.SetContentType("application/json")
	rc.SetBody(body)
	return nil
}

// addStockReq is the body of POST /admin/events/{id}/stock.
type addStockReq struct {
	Delta *int64 `json:"delta"`
}

func (s *Server) adminAddStock(rc *reqCtx) *apierr.Error {
	id, e := pathID(rc.params[0])
	if e != nil {
		return e
	}
	var req addStockReq
	if e := rc.decode(&req, false); e != nil {
		return e
	}
	if req.Delta == nil {
		return apierr.InvalidRequest.With("delta is required")
	}
	delta := *req.Delta
	if delta <= 0 || delta > maxStock {
		return apierr.InvalidRequest.With("delta must be an integer from 1 to 10000000")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cur, err := s.mysql.Event(ctx, id)
	if errors.Is(err, db.ErrNotFound) {
		return apierr.NotFound.With("no such event")
	}
	if err != nil {
		return apierr.Unavailable
	}
	if !s.now().Before(cur.EndsAt) {
		return apierr.Ended
	}
	ev, err := s.mysql.AddStock(ctx, id, delta)
	if err != nil {
		return apierr.Unavailable
	}
	le := &liveEvent{Event: ev}
	if n, err := s.redis.AddStock(ctx, id, delta); err != nil {
		s.log.Warn("stock added in MySQL but not yet in Redis", "event", id, "err", err)
		le.stockLeft.Store(ev.Stock)
	} else if n {
		st, _ := s.redis.Stocks(ctx, []int64{id})
		le.stockLeft.Store(st[id])
	} else {
		le.stockLeft.Store(ev.Stock)
	}
	s.events.put(le)
	s.log.Info("stock added", "event", id, "delta", delta, "by", rc.claims.UserID)
	return rc.writeJSON(200, le.json(s.now()))
}

// maxDevTokens caps one range request: 10,000 tokens are about 1.6 MB.
const maxDevTokens = 10000

// devTokenReq is the body of POST /dev/token.
type devTokenReq struct {
	UserID *int64 `json:"user_id"`
	Count  *int64 `json:"count"`
	Admin  bool   `json:"admin"`
}

func (s *Server) devToken(rc *reqCtx) *apierr.Error {
	var req devTokenReq
	if e := rc.decode(&req, false); e != nil {
		return e
	}
	if req.UserID == nil {
		return apierr.InvalidRequest.With("user_id is required")
	}
	uid := *req.UserID
	if uid <= 0 {
		return apierr.InvalidRequest.With("user_id must be a positive integer")
	}
	role := auth.RoleUser
	if req.Admin {
		role = auth.RoleAdmin
	}
	if req.Count == nil {
		return rc.writeJSON(200, map[string]string{"token": s.signer.Sign(uid, role, s.cfg.DevTokenTTL())})
	}
	n := *req.Count
	if n < 1 || n > maxDevTokens {
		return apierr.InvalidRequest.With(fmt.Sprintf("count must be between 1 and %d", maxDevTokens))
	}
	if uid > math.MaxInt64-n {
		return apierr.InvalidRequest.With("user_id + count is out of range")
	}
	type userToken struct {
		UserID int64  `json:"user_id"`
		Token  string `json:"token"`
	}
	out := make([]userToken, n)
	for i := range out {
		id := uid + int64(i)
		out[i] = userToken{id, s.signer.Sign(id, role, s.cfg.DevTokenTTL())}
	}
	return rc.writeJSON(200, map[string][]userToken{"tokens": out})
}
