package mutex

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/redistest"
)

// TestQuorumWinPastTheLease: a majority granted a claim, but the round
// took longer than the lease (Redlock's elapsed-time check). The claim is
// not reported as won with its lock busy (ErrNotObtained, which the
// scheduler reads as "the tick is mine"): it is ErrTooSlow, final, and
// its key and lock are taken back on every master, so another replica can
// claim the tick.
func TestQuorumWinPastTheLease(t *testing.T) {
	var nodes []redis.UniversalClient
	for range 3 {
		srv := redistest.Start(t)
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
		t.Cleanup(func() { rdb.Close() })
		nodes = append(nodes, rdb)
	}
	c := NewQuorum(nodes, WithPrefix("test:toolate"))
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	m := c.NewMutex("x", WithTTL(3*time.Second))
	cl := &SetNX{Key: "test:toolate:tick", Value: "mine", TTL: time.Minute}
	a := attempt{m: m, token: m.quorumToken("tok"), cl: cl}
	replies, _ := c.quorumRound(ctx, []attempt{a})
	v, _, fences, err := c.tally(a, replies[0])
	if v != won || err != nil {
		t.Fatalf("the round: verdict %v err %v, want won", v, err)
	}
	// As if the round had been sent a minute ago.
	errs := c.settleWon(ctx, []attempt{a}, [][]int64{fences}, time.Now().Add(-time.Minute))
	if !errors.Is(errs[0], ErrTooSlow) || errors.Is(errs[0], ErrNotObtained) {
		t.Fatalf("settle: %v, want ErrTooSlow and not ErrNotObtained", errs[0])
	}
	if unknownOutcome(errs[0]) {
		t.Fatal("ErrTooSlow is asked again: its token's take-back may still be on its way")
	}
	for i, rdb := range nodes {
		if n := rdb.Exists(ctx, cl.Key, m.k.lock).Val(); n != 0 {
			t.Fatalf("master %d still has the key or the lock (%d)", i, n)
		}
	}
	if m.Valid() == nil {
		t.Fatal("the handle holds the lock")
	}
}

// TestQuorumClaimVerdict: a claim that holds its key on one master while
// others hold it on the rest is a split (taken back and tried again), not
// "someone else won": with three contenders winning a master each, every
// one read it so and no one claimed the tick (TestQuorum's racing
// clients lost all 50 keys in about a run in four).
func TestQuorumClaimVerdict(t *testing.T) {
	c := &Client{nodes: make([]redis.UniversalClient, 3)}
	a := attempt{m: &Mutex{name: "x"}, cl: &SetNX{Key: "k", Value: "mine"}}
	ok, keyOurs, taken := batchResult{val: []int64{1, 7}}, batchResult{val: []int64{0, 100}}, batchResult{val: []int64{-1, 0}}
	for _, tt := range []struct {
		name string
		rs   []batchResult
		want verdict
	}{
		{"won on two", []batchResult{ok, ok, taken}, won},
		{"the lock on one, the key taken on two", []batchResult{ok, taken, taken}, split},
		{"the key ours on one, taken on two", []batchResult{keyOurs, taken, taken}, split},
		{"taken on every master", []batchResult{taken, taken, taken}, failed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.verdict(a, countVotes(a, tt.rs), len(tt.rs)); got != tt.want {
				t.Fatalf("verdict %v, want %v", got, tt.want)
			}
		})
	}
}
