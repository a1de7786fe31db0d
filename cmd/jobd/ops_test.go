package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
)

var update = flag.Bool("update", false, "rewrite golden files")

const opsConfig = `
jobs:
  - name: fast
    schedule: "@every 1s"
    command: ["sh", "-c", "echo fast-output"]
  - name: fails
    schedule: "@daily"
    suspend: true
    command: ["sh", "-c", "echo failing >&2; exit 3"]
  - name: paused
    schedule: "@daily"
    suspend: true
    command: ["true"]
  - name: off
    schedule: "@daily"
    enabled: false
    command: ["true"]
`

// TestOperatorCommands runs two replicas and checks status, history,
// trigger and the metrics endpoint against them.
func TestOperatorCommands(t *testing.T) {
	srv := redistest.Start(t)
	url := srv.URL()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "jobs.yaml")
	writeFile(t, cfgPath, opsConfig)
	ln := freeAddr(t)
	startDaemon(t, url, cfgPath, "r1", "--http", ln)
	startDaemon(t, url, cfgPath, "r2")
	c, _ := newMutexClient(t, url)
	if err := c.NewMutex("db-maintenance", mutex.WithLabel("jobd lock pg_dump")).Lock(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	pfx := prefix(t)
	run := func(t *testing.T, url string, args ...string) result {
		return wait(t, jobdPrefix(t, url, pfx, args...))
	}
	// Three runs of fast, one of them on r1, whose /metrics the metrics
	// subtest reads (the replicas share the ticks by rendezvous hashing).
	poll(t, 20*time.Second, "three runs of fast, one on r1", func() bool {
		r := run(t, url, "-c", cfgPath, "history", "fast", "--json")
		var recs []map[string]any
		_ = json.Unmarshal([]byte(r.stdout), &recs)
		onR1 := false
		for _, rec := range recs {
			onR1 = onR1 || (rec["replica"] == "r1" && rec["status"] == "succeeded")
		}
		return len(recs) >= 3 && onR1
	})

	t.Run("status", func(t *testing.T) {
		r := run(t, url, "-c", cfgPath, "status")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		for _, s := range []string{"REPLICAS", "LOCKS", "JOBS", "r1", "r2", "db-maintenance", "test-holder", "jobd lock pg_dump",
			"fast", "succeeded", "paused", "suspended", "off", "disabled", "never"} {
			if !strings.Contains(r.stdout, s) {
				t.Errorf("status lacks %q:\n%s", s, r.stdout)
			}
		}
		if strings.Contains(r.stdout, "OVERDUE") {
			t.Errorf("nothing should be overdue:\n%s", r.stdout)
		}
	})
	t.Run("status json golden", func(t *testing.T) {
		r := run(t, url, "-c", cfgPath, "status", "--json")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		got := normalizeStatus(t, r.stdout, dir)
		golden := "testdata/status.golden.json"
		if *update {
			writeFile(t, golden, got)
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("status --json differs from %s:\n%s", golden, got)
		}
		if strings.Contains(r.stdout, `"token"`) {
			t.Error("status shows a token")
		}
	})
	t.Run("status watch", func(t *testing.T) {
		// Into a pipe: no clear-screen codes, a dated line between the
		// snapshots (on a terminal it clears the screen instead).
		cmd := jobdPrefix(t, url, pfx, "-c", cfgPath, "status", "--watch")
		poll(t, 10*time.Second, "two redraws", func() bool {
			return strings.Count(cmd.Stdout.(*redistest.Buffer).String(), "\n--- ") >= 1
		})
		_ = cmd.Process.Signal(os.Interrupt)
		r := wait(t, cmd)
		if r.code != 0 || strings.Count(r.stdout, "REPLICAS") < 2 || !strings.HasPrefix(r.stdout, "--- ") {
			t.Fatalf("exit %d: %s", r.code, r.stdout)
		}
		if strings.Contains(r.stdout, "\033[") {
			t.Errorf("terminal codes written into a pipe: %q", r.stdout)
		}
	})
	t.Run("history", func(t *testing.T) {
		r := run(t, url, "-c", cfgPath, "history", "fast", "--limit", "2", "--output")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if n := strings.Count(r.stdout, "succeeded"); n != 2 || !strings.Contains(r.stdout, "| fast-output") || !strings.Contains(r.stdout, "SCHEDULED") {
			t.Errorf("history:\n%s", r.stdout)
		}
		if r := run(t, url, "-c", cfgPath, "history", "nope"); r.code != 2 {
			t.Errorf("unknown instance: exit %d", r.code)
		}
		if r := run(t, url, "-c", cfgPath, "history", "paused"); r.code != 0 || !strings.Contains(r.stdout, "no runs yet") {
			t.Errorf("instance without runs: exit %d: %s", r.code, r.stdout)
		}
	})
	t.Run("trigger", func(t *testing.T) {
		tests := []struct {
			name string
			args []string
			code int
		}{
			{"suspended job runs on demand", []string{"trigger", "paused", "--wait"}, 0},
			{"exit code passes through", []string{"trigger", "fails", "--wait", "--timeout", "30s"}, 3},
			{"without --wait", []string{"trigger", "paused"}, 0},
			{"unknown instance", []string{"trigger", "nope"}, 2},
			{"disabled instance is refused at once", []string{"trigger", "off"}, 2},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := run(t, url, append([]string{"-c", cfgPath}, tt.args...)...)
				if r.code != tt.code {
					t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tt.code, r.stdout, r.stderr)
				}
				if tt.code == 0 || tt.code == 3 {
					if !regexp.MustCompile(`^\d{8}T\d{6}Z-[0-9a-f]{10}\n$`).MatchString(r.stdout) {
						t.Errorf("stdout %q is not a run id", r.stdout)
					}
				}
			})
		}
	})
	t.Run("metrics", func(t *testing.T) {
		body := get(t, "http://"+ln+"/metrics", 200)
		for _, re := range []string{
			`jobd_runs_total\{job="fast",status="succeeded"\} [1-9]`,
			`jobd_claims_total\{job="fast",result="won"\} [1-9]`,
			`jobd_run_duration_seconds_count\{job="fast"\} [1-9]`,
			`jobd_schedule_lag_seconds_count\{job="fast"\} [1-9]`,
			`jobd_lock_acquire_seconds_count [1-9]`,
			`jobd_last_success_timestamp_seconds\{job="fast"\} 1\.[0-9.e+]+`,
			// Never succeeded: the series exists, so JobdJobNotSucceeding can fire.
			`jobd_last_success_timestamp_seconds\{job="fails"\} 1\.[0-9.e+]+`,
			`jobd_config_info\{hash="[0-9a-f]{64}"\} 1`,
			`jobd_clock_skew_seconds `, `jobd_running_jobs `, `jobd_config_mismatch 0`,
			`jobd_schedule_period_seconds\{job="fast"\} 1\n`,
		} {
			if !regexp.MustCompile(re).MatchString(body) {
				t.Errorf("/metrics lacks %s", re)
			}
		}
		// A suspended job has no period, so JobdJobNotSucceeding leaves it
		// alone.
		if strings.Contains(body, `jobd_schedule_period_seconds{job="paused"}`) {
			t.Error("/metrics exports a period for the suspended job")
		}
		get(t, "http://"+ln+"/healthz", 200)
		get(t, "http://"+ln+"/readyz", 200)
	})
	t.Run("no replica alive", func(t *testing.T) {
		r := wait(t, jobdPrefix(t, url, "nobody-here", "-c", cfgPath, "status"))
		if r.code != 3 || !strings.Contains(r.stdout, "NO REPLICA IS ALIVE") {
			t.Errorf("exit %d: %s", r.code, r.stdout)
		}
		// Nobody ran fast's ticks under this prefix: it is overdue; the
		// suspended and disabled ones are not.
		r = wait(t, jobdPrefix(t, url, "nobody-here", "-c", cfgPath, "status", "--json"))
		var st statusJSON
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatal(err)
		}
		for _, j := range st.Jobs {
			if want := j.Instance == "fast"; j.Overdue != want {
				t.Errorf("%s overdue=%v, want %v", j.Instance, j.Overdue, want)
			}
		}
		if !strings.Contains(wait(t, jobdPrefix(t, url, "nobody-here", "-c", cfgPath, "status")).stdout, "OVERDUE") {
			t.Error("the table does not show OVERDUE")
		}
		if r := wait(t, jobdPrefix(t, url, "nobody-here", "-c", cfgPath, "trigger", "fast")); r.code != 3 {
			t.Errorf("trigger: exit %d", r.code)
		}
	})
	t.Run("redis unreachable", func(t *testing.T) {
		for _, cmd := range [][]string{{"status"}, {"history", "fast"}, {"trigger", "fast"}} {
			if r := run(t, "redis://127.0.0.1:1/0", append([]string{"-c", cfgPath}, cmd...)...); r.code != 69 {
				t.Errorf("%v: exit %d", cmd, r.code)
			}
		}
		srv.Pause()
		defer srv.Resume()
		get(t, "http://"+ln+"/readyz", 503)
	})
}

