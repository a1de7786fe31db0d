package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
)

func TestLockExitCodes(t *testing.T) {
	url := redistest.SharedURL(t)
	tests := []struct {
		name     string
		url      string
		held     bool // another owner holds "k" first
		args     []string
		code     int
		stdout   string   // substring
		stderr   []string // substrings
		noStderr string   // must not appear
	}{
		{name: "exit code passes through", args: []string{"lock", "k", "--", "sh", "-c", "exit 7"}, code: 7},
		{name: "env carries key and fence", args: []string{"lock", "k", "--", "sh", "-c", `echo "$JOBD_LOCK_KEY $JOBD_FENCE"`},
			stdout: "k 1"},
		{name: "killed by a signal is 128+N", args: []string{"lock", "k", "--", "sh", "-c", "kill -9 $$"}, code: 137},
		{name: "not obtained names the holder", held: true, args: []string{"lock", "k", "--", "true"}, code: 75,
			stderr: []string{`lock "k" not obtained`, "test-holder", "expires in"}},
		{name: "not obtained within --wait", held: true, args: []string{"lock", "--wait", "200ms", "k", "--", "true"}, code: 75,
			stderr: []string{"not obtained", "test-holder"}},
		{name: "redis unreachable", url: "redis://user:s3cret@127.0.0.1:1/0", args: []string{"lock", "k", "--", "true"}, code: 69,
			stderr: []string{"redis unreachable at redis://user:xxxxx@127.0.0.1:1/0"}, noStderr: "s3cret"},
		{name: "bad url", url: "http://x:s3cret@h/0", args: []string{"lock", "k", "--", "true"}, code: 2, noStderr: "s3cret"},
		{name: "missing command", args: []string{"lock", "k"}, code: 2, stderr: []string{"usage"}},
		{name: "command not found", args: []string{"lock", "k", "--", "/nonexistent/cmd"}, code: 127, stderr: []string{"command not found"}},
		{name: "ttl too short", args: []string{"lock", "--ttl", "10ms", "k", "--", "true"}, code: 2},
		{name: "unknown flag", args: []string{"lock", "--bogus", "k", "--", "true"}, code: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := url
			if tt.url != "" {
				u = tt.url
			}
			if tt.held {
				c, _ := newMutexClient(t, url)
				if err := c.NewMutex("k", mutex.WithLabel("maintenance")).Lock(ctxT(t, 5*time.Second)); err != nil {
					t.Fatal(err)
				}
			}
			r := run(t, u, tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tt.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, tt.stdout) {
				t.Errorf("stdout %q lacks %q", r.stdout, tt.stdout)
			}
			for _, s := range tt.stderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr %q lacks %q", r.stderr, s)
				}
			}
			if tt.noStderr != "" && strings.Contains(r.stderr, tt.noStderr) {
				t.Errorf("stderr shows %q: %s", tt.noStderr, r.stderr)
			}
			if tt.code != 75 {
				// Whatever happened, jobd released what it took.
				c, _ := newMutexClient(t, url)
				if info, ok, _ := c.Inspect(ctxT(t, time.Second), "k"); ok && info.Owner != "test-holder" {
					t.Errorf("lock still held after exit: %+v", info)
				}
			}
		})
	}
}

// TestLockExcludes: two `jobd lock` on one key never run together; the
// second waits for the first with --wait.
func TestLockExcludes(t *testing.T) {
	url := redistest.SharedURL(t)
	first := jobd(t, url, "lock", "k", "--", "sh", "-c", "sleep 0.5")
	c, _ := newMutexClient(t, url)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok, _ := c.Inspect(ctxT(t, time.Second), "k"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first jobd never took the lock")
		}
		time.Sleep(5 * time.Millisecond)
	}
	second := run(t, url, "lock", "--wait", "10s", "k", "--", "sh", "-c", `echo "fence=$JOBD_FENCE"`)
	if r := wait(t, first); r.code != 0 {
		t.Fatalf("first: %+v", r)
	}
	if second.code != 0 || !strings.Contains(second.stdout, "fence=2") {
		t.Fatalf("second: %+v", second)
	}
}

// TestLockSignalForwarding: TERM to jobd reaches the command's process
// group, and jobd exits with the command's code.
func TestLockSignalForwarding(t *testing.T) {
	url := redistest.SharedURL(t)
	cmd := jobd(t, url, "lock", "k", "--", "sh", "-c",
		`trap 'echo got-TERM; exit 42' TERM; echo ready; while :; do sleep 0.05; done`)
	waitOutput(t, cmd, "ready")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := wait(t, cmd)
	if r.code != 42 || !strings.Contains(r.stdout, "got-TERM") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 42 and got-TERM", r.code, r.stdout, r.stderr)
	}
}

