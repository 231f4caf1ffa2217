package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flashgate/flashgate/internal/apierr"
	"github.com/flashgate/flashgate/internal/bus"
	"github.com/flashgate/flashgate/internal/db"
	"github.com/flashgate/flashgate/internal/obs"
	"github.com/flashgate/flashgate/internal/sandbox"
	"github.com/flashgate/flashgate/internal/wallet"
)

// Recharge (buying coins) and anchor withdrawals (paying earnings out).
// Neither is on the hot path: both go straight to MySQL, where the money
// moves in one transaction with its ledger rows.

var (
	notifiesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "gateway", Name: "pay_notifies_total",
		Help: "Payment notifies by result: credited, replay, not_success, or the reason they were refused.",
	}, []string{"result"})
	withdrawalsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: "gateway", Name: "withdrawals_total",
		Help: "Withdrawal requests by result: accepted, replay, insufficient_balance.",
	}, []string{"result"})
)

const (
	// maxWithdrawal bounds one withdrawal, in coins of earnings.
	maxWithdrawal = 100_000_000
	// productsTTL is how long the product list is served from memory.
	productsTTL = 5 * time.Second
	// hotCreditWindow bounds how long after its payment a replayed notify
	// may still credit the Redis hot balance. A wallet load marks the
	// recharges of the last hour as included (wallet.creditWindow); an older
	// one could be counted twice by a load that did not mark it.
	hotCreditWindow = 30 * time.Minute
)

// payState is the gateway's recharge and withdrawal state; the zero value
// is ready to use.
type payState struct {
	// sandbox is the built-in payment provider the dev endpoint drives.
	sandbox sandbox.Payments

	mu         sync.Mutex
	products   []payProduct
	productsAt time.Time
}

type payProduct struct {
	ID    int64  `db:"id" json:"id"`
	Name  string `db:"name" json:"name"`
	Price int64  `db:"price" json:"price"`
	Coins int64  `db:"coins" json:"coins"`
}

// payOrder is a pay_orders row.
type payOrder struct {
	OrderID     string         `db:"order_id"`
	UserID      int64          `db:"user_id"`
	ProductID   int64          `db:"product_id"`
	Amount      int64          `db:"amount"`
	Coins       int64          `db:"coins"`
	Status      string         `db:"status"`
	ProviderTxn sql.NullString `db:"provider_txn"`
	CreatedAt   time.Time      `db:"created_at"`
	PaidAt      *time.Time     `db:"paid_at"`
}

const payOrderCols = "order_id, user_id, product_id, amount, coins, status, provider_txn, created_at, paid_at"

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

func (o payOrder) json() payOrderJSON {
	j := payOrderJSON{OrderID: o.OrderID, Status: o.Status, Amount: o.Amount, Coins: o.Coins, ProductID: o.ProductID, CreatedAt: ts(o.CreatedAt)}
	if o.PaidAt != nil {
		p := ts(*o.PaidAt)
		j.PaidAt = &p
	}
	return j
}

