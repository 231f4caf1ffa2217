package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashgate/flashgate/internal/config"
	"github.com/flashgate/flashgate/internal/store"
	"github.com/flashgate/flashgate/internal/testenv"
	"github.com/flashgate/flashgate/worker"
)

// TestGiftNoNegativeBalance: 200 concurrent 10-coin gifts from a wallet of
// 100 coins. Exactly 10 are accepted, each answering a different balance,
// the rest get 402; after the worker the wallet is 0 in Redis and MySQL and
// the coins debited equal the gift records and the receiver's earnings.
func TestGiftNoNegativeBalance(t *testing.T) {
	s := start(t, options{noWS: true})
	const sender, receiver, room, n = 11, 12, 77, 200
	s.seedWallet(sender, 100)

	answers := make([]answer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			answers[i], errs[i] = s.try("POST", fmt.Sprintf("/api/v1/rooms/%d/gifts", room), s.token(sender),
				fmt.Sprintf(`{"gift_id":%d,"receiver_id":%d,"count":1}`, giftHeart, receiver))
		}()
	}
	close(gate)
	wg.Wait()

	tickets := map[string]bool{}
	balances := map[float64]bool{}
	codes := map[string]int{}
	for i, a := range answers {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		switch {
		case a.Status == 202:
			codes["202"]++
			tk := a.str("ticket")
			if a.str("status") != "pending" || !strings.HasPrefix(tk, fmt.Sprintf("g%d-", sender)) || tickets[tk] {
				t.Errorf("202 body %s", a.Raw)
			}
			tickets[tk] = true
			bal, _ := a.Body["balance"].(float64)
			if balances[bal] {
				t.Errorf("two gifts answered balance %v", bal)
			}
			balances[bal] = true
		case a.Status == 402 && a.errCode() == "insufficient_balance":
			codes["402"]++
		default:
			t.Errorf("unexpected answer %d %s", a.Status, a.Raw)
		}
	}
	t.Logf("answers: %v", codes)
	if len(tickets) != 10 {
		t.Fatalf("%d gifts accepted, want exactly 10", len(tickets))
	}
	for b := 0; b < 100; b += 10 {
		if !balances[float64(b)] {
			t.Errorf("no gift answered balance %d; got %v", b, balances)
		}
	}

	s.waitFor("all gift tickets decided", func() bool {
		return s.count("SELECT COUNT(*) FROM tickets WHERE kind = 'gift'") == 10
	})
	if got := s.count("SELECT COUNT(*) FROM tickets WHERE kind = 'gift' AND status = 'succeeded' AND user_id = ? AND ref_id = ?", sender, room); got != 10 {
		t.Errorf("%d succeeded gift tickets, want 10", got)
	}
	if got := s.hotBalance(sender); got != 0 {
		t.Errorf("hot balance %d, want 0", got)
	}
	bal, _ := s.walletRowBalances(sender)
	_, earned := s.walletRowBalances(receiver)
	if bal != 0 || earned != 100 {
		t.Errorf("MySQL: sender balance %d (want 0), receiver earnings %d (want 100)", bal, earned)
	}
	if got := s.count("SELECT COUNT(*) FROM gift_records WHERE sender_id = ? AND receiver_id = ? AND room_id = ? AND coins = 10", sender, receiver, room); got != 10 {
		t.Errorf("%d gift records, want 10", got)
	}
	if got := s.count("SELECT COUNT(*) FROM ledger"); got != 20 {
		t.Errorf("%d ledger rows, want 20 (one debit and one credit per gift)", got)
	}
	if got := s.count("SELECT COALESCE(SUM(amount), 0) FROM ledger"); got != 0 {
		t.Errorf("ledger sums to %d, want 0 (debits = credits)", got)
	}
	s.waitFor("holds settled", func() bool { return s.openHolds(sender) == 0 })
	for tk := range tickets {
		if a := s.waitTicket(sender, tk); a.str("status") != "succeeded" || a.str("kind") != "gift" || a.str("created_at") == "" {
			t.Errorf("ticket %s: %s", tk, a.Raw)
		}
	}
	if w := s.do("GET", "/api/v1/wallet", s.token(receiver), ""); w.Status != 200 || w.Raw != fmt.Sprintf(`{"user_id":%d,"balance":0,"earnings":100}`, receiver) {
		t.Errorf("receiver's wallet: %d %s", w.Status, w.Raw)
	}
	if w := s.do("GET", "/api/v1/wallet", s.token(sender), ""); w.Raw != fmt.Sprintf(`{"user_id":%d,"balance":0,"earnings":0}`, sender) {
		t.Errorf("sender's wallet: %d %s", w.Status, w.Raw)
	}
	s.waitFor("leaderboard shows the sender", func() bool {
		b := s.leaderboard(room)
		return len(b) == 1 && b[0] == fmt.Sprintf("%d:100", sender)
	})
}

