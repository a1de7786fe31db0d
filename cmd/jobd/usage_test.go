package main

import (
	"context"
	"io"
	"os"
	"os/exec"
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

// quickExit spares the race detector's one-second sleep at the exit of
// each jobd these tests run many of (GORACE's atexit_sleep_ms).
var quickExit = "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")

// jobdArgs runs the binary with exactly args (no --redis or --prefix).
func jobdArgs(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(jobdBin, args...)
	cmd.Env = append(os.Environ(), quickExit)
	cmd.Stdout, cmd.Stderr = &redistest.Buffer{}, &redistest.Buffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return wait(t, cmd)
}

// TestNoCommand: `jobd` without a command is a usage error: a short
// usage on stderr, exit 2; so is an unknown command. Asking for help is
// not an error.
func TestNoCommand(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // "": nothing at all
		stderr string
	}{
		{"nothing", nil, 2, "", "usage: jobd [global flags] COMMAND [flags] [ARGS]\ncommands: run, lock, validate, plan, status, history, trigger, dashboard, version"},
		{"only global flags", []string{"-c", "jobs.yaml", "--log-level", "debug"}, 2, "", "usage: jobd [global flags] COMMAND"},
		{"unknown command", []string{"frobnicate"}, 2, "", "jobd: unknown command \"frobnicate\" (commands: run, lock,"},
		{"help", []string{"help"}, 0, "USAGE:", ""},
		{"--help", []string{"--help"}, 0, "USAGE:", ""},
		{"-h", []string{"-h"}, 0, "EXIT CODES:", ""},
		{"help of a command", []string{"help", "status"}, 0, "jobd status - show replicas", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := jobdArgs(t, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.stderr) || !strings.Contains(r.stdout, tt.stdout) ||
				(tt.stdout == "") != (r.stdout == "") || (tt.stderr == "") != (r.stderr == "") {
				t.Fatalf("exit %d, want %d\nstdout (want %q):\n%s\nstderr (want %q):\n%s", r.code, tt.code, tt.stdout, r.stdout, tt.stderr, r.stderr)
			}
			if tt.code == exitUsage && strings.Count(r.stderr, "\n") > 3 {
				t.Errorf("not a short usage:\n%s", r.stderr)
			}
		})
	}
}

// TestBadFlag: a flag that no command (nor the app) knows, or one that
// cannot be parsed, is one line and a hint on stderr, exit 2: never the
// whole help. Every command is tried.
func TestBadFlag(t *testing.T) {
	type tc struct {
		name string
		args []string
		want string
	}
	var tests []tc
	for _, cmd := range newApp(io.Discard, io.Discard).Commands {
		tests = append(tests, tc{cmd.Name, []string{cmd.Name, "--nope"},
			"jobd: flag provided but not defined: -nope\nrun 'jobd " + cmd.Name + " --help'\n"})
	}
	tests = append(tests,
		tc{"app", []string{"--nope", "status"}, "jobd: flag provided but not defined: -nope\nrun 'jobd --help'\n"},
		tc{"short flag", []string{"validate", "-x"}, "jobd: flag provided but not defined: -x\nrun 'jobd validate --help'\n"},
		tc{"after the argument", []string{"history", "web", "--nope"}, "jobd: flag provided but not defined: -nope\nrun 'jobd history --help'\n"},
		tc{"missing value", []string{"trigger", "web", "--timeout"}, "jobd: flag needs an argument: -timeout\nrun 'jobd trigger --help'\n"},
		tc{"bad value", []string{"history", "web", "--limit", "lots"}, "jobd: invalid value \"lots\" for flag -limit: parse error\nrun 'jobd history --help'\n"},
		tc{"global flag without its value", []string{"status", "--redis"}, "jobd: flag needs an argument: -redis\nrun 'jobd --help'\n"},
		tc{"stray argument", []string{"validate", "extra"}, "jobd: validate takes no arguments, got [\"extra\"]\nrun 'jobd validate --help'\n"},
	)
	if len(tests) < 15 {
		t.Fatalf("only %d cases: the app lost commands?", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := jobdArgs(t, tt.args...)
			if r.code != exitUsage || r.stderr != tt.want || r.stdout != "" {
				t.Fatalf("jobd %s: exit %d, want 2\nstderr %q\nwant   %q\nstdout:\n%s", strings.Join(tt.args, " "), r.code, r.stderr, tt.want, r.stdout)
			}
		})
	}
}