// handedOut is every address freeAddr returned in this process.
var handedOut sync.Map

// freeAddr is a loopback address nothing listens on now, and one this
// process has not handed out before: the kernel may give a closed port
// again at once, and then two servers of one test met on one address
// (CI saw the "Redis unreachable" dashboard's GET answered by the other
// dashboard of the test).
func freeAddr(t *testing.T) string {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if _, dup := handedOut.LoadOrStore(addr, true); !dup {
			return addr
		}
	}
}

func get(t *testing.T, url string, want int) string {
	t.Helper()
	var resp *http.Response
	var err error
	for i := 0; i < 50; i++ {
		if resp, err = http.Get(url); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Errorf("GET %s: %d, want %d", url, resp.StatusCode, want)
	}
	return string(b)
}

// normalizeStatus replaces what changes from run to run (times, pids,
// hashes, run ids, which replica won) so that the shape can be compared.
func normalizeStatus(t *testing.T, s, dir string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	volatile := map[string]bool{"generated_at": true, "started_at": true, "uptime_seconds": true, "heartbeat_age_seconds": true,
		"pid": true, "host": true, "hash": true, "config_hash": true, "next_fire": true, "run_id": true, "scheduled_at": true,
		"start": true, "end": true, "duration_seconds": true, "held_for_seconds": true, "ttl_seconds": true, "fence": true,
		"replica": true, "running": true, "clock_offset_seconds": true, "master": true}
	var walk func(any) any
	walk = func(x any) any {
		switch x := x.(type) {
		case map[string]any:
			for k, val := range x {
				if volatile[k] && val != nil {
					x[k] = "<" + k + ">"
				} else {
					x[k] = walk(val)
				}
			}
		case []any:
			for i := range x {
				x[i] = walk(x[i])
			}
		case string:
			return strings.ReplaceAll(x, dir, "<dir>")
		}
		return x
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(walk(v))
	return b.String()
}

// TestConfigRedisSettings: the file's redis.url and redis.prefix apply
// when neither a flag nor the environment sets them.
func TestConfigRedisSettings(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "jobs.yaml")
	writeFile(t, cfgPath, "redis:\n  url: "+srv.URL()+"\n  prefix: from-file\njobs:\n  - name: a\n    schedule: \"@daily\"\n    command: [\"true\"]\n")
	cmd := exec.Command(jobdBin, "-c", cfgPath, "status", "--json")
	cmd.Env = append(os.Environ(), "JOBD_REDIS_URL=", "JOBD_PREFIX=")
	out, _ := cmd.Output()
	if code := cmd.ProcessState.ExitCode(); code != 3 { // reached the file's Redis; nobody alive there
		t.Fatalf("exit %d: %s", code, out)
	}
	_, rdb := newMutexClient(t, srv.URL())
	if err := rdb.Set(context.Background(), "from-file:replica:x", `{"id":"x","config_hash":"h"}`, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.SAdd(context.Background(), "from-file:replicas", "x")
	cmd = exec.Command(jobdBin, "-c", cfgPath, "status", "--json")
	cmd.Env = append(os.Environ(), "JOBD_REDIS_URL=", "JOBD_PREFIX=")
	out, _ = cmd.Output()
	if code := cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(string(out), `"id": "x"`) {
		t.Fatalf("prefix from the file not used: exit %d: %s", code, out)
	}
}