// TestGiftIdempotency: one Idempotency-Key sent twice in a row and then ten
// times at once returns the first 202 body every time and debits once; the
// same holds for a key whose first uses race to load the wallet.
func TestGiftIdempotency(t *testing.T) {
	s := start(t, options{noWS: true})
	const room, receiver = 5, 99
	for _, tc := range []struct {
		name       string
		sender     int64
		sequential int
	}{
		{"sequential then concurrent", 21, 2},
		{"concurrent on a wallet not loaded yet", 22, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.seedWallet(tc.sender, 100)
			key := fmt.Sprintf("gift-%d-key", tc.sender)
			var bodies []string
			for range tc.sequential {
				a := s.gift(room, tc.sender, receiver, giftHeart, 1, "Idempotency-Key", key)
				if a.Status != 202 {
					t.Fatalf("gift: %d %s", a.Status, a.Raw)
				}
				bodies = append(bodies, a.Raw)
			}
			concurrent := make([]answer, 10)
			var wg sync.WaitGroup
			for i := range concurrent {
				wg.Add(1)
				go func() {
					defer wg.Done()
					concurrent[i] = s.gift(room, tc.sender, receiver, giftHeart, 1, "Idempotency-Key", key)
				}()
			}
			wg.Wait()
			for _, a := range concurrent {
				if a.Status != 202 {
					t.Fatalf("concurrent repeat: %d %s", a.Status, a.Raw)
				}
				bodies = append(bodies, a.Raw)
			}
			for _, b := range bodies[1:] {
				if b != bodies[0] {
					t.Fatalf("answers differ:\n%s\n%s", bodies[0], b)
				}
			}
			var first struct {
				Ticket  string `json:"ticket"`
				Balance int64  `json:"balance"`
			}
			json.Unmarshal([]byte(bodies[0]), &first)
			if first.Balance != 90 {
				t.Errorf("first answer %s, want balance 90", bodies[0])
			}
			if a := s.waitTicket(tc.sender, first.Ticket); a.str("status") != "succeeded" {
				t.Fatalf("ticket: %s", a.Raw)
			}
			if got := s.count("SELECT COUNT(*) FROM gift_records WHERE sender_id = ?", tc.sender); got != 1 {
				t.Errorf("%d gift records, want 1", got)
			}
			if bal, _ := s.walletRowBalances(tc.sender); bal != 90 {
				t.Errorf("MySQL balance %d, want 90", bal)
			}
			if got := s.hotBalance(tc.sender); got != 90 {
				t.Errorf("hot balance %d, want 90", got)
			}
			// Another key is another gift.
			if a := s.gift(room, tc.sender, receiver, giftHeart, 1, "Idempotency-Key", key+"-2"); a.Status != 202 || a.str("ticket") == first.Ticket || a.Body["balance"] != float64(80) {
				t.Errorf("a new key: %d %s", a.Status, a.Raw)
			}
		})
	}
}

