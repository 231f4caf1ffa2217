package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/flashgate/flashgate/internal/config"
)

// The web client (package web) in headless Chromium against the whole
// system in dev mode: two browser contexts are two users.

// TestWebLastUnitSoldOutLive: A buys the last unit; B, on the same page,
// sees the stock reach 0 and a sold-out button without reloading, over the
// WebSocket's watch and not from a new read of the event list.
func TestWebLastUnitSoldOutLive(t *testing.T) {
	s := start(t, options{})
	ev := s.liveEvent(1)
	b := newBrowser(t)
	a, bb := b.tab("A"), b.tab("B")
	a.open(s.gateway+"/", 101)
	bb.open(s.gateway+"/", 102)
	card := fmt.Sprintf(`document.querySelector('[data-event-id="%d"]')`, ev)
	for _, tb := range []*tab{a, bb} {
		tb.waitJS("the sale with 1 left", card+`?.querySelector(".stock-left").dataset.stock === "1" && !`+card+`.querySelector(".buy").disabled`, 10*time.Second)
	}
	before := len(bb.requests("/api/v1/events"))
	a.do("buy", chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-event-id="%d"] .buy`, ev))))
	bb.waitJS("stock 0 and a sold-out button on B's page",
		card+`.querySelector(".stock-left").dataset.stock === "0" && `+card+`.querySelector(".buy").disabled && `+
			card+`.querySelector(".buy").textContent === "Sold out"`, 15*time.Second)
	bb.stillSamePage()
	if after := bb.requests("/api/v1/events"); len(after) != before {
		t.Errorf("B's page read the events again (%v): the stock must come over the socket", after[before:])
	}
	if n := s.count("SELECT COUNT(*) FROM orders WHERE event_id = ?", ev); n != 1 {
		t.Errorf("%d orders for the event, want 1", n)
	}
}

// TestWebTicketPushed: A's ticket turns succeeded on the page from the
// socket's push, without a single GET of the ticket; then A pays the order,
// which the order list shows with its expiry countdown until then, and
// cancels the order of another sale, whose unit goes back on sale.
func TestWebTicketPushed(t *testing.T) {
	s := start(t, options{})
	ev := s.liveEvent(5)
	// An upcoming sale too: its countdown and disabled button.
	s.createEvent(5, time.Now().Add(2*time.Hour), time.Now().Add(3*time.Hour))
	b := newBrowser(t)
	a := b.tab("A")
	a.open(s.gateway+"/", 201)
	sel := fmt.Sprintf(`[data-event-id="%d"]`, ev)
	a.waitJS("the live sale", `!document.querySelector('`+sel+` .buy').disabled`, 10*time.Second)
	a.waitJS("the upcoming sale's countdown", `[...document.querySelectorAll('.card[data-phase="upcoming"]')].some(c => /^Starts in \d/.test(c.querySelector(".countdown").textContent) && c.querySelector(".buy").disabled)`, 10*time.Second)
	a.do("buy", chromedp.Click(chromedp.CSS(sel+" .buy")))
	a.waitJS("the ticket succeeded", `document.querySelector('`+sel+` .ticket-status').dataset.status === "succeeded"`, 30*time.Second)
	a.stillSamePage()
	if got := a.requests("/api/v1/tickets/"); len(got) > 0 {
		t.Errorf("the page read the ticket over HTTP (%v): the outcome must be pushed", got)
	}
	ticket := eval[string](a, `document.querySelector('`+sel+` .ticket-status').dataset.ticket`)
	var orderNo string
	if err := s.db.Get(&orderNo, "SELECT order_no FROM orders WHERE event_id = ? AND user_id = ?", ev, 201); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.text(sel+" .ticket-status"), orderNo) {
		t.Errorf("the ticket status does not name order %s: %q (ticket %s)", orderNo, a.text(sel+" .ticket-status"), ticket)
	}
	row := fmt.Sprintf(`document.querySelector('[data-order-no="%s"]')`, orderNo)
	a.waitJS("the unpaid order with its expiry countdown", row+`?.dataset.status === "unpaid" && /expires in \d\d:\d\d/.test(`+row+`.querySelector(".expiry").textContent)`, 10*time.Second)
	a.screenshot("sale")
	a.do("pay", chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-order-no="%s"] button.primary`, orderNo))))
	a.waitJS("the paid order", row+`?.dataset.status === "paid"`, 15*time.Second)
	if n := s.count("SELECT COUNT(*) FROM orders WHERE order_no = ? AND status = 'paid'", orderNo); n != 1 {
		t.Errorf("order %s is not paid in MySQL", orderNo)
	}

	// Another sale, bought and cancelled: the unit is back on sale.
	ev2 := s.liveEvent(2)
	sel2 := fmt.Sprintf(`[data-event-id="%d"]`, ev2)
	a.do("reload for the new sale", chromedp.Reload())
	a.waitJS("the WebSocket", `document.querySelector("#push-status")?.dataset.state === "open"`, 15*time.Second)
	a.waitJS("the second sale", `document.querySelector('`+sel2+` .buy')?.disabled === false`, 10*time.Second)
	a.do("buy the second", chromedp.Click(chromedp.CSS(sel2+" .buy")))
	a.waitJS("the second ticket succeeded", `document.querySelector('`+sel2+` .ticket-status').dataset.status === "succeeded"`, 30*time.Second)
	var orderNo2 string
	if err := s.db.Get(&orderNo2, "SELECT order_no FROM orders WHERE event_id = ? AND user_id = ?", ev2, 201); err != nil {
		t.Fatal(err)
	}
	row2 := fmt.Sprintf(`document.querySelector('[data-order-no="%s"]')`, orderNo2)
	a.waitJS("the second order unpaid", row2+`?.dataset.status === "unpaid"`, 10*time.Second)
	a.do("cancel", chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-order-no="%s"] .actions button:not(.primary)`, orderNo2))))
	a.waitJS("the cancelled order, its unit back on sale and buyable again", row2+`?.dataset.status === "cancelled" && `+
		`document.querySelector('`+sel2+` .stock-left').dataset.stock === "2" && !document.querySelector('`+sel2+` .buy').disabled`, 15*time.Second)
	if n := s.count("SELECT COUNT(*) FROM orders WHERE order_no = ? AND status = 'cancelled'", orderNo2); n != 1 {
		t.Errorf("order %s is not cancelled in MySQL", orderNo2)
	}
}

// roomURL is the live-room page for room 1 with anchor 7.
func (s *system) roomURL() string { return s.gateway + "/room?room=1&anchor=7" }

// roomTab opens the room page in a browser of its own as user uid, whose
// wallet it seeds with balance coins, and waits for the balance shown.
func (s *system) roomTab(uid, balance int64) *tab {
	s.t.Helper()
	s.seedWallet(uid, balance)
	a := newBrowser(s.t).tab(fmt.Sprint("user ", uid))
	a.open(s.roomURL(), uid)
	a.waitJS("the balance", fmt.Sprintf(`document.querySelector("#balance").dataset.balance === "%d"`, balance), 10*time.Second)
	return a
}

// TestWebGiftFeed: viewers A and B join room 1; A sends a gift with the
// keyboard; B's feed shows it within a second of A's 202, A's balance drops
// by the price at once, and the leaderboard lists A.
func TestWebGiftFeed(t *testing.T) {
	s := start(t, options{})
	const ua, ub = 301, 302
	s.seedWallet(ua, 1000)
	s.seedWallet(ub, 500)
	b := newBrowser(t)
	a, bb := b.tab("A"), b.tab("B")
	a.open(s.roomURL(), ua)
	bb.open(s.roomURL(), ub)
	a.waitJS("A's balance", `document.querySelector("#balance").dataset.balance === "1000"`, 10*time.Second)
	// Heart costs 10 coins (sql/003_gifts.sql). Pick it and send 1 with Enter.
	a.do("send a Heart with the keyboard",
		chromedp.Click(chromedp.ID("gift-2")),
		chromedp.SetValue(chromedp.ID("gift-count"), "1"),
		chromedp.SendKeys(chromedp.ID("gift-count"), kb.Enter),
	)
	a.waitJS("the gift accepted", `document.querySelector("#gift-msg").dataset.status === "pending" || document.querySelector("#gift-msg").dataset.status === "succeeded"`, 10*time.Second)
	if got := eval[string](a, `document.querySelector("#balance").dataset.balance`); got != "990" {
		t.Errorf("A's balance shows %s right after the gift, want 990", got)
	}
	ticket := eval[string](a, `document.querySelector("#gift-msg").dataset.ticket`)
	sentAt := eval[float64](a, `Number(document.querySelector("#gift-msg").dataset.sentAt)`)
	item := fmt.Sprintf(`document.querySelector('#feed li[data-ticket="%s"]')`, ticket)
	bb.waitJS("the gift in B's feed", item+` !== null`, 10*time.Second)
	got := eval[float64](bb, `Number(`+item+`.dataset.receivedAt)`)
	if d := time.Duration(got-sentAt) * time.Millisecond; d > time.Second {
		t.Errorf("B's feed showed the gift %v after A's page had its 202, want within 1s", d)
	} else {
		t.Logf("B's feed showed the gift %v after A's 202", d)
	}
	if !strings.Contains(bb.text("#feed"), fmt.Sprintf("User %d sent 1 × Heart to user 7", ua)) {
		t.Errorf("B's feed says %q", bb.text("#feed"))
	}
	for _, tb := range []*tab{a, bb} {
		tb.waitJS("A on the leaderboard", fmt.Sprintf(`document.querySelector('#board li[data-user="%d"]')?.dataset.coins === "10"`, ua), 15*time.Second)
		tb.stillSamePage()
	}
	a.waitJS("A's gift confirmed", `document.querySelector("#gift-msg").dataset.status === "succeeded"`, 15*time.Second)
	if bal, _ := s.walletRowBalances(ua); bal != 990 {
		t.Errorf("A's MySQL balance is %d, want 990", bal)
	}
	bb.screenshot("room")
}

// TestWebGiftInsufficient: a gift larger than the balance shows the
// insufficient-balance sentence, and nothing changes: not the balance on
// the page, in Redis or in MySQL, and no gift is written.
func TestWebGiftInsufficient(t *testing.T) {
	s := start(t, options{})
	const ua = 401
	a := s.roomTab(ua, 5)
	// Castle costs 1000.
	a.do("send a Castle", chromedp.Click(chromedp.ID("gift-4")), chromedp.Click(chromedp.ID("send-gift")))
	a.waitJS("the refusal", `document.querySelector("#gift-msg").dataset.status === "refused"`, 10*time.Second)
	if msg := a.text("#gift-msg"); !strings.Contains(msg, "enough coins") {
		t.Errorf("the refusal says %q, want the insufficient-balance sentence", msg)
	}
	if got := eval[string](a, `document.querySelector("#balance").dataset.balance`); got != "5" {
		t.Errorf("the page shows a balance of %s after the refusal, want 5", got)
	}
	w := s.do("GET", "/api/v1/wallet", s.token(ua), "")
	if w.Body["balance"] != float64(5) {
		t.Errorf("GET /wallet after the refusal: %s, want balance 5", w.Raw)
	}
	if bal, _ := s.walletRowBalances(ua); bal != 5 {
		t.Errorf("MySQL balance %d after the refusal, want 5", bal)
	}
	if h := s.hotBalance(ua); h != 5 && h != -1 {
		t.Errorf("Redis balance %d after the refusal, want 5", h)
	}
	if n := s.count("SELECT COUNT(*) FROM gift_records WHERE sender_id = ?", ua); n != 0 {
		t.Errorf("%d gift records for the refused sender", n)
	}
	if n := s.count("SELECT COUNT(*) FROM tickets WHERE user_id = ?", ua); n != 0 {
		t.Errorf("%d tickets for the refused sender", n)
	}
	a.stillSamePage()
}

// TestWebRecharge: in dev mode a recharge through the page pays with the
// sandbox and the balance shown grows by the product's coins. Then, as an
// anchor, the user sees their earnings and withdraws part of them.
func TestWebRecharge(t *testing.T) {
	s := start(t, options{mutate: fastPayouts})
	const ua = 501
	p := s.do("GET", "/api/v1/pay/products", "", "")
	products, _ := p.Body["products"].([]any)
	if len(products) == 0 {
		t.Fatalf("no pay products: %s", p.Raw)
	}
	first := products[0].(map[string]any)
	id, coins := int64(first["id"].(float64)), int64(first["coins"].(float64))
	a := s.roomTab(ua, 3)
	a.do("recharge", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#products button[data-product="%d"]`, id))))
	want := strconv.FormatInt(3+coins, 10)
	a.waitJS("the credited balance", `document.querySelector("#balance").dataset.balance === "`+want+`"`, 30*time.Second)
	if msg := a.text("#recharge-msg"); !strings.Contains(msg, "added to your balance") {
		t.Errorf("the recharge message says %q", msg)
	}
	if bal, _ := s.walletRowBalances(ua); bal != 3+coins {
		t.Errorf("MySQL balance %d after the recharge, want %d", bal, 3+coins)
	}

	s.giveEarnings(ua, 50)
	a.do("refresh the wallet", chromedp.Click(chromedp.ID("wallet-refresh")))
	a.waitJS("the earnings", `document.querySelector("#earnings").dataset.earnings === "50"`, 10*time.Second)
	a.do("withdraw 20",
		chromedp.SetValue(chromedp.ID("withdraw-amount"), "20"),
		chromedp.SendKeys(chromedp.ID("withdraw-amount"), kb.Enter),
	)
	a.waitJS("the payout", `document.querySelector("#withdraw-msg").dataset.kind === "ok" && document.querySelector("#earnings").dataset.earnings === "30"`, 30*time.Second)
	if n := s.count("SELECT COUNT(*) FROM withdrawals WHERE user_id = ? AND amount = 20 AND status = 'succeeded'", ua); n != 1 {
		t.Errorf("%d succeeded withdrawals of 20 in MySQL, want 1 (page says %q)", n, a.text("#withdraw-msg"))
	}
	a.stillSamePage()
}

