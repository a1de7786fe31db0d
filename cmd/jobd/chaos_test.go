package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/redistest"
)

// chaosTime is how long TestChaos runs: 15s, or JOBD_CHAOS (make chaos).
func chaosTime(t *testing.T) time.Duration {
	d := 15 * time.Second
	if s := os.Getenv("JOBD_CHAOS"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("JOBD_CHAOS: %v", err)
		}
		d = max(d, v)
	}
	return d
}

// TestChaos: three real replicas while replicas are killed with -9 and
// restarted and Redis is paused. No tick may run twice, and runs that
// share a lock may never overlap. Missed ticks are allowed (every replica
// can be down, or Redis paused) and reported.
func TestChaos(t *testing.T) {
	srv := redistest.Start(t)
	url := srv.URL()
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	cfgPath := filepath.Join(dir, "jobs.yaml")
	var b strings.Builder
	b.WriteString("jobs:\n")
	for i := 0; i < 6; i++ {
		fmt.Fprintf(&b, "  - name: tick%d\n    schedule: \"@every 1s\"\n    lock_ttl: 3s\n    command: [\"sh\", \"-c\", \"echo \\\"$JOBD_INSTANCE $JOBD_SCHEDULED_AT $JOBD_REPLICA 0 0\\\" >> %s\"]\n", i, out)
	}
	for _, n := range []string{"shared-a", "shared-b"} {
		fmt.Fprintf(&b, "  - name: %s\n    schedule: \"@every 1s\"\n    lock: shared\n    lock_ttl: 3s\n    command: [\"sh\", \"-c\", \"s=$(date +%%s%%N); sleep 0.3; echo \\\"$JOBD_INSTANCE $JOBD_SCHEDULED_AT $JOBD_REPLICA $s $(date +%%s%%N)\\\" >> %s\"]\n", n, out)
	}
	writeFile(t, cfgPath, b.String())

	procs := map[string]*exec.Cmd{}
	start := func(id string) { procs[id] = startDaemon(t, url, cfgPath, id) }
	for _, id := range []string{"r1", "r2", "r3"} {
		start(id)
	}
	actions := map[string]int{}
	deadline := time.Now().Add(chaosTime(t))
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(1500+rand.IntN(1500)) * time.Millisecond)
		switch rand.IntN(3) {
		case 0, 1: // kill -9 a replica, restart it a little later
			id := fmt.Sprintf("r%d", 1+rand.IntN(3))
			_ = procs[id].Process.Signal(syscall.SIGKILL)
			_, _ = procs[id].Process.Wait()
			time.Sleep(time.Duration(rand.IntN(1000)) * time.Millisecond)
			start(id)
			actions["kill -9 and restart"]++
		case 2: // freeze Redis for up to a second (less than the lease)
			srv.Pause()
			time.Sleep(time.Duration(200+rand.IntN(800)) * time.Millisecond)
			srv.Resume()
			actions["pause redis"]++
		}
	}
	for _, p := range procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		_ = p.Wait()
	}

	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	runs := map[string]int{}
	type span struct {
		start, end int64
		who        string
	}
	var spans []span
	sc := bufio.NewScanner(f)
	total := 0
	for sc.Scan() {
		var inst, at, rep string
		var s, e int64
		if _, err := fmt.Sscan(sc.Text(), &inst, &at, &rep, &s, &e); err != nil {
			t.Fatalf("bad line %q", sc.Text())
		}
		total++
		runs[inst+" "+at]++
		if s > 0 {
			spans = append(spans, span{s, e, inst + " " + at + " on " + rep})
		}
	}
	dups := 0
	for k, n := range runs {
		if n > 1 {
			dups++
			t.Errorf("%s ran %d times", k, n)
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	overlaps := 0
	for i := 1; i < len(spans); i++ {
		if spans[i].start < spans[i-1].end {
			overlaps++
			t.Errorf("%s overlapped %s", spans[i].who, spans[i-1].who)
		}
	}
	t.Logf("chaos %v: %v; %d runs, %d duplicate ticks, %d shared-lock overlaps", chaosTime(t), actions, total, dups, overlaps)
	if total < 20 {
		t.Errorf("only %d runs", total)
	}
}