// TestLockInterruptedWait: a signal while `jobd lock --wait` waits ends
// the wait: the command is not run, the waiter leaves the queue (the next
// waiter is not held back), and the exit code is the shell's 128+N for the
// signal, not 75 (busy).
func TestLockInterruptedWait(t *testing.T) {
	url := redistest.SharedURL(t)
	for _, tt := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(tt.sig.String(), func(t *testing.T) {
			holder := jobd(t, url, "lock", "k-int", "--", "sh", "-c", "echo ready; sleep 30")
			waitOutput(t, holder, "ready")
			defer func() { _ = holder.Process.Signal(syscall.SIGTERM); wait(t, holder) }()
			waiter := jobd(t, url, "lock", "--wait", "1m", "k-int", "--", "sh", "-c", "echo ran")
			time.Sleep(500 * time.Millisecond) // queued by now
			if err := waiter.Process.Signal(tt.sig); err != nil {
				t.Fatal(err)
			}
			r := wait(t, waiter)
			if r.code != tt.code || strings.Contains(r.stdout, "ran") || !strings.Contains(r.stderr, "while waiting for it; the command was not run") {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, not run", r.code, r.stdout, r.stderr, tt.code)
			}
		})
	}
}

// TestLockLeaseLost: when the lease is lost the command's group gets TERM,
// then KILL after --kill-grace if it ignores TERM, and jobd exits 70.
func TestLockLeaseLost(t *testing.T) {
	tests := []struct {
		name  string
		child string
		lose  func(t *testing.T, srv *redistest.Server, key string)
	}{
		{"key deleted, child stops on TERM", `echo ready; while :; do sleep 0.05; done`,
			func(t *testing.T, srv *redistest.Server, key string) { deleteKey(t, srv, key) }},
		{"key deleted, child ignores TERM", `trap '' TERM; echo ready $$; while :; do sleep 0.05; done`,
			func(t *testing.T, srv *redistest.Server, key string) { deleteKey(t, srv, key) }},
		{"redis stopped", `trap '' TERM; echo ready; while :; do sleep 0.05; done`,
			func(t *testing.T, srv *redistest.Server, key string) { srv.Stop() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t)
			cmd := jobd(t, srv.URL(), "lock", "--ttl", "3s", "--kill-grace", "300ms", "k", "--", "sh", "-c", tt.child)
			out := waitOutput(t, cmd, "ready")
			start := time.Now()
			tt.lose(t, srv, prefix(t)+":lock:{k}")
			r := wait(t, cmd)
			if r.code != 70 || !strings.Contains(r.stderr, "lock lost") {
				t.Fatalf("exit %d, stderr %q; want 70 and 'lock lost'", r.code, r.stderr)
			}
			if d := time.Since(start); d > 4*time.Second { // trusted for 2.4s, then 300ms of grace
				t.Errorf("took %v to end the command", d)
			}
			if f := strings.Fields(out); len(f) > 1 { // the child that ignored TERM is gone too
				pid, _ := strconv.Atoi(f[1])
				if err := syscall.Kill(pid, 0); err == nil {
					t.Errorf("child %d survived the lost lease", pid)
				}
			}
		})
	}
}

func deleteKey(t *testing.T, srv *redistest.Server, key string) {
	t.Helper()
	_, rdb := newMutexClient(t, srv.URL())
	if err := rdb.Del(context.Background(), key).Err(); err != nil {
		t.Fatal(err)
	}
}

// waitOutput waits until the command's stdout has a line containing s
// and returns that line.
func waitOutput(t *testing.T, cmd *exec.Cmd, s string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(cmd.Stdout.(*redistest.Buffer).String(), "\n") {
			if strings.Contains(line, s) {
				return line
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %q in output; stderr: %s", s, cmd.Stderr.(*redistest.Buffer).String())
	return ""
}

// TestRedisURLForms: every URL form go-redis parses works, with an ACL
// user and password, and a wrong password never shows up in the output.
func TestRedisURLForms(t *testing.T) {
	srv := redistest.Start(t)
	srv.AddUser(t, "jobdtest", "pw-123")
	tests := []struct {
		name, url string
		code      int
	}{
		{"redis with user and password", "redis://jobdtest:pw-123@" + srv.Addr + "/0", 0},
		{"unix socket with user and password", "unix://jobdtest:pw-123@" + srv.Socket() + "?db=1", 0},
		{"wrong password is a configuration error", "redis://jobdtest:wrong-pw-456@" + srv.Addr + "/0", 78},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, tt.url, "lock", "k", "--", "true")
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d: %s", r.code, tt.code, r.stderr)
			}
			for _, secret := range []string{"pw-123", "wrong-pw-456"} {
				if strings.Contains(r.stderr+r.stdout, secret) {
					t.Errorf("output shows the password: %s", r.stderr)
				}
			}
		})
	}
}

