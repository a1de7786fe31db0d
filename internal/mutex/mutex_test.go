package mutex_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/mutex"
)

// TestSeed ports the seed article's unit tests.
func TestSeed(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, c *mutex.Client, name string)
	}{
		{"lock", func(t *testing.T, c *mutex.Client, name string) {
			m := c.NewMutex(name)
			if err := m.Lock(ctxT(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
			info, ok, err := c.Inspect(ctxT(t, time.Second), name)
			if err != nil || !ok {
				t.Fatalf("inspect after lock: ok=%v err=%v", ok, err)
			}
			if info.Fence != m.Fence() || info.Owner != c.Owner() {
				t.Fatalf("metadata %+v, want fence %d owner %s", info, m.Fence(), c.Owner())
			}
		}},
		{"lock twice is already held", func(t *testing.T, c *mutex.Client, name string) {
			m := c.NewMutex(name)
			ctx := ctxT(t, 5*time.Second)
			if err := m.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			if err := m.Lock(ctx); !errors.Is(err, mutex.ErrAlreadyHeld) {
				t.Fatalf("second Lock: %v, want ErrAlreadyHeld", err)
			}
			if err := m.TryLock(ctx); !errors.Is(err, mutex.ErrAlreadyHeld) {
				t.Fatalf("TryLock: %v, want ErrAlreadyHeld", err)
			}
		}},
		{"unlock", func(t *testing.T, c *mutex.Client, name string) {
			m := c.NewMutex(name)
			ctx := ctxT(t, 5*time.Second)
			if err := m.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			if err := m.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := c.Inspect(ctx, name); ok {
				t.Fatal("lock still held after unlock")
			}
		}},
		{"unlock twice is not held", func(t *testing.T, c *mutex.Client, name string) {
			m := c.NewMutex(name)
			ctx := ctxT(t, 5*time.Second)
			if err := m.Unlock(ctx); !errors.Is(err, mutex.ErrNotHeld) {
				t.Fatalf("unlock before lock: %v", err)
			}
			if err := m.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			if err := m.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			if err := m.Unlock(ctx); !errors.Is(err, mutex.ErrNotHeld) {
				t.Fatalf("second unlock: %v, want ErrNotHeld", err)
			}
		}},
		{"unlock after ttl is expired", func(t *testing.T, c *mutex.Client, name string) {
			m := c.NewMutex(name, mutex.WithTTL(50*time.Millisecond))
			ctx := ctxT(t, 5*time.Second)
			if err := m.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(120 * time.Millisecond)
			if err := m.Unlock(ctx); !errors.Is(err, mutex.ErrLost) {
				t.Fatalf("unlock after expiry: %v, want ErrLost", err)
			}
		}},
		{"expired lock can be taken by another handle", func(t *testing.T, c *mutex.Client, name string) {
			a := c.NewMutex(name, mutex.WithTTL(50*time.Millisecond))
			b := c.NewMutex(name)
			ctx := ctxT(t, 5*time.Second)
			if err := a.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			if err := b.TryLock(ctx); !errors.Is(err, mutex.ErrNotObtained) {
				t.Fatalf("TryLock while held: %v, want ErrNotObtained", err)
			}
			time.Sleep(120 * time.Millisecond)
			if err := b.TryLock(ctx); err != nil {
				t.Fatalf("TryLock after expiry: %v", err)
			}
			if b.Fence() <= a.Fence() {
				t.Fatalf("fence did not grow: %d then %d", a.Fence(), b.Fence())
			}
			// The old owner's unlock must not delete the new owner's lock.
			if err := a.Unlock(ctx); !errors.Is(err, mutex.ErrLost) {
				t.Fatalf("stale unlock: %v, want ErrLost", err)
			}
			if info, ok, _ := c.Inspect(ctx, name); !ok || info.Fence != b.Fence() {
				t.Fatalf("new owner's lock was touched: ok=%v %+v", ok, info)
			}
		}},
		{"waiter that gives up is not obtained", func(t *testing.T, c *mutex.Client, name string) {
			ctx := ctxT(t, 5*time.Second)
			if err := c.NewMutex(name).Lock(ctx); err != nil {
				t.Fatal(err)
			}
			err := c.NewMutex(name, mutex.WithWait(100*time.Millisecond)).Lock(ctx)
			if !errors.Is(err, mutex.ErrNotObtained) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("wait timeout: %v, want ErrNotObtained and DeadlineExceeded", err)
			}
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			err = c.NewMutex(name).Lock(cctx)
			if !errors.Is(err, mutex.ErrNotObtained) || !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled: %v, want ErrNotObtained and Canceled", err)
			}
			err = c.NewMutex(name, mutex.WithRetry(3, 10*time.Millisecond)).Lock(ctx)
			if !errors.Is(err, mutex.ErrNotObtained) {
				t.Fatalf("bounded retries: %v, want ErrNotObtained", err)
			}
		}},
		{"do as with-block", func(t *testing.T, c *mutex.Client, name string) {
			ctx := ctxT(t, 5*time.Second)
			m := c.NewMutex(name)
			ran := false
			err := m.Do(ctx, func(ctx context.Context) error {
				ran = true
				if _, ok, _ := c.Inspect(ctx, name); !ok {
					t.Error("not held inside Do")
				}
				return nil
			})
			if err != nil || !ran {
				t.Fatalf("Do: ran=%v err=%v", ran, err)
			}
			if _, ok, _ := c.Inspect(ctx, name); ok {
				t.Fatal("still held after Do")
			}
			want := errors.New("boom")
			if err := m.Do(ctx, func(context.Context) error { return want }); !errors.Is(err, want) {
				t.Fatalf("Do error: %v", err)
			}
		}},
		{"do releases after panic", func(t *testing.T, c *mutex.Client, name string) {
			ctx := ctxT(t, 5*time.Second)
			func() {
				defer func() {
					if r := recover(); r != "boom" {
						t.Fatalf("recovered %v, want the panic to go on", r)
					}
				}()
				_ = c.NewMutex(name).Do(ctx, func(context.Context) error { panic("boom") })
			}()
			if _, ok, _ := c.Inspect(ctx, name); ok {
				t.Fatal("still held after a panic in Do")
			}
		}},
		{"wrap as decorator", func(t *testing.T, c *mutex.Client, name string) {
			ctx := ctxT(t, 10*time.Second)
			var inside, maxInside, calls atomic.Int32
			guarded := c.Wrap(name, func(ctx context.Context) error {
				n := inside.Add(1)
				for {
					m := maxInside.Load()
					if n <= m || maxInside.CompareAndSwap(m, n) {
						break
					}
				}
				time.Sleep(5 * time.Millisecond)
				calls.Add(1)
				inside.Add(-1)
				return nil
			})
			var wg sync.WaitGroup
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := guarded(ctx); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if calls.Load() != 8 || maxInside.Load() != 1 {
				t.Fatalf("calls=%d max concurrent=%d, want 8 and 1", calls.Load(), maxInside.Load())
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newClient(t)
			tt.run(t, c, "seed")
		})
	}
}

