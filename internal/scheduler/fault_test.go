package scheduler_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

// TestMisfire: a replica that starts after a tick nobody claimed runs it
// once with misfire: run_once (within starting_deadline), never with skip.
func TestMisfire(t *testing.T) {
	tests := []struct {
		policy string
		runs   bool
	}{
		{"run_once", true},
		{"skip", false},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			url := redistest.SharedURL(t)
			out := outFile(t)
			cfg := config(t, out, jobsYAML(1, "@every 10s",
				fmt.Sprintf("    misfire: %s\n    starting_deadline: 1m\n", tt.policy), recordCmd))
			// Start 4-6s after a tick, when the normal path has long passed
			// it by (the misfire grace is 3s plus the splay).
			for s := time.Now().Second() % 10; s < 4 || s > 6; s = time.Now().Second() % 10 {
				time.Sleep(100 * time.Millisecond)
			}
			missed := time.Now().Truncate(10 * time.Second)
			startReplica(t, url, cfg, "a")
			time.Sleep(2 * time.Second)
			got := false
			for _, f := range lines(t, out) {
				if f[1] == missed.UTC().Format(time.RFC3339) {
					got = true
				}
			}
			if got != tt.runs {
				t.Fatalf("missed tick %v ran: %v, want %v\n%s", missed.UTC(), got, tt.runs, lines(t, out))
			}
			if tt.runs {
				recs, _ := scheduler.NewStore(newRedis(t, url), prefix(t)).History(context.Background(), scheduler.Named("j00"), 10)
				if len(recs) == 0 || recs[len(recs)-1].Trigger != "misfire" {
					t.Fatalf("records %+v, want a misfire trigger", recs)
				}
			}
		})
	}
}

// TestRedisFaults: a run whose lease cannot be kept (Redis restarted, or
// down longer than the lease) is terminated and recorded lock_lost once
// Redis is back; the replica resumes by itself and never crashes.
func TestRedisFaults(t *testing.T) {
	tests := []struct {
		name string
		down time.Duration
	}{
		{"restart during a run", 0},
		{"down longer than the lease", 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t)
			dir := t.TempDir()
			flag := filepath.Join(dir, "long-done")
			// The first run is long; later ones end at once, to show that the
			// replica resumed.
			cmd := fmt.Sprintf(`["sh", "-c", "echo \"$JOBD_RUN_ID\" >> OUT; if [ -e %s ]; then exit 0; fi; touch %s; exec sleep 60"]`, flag, flag)
			out := filepath.Join(dir, "out")
			cfg := config(t, out, jobsYAML(1, "@every 1s", "    lock_ttl: 3s\n    kill_grace: 200ms\n", cmd))
			r := startReplica(t, srv.URL(), cfg, "a")
			waitFor(t, 10*time.Second, "the long run", func() bool { _, err := os.Stat(flag); return err == nil })
			longRun := lines(t, out)[0][0]
			srv.Stop()
			if tt.down > 0 { // readiness follows the scheduler's own Redis work
				waitFor(t, 5*time.Second, "RedisOK false while Redis is down", func() bool { return !r.s.RedisOK() })
			}
			time.Sleep(tt.down)
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			store := scheduler.NewStore(newRedis(t, srv.URL()), prefix(t))
			waitFor(t, 15*time.Second, "the long run recorded lock_lost", func() bool {
				recs, _ := store.History(context.Background(), scheduler.Named("j00"), 100)
				for _, rec := range recs {
					if rec.RunID == longRun && rec.Status == "lock_lost" {
						return true
					}
				}
				return false
			})
			waitFor(t, 15*time.Second, "a later run to succeed", func() bool {
				_, ok, _ := store.LastSuccess(context.Background(), scheduler.Named("j00"))
				return ok
			})
			waitFor(t, 5*time.Second, "RedisOK again", r.s.RedisOK)
			select {
			case err := <-r.done:
				t.Fatalf("replica stopped: %v", err)
			default:
			}
			if tt.down > 0 && !strings.Contains(r.logs.String(), "redis reachable again") {
				t.Error("no reconnect log line")
			}
		})
	}
}

// panickyLocker hands out leases whose keep-alive panics: a fault on the
// run path, after the claim was won.
type panickyLocker struct{ scheduler.Locker }

func (l panickyLocker) ClaimAndLock(ctx context.Context, claims []*scheduler.Claim, settled func(int)) {
	l.Locker.ClaimAndLock(ctx, claims, func(i int) {
		if c := claims[i]; c.Lease != nil {
			c.Lease = panickyLease{c.Lease}
		}
		if settled != nil {
			settled(i)
		}
	})
}

