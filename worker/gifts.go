package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/obs"
	"github.com/flashgate/flashgate/internal/store"
	"github.com/flashgate/flashgate/internal/wallet"
)

// The gift writer: it consumes the gifts topic in its own consumer group and
// turns each held gift into MySQL rows — the sender's debit guarded by its
// locked balance, the receiver's earnings, two ledger rows, the gift record
// and the room's leaderboard total — in one transaction per chunk, keyed by
// the ticket so a redelivery changes nothing. After the commit it
// ends the holds in Redis, tells the room and the sender, and only then
// commits the Kafka offsets.

var invalidGifts = promauto.NewCounter(prometheus.CounterOpts{
	Namespace: obs.Namespace, Subsystem: "worker", Name: "gifts_invalid_total",
	Help: "Gift records failed as invalid because their coins are not their catalog price times their count (or they are a gift to the sender): a producer other than the gateway wrote to the gifts topic. Should stay 0.",
})

// maxGiftCount mirrors the API's limit on count.
const maxGiftCount = 9999

// GiftGroupName is the consumer group of the gift writers.
func GiftGroupName(cfg config.Config) string { return cfg.TopicPrefix + ".gift-writers" }

// ConsumeGifts polls the gifts topic in the gift writers' group and writes
// each batch, committing offsets only after MySQL committed it and the
// outcomes were published. It returns when ctx is done.
func (w *Worker) ConsumeGifts(ctx context.Context) error {
	cl, err := bus.NewClient(w.cfg.Config, w.log,
		kgo.ConsumerGroup(GiftGroupName(w.cfg.Config)),
		kgo.ConsumeTopics(w.cfg.GiftsTopic()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(200*time.Millisecond),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	return w.consume(ctx, cl, w.gifts, pollChunks*w.cfg.WorkerBatch, func(ctx context.Context, recs []*kgo.Record) error {
		giftMetrics.batchRecords.Observe(float64(len(recs)))
		return w.ProcessGiftRecords(ctx, recs)
	})
}

// ProcessGiftRecords writes a batch of gift records and abort markers in
// chunks of FLASHGATE_WORKER_BATCH (pipeline): for each, it claims the
// holds in Redis, writes MySQL in one transaction, then settles the holds
// and publishes the outcomes. A chunk locks the wallets of its
// senders and receivers until it commits and is written with a handful of
// multi-row statements whatever its size, so a popular anchor's row is
// locked once per chunk, not once per gift. Already decided tickets are
// settled and published again without touching MySQL. It returns when every
// chunk is published, with an error only when ctx ends before that.
func (w *Worker) ProcessGiftRecords(ctx context.Context, recs []*kgo.Record) error {
	gifts := make([]bus.Gift, 0, len(recs))
	for _, r := range recs {
		var g bus.Gift
		err := json.Unmarshal(r.Value, &g)
		if err == nil {
			err = validGift(g)
		}
		if err != nil {
			w.log.Error("undecodable gift record; sending it to the dead-letter topic", "offset", r.Offset, "partition", r.Partition, "err", err)
			if err := w.deadLetter(ctx, w.cfg.GiftsDLQTopic(), r.Value, "undecodable: "+err.Error()); err != nil {
				return err
			}
			continue
		}
		gifts = append(gifts, g)
	}
	return pipeline(ctx, chunked(gifts, w.cfg.WorkerBatch), w.claimGifts, w.writeGiftChunk, w.publishGifts)
}

// validGift checks what the writer relies on; the gateway and the hold
// reconciler never produce anything else, so a failure here is a foreign or
// corrupt record.
func validGift(g bus.Gift) error {
	kind, sender, ok := store.ParseTicket(g.Ticket)
	switch {
	case !ok || kind != "gift":
		return fmt.Errorf("bad ticket %q", g.Ticket)
	case sender != g.SenderID:
		return fmt.Errorf("ticket %s is not of sender %d", g.Ticket, g.SenderID)
	case g.Abort:
		return nil
	case g.RoomID <= 0 || g.ReceiverID <= 0 || g.GiftID <= 0:
		return errors.New("room, receiver and gift ids must be positive")
	case g.Count < 1 || g.Count > maxGiftCount || g.Coins <= 0:
		return errors.New("count or coins out of range")
	case len(g.IdemKey) > 64:
		return errors.New("idempotency key too long")
	}
	return nil
}

// giftChunk is a chunk of gifts claimed in Redis and checked against the
// catalog, ready to be written.
type giftChunk struct {
	gifts   []bus.Gift
	invalid []invalidGift
	aborted map[string]bool // gifts the gateway gave back before the claim
}

// claimGifts claims a chunk's holds, so a gateway that gave up on the
// produce can no longer give the coins back while they are written (and a
// gift it did give back is dropped), and checks their coins.
func (w *Worker) claimGifts(ctx context.Context, gifts []bus.Gift) (giftChunk, error) {
	refs := make([]store.GiftRef, len(gifts))
	for i, g := range gifts {
		refs[i] = store.GiftRef{SenderID: g.SenderID, Ticket: g.Ticket}
	}
	var aborted map[string]bool
	err := w.retry(ctx, "claim gifts in Redis", func() (err error) {
		aborted, err = w.redis.ClaimGifts(ctx, refs)
		return err
	})
	if err != nil {
		return giftChunk{}, err
	}
	// The coins in a record are not trusted: anyone who can produce to the
	// topic could otherwise move any balance to any receiver.
	gifts, invalid, err := w.checkGiftCoins(ctx, gifts)
	return giftChunk{gifts: gifts, invalid: invalid, aborted: aborted}, err
}

// writeGiftChunk writes a claimed chunk to MySQL, and fails its invalid
// gifts, and returns the outcomes to publish.
func (w *Worker) writeGiftChunk(ctx context.Context, c giftChunk) ([]giftOutcome, error) {
	var bad []giftOutcome
	for _, iv := range c.invalid {
		w.log.Error("gift record disagrees with the catalog; failing it as invalid", "ticket", iv.gift.Ticket, "why", iv.why)
		invalidGifts.Inc()
		o, err := w.failInvalidGift(ctx, iv.gift, "invalid: "+iv.why)
		if err != nil {
			return nil, err
		}
		bad = append(bad, o)
	}
	outs, err := writeBatch(ctx, w, "write gifts to MySQL", c.gifts,
		func(ctx context.Context, part []bus.Gift) ([]giftOutcome, error) {
			return w.writeGifts(ctx, part, c.aborted)
		},
		w.poisonGift)
	if err != nil {
		return nil, err
	}
	return append(outs, bad...), nil
}

// invalidGift is a gift record whose coins the catalog does not back.
type invalidGift struct {
	gift bus.Gift
	why  string
}

// giftPrice is one catalog version: a gift's price at some time.
type giftPrice struct {
	GiftID int64 `db:"gift_id"`
	Price  int64 `db:"price"`
}

// giftPrices caches catalog versions, which never change once written.
type giftPrices struct {
	mu sync.Mutex
	m  map[int64]giftPrice // by gift_prices.id
}

// checkGiftCoins splits gifts into those whose coins are the price of their
// catalog version times their count, from a sender to someone else, and
// the rest. A record without a version (from a gateway older than versions)
// is checked against the gift's current price. Abort markers carry no
// coins and pass.
func (w *Worker) checkGiftCoins(ctx context.Context, gifts []bus.Gift) ([]bus.Gift, []invalidGift, error) {
	var missing, current []int64
	w.prices.mu.Lock()
	if w.prices.m == nil {
		w.prices.m = map[int64]giftPrice{}
	}
	for _, g := range gifts {
		switch {
		case g.Abort:
		case g.CatalogVersion == 0:
			current = append(current, g.GiftID)
		default:
			if _, ok := w.prices.m[g.CatalogVersion]; !ok {
				missing = append(missing, g.CatalogVersion)
			}
		}
	}
	w.prices.mu.Unlock()
	now := map[int64]int64{} // gift id → current price, for unversioned records
	if len(missing) > 0 || len(current) > 0 {
		err := w.retry(ctx, "read gift prices", func() error {
			if len(missing) > 0 {
				rows, err := w.mysql.GiftPrices(ctx, missing)
				if err != nil {
					return err
				}
				w.prices.mu.Lock()
				for _, r := range rows {
					w.prices.m[r.ID] = giftPrice{GiftID: r.GiftID, Price: r.Price}
				}
				w.prices.mu.Unlock()
			}
			if len(current) > 0 {
				prices, err := w.mysql.CurrentGiftPrices(ctx, current)
				if err != nil {
					return err
				}
				for id, p := range prices {
					now[id] = p
				}
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	good := gifts[:0:0]
	var bad []invalidGift
	w.prices.mu.Lock()
	defer w.prices.mu.Unlock()
	for _, g := range gifts {
		if why := giftCoinsWrong(g, w.prices.m, now); why != "" {
			bad = append(bad, invalidGift{g, why})
			continue
		}
		good = append(good, g)
	}
	return good, bad, nil
}

// giftCoinsWrong says what is wrong with g's coins, "" when nothing is.
func giftCoinsWrong(g bus.Gift, versions map[int64]giftPrice, current map[int64]int64) string {
	if g.Abort {
		return ""
	}
	if g.ReceiverID == g.SenderID {
		return "a gift to its own sender"
	}
	var price int64
	if g.CatalogVersion == 0 {
		p, ok := current[g.GiftID]
		if !ok {
			return fmt.Sprintf("gift %d is not in the catalog", g.GiftID)
		}
		price = p
	} else {
		v, ok := versions[g.CatalogVersion]
		switch {
		case !ok:
			return fmt.Sprintf("catalog version %d does not exist", g.CatalogVersion)
		case v.GiftID != g.GiftID:
			return fmt.Sprintf("catalog version %d is of gift %d, not %d", g.CatalogVersion, v.GiftID, g.GiftID)
		}
		price = v.Price
	}
	if price <= 0 || g.Count > math.MaxInt64/price || price*g.Count != g.Coins {
		return fmt.Sprintf("coins %d are not the price %d times the count %d", g.Coins, price, g.Count)
	}
	return ""
}

// writeGifts decides a chunk under the locks of the wallets it changes and
// writes it in the same transaction. As for orders (writeOrders), a first
// delivery is decided without reading its tickets back: the tickets
// table's key refuses the write of one decided before, and the chunk is
// then decided again with that read.
func (w *Worker) writeGifts(ctx context.Context, gifts []bus.Gift, aborted map[string]bool) ([]giftOutcome, error) {
	for careful := false; ; careful = true {
		outs, err := w.writeGiftsTx(ctx, gifts, aborted, careful)
		if !careful && db.IsDuplicate(err) {
			giftMetrics.redecided.Inc()
			continue
		}
		return outs, err
	}
}

func (w *Worker) writeGiftsTx(ctx context.Context, gifts []bus.Gift, aborted map[string]bool, careful bool) ([]giftOutcome, error) {
	start := time.Now()
	var plan giftPlan
	err := db.InTx(ctx, w.mysql.DB, nil, func(tx *sqlx.Tx) error {
		st := giftState{}
		var err error
		if careful {
			tickets := make([]string, len(gifts))
			for i, g := range gifts {
				tickets[i] = g.Ticket
			}
			if st.decided, err = db.DecidedTickets(ctx, tx, tickets); err != nil {
				return err
			}
		}
		var users []int64
		var keys []db.IdemRef
		for _, g := range gifts {
			if _, ok := st.decided[g.Ticket]; ok || aborted[g.Ticket] || g.Abort {
				continue
			}
			users = append(users, g.SenderID, g.ReceiverID)
			if g.IdemKey != "" {
				keys = append(keys, db.IdemRef{UserID: g.SenderID, Key: g.IdemKey})
			}
		}
		if st.wallets, err = db.LockWallets(ctx, tx, users); err != nil {
			return err
		}
		if st.idem, err = db.GiftIdemHolders(ctx, tx, keys); err != nil {
			return err
		}
		plan = decideGifts(gifts, aborted, st)
		return db.WriteGifts(ctx, tx, plan.write)
	})
	giftMetrics.commitSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, err
	}
	for _, o := range plan.outs {
		if !o.replay {
			giftMetrics.decided(o.succeeded, o.reason)
		}
	}
	return plan.outs, nil
}

// ticketStatus is a decision as the tickets table and the API spell it.
func ticketStatus(succeeded bool) string {
	if succeeded {
		return "succeeded"
	}
	return "failed"
}

// poisonGift dead-letters a gift MySQL keeps refusing, with the reason, and
// fails its ticket as invalid, so it does not stay pending and its coins
// come back.
func (w *Worker) poisonGift(ctx context.Context, g bus.Gift, cause error) (giftOutcome, error) {
	return w.failInvalidGift(ctx, g, "mysql refused the gift: "+cause.Error())
}

// failInvalidGift dead-letters g with the reason why and fails its ticket
// as invalid (unless it was decided already), so that it does not stay
// pending and any coins held for it come back.
func (w *Worker) failInvalidGift(ctx context.Context, g bus.Gift, why string) (giftOutcome, error) {
	d, won, err := w.failPoison(ctx, giftMetrics, w.cfg.GiftsDLQTopic(), g, why,
		db.NewTicket{Ticket: g.Ticket, UserID: g.SenderID, RefID: g.RoomID, CreatedAt: time.UnixMilli(g.HeldAt)})
	if err != nil {
		return giftOutcome{}, err
	}
	return giftOutcome{Gift: g, succeeded: d.Status == "succeeded", reason: d.Reason.String, replay: !won}, nil
}

// publishGifts ends the holds in Redis and produces the outcomes: a
// committed gift to its room and to its sender, a failed one to its sender
// only. Results must be acknowledged before the offsets are committed.
// Replays are published again: the first attempt may have died before it.
func (w *Worker) publishGifts(ctx context.Context, outs []giftOutcome) error {
	sets := make([]store.GiftSettlement, len(outs))
	recs := make([]*kgo.Record, 0, 2*len(outs))
	topic := w.cfg.ResultsTopic()
	for i, o := range outs {
		sets[i] = store.GiftSettlement{GiftRef: store.GiftRef{SenderID: o.SenderID, Ticket: o.Ticket}, Committed: o.succeeded}
		if o.succeeded && !o.Abort {
			recs = append(recs, bus.GiftResult(topic, bus.GiftPush{
				RoomID: o.RoomID, Ticket: o.Ticket, SenderID: o.SenderID, ReceiverID: o.ReceiverID,
				GiftID: o.GiftID, Count: o.Count, EffectURL: o.EffectURL,
			}))
		}
		recs = append(recs, bus.TicketResult(topic, o.SenderID, bus.TicketPush{
			Ticket: o.Ticket, Kind: "gift", Status: ticketStatus(o.succeeded), Reason: o.reason,
		}))
	}
	// MySQL already has the outcomes and GET /tickets reads them there;
	// ReconcileGiftHolds settles what is left.
	w.settle(ctx, func(ctx context.Context) error { return w.redis.SettleGifts(ctx, sets) })
	// A gift MySQL refused for lack of coins means the hot balance let it
	// through: it is above MySQL's (e.g. reloaded after a Redis flush while
	// gifts were in flight). Giving the coins back would keep it there, so
	// make it agree with MySQL again.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	resynced := map[int64]bool{}
	for _, o := range outs {
		if o.reason == ReasonInsufficientBalance && !resynced[o.SenderID] {
			resynced[o.SenderID] = true
			if _, err := (wallet.Wallets{Redis: w.redis, DB: w.mysql.DB}).Resync(sctx, o.SenderID); err != nil {
				w.log.Warn("cannot resync a hot balance with MySQL", "user", o.SenderID, "err", err)
			}
		}
	}
	cancel()
	return w.retry(ctx, "produce gift results", func() error {
		return w.kafka.ProduceSync(ctx, recs...).FirstErr()
	})
}
