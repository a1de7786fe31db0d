package scheduler_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

const recordCmd = `["sh", "-c", "echo \"$JOBD_INSTANCE $JOBD_SCHEDULED_AT $JOBD_REPLICA\" >> OUT"]`

// soakTime is how long TestExactlyOnce runs: 16s, or JOBD_SOAK (make soak).
func soakTime(t *testing.T) time.Duration {
	d := 16 * time.Second
	if s := os.Getenv("JOBD_SOAK"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("JOBD_SOAK: %v", err)
		}
		d = max(d, v)
	}
	return d
}

// TestExactlyOnce: three replicas, one started late and one with a clock
// 1.5s fast; ten jobs every second for 16s (JOBD_SOAK for longer). Every
// fire time in the window runs exactly once, counted from what the jobs
// wrote. On a standalone Redis, a Redis Cluster and a quorum of three
// independent masters.
func TestExactlyOnce(t *testing.T) {
	for _, top := range topologies {
		t.Run(top.name, func(t *testing.T) { exactlyOnce(t, top.url(t)) })
	}
}

func exactlyOnce(t *testing.T, url string) {
	total := soakTime(t)
	out := outFile(t)
	cfg := config(t, out, jobsYAML(10, "@every 1s", "", recordCmd))
	t0 := time.Now()
	a := startReplica(t, url, cfg, "a")
	b := startReplica(t, url, cfg, "b", scheduler.WithClock(skewClock(1500*time.Millisecond)))
	time.Sleep(3 * time.Second)
	c := startReplica(t, url, cfg, "c")
	time.Sleep(total - 3*time.Second)
	for _, r := range []*replica{a, b, c} {
		r.stop()
	}
	from := t0.Truncate(time.Second).Add(3 * time.Second) // b's skew puts its first ticks 1.5s ahead
	to := t0.Add(total - time.Second).Truncate(time.Second)
	counts := map[string]int{}
	byReplica := map[string]int{}
	for _, f := range lines(t, out) {
		counts[f[0]+" "+f[1]]++
		byReplica[f[2]]++
	}
	dups, missing, ticks := 0, 0, 0
	for i := 0; i < 10; i++ {
		for at := from; !at.After(to); at = at.Add(time.Second) {
			ticks++
			key := fmt.Sprintf("j%02d %s", i, at.UTC().Format(time.RFC3339))
			switch n := counts[key]; {
			case n == 0:
				missing++
				t.Errorf("%s never ran", key)
			case n > 1:
				dups++
				t.Errorf("%s ran %d times", key, n)
			}
		}
	}
	t.Logf("%d ticks in the window: %d duplicates, %d missing; runs by replica: %v", ticks, dups, missing, byReplica)
	if len(byReplica) < 2 {
		t.Errorf("only %v ran anything", byReplica)
	}
}

// TestLoadSpread: with three equal replicas and 30 jobs, no replica runs
// more than half the runs, and still every tick runs once.
func TestLoadSpread(t *testing.T) {
	url := redistest.SharedURL(t)
	out := outFile(t)
	cfg := config(t, out, jobsYAML(30, "@every 1s", "", recordCmd))
	var rs []*replica
	for _, id := range []string{"a", "b", "c"} {
		rs = append(rs, startReplica(t, url, cfg, id))
	}
	time.Sleep(7 * time.Second)
	for _, r := range rs {
		r.stop()
	}
	byReplica := map[string]int{}
	seen := map[string]int{}
	total := 0
	for _, f := range lines(t, out) {
		byReplica[f[2]]++
		seen[f[0]+" "+f[1]]++
		total++
	}
	t.Logf("%d runs: %v; lag from fire time to process start: %s", total, byReplica, lagOf(t, url, cfg))
	if total < 150 {
		t.Fatalf("only %d runs", total)
	}
	for id, n := range byReplica {
		if share := float64(n) / float64(total); share > 0.5 {
			t.Errorf("replica %s ran %.0f%% of runs", id, share*100)
		}
	}
	for k, n := range seen {
		if n > 1 {
			t.Errorf("%s ran %d times", k, n)
		}
	}
}

// TestSharedLockNeverOverlaps: two jobs with one lock, each running longer
// than its period, on two replicas: their runs never overlap, and the ticks
// that could not run are recorded as skipped, naming the holder.
func TestSharedLockNeverOverlaps(t *testing.T) {
	for _, top := range topologies {
		t.Run(top.name, func(t *testing.T) { sharedLockNeverOverlaps(t, top.url(t)) })
	}
}

