package mutex_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
)

// quorum is three independent redis-servers and a way to make clients on
// them, as cmd/jobd makes them (go-redis's production retries).
type quorum struct {
	servers []*redistest.Server
}

func startQuorum(t *testing.T, args ...string) *quorum {
	t.Helper()
	q := &quorum{}
	for range 3 {
		q.servers = append(q.servers, redistest.StartWith(t, args...))
	}
	return q
}

// nodes are fresh clients on the three masters.
func (q *quorum) nodes(t *testing.T) []redis.UniversalClient {
	t.Helper()
	var out []redis.UniversalClient
	for _, s := range q.servers {
		opt, err := redis.ParseURL(s.URL())
		if err != nil {
			t.Fatal(err)
		}
		opt.ContextTimeoutEnabled = true
		rdb := redis.NewClient(opt)
		t.Cleanup(func() { rdb.Close() })
		out = append(out, rdb)
	}
	return out
}

func (q *quorum) client(t *testing.T, opts ...mutex.ClientOption) *mutex.Client {
	t.Helper()
	c := mutex.NewQuorum(q.nodes(t), append([]mutex.ClientOption{mutex.WithPrefix(prefix(t))}, opts...)...)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestQuorum: the lock, its fence, its claims and its waiters on three
// independent masters, with none, one and two of them down.
func TestQuorum(t *testing.T) {
	t.Run("lock, inspect, unlock", func(t *testing.T) {
		q := startQuorum(t)
		c := q.client(t)
		ctx := ctxT(t, 10*time.Second)
		m := c.NewMutex("a", mutex.WithTTL(5*time.Second), mutex.WithLabel("run=1"))
		if err := m.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		info, ok, err := c.Inspect(ctx, "a")
		if err != nil || !ok || info.Label != "run=1" || info.Fence != m.Fence() {
			t.Fatalf("inspect = %+v %v %v, fence %d", info, ok, err, m.Fence())
		}
		if err := c.NewMutex("a").TryLock(ctx); !errors.Is(err, mutex.ErrNotObtained) {
			t.Fatalf("second TryLock = %v, want ErrNotObtained", err)
		}
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := c.Inspect(ctx, "a"); ok {
			t.Fatal("still held after unlock")
		}
	})

	t.Run("one master down: locks go on; two down: fail closed; back: resume", func(t *testing.T) {
		q := startQuorum(t)
		c := q.client(t)
		ctx := ctxT(t, 60*time.Second)
		lockOnce := func() error {
			m := c.NewMutex("b", mutex.WithTTL(3*time.Second))
			if err := m.TryLock(ctx); err != nil {
				return err
			}
			return m.Unlock(ctx)
		}
		q.servers[2].Stop()
		if err := lockOnce(); err != nil {
			t.Fatalf("one master down: %v", err)
		}
		q.servers[1].Stop()
		start := time.Now()
		err := lockOnce()
		if !errors.Is(err, mutex.ErrNoQuorum) {
			t.Fatalf("two masters down: %v, want ErrNoQuorum", err)
		}
		if d := time.Since(start); d > 8*time.Second {
			t.Fatalf("failing took %v", d)
		}
		if _, _, err := c.Inspect(ctx, "b"); !errors.Is(err, mutex.ErrNoQuorum) {
			t.Fatalf("inspect with two down: %v", err)
		}
		if err := q.servers[1].Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, func() error { return lockOnce() })
	})

	t.Run("fences never go backwards across majorities", func(t *testing.T) {
		q := startQuorum(t)
		take := fenceTaker(t, q.client(t), "f")
		take("all up")
		// C falls behind, then comes back empty (no persistence): a
		// majority of {B, C} must still hand out a larger fence.
		q.servers[2].Stop()
		for i := range 5 {
			take("C down " + strconv.Itoa(i))
		}
		if err := q.servers[2].Start(); err != nil {
			t.Fatal(err)
		}
		q.servers[0].Stop()
		take("A down, C empty")
		take("A down again")
		if err := q.servers[0].Start(); err != nil { // A comes back empty too
			t.Fatal(err)
		}
		q.servers[1].Stop()
		take("B down, A empty")
	})

	t.Run("a master that lagged is lifted when it answers again", func(t *testing.T) {
		// The review's case: C misses fences while down, comes back with
		// its data, and must be lifted then; otherwise A restarted empty
		// and C, a majority once B dies, would hand out old fences.
		q := startQuorum(t, "--appendonly", "yes", "--appendfsync", "always")
		take := fenceTaker(t, q.client(t), "lag")
		take("all up")
		q.servers[2].Stop()
		for i := range 5 {
			take("C down " + strconv.Itoa(i))
		}
		if err := q.servers[2].Start(); err != nil { // with its data, behind
			t.Fatal(err)
		}
		take("C back")
		take("C back again")
		q.servers[0].Stop() // A loses its data
		if err := os.RemoveAll(filepath.Join(q.servers[0].Dir(), "appendonlydir")); err != nil {
			t.Fatal(err)
		}
		if err := q.servers[0].Start(); err != nil {
			t.Fatal(err)
		}
		q.servers[1].Stop()
		take("B down, A empty")
	})

	t.Run("claims: one winner per key among racing clients, with a master down", func(t *testing.T) {
		q := startQuorum(t)
		ctx := ctxT(t, 60*time.Second)
		const clients, keys = 4, 50
		cs := make([]*mutex.Client, clients)
		for i := range cs {
			cs[i] = q.client(t)
		}
		for _, down := range []int{-1, 0} {
			if down >= 0 {
				q.servers[down].Stop()
			}
			wins := make([]int, keys)
			var mu sync.Mutex
			var wg sync.WaitGroup
			for i, c := range cs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ms := make([]*mutex.Mutex, keys)
					cls := make([]mutex.SetNX, keys)
					for k := range ms {
						ms[k] = c.NewMutex(fmt.Sprintf("claim-%d-%d", down, k), mutex.WithTTL(5*time.Second))
						cls[k] = mutex.SetNX{Key: prefix(t) + ":tick:{" + fmt.Sprintf("claim-%d-%d", down, k) + "}",
							Value: fmt.Sprintf("client-%d", i), TTL: time.Minute}
					}
					for k, err := range c.TryLockBatch(ctx, ms, cls) {
						switch {
						case err == nil:
							mu.Lock()
							wins[k]++
							mu.Unlock()
						case errors.Is(err, mutex.ErrKeyTaken), errors.Is(err, mutex.ErrNoQuorum):
						default:
							t.Errorf("client %d key %d: %v", i, k, err)
						}
					}
				}()
			}
			wg.Wait()
			won := 0
			for k, n := range wins {
				if n > 1 {
					t.Fatalf("down=%d: key %d won %d times", down, k, n)
				}
				won += n
			}
			t.Logf("down=%d: %d of %d keys won", down, won, keys)
			if won < keys*9/10 {
				t.Fatalf("down=%d: only %d of %d keys won", down, won, keys)
			}
		}
	})

	t.Run("split vote: taken back, no winner, ErrNoQuorum", func(t *testing.T) {
		q := startQuorum(t)
		c := q.client(t)
		ctx := ctxT(t, 30*time.Second)
		key := prefix(t) + ":tick:{s}"
		nodes := q.nodes(t)
		nodes[0].Set(ctx, key, "x", time.Minute)
		q.servers[2].Stop()
		err := c.NewMutex("s").TryLockSetNX(ctx, mutex.SetNX{Key: key, Value: "z", TTL: time.Minute})
		if !errors.Is(err, mutex.ErrNoQuorum) {
			t.Fatalf("split = %v, want ErrNoQuorum", err)
		}
		if n := nodes[1].Exists(ctx, key).Val(); n != 0 {
			t.Fatal("the split attempt's key was not taken back")
		}
		if n := nodes[1].Exists(ctx, prefix(t)+":lock:{s}").Val(); n != 0 {
			t.Fatal("the split attempt's lock was not taken back")
		}
	})

	t.Run("a release wakes a waiter at once", func(t *testing.T) {
		q := startQuorum(t)
		c := q.client(t)
		ctx := ctxT(t, 30*time.Second)
		m := c.NewMutex("w", mutex.WithTTL(20*time.Second))
		if err := m.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		got, done := make(chan time.Time, 1), make(chan struct{})
		wc := q.client(t)
		go func() {
			defer close(done)
			w := wc.NewMutex("w", mutex.WithTTL(20*time.Second))
			if err := w.Lock(ctx); err != nil {
				t.Error(err)
			}
			got <- time.Now()
			_ = w.Unlock(ctx)
		}()
		defer func() { <-done }()
		time.Sleep(300 * time.Millisecond) // the waiter is subscribed and asleep
		released := time.Now()
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if d := (<-got).Sub(released); d > 2*time.Second {
			t.Fatalf("waiter took %v after the release (lease 20s)", d)
		}
	})

	t.Run("a paused master does not hold back a waiter", func(t *testing.T) {
		// The review's case: with one master SIGSTOPped, a waiter took a
		// freed lock 10 s late, past its wait, and held it idle for 5 s.
		q := startQuorum(t)
		ctx := ctxT(t, 30*time.Second)
		q.servers[2].Pause()
		defer q.servers[2].Resume()
		c := q.client(t)
		m := c.NewMutex("p", mutex.WithTTL(10*time.Second))
		if err := m.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		w := q.client(t).NewMutex("p", mutex.WithTTL(10*time.Second), mutex.WithWait(5*time.Second))
		res := make(chan error, 1)
		go func() { res <- w.Lock(ctx) }()
		time.Sleep(300 * time.Millisecond)
		released := time.Now()
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-res; err != nil {
			t.Fatalf("waiter: %v", err)
		}
		if d := time.Since(released); d > 1500*time.Millisecond {
			t.Fatalf("the waiter's Lock returned %v after the release", d)
		}
		start := time.Now()
		if err := w.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("unlock took %v", d)
		}
	})

	t.Run("contenders with a master paused all get their turn", func(t *testing.T) {
		// The review's case: two waiters each holding part of the
		// answering masters waited on the paused one, and most timed out.
		q := startQuorum(t)
		ctx := ctxT(t, 60*time.Second)
		q.servers[1].Pause()
		defer q.servers[1].Resume()
		var inside, overlaps, done int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 6 {
			c := q.client(t)
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := c.NewMutex("herd", mutex.WithTTL(5*time.Second), mutex.WithWait(15*time.Second)).Do(ctx, func(context.Context) error {
					mu.Lock()
					if inside++; inside > 1 {
						overlaps++
					}
					mu.Unlock()
					time.Sleep(100 * time.Millisecond)
					mu.Lock()
					inside--
					done++
					mu.Unlock()
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if overlaps > 0 || done != 6 {
			t.Fatalf("%d of 6 ran, %d overlaps", done, overlaps)
		}
	})

	t.Run("keep-alive holds through one master down, loses with two", func(t *testing.T) {
		q := startQuorum(t)
		c := q.client(t)
		ctx := ctxT(t, 30*time.Second)
		m := c.NewMutex("k", mutex.WithTTL(3*time.Second))
		if err := m.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		kctx, stop := m.KeepAlive(ctx)
		defer stop()
		q.servers[0].Stop()
		time.Sleep(4 * time.Second) // more than a lease
		if err := kctx.Err(); err != nil {
			t.Fatalf("lost with one master down: %v", context.Cause(kctx))
		}
		q.servers[1].Stop()
		select {
		case <-kctx.Done():
			if !errors.Is(context.Cause(kctx), mutex.ErrLost) {
				t.Fatalf("cause = %v", context.Cause(kctx))
			}
		case <-time.After(4 * time.Second):
			t.Fatal("still trusted with two masters down")
		}
	})
}

// TestQuorumCounter is the seed's bar on a quorum: 20 workers, a client
// each, 50 increments each of a non-atomic GET/SET counter on a fourth
// server; the count is exact.
func TestQuorumCounter(t *testing.T) {
	q := startQuorum(t)
	counter := redistest.Start(t)
	crdb := newRedis(t, counter.URL())
	ctx := ctxT(t, 120*time.Second)
	const workers, incs = 20, 50
	var wg sync.WaitGroup
	for range workers {
		c := q.client(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range incs {
				err := c.NewMutex("counter", mutex.WithTTL(5*time.Second)).Do(ctx, func(ctx context.Context) error {
					n, _ := crdb.Get(ctx, "n").Int()
					return crdb.Set(ctx, "n", n+1, 0).Err()
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n, _ := crdb.Get(ctx, "n").Int(); n != workers*incs {
		t.Fatalf("counter = %d, want %d", n, workers*incs)
	}
}

// waitFor retries f until it succeeds or d passes.
func waitFor(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fenceTaker returns take(step): it takes and releases the lock called
// name (waiting up to 10s for a majority), and fails the test unless the
// fence is above every fence taken before.
func fenceTaker(t *testing.T, c *mutex.Client, name string) func(step string) {
	ctx := ctxT(t, 60*time.Second)
	var last int64
	return func(step string) {
		t.Helper()
		var m *mutex.Mutex
		waitFor(t, 10*time.Second, func() error {
			m = c.NewMutex(name, mutex.WithTTL(3*time.Second))
			return m.TryLock(ctx)
		})
		if m.Fence() <= last {
			t.Fatalf("%s: fence %d after %d", step, m.Fence(), last)
		}
		last = m.Fence()
		if err := m.Unlock(ctx); err != nil {
			t.Fatalf("%s: unlock: %v", step, err)
		}
	}
}
