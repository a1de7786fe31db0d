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

// TestDuplicateReplicaID: a second process started under a live
// replica's id is reported (an error in the log of one of the two), and
// when it stops it does not remove the live replica's heartbeat.
func TestDuplicateReplicaID(t *testing.T) {
	url := redistest.SharedURL(t)
	cfg := config(t, outFile(t), jobsYAML(1, "@yearly", "", recordCmd))
	first := startReplica(t, url, cfg, "dup")
	second := startReplica(t, url, cfg, "dup")
	const msg = "another process runs under this replica's id"
	waitFor(t, 10*time.Second, "the duplicate id reported", func() bool {
		return strings.Contains(first.logs.String(), msg) || strings.Contains(second.logs.String(), msg)
	})
	second.stop()
	store := scheduler.NewStore(newRedis(t, url), prefix(t))
	time.Sleep(time.Second) // two beats of the first
	hbs, err := store.Replicas(context.Background())
	if err != nil || len(hbs) != 1 || hbs[0].ID != "dup" {
		t.Fatalf("replicas after the duplicate stopped: %+v, %v; want the first one still listed", hbs, err)
	}
	first.stop()

	// RemoveBeat leaves another incarnation's heartbeat alone.
	ctx := context.Background()
	if _, err := store.Beat(ctx, scheduler.Heartbeat{ID: "solo", Incarnation: "x"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		incarnation string
		left        int
	}{{"y", 1}, {"x", 0}} {
		if err := store.RemoveBeat(ctx, "solo", tt.incarnation); err != nil {
			t.Fatal(err)
		}
		if hbs, _ := store.Replicas(ctx); len(hbs) != tt.left {
			t.Errorf("RemoveBeat by incarnation %q left %d heartbeats, want %d", tt.incarnation, len(hbs), tt.left)
		}
	}
}
