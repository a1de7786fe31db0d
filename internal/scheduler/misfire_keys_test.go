package scheduler_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/redistest"
)

// TestMisfireSeesOtherKeys: misfire: run_once never runs again a tick
// that was claimed under another key than the instance's current lock's:
// its lock before a reload renamed it, or the key layout of jobd
// versions before the lock's hash tag (an upgrade). Each tick in the
// window runs once.
func TestMisfireSeesOtherKeys(t *testing.T) {
	const extra = "    misfire: run_once\n    starting_deadline: 1m\n"
	t.Run("lock renamed by a reload", func(t *testing.T) {
		url := redistest.SharedURL(t)
		out := outFile(t)
		r := startReplica(t, url, config(t, out, jobsYAML(1, "@every 2s", extra+"    lock: before\n", recordCmd)), "a")
		waitFor(t, 10*time.Second, "a run under the first lock", func() bool { return len(lines(t, out)) > 0 })
		r.s.Reload(config(t, out, jobsYAML(1, "@every 2s", extra+"    lock: after\n", recordCmd)))
		time.Sleep(5 * time.Second) // maintenance passes every 500ms
		r.stop()
		seen := map[string]int{}
		for _, f := range lines(t, out) {
			if seen[f[1]]++; seen[f[1]] > 1 {
				t.Errorf("tick %s ran %d times", f[1], seen[f[1]])
			}
		}
	})
	t.Run("claimed by a jobd before the lock-tagged layout", func(t *testing.T) {
		url := redistest.SharedURL(t)
		out := outFile(t)
		for s := time.Now().Second() % 10; s < 4 || s > 6; s = time.Now().Second() % 10 {
			time.Sleep(100 * time.Millisecond)
		}
		tick := time.Now().Truncate(10 * time.Second)
		rdb := newRedis(t, url)
		// What a jobd of the old layout left: the claim under {INSTANCE}.
		rdb.Set(context.Background(), prefix(t)+":tick:{j00}:"+strconv.FormatInt(tick.Unix(), 10), "old 20260101T000000Z-old", time.Minute)
		r := startReplica(t, url, config(t, out, jobsYAML(1, "@every 10s", extra, recordCmd)), "a")
		time.Sleep(2 * time.Second)
		r.stop()
		for _, f := range lines(t, out) {
			if f[1] == tick.UTC().Format(time.RFC3339) {
				t.Fatalf("the tick claimed in the old layout ran again")
			}
		}
	})
}
