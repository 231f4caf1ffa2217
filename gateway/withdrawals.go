package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/flashgate/flashgate/internal/apierr"
	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/obs"
	"github.com/flashgate/flashgate/internal/wallet"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Anchor withdrawals: an anchor pays earnings out. The request deducts the
// earnings and queues the payout in MySQL in one transaction; the worker
// pays it out later (worker/payouts.go). Not on the hot path.

var withdrawalsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
	Namespace: obs.Namespace, Subsystem: "gateway", Name: "withdrawals_total",
	Help: "Withdrawal requests by result: accepted, replay, insufficient_balance.",
}, []string{"result"})

// maxWithdrawal bounds one withdrawal, in coins of earnings.
const maxWithdrawal = 100_000_000

// newPayoutKey returns a withdrawal's payout idempotency key: 128 random
// bits, so that no other installation, and no restore of this database
// (where ids repeat), ever sends the provider the same key for another
// payout.
func newPayoutKey() string {
	var b [16]byte
	rand.Read(b[:])
	return "wd_" + hex.EncodeToString(b[:])
}

func withdrawalAccepted(id int64) map[string]any {
	return map[string]any{"withdrawal_id": id, "status": "pending"}
}

// createWithdrawalReq is the body of POST /withdrawals.
type createWithdrawalReq struct {
	Amount *int64 `json:"amount"`
}

// createWithdrawal deducts the earnings and queues the payout in one
// transaction: the withdrawal row, its ledger row and the outbox message
// exist together or not at all. The worker pays it out later.
func (s *Server) createWithdrawal(rc *reqCtx) *apierr.Error {
	var req createWithdrawalReq
	if e := rc.decode(&req, false); e != nil {
		return e
	}
	key, e := rc.idemKey()
	if e != nil {
		return e
	}
	if req.Amount == nil || *req.Amount <= 0 || *req.Amount > maxWithdrawal {
		return apierr.InvalidRequest.With("amount must be an integer from 1 to " + itoa(maxWithdrawal))
	}
	uid, amount := rc.claims.UserID, *req.Amount
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	id, err := s.mysql.CreateWithdrawal(ctx, uid, amount, key, newPayoutKey(), func(tx *sqlx.Tx, id int64) error {
		if _, err := wallet.Apply(ctx, tx, wallet.Change{
			UserID: uid, Account: wallet.AccountEarnings, Kind: wallet.KindWithdrawal, Ref: itoa(id), Amount: -amount,
		}); err != nil {
			return err
		}
		payload, _ := json.Marshal(bus.Withdrawal{WithdrawalID: id, UserID: uid, Amount: amount})
		return db.QueueMessage(ctx, tx, s.cfg.WithdrawalsTopic(), strconv.FormatInt(uid, 10), payload)
	})
	switch {
	case err == nil:
		withdrawalsTotal.WithLabelValues("accepted").Inc()
		s.log.Info("withdrawal accepted", "withdrawal", id, "user", uid, "amount", amount)
		return rc.writeJSON(202, withdrawalAccepted(id))
	case errors.Is(err, wallet.ErrInsufficient):
		withdrawalsTotal.WithLabelValues("insufficient_balance").Inc()
		return apierr.InsufficientBalance.With("not enough earnings")
	case db.IsDuplicate(err) && key != "":
		first, err := s.mysql.WithdrawalByIdem(ctx, uid, key)
		if err != nil {
			s.log.Warn("cannot read the withdrawal of a repeated Idempotency-Key", "err", err)
			return apierr.Unavailable
		}
		withdrawalsTotal.WithLabelValues("replay").Inc()
		return rc.writeJSON(202, withdrawalAccepted(first))
	}
	s.log.Error("cannot create withdrawal", "user", uid, "err", err)
	return apierr.Unavailable
}

func (s *Server) getWithdrawal(rc *reqCtx) *apierr.Error {
	id, e := pathID(rc.params[0])
	if e != nil {
		return e
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	w, err := s.mysql.WithdrawalState(ctx, id)
	// Another user's withdrawal is "not found", as for pay orders.
	if errors.Is(err, db.ErrNotFound) || (err == nil && w.UserID != rc.claims.UserID) {
		return apierr.NotFound.With("no such withdrawal")
	}
	if err != nil {
		s.log.Warn("cannot read withdrawal", "err", err)
		return apierr.Unavailable
	}
	return rc.writeJSON(200, map[string]any{
		"withdrawal_id": id, "amount": w.Amount, "status": w.Status, "created_at": ts(w.CreatedAt),
	})
}
