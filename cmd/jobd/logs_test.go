package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/redistest"
)

// logLines parses the JSON log lines of out.
func logLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON log line: %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

// TestDaemonLogs: a reload (SIGHUP) is logged once, with the new config's
// hash; the stopping signal is logged with the replica's id, as every
// line of the replica is.
func TestDaemonLogs(t *testing.T) {
	url := redistest.SharedURL(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "jobs.yaml")
	writeFile(t, cfgPath, "jobs:\n  - {name: a, schedule: \"@daily\", suspend: true, command: [\"true\"]}\n")
	// With --http, so that the HTTP server's lines are checked too.
	cmd := exec.Command(jobdBin, "--redis", url, "--prefix", prefix(t), "--log-format", "json", "-c", cfgPath, "run", "--replica-id", "r1",
		"--http", "127.0.0.1:"+strconv.Itoa(freePort(t)))
	stderr := &redistest.Buffer{}
	cmd.Stdout, cmd.Stderr = &redistest.Buffer{}, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
		}
	})
	poll(t, 10*time.Second, "the replica to start", func() bool { return strings.Contains(stderr.String(), "replica started") })
	writeFile(t, cfgPath, "jobs:\n  - {name: b, schedule: \"@daily\", suspend: true, command: [\"true\"]}\n")
	_ = cmd.Process.Signal(syscall.SIGHUP)
	poll(t, 10*time.Second, "the reload", func() bool { return strings.Contains(stderr.String(), "reload") })
	time.Sleep(500 * time.Millisecond) // a second line, if any, is written by now
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if r := wait(t, cmd); r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	var reloads, signals int
	for _, l := range logLines(t, stderr.String()) {
		msg, _ := l["msg"].(string)
		if l["replica"] != "r1" {
			t.Errorf("a line without replica=r1: %v", l)
		}
		if strings.Contains(strings.ToLower(msg), "reload") {
			reloads++
			if h, _ := l["config_hash"].(string); len(h) != 12 {
				t.Errorf("reload line without the new config's hash: %v", l)
			}
		}
		if strings.HasPrefix(msg, "signal received") {
			signals++
			if l["signal"] != "terminated" {
				t.Errorf("signal line: %v", l)
			}
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if n := strings.Count(line, `"replica":`); n != 1 {
			t.Errorf("replica %d times in %s", n, line)
		}
	}
	if reloads != 1 || signals != 1 {
		t.Errorf("%d reload lines and %d signal lines, want 1 each:\n%s", reloads, signals, stderr.String())
	}
}