// TestGiftRedelivery: gift records processed twice by a worker that never
// committed its offsets, and then again by a real consumer group, debit,
// credit, record and count each gift exactly once.
func TestGiftRedelivery(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true})
	const room, receiver, n = 31, 300, 3
	tickets := map[string]int64{}
	for sender := int64(301); sender < 301+n; sender++ {
		s.seedWallet(sender, 100)
		a := s.gift(room, sender, receiver, giftHeart, 1)
		if a.Status != 202 {
			t.Fatalf("gift: %d %s", a.Status, a.Raw)
		}
		tickets[a.str("ticket")] = sender
		// Undecided: pending for its sender, unknown to anyone else.
		if p := s.do("GET", "/api/v1/tickets/"+a.str("ticket"), s.token(sender), ""); p.Status != 200 || p.str("status") != "pending" || p.str("kind") != "gift" {
			t.Errorf("held ticket: %d %s", p.Status, p.Raw)
		}
		if p := s.do("GET", "/api/v1/tickets/"+a.str("ticket"), s.token(receiver), ""); p.Status != 404 {
			t.Errorf("another user's gift ticket: %d %s", p.Status, p.Raw)
		}
	}

	s.crashAndRedeliver(s.cfg.GiftsTopic(), worker.GiftGroupName(s.cfg), n, (*worker.Worker).ProcessGiftRecords, (*worker.Worker).ConsumeGifts)

	if got := s.count("SELECT COUNT(*) FROM gift_records WHERE room_id = ?", room); got != n {
		t.Errorf("%d gift records, want %d", got, n)
	}
	if got := s.count("SELECT COUNT(*) FROM ledger"); got != 2*n {
		t.Errorf("%d ledger rows, want %d", got, 2*n)
	}
	if got := s.count("SELECT COUNT(*) FROM tickets WHERE kind = 'gift' AND status = 'succeeded'"); got != n {
		t.Errorf("%d succeeded tickets, want %d", got, n)
	}
	if _, earned := s.walletRowBalances(receiver); earned != 10*n {
		t.Errorf("receiver earnings %d, want %d", earned, 10*n)
	}
	var want []string
	for ticket, sender := range tickets {
		if bal, _ := s.walletRowBalances(sender); bal != 90 {
			t.Errorf("sender %d: MySQL balance %d, want 90", sender, bal)
		}
		if got := s.hotBalance(sender); got != 90 {
			t.Errorf("sender %d: hot balance %d, want 90", sender, got)
		}
		if h := s.openHolds(sender); h != 0 {
			t.Errorf("sender %d: %d holds left", sender, h)
		}
		if a := s.waitTicket(sender, ticket); a.str("status") != "succeeded" {
			t.Errorf("ticket %s: %s", ticket, a.Raw)
		}
		want = append(want, fmt.Sprintf("%d:10", sender))
	}
	sort.Strings(want) // equal coins: by user id, and these ids sort alike as strings
	if got := s.leaderboard(room); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("leaderboard %v, want %v", got, want)
	}
}

// TestRoomBroadcastTwoReplicas: a committed gift reaches every viewer that
// joined its room exactly once, whichever ws replica they are connected to;
// a viewer of another room gets nothing; the sender gets its ticket.
func TestRoomBroadcastTwoReplicas(t *testing.T) {
	s := start(t, options{})
	second := s.startSecondWS()
	const room, otherRoom, sender, receiver, prober = 41, 42, 401, 402, 490

	v1 := s.dialWSAt(s.ws, 411)
	v2 := s.dialWSAt(second, 412)
	v3 := s.dialWSAt(second, 413)
	senderFrames1 := wsFrames(t, s.dialWSAt(s.ws, sender))
	senderFrames2 := wsFrames(t, s.dialWSAt(second, sender))
	viewers := s.giftJoin(room, prober, v1, v2)
	if err := v3.WriteJSON(map[string]any{"type": "join", "room_id": otherRoom}); err != nil {
		t.Fatal(err)
	}
	other := wsFrames(t, v3)

	s.seedWallet(sender, 5000)
	a := s.gift(room, sender, receiver, giftCastle, 2)
	if a.Status != 202 || a.Body["balance"] != float64(3000) {
		t.Fatalf("gift: %d %s", a.Status, a.Raw)
	}
	ticket := a.str("ticket")
	want := map[string]any{"type": "gift", "room_id": float64(room), "ticket": ticket, "sender_id": float64(sender),
		"receiver_id": float64(receiver), "gift_id": float64(giftCastle), "count": float64(2),
		"effect_url": "https://static.flashgate.example/effects/castle.svga"}
	for i, ch := range viewers {
		m, ok := nextFrame(ch, 20*time.Second, isGift(ticket))
		if !ok {
			t.Fatalf("viewer %d did not receive the gift", i+1)
		}
		wb, _ := json.Marshal(want)
		if mb, _ := json.Marshal(m); string(mb) != string(wb) {
			t.Errorf("viewer %d got %s\nwant %s", i+1, mb, wb)
		}
	}
	for i, ch := range []<-chan map[string]any{senderFrames1, senderFrames2} {
		m, ok := nextFrame(ch, 20*time.Second, func(m map[string]any) bool { return m["type"] == "ticket" && m["ticket"] == ticket })
		if !ok || m["status"] != "succeeded" || m["kind"] != "gift" {
			t.Errorf("sender's connection %d: %v (received: %v)", i+1, m, ok)
		}
	}
	// Nothing twice, nothing in the other room.
	for i, ch := range viewers {
		if m, dup := nextFrame(ch, time.Second, isGift(ticket)); dup {
			t.Errorf("viewer %d received the gift twice: %v", i+1, m)
		}
	}
	if m, got := nextFrame(other, 100*time.Millisecond, isGift("")); got {
		t.Errorf("a viewer of room %d received %v", otherRoom, m)
	}
}

