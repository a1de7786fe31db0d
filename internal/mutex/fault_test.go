package mutex_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
)

// privateClient starts a server of the test's own, for tests that stop,
// pause or restart it.
func privateClient(t *testing.T) (*redistest.Server, *mutex.Client, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t)
	rdb := newRedis(t, srv.URL())
	c := mutex.New(rdb, mutex.WithPrefix(prefix(t)))
	t.Cleanup(func() { c.Close() })
	return srv, c, rdb
}

// TestKeepAlive: the lease outlives its TTL while renewed, and the
// holder's context is cancelled when the lease is lost or cannot be
// trusted any more.
func TestKeepAlive(t *testing.T) {
	const ttl = 600 * time.Millisecond
	t.Run("holds for 3x ttl", func(t *testing.T) {
		c, _ := newClient(t)
		m := c.NewMutex("k", mutex.WithTTL(ttl))
		err := m.Do(ctxT(t, 10*time.Second), func(ctx context.Context) error {
			select {
			case <-time.After(3 * ttl):
			case <-ctx.Done():
				return context.Cause(ctx)
			}
			info, ok, err := c.Inspect(ctx, "k")
			if err != nil || !ok || info.Fence != m.Fence() {
				t.Errorf("after 3x ttl: ok=%v err=%v info=%+v", ok, err, info)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	tamper := []struct {
		name string
		do   func(ctx context.Context, rdb *redis.Client, key string) error
	}{
		{"key deleted", func(ctx context.Context, rdb *redis.Client, key string) error {
			return rdb.Del(ctx, key).Err()
		}},
		{"key overwritten", func(ctx context.Context, rdb *redis.Client, key string) error {
			return rdb.HSet(ctx, key, "token", "someone-else").Err()
		}},
	}
	for _, tt := range tamper {
		t.Run(tt.name, func(t *testing.T) {
			c, rdb := newClient(t)
			ctx := ctxT(t, 10*time.Second)
			m := c.NewMutex("k", mutex.WithTTL(ttl))
			if err := m.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			kctx, stop := m.KeepAlive(ctx)
			defer stop()
			time.Sleep(ttl / 2)
			start := time.Now()
			if err := tt.do(ctx, rdb, prefix(t)+":lock:{k}"); err != nil {
				t.Fatal(err)
			}
			<-kctx.Done()
			if d, limit := time.Since(start), ttl/3+150*time.Millisecond; d > limit {
				t.Errorf("cancelled after %v, want within %v", d, limit)
			}
			if cause := context.Cause(kctx); !errors.Is(cause, mutex.ErrLost) {
				t.Errorf("cause %v, want ErrLost", cause)
			}
		})
	}

	faults := []struct {
		name       string
		fail, heal func(*redistest.Server)
	}{
		{"redis stopped", (*redistest.Server).Stop, func(s *redistest.Server) { _ = s.Start() }},
		{"redis paused", (*redistest.Server).Pause, (*redistest.Server).Resume},
	}
	for _, tt := range faults {
		t.Run(tt.name, func(t *testing.T) {
			srv, c, _ := privateClient(t)
			ctx := ctxT(t, 10*time.Second)
			m := c.NewMutex("k", mutex.WithTTL(ttl))
			if err := m.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			kctx, stop := m.KeepAlive(ctx)
			defer stop()
			time.Sleep(ttl / 2)
			tt.fail(srv)
			defer tt.heal(srv)
			failedAt := time.Now()
			<-kctx.Done()
			// The lease was last renewed before the fault, so the context
			// must end before a full ttl has passed since the fault.
			if d := time.Since(failedAt); d >= ttl {
				t.Errorf("cancelled %v after the fault, want before the ttl (%v)", d, ttl)
			}
			if cause := context.Cause(kctx); !errors.Is(cause, mutex.ErrLost) {
				t.Errorf("cause %v, want ErrLost", cause)
			}
		})
	}
}

// TestWaiters: waiting is driven by notification, notices expiries, stops
// promptly, and survives a Redis restart.
func TestWaiters(t *testing.T) {
	t.Run("woken by release", func(t *testing.T) {
		c, rdb := newClient(t)
		ctx := ctxT(t, 20*time.Second)
		holder := c.NewMutex("w", mutex.WithTTL(10*time.Second))
		if err := holder.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		got := make(chan time.Time, 1)
		go func() {
			if err := c.NewMutex("w").Lock(ctx); err != nil {
				t.Error(err)
			}
			got <- time.Now()
		}()
		waitQueued(t, rdb, prefix(t)+":lock:{w}:queue", 1)
		released := time.Now()
		if err := holder.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		// A retry timer would only fire at the 10s lease; a notified
		// waiter gets it in milliseconds (the bound is loose for -race).
		if d := (<-got).Sub(released); d > time.Second {
			t.Fatalf("waiter took %v after release", d)
		}
	})
	t.Run("notices expiry without release", func(t *testing.T) {
		c, _ := newClient(t)
		ctx := ctxT(t, 10*time.Second)
		holder := c.NewMutex("w", mutex.WithTTL(300*time.Millisecond))
		if err := holder.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		w := c.NewMutex("w")
		if err := w.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %v to notice a 300ms expiry", d)
		}
		if w.Fence() <= holder.Fence() {
			t.Fatalf("fence %d not above %d", w.Fence(), holder.Fence())
		}
	})
	t.Run("cancel stops a waiter within 50ms", func(t *testing.T) {
		c, rdb := newClient(t)
		ctx := ctxT(t, 10*time.Second)
		if err := c.NewMutex("w").Lock(ctx); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.NewMutex("w").Lock(wctx) }()
		waitQueued(t, rdb, prefix(t)+":lock:{w}:queue", 1)
		start := time.Now()
		cancel()
		err := <-done
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Errorf("waiter returned %v after cancel", d)
		}
		if !errors.Is(err, context.Canceled) || !errors.Is(err, mutex.ErrNotObtained) {
			t.Errorf("err %v, want Canceled and ErrNotObtained", err)
		}
	})
	t.Run("dead waiter at the head does not stall the queue", func(t *testing.T) {
		c, rdb := newClient(t)
		ctx := ctxT(t, 20*time.Second)
		holder := c.NewMutex("w", mutex.WithTTL(30*time.Second))
		if err := holder.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		// A waiter whose process was killed: queued first, with a lease
		// that would last a minute.
		q := stageWaiter(t, rdb, "w", "ghost")
		done := make(chan error, 1)
		go func() { done <- c.NewMutex("w").Lock(ctx) }()
		waitQueued(t, rdb, q, 2)
		released := time.Now()
		if err := holder.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// The handoff window (2s), not the 30s lease or the ghost's minute.
		if d := time.Since(released); d > 4*time.Second {
			t.Fatalf("live waiter took %v behind a dead head", d)
		}
		if rdb.ZScore(ctx, q, "ghost").Err() != redis.Nil {
			t.Fatal("dead waiter still queued")
		}
	})
	t.Run("redis restart during a wait", func(t *testing.T) {
		srv, c, rdb := privateClient(t)
		ctx := ctxT(t, 20*time.Second)
		holder := c.NewMutex("w", mutex.WithTTL(10*time.Second))
		if err := holder.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		w := c.NewMutex("w", mutex.WithWait(15*time.Second))
		go func() { done <- w.Lock(ctx) }()
		waitQueued(t, rdb, prefix(t)+":lock:{w}:queue", 1)
		srv.Restart(t) // data is gone: the lock is free now
		restarted := time.Now()
		if err := <-done; err != nil {
			t.Fatalf("waiter after restart: %v", err)
		}
		if d := time.Since(restarted); d > 3*time.Second {
			t.Errorf("waiter took %v after the restart", d)
		}
		// The old holder's lease is gone; its unlock must not touch the
		// waiter's lock.
		if err := holder.Unlock(ctx); !errors.Is(err, mutex.ErrLost) {
			t.Errorf("old holder unlock: %v, want ErrLost", err)
		}
		if info, ok, _ := c.Inspect(ctx, "w"); !ok || info.Fence != w.Fence() {
			t.Errorf("waiter's lock after restart: ok=%v %+v", ok, info)
		}
	})
}

func waitQueued(t *testing.T, rdb redis.UniversalClient, queue string, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for rdb.ZCard(context.Background(), queue).Val() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached %d waiters", queue, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHandoffCommandsBounded: a release hands the lock to one waiter, and
// wakes no herd. With K waiters on K separate clients (separate
// connections, as separate processes would have), K handoffs cost K
// scripts, the releases (plus a first EVALSHA that finds the script
// not cached yet): each head owns the lock when it hears of it. A herd
// would cost on the order of K*K/2, and a wake-up without a handoff 2K.
func TestHandoffCommandsBounded(t *testing.T) {
	const k = 10
	srv, c, rdb := privateClient(t)
	ctx := ctxT(t, 30*time.Second)
	holder := c.NewMutex("h", mutex.WithTTL(10*time.Second))
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, k)
	for i := 0; i < k; i++ {
		ci := mutex.New(newRedis(t, srv.URL()), mutex.WithPrefix(prefix(t)))
		t.Cleanup(func() { ci.Close() })
		go func() { done <- ci.NewMutex("h").Do(ctx, func(context.Context) error { return nil }) }()
	}
	waitQueued(t, rdb, prefix(t)+":lock:{h}:queue", k)
	before := scriptCalls(t, rdb)
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < k; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	calls := scriptCalls(t, rdb) - before
	t.Logf("%d handoffs cost %d script calls (%.1f per handoff)", k, calls, float64(calls)/k)
	if calls > k+2 {
		t.Fatalf("%d script calls for %d handoffs, want at most %d", calls, k, k+2)
	}
}

// scriptCalls counts EVAL and EVALSHA calls from INFO commandstats.
func scriptCalls(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	return cmdCalls(t, rdb, "evalsha", "eval")
}

// TestRoundTripsPerLockUnlock: an uncontended Lock+Unlock is two scripts,
// so two round trips; total_commands_processed shows what Redis ran.
func TestRoundTripsPerLockUnlock(t *testing.T) {
	_, c, rdb := privateClient(t)
	ctx := ctxT(t, 10*time.Second)
	warm := c.NewMutex("r") // loads the scripts (NOSCRIPT, then EVAL)
	if err := warm.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := warm.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 100
	scripts, total := scriptCalls(t, rdb), totalCommands(t, rdb)
	for i := 0; i < n; i++ {
		m := c.NewMutex("r")
		if err := m.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	scripts = scriptCalls(t, rdb) - scripts
	total = totalCommands(t, rdb) - total - 2 // the two INFO calls
	t.Logf("per lock+unlock: %.2f scripts (round trips), %.2f commands counted by INFO stats", float64(scripts)/n, float64(total)/n)
	if scripts != 2*n {
		t.Fatalf("%d scripts for %d lock+unlock, want %d", scripts, n, 2*n)
	}
	// docs/mutex.md says where each of the 12 goes.
	if total > 12*n {
		t.Fatalf("%d commands for %d lock+unlock, want at most %d", total, n, 12*n)
	}
}

func totalCommands(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_commands_processed:"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatal("no total_commands_processed in INFO stats")
	return 0
}