func sharedLockNeverOverlaps(t *testing.T, url string) {
	out := outFile(t)
	cmd := `["sh", "-c", "s=$(date +%s%N); sleep 1.3; echo \"$JOBD_INSTANCE $s $(date +%s%N) $JOBD_FENCE\" >> OUT"]`
	cfg := config(t, out, jobsYAML(2, "@every 1s", "    lock: shared\n", cmd))
	a := startReplica(t, url, cfg, "a")
	b := startReplica(t, url, cfg, "b")
	time.Sleep(9 * time.Second)
	a.stop()
	b.stop()
	type span struct {
		start, end int64
		who        string
	}
	var spans []span
	for _, f := range lines(t, out) {
		var s span
		fmt.Sscan(f[1], &s.start)
		fmt.Sscan(f[2], &s.end)
		s.who = f[0] + " fence " + f[3]
		spans = append(spans, s)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	overlaps := 0
	for i := 1; i < len(spans); i++ {
		if spans[i].start < spans[i-1].end {
			overlaps++
			t.Errorf("%s started %v before %s ended", spans[i].who, time.Duration(spans[i-1].end-spans[i].start), spans[i-1].who)
		}
	}
	if len(spans) < 4 {
		t.Fatalf("only %d runs", len(spans))
	}
	store := newStore(t, url)
	skipped := 0
	for _, name := range []string{"j00", "j01"} {
		recs, err := store.History(context.Background(), scheduler.Ref{Instance: name, Lock: "shared"}, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Status == jobs.StatusSkipped {
				skipped++
				if !strings.Contains(r.Reason, `lock "shared" held by`) {
					t.Errorf("skip reason %q does not name the holder", r.Reason)
				}
			}
		}
	}
	t.Logf("%d runs, %d overlaps, %d skipped ticks", len(spans), overlaps, skipped)
	if skipped == 0 {
		t.Error("no tick was recorded as skipped")
	}
}

// TestOverlapWait: a tick whose lock is held waits for it (woken by the
// release) instead of being skipped, and the two runs never overlap.
func TestOverlapWait(t *testing.T) {
	url := redistest.SharedURL(t)
	out := outFile(t)
	cfg := config(t, out, `
jobs:
  - name: first
    schedule: "@every 4s"
    lock: shared
    command: ["sh", "-c", "s=$(date +%s%N); sleep 1; echo \"first $s $(date +%s%N)\" >> OUT"]
  - name: second
    schedule: "@every 4s"
    lock: shared
    overlap: wait
    command: ["sh", "-c", "s=$(date +%s%N); echo \"second $s $(date +%s%N)\" >> OUT"]
`)
	r := startReplica(t, url, cfg, "a", scheduler.WithSplay(0))
	waitFor(t, 15*time.Second, "both jobs to run", func() bool { return len(lines(t, out)) >= 2 })
	r.stop()
	var firstEnd, secondStart int64
	for _, f := range lines(t, out) {
		switch f[0] {
		case "first":
			fmt.Sscan(f[2], &firstEnd)
		case "second":
			fmt.Sscan(f[1], &secondStart)
		}
	}
	recs, _ := scheduler.NewStore(newRedis(t, url), prefix(t)).History(context.Background(), scheduler.Named("second"), 10)
	for _, rec := range recs {
		if rec.Status == jobs.StatusSkipped {
			t.Errorf("second was skipped: %s", rec.Reason)
		}
	}
	// Both fire at the same tick; "first" is claimed first in the pipeline
	// and takes the lock, "second" waits and runs right after the release.
	if secondStart < firstEnd {
		t.Fatalf("second started %v before first ended", time.Duration(firstEnd-secondStart))
	}
	if lag := time.Duration(secondStart - firstEnd); lag > 500*time.Millisecond {
		t.Errorf("second started %v after the release", lag)
	}
}

// TestReloadStorm: reloads arriving all the time (even at the instant of
// a tick) neither drop nor repeat ticks.
func TestReloadStorm(t *testing.T) {
	url := redistest.SharedURL(t)
	out := outFile(t)
	cfg := config(t, out, jobsYAML(3, "@every 1s", "", recordCmd))
	t0 := time.Now()
	r := startReplica(t, url, cfg, "a", scheduler.WithSplay(0))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				r.s.Reload(cfg)
			}
		}
	}()
	time.Sleep(8 * time.Second)
	close(stop)
	<-done
	r.stop()
	counts := map[string]int{}
	for _, f := range lines(t, out) {
		counts[f[0]+" "+f[1]]++
	}
	for i := 0; i < 3; i++ {
		for at := t0.Truncate(time.Second).Add(2 * time.Second); at.Before(t0.Add(7 * time.Second)); at = at.Add(time.Second) {
			if n := counts[fmt.Sprintf("j%02d %s", i, at.UTC().Format(time.RFC3339))]; n != 1 {
				t.Errorf("j%02d at %s ran %d times", i, at.UTC().Format(time.RFC3339), n)
			}
		}
	}
}

// lagOf sums up the lag from fire time to process start of the runs
// recorded for cfg's instances (logged, never asserted: timing belongs to
// the benchmarks).
func lagOf(t *testing.T, url string, cfg *jobs.Config) string {
	t.Helper()
	store := newStore(t, url)
	var lags []time.Duration
	for _, in := range cfg.Instances {
		recs, _ := store.History(context.Background(), scheduler.Named(in.Name), 100)
		for _, r := range recs {
			if r.Start != nil {
				lags = append(lags, r.Start.Sub(r.ScheduledAt))
			}
		}
	}
	if len(lags) == 0 {
		return "no records"
	}
	slices.Sort(lags)
	q := func(p int) time.Duration {
		return lags[min(len(lags)*p/100, len(lags)-1)].Round(100 * time.Microsecond)
	}
	return fmt.Sprintf("p50 %v, p99 %v, max %v over %d runs", q(50), q(99), lags[len(lags)-1].Round(100*time.Microsecond), len(lags))
}
