package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/redistest"
)

// TestTriggerTimeout: a negative --timeout is a usage error (exit 2,
// before Redis is asked); 0 waits with no limit, until the run ends; a
// positive one that runs out is exit 1.
func TestTriggerTimeout(t *testing.T) {
	url := redistest.SharedURL(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "jobs.yaml")
	writeFile(t, cfgPath, `
jobs:
  - name: slow
    schedule: "@daily"
    suspend: true
    command: ["sh", "-c", "sleep 2; exit 3"]
`)
	pfx := prefix(t)
	startDaemon(t, url, cfgPath, "r1")
	_, rdb := newMutexClient(t, url)
	poll(t, 10*time.Second, "the replica's heartbeat", func() bool {
		return rdb.Exists(context.Background(), pfx+":replica:r1").Val() == 1
	})
	tests := []struct {
		name    string
		url     string
		timeout string
		code    int
		stderr  string
		min     time.Duration // at least this long: it waited
	}{
		{"negative", "redis://unused:1/0", "-1s", 2, "jobd: trigger: --timeout -1s: must not be negative (0 waits with no limit)", 0},
		{"zero waits until the end", url, "0", 3, "on r1: failed", 1500 * time.Millisecond},
		{"runs out", url, "500ms", 1, "still running after --timeout 500ms", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r := wait(t, jobdPrefix(t, tt.url, pfx, "-c", cfgPath, "trigger", "slow", "--wait", "--timeout", tt.timeout))
			if r.code != tt.code || !strings.Contains(r.stderr, tt.stderr) {
				t.Fatalf("exit %d, want %d; stderr lacks %q:\n%s", r.code, tt.code, tt.stderr, r.stderr)
			}
			if d := time.Since(start); d < tt.min {
				t.Errorf("returned after %v: it did not wait for the run", d)
			}
		})
	}
}