// payProducts returns the active products, from memory when fresh.
func (s *Server) payProducts(ctx context.Context) ([]payProduct, error) {
	p := &s.pay
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.products != nil && time.Since(p.productsAt) < productsTTL {
		return p.products, nil
	}
	list := []payProduct{}
	if err := s.mysql.DB.SelectContext(ctx, &list, "SELECT id, name, price, coins FROM pay_products WHERE active = 1 ORDER BY price, id"); err != nil {
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

	var prod payProduct
	err := s.mysql.DB.GetContext(ctx, &prod, "SELECT id, name, price, coins FROM pay_products WHERE id = ? AND active = 1", *req.ProductID)
	if errors.Is(err, sql.ErrNoRows) {
		return apierr.NotFound.With("no such product")
	}
	if err != nil {
		s.log.Warn("cannot read pay product", "err", err)
		return apierr.Unavailable
	}
	id := newPayOrderID()
	// The Idempotency-Key is a unique column rather than a Redis record, so
	// two concurrent requests with one key cannot both create an order.
	_, err = s.mysql.DB.ExecContext(ctx, `INSERT INTO pay_orders (order_id, user_id, product_id, amount, coins, idem_key)
		VALUES (?, ?, ?, ?, ?, NULLIF(?, ''))`, id, uid, prod.ID, prod.Price, prod.Coins, key)
	if db.IsDuplicate(err) && key != "" {
		var o payOrder
		if err := s.mysql.DB.GetContext(ctx, &o, "SELECT "+payOrderCols+" FROM pay_orders WHERE user_id = ? AND idem_key = ?", uid, key); err != nil {
			s.log.Warn("cannot read the pay order of a repeated Idempotency-Key", "err", err)
			return apierr.Unavailable
		}
		// The first answer, as it was: the order was created paying.
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

func (s *Server) loadPayOrder(ctx context.Context, id string) (payOrder, error) {
	var o payOrder
	err := s.mysql.DB.GetContext(ctx, &o, "SELECT "+payOrderCols+" FROM pay_orders WHERE order_id = ?", id)
	if errors.Is(err, sql.ErrNoRows) {
		return o, db.ErrNotFound
	}
	return o, err
}

// payOrderByPath loads the pay order named in the path; a malformed id is
// simply not found.
func (s *Server) payOrderByPath(ctx context.Context, rc *reqCtx) (payOrder, *apierr.Error) {
	id := rc.params[0]
	if !validRef(id) {
		return payOrder{}, apierr.NotFound.With("no such pay order")
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
	if errors.Is(err, errTxnReused) {
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
		w := wallet.Wallets{Redis: s.redis, DB: s.mysql.DB}
		if err := w.CreditHot(ctx, o.UserID, o.Coins, wallet.KindRecharge, o.OrderID); err != nil {
			s.log.Error("recharge committed but not yet in the hot balance; the provider's retry or the worker will apply it", "order", o.OrderID, "err", err)
			return apierr.Unavailable
		}
		if _, err := s.mysql.DB.ExecContext(ctx, "UPDATE pay_orders SET hot_credited_at = NOW(3) WHERE order_id = ? AND hot_credited_at IS NULL", o.OrderID); err != nil {
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
func (s *Server) markPaid(ctx context.Context, o payOrder, txn string) (won bool, err error) {
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE pay_orders SET status = 'paid', paid_at = NOW(3), provider_txn = ? WHERE order_id = ? AND status = 'paying'", txn, o.OrderID)
		if db.IsDuplicate(err) {
			return errTxnReused
		}
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			won = false
			return errNothingToDo
		}
		if _, err := wallet.Apply(ctx, tx, wallet.Change{
			UserID: o.UserID, Account: wallet.AccountBalance, Kind: wallet.KindRecharge, Ref: o.OrderID, Amount: o.Coins,
		}); err != nil {
			return err
		}
		won = true
		return nil
	})
	if errors.Is(err, errNothingToDo) {
		return false, nil
	}
	return won, err
}

var (
	// errNothingToDo rolls back a transaction that found nothing to change.
	errNothingToDo = errors.New("nothing to do")
	// errTxnReused: a notify names a provider transaction that paid another order.
	errTxnReused = errors.New("provider transaction already used")
)

// inTx runs f in a transaction and commits it unless f fails; a lock
// conflict runs it again (db.InTx).
func (s *Server) inTx(ctx context.Context, f func(tx *sqlx.Tx) error) error {
	return db.InTx(ctx, s.mysql.DB, nil, f)
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

	var id int64
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		// The row comes first: its id is the ledger reference. A repeated
		// Idempotency-Key stops here, on the unique key, before any money moves.
		res, err := tx.ExecContext(ctx, "INSERT INTO withdrawals (user_id, amount, idem_key, payout_key) VALUES (?, ?, NULLIF(?, ''), ?)",
			uid, amount, key, newPayoutKey())
		if err != nil {
			return err
		}
		if id, err = res.LastInsertId(); err != nil {
			return err
		}
		if _, err := wallet.Apply(ctx, tx, wallet.Change{
			UserID: uid, Account: wallet.AccountEarnings, Kind: wallet.KindWithdrawal, Ref: itoa(id), Amount: -amount,
		}); err != nil {
			return err
		}
		payload, _ := json.Marshal(bus.Withdrawal{WithdrawalID: id, UserID: uid, Amount: amount})
		_, err = tx.ExecContext(ctx, "INSERT INTO outbox (topic, msg_key, payload) VALUES (?, ?, ?)",
			s.cfg.WithdrawalsTopic(), strconv.FormatInt(uid, 10), payload)
		return err
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
		var first int64
		if err := s.mysql.DB.GetContext(ctx, &first, "SELECT id FROM withdrawals WHERE user_id = ? AND idem_key = ?", uid, key); err != nil {
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
	var w struct {
		UserID    int64     `db:"user_id"`
		Amount    int64     `db:"amount"`
		Status    string    `db:"status"`
		CreatedAt time.Time `db:"created_at"`
	}
	err := s.mysql.DB.GetContext(ctx, &w, "SELECT user_id, amount, status, created_at FROM withdrawals WHERE id = ?", id)
	// Another user's withdrawal is "not found", as for pay orders.
	if errors.Is(err, sql.ErrNoRows) || (err == nil && w.UserID != rc.claims.UserID) {
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
