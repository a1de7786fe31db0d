package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startDaemon starts `jobd run` as a real process.
func startDaemon(t *testing.T, url, cfgPath, id string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := jobd(t, url, append([]string{"-c", cfgPath, "run", "--replica-id", id}, args...)...)
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
		}
	})
	return cmd
}

func poll(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fileHas(path, s string) bool {
	b, _ := os.ReadFile(path)
	return strings.Contains(string(b), s)
}

type runningEntry struct {
	Instance string `json:"instance"`
	Fence    int64  `json:"fence"`
	Replica  string `json:"replica"`
}

// runningIndex reads the running index of every lock listed in the
// running-locks set.
func runningIndex(t *testing.T, rdb *redis.Client) map[string]runningEntry {
	ctx := context.Background()
	locks, err := rdb.SMembers(ctx, prefix(t)+":running-locks").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]runningEntry{}
	for _, l := range locks {
		all, err := rdb.HGetAll(ctx, prefix(t)+":running:{"+l+"}").Result()
		if err != nil {
			t.Fatal(err)
		}
		for id, b := range all {
			var e runningEntry
			_ = json.Unmarshal([]byte(b), &e)
			out[id] = e
		}
	}
	return out
}

// TestKill9: the replica running a long job is killed with SIGKILL. Its
// lock expires after the lease, the next tick runs on the other replica,
// and the dead run is marked abandoned.
func TestKill9(t *testing.T) {
	url := redistest.SharedURL(t)
	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	cfgPath := filepath.Join(dir, "jobs.yaml")
	writeFile(t, cfgPath, `
jobs:
  - name: long
    schedule: "@every 2s"
    lock_ttl: 3s
    kill_grace: 1s
    command: ["sh", "-c", "echo $$ >> `+pids+`; exec sleep 60"]
`)
	t.Cleanup(func() { // the orphaned job processes of the killed replica
		b, _ := os.ReadFile(pids)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	procs := map[string]*exec.Cmd{"r1": startDaemon(t, url, cfgPath, "r1"), "r2": startDaemon(t, url, cfgPath, "r2")}
	_, rdb := newMutexClient(t, url)
	var firstID string
	var first runningEntry
	poll(t, 15*time.Second, "a running job", func() bool {
		for id, e := range runningIndex(t, rdb) {
			if e.Fence > 0 {
				firstID, first = id, e
				return true
			}
		}
		return false
	})
	victim := procs[first.Replica]
	if err := victim.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = victim.Process.Wait()
	killed := time.Now()
	survivor := "r1"
	if first.Replica == "r1" {
		survivor = "r2"
	}
	poll(t, 15*time.Second, "the next run on the surviving replica", func() bool {
		for id, e := range runningIndex(t, rdb) {
			if id != firstID && e.Replica == survivor && e.Fence > first.Fence {
				return true
			}
		}
		return false
	})
	took := time.Since(killed)
	// The lease (3s) was last renewed at most 1s before the kill.
	if took < 1500*time.Millisecond {
		t.Errorf("next run started %v after the kill, before the lease could expire", took)
	}
	store := scheduler.NewStore(rdb, prefix(t))
	poll(t, 20*time.Second, "the dead run marked abandoned", func() bool {
		recs, _ := store.History(context.Background(), scheduler.Ref{Instance: "long", Lock: "long"}, 50)
		for _, r := range recs {
			if r.RunID == firstID {
				return r.Status == jobs.StatusAbandoned
			}
		}
		return false
	})
	t.Logf("killed %s; the next run started on %s %v later", first.Replica, survivor, took.Round(time.Millisecond))
}

// TestShutdown: SIGTERM lets the running job finish within the grace; a
// second signal, or the end of the grace, terminates it. Either way the
// run is recorded, its lock released, the heartbeat removed, and jobd
// exits 0.
func TestShutdown(t *testing.T) {
	tests := []struct {
		name    string
		sleep   string
		grace   string
		second  bool
		status  jobs.Status
		maxTime time.Duration
	}{
		{"finishes within the grace", "1.5", "10s", false, "succeeded", 5 * time.Second},
		{"second signal hurries", "30", "30s", true, "killed", 5 * time.Second},
		{"grace runs out", "30", "1s", false, "killed", 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := redistest.SharedURL(t)
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			cfgPath := filepath.Join(dir, "jobs.yaml")
			writeFile(t, cfgPath, `
jobs:
  - name: slow
    schedule: "@every 1s"
    kill_grace: 500ms
    command: ["sh", "-c", "echo start >> `+out+`; sleep `+tt.sleep+`; echo done >> `+out+`"]
`)
			cmd := startDaemon(t, url, cfgPath, "r1", "--shutdown-grace", tt.grace)
			poll(t, 10*time.Second, "the job to start", func() bool { return fileHas(out, "start") })
			start := time.Now()
			_ = cmd.Process.Signal(syscall.SIGTERM)
			if tt.second {
				time.Sleep(300 * time.Millisecond)
				_ = cmd.Process.Signal(syscall.SIGINT)
			}
			r := wait(t, cmd)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if d := time.Since(start); d > tt.maxTime {
				t.Errorf("took %v to stop", d)
			}
			c, rdb := newMutexClient(t, url)
			ctx := context.Background()
			recs, err := scheduler.NewStore(rdb, prefix(t)).History(ctx, scheduler.Ref{Instance: "slow", Lock: "slow"}, 10)
			if err != nil || len(recs) == 0 {
				t.Fatalf("history: %v %v", recs, err)
			}
			if recs[0].Status != tt.status {
				t.Errorf("last run %s (%s), want %s", recs[0].Status, recs[0].Reason, tt.status)
			}
			if n := rdb.Exists(ctx, prefix(t)+":replica:r1").Val(); n != 0 {
				t.Error("heartbeat still there")
			}
			if _, held, _ := c.Inspect(ctx, "slow"); held {
				t.Error("lock still held")
			}
			if idx := runningIndex(t, rdb); len(idx) != 0 {
				t.Errorf("running index not empty: %v", idx)
			}
		})
	}
}

// TestReload: SIGHUP loads a valid file; an invalid one is logged and the
// old schedule keeps running.
func TestReload(t *testing.T) {
	url := redistest.SharedURL(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	cfgPath := filepath.Join(dir, "jobs.yaml")
	job := func(name string) string {
		return "  - name: " + name + "\n    schedule: \"@every 1s\"\n    command: [\"sh\", \"-c\", \"echo " + name + " >> " + out + "\"]\n"
	}
	writeFile(t, cfgPath, "jobs:\n"+job("a"))
	cmd := startDaemon(t, url, cfgPath, "r1")
	poll(t, 10*time.Second, "job a", func() bool { return fileHas(out, "a") })

	writeFile(t, cfgPath, "jobs:\n"+job("a")+job("b"))
	_ = cmd.Process.Signal(syscall.SIGHUP)
	poll(t, 10*time.Second, "job b after a valid reload", func() bool { return fileHas(out, "b") })

	writeFile(t, cfgPath, "jobs:\n  - name: broken\n    schedule: \"* * *\"\n")
	_ = cmd.Process.Signal(syscall.SIGHUP)
	stderr := cmd.Stderr.(*redistest.Buffer)
	poll(t, 10*time.Second, "the reload error", func() bool { return strings.Contains(stderr.String(), "reload: invalid config") })
	before := len(lines(out))
	poll(t, 10*time.Second, "a and b still running", func() bool {
		l := lines(out)
		return len(l) > before+3 && strings.Contains(strings.Join(l[before:], " "), "a") && strings.Contains(strings.Join(l[before:], " "), "b")
	})
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if r := wait(t, cmd); r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	if !strings.Contains(stderr.String(), "jobs[0].schedule: expected 5 or 6 fields, found 3") {
		t.Errorf("reload error does not name the problem:\n%s", stderr.String())
	}
}

func lines(path string) []string {
	b, _ := os.ReadFile(path)
	return strings.Fields(string(b))
}