// TestWebReconnect: ws restarts, which closes every socket from the server
// side; the page reconnects with backoff, joins its room again and shows
// the next gift.
func TestWebReconnect(t *testing.T) {
	s := start(t, options{})
	const ub, uc = 601, 602
	s.seedWallet(uc, 100)
	b := newBrowser(t)
	bb := b.tab("B")
	bb.open(s.roomURL(), ub)
	bb.waitJS("one socket so far", `document.querySelector("#push-status").dataset.opens === "1"`, 5*time.Second)
	s.restartWS()
	bb.waitJS("the page reconnected", `document.querySelector("#push-status").dataset.opens === "2" && document.querySelector("#push-status").dataset.state === "open"`, 30*time.Second)
	g := s.gift(1, uc, 7, 1, 3)
	if g.Status != 202 {
		t.Fatalf("gift: %d %s", g.Status, g.Raw)
	}
	item := fmt.Sprintf(`document.querySelector('#feed li[data-ticket="%s"]')`, g.str("ticket"))
	bb.waitJS("the next gift in the feed", item+` !== null`, 15*time.Second)
	if src := eval[string](bb, item+`.dataset.source`); src != "push" {
		t.Errorf("the gift reached the feed from %q, want the socket's push", src)
	}
	bb.stillSamePage()
	if n := s.count("SELECT COUNT(*) FROM gift_records WHERE ticket = ?", g.str("ticket")); n != 1 {
		t.Errorf("%d gift records for the gift", n)
	}
}

