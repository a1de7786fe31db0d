package mutex_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
)

// TestCluster: the mutex on a 3-master, 3-replica Redis Cluster. The
// seed's test (20 processes, 100 increments each) counts exactly 2000;
// waiters on locks spread over the slots are woken by the release's
// notification, not by their retry timers; List finds the locks held on
// every master.
func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	url := cl.URL()
	t.Run("seed counter", func(t *testing.T) {
		sections := runHelpersOn(t, url, 20, 100, 0)
		got, err := newUniversal(t, url).Get(context.Background(), prefix(t)+":counter").Int()
		if err != nil {
			t.Fatal(err)
		}
		if got != 2000 || len(sections) != 2000 {
			t.Fatalf("counter = %d, sections = %d, want 2000 and 2000", got, len(sections))
		}
	})
	t.Run("waiters woken by release", func(t *testing.T) {
		rdb := newUniversal(t, url)
		c := mutex.New(rdb, mutex.WithPrefix(prefix(t)))
		defer c.Close()
		ctx := ctxT(t, 30*time.Second)
		for i := 0; i < 6; i++ { // six names: more than one slot per master, likely
			name := fmt.Sprintf("w%d", i)
			holder := c.NewMutex(name, mutex.WithTTL(10*time.Second))
			if err := holder.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			got := make(chan time.Time, 1)
			go func() {
				if err := c.NewMutex(name).Lock(ctx); err != nil {
					t.Error(err)
				}
				got <- time.Now()
			}()
			waitQueued(t, rdb, prefix(t)+":lock:{"+name+"}:queue", 1)
			released := time.Now()
			if err := holder.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			// A retry timer would fire at the 10s lease only.
			if d := (<-got).Sub(released); d > time.Second {
				t.Fatalf("waiter of %s took %v after release", name, d)
			}
		}
	})
	t.Run("list", func(t *testing.T) {
		rdb := newUniversal(t, url)
		c := mutex.New(rdb, mutex.WithPrefix(prefix(t)))
		defer c.Close()
		ctx := ctxT(t, 10*time.Second)
		const n = 12
		for i := 0; i < n; i++ {
			if err := c.NewMutex(fmt.Sprintf("l%02d", i)).Lock(ctx); err != nil {
				t.Fatal(err)
			}
		}
		infos, err := c.List(ctx)
		if err != nil || len(infos) != n {
			t.Fatalf("List: %d locks, %v; want %d", len(infos), err, n)
		}
	})
	t.Run("a stalled shard does not hold back the others", func(t *testing.T) {
		// Last: it fails a master over. Locks spread over the three
		// masters are claimed in one batch while one master is paused
		// (SIGSTOP): OnSettled hands over the others at once, while the
		// paused master's claim waits for its failover.
		rdb := newUniversal(t, url)
		c := mutex.New(rdb, mutex.WithPrefix(prefix(t)))
		defer c.Close()
		ctx := ctxT(t, 30*time.Second)
		names := make([]string, 12)
		for i := range names {
			names[i] = fmt.Sprintf("b%02d", i)
		}
		cc := rdb.(*redis.ClusterClient)
		victim, err := cc.MasterForKey(ctx, prefix(t)+":lock:{"+names[0]+"}")
		if err != nil {
			t.Fatal(err)
		}
		var paused *redistest.Server
		onVictim := map[int]bool{}
		for i, n := range names {
			m, err := cc.MasterForKey(ctx, prefix(t)+":lock:{"+n+"}")
			if err != nil {
				t.Fatal(err)
			}
			onVictim[i] = m.Options().Addr == victim.Options().Addr
		}
		for _, n := range cl.Nodes {
			if n.Addr == victim.Options().Addr {
				paused = n
			}
		}
		ms := make([]*mutex.Mutex, len(names))
		cls := make([]mutex.SetNX, len(names))
		for i, n := range names {
			ms[i] = c.NewMutex(n)
			cls[i] = mutex.SetNX{Key: prefix(t) + ":tick:{" + n + "}:1", Value: "v", TTL: time.Minute}
		}
		paused.Pause()
		defer paused.Resume()
		began := time.Now()
		at := make([]time.Duration, len(names))
		errs := c.TryLockBatch(ctx, ms, cls, mutex.OnSettled(func(i int, err error) { at[i] = time.Since(began) }))
		total := time.Since(began)
		var healthy, stalled time.Duration
		for i := range names {
			if onVictim[i] {
				stalled = max(stalled, at[i])
			} else {
				healthy = max(healthy, at[i])
				if errs[i] != nil {
					t.Errorf("%s on a healthy master: %v", names[i], errs[i])
				}
			}
		}
		t.Logf("healthy masters' claims settled within %v; the paused master's after %v; the batch returned after %v", healthy, stalled, total)
		if healthy > time.Second || stalled < 2*healthy {
			t.Errorf("the healthy claims were handed over after %v, the stalled ones after %v", healthy, stalled)
		}
	})
}
