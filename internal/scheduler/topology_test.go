package scheduler_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
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

// TestDurabilityOnCluster: on Redis Cluster every master's settings are
// read, and a warning names its node: here one master of three keeps
// appendonly off.
func TestDurabilityOnCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	masters, err := cl.Masters()
	if err != nil || len(masters) != 3 {
		t.Fatalf("masters %v, %v", masters, err)
	}
	ctx := context.Background()
	for _, m := range masters[1:] {
		node := redis.NewClient(&redis.Options{Addr: m.Addr})
		if err := node.ConfigSet(ctx, "appendonly", "yes").Err(); err != nil {
			t.Fatal(err)
		}
		if err := node.ConfigSet(ctx, "appendfsync", "always").Err(); err != nil {
			t.Fatal(err)
		}
		node.Close()
	}
	w, err := scheduler.NewStore(newRedis(t, cl.URL()), prefix(t)).Durability(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 1 || !strings.HasPrefix(w[0], masters[0].Addr+": appendonly is off") {
		t.Fatalf("warnings %q, want one for %s", w, masters[0].Addr)
	}
}