// TestWebRetryAfter: a 429 is told as a sentence, and the send button stays
// off for the answer's Retry-After, counting down, before it sends again.
func TestWebRetryAfter(t *testing.T) {
	s := start(t, options{mysqlProxy: true, mutate: func(c *config.Config) { c.RateGift = config.Rate{PerSecond: 0.25, Burst: 1} }})
	const ua = 801
	a := s.roomTab(ua, 100)
	// The first gift is written only after the 429: its outcome then
	// arrives late, and must not overwrite the refusal, which speaks of the
	// last press. (The wallet is hot in Redis; the presses need no MySQL.)
	s.mysqlProxy.Stall()
	a.do("first gift", chromedp.Click(chromedp.ID("send-gift")))
	a.waitJS("the first gift accepted", `document.querySelector("#balance").dataset.balance === "99"`, 10*time.Second)
	a.do("second gift", chromedp.Click(chromedp.ID("send-gift")))
	a.waitJS("the 429", `document.querySelector("#gift-msg").dataset.status === "refused"`, 10*time.Second)
	s.mysqlProxy.Resume()
	a.waitJS("the first gift delivered, in the feed", `document.querySelector("#feed li[data-source=push]") !== null`, 10*time.Second)
	if msg := a.text("#gift-msg"); !strings.Contains(msg, "Too many requests. Wait") {
		t.Errorf("the 429 says %q", msg)
	}
	if !eval[bool](a, `document.querySelector("#send-gift").disabled && Number(document.querySelector("#send-gift").dataset.retry) >= 1`) {
		t.Errorf("the send button is not held off after a 429: %q", a.text("#send-gift"))
	}
	posts := len(a.requests("POST " + s.gateway + "/api/v1/rooms/1/gifts"))
	a.waitJS("the button back after Retry-After", `!document.querySelector("#send-gift").disabled && !document.querySelector("#send-gift").dataset.retry`, 15*time.Second)
	if got := len(a.requests("POST " + s.gateway + "/api/v1/rooms/1/gifts")); got != posts || posts != 2 {
		t.Errorf("%d gift requests before the button came back, %d after, want 2 and 2", posts, got)
	}
	a.do("third gift", chromedp.Click(chromedp.ID("send-gift")))
	a.waitJS("the third gift accepted", `document.querySelector("#balance").dataset.balance === "98"`, 10*time.Second)
}

