package mutex

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/redistest"
)

// TestLateCopyOfAnAcquisition: a copy of an acquire request that reaches
// Redis after its hold was released (it was stuck on a connection that
// the client had given up, while the retry on another connection won)
// takes nothing: no fence, no hold, so the lock is not left held by a
// process that has already exited.
func TestLateCopyOfAnAcquisition(t *testing.T) {
	opt, _ := redis.ParseURL(redistest.SharedURL(t))
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	c := New(rdb, WithPrefix("test:"+t.Name()))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m := c.NewMutex("late", WithTTL(10*time.Second))
	if err := m.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	token := m.token
	m.mu.Unlock()
	fence := m.Fence()
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	keys, args := m.acquireArgs(token, "", nil) // the late copy: same token
	res, err := acquireScript.Run(ctx, rdb, keys, args...).Int64Slice()
	if err != nil {
		t.Fatal(err)
	}
	if res[0] != -3 {
		t.Fatalf("late copy answered %v, want -3 (already released)", res)
	}
	if n := rdb.Exists(ctx, m.k.lock).Val(); n != 0 {
		t.Fatal("the late copy took the lock")
	}
	if f, _ := rdb.Get(ctx, m.k.fence).Int64(); f != fence {
		t.Fatalf("fence %d after the late copy, want %d", f, fence)
	}
}
