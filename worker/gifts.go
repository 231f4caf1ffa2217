package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

var (
	giftBatchSize = promauto.NewHistogram(prometheus.HistogramOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "gift_batch_records",
		Help: "Gift records per polled batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	})
	giftTicketsDecided = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "gift_tickets_total",
		Help: "Gift tickets decided, by status and reason (replays of decided tickets are not counted).",
	}, []string{"status", "reason"})
	giftCommitSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "gift_mysql_commit_seconds",
		Help: "Time to write one chunk of gifts to MySQL.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
)

const (
	// giftChunk is the most gifts written in one MySQL transaction. A chunk
	// locks the wallets of its senders and receivers until it commits, and
	// is written with a handful of multi-row statements whatever its size,
	// so a popular anchor's row is locked once per chunk, not once per gift.
	giftChunk = 500
	// maxGiftCount mirrors the API's limit on count.
	maxGiftCount = 9999
)

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
	return w.consume(ctx, cl, w.gifts, w.cfg.WorkerBatch, func(ctx context.Context, recs []*kgo.Record) error {
		giftBatchSize.Observe(float64(len(recs)))
		return w.ProcessGiftRecords(ctx, recs)
	})
}

// ProcessGiftRecords writes a batch of gift records and abort markers:
// claims their holds in Redis, writes MySQL in chunks, settles the holds and
// publishes the outcomes. Already decided tickets are settled and published
// again without touching MySQL. It returns an error only when ctx ends
// before the batch is done.
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
	for len(gifts) > 0 {
		n := min(len(gifts), giftChunk)
		if err := w.processGifts(ctx, gifts[:n]); err != nil {
			return err
		}
		gifts = gifts[n:]
	}
	return nil
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

func (w *Worker) processGifts(ctx context.Context, gifts []bus.Gift) error {
	refs := make([]store.GiftRef, len(gifts))
	for i, g := range gifts {
		refs[i] = store.GiftRef{SenderID: g.SenderID, Ticket: g.Ticket}
	}
	// Claim first, so a gateway that gave up on the produce can no longer
	// give the coins back while this writes them (and a gift it did give
	// back is dropped).
	var aborted map[string]bool
	err := w.retry(ctx, "claim gifts in Redis", func() (err error) {
		aborted, err = w.redis.ClaimGifts(ctx, refs)
		return err
	})
	if err != nil {
		return err
	}
	outs, err := writeBatch(ctx, w, "write gifts to MySQL", gifts,
		func(ctx context.Context, part []bus.Gift) ([]giftOutcome, error) {
			return w.writeGifts(ctx, part, aborted)
		},
		w.poisonGift)
	if err != nil {
		return err
	}
	return w.publishGifts(ctx, outs)
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
			redecided.WithLabelValues("gift").Inc()
			continue
		}
		return outs, err
	}
}

func (w *Worker) writeGiftsTx(ctx context.Context, gifts []bus.Gift, aborted map[string]bool, careful bool) ([]giftOutcome, error) {
	start := time.Now()
	var plan giftPlan
	err := db.InTx(ctx, w.sql, nil, func(tx *sqlx.Tx) error {
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
	giftCommitSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, err
	}
	for _, o := range plan.outs {
		if !o.replay {
			giftTicketsDecided.WithLabelValues(ticketStatus(o.succeeded), o.reason).Inc()
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
	v, _ := json.Marshal(g)
	if err := w.deadLetter(ctx, w.cfg.GiftsDLQTopic(), v, "mysql refused the gift: "+cause.Error()); err != nil {
		return giftOutcome{}, err
	}
	var d db.Ticket
	var won bool
	err := w.retry(ctx, "fail a poison gift's ticket", func() (err error) {
		d, won, err = db.DecideFailed(ctx, w.sql, db.NewTicket{Ticket: g.Ticket, Kind: "gift", UserID: g.SenderID,
			RefID: g.RoomID, Reason: ReasonInvalid, CreatedAt: time.UnixMilli(g.HeldAt)})
		return err
	})
	if err != nil {
		return giftOutcome{}, err
	}
	if won {
		giftTicketsDecided.WithLabelValues("failed", ReasonInvalid).Inc()
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
			if _, err := (wallet.Wallets{Redis: w.redis, DB: w.sql}).Resync(sctx, o.SenderID); err != nil {
				w.log.Warn("cannot resync a hot balance with MySQL", "user", o.SenderID, "err", err)
			}
		}
	}
	cancel()
	return w.retry(ctx, "produce gift results", func() error {
		return w.kafka.ProduceSync(ctx, recs...).FirstErr()
	})
}
