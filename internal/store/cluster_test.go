package store_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/flashgate/flashgate/internal/store"
	"github.com/flashgate/flashgate/internal/testenv"
)

// TestRedisClusterSale runs the flash-sale path against a real 3-master
// Redis Cluster reached through FLASHGATE_REDIS_ADDR's seed list: each
// event's scripts run on the master of its hash tag's slot, the events land
// on different masters, and a crowd larger than the stock buys exactly the
// stock of each, once per user.
func TestRedisClusterSale(t *testing.T) {
	s, addrs := clusterStore(t, 3, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Events whose tags hash to slots of every master.
	const stock, buyers = 40, 120
	masters := map[string]bool{}
	var events []int64
	for id := int64(1); id < 200 && len(masters) < len(addrs); id++ {
		owner := ""
		for _, a := range addrs {
			if owns(ctx, t, a, store.StockKey(id)) {
				owner = a
			}
		}
		if owner == "" || masters[owner] {
			continue
		}
		masters[owner] = true
		events = append(events, id)
	}
	if len(events) != len(addrs) {
		t.Fatalf("found events on %d of %d masters", len(events), len(addrs))
	}
	for _, id := range events {
		if ok, err := s.Warm(ctx, id, stock, time.Now().Add(time.Hour), nil); err != nil || !ok {
			t.Fatalf("warm event %d: %v, %v", id, ok, err)
		}
	}
	var wg sync.WaitGroup
	var bought sync.Map // "event/user" of each reservation
	reserved := make([]atomic.Int64, len(events))
	var errs atomic.Int64
	for i, id := range events {
		for u := int64(1); u <= buyers; u++ {
			for try := 0; try < 2; try++ { // each buyer asks twice
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := s.Reserve(ctx, id, u, store.NewOrderTicket(id), "")
					if err != nil {
						errs.Add(1)
						t.Errorf("reserve event %d user %d: %v", id, u, err)
						return
					}
					if r.Status == store.Reserved {
						reserved[i].Add(1)
						if _, twice := bought.LoadOrStore(fmt.Sprint(id, "/", u), true); twice {
							t.Errorf("event %d: user %d reserved twice", id, u)
						}
					}
				}()
			}
		}
	}
	wg.Wait()
	if errs.Load() > 0 {
		return
	}
	for i, id := range events {
		if got := reserved[i].Load(); got != stock {
			t.Errorf("event %d: %d units reserved, stock was %d", id, got, stock)
		}
		left, err := s.Raw().Do(ctx, s.Raw().B().Get().Key(store.StockKey(id)).Build()).AsInt64()
		if err != nil || left != 0 {
			t.Errorf("event %d: stock left %d (%v), want 0", id, left, err)
		}
	}
}

// TestRedisClusterGifts runs the gift holds against the same kind of
// cluster: senders whose wallets live on different masters spend
// concurrently, and each ends with exactly the coins it could not spend,
// never below zero.
func TestRedisClusterGifts(t *testing.T) {
	s, addrs := clusterStore(t, 3, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const balance, price, tries = 100, 7, 40
	masters := map[string]bool{}
	var senders []int64
	for id := int64(1); id < 500 && len(masters) < len(addrs); id++ {
		for _, a := range addrs {
			if owns(ctx, t, a, store.BalanceKey(id)) && !masters[a] {
				masters[a] = true
				senders = append(senders, id)
			}
		}
	}
	if len(senders) != len(addrs) {
		t.Fatalf("found senders on %d of %d masters", len(senders), len(addrs))
	}
	for _, u := range senders {
		if _, err := s.FinishWalletLoad(ctx, u, balance, nil); err != nil {
			t.Fatal(err)
		}
	}
	held := make([]atomic.Int64, len(senders))
	var wg sync.WaitGroup
	for i, u := range senders {
		for n := 0; n < tries; n++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := s.HoldGift(ctx, u, store.NewGiftTicket(u), price, "", store.Limit{})
				if err != nil {
					t.Errorf("hold for sender %d: %v", u, err)
					return
				}
				if r.Status == store.Held {
					held[i].Add(1)
				}
			}()
		}
	}
	wg.Wait()
	for i, u := range senders {
		bal, ok, err := s.HotBalance(ctx, u)
		if err != nil || !ok {
			t.Fatalf("sender %d balance: %v %v", u, ok, err)
		}
		if want := int64(balance / price); held[i].Load() != want || bal != balance-want*price {
			t.Errorf("sender %d: %d gifts held, balance %d; want %d held and %d left", u, held[i].Load(), bal, want, balance-want*price)
		}
	}
}

// owns asks the node at addr whether key's slot is its own: another node
// answers MOVED.
func owns(ctx context.Context, t *testing.T, addr, key string) bool {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Do(ctx, c.B().Get().Key(key).Build()).Error()
	if err != nil && !rueidis.IsRedisNil(err) {
		if strings.HasPrefix(err.Error(), "MOVED") || strings.Contains(err.Error(), "MOVED") {
			return false
		}
		t.Fatal(err)
	}
	return true
}