// TestGiftBadInput: malformed or impossible gifts get the API's 4xx with a
// JSON error body, never a 5xx, and hold no coins.
func TestGiftBadInput(t *testing.T) {
	s := start(t, options{noWS: true})
	const sender, room = 61, 8
	s.seedWallet(sender, 100)
	if w := s.do("GET", "/api/v1/wallet", s.token(sender), ""); w.Status != 200 || w.Body["balance"] != float64(100) {
		t.Fatalf("wallet: %d %s", w.Status, w.Raw)
	}
	path := fmt.Sprintf("/api/v1/rooms/%d/gifts", room)
	good := s.token(sender)
	body := func(gift, receiver, count any) string {
		return fmt.Sprintf(`{"gift_id":%v,"receiver_id":%v,"count":%v}`, gift, receiver, count)
	}
	cases := []errorCase{
		{"self gift", "POST", path, good, body(giftRose, sender, 1), nil, 400, "self_gift"},
		{"unknown gift", "POST", path, good, body(987, 7, 1), nil, 404, "not_found"},
		{"count 0", "POST", path, good, body(giftRose, 7, 0), nil, 400, "invalid_request"},
		{"count 10000", "POST", path, good, body(giftRose, 7, 10000), nil, 400, "invalid_request"},
		{"count negative", "POST", path, good, body(giftRose, 7, -1), nil, 400, "invalid_request"},
		{"count a string", "POST", path, good, body(giftRose, 7, `"1"`), nil, 400, "invalid_request"},
		{"count a fraction", "POST", path, good, body(giftRose, 7, 1.5), nil, 400, "invalid_request"},
		{"count missing", "POST", path, good, `{"gift_id":1,"receiver_id":7}`, nil, 400, "invalid_request"},
		{"gift missing", "POST", path, good, `{"receiver_id":7,"count":1}`, nil, 400, "invalid_request"},
		{"receiver missing", "POST", path, good, `{"gift_id":1,"count":1}`, nil, 400, "invalid_request"},
		{"receiver zero", "POST", path, good, body(giftRose, 0, 1), nil, 400, "invalid_request"},
		{"receiver overflow", "POST", path, good, body(giftRose, "99999999999999999999", 1), nil, 400, "invalid_request"},
		{"gift id null", "POST", path, good, body("null", 7, 1), nil, 400, "invalid_request"},
		{"malformed JSON", "POST", path, good, `{"gift_id":1,`, nil, 400, "invalid_request"},
		{"not an object", "POST", path, good, `[1]`, nil, 400, "invalid_request"},
		{"empty body", "POST", path, good, ``, nil, 400, "invalid_request"},
		{"trailing garbage", "POST", path, good, body(giftRose, 7, 1) + "x", nil, 400, "invalid_request"},
		{"bad idempotency key", "POST", path, good, body(giftRose, 7, 1), []string{"Idempotency-Key", "a b"}, 400, "invalid_request"},
		{"missing token", "POST", path, "", body(giftRose, 7, 1), nil, 401, "unauthorized"},
		{"room id not a number", "POST", "/api/v1/rooms/abc/gifts", good, body(giftRose, 7, 1), nil, 404, "not_found"},
		{"room id zero", "POST", "/api/v1/rooms/0/gifts", good, body(giftRose, 7, 1), nil, 404, "not_found"},
		{"wrong method", "DELETE", path, good, ``, nil, 405, "method_not_allowed"}, // GET lists the room's recent gifts
		{"more than the wallet", "POST", path, good, body(giftRocket, 7, 2), nil, 402, "insufficient_balance"},
		{"leaderboard of room abc", "GET", "/api/v1/rooms/abc/leaderboard", "", ``, nil, 404, "not_found"},
		{"wallet without token", "GET", "/api/v1/wallet", "", ``, nil, 401, "unauthorized"},
		{"malformed gift ticket", "GET", fmt.Sprintf("/api/v1/tickets/g%d-xyz", sender), good, ``, nil, 404, "not_found"},
		{"unknown gift ticket", "GET", fmt.Sprintf("/api/v1/tickets/g%d-0123456789abcdef", sender), good, ``, nil, 404, "not_found"},
	}
	checkErrorCases(t, s, cases)
	if got := s.hotBalance(sender); got != 100 {
		t.Errorf("hot balance %d after bad requests, want 100", got)
	}
	if h := s.openHolds(sender); h != 0 {
		t.Errorf("%d holds after bad requests", h)
	}
	// And the endpoint still works for a good request, debiting once.
	a := s.gift(room, sender, 7, giftRose, 3)
	if a.Status != 202 || a.Body["balance"] != float64(97) {
		t.Fatalf("good gift after bad ones: %d %s", a.Status, a.Raw)
	}
	if tk := s.waitTicket(sender, a.str("ticket")); tk.str("status") != "succeeded" {
		t.Fatalf("ticket: %s", tk.Raw)
	}
	if bal, _ := s.walletRowBalances(sender); bal != 97 {
		t.Errorf("MySQL balance %d, want 97", bal)
	}
}

