package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/obs"
	"github.com/flashgate/flashgate/internal/store"
	"github.com/flashgate/flashgate/internal/wallet"
)

// The gift writer: it consumes the gifts topic in its own consumer group and
// turns each held gift into MySQL rows — the sender's debit guarded by
// "balance >= coins", the receiver's earnings, two ledger rows, the gift
// record and the room's leaderboard total — in one transaction per chunk,
// keyed by the ticket so a redelivery changes nothing. After the commit it
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
	giftDLQTotal = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "worker", Name: "gift_dead_letters_total",
		Help: "Gift records sent to the gifts dead-letter topic.",
	})
)

// ReasonInsufficientBalance fails a gift whose sender's MySQL balance could
// not cover it (Redis believed it could, e.g. after losing data).
const ReasonInsufficientBalance = "insufficient_balance"

const (
	// giftChunk is the most gifts written in one MySQL transaction. A chunk
	// locks the wallets of its senders and receivers until it commits; small
	// chunks keep popular receivers from being locked for long.
	giftChunk = 100
	// deadlockRetries is how often a chunk is retried at once after MySQL
	// chose it as a deadlock victim, before it counts as a failed attempt.
	deadlockRetries = 10
	// maxGiftCount mirrors the API's limit on count.
	maxGiftCount = 9999
)

// GiftGroupName is the consumer group of the gift writers.
func GiftGroupName(cfg config.Config) string { return cfg.TopicPrefix + ".gift-writers" }

// runGifts runs the gift writer and the reconciler of gift holds.
func (w *Worker) runGifts(ctx context.Context) error {
	w.log.Info("gift writer started", "group", GiftGroupName(w.cfg.Config), "topic", w.cfg.GiftsTopic())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.ConsumeGifts(gctx) })
	g.Go(func() error {
		w.every(gctx, w.cfg.ReconcileEvery, "reconcile gift holds", w.ReconcileGiftHolds)
		return nil
	})
	return g.Wait()
}

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
	return w.consume(ctx, cl, "gifts", w.cfg.WorkerBatch, func(ctx context.Context, recs []*kgo.Record) error {
		giftBatchSize.Observe(float64(len(recs)))
		return w.ProcessGiftRecords(ctx, recs)
	})
}

