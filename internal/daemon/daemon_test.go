package daemon_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/daemon"
	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/redisconn"
	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

// unusedLocker fails the test if the scheduler claims anything: the
// config has only a suspended job.
type unusedLocker struct{ t *testing.T }

func (l unusedLocker) ClaimAndLock(context.Context, []*scheduler.Claim, func(int)) {
	l.t.Error("ClaimAndLock called")
}

func (l unusedLocker) Lock(context.Context, string, time.Duration, string) (scheduler.Lease, error) {
	l.t.Error("Lock called")
	return nil, context.Canceled
}

func (l unusedLocker) Holder(context.Context, string) (scheduler.Holder, bool, error) {
	l.t.Error("Holder called")
	return scheduler.Holder{}, false, nil
}

// TestRunLogs: through Run's SIGHUP path, a valid reload is logged once
// and an invalid one once per problem; SIGTERM is logged as "signal
// received" with the replica's id, as every line of Run is.
func TestRunLogs(t *testing.T) {
	// Caught here too, so that a signal never kills the test binary, even
	// before Run has asked for it.
	caught := make(chan os.Signal, 8)
	signal.Notify(caught, syscall.SIGHUP, syscall.SIGTERM)
	defer signal.Stop(caught)

	srv := redistest.Start(t)
	target := redisconn.Resolve(redisconn.Target{URL: srv.URL(), Prefix: "daemon-test"}, nil)
	rdb, err := target.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	path := filepath.Join(t.TempDir(), "jobs.yaml")
	write := func(name string) {
		yaml := "jobs:\n  - {name: " + name + ", schedule: \"@daily\", suspend: true, command: [\"true\"]}\n"
		if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a")
	cfg, err := jobs.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &redistest.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	sched := scheduler.New(cfg, scheduler.NewStore(rdb, target.Prefix), unusedLocker{t},
		scheduler.WithLogger(log), scheduler.WithReplicaID("r1"))
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(context.Background(), sched, target, []redis.UniversalClient{rdb}, nil, daemon.WithLogger(log),
			daemon.WithReload(func() (*jobs.Config, error) { return jobs.Load(path) }, func(*jobs.Config) {}))
	}()
	waitLog := func(what string, n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(logs.String(), what) < n {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", what, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitLog("replica started", 1)
	write("b")
	_ = syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitLog("reload: config loaded", 1)
	if err := os.WriteFile(path, []byte("jobs:\n  - {name: c, schedule: \"* * *\"}\n"), 0o644); err != nil { // two problems
		t.Fatal(err)
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitLog("reload: invalid config", 2)
	time.Sleep(300 * time.Millisecond) // a duplicate, if any, is written by now
	_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after SIGTERM")
	}

	count := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		msg, _ := l["msg"].(string)
		count[msg]++
		if l["replica"] != "r1" {
			t.Errorf("no replica=r1: %s", line)
		}
		if msg == "signal received: stopping" && l["signal"] != "terminated" {
			t.Errorf("signal: %s", line)
		}
		if msg == "reload: config loaded" && l["config_hash"] != sched.Config().Hash[:12] {
			t.Errorf("not the new config's hash (%s): %s", sched.Config().Hash[:12], line)
		}
	}
	reloads := 0
	for msg, n := range count {
		if strings.Contains(strings.ToLower(msg), "reload") {
			reloads += n
		}
	}
	if count["reload: config loaded"] != 1 || count["reload: invalid config; keeping the old one"] != 2 || reloads != 3 ||
		count["signal received: stopping"] != 1 {
		t.Errorf("want one line per valid reload, one per problem, one per signal; got %v:\n%s", count, logs.String())
	}
}
