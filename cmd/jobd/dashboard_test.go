package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/redistest"
)

// TestDashboardCommand: `jobd run --http` serves the dashboard next to
// /metrics, `jobd dashboard` serves it from no replica, shows a banner
// while Redis is unreachable, and exits 0 on SIGTERM.
func TestDashboardCommand(t *testing.T) {
	srv := redistest.Start(t)
	url := srv.URL()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "jobs.yaml")
	writeFile(t, cfgPath, `
jobs:
  - name: fast
    schedule: "@every 1s"
    command: ["sh", "-c", "echo '<script>alert(1)</script>'"]
`)
	replicaAddr, dashAddr, downAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	startDaemon(t, url, cfgPath, "r1", "--http", replicaAddr)
	dash := jobd(t, url, "-c", cfgPath, "dashboard", "--http", dashAddr)
	down := jobd(t, "redis://127.0.0.1:1/0", "-c", cfgPath, "dashboard", "--http", downAddr)
	t.Cleanup(func() {
		for _, cmd := range []*os.Process{dash.Process, down.Process} {
			_ = cmd.Kill()
		}
	})
	poll(t, 15*time.Second, "a run of fast", func() bool {
		return strings.Contains(get(t, "http://"+dashAddr+"/instance?name=fast", 200), "&lt;script&gt;alert(1)&lt;/script&gt;")
	})

	tests := []struct {
		name, url string
		code      int
		want      string
	}{
		{"replica: dashboard", "http://" + replicaAddr + "/", 200, `<td class="name">r1</td>`},
		{"replica: metrics still served", "http://" + replicaAddr + "/metrics", 200, "jobd_runs_total"},
		{"replica: readyz still served", "http://" + replicaAddr + "/readyz", 200, "ok"},
		{"dashboard: replicas and instances", "http://" + dashAddr + "/", 200, `<tr data-name="fast">`},
		{"dashboard: output tail escaped", "http://" + dashAddr + "/instance?name=fast", 200, `<pre class="output">&lt;script&gt;`},
		{"dashboard: Redis unreachable", "http://" + downAddr + "/", 503, "Redis unreachable: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if body := get(t, tt.url, tt.code); !strings.Contains(body, tt.want) || strings.Contains(body, "<script>alert") {
				t.Errorf("%s lacks %q, or has a script:\n%s", tt.url, tt.want, body)
			}
		})
	}
	t.Run("an edited file is re-read; SIGHUP does not stop it", func(t *testing.T) {
		_ = dash.Process.Signal(syscall.SIGHUP)
		writeFile(t, cfgPath, `
jobs:
  - name: fast
    schedule: "@every 1s"
    command: ["sh", "-c", "echo '<script>alert(1)</script>'"]
  - name: added
    schedule: "@daily"
    command: ["true"]
`)
		future := time.Now().Add(time.Second) // a new modification time, even on a coarse clock
		_ = os.Chtimes(cfgPath, future, future)
		poll(t, 10*time.Second, "the added instance and DIFFERS", func() bool {
			body := get(t, "http://"+dashAddr+"/", 200)
			return strings.Contains(body, `<tr data-name="added">`) && strings.Contains(body, "DIFFERS")
		})
	})
	t.Run("SIGTERM stops it with exit 0", func(t *testing.T) {
		_ = dash.Process.Signal(syscall.SIGTERM)
		if r := wait(t, dash); r.code != 0 || !strings.Contains(r.stderr, "serving the dashboard") {
			t.Errorf("exit %d: %s", r.code, r.stderr)
		}
	})
	t.Run("bad --http is exit 2", func(t *testing.T) {
		for _, addr := range []string{"127.0.0.1:notaport", ""} {
			if r := run(t, url, "-c", cfgPath, "dashboard", "--http", addr); r.code != 2 || !strings.Contains(r.stderr, "--http") {
				t.Errorf("--http %q: exit %d: %s", addr, r.code, r.stderr)
			}
		}
	})
}