// ProcessGiftRecords writes a batch of gift records: claims their holds in
// Redis, writes MySQL in chunks, settles the holds and publishes the
// outcomes. Already decided tickets are settled and published again without
// touching MySQL. It returns an error only when ctx ends before the batch is
// done.
func (w *Worker) ProcessGiftRecords(ctx context.Context, recs []*kgo.Record) error {
	gifts := make([]bus.Gift, 0, len(recs))
	seen := make(map[string]bool, len(recs))
	for _, r := range recs {
		var g bus.Gift
		err := json.Unmarshal(r.Value, &g)
		if err == nil {
			err = validGift(g)
		}
		if err != nil {
			w.log.Error("undecodable gift record; sending it to the dead-letter topic", "offset", r.Offset, "partition", r.Partition, "err", err)
			if err := w.deadLetterGift(ctx, r.Value, "undecodable: "+err.Error()); err != nil {
				return err
			}
			continue
		}
		if seen[g.Ticket] {
			continue // the same record twice in one batch
		}
		seen[g.Ticket] = true
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

// validGift checks what the writer relies on; the gateway never produces
// anything else, so a failure here is a foreign or corrupt record.
func validGift(g bus.Gift) error {
	kind, sender, ok := store.ParseTicket(g.Ticket)
	switch {
	case !ok || kind != "gift":
		return fmt.Errorf("bad ticket %q", g.Ticket)
	case sender != g.SenderID:
		return fmt.Errorf("ticket %s is not of sender %d", g.Ticket, g.SenderID)
	case g.RoomID <= 0 || g.ReceiverID <= 0 || g.GiftID <= 0:
		return errors.New("room, receiver and gift ids must be positive")
	case g.Count < 1 || g.Count > maxGiftCount || g.Coins <= 0:
		return errors.New("count or coins out of range")
	}
	return nil
}

// giftOutcome is one gift's decision, new or replayed.
type giftOutcome struct {
	bus.Gift
	succeeded bool
	reason    string
	replay    bool
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
	err := w.retry(ctx, "claim gifts in Redis", 0, func() (err error) {
		aborted, err = w.redis.ClaimGifts(ctx, refs)
		return err
	})
	if err != nil {
		return err
	}
	var outs []giftOutcome
	err = w.retry(ctx, "write gifts to MySQL", maxAttempts, func() (err error) {
		start := time.Now()
		outs, err = w.commitGiftsRetryingDeadlocks(ctx, gifts, aborted)
		giftCommitSeconds.Observe(time.Since(start).Seconds())
		return err
	})
	if errors.Is(err, errPoison) {
		if len(gifts) > 1 {
			// One bad gift must not fail the others: try each on its own.
			for i := range gifts {
				if err := w.processGifts(ctx, gifts[i:i+1]); err != nil {
					return err
				}
			}
			return nil
		}
		outs, err = w.failPoisonGifts(ctx, gifts)
	}
	if err != nil {
		return err
	}
	return w.publishGifts(ctx, outs)
}

// commitGiftsRetryingDeadlocks retries a chunk that lost a deadlock at once:
// gift writers of different partitions may share receivers, and the losing
// transaction was rolled back whole, so trying again is always safe.
func (w *Worker) commitGiftsRetryingDeadlocks(ctx context.Context, gifts []bus.Gift, aborted map[string]bool) ([]giftOutcome, error) {
	for n := 1; ; n++ {
		outs, err := w.commitGifts(ctx, gifts, aborted)
		if err == nil || n >= deadlockRetries || !isLockConflict(err) || ctx.Err() != nil {
			return outs, err
		}
	}
}

// isLockConflict reports a deadlock or lock wait timeout.
func isLockConflict(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}

// commitGifts decides and writes one chunk of gifts in one transaction.
func (w *Worker) commitGifts(ctx context.Context, gifts []bus.Gift, aborted map[string]bool) ([]giftOutcome, error) {
	tx, err := w.sql.BeginTxx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()

	tickets := make([]string, len(gifts))
	for i, g := range gifts {
		tickets[i] = g.Ticket
	}
	q, args, _ := sqlx.In("SELECT ticket, kind, user_id, ref_id, status, reason, order_no, created_at FROM tickets WHERE ticket IN (?)", tickets)
	var rows []db.Ticket
	if err := tx.SelectContext(ctx, &rows, q, args...); err != nil {
		return nil, err
	}
	decided := make(map[string]db.Ticket, len(rows))
	for _, t := range rows {
		decided[t.Ticket] = t
	}

	// Lock every wallet this chunk changes, in user id order, before
	// changing any: two chunks that share users then queue instead of
	// deadlocking (a wallet created below can still deadlock, rarely; see
	// commitGiftsRetryingDeadlocks).
	var users []int64
	for _, g := range gifts {
		if _, ok := decided[g.Ticket]; !ok && !aborted[g.Ticket] {
			users = append(users, g.SenderID, g.ReceiverID)
		}
	}
	if len(users) > 0 {
		slices.Sort(users)
		users = slices.Compact(users)
		q, args, _ := sqlx.In("SELECT user_id FROM wallets WHERE user_id IN (?) ORDER BY user_id FOR UPDATE", users)
		var locked []int64
		if err := tx.SelectContext(ctx, &locked, q, args...); err != nil {
			return nil, fmt.Errorf("cannot lock wallets: %w", err)
		}
	}

	outs := make([]giftOutcome, 0, len(gifts))
	for _, g := range gifts {
		out := giftOutcome{Gift: g}
		if d, ok := decided[g.Ticket]; ok {
			out.replay, out.succeeded, out.reason = true, d.Status == "succeeded", d.Reason.String
			outs = append(outs, out)
			continue
		}
		if aborted[g.Ticket] {
			out.reason = ReasonAborted
			outs = append(outs, out)
			continue
		}
		// The guard in Apply is what keeps a wallet from going negative
		// whatever Redis believed. A refused debit changed nothing, so the
		// transaction goes on with the other gifts.
		_, err := wallet.Apply(ctx, tx, wallet.Change{UserID: g.SenderID, Account: wallet.AccountBalance,
			Kind: wallet.KindGiftSent, Ref: g.Ticket, Amount: -g.Coins})
		if errors.Is(err, wallet.ErrInsufficient) {
			out.reason = ReasonInsufficientBalance
			outs = append(outs, out)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cannot debit sender %d for %s: %w", g.SenderID, g.Ticket, err)
		}
		if _, err := wallet.Apply(ctx, tx, wallet.Change{UserID: g.ReceiverID, Account: wallet.AccountEarnings,
			Kind: wallet.KindGiftReceived, Ref: g.Ticket, Amount: g.Coins}); err != nil {
			return nil, fmt.Errorf("cannot credit receiver %d for %s: %w", g.ReceiverID, g.Ticket, err)
		}
		out.succeeded = true
		outs = append(outs, out)
	}
	if err := insertGiftRows(ctx, tx, outs); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	for _, o := range outs {
		if !o.replay {
			giftTicketsDecided.WithLabelValues(giftStatus(o.succeeded), o.reason).Inc()
		}
	}
	return outs, nil
}

func giftStatus(succeeded bool) string {
	if succeeded {
		return "succeeded"
	}
	return "failed"
}

// insertGiftRows writes the gift records, the rooms' totals and the tickets
// of the new decisions.
func insertGiftRows(ctx context.Context, tx *sqlx.Tx, outs []giftOutcome) error {
	var records, tickets strings.Builder
	var recVals, tkVals []any
	type roomSender struct{ room, user int64 }
	totals := map[roomSender]int64{}
	for _, o := range outs {
		if o.replay {
			continue
		}
		held := time.UnixMilli(o.HeldAt).UTC()
		if o.succeeded {
			if len(recVals) > 0 {
				records.WriteString(",")
			}
			records.WriteString("(?, ?, ?, ?, ?, ?, ?, ?)")
			recVals = append(recVals, o.Ticket, o.RoomID, o.SenderID, o.ReceiverID, o.GiftID, o.Count, o.Coins, held)
			totals[roomSender{o.RoomID, o.SenderID}] += o.Coins
		}
		if len(tkVals) > 0 {
			tickets.WriteString(",")
		}
		tickets.WriteString("(?, 'gift', ?, ?, ?, NULLIF(?, ''), ?)")
		tkVals = append(tkVals, o.Ticket, o.SenderID, o.RoomID, giftStatus(o.succeeded), o.reason, held)
	}
	if len(recVals) > 0 {
		if _, err := tx.ExecContext(ctx, "INSERT INTO gift_records (ticket, room_id, sender_id, receiver_id, gift_id, count, coins, created_at) VALUES "+
			records.String(), recVals...); err != nil {
			return fmt.Errorf("cannot insert gift records: %w", err)
		}
		// In key order, so concurrent chunks lock leaderboard rows alike.
		keys := make([]roomSender, 0, len(totals))
		for k := range totals {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b roomSender) int {
			if a.room != b.room {
				return cmpInt(a.room, b.room)
			}
			return cmpInt(a.user, b.user)
		})
		var sb strings.Builder
		vals := make([]any, 0, 3*len(keys))
		for i, k := range keys {
			if i > 0 {
				sb.WriteString(",")
			}
			sb.WriteString("(?, ?, ?)")
			vals = append(vals, k.room, k.user, totals[k])
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO room_senders (room_id, user_id, coins) VALUES "+sb.String()+
			" ON DUPLICATE KEY UPDATE coins = coins + VALUES(coins)", vals...); err != nil {
			return fmt.Errorf("cannot update leaderboards: %w", err)
		}
	}
	if len(tkVals) > 0 {
		if _, err := tx.ExecContext(ctx, "INSERT INTO tickets (ticket, kind, user_id, ref_id, status, reason, created_at) VALUES "+
			tickets.String(), tkVals...); err != nil {
			return fmt.Errorf("cannot record gift tickets: %w", err)
		}
	}
	return nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// failPoisonGifts dead-letters a gift that MySQL keeps refusing and fails
// its ticket, so it does not stay pending and its coins come back.
func (w *Worker) failPoisonGifts(ctx context.Context, gifts []bus.Gift) ([]giftOutcome, error) {
	outs := make([]giftOutcome, 0, len(gifts))
	for _, g := range gifts {
		v, _ := json.Marshal(g)
		if err := w.deadLetterGift(ctx, v, "mysql rejected the gift"); err != nil {
			return nil, err
		}
		out := giftOutcome{Gift: g, reason: ReasonUnprocessable}
		var won bool
		err := w.retry(ctx, "fail a gift ticket", 0, func() error {
			res, err := w.sql.ExecContext(ctx, `INSERT IGNORE INTO tickets (ticket, kind, user_id, ref_id, status, reason, created_at)
				VALUES (?, 'gift', ?, ?, 'failed', ?, ?)`, g.Ticket, g.SenderID, g.RoomID, ReasonUnprocessable, time.UnixMilli(g.HeldAt).UTC())
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			won = n == 1
			if won {
				return nil
			}
			t, err := w.db.Ticket(ctx, g.Ticket)
			if err != nil {
				return err
			}
			out.replay, out.succeeded, out.reason = true, t.Status == "succeeded", t.Reason.String
			return nil
		})
		if err != nil {
			return nil, err
		}
		if won {
			giftTicketsDecided.WithLabelValues("failed", ReasonUnprocessable).Inc()
		}
		outs = append(outs, out)
	}
	return outs, nil
}

func (w *Worker) deadLetterGift(ctx context.Context, value []byte, why string) error {
	rec := &kgo.Record{Topic: w.cfg.GiftsDLQTopic(), Value: value, Headers: []kgo.RecordHeader{{Key: "reason", Value: []byte(why)}}}
	err := w.retry(ctx, "produce to the gifts dead-letter topic", 0, func() error {
		return w.kafka.ProduceSync(ctx, rec).FirstErr()
	})
	if err == nil {
		giftDLQTotal.Inc()
	}
	return err
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
		if o.succeeded {
			recs = append(recs, bus.GiftResult(topic, bus.GiftPush{
				RoomID: o.RoomID, Ticket: o.Ticket, SenderID: o.SenderID, ReceiverID: o.ReceiverID,
				GiftID: o.GiftID, Count: o.Count, EffectURL: o.EffectURL,
			}))
		}
		recs = append(recs, bus.TicketResult(topic, o.SenderID, bus.TicketPush{
			Ticket: o.Ticket, Kind: "gift", Status: giftStatus(o.succeeded), Reason: o.reason,
		}))
	}
	// Settling is best effort: MySQL already has the outcomes and GET
	// /tickets reads them there; ReconcileGiftHolds settles what is left.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := w.redis.SettleGifts(sctx, sets); err != nil {
		w.log.Warn("cannot settle gift holds in Redis", "gifts", len(sets), "err", err)
	}
	// A gift MySQL refused for lack of coins means the hot balance let it
	// through: it is above MySQL's (e.g. reloaded after a Redis flush while
	// gifts were in flight). Giving the coins back would keep it there, so
	// make it agree with MySQL again.
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
	return w.retry(ctx, "produce gift results", 0, func() error {
		return w.kafka.ProduceSync(ctx, recs...).FirstErr()
	})
}

