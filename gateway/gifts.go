package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashgate/flashgate/internal/apierr"
	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/store"
	"github.com/flashgate/flashgate/internal/wallet"
)

// Live-room gifts and the wallet. A gift takes its coins from the sender's
// hot balance in Redis with one Lua call (gift_hold), goes to Kafka, and is
// answered 202 once the broker has it; the worker commits it to MySQL and
// tells the room. The catalog and the leaderboards are served from memory.

var (
	// giftResults are the ticketsTotal children of gifts, resolved once:
	// WithLabelValues on every request would allocate on the gift path.
	giftResults = resolve(ticketsTotal, "gift", "accepted", "accepted_late", "replay", "insufficient_balance", "invalid", "self_gift",
		"not_found", "no_catalog", "wallet_load_error", "not_loaded", "redis_error", "kafka_error")
	giftLimitedCache = rateLimited.WithLabelValues(ClassGift.String(), "cache")
	giftLimitedRedis = rateLimited.WithLabelValues(ClassGift.String(), "redis")
	giftLuaSeconds   = luaSeconds.WithLabelValues("gift")
)

// Limits, sizes and timings of the gift path.
const (
	// maxGiftCount is the largest count of one gift request
	// (docs/openapi.yaml, schema SendGiftRequest).
	maxGiftCount = 9999
	// boardTop is how many senders a leaderboard lists.
	boardTop = 20
	// boardTTL is how long a room's leaderboard is served from memory: one
	// query per room per second however many viewers poll it.
	boardTTL = time.Second
	// boardRooms bounds the leaderboard cache; past it, stale rooms are dropped.
	boardRooms = 10_000
	// walletLoadTimeout bounds loading a wallet from MySQL into Redis, which
	// a user's first gift (or GET /wallet) does once.
	walletLoadTimeout = 2 * time.Second
	// defaultGiftCatalogTTL applies when the configured TTL is zero.
	defaultGiftCatalogTTL = 5 * time.Second
)

// giftState is the gateway's in-memory gift state.
type giftState struct {
	catalog atomic.Pointer[giftCatalog] // swapped whole on every refresh
	boards  boardCache
	recent  boardCache  // each room's recent gifts (feed.go)
	limit   store.Limit // each sender's, applied by the gift-hold script
	deny    denyCache   // senders the script refused, until their retry time
}

// catalogGift is one active gift of the catalog.
type catalogGift struct {
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	Price     int64  `json:"price"`
	EffectURL string `json:"effect_url"`
	// Version is the gift_prices row of this price, which gift records
	// carry so that the worker can check their coins.
	Version int64 `json:"-"`
}

// giftCatalog is one snapshot of the active gifts.
type giftCatalog struct {
	byID map[int64]*catalogGift
	body []byte // the GET /gifts answer, encoded once per refresh
}

// refreshGifts reloads the active gifts from MySQL.
func (s *Server) refreshGifts(ctx context.Context) error {
	rows, err := s.mysql.GiftCatalog(ctx)
	if err != nil {
		return err
	}
	// A price nobody served before gets its catalog version before any gift
	// is held at it, so that the worker can check those gifts' coins.
	fresh := false
	for _, g := range rows {
		if g.Version == 0 {
			if err := s.mysql.AddGiftPrice(ctx, g.ID, g.Price); err != nil {
				return err
			}
			fresh = true
		}
	}
	if fresh {
		if rows, err = s.mysql.GiftCatalog(ctx); err != nil {
			return err
		}
	}
	gifts := make([]catalogGift, len(rows)) // never nil: an empty catalog is "gifts": []
	for i, g := range rows {
		gifts[i] = catalogGift(g)
	}
	c := &giftCatalog{byID: make(map[int64]*catalogGift, len(gifts))}
	for i := range gifts {
		c.byID[gifts[i].ID] = &gifts[i]
	}
	b, err := json.Marshal(struct {
		Gifts []catalogGift `json:"gifts"`
	}{gifts})
	if err != nil {
		return err
	}
	c.body = b
	s.gifts.catalog.Store(c)
	return nil
}

func (s *Server) listGifts(rc *reqCtx) *apierr.Error {
	c := s.gifts.catalog.Load()
	if c == nil {
		return apierr.Unavailable
	}
	rc.SetStatusCode(200)
	rc.SetContentType("application/json")
	rc.SetBody(c.body)
	return nil
}

func (s *Server) wallets() wallet.Wallets {
	return wallet.Wallets{Redis: s.redis, DB: s.mysql.DB, Loader: s.walletLoader}
}