// documentedACL is the ACL SETUSER command the README recommends, with
// the password replaced, so that the docs and the tests cannot drift.
func documentedACL(t *testing.T, password string) []string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var acl []string
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "ACL SETUSER jobd ") {
			acl = strings.Fields(strings.ReplaceAll(line, "LONG-RANDOM-PASSWORD", password))
		}
	}
	if acl == nil {
		t.Fatal("README has no ACL SETUSER jobd line")
	}
	return acl
}

// TestDocumentedACL: the ACL user the README recommends is enough for the
// whole operator path: a replica (including its durability check with
// INFO and CONFIG GET), status, history, trigger --wait, lock, validate
// and plan. Without +config|get and +info the replica still runs.
func TestDocumentedACL(t *testing.T) {
	acl := documentedACL(t, "pw-acl-test")
	srv := redistest.Start(t)
	_, admin := newMutexClient(t, srv.URL())
	setUser := func(t *testing.T, acl []string) {
		t.Helper()
		args := make([]any, len(acl))
		for i, a := range acl {
			args[i] = a
		}
		if err := admin.Do(context.Background(), args...).Err(); err != nil {
			t.Fatalf("%v: %v", acl, err)
		}
	}
	setUser(t, acl)
	url := "redis://jobd:pw-acl-test@" + srv.Addr + "/0"
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "jobs.yaml")
	out := filepath.Join(dir, "out")
	writeFile(t, cfgPath, "jobs:\n  - name: a\n    schedule: \"@every 1s\"\n    command: [\"sh\", \"-c\", \"echo ran >> "+out+"\"]\n"+
		"  - name: manual\n    schedule: \"@daily\"\n    suspend: true\n    lock: db-maintenance\n    command: [\"sh\", \"-c\", \"exit 4\"]\n")
	daemon := jobdPrefix(t, url, "jobd", "-c", cfgPath, "run", "--replica-id", "acl")
	t.Cleanup(func() {
		if daemon.ProcessState == nil {
			_ = daemon.Process.Kill()
			_, _ = daemon.Process.Wait()
		}
	})
	poll(t, 10*time.Second, "a run under the ACL user", func() bool { return fileHas(out, "ran") })
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
	}{
		{"status", []string{"status"}, 0, "acl"},
		{"history", []string{"history", "a"}, 0, "succeeded"},
		{"trigger --wait", []string{"trigger", "manual", "--wait", "--timeout", "30s"}, 4, ""}, // the job's own code
		{"lock", []string{"lock", "--wait", "5s", "db-maintenance", "--", "true"}, 0, ""},
		{"validate", []string{"validate"}, 0, "ok: 2 jobs"},
		{"plan", []string{"plan"}, 0, "manual"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := wait(t, jobdPrefix(t, url, "jobd", append([]string{"-c", cfgPath}, tt.args...)...))
			if r.code != tt.code || !strings.Contains(r.stdout, tt.stdout) {
				t.Fatalf("exit %d, want %d with %q\nstdout: %s\nstderr: %s", r.code, tt.code, tt.stdout, r.stdout, r.stderr)
			}
		})
	}
	_ = daemon.Process.Signal(syscall.SIGTERM)
	r := wait(t, daemon)
	if r.code != 0 || strings.Contains(r.stderr, "NOPERM") {
		t.Errorf("daemon: exit %d: %s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "cannot read") { // INFO persistence and CONFIG GET are allowed
		t.Errorf("the daemon could not check Redis's durability settings: %s", r.stderr)
	}

	t.Run("without config|get and info", func(t *testing.T) {
		var less []string
		for _, a := range acl {
			if a != "+config|get" && a != "+info" {
				less = append(less, a)
			}
		}
		setUser(t, append([]string{"ACL", "SETUSER", "jobd", "reset"}, less[3:]...))
		out2 := filepath.Join(dir, "out2")
		writeFile(t, cfgPath, "jobs:\n  - name: b\n    schedule: \"@every 1s\"\n    command: [\"sh\", \"-c\", \"echo ran >> "+out2+"\"]\n")
		d := jobdPrefix(t, url, "jobd", "-c", cfgPath, "run", "--replica-id", "acl2")
		poll(t, 10*time.Second, "a run without CONFIG GET", func() bool { return fileHas(out2, "ran") })
		_ = d.Process.Signal(syscall.SIGTERM)
		if r := wait(t, d); r.code != 0 || !strings.Contains(r.stderr, "cannot read") {
			t.Errorf("daemon: exit %d, want 0 and a warning that the settings cannot be read: %s", r.code, r.stderr)
		}
	})
}