// ReconcileGiftHolds ends gift holds that outlived PendingTimeout, so coins
// never stay held and no ticket stays pending for good:
//   - a hold whose ticket is decided (the worker committed it but could not
//     settle Redis) is settled as MySQL decided;
//   - a pending hold with no decision (the gateway died between the hold and
//     the produce, or could not undo a failed produce) fails with reason
//     "timeout" and its coins come back. The tickets table decides a race
//     with a late message: the worker then replays the failure.
//
// Claimed holds without a decision belong to a worker that is still trying
// MySQL; they are left alone. Holds have no index across users (their keys
// must share each user's hash tag), so this scans the keyspace: run it
// every FLASHGATE_RECONCILE_INTERVAL, not on a hot path.
func (w *Worker) ReconcileGiftHolds(ctx context.Context) error {
	cutoff := time.Now().Add(-w.cfg.PendingTimeout).UnixMilli()
	for _, node := range w.redis.C.Nodes() {
		var cursor uint64
		for {
			e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match("{u:*}:holds").Count(1000).Build()).AsScanEntry()
			if err != nil {
				return fmt.Errorf("cannot scan gift holds: %w", err)
			}
			for _, key := range e.Elements {
				if err := w.reconcileHolds(ctx, key, cutoff); err != nil {
					return err
				}
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	return nil
}

// reconcileHolds settles the stale holds of one user's holds hash.
func (w *Worker) reconcileHolds(ctx context.Context, key string, cutoff int64) error {
	idPart, ok := strings.CutPrefix(key, "{u:")
	if ok {
		idPart, ok = strings.CutSuffix(idPart, "}:holds")
	}
	userID, err := strconv.ParseInt(idPart, 10, 64)
	if !ok || err != nil || userID <= 0 {
		return nil // not one of ours
	}
	holds, err := w.redis.C.Do(ctx, w.redis.C.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		return fmt.Errorf("cannot read gift holds of user %d: %w", userID, err)
	}
	type staleHold struct {
		ticket  string
		pending bool
		heldAt  int64
	}
	var stale []staleHold
	var tickets, gone []string
	for t, v := range holds {
		state, rest, _ := strings.Cut(v, ":")
		if state == "a" {
			// Undone by the gateway: the marker only has to outlive any
			// late delivery of its message.
			if at, err := strconv.ParseInt(rest, 10, 64); err != nil || at < cutoff {
				gone = append(gone, t)
			}
			continue
		}
		_, ms, _ := strings.Cut(rest, ":")
		at, err := strconv.ParseInt(ms, 10, 64)
		if (state != "p" && state != "c") || err != nil || at >= cutoff {
			continue // young enough to be in flight
		}
		stale = append(stale, staleHold{t, state == "p", at})
		tickets = append(tickets, t)
	}
	if len(gone) > 0 {
		if err := w.redis.C.Do(ctx, w.redis.C.B().Hdel().Key(key).Field(gone...).Build()).Error(); err != nil {
			return fmt.Errorf("cannot drop undone gift holds of user %d: %w", userID, err)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	q, args, _ := sqlx.In("SELECT ticket, kind, user_id, ref_id, status, reason, order_no, created_at FROM tickets WHERE ticket IN (?)", tickets)
	var rows []db.Ticket
	if err := w.sql.SelectContext(ctx, &rows, q, args...); err != nil {
		return err
	}
	decided := make(map[string]db.Ticket, len(rows))
	for _, r := range rows {
		decided[r.Ticket] = r
	}
	var sets []store.GiftSettlement
	var recs []*kgo.Record
	for _, h := range stale {
		ref := store.GiftRef{SenderID: userID, Ticket: h.ticket}
		d, ok := decided[h.ticket]
		if !ok && !h.pending {
			continue // claimed: a worker is still on it
		}
		if !ok {
			// The room is not in the hold; 0 says "unknown" in ref_id.
			res, err := w.sql.ExecContext(ctx, `INSERT IGNORE INTO tickets (ticket, kind, user_id, ref_id, status, reason, created_at)
				VALUES (?, 'gift', ?, 0, 'failed', ?, ?)`, h.ticket, userID, ReasonTimeout, time.UnixMilli(h.heldAt).UTC())
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				giftTicketsDecided.WithLabelValues("failed", ReasonTimeout).Inc()
				w.log.Warn("gift hold timed out without its gift; coins given back", "ticket", h.ticket, "user", userID)
				sets = append(sets, store.GiftSettlement{GiftRef: ref})
				recs = append(recs, bus.TicketResult(w.cfg.ResultsTopic(), userID, bus.TicketPush{
					Ticket: h.ticket, Kind: "gift", Status: "failed", Reason: ReasonTimeout,
				}))
				continue
			}
			// Decided by a worker in the meantime.
			if d, err = w.db.Ticket(ctx, h.ticket); err != nil {
				return err
			}
		}
		sets = append(sets, store.GiftSettlement{GiftRef: ref, Committed: d.Status == "succeeded"})
	}
	if err := w.redis.SettleGifts(ctx, sets); err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	return w.kafka.ProduceSync(ctx, recs...).FirstErr()
}
