package scheduler_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

// counter counts Redis round trips (a command or a pipeline) and the
// commands in them that match its filter (all of them when nil).
type counter struct {
	mu                      sync.Mutex
	match                   func(redis.Cmder) bool
	trips, matched, largest int
}

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.count([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}
func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.count(cmds)
		return next(ctx, cmds)
	}
}

func (c *counter) count(cmds []redis.Cmder) {
	n := 0
	for _, cmd := range cmds {
		if c.match == nil || c.match(cmd) {
			n++
		}
	}
	if n == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trips++
	c.matched += n
	c.largest = max(c.largest, n)
}

func (c *counter) get() (trips, matched, largest int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.trips, c.matched, c.largest
}

// isTickClaim matches the acquire script when it carries a tick claim.
func isTickClaim(cmd redis.Cmder) bool {
	if !strings.EqualFold(cmd.Name(), "evalsha") {
		return false
	}
	tick, lock := false, false // the record scripts name the tick's claim too, but no lock
	for _, a := range cmd.Args() {
		if s, ok := a.(string); ok {
			tick = tick || strings.Contains(s, ":tick:")
			lock = lock || strings.Contains(s, ":lock:{")
		}
	}
	return tick && lock
}

// TestClaimsArePipelined: 1,000 instances due at the same second are
// claimed in a handful of round trips (one pipeline per rank), not
// a thousand.
func TestClaimsArePipelined(t *testing.T) {
	url := redistest.SharedURL(t)
	params := make([]string, 1000)
	for i := range params {
		params[i] = fmt.Sprintf("%q", fmt.Sprintf("%04d", i))
	}
	cfg, err := jobs.Parse("t.yaml", []byte(`
jobs:
  - name: many
    schedule: "@every 2s"
    params: [`+strings.Join(params, ", ")+`]
    lock: one
    command: ["true"]
`))
	if err != nil {
		t.Fatal(err)
	}
	rdb := newRedis(t, url)
	claims := &counter{match: isTickClaim}
	rdb.AddHook(claims)
	mc := mutex.New(rdb, mutex.WithPrefix(prefix(t)), mutex.WithOwner("a"))
	defer mc.Close()
	s := scheduler.New(cfg, scheduler.NewStore(rdb, prefix(t)), locker{mc}, scheduler.WithReplicaID("a"),
		scheduler.WithLogger(discard()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, 10*time.Second, "a tick's claims", func() bool { _, n, _ := claims.get(); return n >= 1000 })
	cancel()
	<-done
	trips, n, largest := claims.get()
	t.Logf("1000 claims of one tick: %d acquire scripts in %d round trips (largest pipeline %d)", n, trips, largest)
	if trips > 8 {
		t.Fatalf("%d round trips for 1000 claims", trips)
	}
}

// TestClockAndConfigChecks: skew against Redis is measured, and replicas
// that run different configs notice it.
func TestClockAndConfigChecks(t *testing.T) {
	url := redistest.SharedURL(t)
	out := outFile(t)
	a := startReplica(t, url, config(t, out, jobsYAML(1, "@every 1h", "", recordCmd)), "a",
		scheduler.WithClock(skewClock(2*time.Second)))
	b := startReplica(t, url, config(t, out, jobsYAML(2, "@every 1h", "", recordCmd)), "b")
	waitFor(t, 5*time.Second, "the mismatch", func() bool { return a.s.ConfigMismatch() && b.s.ConfigMismatch() })
	if skew := a.s.ClockSkew(); skew < 1900*time.Millisecond || skew > 2100*time.Millisecond {
		t.Errorf("skew %v, want about 2s", skew)
	}
	if skew := b.s.ClockSkew(); skew < -100*time.Millisecond || skew > 100*time.Millisecond {
		t.Errorf("skew %v, want about 0", skew)
	}
	if !strings.Contains(a.logs.String(), "local clock differs from Redis's") {
		t.Error("no skew warning")
	}
	if !strings.Contains(b.logs.String(), "replicas run different configs") {
		t.Error("no config mismatch warning")
	}
}

// TestRoundTripsPerRun measures the daemon's own Redis work per run: claim
// and lock, start record, result record, unlock. Heartbeats and
// maintenance run on their own intervals and are kept out of the window.
func TestRoundTripsPerRun(t *testing.T) {
	url := redistest.SharedURL(t)
	out := outFile(t)
	cfg := config(t, out, jobsYAML(1, "@every 1s", "", recordCmd))
	rdb := newRedis(t, url)
	all := &counter{}
	rdb.AddHook(all)
	mc := mutex.New(rdb, mutex.WithPrefix(prefix(t)), mutex.WithOwner("a"))
	defer mc.Close()
	s := scheduler.New(cfg, scheduler.NewStore(rdb, prefix(t)), locker{mc}, scheduler.WithReplicaID("a"),
		scheduler.WithLogger(discard()), scheduler.WithIntervals(time.Hour, time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, 5*time.Second, "the first run", func() bool { return len(lines(t, out)) >= 1 })
	time.Sleep(200 * time.Millisecond) // let the first run finish its records
	before, _, _ := all.get()
	runsBefore := len(lines(t, out))
	time.Sleep(5 * time.Second)
	after, _, _ := all.get()
	trips, runs := after-before, len(lines(t, out))-runsBefore
	cancel()
	<-done
	perRun := float64(trips) / float64(runs)
	t.Logf("%d runs cost %d Redis round trips: %.1f per run", runs, trips, perRun)
	if runs < 4 || perRun > 4.5 {
		t.Fatalf("%d runs, %.1f round trips per run; want at most 4 (claim+lock, start, result, unlock)", runs, perRun)
	}
}