type panickyLease struct{ scheduler.Lease }

func (panickyLease) KeepAlive(context.Context) (context.Context, func()) { panic("boom in keep-alive") }

// TestPanicRecovered: a panic on a run's path is recorded as a failed run,
// its lock is released, and the replica goes on.
func TestPanicRecovered(t *testing.T) {
	url := redistest.SharedURL(t)
	out := outFile(t)
	cfg := config(t, out, jobsYAML(1, "@every 1s", "", recordCmd))
	rdb := newRedis(t, url)
	mc := mutex.New(rdb, mutex.WithPrefix(prefix(t)), mutex.WithOwner("a"))
	defer mc.Close()
	logs := &redistest.Buffer{}
	s := scheduler.New(cfg, scheduler.NewStore(rdb, prefix(t)), panickyLocker{locker{mc}},
		scheduler.WithReplicaID("a"), scheduler.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	store := scheduler.NewStore(rdb, prefix(t))
	// Two failed runs within 10s, with a 30s lock TTL: the first run's
	// lock was released despite the panic, or the second could not start.
	waitFor(t, 10*time.Second, "two recorded panics", func() bool {
		recs, _ := store.History(context.Background(), scheduler.Named("j00"), 10)
		n := 0
		for _, rec := range recs {
			if rec.Status == "failed" && strings.Contains(rec.Reason, "panic in jobd: boom in keep-alive") {
				n++
			}
		}
		return n >= 2
	})
	select {
	case err := <-done:
		t.Fatalf("replica stopped: %v", err)
	default:
	}
}

// panicky is an observer that panics on every skip.
type panicky struct {
	scheduler.NopObserver
	n *atomic.Int32
}

func (p panicky) Skipped(string, string) { p.n.Add(1); panic("boom in the observer") }

// TestPanicInAHook: the observer only observes; a panicking one is logged
// and ignored, and the skipped ticks are still recorded.
func TestPanicInAHook(t *testing.T) {
	url := redistest.SharedURL(t)
	out := outFile(t)
	cfg := config(t, out, jobsYAML(1, "@every 1s", "    lock: held-elsewhere\n", recordCmd))
	rdb := newRedis(t, url)
	holder := mutex.New(rdb, mutex.WithPrefix(prefix(t)))
	defer holder.Close()
	if err := holder.NewMutex("held-elsewhere", mutex.WithTTL(time.Minute)).Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	var panics atomic.Int32
	r := startReplica(t, url, cfg, "a", scheduler.WithObserver(panicky{n: &panics}))
	store := scheduler.NewStore(rdb, prefix(t))
	waitFor(t, 10*time.Second, "three skips despite the panics", func() bool {
		recs, _ := store.History(context.Background(), scheduler.Ref{Instance: "j00", Lock: "held-elsewhere"}, 10)
		return len(recs) >= 3 && panics.Load() >= 3
	})
	select {
	case err := <-r.done:
		t.Fatalf("replica stopped: %v", err)
	default:
	}
	if !strings.Contains(r.logs.String(), "panic in the observer, ignored") {
		t.Error("the panic was not logged")
	}
}

// TestReplicasExpire: a replica whose heartbeat expired is no longer
// listed, and its id is pruned from the replica set.
func TestReplicasExpire(t *testing.T) {
	rdb := newRedis(t, redistest.SharedURL(t))
	store := scheduler.NewStore(rdb, prefix(t))
	ctx := context.Background()
	for id, ttl := range map[string]time.Duration{"alive": time.Minute, "dying": 200 * time.Millisecond} {
		if _, err := store.Beat(ctx, scheduler.Heartbeat{ID: id}, ttl); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	hbs, err := store.Replicas(ctx)
	if err != nil || len(hbs) != 1 || hbs[0].ID != "alive" {
		t.Fatalf("replicas %+v, %v", hbs, err)
	}
	if ids := rdb.SMembers(ctx, prefix(t)+":replicas").Val(); len(ids) != 1 || ids[0] != "alive" {
		t.Fatalf("replica set %v, want [alive]", ids)
	}
	if err := store.RemoveBeat(ctx, "alive", ""); err != nil {
		t.Fatal(err)
	}
	if hbs, _ := store.Replicas(ctx); len(hbs) != 0 {
		t.Fatalf("after RemoveBeat: %+v", hbs)
	}
}