// TestWebAdmin: the admin page, on the internal listener, creates a sale
// and adds stock to it with a pasted admin token; a user token is refused
// with a sentence.
func TestWebAdmin(t *testing.T) {
	s := start(t, options{noWS: true})
	b := newBrowser(t)
	a := b.tab("admin")
	a.do("open the admin page",
		chromedp.Navigate(s.gatewayInternal+"/admin"),
		chromedp.WaitVisible(chromedp.ID("token-form")),
		chromedp.SetValue(chromedp.ID("paste-token"), s.token(5)),
		chromedp.SendKeys(chromedp.ID("paste-token"), kb.Enter),
		chromedp.SetValue(chromedp.ID("ev-name"), "web admin sale"),
		chromedp.Click(chromedp.CSS("#create-form button")),
	)
	a.waitJS("the refusal of a user token", `document.querySelector("#create-msg").dataset.kind === "error"`, 10*time.Second)
	if msg := a.text("#create-msg"); !strings.Contains(msg, "not an admin token") {
		t.Errorf("a user token's refusal says %q", msg)
	}
	a.do("create a sale",
		chromedp.Click(chromedp.CSS("#signin summary")), // signed in, the token form is folded away
		chromedp.SetValue(chromedp.ID("paste-token"), s.adminToken()),
		chromedp.SendKeys(chromedp.ID("paste-token"), kb.Enter),
		chromedp.Click(chromedp.CSS("#create-form button")),
	)
	a.waitJS("the sale created", `document.querySelector("#create-msg").dataset.kind === "ok"`, 10*time.Second)
	var id int64
	if err := s.db.Get(&id, "SELECT id FROM events WHERE name = 'web admin sale'"); err != nil {
		t.Fatalf("the sale is not in MySQL: %v (page says %q)", err, a.text("#create-msg"))
	}
	if n := s.count("SELECT stock FROM events WHERE id = ?", id); n != 100 {
		t.Errorf("stock %d, want the form's 100", n)
	}
	// Stock goes to live sales only: make it live.
	live := s.liveEvent(10)
	a.do("add stock",
		chromedp.SetValue(chromedp.ID("st-event"), fmt.Sprint(live)),
		chromedp.SetValue(chromedp.ID("st-delta"), "5"),
		chromedp.SendKeys(chromedp.ID("st-delta"), kb.Enter),
	)
	a.waitJS("the stock added", `document.querySelector("#stock-msg").dataset.kind === "ok"`, 10*time.Second)
	if n := s.count("SELECT stock_total FROM events WHERE id = ?", live); n != 15 {
		t.Errorf("stock_total %d after adding 5 to 10, want 15 (page says %q)", n, a.text("#stock-msg"))
	}
}
