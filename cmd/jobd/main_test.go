package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
)

// jobdBin is the real binary, built once for the CLI tests.
var jobdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jobd-cli-")
	if err != nil {
		panic(err)
	}
	jobdBin = filepath.Join(dir, "jobd")
	build := exec.Command("go", "build", "-race", "-o", jobdBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: building jobd:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	// The race-built binary sleeps 1s at exit by default (to let reports
	// of other goroutines print); the tests run it hundreds of times. A
	// race it finds still fails its run (exit 66) and prints the report.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	redistest.Main(m)
}

// result of one jobd run.
type result struct {
	code           int
	stdout, stderr string
}

// jobd starts the binary; the caller waits with wait().
func jobd(t *testing.T, url string, args ...string) *exec.Cmd {
	t.Helper()
	return jobdPrefix(t, url, prefix(t), args...)
}

// jobdPrefix is jobd with an explicit key prefix (subtests share their
// parent's daemons).
func jobdPrefix(t *testing.T, url, pfx string, args ...string) *exec.Cmd {
	t.Helper()
	full := append([]string{"--redis", url, "--prefix", pfx, "--log-format", "text"}, args...)
	cmd := exec.Command(jobdBin, full...)
	cmd.Stdout, cmd.Stderr = &redistest.Buffer{}, &redistest.Buffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func wait(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("jobd did not exit: %s", cmd.Stderr)
	}
	return result{cmd.ProcessState.ExitCode(), cmd.Stdout.(*redistest.Buffer).String(), cmd.Stderr.(*redistest.Buffer).String()}
}

func run(t *testing.T, url string, args ...string) result {
	t.Helper()
	return wait(t, jobd(t, url, args...))
}

func prefix(t *testing.T) string {
	return "test:" + strings.NewReplacer("/", ":", " ", "_").Replace(t.Name())
}

func newMutexClient(t *testing.T, url string) (*mutex.Client, *redis.Client) {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opt)
	c := mutex.New(rdb, mutex.WithPrefix(prefix(t)), mutex.WithOwner("test-holder"))
	t.Cleanup(func() { c.Close(); rdb.Close() })
	return c, rdb
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
