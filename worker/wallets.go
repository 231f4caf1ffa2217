package worker

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/obs"
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
	hot, gone, err := w.redis.HotWallets(ctx, users)
	if err != nil {
		return err
	}
	var tickets []string
	for _, hw := range hot {
		for t := range hw.Held {
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
	for u, hw := range hot {
		want := balances[u]
		for t, coins := range hw.Held {
			if _, ok := decided[t]; !ok {
				want -= coins
			}
		}
		if hw.Balance != want {
			gaps[u] = hw.Balance - want
		}
	}
	return nil
}
