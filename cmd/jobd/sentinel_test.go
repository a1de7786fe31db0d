package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/redistest"
)

// TestSentinelFailover: three replicas on a Sentinel-watched master (the
// failover URL form), every-second jobs and two jobs sharing a lock. The
// master is killed with SIGKILL; jobd follows the failover by itself. The
// test reports the resume time, the missed and duplicated ticks and the
// longest gap, and fails on a duplicate, on overlapping holders of the
// shared lock, or when claiming does not resume within 15s of the kill.
// With min_replicas_acked: 1 the new master has no replica until the old
// one comes back (Sentinel turns it into a replica), and until then jobd
// runs nothing (fail closed).
func TestSentinelFailover(t *testing.T) {
	tests := []struct {
		name  string
		acked int
	}{
		{"async replication", 0},
		{"min_replicas_acked 1", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := redistest.StartSentinelGroup(t, "jobd-failover")
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			cfg := filepath.Join(dir, "jobs.yaml")
			var b strings.Builder
			fmt.Fprintf(&b, "redis:\n  min_replicas_acked: %d\n  min_replicas_timeout: 500ms\njobs:\n", tt.acked)
			for i := 0; i < 4; i++ {
				fmt.Fprintf(&b, "  - name: e%d\n    schedule: \"@every 1s\"\n    command: 'echo tick $JOBD_INSTANCE $JOBD_SCHEDULED_AT $(date +%%s%%N) >> %s'\n", i, out)
			}
			for i := 0; i < 2; i++ {
				fmt.Fprintf(&b, "  - name: s%d\n    schedule: \"@every 1s\"\n    lock: shared\n    command: 'echo in %s-$JOBD_RUN_ID >> %s; sleep 0.2; echo out %s-$JOBD_RUN_ID >> %s'\n", i, "s", out, "s", out)
			}
			writeFile(t, cfg, b.String())
			url := g.URL()
			var daemons []*osProc
			for _, id := range []string{"a", "b", "c"} {
				daemons = append(daemons, &osProc{startDaemon(t, url, cfg, id).Process})
			}
			time.Sleep(6 * time.Second)
			killed := time.Now()
			g.Master.Stop()
			if tt.acked > 0 {
				time.Sleep(8 * time.Second)
				if err := g.Master.Start(); err != nil { // Sentinel makes it the new master's replica
					t.Fatal(err)
				}
			}
			time.Sleep(20 * time.Second)
			end := time.Now()
			for _, d := range daemons {
				d.term()
			}
			time.Sleep(time.Second) // the last runs write their lines
			a := analyse(t, out, killed, end)
			t.Logf("failover %s: runs paused for %v and resumed %v after the kill; %d ticks missed, %d duplicated, longest gap %v between a job's ticks",
				tt.name, a.pause.Round(100*time.Millisecond), a.resumed.Round(100*time.Millisecond), a.missed, a.dups, a.gap.Round(time.Second))
			if a.dups > 0 || a.overlaps > 0 {
				t.Errorf("%d duplicated ticks, %d overlaps of the shared lock", a.dups, a.overlaps)
			}
			limit := 15 * time.Second
			if tt.acked > 0 {
				limit = 30 * time.Second
			}
			if a.resumed <= 0 || a.resumed > limit {
				t.Errorf("claiming resumed %v after the kill, want within %v", a.resumed, limit)
			}
		})
	}
}

type osProc struct {
	cmd interface{ Signal(os.Signal) error }
}

type analysis struct {
	resumed      time.Duration // from the kill to the end of the longest pause in runs
	pause        time.Duration // the longest pause in runs after the kill
	missed, dups int
	gap          time.Duration
	overlaps     int
}

// analyse reads the jobs' output: ticks of the e* jobs per second, and
// the in/out pairs of the shared lock.
func analyse(t *testing.T, out string, killed, end time.Time) analysis {
	t.Helper()
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var a analysis
	seen := map[string]map[int64]int{}
	var ran []time.Time // when the e* runs ran
	inside := 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 4 && f[0] == "tick":
			at, err := time.Parse(time.RFC3339, f[2])
			if err != nil {
				continue
			}
			if seen[f[1]] == nil {
				seen[f[1]] = map[int64]int{}
			}
			seen[f[1]][at.Unix()]++
			if ns, err := strconv.ParseInt(f[3], 10, 64); err == nil {
				ran = append(ran, time.Unix(0, ns))
			}
		case len(f) == 2 && f[0] == "in":
			if inside++; inside > 1 {
				a.overlaps++
			}
		case len(f) == 2 && f[0] == "out":
			inside--
		}
	}
	// The outage: from the kill to the first run after the longest pause
	// in runs that follows it.
	// A gap of up to 1.5s between runs is the jobs' own period: no pause.
	sort.Slice(ran, func(i, j int) bool { return ran[i].Before(ran[j]) })
	a.pause = 1500 * time.Millisecond
	for i := 1; i < len(ran); i++ {
		if ran[i].After(killed) && ran[i].Sub(ran[i-1]) > a.pause {
			a.pause, a.resumed = ran[i].Sub(ran[i-1]), ran[i].Sub(killed)
		}
	}
	if a.resumed == 0 {
		a.pause = 0 // no pause at all
	}
	for _, ticks := range seen {
		var secs []int64
		for s, n := range ticks {
			secs = append(secs, s)
			if n > 1 {
				a.dups += n - 1
			}
		}
		sort.Slice(secs, func(i, j int) bool { return secs[i] < secs[j] })
		from, to := secs[0], end.Add(-2*time.Second).Unix()
		for s := from; s <= to; s++ {
			if ticks[s] == 0 {
				a.missed++
			}
		}
		for i := 1; i < len(secs); i++ {
			a.gap = max(a.gap, time.Duration(secs[i]-secs[i-1])*time.Second)
		}
	}
	return a
}

