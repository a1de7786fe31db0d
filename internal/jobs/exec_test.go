package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func testRun(argv []string, mod func(*Instance)) Launch {
	in := &Instance{Job: "j", Name: "j[p]", Param: "p", Argv: argv, Timeout: 10 * time.Second,
		KillGrace: 300 * time.Millisecond, Env: map[string]string{"FROM_JOB": "yes"}}
	if mod != nil {
		mod(in)
	}
	return Launch{Instance: in, ID: "run-1", ScheduledAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Replica: "r1", LockKey: "L:p", Fence: 42}
}

// gone reports whether pid no longer runs (a zombie counts as gone).
func gone(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return err != nil || strings.Contains(string(stat), ") Z ")
}

// errMaintenance is a cancel cause of the caller's own, which Execute
// knows nothing about and must hand back in Result.Cause.
var errMaintenance = errors.New("node drained for maintenance")

func TestExecute(t *testing.T) {
	tests := []struct {
		name    string
		argv    []string
		mod     func(*Instance)
		cancel  error // cancel the context with this cause after 200ms
		cause   error // Result.Cause must match it (errors.Is); nil: Cause is nil
		status  Status
		code    int
		output  []string // substrings of the output tail
		reason  string
		maxTime time.Duration
	}{
		{name: "succeeded", argv: []string{"sh", "-c", "echo out; echo err >&2"}, status: StatusSucceeded,
			output: []string{"out\n", "err\n"}},
		{name: "failed", argv: []string{"sh", "-c", "exit 3"}, status: StatusFailed, code: 3, reason: "exit code 3"},
		{name: "environment", argv: []string{"sh", "-c", "env | grep -E '^(JOBD_|FROM_JOB)' | sort"}, status: StatusSucceeded,
			output: []string{"FROM_JOB=yes", "JOBD_JOB=j\n", "JOBD_INSTANCE=j[p]", "JOBD_PARAM=p\n", "JOBD_RUN_ID=run-1",
				"JOBD_SCHEDULED_AT=2026-01-02T03:04:05Z", "JOBD_REPLICA=r1", "JOBD_LOCK_KEY=L:p", "JOBD_FENCE=42"}},
		{name: "workdir", argv: []string{"pwd"}, mod: func(in *Instance) { in.Workdir = "/tmp" }, status: StatusSucceeded,
			output: []string{"/tmp\n"}},
		{name: "missing binary", argv: []string{"no-such-binary-jobd"}, status: StatusFailed, code: 127, reason: "not found"},
		{name: "missing absolute binary", argv: []string{"/nonexistent/bin"}, status: StatusFailed, code: 127, reason: "not found"},
		{name: "bad workdir", argv: []string{"true"}, mod: func(in *Instance) { in.Workdir = "/nonexistent" }, status: StatusFailed,
			code: 126, reason: "workdir"},
		{name: "timeout", argv: []string{"sleep", "30"}, mod: func(in *Instance) { in.Timeout = 200 * time.Millisecond },
			status: StatusTimeout, code: -1, reason: "timed out", maxTime: 2 * time.Second},
		{name: "timeout, TERM ignored", argv: []string{"sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"},
			mod: func(in *Instance) { in.Timeout = 200 * time.Millisecond }, status: StatusTimeout, code: -1, maxTime: 2 * time.Second},
		{name: "shutdown", argv: []string{"sleep", "30"}, cancel: context.Canceled, cause: context.Canceled,
			status: StatusKilled, code: -1, maxTime: 2 * time.Second},
		{name: "stopped with a cause of the caller's", argv: []string{"sleep", "30"},
			cancel: fmt.Errorf("replica r1: %w", errMaintenance), cause: errMaintenance,
			status: StatusKilled, code: -1, reason: "stopped: replica r1: node drained", maxTime: 2 * time.Second},
		{name: "killed from outside", argv: []string{"sh", "-c", "kill -KILL $$"}, status: StatusKilled, code: -1, reason: "signal"},
		{name: "output tail", argv: []string{"sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done"},
			status: StatusSucceeded, output: []string{"line-1999\n"}},
		{name: "long line", argv: []string{"sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x; echo; echo end"},
			status: StatusSucceeded, output: []string{"xxx\nend\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			if tt.cancel != nil {
				time.AfterFunc(200*time.Millisecond, func() { cancel(tt.cancel) })
			}
			start := time.Now()
			res := Execute(ctx, log, testRun(tt.argv, tt.mod))
			if res.Status != tt.status || res.ExitCode != tt.code {
				t.Fatalf("status %s code %d (%s), want %s %d\noutput: %s", res.Status, res.ExitCode, res.Reason, tt.status, tt.code, res.Output)
			}
			for _, s := range tt.output {
				if !strings.Contains(res.Output, s) {
					t.Errorf("output lacks %q:\n%s", s, res.Output)
				}
			}
			if len(res.Output) > OutputTail {
				t.Errorf("output tail is %d bytes", len(res.Output))
			}
			if !strings.Contains(res.Reason, tt.reason) {
				t.Errorf("reason %q lacks %q", res.Reason, tt.reason)
			}
			if (res.Cause == nil) != (tt.cause == nil) || !errors.Is(res.Cause, tt.cause) {
				t.Errorf("cause %v, want %v", res.Cause, tt.cause)
			}
			if tt.maxTime > 0 && time.Since(start) > tt.maxTime {
				t.Errorf("took %v", time.Since(start))
			}
			if res.End.Before(res.Start) {
				t.Errorf("end %v before start %v", res.End, res.Start)
			}
			if tt.status == StatusSucceeded && !strings.Contains(logs.String(), "stream=stdout") {
				t.Errorf("output not logged with stream key:\n%s", logs.String())
			}
		})
	}
}

