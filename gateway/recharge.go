package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flashgate/flashgate/internal/apierr"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/obs"
	"github.com/flashgate/flashgate/internal/sandbox"
	"github.com/flashgate/flashgate/internal/wallet"
)

// Recharge: a user buys coins. A pay order is created paying; the payment
// provider's signed notify turns it paid and credits the coins, in MySQL in
// one transaction with the ledger row, then in the Redis hot balance.
// Recharge is not on the hot path: it goes straight to MySQL.

var notifiesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
	Namespace: obs.Namespace, Subsystem: "gateway", Name: "pay_notifies_total",
	Help: "Payment notifies by result: credited, replay, not_success, or the reason they were refused.",
}, []string{"result"})

const (
	// productsTTL is how long the product list is served from memory.
	productsTTL = 5 * time.Second
	// hotCreditWindow bounds how long after its payment a replayed notify
	// may still credit the Redis hot balance. A wallet load marks the
	// recharges of the last hour as included (wallet.creditWindow); an older
	// one could be counted twice by a load that did not mark it.
	hotCreditWindow = 30 * time.Minute
)

// rechargeState is the gateway's recharge state; the zero value is ready to use.
type rechargeState struct {
	// sandbox is the built-in payment provider the dev endpoint drives.
	sandbox sandbox.Payments

	mu         sync.Mutex
	products   []db.PayProduct
	productsAt time.Time
}

// rechargeOrder is a pay order: a user buying a coin pack.
type rechargeOrder db.RechargeOrder

// Pay order statuses.
const (
	payPaying = "paying"
	payPaid   = "paid"
)

// payOrderJSON is the API's pay order.
type payOrderJSON struct {
	OrderID   string  `json:"order_id"`
	Status    string  `json:"status"`
	Amount    int64   `json:"amount"`
	Coins     int64   `json:"coins"`
	ProductID int64   `json:"product_id"`
	CreatedAt string  `json:"created_at"`
	PaidAt    *string `json:"paid_at,omitempty"`
}

func (o rechargeOrder) json() payOrderJSON {
	j := payOrderJSON{OrderID: o.OrderID, Status: o.Status, Amount: o.Amount, Coins: o.Coins, ProductID: o.ProductID, CreatedAt: ts(o.CreatedAt)}
	if o.PaidAt != nil {
		p := ts(*o.PaidAt)
		j.PaidAt = &p
	}
	return j
}

// payProducts returns the active products, from memory when fresh.
func (s *Server) payProducts(ctx context.Context) ([]db.PayProduct, error) {
	p := &s.pay
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.products != nil && time.Since(p.productsAt) < productsTTL {
		return p.products, nil
	}
	list, err := s.mysql.PayProducts(ctx)
	if err != nil {
		return nil, err
	}
	p.products, p.productsAt = list, time.Now()
	return list, nil
}

func (s *Server) listPayProducts(rc *reqCtx) *apierr.Error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	list, err := s.payProducts(ctx)
	if err != nil {
		s.log.Warn("cannot list pay products", "err", err)
		return apierr.Unavailable
	}
	return rc.writeJSON(200, map[string]any{"products": list})
}

// newPayOrderID returns "P" and 16 upper-case hex digits.
func newPayOrderID() string {
	var b [8]byte
	rand.Read(b[:])
	return "P" + strings.ToUpper(hex.EncodeToString(b[:]))
}

