package scheduler_test

import (
	"context"
	"errors"
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

// TestStoreWritesAreRetrySafe: each write of the scheduler's store, run
// through a proxy that lets the command reach Redis and then drops its
// reply, leaves the state one run of it leaves (go-redis's production
// retry settings send it again).
func TestStoreWritesAreRetrySafe(t *testing.T) {
	now := time.Now().UTC()
	tests := []struct {
		name  string
		match string
		run   func(ctx context.Context, st *scheduler.Store, inst string) error
		check func(t *testing.T, ctx context.Context, st *scheduler.Store, direct redis.UniversalClient, pfx string)
	}{
		{"push", ":hist:{j}:j", func(ctx context.Context, st *scheduler.Store, inst string) error {
			rec := &scheduler.Record{RunID: "r1", Instance: inst, Lock: inst, Status: jobs.StatusRunning, Start: &now}
			return st.Push(ctx, rec, 10, "inc", scheduler.Guard{})
		}, func(t *testing.T, ctx context.Context, st *scheduler.Store, direct redis.UniversalClient, pfx string) {
			if ids := direct.LRange(ctx, pfx+":hist:{j}:j", 0, -1).Val(); len(ids) != 1 {
				t.Fatalf("history %v, want the run once", ids)
			}
			if n := direct.HLen(ctx, pfx+":running:{j}").Val(); n != 1 {
				t.Fatalf("running index has %d entries", n)
			}
		}},
		{"update", ":hist:{j}:j", func(ctx context.Context, st *scheduler.Store, inst string) error {
			rec := &scheduler.Record{RunID: "r1", Instance: inst, Lock: inst, Status: "succeeded", Start: &now, End: &now}
			return st.Update(ctx, rec, 10, "inc", scheduler.Guard{})
		}, func(t *testing.T, ctx context.Context, st *scheduler.Store, direct redis.UniversalClient, pfx string) {
			if ids := direct.LRange(ctx, pfx+":hist:{j}:j", 0, -1).Val(); len(ids) != 1 {
				t.Fatalf("history %v, want the run once", ids)
			}
			if n := direct.HLen(ctx, pfx+":running:{j}").Val(); n != 0 {
				t.Fatalf("running index has %d entries", n)
			}
			if _, ok, _ := st.LastSuccess(ctx, scheduler.Named("j")); !ok {
				t.Fatal("no last success")
			}
		}},
		{"takeover", ":hist:{j}:j", func(ctx context.Context, st *scheduler.Store, inst string) error {
			old := &scheduler.Record{RunID: "old", Instance: inst, Lock: inst, Status: jobs.StatusAbandoned}
			ok, err := st.Takeover(ctx, scheduler.Named(inst), now, "dead old", "me new", old, 10, "taken over")
			if err == nil && !ok {
				return fmt.Errorf("takeover refused after a lost reply")
			}
			return err
		}, func(t *testing.T, ctx context.Context, st *scheduler.Store, direct redis.UniversalClient, pfx string) {
			if v := direct.Get(ctx, scheduler.TickKey(st, "j", now)).Val(); v != "me new" {
				t.Fatalf("claim %q", v)
			}
			if ids := direct.LRange(ctx, pfx+":hist:{j}:j", 0, -1).Val(); len(ids) != 1 {
				t.Fatalf("history %v, want the old run once", ids)
			}
		}},
		{"heartbeat", ":replica:", func(ctx context.Context, st *scheduler.Store, inst string) error {
			_, err := st.Beat(ctx, scheduler.Heartbeat{ID: inst}, time.Minute)
			return err
		}, func(t *testing.T, ctx context.Context, st *scheduler.Store, direct redis.UniversalClient, pfx string) {
			if hbs, err := st.Replicas(ctx); err != nil || len(hbs) != 2 {
				t.Fatalf("replicas %v %v", hbs, err)
			}
		}},
		{"trigger request", ":triggers", func(ctx context.Context, st *scheduler.Store, inst string) error {
			return st.RequestTrigger(ctx, scheduler.TriggerRequest{RunID: "t-" + inst, Instance: inst, RequestedAt: now})
		}, func(t *testing.T, ctx context.Context, st *scheduler.Store, direct redis.UniversalClient, pfx string) {
			if n := direct.HLen(ctx, pfx+":triggers").Val(); n != 2 {
				t.Fatalf("%d trigger requests", n)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t)
			p := redistest.NewProxy(t, srv.Addr)
			st := scheduler.NewStore(newRedis(t, p.URL()), prefix(t))
			direct := newRedis(t, srv.URL())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tt.name == "takeover" {
				direct.Set(ctx, scheduler.TickKey(st, "j", now), "dead old", time.Minute)
				direct.Set(ctx, scheduler.TickKey(st, "w", now), "dead old", time.Minute)
			}
			// Once on another instance first, so that the script is loaded:
			// the dropped reply must be that of a command that ran, not a
			// NOSCRIPT that go-redis follows with EVAL.
			if err := tt.run(ctx, st, "w"); err != nil {
				t.Fatal(err)
			}
			p.DropReplies(tt.match, 1)
			if err := tt.run(ctx, st, "j"); err != nil {
				t.Fatal(err)
			}
			if p.Dropped() != 1 {
				t.Fatalf("%d replies dropped, want 1", p.Dropped())
			}
			tt.check(t, ctx, st, direct, prefix(t))
		})
	}
}

// TestClaimLostReply: the reply to a tick's claim-and-lock is lost after
// Redis ran it. The tick still runs, once, with a record, and its lock is
// released (not left to expire, which would skip the next ticks).
func TestClaimLostReply(t *testing.T) {
	srv := redistest.Start(t)
	p := redistest.NewProxy(t, srv.Addr)
	out := outFile(t)
	cfg := config(t, out, jobsYAML(1, "@every 1s", "    lock_ttl: 30s\n", recordCmd))
	p.DropReplies(":tick:{j00}", 1) // the first claim
	r := startReplica(t, p.URL(), cfg, "a", scheduler.WithSplay(0))
	waitFor(t, 10*time.Second, "three runs", func() bool { return len(lines(t, out)) >= 3 })
	r.stop()
	if p.Dropped() != 1 {
		t.Fatalf("%d replies dropped, want 1", p.Dropped())
	}
	recs, err := scheduler.NewStore(newRedis(t, srv.URL()), prefix(t)).History(context.Background(), scheduler.Named("j00"), 100)
	if err != nil {
		t.Fatal(err)
	}
	ran := map[string]int{}
	for _, f := range lines(t, out) {
		ran[f[1]]++
	}
	for _, rec := range recs {
		at := rec.ScheduledAt.Format(time.RFC3339)
		if rec.Status != "succeeded" || ran[at] != 1 {
			t.Errorf("tick %s: record %s, ran %d times\n%s", at, rec.Status, ran[at], r.logs)
		}
	}
	if len(recs) != len(ran) {
		t.Errorf("%d records for %d runs", len(recs), len(ran))
	}
}

// TestWaitTimeoutRecordedOnce: an overlap: wait run that times out is one
// skipped record, and it leaves the running index.
func TestWaitTimeoutRecordedOnce(t *testing.T) {
	url := redistest.SharedURL(t)
	out := outFile(t)
	cfg := config(t, out, jobsYAML(1, "@every 10s", "    lock: busy\n    overlap: wait\n    max_wait: 500ms\n", recordCmd))
	rdb := newRedis(t, url)
	holder := mutex.New(rdb, mutex.WithPrefix(prefix(t)), mutex.WithOwner("test"))
	defer holder.Close()
	m := holder.NewMutex("busy", mutex.WithTTL(time.Minute))
	if err := m.TryLock(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, url, cfg, "a", scheduler.WithSplay(0))
	st := scheduler.NewStore(rdb, prefix(t))
	waitFor(t, 15*time.Second, "a skipped record", func() bool {
		recs, _ := st.History(context.Background(), scheduler.Ref{Instance: "j00", Lock: "busy"}, 10)
		return len(recs) > 0 && recs[0].Status == jobs.StatusSkipped
	})
	time.Sleep(300 * time.Millisecond)
	r.stop()
	ids := rdb.LRange(context.Background(), prefix(t)+":hist:{busy}:j00", 0, -1).Val()
	if len(ids) != 1 {
		t.Fatalf("history %v, want one run", ids)
	}
	if n := rdb.HLen(context.Background(), prefix(t)+":running:{busy}").Val(); n != 0 {
		t.Fatalf("%d entries left in the running index", n)
	}
}

// TestTakeover: with misfire: run_once, a tick whose claimer died before
// starting the process runs on another replica, and both records say so;
// a tick whose process may have started is never run again.
func TestTakeover(t *testing.T) {
	tests := []struct {
		name    string
		oldRec  *scheduler.Record // what the dead claimer left besides its claim
		rerun   bool
		oldSays string
	}{
		{"claimed, no record", nil, true, "never started the process"},
		{"abandoned while waiting", &scheduler.Record{Status: jobs.StatusAbandoned, NeverStarted: true}, true, "run again as run"},
		{"lease lost before the start", &scheduler.Record{Status: jobs.StatusLockLost, NeverStarted: true}, true, "run again as run"},
		{"abandoned during the run", &scheduler.Record{Status: jobs.StatusAbandoned}, false, ""},
		{"lease lost during the run", &scheduler.Record{Status: jobs.StatusLockLost, Start: ptr(time.Now().UTC())}, false, ""},
		{"still running", &scheduler.Record{Status: jobs.StatusRunning, Fence: 5}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := redistest.SharedURL(t)
			out := outFile(t)
			cfg := config(t, out, jobsYAML(1, "@every 10s", "    misfire: run_once\n    starting_deadline: 1m\n", recordCmd))
			for s := time.Now().Second() % 10; s < 4 || s > 6; s = time.Now().Second() % 10 {
				time.Sleep(100 * time.Millisecond)
			}
			tick := time.Now().Truncate(10 * time.Second)
			rdb := newRedis(t, url)
			st := scheduler.NewStore(rdb, prefix(t))
			ctx := context.Background()
			oldID := "20260101T000000Z-dead"
			rdb.Set(ctx, scheduler.TickKey(st, "j00", tick), "dead "+oldID, time.Minute)
			if tt.oldRec != nil {
				rec := *tt.oldRec
				rec.RunID, rec.Instance, rec.Lock, rec.ScheduledAt, rec.Replica = oldID, "j00", "j00", tick.UTC(), "dead"
				if err := st.Push(ctx, &rec, 10, "", scheduler.Guard{}); err != nil {
					t.Fatal(err)
				}
			}
			r := startReplica(t, url, cfg, "a")
			time.Sleep(2 * time.Second)
			r.stop()
			ran := 0
			for _, f := range lines(t, out) {
				if f[1] == tick.UTC().Format(time.RFC3339) {
					ran++
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tt.rerun]; ran != want {
				t.Fatalf("tick ran %d times, want %d\n%s", ran, want, r.logs)
			}
			old, _, _ := st.Record(ctx, scheduler.Named("j00"), oldID)
			if tt.rerun {
				want := jobs.StatusAbandoned
				if tt.oldRec != nil {
					want = tt.oldRec.Status
				}
				if old.Status != want || !strings.Contains(old.Reason, tt.oldSays) || old.Start != nil {
					t.Fatalf("old run's record: %+v", old)
				}
				recs, _ := st.History(ctx, scheduler.Named("j00"), 10)
				if len(recs) == 0 || recs[0].Trigger != "misfire" || !strings.Contains(recs[0].Reason, "takeover") {
					t.Fatalf("new run's record: %+v", recs)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestShutdownKeepsLease: during shutdown the job gets SIGTERM and its
// kill_grace, and its lease is renewed until its process group is gone:
// no other holder can take the lock while it still runs.
func TestShutdownKeepsLease(t *testing.T) {
	url := redistest.SharedURL(t)
	out := outFile(t)
	cfg := config(t, out, jobsYAML(1, "@every 30s",
		"    lock_ttl: 3s\n    kill_grace: 8s\n    misfire: run_once\n    starting_deadline: 1m\n",
		`["sh", "-c", "trap '' TERM; echo started >> OUT; sleep 5; echo done >> OUT"]`))
	r := startReplica(t, url, cfg, "a", scheduler.WithShutdownGrace(100*time.Millisecond))
	waitFor(t, 40*time.Second, "the job to start", func() bool { return len(lines(t, out)) >= 1 })
	lc := mutex.New(newRedis(t, url), mutex.WithPrefix(prefix(t)))
	defer lc.Close()
	before, ok, _ := lc.Inspect(context.Background(), "j00")
	if !ok {
		t.Fatal("lock not held while the job runs")
	}
	r.cancel() // shutdown: the job ignores TERM and runs on
	for len(lines(t, out)) < 2 {
		info, ok, err := lc.Inspect(context.Background(), "j00")
		if len(lines(t, out)) >= 2 {
			break
		}
		if err != nil || !ok || info.Fence != before.Fence {
			t.Fatalf("while the job still ran during shutdown, the lock was held %v (fence %d, was %d)", ok, info.Fence, before.Fence)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.stop()
}

// TestNoStartUnderALostLease: Redis becomes unreachable right after a
// claim, for longer than the lease. When it is back, the run's process is
// not started, and the record says it was not.
func TestNoStartUnderALostLease(t *testing.T) {
	srv := redistest.Start(t)
	p := redistest.NewProxy(t, srv.Addr)
	out := outFile(t)
	cfg := config(t, out, jobsYAML(1, "@every 30s", "    lock_ttl: 3s\n    misfire: run_once\n    starting_deadline: 1m\n",
		`["sh", "-c", "echo \"$JOBD_INSTANCE $JOBD_SCHEDULED_AT $JOBD_RUN_ID\" >> OUT"]`))
	var once sync.Once
	stalled := make(chan struct{})
	obs := onClaim{f: func() { once.Do(func() { p.Stall(); close(stalled) }) }} // right after the first claim
	r := startReplica(t, p.URL(), cfg, "a", scheduler.WithObserver(obs))
	select {
	case <-stalled:
	case <-time.After(40 * time.Second):
		t.Fatal("no claim")
	}
	time.Sleep(4 * time.Second) // the lease (3s, trusted for 2.4s) is gone
	p.Unstall()
	st := scheduler.NewStore(newRedis(t, srv.URL()), prefix(t))
	waitFor(t, 15*time.Second, "a final record", func() bool {
		recs, _ := st.History(context.Background(), scheduler.Named("j00"), 10)
		return len(recs) > 0 && recs[len(recs)-1].End != nil
	})
	r.stop()
	recs, _ := st.History(context.Background(), scheduler.Named("j00"), 10)
	first := recs[len(recs)-1]
	if first.Status != "lock_lost" || first.Start != nil || !strings.Contains(first.Reason, "not started") {
		t.Fatalf("record %+v, want lock_lost, never started", first)
	}
	ran := 0
	for _, f := range lines(t, out) {
		if f[2] == first.RunID {
			t.Fatalf("the process of run %s was started after its lease was lost", f[2])
		}
		if f[1] == first.ScheduledAt.Format(time.RFC3339) {
			ran++ // misfire: run_once takes the never-started tick over
		}
	}
	if ran > 1 {
		t.Fatalf("tick %s ran %d times", first.ScheduledAt, ran)
	}
}

// TestRestartedReplicaAbandonsItsOldRuns: a replica restarted under the
// same id (a new incarnation) abandons the waiting runs its dead
// predecessor left, instead of taking them for its own.
func TestRestartedReplicaAbandonsItsOldRuns(t *testing.T) {
	url := redistest.SharedURL(t)
	out := outFile(t)
	cfg := config(t, out, jobsYAML(1, "@every 1h", "", recordCmd))
	rdb := newRedis(t, url)
	st := scheduler.NewStore(rdb, prefix(t))
	ctx := context.Background()
	rec := &scheduler.Record{RunID: "old-run", Instance: "j00", Replica: "r", Lock: "j00", Status: jobs.StatusWaiting}
	if err := st.Push(ctx, rec, 10, "dead-incarnation", scheduler.Guard{}); err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, url, cfg, "r")
	waitFor(t, 10*time.Second, "the old run abandoned", func() bool {
		got, _, _ := st.Record(ctx, scheduler.Named("j00"), "old-run")
		return got.Status == jobs.StatusAbandoned
	})
	r.stop()
	if n := rdb.HLen(ctx, prefix(t)+":running:{j00}").Val(); n != 0 {
		t.Fatalf("%d entries left in the running index", n)
	}
}

// TestClockOffsetRefusesClaims: a replica whose clock is 64s slow claims
// nothing (its offset is beyond MaxClockOffset, and Redis refuses claims
// outside a tick's window), says so, and the other replica runs every
// tick once.
func TestClockOffsetRefusesClaims(t *testing.T) {
	url := redistest.SharedURL(t)
	out := outFile(t)
	cfg := config(t, out, jobsYAML(2, "@every 1s", "    starting_deadline: 1s\n", recordCmd))
	slow := startReplica(t, url, cfg, "slow", scheduler.WithClock(skewClock(-64*time.Second)))
	good := startReplica(t, url, cfg, "good")
	time.Sleep(4 * time.Second)
	hbs, _ := scheduler.NewStore(newRedis(t, url), prefix(t)).Replicas(context.Background())
	for _, hb := range hbs {
		if hb.ID == "slow" && (hb.ClockOK || hb.ClockOffset > -60*time.Second) {
			t.Errorf("slow replica's heartbeat: clock ok %v, offset %v", hb.ClockOK, hb.ClockOffset)
		}
	}
	slow.stop()
	good.stop()
	seen := map[string]int{}
	for _, f := range lines(t, out) {
		seen[f[0]+" "+f[1]]++
		if f[2] == "slow" {
			t.Errorf("the slow replica ran %s %s", f[0], f[1])
		}
	}
	for k, n := range seen {
		if n > 1 {
			t.Errorf("%s ran %d times", k, n)
		}
	}
	if len(seen) < 4 {
		t.Errorf("only %d runs", len(seen))
	}
	if slow.s.ClockOK() {
		t.Error("the slow replica says its clock is fine")
	}
	if !strings.Contains(slow.logs.String(), "too far from Redis") {
		t.Errorf("no log line about the clock:\n%s", slow.logs)
	}
}

// TestDurabilityWarnings: jobd reads Redis's persistence and eviction
// settings and says which weaken its guarantees.
func TestDurabilityWarnings(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"no persistence", nil, []string{"appendonly is off"}},
		{"fsync every second", []string{"--appendonly", "yes", "--appendfsync", "everysec"}, []string{"appendfsync is everysec"}},
		{"eviction", []string{"--appendonly", "yes", "--appendfsync", "always", "--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"}, []string{"maxmemory-policy is allkeys-lru"}},
		{"durable", []string{"--appendonly", "yes", "--appendfsync", "always"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.StartWith(t, tt.args...)
			w, err := scheduler.NewStore(newRedis(t, srv.URL()), "x").Durability(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(w) != len(tt.want) {
				t.Fatalf("warnings %q, want %d", w, len(tt.want))
			}
			for i, s := range tt.want {
				if !strings.Contains(w[i], s) {
					t.Errorf("warning %q, want %q", w[i], s)
				}
			}
		})
	}
}

// TestLateCopiesOfRecordWrites: a copy of a record write that reaches
// Redis after later writes (it was stuck on a connection the client had
// given up) does not turn a finished run back into a running one.
func TestLateCopiesOfRecordWrites(t *testing.T) {
	rdb := newRedis(t, redistest.SharedURL(t))
	pfx := prefix(t)
	st := scheduler.NewStore(rdb, pfx)
	ctx := context.Background()
	now := time.Now().UTC()
	tests := []struct {
		name  string
		first *scheduler.Record // pushed first
		late  func(rec *scheduler.Record) error
	}{
		{"push", &scheduler.Record{RunID: "a", Instance: "j", Lock: "j", Status: jobs.StatusRunning, Start: &now}, func(rec *scheduler.Record) error {
			return st.Push(ctx, rec, 10, "inc", scheduler.Guard{})
		}},
		{"running update", &scheduler.Record{RunID: "b", Instance: "j", Lock: "j", Status: jobs.StatusWaiting}, func(rec *scheduler.Record) error {
			if err := st.Update(ctx, rec, 10, "inc", scheduler.Guard{}); !errors.Is(err, scheduler.ErrClaimLost) {
				return fmt.Errorf("a running update of a finished run: %v, want ErrClaimLost (must not start)", err)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := st.Push(ctx, tt.first, 10, "inc", scheduler.Guard{}); err != nil {
				t.Fatal(err)
			}
			final := *tt.first
			final.Status, final.End = "succeeded", &now
			if err := st.Update(ctx, &final, 10, "inc", scheduler.Guard{}); err != nil {
				t.Fatal(err)
			}
			late := *tt.first
			late.Status = jobs.StatusRunning
			if err := tt.late(&late); err != nil {
				t.Fatal(err)
			}
			got, _, _ := st.Record(ctx, scheduler.Named("j"), tt.first.RunID)
			if got.Status != "succeeded" {
				t.Fatalf("record %s after a late copy, want succeeded", got.Status)
			}
			if rdb.HExists(ctx, pfx+":running:{j}", tt.first.RunID).Val() {
				t.Fatal("the late copy put the run back into the running index")
			}
		})
	}
}

// TestTriggerRunsOnceWhenItsRemovalFails: the replica that ran a manual
// trigger could not remove the request (its HDEL failed, or the replica
// restarted under the same id before it), so the request is seen again on
// later passes. It must not run again.
func TestTriggerRunsOnceWhenItsRemovalFails(t *testing.T) {
	url := redistest.SharedURL(t)
	out := outFile(t)
	cfg := config(t, out, jobsYAML(1, "0 0 1 1 *", "", recordCmd))
	r := startReplica(t, url, cfg, "a")
	st := scheduler.NewStore(newRedis(t, url), prefix(t))
	req := scheduler.TriggerRequest{RunID: scheduler.NewRunID(time.Now()), Instance: "j00", RequestedAt: time.Now().UTC()}
	if err := st.RequestTrigger(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the run", func() bool { return len(lines(t, out)) >= 1 })
	time.Sleep(500 * time.Millisecond)
	// The request is back, as if its removal had failed.
	if err := st.RequestTrigger(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // several passes over the request
	r.stop()
	if n := len(lines(t, out)); n != 1 {
		t.Fatalf("the trigger ran %d times\n%s", n, r.logs)
	}
	recs, _ := st.History(context.Background(), scheduler.Named("j00"), 10)
	if len(recs) != 1 || recs[0].Status != "succeeded" {
		t.Fatalf("records %+v", recs)
	}
}

// onClaim is an observer that calls f after every claim round trip.
type onClaim struct {
	scheduler.NopObserver
	f func()
}

func (o onClaim) ClaimLatency(time.Duration) { o.f() }

// TestAbandonedWaiterDoesNotStart: a run that waited for its lock was
// marked abandoned while its replica was away (paused, cut off). When that
// replica comes back and gets the lock, the run must not start: its tick
// may be taken over and run elsewhere.
func TestAbandonedWaiterDoesNotStart(t *testing.T) {
	rdb := newRedis(t, redistest.SharedURL(t))
	st := scheduler.NewStore(rdb, prefix(t))
	ctx := context.Background()
	claim := scheduler.TickKey(st, "j", time.Unix(1000, 0))
	rdb.Set(ctx, claim, "a run-w", time.Minute)
	g := scheduler.Guard{Key: claim, Value: "a run-w"}
	rec := &scheduler.Record{RunID: "run-w", Instance: "j", Lock: "j", Replica: "a", Status: jobs.StatusWaiting}
	if err := st.Push(ctx, rec, 10, "inc", g); err != nil {
		t.Fatal(err)
	}
	abandoned := *rec
	abandoned.Status, abandoned.NeverStarted = jobs.StatusAbandoned, true
	if err := st.Update(ctx, &abandoned, 10, "inc", scheduler.Guard{}); err != nil {
		t.Fatal(err)
	}
	running := *rec
	running.Status = jobs.StatusRunning
	if err := st.Update(ctx, &running, 10, "inc", g); !errors.Is(err, scheduler.ErrClaimLost) {
		t.Fatalf("running update of an abandoned waiter: %v, want ErrClaimLost", err)
	}
	if got, _, _ := st.Record(ctx, scheduler.Named("j"), "run-w"); got.Status != jobs.StatusAbandoned || !got.NeverStarted {
		t.Fatalf("record %+v", got)
	}
}

// TestDurabilityFollowsRedis: a running replica notices within a heartbeat
// that Redis lost its persistence (restarted or reconfigured without AOF),
// even when no Redis error told it that Redis went away.
func TestDurabilityFollowsRedis(t *testing.T) {
	srv := redistest.StartWith(t, "--appendonly", "yes", "--appendfsync", "always")
	cfg := config(t, outFile(t), jobsYAML(1, "@every 1h", "", recordCmd))
	r := startReplica(t, srv.URL(), cfg, "a")
	waitFor(t, 5*time.Second, "a first heartbeat", func() bool { return r.s.ClockOK() })
	if w := r.s.Warnings(); len(w) != 0 {
		t.Fatalf("warnings %q on a durable Redis", w)
	}
	if err := newRedis(t, srv.URL()).ConfigSet(context.Background(), "appendonly", "no").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the warning", func() bool {
		w := r.s.Warnings()
		return len(w) == 1 && strings.Contains(w[0], "appendonly is off")
	})
}