// getWallet answers the spendable balance from Redis (it already excludes
// coins held by gifts in flight, so it is what the next gift can spend) and
// the earnings from MySQL, which is the only place they live.
func (s *Server) getWallet(rc *reqCtx) *apierr.Error {
	ctx, cancel := context.WithTimeout(context.Background(), walletLoadTimeout)
	defer cancel()
	uid := rc.claims.UserID
	bal, err := s.wallets().HotBalance(ctx, uid)
	if err != nil {
		s.log.Warn("cannot read the hot balance", "user", uid, "err", err)
		return apierr.Unavailable
	}
	w, err := s.wallets().Get(ctx, uid)
	if err != nil {
		s.log.Warn("cannot read the wallet", "user", uid, "err", err)
		return apierr.Unavailable
	}
	rc.SetStatusCode(200)
	rc.SetContentType("application/json")
	// Appended by hand rather than by json.Marshal, which reflects and
	// allocates: viewers poll their wallet as often as they send gifts.
	b := make([]byte, 0, 96)
	b = append(b, `{"user_id":`...)
	b = strconv.AppendInt(b, uid, 10)
	b = append(b, `,"balance":`...)
	b = strconv.AppendInt(b, bal, 10)
	b = append(b, `,"earnings":`...)
	b = strconv.AppendInt(b, w.Earnings, 10)
	b = append(b, '}')
	rc.SetBody(b)
	return nil
}

// GiftRequest is one gift a user asks to send, as plain values.
type GiftRequest struct {
	SenderID   int64
	RoomID     int64
	ReceiverID int64
	GiftID     int64
	Count      int64
}

// GiftAccepted is the answer to an accepted gift.
type GiftAccepted struct {
	Ticket  string
	Balance int64 // the sender's hot balance right after this gift's hold
}