// TestNonOwner: release or extend with a stale token changes nothing.
func TestNonOwner(t *testing.T) {
	tests := []struct {
		name string
		op   func(ctx context.Context, m *mutex.Mutex) error
	}{
		{"unlock", func(ctx context.Context, m *mutex.Mutex) error { return m.Unlock(ctx) }},
		{"extend", func(ctx context.Context, m *mutex.Mutex) error { return m.Extend(ctx, time.Minute) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, rdb := newClient(t)
			ctx := ctxT(t, 5*time.Second)
			stale := c.NewMutex("x", mutex.WithTTL(50*time.Millisecond))
			if err := stale.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			owner := c.NewMutex("x", mutex.WithTTL(10*time.Second))
			if err := owner.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			key := prefix(t) + ":lock:{x}"
			before := rdb.HGetAll(ctx, key).Val()
			if err := tt.op(ctx, stale); !errors.Is(err, mutex.ErrLost) {
				t.Fatalf("%s by non-owner: %v, want ErrLost", tt.name, err)
			}
			after := rdb.HGetAll(ctx, key).Val()
			if len(after) == 0 || after["token"] != before["token"] || after["fence"] != before["fence"] || after["ttl"] != before["ttl"] {
				t.Fatalf("key changed by non-owner:\nbefore %v\nafter  %v", before, after)
			}
			if pttl := rdb.PTTL(ctx, key).Val(); pttl < 9*time.Second {
				t.Fatalf("ttl changed by non-owner: %v", pttl)
			}
		})
	}
}

// TestFencesIncrease: every acquisition gets a larger fence.
func TestFencesIncrease(t *testing.T) {
	c, _ := newClient(t)
	ctx := ctxT(t, 5*time.Second)
	var last int64
	for i := 0; i < 50; i++ {
		m := c.NewMutex("f")
		if err := m.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		if m.Fence() <= last {
			t.Fatalf("fence %d after %d", m.Fence(), last)
		}
		last = m.Fence()
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestInspectList: metadata is readable by others and never shows the token.
func TestInspectList(t *testing.T) {
	c, _ := newClient(t, mutex.WithOwner("replica-a"))
	ctx := ctxT(t, 5*time.Second)
	names := []string{"b", "a:1", "weird}{name"}
	for _, n := range names {
		if err := c.NewMutex(n, mutex.WithLabel("job="+n)).Lock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	infos, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 3 {
		t.Fatalf("List: %d locks, want 3: %+v", len(infos), infos)
	}
	for i, want := range []string{"a:1", "b", "weird}{name"} {
		in := infos[i]
		if in.Name != want || in.Owner != "replica-a" || in.Label != "job="+want || in.PID == 0 || in.Host == "" {
			t.Errorf("info %d = %+v, want name %q", i, in, want)
		}
		if in.TTL <= 0 || in.TTL > mutex.DefaultTTL || in.LeaseTTL != mutex.DefaultTTL || in.HeldFor < 0 {
			t.Errorf("times of %q: %+v", want, in)
		}
	}
	if _, ok, err := c.Inspect(ctx, "free"); ok || err != nil {
		t.Fatalf("Inspect(free) = %v, %v", ok, err)
	}
}
