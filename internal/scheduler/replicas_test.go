package scheduler_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

// TestMinReplicasAcked: with redis.min_replicas_acked, a tick runs while
// the replica acknowledges its claim; while the replica is paused, the
// claim is won but the run is not started: its record says skipped,
// never started, not replicated (fail closed).
func TestMinReplicasAcked(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.StartWith(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	rdb := newRedis(t, master.URL())
	waitReplicaSynced(t, master.URL())
	out := outFile(t)
	cfg := config(t, out, "redis:\n  min_replicas_acked: 1\n  min_replicas_timeout: 300ms\n"+
		jobsYAML(1, "@every 1s", "", recordCmd))
	startReplica(t, master.URL(), cfg, "a")
	store := scheduler.NewStore(rdb, prefix(t))
	waitFor(t, 10*time.Second, "a run while the replica acknowledges", func() bool {
		_, ok, _ := store.LastSuccess(context.Background(), scheduler.Named("j00"))
		return ok
	})
	replica.Pause()
	defer replica.Resume()
	before := len(lines(t, out))
	var skipped scheduler.Record
	waitFor(t, 10*time.Second, "a tick not started for want of a replica", func() bool {
		recs, _ := store.History(context.Background(), scheduler.Named("j00"), 5)
		for _, r := range recs {
			if r.Status == jobs.StatusSkipped && strings.Contains(r.Reason, "not replicated") {
				skipped = r
				return true
			}
		}
		return false
	})
	if !skipped.NeverStarted || skipped.Start != nil {
		t.Errorf("record %+v: want never started", skipped)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := len(lines(t, out)); n > before+1 { // one run may have been in flight at the pause
		t.Errorf("%d runs while the replica was paused", n-before)
	}
}

// waitReplicaSynced waits until the master's writes reach its replica.
func waitReplicaSynced(t *testing.T, url string) {
	t.Helper()
	rdb := newRedis(t, url)
	ctx := context.Background()
	waitFor(t, 20*time.Second, "the replica's first sync", func() bool {
		pipe := rdb.Pipeline()
		pipe.Set(ctx, "probe", "x", time.Second)
		wait := pipe.Do(ctx, "wait", 1, 100)
		_, _ = pipe.Exec(ctx)
		n, _ := wait.Int64()
		return n == 1
	})
}