// SendGift is the gift path: memory checks, one Lua call, one produce (plus,
// once per wallet, loading the balance from MySQL). Every error it returns
// left no coins held; a repeat of idemKey returns the first answer.
func (s *Server) SendGift(ctx context.Context, g GiftRequest, idemKey string) (GiftAccepted, *apierr.Error) {
	switch {
	case g.GiftID <= 0:
		giftResults["invalid"].Inc()
		return GiftAccepted{}, apierr.InvalidRequest.With("gift_id must be a positive integer")
	case g.ReceiverID <= 0:
		giftResults["invalid"].Inc()
		return GiftAccepted{}, apierr.InvalidRequest.With("receiver_id must be a positive integer")
	case g.Count < 1 || g.Count > maxGiftCount:
		giftResults["invalid"].Inc()
		return GiftAccepted{}, apierr.InvalidRequest.With("count must be an integer from 1 to 9999")
	case g.ReceiverID == g.SenderID:
		giftResults["self_gift"].Inc()
		return GiftAccepted{}, apierr.SelfGift
	}
	cat := s.gifts.catalog.Load()
	if cat == nil {
		giftResults["no_catalog"].Inc()
		return GiftAccepted{}, apierr.Unavailable
	}
	gift := cat.byID[g.GiftID]
	if gift == nil {
		giftResults["not_found"].Inc()
		return GiftAccepted{}, apierr.NotFound.With("no such gift")
	}
	if gift.Price > math.MaxInt64/g.Count {
		giftResults["invalid"].Inc()
		return GiftAccepted{}, apierr.InvalidRequest.With("that many of this gift cost more coins than a wallet can hold")
	}
	coins := gift.Price * g.Count
	// A sender refused a moment ago is answered from memory until the
	// retry time, so a flood costs no Redis call.
	now := time.Now()
	if until := s.gifts.deny.get(denyKey{g.SenderID, ClassGift}, now); until > 0 {
		giftLimitedCache.Inc()
		return GiftAccepted{}, retryAfter(time.Duration(until - now.UnixNano()))
	}

	ticket := store.NewGiftTicket(g.SenderID)
	res, err := s.holdGift(ctx, g.SenderID, ticket, coins, idemKey)
	if err == nil && res.Status == store.HoldNotLoaded {
		// Redis has no copy of this wallet yet (first gift, or Redis lost
		// it): load it from MySQL, once, and try again. The hold script
		// marked the load as ours unless another request is loading it.
		lctx, cancel := context.WithTimeout(ctx, walletLoadTimeout)
		var lerr error
		if res.LoadMine {
			_, lerr = s.wallets().LoadMarked(lctx, g.SenderID)
		} else {
			_, lerr = s.wallets().HotBalance(lctx, g.SenderID)
		}
		cancel()
		if lerr != nil {
			s.log.Warn("cannot load the sender's wallet", "user", g.SenderID, "err", lerr)
			giftResults["wallet_load_error"].Inc()
			return GiftAccepted{}, apierr.Unavailable
		}
		res, err = s.holdGift(ctx, g.SenderID, ticket, coins, idemKey)
	}
	if err != nil {
		// The script may still have run (a timeout after Redis got it): undo
		// whatever it did, so a 503 leaves nothing held.
		if _, uerr := s.undoGift(g.SenderID, ticket, idemKey); uerr != nil {
			s.undoLater("gift hold "+ticket, func(ctx context.Context) (bool, error) {
				return s.redis.UndoGift(ctx, g.SenderID, ticket, idemKey)
			})
		}
		s.log.Warn("gift hold failed", "user", g.SenderID, "err", err)
		giftResults["redis_error"].Inc()
		return GiftAccepted{}, apierr.Unavailable
	}
	switch res.Status {
	case store.HoldReplay:
		giftResults["replay"].Inc()
		return GiftAccepted{Ticket: res.Ticket, Balance: res.Balance}, nil
	case store.HoldInsufficient:
		giftResults["insufficient_balance"].Inc()
		return GiftAccepted{}, apierr.InsufficientBalance
	case store.HoldLimited:
		s.gifts.deny.put(denyKey{g.SenderID, ClassGift}, now.Add(res.RetryAfter).UnixNano())
		giftLimitedRedis.Inc()
		return GiftAccepted{}, retryAfter(res.RetryAfter)
	case store.HoldNotLoaded:
		// Evicted again between the load and the retry.
		giftResults["not_loaded"].Inc()
		return GiftAccepted{}, apierr.Unavailable.With("the wallet is being loaded, try again in a moment")
	}

	if err := s.produce(ctx, bus.GiftRecord(s.cfg.GiftsTopic(), bus.Gift{
		Ticket: ticket, RoomID: g.RoomID, SenderID: g.SenderID, ReceiverID: g.ReceiverID, GiftID: gift.ID,
		Count: g.Count, Coins: coins, CatalogVersion: gift.Version, EffectURL: gift.EffectURL, HeldAt: res.HeldAt.UnixMilli(),
		IdemKey: idemKey, Balance: res.Balance,
	})); err != nil {
		undone, uerr := s.undoGift(g.SenderID, ticket, idemKey)
		switch {
		case uerr != nil:
			// Keep trying in the background: the record may still land,
			// and only an "a:" hold makes the worker drop it.
			s.log.Error("produce failed and the gift hold could not be undone yet", "ticket", ticket, "produce_err", err, "err", uerr)
			s.undoLater("gift hold "+ticket, func(ctx context.Context) (bool, error) {
				return s.redis.UndoGift(ctx, g.SenderID, ticket, idemKey)
			})
		case !undone:
			// The worker already claimed it: the gift did reach Kafka.
			giftResults["accepted_late"].Inc()
			return GiftAccepted{Ticket: ticket, Balance: res.Balance}, nil
		}
		s.log.Warn("produce failed; gift hold undone", "ticket", ticket, "err", err)
		giftResults["kafka_error"].Inc()
		return GiftAccepted{}, apierr.Unavailable
	}
	giftResults["accepted"].Inc()
	return GiftAccepted{Ticket: ticket, Balance: res.Balance}, nil
}

func (s *Server) holdGift(ctx context.Context, sender int64, ticket string, coins int64, idemKey string) (store.HoldResult, error) {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RedisTimeout)
	defer cancel()
	start := time.Now()
	res, err := s.redis.HoldGift(rctx, sender, ticket, coins, idemKey, s.gifts.limit)
	giftLuaSeconds.Observe(time.Since(start).Seconds())
	return res, err
}

// undoGift runs the undo script with its own deadline: the request's may be spent.
func (s *Server) undoGift(sender int64, ticket, idemKey string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RedisTimeout)
	defer cancel()
	return s.redis.UndoGift(ctx, sender, ticket, idemKey)
}

// giftBody is the body of POST /rooms/{room_id}/gifts. Zero means missing:
// every field must be positive anyway.
type giftBody struct {
	GiftID     int64 `json:"gift_id"`
	ReceiverID int64 `json:"receiver_id"`
	Count      int64 `json:"count"`
}

