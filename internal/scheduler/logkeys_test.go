package scheduler_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

// TestOutputLogKeys: a job's output lines carry job and run_id once each
// (duplicate keys break JSON log pipelines).
func TestOutputLogKeys(t *testing.T) {
	url := redistest.SharedURL(t)
	cfg := config(t, outFile(t), jobsYAML(1, "@every 1s", "", `["echo", "hello from the job"]`))
	r := startReplica(t, url, cfg, "a")
	store := scheduler.NewStore(newRedis(t, url), prefix(t))
	waitFor(t, 10*time.Second, "a run", func() bool { _, ok, _ := store.LastSuccess(context.Background(), scheduler.Named("j00")); return ok })
	r.stop()
	found := false
	for _, line := range strings.Split(r.logs.String(), "\n") {
		if !strings.Contains(line, "hello from the job") {
			continue
		}
		found = true
		for _, key := range []string{"job=", "run_id=", "replica="} {
			if n := strings.Count(line, " "+key); n != 1 {
				t.Errorf("%s appears %d times in %q", key, n, line)
			}
		}
	}
	if !found {
		t.Fatal("no output line logged")
	}
}
