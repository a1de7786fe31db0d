package scheduler_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

func TestMain(m *testing.M) { redistest.Main(m) }

func prefix(t *testing.T) string {
	return "test:" + strings.NewReplacer("/", ":", " ", "_").Replace(t.Name())
}

// newRedis is a client for url: a redis:// URL, or a Redis Cluster in
// jobd's redis+cluster:// form (redistest.Cluster.URL).
func newRedis(t *testing.T, url string) redis.UniversalClient {
	t.Helper()
	var rdb redis.UniversalClient
	if rest, ok := strings.CutPrefix(url, "redis+cluster://"); ok {
		opt, err := redis.ParseClusterURL("redis://" + rest)
		if err != nil {
			t.Fatal(err)
		}
		opt.ContextTimeoutEnabled = true
		opt.ClusterStateReloadInterval = time.Second // as redisconn sets it
		rdb = redis.NewClusterClient(opt)
	} else {
		opt, err := redis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		opt.ContextTimeoutEnabled = true
		rdb = redis.NewClient(opt)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// topologies are the Redis setups the scheduler's main guarantees are
// tested on: the package's shared standalone server, a 3-master,
// 3-replica Redis Cluster started for the test, and a quorum of three
// independent masters started for the test (a "quorum:URL,URL,URL" of
// this file's own, which newNodes reads).
var topologies = []struct {
	name string
	url  func(t *testing.T) string
}{
	{"standalone", func(t *testing.T) string { return redistest.SharedURL(t) }},
	{"cluster", func(t *testing.T) string { return redistest.StartCluster(t).URL() }},
	{"quorum", func(t *testing.T) string {
		var urls []string
		for range 3 {
			urls = append(urls, redistest.Start(t).URL())
		}
		return "quorum:" + strings.Join(urls, ",")
	}},
}

// newNodes are the clients of url: one, or one per master of a
// "quorum:" list (see topologies).
func newNodes(t *testing.T, url string) []redis.UniversalClient {
	t.Helper()
	rest, ok := strings.CutPrefix(url, "quorum:")
	if !ok {
		return []redis.UniversalClient{newRedis(t, url)}
	}
	var out []redis.UniversalClient
	for _, u := range strings.Split(rest, ",") {
		out = append(out, newRedis(t, u))
	}
	return out
}

// newStore is a Store on url's nodes (see newNodes).
func newStore(t *testing.T, url string) *scheduler.Store {
	return scheduler.NewQuorumStore(newNodes(t, url), prefix(t))
}

// skewClock is a replica clock off by d.
type skewClock time.Duration

func (c skewClock) Now() time.Time      { return time.Now().Add(time.Duration(c)) }
func (c skewClock) Skew() time.Duration { return time.Duration(c) }

// config parses YAML with OUT replaced by the test's output file.
func config(t *testing.T, out, yaml string) *jobs.Config {
	t.Helper()
	cfg, err := jobs.Parse("test.yaml", []byte(strings.ReplaceAll(yaml, "OUT", out)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// replica is one in-process scheduler.
type replica struct {
	s      *scheduler.Scheduler
	cancel context.CancelFunc
	done   chan error
	logs   *redistest.Buffer
}

func startReplica(t *testing.T, url string, cfg *jobs.Config, id string, opts ...scheduler.Option) *replica {
	t.Helper()
	return startReplicaOn(t, newNodes(t, url), cfg, id, opts...)
}

// startReplicaOn is startReplica on clients of the test's own (which may
// carry hooks).
func startReplicaOn(t *testing.T, nodes []redis.UniversalClient, cfg *jobs.Config, id string, opts ...scheduler.Option) *replica {
	t.Helper()
	logs := &redistest.Buffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs), &slog.HandlerOptions{Level: slog.LevelDebug}))
	mc := mutex.NewQuorum(nodes, mutex.WithPrefix(prefix(t)), mutex.WithOwner(id), mutex.WithLogger(log),
		mutex.WithReplicaWait(cfg.Redis.ReplicaWait()))
	t.Cleanup(func() { mc.Close() })
	base := []scheduler.Option{scheduler.WithLogger(log), scheduler.WithReplicaID(id),
		scheduler.WithIntervals(500*time.Millisecond, 500*time.Millisecond), scheduler.WithShutdownGrace(5 * time.Second)}
	s := scheduler.New(cfg, scheduler.NewQuorumStore(nodes, prefix(t)), locker{mc}, append(base, opts...)...)
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{s: s, cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func (r *replica) stop() {
	r.cancel()
	select {
	case <-r.done:
		r.done <- nil // let a second stop return
	case <-time.After(30 * time.Second):
		panic("replica did not stop")
	}
}

// lines reads the output file's lines, split into fields.
func lines(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, strings.Fields(sc.Text()))
	}
	return out
}

func outFile(t *testing.T) string { return filepath.Join(t.TempDir(), "out") }

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func jobsYAML(n int, schedule, extra, command string) string {
	var b strings.Builder
	b.WriteString("jobs:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - name: j%02d\n    schedule: %q\n    command: %s\n%s", i, schedule, command, extra)
	}
	return b.String()
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