func (p *osProc) term() { _ = p.cmd.Signal(syscall.SIGTERM) }

// TestSentinelConfig: the schedule file's redis.sentinel form reaches the
// master through the sentinels: `jobd lock` runs, and `jobd status`
// shows the topology and the current master (before and after a
// failover).
func TestSentinelConfig(t *testing.T) {
	g := redistest.StartSentinelGroup(t, "jobd-config")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "jobs.yaml")
	writeFile(t, cfg, fmt.Sprintf("redis:\n  prefix: %s\n  sentinel:\n    master: jobd-config\n    addrs: [%q, %q, %q]\n"+
		"jobs:\n  - name: j\n    schedule: \"@daily\"\n    command: [\"true\"]\n", prefix(t), g.Sentinels[0].Addr, g.Sentinels[1].Addr, g.Sentinels[2].Addr))
	cli := func(args ...string) result {
		cmd := exec.Command(jobdBin, append([]string{"-c", cfg}, args...)...)
		cmd.Stdout, cmd.Stderr = &redistest.Buffer{}, &redistest.Buffer{}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return wait(t, cmd)
	}
	masterIs := func(want string) {
		t.Helper()
		r := cli("status", "--json")
		var st struct {
			Redis struct{ Kind, Master, Name string } `json:"redis"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status --json (exit %d): %v\n%s%s", r.code, err, r.stdout, r.stderr)
		}
		if st.Redis.Kind != "sentinel" || st.Redis.Master != want || st.Redis.Name != "jobd-config" {
			t.Fatalf("status shows redis %+v, want sentinel master %s", st.Redis, want)
		}
		if r := cli("lock", "k", "--", "true"); r.code != 0 {
			t.Fatalf("jobd lock exit %d: %s", r.code, r.stderr)
		}
	}
	masterIs(g.Master.Addr)
	g.Master.Stop()
	poll(t, 20*time.Second, "the failover", func() bool { a, _ := g.MasterAddr(); return a == g.Replica.Addr })
	masterIs(g.Replica.Addr)
}

// TestFailoverRightAfterAClaim: the replica lags (paused) when replica A
// claims tick T; the master dies; the lagging replica is promoted without
// the claim, and replica B (misfire: run_once) finds T unclaimed and runs
// it. Without min_replicas_acked, A had run T already: T ran twice. With
// min_replicas_acked: 1, A did not start T (its replica never acknowledged
// the claim), and B runs it once the old master is back as a replica: T
// ran once.
func TestFailoverRightAfterAClaim(t *testing.T) {
	tests := []struct {
		name  string
		acked int
		runs  int
	}{
		{"async replication: the tick runs twice", 0, 2},
		{"min_replicas_acked 1: the tick runs once", 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := redistest.StartSentinelGroup(t, "jobd-lag")
			dir := t.TempDir()
			out, cfg := filepath.Join(dir, "out"), filepath.Join(dir, "jobs.yaml")
			tick := time.Now().Add(6 * time.Second).Truncate(time.Second)
			writeFile(t, cfg, fmt.Sprintf("redis:\n  min_replicas_acked: %d\n  min_replicas_timeout: 300ms\n"+
				"jobs:\n  - name: j\n    schedule: \"%d * * * * *\"\n    misfire: run_once\n    starting_deadline: 50s\n"+
				"    command: 'echo $JOBD_SCHEDULED_AT $JOBD_REPLICA >> %s'\n", tt.acked, tick.Second(), out))
			g.Replica.Pause()
			a := startDaemon(t, g.URL(), cfg, "a")
			poll(t, 15*time.Second, "replica a to claim the tick", func() bool {
				return time.Now().After(tick.Add(2 * time.Second))
			})
			_ = a.Process.Kill()
			g.Master.Stop()
			g.Replica.Resume()
			poll(t, 30*time.Second, "the lagging replica's promotion", func() bool { a, _ := g.MasterAddr(); return a == g.Replica.Addr })
			if tt.acked > 0 { // the new master needs a replica: the old one comes back as such
				if err := g.Master.Start(); err != nil {
					t.Fatal(err)
				}
			}
			startDaemon(t, g.URL(), cfg, "b")
			stamp := tick.UTC().Format(time.RFC3339) + " b"
			poll(t, 40*time.Second, "b to run the missed tick", func() bool { return fileHas(out, stamp) })
			time.Sleep(2 * time.Second) // a second run, if any, has its line
			data, _ := os.ReadFile(out)
			runs := strings.Count(string(data), tick.UTC().Format(time.RFC3339))
			t.Logf("%s: tick %s ran %d times: %q", tt.name, tick.UTC().Format(time.RFC3339), runs, data)
			if runs != tt.runs {
				t.Errorf("tick ran %d times, want %d", runs, tt.runs)
			}
		})
	}
}