// TestExecuteKillsGrandchildren: a background grandchild started from a
// shell dies with its run, on timeout and when the main process exits.
func TestExecuteKillsGrandchildren(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		timeout time.Duration
		status  Status
	}{
		{"timeout", "sleep 60 & echo $!; wait", 300 * time.Millisecond, StatusTimeout},
		{"main exits first", "sleep 60 & echo $!; exit 0", 10 * time.Second, StatusSucceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
			res := Execute(context.Background(), log, testRun([]string{"sh", "-c", tt.script},
				func(in *Instance) { in.Timeout = tt.timeout }))
			if res.Status != tt.status {
				t.Fatalf("status %s (%s)", res.Status, res.Reason)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(res.Output))
			if err != nil {
				t.Fatalf("output %q", res.Output)
			}
			deadline := time.Now().Add(2 * time.Second)
			for !gone(pid) {
				if time.Now().After(deadline) {
					syscall.Kill(pid, syscall.SIGKILL)
					t.Fatalf("grandchild %d survived", pid)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// errNotTrusted is what a caller's Ready answers when it refuses a start.
var errNotTrusted = errors.New("lease not trusted")

// TestNoStart: a run whose context has ended, or whose Ready check fails
// (a lease no longer trusted), never starts its process; Result.Cause is
// the context's cause, else Ready's error, as given.
func TestNoStart(t *testing.T) {
	tests := []struct {
		name      string
		cause     error // the context's cancel cause, if any
		ready     error // what Ready answers
		status    Status
		wantCause error // if set, Result.Cause must also match it (errors.Is)
	}{
		{"shutdown before the start", fmt.Errorf("jobd is shutting down"), nil, StatusKilled, nil},
		{"the caller's cause before the start", fmt.Errorf("replica r1: %w", errMaintenance), nil, StatusKilled, errMaintenance},
		{"ready refuses the start", nil, errNotTrusted, StatusKilled, errNotTrusted},
		{"an ended context wins over ready", errMaintenance, errNotTrusted, StatusKilled, errMaintenance},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			marker := t.TempDir() + "/ran"
			r := testRun([]string{"sh", "-c", "touch " + marker}, nil)
			started, asked := false, false
			r.OnStart = func(time.Time) { started = true }
			r.Ready = func() error { asked = true; return tt.ready }
			ctx, cancel := context.WithCancelCause(context.Background())
			if tt.cause != nil {
				cancel(tt.cause)
			}
			defer cancel(nil)
			res := Execute(ctx, slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), r)
			if res.Status != tt.status || res.Started || started || !strings.HasPrefix(res.Reason, "not started") {
				t.Fatalf("result %+v (OnStart called: %v)", res, started)
			}
			given := tt.cause
			if given == nil {
				given = tt.ready
			}
			if res.Cause != given || (tt.wantCause != nil && !errors.Is(res.Cause, tt.wantCause)) {
				t.Errorf("cause %v, want %v (matching %v)", res.Cause, given, tt.wantCause)
			}
			if asked != (tt.cause == nil) {
				t.Errorf("Ready asked: %v, with the context's cause %v", asked, tt.cause)
			}
			if b, err := json.Marshal(res); err != nil || strings.Contains(strings.ToLower(string(b)), `"cause"`) {
				t.Errorf("JSON %s (%v) carries the cause", b, err)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("the process ran")
			}
		})
	}
}

// TestOutputLogCap: a run logs at most log_output_lines output lines,
// then one notice; the record's tail still has the last lines.
func TestOutputLogCap(t *testing.T) {
	ten, zero := 10, 0
	tests := []struct {
		name    string
		lines   *int
		logged  int
		notices int // "no more lines" notices: none when no line is logged on purpose
	}{
		{"default", nil, DefaultLogOutputLines, 1},
		{"ten", &ten, 10, 1},
		{"none", &zero, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			res := Execute(context.Background(), log, testRun([]string{"sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done"},
				func(in *Instance) { in.LogOutputLines = tt.lines }))
			if got := strings.Count(logs.String(), "msg=output "); got != tt.logged {
				t.Errorf("%d output lines logged, want %d", got, tt.logged)
			}
			if n := strings.Count(logs.String(), "no more lines of this run are logged"); n != tt.notices {
				t.Errorf("%d notices, want %d", n, tt.notices)
			}
			if !strings.Contains(res.Output, "line-2999\n") {
				t.Errorf("the tail lacks the last line")
			}
		})
	}
}