// validRef reports whether a string id from a path or a body can name a
// row: 1 to 64 characters of A-Z a-z 0-9 _ -.
func validRef(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// createPayOrderReq is the body of POST /pay/orders.
type createPayOrderReq struct {
	ProductID *int64 `json:"product_id"`
}

func (s *Server) createPayOrder(rc *reqCtx) *apierr.Error {
	var req createPayOrderReq
	if e := rc.decode(&req, false); e != nil {
		return e
	}
	key, e := rc.idemKey()
	if e != nil {
		return e
	}
	if req.ProductID == nil || *req.ProductID <= 0 {
		return apierr.InvalidRequest.With("product_id must be a positive integer")
	}
	uid := rc.claims.UserID
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	prod, err := s.mysql.PayProduct(ctx, *req.ProductID)
	if errors.Is(err, db.ErrNotFound) {
		return apierr.NotFound.With("no such product")
	}
	if err != nil {
		s.log.Warn("cannot read pay product", "err", err)
		return apierr.Unavailable
	}
	id := newPayOrderID()
	err = s.mysql.CreateRechargeOrder(ctx, id, uid, prod, key)
	if db.IsDuplicate(err) && key != "" {
		first, err := s.mysql.RechargeOrderByIdem(ctx, uid, key)
		if err != nil {
			s.log.Warn("cannot read the pay order of a repeated Idempotency-Key", "err", err)
			return apierr.Unavailable
		}
		// The first answer, as it was: the order was created paying.
		o := rechargeOrder(first)
		o.Status, o.PaidAt = payPaying, nil
		return rc.writeJSON(201, o.json())
	}
	if err != nil {
		s.log.Warn("cannot create pay order", "err", err)
		return apierr.Unavailable
	}
	o, err := s.loadPayOrder(ctx, id)
	if err != nil {
		return apierr.Unavailable
	}
	s.log.Info("pay order created", "order", id, "user", uid, "product", prod.ID, "amount", prod.Price)
	return rc.writeJSON(201, o.json())
}

func (s *Server) loadPayOrder(ctx context.Context, id string) (rechargeOrder, error) {
	o, err := s.mysql.RechargeOrder(ctx, id)
	return rechargeOrder(o), err
}

// payOrderByPath loads the pay order named in the path; a malformed id is
// simply not found.
func (s *Server) payOrderByPath(ctx context.Context, rc *reqCtx) (rechargeOrder, *apierr.Error) {
	id := rc.params[0]
	if !validRef(id) {
		return rechargeOrder{}, apierr.NotFound.With("no such pay order")
	}
	o, err := s.loadPayOrder(ctx, id)
	if errors.Is(err, db.ErrNotFound) {
		return o, apierr.NotFound.With("no such pay order")
	}
	if err != nil {
		s.log.Warn("cannot read pay order", "err", err)
		return o, apierr.Unavailable
	}
	return o, nil
}

func (s *Server) getPayOrder(rc *reqCtx) *apierr.Error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	o, e := s.payOrderByPath(ctx, rc)
	if e != nil {
		return e
	}
	// Another user's order is "not found", as tickets are: the answer must
	// not confirm that an order id exists.
	if o.UserID != rc.claims.UserID {
		return apierr.NotFound.With("no such pay order")
	}
	return rc.writeJSON(200, o.json())
}

// checkSignature verifies X-Signature, the hex HMAC-SHA256 of the raw body
// with the pay secret, in constant time.
func (s *Server) checkSignature(rc *reqCtx) *apierr.Error {
	if s.cfg.PaySecret == "" {
		// An empty key would let anyone sign; Validate refuses it outside
		// dev mode, and a test config may still get here.
		return apierr.Unauthorized.With("payment notifies are not configured")
	}
	got, err := hex.DecodeString(string(rc.Request.Header.Peek("X-Signature")))
	if err != nil || len(got) != sha256.Size {
		return apierr.Unauthorized.With("missing or malformed X-Signature")
	}
	m := hmac.New(sha256.New, []byte(s.cfg.PaySecret))
	m.Write(rc.PostBody())
	if !hmac.Equal(m.Sum(nil), got) {
		return apierr.Unauthorized.With("bad payment signature")
	}
	return nil
}

// payNotifyReq is the body of POST /pay/notify, as the provider sends it.
type payNotifyReq struct {
	OrderID     *string `json:"order_id"`
	Status      *string `json:"status"`
	Amount      *int64  `json:"amount"`
	ProviderTxn *string `json:"provider_txn"`
}

