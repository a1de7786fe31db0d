package mutex_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
)

// retryModes are the go-redis settings the lost-reply tests run under:
// production's (MaxRetries 3: go-redis itself sends the command again) and
// retries off (the mutex must settle the unknown outcome itself).
var retryModes = []struct {
	name    string
	retries int
}{
	{"production retries", 0}, // 0: go-redis's default, 3
	{"retries off", -1},
}

// proxied returns a mutex client whose Redis connection goes through a
// fault proxy, and a direct client to check the state in Redis.
func proxied(t *testing.T, retries int) (*mutex.Client, *redistest.Proxy, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t)
	p := redistest.NewProxy(t, srv.Addr)
	opt, err := redis.ParseURL(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = retries
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	c := mutex.New(rdb, mutex.WithPrefix(prefix(t)), mutex.WithOwner("me"))
	t.Cleanup(func() { c.Close() })
	// Load every script first: a dropped reply must be that of a script
	// that ran, not of a NOSCRIPT answer that go-redis follows with EVAL.
	ctx := context.Background()
	warm := c.NewMutex("warm-up")
	if err := warm.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := warm.Extend(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := warm.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	return c, p, newRedis(t, srv.URL())
}

// TestLostReplies: an operation that ran on Redis but whose reply was lost
// answers what it did, never "not obtained", "claim taken" or "lost".
func TestLostReplies(t *testing.T) {
	for _, mode := range retryModes {
		t.Run(mode.name, func(t *testing.T) {
			tests := []struct {
				name string
				run  func(t *testing.T, c *mutex.Client, p *redistest.Proxy, direct *redis.Client)
			}{
				{"TryLock", func(t *testing.T, c *mutex.Client, p *redistest.Proxy, direct *redis.Client) {
					ctx := ctxT(t, 10*time.Second)
					m := c.NewMutex("try", mutex.WithTTL(10*time.Second))
					p.DropReplies("{try}", 1)
					if err := m.TryLock(ctx); err != nil {
						t.Fatalf("TryLock after a lost reply: %v, want held", err)
					}
					assertHolder(t, c, "try", "me", m.Fence())
					if err := m.Unlock(ctx); err != nil {
						t.Fatal(err)
					}
				}},
				{"Lock with a wait", func(t *testing.T, c *mutex.Client, p *redistest.Proxy, direct *redis.Client) {
					ctx := ctxT(t, 10*time.Second)
					m := c.NewMutex("wait", mutex.WithTTL(10*time.Second), mutex.WithWait(3*time.Second))
					p.DropReplies("{wait}", 1)
					if err := m.Lock(ctx); err != nil {
						t.Fatalf("Lock after a lost reply: %v, want held", err)
					}
					assertHolder(t, c, "wait", "me", m.Fence())
					if err := m.Unlock(ctx); err != nil {
						t.Fatal(err)
					}
				}},
				{"Unlock", func(t *testing.T, c *mutex.Client, p *redistest.Proxy, direct *redis.Client) {
					ctx := ctxT(t, 10*time.Second)
					m := c.NewMutex("unlock", mutex.WithTTL(10*time.Second))
					if err := m.TryLock(ctx); err != nil {
						t.Fatal(err)
					}
					p.DropReplies("}:rel", 1) // after the set-up only Unlock runs, whose release names the token's marker key
					if err := m.Unlock(ctx); err != nil {
						t.Fatalf("Unlock after a lost reply: %v, want nil (it was released)", err)
					}
					if n := direct.Exists(ctx, prefix(t)+":lock:{unlock}").Val(); n != 0 {
						t.Fatal("lock still held")
					}
				}},
				{"Extend", func(t *testing.T, c *mutex.Client, p *redistest.Proxy, direct *redis.Client) {
					ctx := ctxT(t, 10*time.Second)
					m := c.NewMutex("extend", mutex.WithTTL(2*time.Second))
					if err := m.TryLock(ctx); err != nil {
						t.Fatal(err)
					}
					p.DropReplies("{extend}", 1)
					if err := m.Extend(ctx, 20*time.Second); err != nil {
						t.Fatalf("Extend after a lost reply: %v", err)
					}
					if ttl := direct.PTTL(ctx, prefix(t)+":lock:{extend}").Val(); ttl < 10*time.Second {
						t.Fatalf("lease %v after extending to 20s", ttl)
					}
					if err := m.Unlock(ctx); err != nil {
						t.Fatal(err)
					}
				}},
				{"claims in a pipeline", func(t *testing.T, c *mutex.Client, p *redistest.Proxy, direct *redis.Client) {
					ctx := ctxT(t, 10*time.Second)
					const n = 50
					ms := make([]*mutex.Mutex, n)
					cls := make([]mutex.SetNX, n)
					for i := range ms {
						ms[i] = c.NewMutex(fmt.Sprintf("claim-%d", i), mutex.WithTTL(10*time.Second))
						cls[i] = mutex.SetNX{Key: fmt.Sprintf("%s:tick:{claim-%d}:1", prefix(t), i), Value: fmt.Sprintf("me run-%d", i), TTL: time.Minute}
					}
					p.DropReplies(":tick:", 1) // the whole batch's reply is lost
					for i, err := range c.TryLockBatch(ctx, ms, cls) {
						if err != nil {
							t.Fatalf("claim %d after a lost reply: %v, want won", i, err)
						}
						if v := direct.Get(ctx, cls[i].Key).Val(); v != cls[i].Value {
							t.Fatalf("claim %d holds %q", i, v)
						}
						assertHolder(t, c, ms[i].Name(), "me", ms[i].Fence())
					}
				}},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					c, p, direct := proxied(t, mode.retries)
					tt.run(t, c, p, direct)
					if p.Dropped() != 1 {
						t.Fatalf("the proxy dropped %d replies, want 1: the fault did not happen", p.Dropped())
					}
				})
			}
		})
	}
}

