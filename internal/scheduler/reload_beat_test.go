package scheduler_test

import (
	"context"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

// TestReloadBeatsAtOnce: after a reload the replica publishes the new
// config hash at once, not at its next heartbeat (here 10s away), so that
// status does not show DIFFERS meanwhile.
func TestReloadBeatsAtOnce(t *testing.T) {
	url := redistest.SharedURL(t)
	out := outFile(t)
	r := startReplica(t, url, config(t, out, jobsYAML(1, "@daily", "", recordCmd)), "a",
		scheduler.WithIntervals(10*time.Second, time.Second))
	store := scheduler.NewStore(newRedis(t, url), prefix(t))
	hash := func() string {
		beats, _ := store.Replicas(context.Background())
		if len(beats) == 0 {
			return ""
		}
		return beats[0].ConfigHash
	}
	waitFor(t, 5*time.Second, "the first heartbeat", func() bool { return hash() != "" })
	next := config(t, out, jobsYAML(2, "@daily", "", recordCmd))
	r.s.Reload(next)
	waitFor(t, 2*time.Second, "the new hash in the heartbeat", func() bool { return hash() == next.Hash })
}

// TestRunningFromTheIndex: the Inspector's running list of a replica is
// current as soon as a run starts, though the replica's heartbeat (10s
// apart here) is older.
func TestRunningFromTheIndex(t *testing.T) {
	url := redistest.SharedURL(t)
	r := startReplica(t, url, config(t, outFile(t), jobsYAML(1, "@every 1s", "", `["sleep", "3"]`)), "a",
		scheduler.WithIntervals(10*time.Second, time.Second))
	insp := scheduler.NewInspector(scheduler.NewStore(newRedis(t, url), prefix(t)))
	waitFor(t, 5*time.Second, "j00 running in status", func() bool {
		reps, _ := insp.Replicas(context.Background())
		return len(reps) == 1 && len(reps[0].Running) == 1 && reps[0].Running[0] == "j00"
	})
	r.stop()
}