// payNotify is the payment provider's callback. It credits the order's
// coins exactly once: the conditional UPDATE of the order and the ledger
// row commit together, and a replay finds the order paid and changes
// nothing. Every replay answers 200, so the provider stops retrying.
func (s *Server) payNotify(rc *reqCtx) *apierr.Error {
	// The signature covers the raw bytes, so it is checked before anything
	// reads them as JSON.
	if e := s.checkSignature(rc); e != nil {
		notifiesTotal.WithLabelValues("bad_signature").Inc()
		return e
	}
	var n payNotifyReq
	if e := rc.decode(&n, false); e != nil {
		notifiesTotal.WithLabelValues("invalid").Inc()
		return e
	}
	if n.OrderID == nil || n.Status == nil || n.Amount == nil || n.ProviderTxn == nil {
		notifiesTotal.WithLabelValues("invalid").Inc()
		return apierr.InvalidRequest.With("order_id, status, amount and provider_txn are required")
	}
	if !validRef(*n.ProviderTxn) {
		notifiesTotal.WithLabelValues("invalid").Inc()
		return apierr.InvalidRequest.With("provider_txn must be 1 to 64 characters of A-Z a-z 0-9 _ -")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !validRef(*n.OrderID) {
		notifiesTotal.WithLabelValues("not_found").Inc()
		return apierr.NotFound.With("no such pay order")
	}
	o, err := s.loadPayOrder(ctx, *n.OrderID)
	if errors.Is(err, db.ErrNotFound) {
		notifiesTotal.WithLabelValues("not_found").Inc()
		return apierr.NotFound.With("no such pay order")
	}
	if err != nil {
		s.log.Warn("cannot read pay order", "err", err)
		return apierr.Unavailable
	}
	if *n.Amount != o.Amount {
		notifiesTotal.WithLabelValues("amount_mismatch").Inc()
		s.log.Warn("pay notify with the wrong amount", "order", o.OrderID, "amount", *n.Amount, "want", o.Amount)
		return apierr.InvalidRequest.With("amount does not match the order")
	}
	if *n.Status != "success" {
		// A failed or cancelled payment: the order stays paying, the user
		// may pay again. Acknowledge so the provider stops sending it.
		notifiesTotal.WithLabelValues("not_success").Inc()
		s.log.Info("pay notify without success", "order", o.OrderID, "status", *n.Status)
		return rc.writeJSON(200, map[string]bool{"ok": true})
	}

	won, err := s.markPaid(ctx, o, *n.ProviderTxn)
	if errors.Is(err, db.ErrProviderTxnUsed) {
		notifiesTotal.WithLabelValues("txn_reused").Inc()
		s.log.Warn("pay notify reuses another order's provider_txn", "order", o.OrderID, "provider_txn", *n.ProviderTxn)
		return apierr.InvalidRequest.With("provider_txn already belongs to another order")
	}
	if err != nil {
		s.log.Error("cannot record payment", "order", o.OrderID, "err", err)
		return apierr.Unavailable
	}
	if !won {
		if o, err = s.loadPayOrder(ctx, o.OrderID); err != nil {
			return apierr.Unavailable
		}
		if o.ProviderTxn.String != *n.ProviderTxn {
			// A second, different payment for a paid order: the money must
			// go back to the payer, which is the provider's side.
			s.log.Warn("order paid twice by the provider; refund the second payment", "order", o.OrderID,
				"provider_txn", o.ProviderTxn.String, "second_txn", *n.ProviderTxn)
		}
	}
	// The credit is committed; now the Redis hot balance, once per order. A
	// replay does this again, so a crash between the commit and this heals
	// on the provider's next try; and a failure here answers 503 so that it
	// does try again. Once it is in, the order is marked hot-credited; the
	// worker's repair sweep brings in paid orders that never got the mark
	// (a retry that came after hotCreditWindow, or none at all).
	if won || (o.PaidAt != nil && time.Since(*o.PaidAt) < hotCreditWindow) {
		if err := s.wallets().CreditHot(ctx, o.UserID, o.Coins, wallet.KindRecharge, o.OrderID); err != nil {
			s.log.Error("recharge committed but not yet in the hot balance; the provider's retry or the worker will apply it", "order", o.OrderID, "err", err)
			return apierr.Unavailable
		}
		if err := s.mysql.MarkHotCredited(ctx, o.OrderID); err != nil {
			// The coins are in; without the mark the worker checks the
			// order again later, which changes nothing.
			s.log.Warn("cannot mark a recharge hot-credited", "order", o.OrderID, "err", err)
		}
	}
	if won {
		notifiesTotal.WithLabelValues("credited").Inc()
		s.log.Info("recharge credited", "order", o.OrderID, "user", o.UserID, "coins", o.Coins)
	} else {
		notifiesTotal.WithLabelValues("replay").Inc()
	}
	return rc.writeJSON(200, map[string]bool{"ok": true})
}

// markPaid turns the order paid and credits its coins in one transaction.
// It reports false, changing nothing, when the order was paid before.
func (s *Server) markPaid(ctx context.Context, o rechargeOrder, txn string) (won bool, err error) {
	return s.mysql.PayRechargeOrder(ctx, o.OrderID, txn, func(tx *sqlx.Tx) error {
		_, err := wallet.Apply(ctx, tx, wallet.Change{
			UserID: o.UserID, Account: wallet.AccountBalance, Kind: wallet.KindRecharge, Ref: o.OrderID, Amount: o.Coins,
		})
		return err
	})
}

// devCompletePayOrder makes the sandbox provider pay the order: it sends the
// signed notify over HTTP to the notify URL, as a real provider would, and
// answers with the order as the notify left it.
func (s *Server) devCompletePayOrder(rc *reqCtx) *apierr.Error {
	if e := rc.decode(&struct{}{}, true); e != nil {
		return e
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	o, e := s.payOrderByPath(ctx, rc)
	if e != nil {
		return e
	}
	url := s.cfg.PayNotifyURL
	if url == "" {
		// This gateway, at the address this request reached it on: right
		// whatever port it listens on, including a test's random one.
		url = "http://" + rc.LocalAddr().String() + "/api/v1/pay/notify"
	}
	if err := s.pay.sandbox.Notify(ctx, url, s.cfg.PaySecret, o.OrderID, o.Amount); err != nil {
		s.log.Warn("sandbox notify failed", "order", o.OrderID, "url", url, "err", err)
		return apierr.Unavailable.With("the sandbox provider's notify failed: " + err.Error())
	}
	if o, e = s.payOrderByPath(ctx, rc); e != nil {
		return e
	}
	return rc.writeJSON(200, o.json())
}
