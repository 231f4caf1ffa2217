package worker

import (
	"context"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/rueidis"

	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/obs"
	"github.com/flashgate/flashgate/internal/store"
	"github.com/flashgate/flashgate/internal/wallet"
)

// The wallet reconciler: a hot balance must equal MySQL's balance minus the
// coins still held by gifts MySQL has not decided. One that is lower (a
// credit whose Redis step was lost) or higher (a debit Redis never saw) is
// resynced from MySQL. A gift in flight makes the two disagree for a moment,
// so a wallet is resynced only when two passes in a row find the same gap.

var walletResyncs = promauto.NewCounter(prometheus.CounterOpts{
	Namespace: obs.Namespace, Subsystem: "worker", Name: "wallet_resyncs_total",
	Help: "Hot balances found off MySQL's balance minus live holds on two passes in a row, and resynced.",
})

// walletBatch is how many wallets one pass compares at a time.
const walletBatch = 500

// ReconcileWallets compares every loaded hot balance with MySQL. It walks
// the per-bucket sets of loaded wallets ({w:B}:loaded), not the keyspace.
func (w *Worker) ReconcileWallets(ctx context.Context) error {
	gaps := map[int64]int64{}
	err := w.redis.ScanLoaded(ctx, func(users []int64) error {
		for len(users) > 0 {
			n := min(len(users), walletBatch)
			if err := w.walletGaps(ctx, users[:n], gaps); err != nil {
				return err
			}
			users = users[n:]
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.walletMu.Lock()
	prev := w.walletGaps1
	w.walletGaps1 = gaps
	w.walletMu.Unlock()
	for uid, gap := range gaps {
		if prev[uid] != gap {
			continue // not seen twice: maybe a gift in flight
		}
		if _, err := (wallet.Wallets{Redis: w.redis, DB: w.mysql.DB}).Resync(ctx, uid); err != nil {
			return err
		}
		walletResyncs.Inc()
		w.log.Warn("hot balance off MySQL; resynced", "user", uid, "gap", gap)
	}
	return nil
}

// walletGaps records, for the users whose hot balance is off MySQL's
// balance minus their live holds, by how much.
func (w *Worker) walletGaps(ctx context.Context, users []int64, gaps map[int64]int64) error {
	cmds := make(rueidis.Commands, 0, 2*len(users))
	for _, u := range users {
		cmds = append(cmds, w.redis.C.B().Get().Key(store.BalanceKey(u)).Build(), w.redis.C.B().Hgetall().Key(store.HoldsKey(u)).Build())
	}
	res := w.redis.C.DoMulti(ctx, cmds...)
	hot := map[int64]int64{}
	held := map[int64]map[string]int64{}
	var tickets []string
	var gone []int64
	for i, u := range users {
		b, err := res[2*i].AsInt64()
		if rueidis.IsRedisNil(err) {
			gone = append(gone, u) // deleted or evicted: not loaded any more
			continue
		}
		if err != nil {
			return err
		}
		holds, err := res[2*i+1].AsStrMap()
		if err != nil {
			return err
		}
		hot[u] = b
		held[u] = map[string]int64{}
		for t, v := range holds {
			state, rest, _ := strings.Cut(v, ":")
			if state != "p" && state != "c" {
				continue
			}
			coins, _, _ := strings.Cut(rest, ":")
			n, _ := strconv.ParseInt(coins, 10, 64)
			held[u][t] = n
			tickets = append(tickets, t)
		}
	}
	if err := w.redis.UnindexWallets(ctx, gone); err != nil {
		return err
	}
	decided, err := db.DecidedTickets(ctx, w.mysql.DB, tickets)
	if err != nil {
		return err
	}
	balances, err := db.SpendableBalances(ctx, w.mysql.DB, users)
	if err != nil {
		return err
	}
	for u, b := range hot {
		want := balances[u]
		for t, coins := range held[u] {
			if _, ok := decided[t]; !ok {
				want -= coins
			}
		}
		if b != want {
			gaps[u] = b - want
		}
	}
	return nil
}
