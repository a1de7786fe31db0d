package mutex_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/mutex"
)

// TestHandoff: a release hands the lock to the queue head itself (direct
// handoff), so the head owns it without another round trip, with a short
// first lease that keep-alive extends; a head that died, a lost message
// and a head that gave up cost at most the handoff lease (2 s), never the
// lock's ttl.
func TestHandoff(t *testing.T) {
	const ttl = 10 * time.Second
	t.Run("the head owns the lock without another round trip", func(t *testing.T) {
		srv, c, rdb := privateClient(t)
		ctx := ctxT(t, 20*time.Second)
		holder := c.NewMutex("h", mutex.WithTTL(ttl))
		// Once first, so that the scripts are in Redis's cache (a
		// first EVALSHA that finds none is a call too).
		for range 2 {
			if err := holder.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			if err := holder.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := holder.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		wc := mutex.New(newRedis(t, srv.URL()), mutex.WithPrefix(prefix(t)), mutex.WithOwner("the-waiter"))
		t.Cleanup(func() { wc.Close() })
		w := wc.NewMutex("h", mutex.WithTTL(ttl), mutex.WithLabel("run-7"))
		done := make(chan error, 1)
		go func() { done <- w.Lock(ctx) }()
		waitQueued(t, rdb, prefix(t)+":lock:{h}:queue", 1)
		if info, ok, err := c.Inspect(ctx, "h"); err != nil || !ok || info.Waiters != 1 {
			t.Fatalf("inspect while one waits: ok=%v waiters=%d err %v, want 1 waiter", ok, info.Waiters, err)
		}
		before := scriptCalls(t, rdb)
		if err := holder.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if calls := scriptCalls(t, rdb) - before; calls != 1 {
			t.Fatalf("%d scripts from the release to the waiter holding the lock, want 1 (the release)", calls)
		}
		if w.Fence() != holder.Fence()+1 {
			t.Fatalf("fence %d, want %d", w.Fence(), holder.Fence()+1)
		}
		info, ok, err := c.Inspect(ctx, "h")
		if err != nil || !ok || info.Owner != "the-waiter" || info.Label != "run-7" || info.Fence != w.Fence() || info.Waiters != 0 {
			t.Fatalf("holder after the handoff: ok=%v %+v err %v", ok, info, err)
		}
		// The first lease is the handoff lease (2 s), trusted from the
		// waiter's last attempt; keep-alive renews it to the ttl.
		if err := w.Valid(); err != nil {
			t.Fatal(err)
		}
		if d := w.ExpiresIn(); d > 2*time.Second || d <= 0 {
			t.Fatalf("first lease %v, want (0, 2s]", d)
		}
		if pttl := rdb.PTTL(ctx, prefix(t)+":lock:{h}").Val(); pttl > 2*time.Second {
			t.Fatalf("first lease in Redis %v, want at most 2s", pttl)
		}
		kctx, stop := w.KeepAlive(ctx)
		defer stop()
		time.Sleep(time.Second)
		if pttl := rdb.PTTL(ctx, prefix(t)+":lock:{h}").Val(); pttl < 5*time.Second {
			t.Fatalf("lease after keep-alive's first renewal %v, want the ttl (%v)", pttl, ttl)
		}
		if kctx.Err() != nil || w.ExpiresIn() < 5*time.Second {
			t.Fatalf("keep-alive: %v, expires in %v", context.Cause(kctx), w.ExpiresIn())
		}
		stop()
		if err := w.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a dead head loses the lock after the handoff lease", func(t *testing.T) {
		c, rdb := newClient(t)
		ctx := ctxT(t, 20*time.Second)
		holder := c.NewMutex("d", mutex.WithTTL(ttl))
		if err := holder.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		// A waiter killed while queued first, with a place that would
		// last a minute.
		ghost := c.NewMutex("d", mutex.WithTTL(ttl)).WaiterEntry("ghost", "ghost-token")
		q := stageWaiter(t, rdb, "d", ghost)
		w := c.NewMutex("d", mutex.WithTTL(ttl))
		done := make(chan error, 1)
		go func() { done <- w.Lock(ctx) }()
		waitQueued(t, rdb, q, 2)
		released := time.Now()
		if err := holder.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if tok := rdb.HGet(ctx, prefix(t)+":lock:{d}", "token").Val(); tok != "ghost-token" {
			t.Fatalf("the release handed the lock to %q, want the head", tok)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		d := time.Since(released)
		if d < 1500*time.Millisecond || d > 4*time.Second {
			t.Fatalf("the live waiter took %v behind a dead head, want the handoff lease (2s)", d)
		}
		if w.Fence() != holder.Fence()+2 {
			t.Fatalf("fence %d, want %d (the dead head had %d)", w.Fence(), holder.Fence()+2, holder.Fence()+1)
		}
	})
	t.Run("a lost handoff message", func(t *testing.T) {
		srv, c, rdb := privateClient(t)
		ctx := ctxT(t, 20*time.Second)
		holder := c.NewMutex("l", mutex.WithTTL(ttl))
		if err := holder.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		wc := mutex.New(newRedis(t, srv.URL()), mutex.WithPrefix(prefix(t)))
		t.Cleanup(func() { wc.Close() })
		w := wc.NewMutex("l", mutex.WithTTL(ttl))
		done := make(chan error, 1)
		go func() { done <- w.Lock(ctx) }()
		waitQueued(t, rdb, prefix(t)+":lock:{l}:queue", 1)
		// The waiter's subscription breaks: the release's message
		// reaches no one.
		if err := rdb.Do(ctx, "client", "kill", "type", "pubsub").Err(); err != nil {
			t.Fatal(err)
		}
		released := time.Now()
		if err := holder.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// Back on its subscription, the waiter asks again and finds the
		// lock its own: not the ttl, not the handoff lease.
		if d := time.Since(released); d > time.Second {
			t.Fatalf("waiter took %v after a lost message", d)
		}
		if w.Fence() != holder.Fence()+1 {
			t.Fatalf("fence %d, want %d", w.Fence(), holder.Fence()+1)
		}
		if err := w.Valid(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a head that gives up passes the lock on at once", func(t *testing.T) {
		c, rdb := newClient(t)
		ctx := ctxT(t, 20*time.Second)
		holder := c.NewMutex("g", mutex.WithTTL(ttl))
		if err := holder.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		// The head is handed the lock, but gives up (its context ended)
		// before it heard of it.
		gone := c.NewMutex("g", mutex.WithTTL(ttl))
		entry := gone.WaiterEntry("gone", "gone-token")
		q := stageWaiter(t, rdb, "g", entry)
		w := c.NewMutex("g", mutex.WithTTL(ttl))
		done := make(chan error, 1)
		go func() { done <- w.Lock(ctx) }()
		waitQueued(t, rdb, q, 2)
		if err := holder.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		left := time.Now()
		gone.Leave(ctx, entry, "gone-token")
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if d := time.Since(left); d > time.Second {
			t.Fatalf("the next waiter took %v after the head gave up, want it at once", d)
		}
		if w.Fence() != holder.Fence()+2 {
			t.Fatalf("fence %d, want %d", w.Fence(), holder.Fence()+2)
		}
	})
	t.Run("a release retried after the handoff still answers released", func(t *testing.T) {
		c, rdb := newClient(t)
		ctx := ctxT(t, 20*time.Second)
		holder := c.NewMutex("r", mutex.WithTTL(ttl))
		if err := holder.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		w := c.NewMutex("r", mutex.WithTTL(ttl))
		done := make(chan error, 1)
		go func() { done <- w.Lock(ctx) }()
		waitQueued(t, rdb, prefix(t)+":lock:{r}:queue", 1)
		token := rdb.HGet(ctx, prefix(t)+":lock:{r}", "token").Val()
		if err := holder.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// The same release again, as go-redis sends it after a lost
		// reply: it answers released, and the waiter's hold is untouched.
		again := c.NewMutex("r", mutex.WithTTL(ttl))
		if res, err := again.ReleaseAgain(ctx, token); res != 1 || err != nil {
			t.Fatalf("release retried after the handoff: %d %v, want 1 (released)", res, err)
		}
		if err := w.Valid(); err != nil {
			t.Fatal(err)
		}
		if info, ok, err := c.Inspect(ctx, "r"); err != nil || !ok || info.Fence != w.Fence() {
			t.Fatalf("after a repeated release: ok=%v %+v err %v", ok, info, err)
		}
		// The waiter releases too, and another takes the lock: the first
		// release retried still answers released (each token has its own
		// marker; the review saw a retry after two handoffs read as a
		// lost lease).
		if err := w.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		third := c.NewMutex("r", mutex.WithTTL(ttl))
		if err := third.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		if res, err := again.ReleaseAgain(ctx, token); res != 1 || err != nil {
			t.Fatalf("release retried after two more holders: %d %v, want 1 (released)", res, err)
		}
		if err := third.Valid(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a stale handoff message is not taken for a handoff", func(t *testing.T) {
		// A waiter paused while it was handed the lock finds, once it
		// runs again, the old message, after the lease lapsed and another
		// took the lock. Staged: messages naming the waiter from a
		// release that ran before its last attempt, told by a fence no
		// larger than the holder's it saw, or, as after a Redis restart
		// without persistence (fences back to 0), by Redis's time.
		for _, tt := range []struct {
			name  string
			fence func(holder int64) int64
			at    func(now time.Time) time.Time
		}{
			{"its fence is not larger", func(h int64) int64 { return h }, func(now time.Time) time.Time { return now.Add(time.Second) }},
			{"its time is earlier (fences reset)", func(h int64) int64 { return h + 100 }, func(now time.Time) time.Time { return now.Add(-time.Minute) }},
		} {
			t.Run(tt.name, func(t *testing.T) {
				c, rdb := newClient(t)
				ctx := ctxT(t, 20*time.Second)
				holder := c.NewMutex("s", mutex.WithTTL(ttl))
				if err := holder.Lock(ctx); err != nil {
					t.Fatal(err)
				}
				w := c.NewMutex("s", mutex.WithTTL(ttl))
				done := make(chan error, 1)
				go func() { done <- w.Lock(ctx) }()
				q := prefix(t) + ":lock:{s}:queue"
				waitQueued(t, rdb, q, 1)
				var entry []string
				if err := json.Unmarshal([]byte(rdb.ZRange(ctx, q, 0, 0).Val()[0]), &entry); err != nil {
					t.Fatal(err)
				}
				now := rdb.Time(ctx).Val()
				stale := fmt.Sprintf("=%d %d %s", tt.fence(holder.Fence()), tt.at(now).UnixMilli(), entry[0])
				if err := rdb.Publish(ctx, prefix(t)+":lock:{s}:released", stale).Err(); err != nil {
					t.Fatal(err)
				}
				select {
				case err := <-done:
					t.Fatalf("Lock returned on a stale handoff message (err %v), fence %d, while the lock is the holder's (fence %d)", err, w.Fence(), holder.Fence())
				case <-time.After(300 * time.Millisecond):
				}
				if err := holder.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if w.Fence() != holder.Fence()+1 {
					t.Fatalf("fence %d, want %d", w.Fence(), holder.Fence()+1)
				}
			})
		}
	})
	t.Run("a waiter of an older jobd is woken, not handed the lock", func(t *testing.T) {
		c, rdb := newClient(t)
		ctx := ctxT(t, 20*time.Second)
		holder := c.NewMutex("o", mutex.WithTTL(ttl))
		if err := holder.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		stageWaiter(t, rdb, "o", "0123456789abcdef")
		sub := rdb.Subscribe(ctx, prefix(t)+":lock:{o}:released")
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		if err := holder.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil || msg.Payload != "0123456789abcdef" {
			t.Fatalf("message %+v err %v, want the old waiter's id", msg, err)
		}
		if n := rdb.Exists(ctx, prefix(t)+":lock:{o}").Val(); n != 0 {
			t.Fatal("the lock was handed to an entry that names no token")
		}
		if !errors.Is(holder.Unlock(ctx), mutex.ErrNotHeld) {
			t.Fatal("unlock twice")
		}
	})
}

// TestSubscriptionLingers: a process that waits for the same lock again
// soon (a busy lock) finds its subscription still there and confirmed: no
// SUBSCRIBE, PING or UNSUBSCRIBE, and its first attempt already queues.
// The channel is unsubscribed once no one waited on it for 5 s.
func TestSubscriptionLingers(t *testing.T) {
	srv, c, rdb := privateClient(t)
	ctx := ctxT(t, 30*time.Second)
	wc := mutex.New(newRedis(t, srv.URL()), mutex.WithPrefix(prefix(t)))
	t.Cleanup(func() { wc.Close() })
	channel := prefix(t) + ":lock:{s}:released"
	handoff := func() {
		t.Helper()
		holder := c.NewMutex("s")
		if err := holder.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		w := wc.NewMutex("s")
		done := make(chan error, 1)
		go func() { done <- w.Lock(ctx) }()
		waitQueued(t, rdb, prefix(t)+":lock:{s}:queue", 1)
		if err := holder.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := w.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	handoff()
	subs, pings, scripts := cmdCalls(t, rdb, "subscribe"), cmdCalls(t, rdb, "ping"), scriptCalls(t, rdb)
	handoff()
	if d := cmdCalls(t, rdb, "subscribe") - subs; d != 0 {
		t.Fatalf("%d SUBSCRIBE for a second wait soon after the first, want 0", d)
	}
	if d := cmdCalls(t, rdb, "ping") - pings; d != 0 {
		t.Fatalf("%d PING for a second wait soon after the first, want 0", d)
	}
	// The holder's lock and unlock, the waiter's one queued attempt and
	// its unlock.
	if d := scriptCalls(t, rdb) - scripts; d != 4 {
		t.Fatalf("%d scripts for a handoff on a subscribed channel, want 4", d)
	}
	deadline := time.Now().Add(10 * time.Second)
	for rdb.PubSubNumSub(ctx, channel).Val()[channel] != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the channel is still subscribed 10 s after its last waiter")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A waiter that leaves after its Client closed schedules nothing (the
	// review's -race report: the linger timer's wg.Add raced Close).
	holder := c.NewMutex("s")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- wc.NewMutex("s").Lock(wctx) }()
	waitQueued(t, rdb, prefix(t)+":lock:{s}:queue", 1)
	closed := make(chan error, 1)
	go func() { closed <- wc.Close() }()
	cancel()
	<-done
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// stageWaiter queues entry first for lock, with a place that lasts a
// minute, as a waiter that was then killed would have left it; it returns
// the queue's key.
func stageWaiter(t *testing.T, rdb *redis.Client, lock, entry string) string {
	t.Helper()
	ctx := context.Background()
	q, qx := prefix(t)+":lock:{"+lock+"}:queue", prefix(t)+":lock:{"+lock+"}:queue-expiry"
	now := rdb.Time(ctx).Val()
	if err := rdb.ZAdd(ctx, q, redis.Z{Score: 0, Member: entry}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ZAdd(ctx, qx, redis.Z{Score: float64(now.Add(time.Minute).UnixMilli()), Member: entry}).Err(); err != nil {
		t.Fatal(err)
	}
	return q
}

// cmdCalls is how many times Redis ran the commands cmds, in all, from
// one INFO commandstats.
func cmdCalls(t *testing.T, rdb *redis.Client, cmds ...string) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range cmds {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":"); ok {
				calls, _ := strings.CutPrefix(strings.Split(rest, ",")[0], "calls=")
				n, _ := strconv.Atoi(calls)
				total += n
			}
		}
	}
	return total
}