// TestRedisClusterFailover promotes a replica (CLUSTER FAILOVER, which
// waits for the replica to catch up) of the master that holds an event
// while a crowd buys it: no reservation the store confirmed is lost, and
// the units sold plus the units left are the stock, so nothing is oversold.
// Calls that fail during the switch are the gateway's 503s (it would undo
// them), so they are allowed.
func TestRedisClusterFailover(t *testing.T) {
	s, nodes := clusterStore(t, 3, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	const event, stock, buyers = 7, 1000, 1500
	if ok, err := s.Warm(ctx, event, stock, time.Now().Add(time.Hour), nil); err != nil || !ok {
		t.Fatalf("warm: %v %v", ok, err)
	}
	// The replica of the event's master: CLUSTER NODES names each replica's master.
	master := ""
	for _, a := range nodes {
		if owns(ctx, t, a, store.StockKey(event)) && isMaster(t, a) {
			master = a
		}
	}
	replica := ""
	masterID := nodeID(t, master)
	for _, a := range nodes {
		if a != master && replicaOf(t, a) == masterID {
			replica = a
		}
	}
	if master == "" || replica == "" {
		t.Fatalf("no master (%q) or replica (%q) for the event", master, replica)
	}

	var accepted sync.Map
	var failed atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	switched := int64(0) // the first buyer who came after the replica took over
	for u := int64(1); u <= buyers; u++ {
		if u == buyers/5 {
			// Mid-sale: the replica takes over.
			if out := clusterCmd(t, replica, "cluster", "failover"); !strings.Contains(out, "OK") {
				t.Fatalf("CLUSTER FAILOVER on %s: %s", replica, out)
			}
		}
		if u > buyers/5 && switched == 0 && u%20 == 0 && isMaster(t, replica) {
			switched = u
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r, err := s.Reserve(ctx, event, u, store.NewOrderTicket(event), "")
			if err != nil {
				failed.Add(1)
				return
			}
			if r.Status == store.Reserved {
				accepted.Store(u, r.Ticket)
			}
		}()
		time.Sleep(2 * time.Millisecond)
	}
	wg.Wait()
	if !isMaster(t, replica) {
		t.Fatalf("%s did not become master", replica)
	}
	n, after := 0, 0
	accepted.Range(func(k, v any) bool {
		n++
		if switched > 0 && k.(int64) >= switched {
			after++
		}
		got, err := s.Raw().Do(ctx, s.Raw().B().Hget().Key(store.BuyersKey(event)).Field(fmt.Sprint(k)).Build()).ToString()
		if err != nil || got != v.(string) {
			t.Errorf("user %v was told ticket %v, Redis holds %q (%v): an accepted reservation was lost", k, v, got, err)
		}
		return true
	})
	sold, err := s.Raw().Do(ctx, s.Raw().B().Hlen().Key(store.BuyersKey(event)).Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	sold-- // warm.lua's "_" field keeps the hash alive
	left, err := s.Raw().Do(ctx, s.Raw().B().Get().Key(store.StockKey(event)).Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	if sold+left != stock || int64(n) > sold {
		t.Errorf("after the failover: %d buyers recorded, %d units left, %d confirmed: want buyers + left = %d and confirmed ≤ buyers", sold, left, n, stock)
	}
	if switched == 0 || after == 0 {
		t.Errorf("the sale did not go on past the failover (switched at buyer %d, %d confirmed after): the test proves nothing", switched, after)
	}
	t.Logf("failover mid-sale at buyer %d: %d confirmed (%d after the switch), %d calls failed during it, %d units left", switched, n, after, failed.Load(), left)
}

func clusterCmd(t *testing.T, addr string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("redis-cli", append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v on %s: %v\n%s", args, addr, err, out)
	}
	return string(out)
}

func isMaster(t *testing.T, addr string) bool {
	return strings.Contains(clusterCmd(t, addr, "role"), "master")
}

// nodeID is the cluster node id of the node at addr.
func nodeID(t *testing.T, addr string) string {
	return strings.TrimSpace(clusterCmd(t, addr, "cluster", "myid"))
}

// replicaOf is the id of the master that the node at addr replicates ("" for a master).
func replicaOf(t *testing.T, addr string) string {
	for _, line := range strings.Split(clusterCmd(t, addr, "cluster", "nodes"), "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && strings.Contains(f[2], "myself") && strings.Contains(f[2], "slave") {
			return f[3]
		}
	}
	return ""
}

// clusterStore starts a Redis Cluster of masters with replicas each and
// returns a store on it, and the nodes' addresses. It skips in -short.
func clusterStore(t *testing.T, masters, replicas int) (*store.Redis, []string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	nodes := testenv.RedisCluster(t, masters, replicas)
	s, err := store.New(strings.Join(nodes, ","))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, nodes
}