// TestGiftCatalog: the catalog lists the active gifts and follows changes
// to the table without a restart; an inactive gift cannot be sent.
func TestGiftCatalog(t *testing.T) {
	s := start(t, options{noWS: true, mutate: func(c *config.Config) { c.GiftCatalogTTL = 100 * time.Millisecond }})
	a := s.do("GET", "/api/v1/gifts", "", "")
	want := `{"gifts":[` +
		`{"id":1,"name":"Rose","price":1,"effect_url":"https://static.flashgate.example/effects/rose.svga"},` +
		`{"id":2,"name":"Heart","price":10,"effect_url":"https://static.flashgate.example/effects/heart.svga"},` +
		`{"id":3,"name":"Rocket","price":100,"effect_url":"https://static.flashgate.example/effects/rocket.svga"},` +
		`{"id":4,"name":"Castle","price":1000,"effect_url":"https://static.flashgate.example/effects/castle.svga"}]}`
	if a.Status != 200 || a.Raw != want {
		t.Fatalf("GET /gifts: %d %s\nwant %s", a.Status, a.Raw, want)
	}
	if _, err := s.db.Exec("INSERT INTO gifts (id, name, price, effect_url) VALUES (50, 'Star', 5, 'https://x.example/star')"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec("UPDATE gifts SET active = 0 WHERE id = ?", giftCastle); err != nil {
		t.Fatal(err)
	}
	s.waitFor("catalog refreshed", func() bool {
		a := s.do("GET", "/api/v1/gifts", "", "")
		return strings.Contains(a.Raw, `"Star"`) && !strings.Contains(a.Raw, `"Castle"`)
	})
	const sender = 71
	s.seedWallet(sender, 10_000)
	if a := s.gift(9, sender, 72, giftCastle, 1); a.Status != 404 || a.errCode() != "not_found" {
		t.Errorf("inactive gift: %d %s", a.Status, a.Raw)
	}
	a = s.gift(9, sender, 72, 50, 3)
	if a.Status != 202 || a.Body["balance"] != float64(10_000-15) {
		t.Fatalf("new gift: %d %s", a.Status, a.Raw)
	}
	if tk := s.waitTicket(sender, a.str("ticket")); tk.str("status") != "succeeded" {
		t.Fatalf("ticket: %s", tk.Raw)
	}
	if got := s.count("SELECT coins FROM gift_records WHERE gift_id = 50 AND count = 3"); got != 15 {
		t.Errorf("gift record coins %d, want 15", got)
	}
}

// TestLeaderboard: the top 20 senders of a room by coins, highest first,
// ties by user id; other rooms have their own (possibly empty) boards.
func TestLeaderboard(t *testing.T) {
	s := start(t, options{noWS: true})
	const room, receiver = 51, 500
	coins := map[int64]int64{}
	var senders []int64
	for i := int64(0); i < 25; i++ {
		sender := 501 + i
		c := (i%7 + 1) * 10 // ties on purpose
		s.seedWallet(sender, 1000)
		a := s.gift(room, sender, receiver, giftRose, c)
		if a.Status != 202 {
			t.Fatalf("gift: %d %s", a.Status, a.Raw)
		}
		senders = append(senders, sender)
		coins[sender] = c
	}
	// A second gift from one sender adds up; a gift in another room does not count here.
	if a := s.gift(room, 501, receiver, giftHeart, 10); a.Status != 202 {
		t.Fatalf("gift: %d %s", a.Status, a.Raw)
	}
	coins[501] += 100
	if a := s.gift(room+1, 502, receiver, giftRocket, 5); a.Status != 202 {
		t.Fatalf("gift: %d %s", a.Status, a.Raw)
	}
	s.waitFor("all gifts decided", func() bool {
		return s.count("SELECT COUNT(*) FROM tickets WHERE kind = 'gift' AND status = 'succeeded'") == 27
	})
	sort.Slice(senders, func(i, j int) bool {
		a, b := senders[i], senders[j]
		if coins[a] != coins[b] {
			return coins[a] > coins[b]
		}
		return a < b
	})
	var want []string
	for _, u := range senders[:20] {
		want = append(want, fmt.Sprintf("%d:%d", u, coins[u]))
	}
	// Boards are cached for a second.
	var got []string
	s.waitFor("leaderboard up to date", func() bool {
		got = s.leaderboard(room)
		return strings.Join(got, " ") == strings.Join(want, " ")
	})
	if b := s.leaderboard(room + 1); len(b) != 1 || b[0] != "502:500" {
		t.Errorf("room %d board %v", room+1, b)
	}
	if a := s.do("GET", "/api/v1/rooms/987654/leaderboard", "", ""); a.Status != 200 || a.Raw != `{"room_id":987654,"top":[]}` {
		t.Errorf("empty room: %d %s", a.Status, a.Raw)
	}
}

// TestGiftFailsInWorker: a gift Redis accepted but MySQL's guard refuses
// (the MySQL balance was lowered behind Redis's back) fails with
// insufficient_balance for the sender, over WebSocket and on GET /tickets;
// the hot balance is made to agree with MySQL (minus nothing held), the next
// such gift gets 402 at once, and the room hears nothing.
func TestGiftFailsInWorker(t *testing.T) {
	s := start(t, options{})
	const room, sender, receiver, prober = 81, 801, 802, 890
	viewer := s.giftJoin(room, prober, s.dialWSAt(s.ws, 811))[0]
	senderFrames := wsFrames(t, s.dialWSAt(s.ws, sender))

	s.seedWallet(sender, 100)
	if w := s.do("GET", "/api/v1/wallet", s.token(sender), ""); w.Body["balance"] != float64(100) {
		t.Fatalf("wallet: %s", w.Raw)
	}
	if _, err := s.db.Exec("UPDATE wallets SET balance = 5 WHERE user_id = ?", sender); err != nil {
		t.Fatal(err)
	}
	a := s.gift(room, sender, receiver, giftHeart, 1)
	if a.Status != 202 || a.Body["balance"] != float64(90) {
		t.Fatalf("gift: %d %s", a.Status, a.Raw)
	}
	ticket := a.str("ticket")
	m, ok := nextFrame(senderFrames, 20*time.Second, func(m map[string]any) bool { return m["type"] == "ticket" && m["ticket"] == ticket })
	if !ok || m["status"] != "failed" || m["reason"] != "insufficient_balance" || m["kind"] != "gift" {
		t.Fatalf("sender's ticket message: %v (received: %v)", m, ok)
	}
	tk := s.waitTicket(sender, ticket)
	if tk.str("status") != "failed" || tk.str("reason") != "insufficient_balance" || tk.str("kind") != "gift" {
		t.Errorf("ticket: %s", tk.Raw)
	}
	// The hot balance let through a gift MySQL could not pay: it is made to
	// agree with MySQL again, so the next such gift is refused at once.
	s.waitFor("hot balance resynced with MySQL", func() bool { return s.hotBalance(sender) == 5 })
	if h := s.openHolds(sender); h != 0 {
		t.Errorf("%d holds left", h)
	}
	if again := s.gift(room, sender, receiver, giftHeart, 1); again.Status != 402 || again.errCode() != "insufficient_balance" {
		t.Errorf("a second gift beyond MySQL's balance: %d %s", again.Status, again.Raw)
	}
	if bal, _ := s.walletRowBalances(sender); bal != 5 {
		t.Errorf("MySQL balance %d, want 5", bal)
	}
	if _, earned := s.walletRowBalances(receiver); earned != 0 {
		t.Errorf("receiver earned %d, want 0", earned)
	}
	if got := s.count("SELECT COUNT(*) FROM gift_records WHERE ticket = ?", ticket) + s.count("SELECT COUNT(*) FROM ledger WHERE ref = ?", ticket); got != 0 {
		t.Errorf("%d gift records and ledger rows for the failed gift", got)
	}
	if m, got := nextFrame(viewer, time.Second, isGift(ticket)); got {
		t.Errorf("the room heard of the failed gift: %v", m)
	}
	if b := s.leaderboard(room); len(b) != 1 || !strings.HasPrefix(b[0], fmt.Sprintf("%d:", prober)) {
		t.Errorf("leaderboard %v, want only the prober", b)
	}
}

// TestGiftHoldReconciled: holds older than the pending timeout are ended by
// the worker's reconciler as MySQL says. A hold with no decision (a gateway
// that died between the hold and the produce, simulated by running the hold
// script alone) fails with reason timeout and gives its coins back; a hold
// whose gift MySQL committed (a worker that could not settle Redis) is
// dropped and its coins stay spent.
func TestGiftHoldReconciled(t *testing.T) {
	s := start(t, options{noWS: true, mutate: func(c *config.Config) {
		c.PendingTimeout = 2 * time.Second
		c.ReconcileEvery = 200 * time.Millisecond
		// Config refuses a pending timeout the gateway could outlive.
		c.ProduceTimeout, c.RedisTimeout = time.Second, 400*time.Millisecond
	}})
	const sender = 91
	s.seedWallet(sender, 100)
	if w := s.do("GET", "/api/v1/wallet", s.token(sender), ""); w.Body["balance"] != float64(100) {
		t.Fatalf("wallet: %s", w.Raw)
	}
	ctx := context.Background()
	lost, committed := store.NewGiftTicket(sender), store.NewGiftTicket(sender)
	if res, err := s.redis.HoldGift(ctx, sender, lost, 30, "", store.Limit{}); err != nil || res.Status != store.Held || res.Balance != 70 {
		t.Fatalf("hold: %+v %v", res, err)
	}
	if res, err := s.redis.HoldGift(ctx, sender, committed, 20, "", store.Limit{}); err != nil || res.Status != store.Held || res.Balance != 50 {
		t.Fatalf("hold: %+v %v", res, err)
	}
	// The worker committed this one (ticket and debit) and died before it
	// settled Redis.
	for _, q := range []string{
		`INSERT INTO tickets (ticket, kind, user_id, ref_id, status, created_at) VALUES (?, 'gift', ?, 3, 'succeeded', NOW(3))`,
		`INSERT INTO ledger (ref, user_id, account, kind, amount, balance_after) VALUES (?, ?, 'balance', 'gift_sent', -20, 80)`,
	} {
		if _, err := s.db.Exec(q, committed, sender); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.db.Exec("UPDATE wallets SET balance = balance - 20 WHERE user_id = ?", sender); err != nil {
		t.Fatal(err)
	}
	// A third hold was undone by a gateway whose produce failed: its marker
	// stays only until no late message could still arrive.
	undone := store.NewGiftTicket(sender)
	if res, err := s.redis.HoldGift(ctx, sender, undone, 10, "", store.Limit{}); err != nil || res.Status != store.Held {
		t.Fatalf("hold: %+v %v", res, err)
	}
	if ok, err := s.redis.UndoGift(ctx, sender, undone, ""); err != nil || !ok {
		t.Fatalf("undo: %v %v", ok, err)
	}
	if a := s.do("GET", "/api/v1/tickets/"+undone, s.token(sender), ""); a.str("status") != "failed" || a.str("reason") != "aborted" {
		t.Errorf("undone ticket: %d %s", a.Status, a.Raw)
	}
	if a := s.do("GET", "/api/v1/tickets/"+lost, s.token(sender), ""); a.str("status") != "pending" {
		t.Fatalf("held ticket: %d %s", a.Status, a.Raw)
	}
	if w := s.do("GET", "/api/v1/wallet", s.token(sender), ""); w.Body["balance"] != float64(50) {
		t.Errorf("wallet while held: %s", w.Raw)
	}
	tk := s.waitTicket(sender, lost)
	if tk.str("status") != "failed" || tk.str("reason") != "timeout" || tk.str("kind") != "gift" {
		t.Errorf("ticket: %s", tk.Raw)
	}
	s.waitFor("holds ended", func() bool { return s.openHolds(sender) == 0 })
	if got := s.hotBalance(sender); got != 80 {
		t.Errorf("hot balance %d, want 80 (the lost hold's 30 back, the committed one's 20 spent)", got)
	}
	if bal, _ := s.walletRowBalances(sender); bal != 80 {
		t.Errorf("MySQL balance %d, want 80 (only the committed gift debited there)", bal)
	}
}

// TestGiftKafkaUnreachable: when the broker cannot be reached the sender
// gets 503 with Retry-After, no coins stay held, and the same
// Idempotency-Key is free to be tried again.
func TestGiftKafkaUnreachable(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true, mutate: func(c *config.Config) {
		ln := testenv.Listener(t) // a port that accepts nothing once closed
		c.KafkaBrokers = []string{ln.Addr().String()}
		ln.Close()
		c.ProduceTimeout = 500 * time.Millisecond
	}})
	const sender = 95
	s.seedWallet(sender, 100)
	for range 3 {
		a := s.gift(4, sender, 96, giftHeart, 2, "Idempotency-Key", "retry-me")
		if a.Status != 503 || a.errCode() != "unavailable" || a.Header.Get("Retry-After") == "" {
			t.Fatalf("gift with Kafka down: %d %s (Retry-After %q)", a.Status, a.Raw, a.Header.Get("Retry-After"))
		}
	}
	if got := s.hotBalance(sender); got != 100 {
		t.Errorf("hot balance %d after failed produces, want 100", got)
	}
	holds, err := s.raw.Do(context.Background(), s.raw.B().Hgetall().Key(store.HoldsKey(sender)).Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	for tk, h := range holds {
		if !strings.HasPrefix(h, "a:") { // "a:<ms>" marks an undone hold, so a late message is dropped
			t.Errorf("hold %s = %q left behind", tk, h)
		}
	}
	if w := s.do("GET", "/api/v1/wallet", s.token(sender), ""); w.Status != 200 || w.Body["balance"] != float64(100) {
		t.Errorf("wallet: %d %s", w.Status, w.Raw)
	}
}

// TestGiftLimitInHoldScript: the sender's gift rate limit is applied by the
// hold script itself, so an accepted gift is one Redis round trip. A wallet
// that is not loaded yet and a replayed Idempotency-Key are not counted; a
// refusal holds nothing and says how long to wait.
func TestGiftLimitInHoldScript(t *testing.T) {
	s := start(t, options{noWorker: true, noWS: true})
	ctx := context.Background()
	const sender = 31
	limit := store.Limit{PerSecond: 0.5, Burst: 2} // two at once, then one every 2 s
	if r, err := s.redis.HoldGift(ctx, sender, store.NewGiftTicket(sender), 1, "", limit); err != nil || r.Status != store.HoldNotLoaded || !r.LoadMine {
		t.Fatalf("before the wallet is loaded: %+v %v, want not loaded, and the load ours", r, err)
	}
	// The script marked the load as the first caller's: a second is told
	// someone else is loading it.
	if r, err := s.redis.HoldGift(ctx, sender, store.NewGiftTicket(sender), 1, "", limit); err != nil || r.Status != store.HoldNotLoaded || r.LoadMine {
		t.Fatalf("second hold before the load: %+v %v, want not loaded, and the load someone else's", r, err)
	}
	s.redis.AbandonWalletLoad(ctx, sender) // the first caller gives the load up
	s.seedWallet(sender, 100)
	if w := s.do("GET", "/api/v1/wallet", s.token(sender), ""); w.Body["balance"] != float64(100) { // loads it
		t.Fatalf("wallet: %s", w.Raw)
	}
	first := store.NewGiftTicket(sender)
	for i, tk := range []string{first, store.NewGiftTicket(sender)} {
		key := ""
		if i == 0 {
			key = "k1"
		}
		if r, err := s.redis.HoldGift(ctx, sender, tk, 1, key, limit); err != nil || r.Status != store.Held {
			t.Fatalf("gift %d within the burst: %+v %v", i, r, err)
		}
	}
	if r, err := s.redis.HoldGift(ctx, sender, store.NewGiftTicket(sender), 1, "k1", limit); err != nil || r.Status != store.HoldReplay || r.Ticket != first {
		t.Fatalf("a replay past the burst: %+v %v", r, err)
	}
	r, err := s.redis.HoldGift(ctx, sender, store.NewGiftTicket(sender), 1, "", limit)
	if err != nil || r.Status != store.HoldLimited || r.RetryAfter <= 0 || r.RetryAfter > 2*time.Second {
		t.Fatalf("third gift: %+v %v, want limited with a wait of at most 2 s", r, err)
	}
	if bal := s.hotBalance(sender); bal != 98 {
		t.Errorf("hot balance %d after two holds, want 98", bal)
	}
	if n := s.openHolds(sender); n != 2 {
		t.Errorf("%d holds, want 2", n)
	}
	if r, err := s.redis.HoldGift(ctx, sender, store.NewGiftTicket(sender), 1, "", store.Limit{}); err != nil || r.Status != store.Held {
		t.Errorf("without a limit: %+v %v", r, err)
	}
}
