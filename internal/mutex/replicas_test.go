package mutex_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
)

// TestReplicaWait: with WithReplicaWait, a lock that the replica
// acknowledged is held; one it did not (the replica is paused) is
// released again and reported ErrNotReplicated, for Lock, TryLock and
// the batch alike. The cost of the WAIT is logged.
func TestReplicaWait(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.StartWith(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	rdb := redis.NewClient(&redis.Options{Addr: master.Addr})
	defer rdb.Close()
	ctx := context.Background()
	waitReplicated(t, rdb)
	c := mutex.New(rdb, mutex.WithPrefix(prefix(t)), mutex.WithReplicaWait(1, 300*time.Millisecond))
	defer c.Close()
	tests := []struct {
		name   string
		paused bool
		lock   func(m *mutex.Mutex) error
	}{
		{"TryLock, replica up", false, func(m *mutex.Mutex) error { return m.TryLock(ctx) }},
		{"Lock, replica up", false, func(m *mutex.Mutex) error { return m.Lock(ctx) }},
		{"batch, replica up", false, func(m *mutex.Mutex) error {
			return c.TryLockBatch(ctx, []*mutex.Mutex{m}, []mutex.SetNX{{Key: prefix(t) + ":k:" + m.Name(), Value: "v", TTL: time.Minute}})[0]
		}},
		{"TryLock, replica paused", true, func(m *mutex.Mutex) error { return m.TryLock(ctx) }},
		{"batch, replica paused", true, func(m *mutex.Mutex) error {
			return c.TryLockBatch(ctx, []*mutex.Mutex{m}, []mutex.SetNX{{Key: prefix(t) + ":k:" + m.Name(), Value: "v", TTL: time.Minute}})[0]
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.paused {
				replica.Pause()
				defer replica.Resume()
			}
			m := c.NewMutex(fmt.Sprintf("r%d", i))
			began := time.Now()
			err := tt.lock(m)
			t.Logf("acquire with WAIT 1: %v", time.Since(began))
			if !tt.paused {
				if err != nil {
					t.Fatalf("lock: %v", err)
				}
				_ = m.Unlock(ctx)
				return
			}
			if !errors.Is(err, mutex.ErrNotReplicated) {
				t.Fatalf("lock with the replica paused: %v, want ErrNotReplicated", err)
			}
			if n := rdb.Exists(ctx, prefix(t)+":lock:{"+m.Name()+"}").Val(); n != 0 {
				t.Fatal("an unreplicated lock was left held")
			}
		})
	}
}

// waitReplicated waits until a write on rdb is acknowledged by a replica
// (a new replica first needs its full sync).
func waitReplicated(t *testing.T, rdb *redis.Client) {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		var wait *redis.Cmd
		_, _ = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "probe", "x", time.Second)
			wait = p.Do(ctx, "wait", 1, 100)
			return nil
		})
		if n, _ := wait.Int64(); n == 1 {
			return
		}
	}
	t.Fatal("the replica never acknowledged a write")
}
