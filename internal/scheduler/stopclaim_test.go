package scheduler_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

// stoppingLocker stops the replica right after the first batch of claims
// went through, and holds that batch's answer a while, so that the later
// batches (ranks) of the same tick come due while the replica is stopping.
type stoppingLocker struct {
	scheduler.Locker
	stop    func()
	stopped atomic.Bool
	once    sync.Once
	mu      sync.Mutex
	late    int // claims asked for after the stop
	lateWon int
}

func (l *stoppingLocker) ClaimAndLock(ctx context.Context, claims []*scheduler.Claim, settled func(int)) {
	after := l.stopped.Load()
	l.Locker.ClaimAndLock(ctx, claims, settled)
	if after {
		l.mu.Lock()
		l.late += len(claims)
		for _, c := range claims {
			if c.Won {
				l.lateWon++
			}
		}
		l.mu.Unlock()
		return
	}
	l.once.Do(func() {
		l.stopped.Store(true)
		l.stop()
		time.Sleep(400 * time.Millisecond) // the other slots (<= splay) are due by now
	})
}

// TestNoClaimAfterStop: once the replica is told to stop, no tick is
// claimed any more (shutdown step 1, "stop claiming"), even a slot of a
// tick whose time has already come. Two other (silent) replicas have a
// heartbeat, so that this one is not first in line for every instance and
// claims each tick in several batches.
func TestNoClaimAfterStop(t *testing.T) {
	srv := redistest.Start(t)
	for attempt := range 6 {
		t.Run(fmt.Sprint("attempt ", attempt), func(t *testing.T) {
			rdb := newRedis(t, srv.URL())
			cfg := config(t, outFile(t), jobsYAML(16, "@every 1s", "", `["true"]`))
			mc := mutex.New(rdb, mutex.WithPrefix(prefix(t)), mutex.WithOwner("a"))
			t.Cleanup(func() { mc.Close() })
			store := scheduler.NewStore(rdb, prefix(t))
			for _, id := range []string{"x", "y"} {
				if _, err := store.Beat(context.Background(), scheduler.Heartbeat{ID: id}, time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			l := &stoppingLocker{Locker: locker{mc}, stop: cancel}
			s := scheduler.New(cfg, store, l,
				scheduler.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))), scheduler.WithReplicaID("a"),
				scheduler.WithSplay(200*time.Millisecond), scheduler.WithShutdownGrace(5*time.Second))
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("replica did not stop")
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.late > 0 {
				t.Fatalf("%d claims asked for after the replica was told to stop (%d won, and their runs started during shutdown)", l.late, l.lateWon)
			}
		})
	}
}