func assertHolder(t *testing.T, c *mutex.Client, name, owner string, fence int64) {
	t.Helper()
	info, ok, err := c.Inspect(context.Background(), name)
	if err != nil || !ok || info.Owner != owner || info.Fence != fence || fence == 0 {
		t.Fatalf("lock %q: held %v by %q fence %d (err %v), want %q fence %d", name, ok, info.Owner, info.Fence, err, owner, fence)
	}
}

// TestUnknownOutcomeIsNotNotObtained: when Redis cannot be reached at all,
// TryLock reports the error, not "not obtained", and leaves no hold.
func TestUnknownOutcomeIsNotNotObtained(t *testing.T) {
	c, p, direct := proxied(t, 0)
	p.Refuse()
	ctx := ctxT(t, 20*time.Second)
	err := c.NewMutex("down").TryLock(ctx)
	if err == nil || errors.Is(err, mutex.ErrNotObtained) {
		t.Fatalf("TryLock with Redis unreachable: %v, want a Redis error", err)
	}
	p.Accept()
	if n := direct.Exists(ctx, prefix(t)+":lock:{down}").Val(); n != 0 {
		t.Fatal("a hold was left behind")
	}
}

// TestClaimWindow: Redis refuses a new claim outside its window (a clock
// too far off), and changes nothing; an existing claim of ours is still
// reported as ours.
func TestClaimWindow(t *testing.T) {
	c, rdb := newClient(t)
	ctx := ctxT(t, 5*time.Second)
	key := prefix(t) + ":tick:{w}:1"
	late := mutex.SetNX{Key: key, Value: "a run-1", TTL: time.Minute, NotAfter: time.Now().Add(-time.Minute)}
	if err := c.NewMutex("w").TryLockSetNX(ctx, late); !errors.Is(err, mutex.ErrOutsideWindow) {
		t.Fatalf("late claim: %v, want ErrOutsideWindow", err)
	}
	early := mutex.SetNX{Key: key, Value: "a run-1", TTL: time.Minute, NotBefore: time.Now().Add(time.Minute)}
	if err := c.NewMutex("w").TryLockSetNX(ctx, early); !errors.Is(err, mutex.ErrOutsideWindow) {
		t.Fatalf("early claim: %v, want ErrOutsideWindow", err)
	}
	if rdb.Exists(ctx, key, prefix(t)+":lock:{w}").Val() != 0 {
		t.Fatal("a refused claim changed something")
	}
	ok := mutex.SetNX{Key: key, Value: "a run-1", TTL: time.Minute, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Minute)}
	if err := c.NewMutex("w").TryLockSetNX(ctx, ok); err != nil {
		t.Fatal(err)
	}
}

// TestKeepAliveFollowsExtend: after Extend shortens the lease, keep-alive
// trusts the shorter lease. With renewals impossible, the holder's context
// ends before the lease in Redis does, so a second holder never gets in
// while the first still believes it holds the lock.
func TestKeepAliveFollowsExtend(t *testing.T) {
	c, p, direct := proxied(t, 0)
	ctx := ctxT(t, 20*time.Second)
	m := c.NewMutex("short", mutex.WithTTL(6*time.Second))
	if err := m.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	kctx, stop := m.KeepAlive(ctx)
	defer stop()
	if err := m.Extend(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	p.Stall() // no renewal can succeed from now on
	defer p.Unstall()
	other := mutex.New(direct, mutex.WithPrefix(prefix(t)), mutex.WithOwner("other"))
	defer other.Close()
	second := other.NewMutex("short", mutex.WithTTL(time.Minute), mutex.WithWait(10*time.Second))
	if err := second.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if kctx.Err() == nil {
		t.Fatal("a second holder got the lock while the first one's context was still alive")
	}
	if !errors.Is(context.Cause(kctx), mutex.ErrLost) {
		t.Fatalf("cause %v, want ErrLost", context.Cause(kctx))
	}
}

// TestKeepAliveOnExpiredLease: a lease already past its trusted time is
// reported lost before KeepAlive returns, so no work starts under it.
func TestKeepAliveOnExpiredLease(t *testing.T) {
	c, p, _ := proxied(t, 0)
	ctx := ctxT(t, 20*time.Second)
	m := c.NewMutex("stale", mutex.WithTTL(time.Second))
	if err := m.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	p.Stall()
	defer p.Unstall()
	time.Sleep(900 * time.Millisecond)
	kctx, stop := m.KeepAlive(ctx)
	defer stop()
	if kctx.Err() == nil {
		t.Fatal("KeepAlive on a lease past its trusted time returned a live context")
	}
}
