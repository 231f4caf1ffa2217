package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flashgate/flashgate/internal/obs"
	"github.com/flashgate/flashgate/internal/wallet"
)

// A recharge is credited in MySQL by the payment notify, which then adds
// the coins to the Redis hot balance and marks the pay order hot-credited.
// When that second step fails (Redis down, the gateway killed in between)
// and the provider's retry comes too late to do it again, or never comes,
// the coins are in MySQL but invisible to GET /wallet and to gifts. The
// repair sweep here finds such orders and brings the hot balance up to date.

var rechargesRepaired = promauto.NewCounterVec(prometheus.CounterOpts{
	Namespace: obs.Namespace, Subsystem: "worker", Name: "recharges_repaired_total",
	Help: "Paid recharges the notify did not get into the Redis hot balance, brought in by the worker, by how (credit or resync).",
}, []string{"how"})

const (
	// rechargeRepairEvery is how often the worker looks for paid recharges
	// missing from the hot balance.
	rechargeRepairEvery = time.Second
	// rechargeGrace is how long after its payment a recharge is left to its
	// notify, which may still be crediting Redis (it gives up after 10 s).
	rechargeGrace = 30 * time.Second
	// rechargeCreditWindow is how long after its payment a recharge may still
	// be credited to the hot balance by reference, as the gateway does
	// (gateway hotCreditWindow): well inside the hour that a wallet load
	// marks as included (wallet.creditWindow). An older one is brought in by
	// a resync from MySQL instead, which cannot count it twice.
	rechargeCreditWindow = 30 * time.Minute
	// rechargeRepairBatch is the most orders repaired in one round.
	rechargeRepairBatch = 100
)

// RepairRecharges brings paid recharges that are not marked hot-credited
// into the Redis hot balance and marks them: by a credit once per order
// (wallet.CreditHot) while that is safe, else by a resync of the wallet
// from MySQL (wallet.Wallets.Resync: the MySQL balance minus the coins held
// by gifts in flight).
func (w *Worker) RepairRecharges(ctx context.Context) error {
	orders, err := w.mysql.UnmarkedRecharges(ctx, rechargeGrace, rechargeCreditWindow, rechargeRepairBatch)
	if err != nil {
		return fmt.Errorf("cannot read recharges to repair: %w", err)
	}
	wallets := wallet.Wallets{Redis: w.redis, DB: w.mysql.DB}
	resynced := map[int64]bool{}
	var firstErr error
	for _, o := range orders {
		how := "credit"
		var err error
		switch {
		case o.Recent:
			err = wallets.CreditHot(ctx, o.UserID, o.Coins, wallet.KindRecharge, o.OrderID)
		case !resynced[o.UserID]:
			how = "resync"
			var done bool
			done, err = wallets.Resync(ctx, o.UserID)
			if err == nil && !done {
				continue // a load or resync is reading MySQL now; next round
			}
			resynced[o.UserID] = err == nil
		default:
			how = "resync" // the user's wallet was resynced a moment ago
		}
		if err == nil {
			err = w.mysql.MarkHotCredited(ctx, o.OrderID)
		}
		if err != nil {
			firstErr = firstError(firstErr, fmt.Errorf("cannot repair recharge %s: %w", o.OrderID, err))
			continue
		}
		rechargesRepaired.WithLabelValues(how).Inc()
		w.log.Warn("recharge brought into the hot balance by the worker", "order", o.OrderID, "user", o.UserID, "coins", o.Coins, "how", how)
	}
	return firstErr
}

func firstError(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