func (s *Server) sendGift(rc *reqCtx) *apierr.Error {
	roomID, e := pathID(rc.params[0])
	if e != nil {
		return e
	}
	var body giftBody
	if e := rc.decode(&body, false); e != nil {
		return e
	}
	key, e := rc.idemKey()
	if e != nil {
		return e
	}
	res, e := s.SendGift(context.Background(), GiftRequest{
		SenderID: rc.claims.UserID, RoomID: roomID, ReceiverID: body.ReceiverID, GiftID: body.GiftID, Count: body.Count,
	}, key)
	if e != nil {
		return e
	}
	rc.SetStatusCode(202)
	rc.SetContentType("application/json")
	// Appended by hand into a stack buffer rather than by json.Marshal,
	// which reflects and allocates on every gift. A ticket is made of
	// letters, digits and '-', so it needs no escaping.
	var buf [128]byte
	b := append(buf[:0], `{"ticket":"`...)
	b = append(b, res.Ticket...)
	b = append(b, `","status":"pending","balance":`...)
	b = strconv.AppendInt(b, res.Balance, 10)
	b = append(b, '}')
	rc.SetBody(b)
	return nil
}

// getGiftTicket answers GET /tickets/{ticket} for a gift ticket. While the
// gift is in flight the sender's holds hash in Redis has it, and the answer
// comes from there without a MySQL read: ticket polls go on while MySQL is
// slow. Once the worker has settled it the hold is gone and MySQL has the
// outcome. Redis is read first: the worker commits MySQL before it drops the
// hold, so "no hold" read before "no row" means the ticket is unknown, never
// that it was decided in between.
func (s *Server) getGiftTicket(rc *reqCtx, t string, senderID int64) *apierr.Error {
	if senderID != rc.claims.UserID {
		return apierr.NotFound.With("no such ticket")
	}
	out := ticketJSON{Ticket: t, Kind: "gift"}
	rctx, rcancel := context.WithTimeout(context.Background(), s.cfg.RedisTimeout)
	hold, found, herr := s.redis.Hold(rctx, senderID, t)
	rcancel()
	switch {
	case herr != nil:
		s.log.Warn("cannot read a gift hold from Redis; asking MySQL", "err", herr)
	case found:
		holdTicket(hold, &out)
		return rc.writeJSON(200, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	dt, derr := s.mysql.Ticket(ctx, t)
	switch {
	case derr == nil:
		if dt.UserID != rc.claims.UserID || dt.Kind != "gift" {
			return apierr.NotFound.With("no such ticket")
		}
		out.Status, out.Reason, out.CreatedAt = dt.Status, dt.Reason.String, ts(dt.CreatedAt)
		return rc.writeJSON(200, out)
	case !errors.Is(derr, db.ErrNotFound):
		s.log.Warn("cannot read a gift ticket from MySQL", "err", derr)
		return apierr.Unavailable
	case herr != nil:
		// Neither store could say: Redis may have it.
		return apierr.Unavailable
	}
	return apierr.NotFound.With("no such ticket")
}

// holdTicket fills out from a hold of the sender's holds hash. A pending
// or claimed hold is a pending ticket; an undone one ("a:", the gateway
// undid it after a failed produce) failed: the first request got 503, but
// a concurrent repeat with its Idempotency-Key may have been answered 202
// with this ticket, and a 202 ticket must end failed or succeeded.
func holdTicket(h store.GiftHold, out *ticketJSON) {
	if h.State == store.HoldUndone {
		out.Status, out.Reason, out.CreatedAt = "failed", "aborted", ts(h.At)
		return
	}
	out.Status, out.CreatedAt = "pending", ts(h.At)
}

// boardCache keeps each room's leaderboard answer. A room's board is
// queried by one request at a time (the others are answered from the last
// good board meanwhile, or wait for a room's first query) and at most once a
// boardTTL, failed queries included: while MySQL is slow or down, viewers
// get the last good board at once, never a queue of requests each waiting
// on its own query.
type boardCache struct {
	mu    sync.Mutex
	rooms map[int64]*board
	// load reads a room's top senders; nil reads MySQL. Tests replace it.
	load func(ctx context.Context, roomID int64) ([]boardEntry, error)
}

type board struct {
	// mu guards the fields below. It is never held across a query.
	mu     sync.Mutex
	body   []byte        // last good answer; nil until a query succeeded
	retry  int64         // unix nanoseconds: no query starts before then
	failed bool          // the last query failed
	flight chan struct{} // non-nil while a query runs; closed when it ends
	// fresh is when body goes stale (unix nanoseconds); atomic so the
	// cache's eviction can read it without the room's lock.
	fresh atomic.Int64
}

func (c *boardCache) room(id int64, now time.Time) *board {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rooms == nil {
		c.rooms = make(map[int64]*board)
	}
	b := c.rooms[id]
	if b == nil {
		if len(c.rooms) >= boardRooms {
			for k, v := range c.rooms {
				if v.fresh.Load() < now.UnixNano() {
					delete(c.rooms, k)
				}
			}
		}
		b = &board{}
		c.rooms[id] = b
	}
	return b
}

// boardEntry is one line of a leaderboard.
type boardEntry struct {
	UserID int64 `json:"user_id"`
	Coins  int64 `json:"coins"`
}

// boardQueryTimeout bounds one leaderboard query.
const boardQueryTimeout = 2 * time.Second

func (s *Server) leaderboard(rc *reqCtx) *apierr.Error {
	return s.writeRoomBody(rc, &s.gifts.boards, s.queryBoard)
}

// writeRoomBody answers a room's cached body (roomBody) for the room of
// the path.
func (s *Server) writeRoomBody(rc *reqCtx, c *boardCache, query func(ctx context.Context, roomID int64) ([]byte, error)) *apierr.Error {
	roomID, e := pathID(rc.params[0])
	if e != nil {
		return e
	}
	body, e := s.roomBody(c, roomID, query)
	if e != nil {
		return e
	}
	rc.SetStatusCode(200)
	rc.SetContentType("application/json")
	rc.SetBody(body)
	return nil
}

// boardBody returns a room's leaderboard, cached by roomBody.
func (s *Server) boardBody(roomID int64) ([]byte, *apierr.Error) {
	return s.roomBody(&s.gifts.boards, roomID, s.queryBoard)
}

// roomBody returns a room's answer from cache c: the cached one while it is
// fresh; else the request that finds no query running and none failed in
// the last boardTTL runs query (and answers the last good one if it fails),
// while the others answer the last good one at once. A room with no answer
// yet waits for its first query, unless the last one failed: then it is 503
// at once.
func (s *Server) roomBody(c *boardCache, roomID int64, query func(ctx context.Context, roomID int64) ([]byte, error)) ([]byte, *apierr.Error) {
	at := s.now()
	now := at.UnixNano()
	b := c.room(roomID, at)
	b.mu.Lock()
	body := b.body
	if body != nil && now < b.fresh.Load() {
		b.mu.Unlock()
		return body, nil
	}
	if b.flight == nil && now >= b.retry {
		f := make(chan struct{})
		b.flight = f
		b.mu.Unlock()
		return s.queryRoom(b, f, roomID, query)
	}
	flight, failed := b.flight, b.failed
	b.mu.Unlock()
	switch {
	case body != nil:
		return body, nil
	case flight == nil || failed:
		return nil, apierr.Unavailable
	}
	t := time.NewTimer(boardQueryTimeout)
	defer t.Stop()
	select {
	case <-flight:
	case <-t.C:
		return nil, apierr.Unavailable
	}
	b.mu.Lock()
	body = b.body
	b.mu.Unlock()
	if body == nil {
		return nil, apierr.Unavailable
	}
	return body, nil
}

// queryRoom runs the room's query as the one request that may, and ends
// the flight f it started.
func (s *Server) queryRoom(b *board, f chan struct{}, roomID int64, query func(ctx context.Context, roomID int64) ([]byte, error)) ([]byte, *apierr.Error) {
	ctx, cancel := context.WithTimeout(context.Background(), boardQueryTimeout)
	defer cancel()
	body, err := query(ctx, roomID)
	now := s.now()
	b.mu.Lock()
	b.flight = nil
	b.failed = err != nil
	// Failed or not, the next query is a TTL away.
	b.retry = now.Add(boardTTL).UnixNano()
	if err == nil {
		b.body = body
		b.fresh.Store(now.Add(boardTTL).UnixNano())
	}
	last := b.body
	b.mu.Unlock()
	close(f)
	if err != nil {
		s.log.Warn("cannot read a room's leaderboard or recent gifts; serving the last good answer", "room", roomID, "have_one", last != nil, "err", err)
		if last == nil {
			return nil, apierr.Unavailable
		}
	}
	return last, nil
}

// queryBoard reads and encodes a room's leaderboard.
func (s *Server) queryBoard(ctx context.Context, roomID int64) ([]byte, error) {
	load := s.gifts.boards.load
	if load == nil {
		load = s.loadBoard
	}
	top, err := load(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if top == nil {
		top = []boardEntry{}
	}
	return json.Marshal(struct {
		RoomID int64        `json:"room_id"`
		Top    []boardEntry `json:"top"`
	}{roomID, top})
}

func (s *Server) loadBoard(ctx context.Context, roomID int64) ([]boardEntry, error) {
	rows, err := s.mysql.TopRoomSenders(ctx, roomID, boardTop)
	top := make([]boardEntry, len(rows))
	for i, r := range rows {
		top[i] = boardEntry(r)
	}
	return top, err
}
