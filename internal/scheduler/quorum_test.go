package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

// quorum is a Store on three independent redis-servers, and a client of
// each to look at what each node holds.
type quorum struct {
	servers []*redistest.Server
	clients []redis.UniversalClient
	store   *scheduler.Store
	down    map[int]bool
}

// startQuorum starts three independent servers; persistent ones (AOF,
// fsync always) keep their data across Stop and Start, as a crashed
// master of a real quorum does.
func startQuorum(t *testing.T, persistent bool) *quorum {
	t.Helper()
	var args []string
	if persistent {
		args = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	q := &quorum{down: map[int]bool{}}
	for range 3 {
		srv := redistest.StartWith(t, args...)
		// jobd's settings of a quorum client (redisconn's
		// quorumDefaults): one dial attempt, so that a node that is
		// down answers at once, and no retry of a command, which could
		// land after the test restarted a node (CI saw an update made
		// while C was down reach C after its restart).
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, DialTimeout: time.Second,
			DialerRetries: 1, MaxRetries: -1})
		t.Cleanup(func() { rdb.Close() })
		q.servers, q.clients = append(q.servers, srv), append(q.clients, rdb)
	}
	q.store = scheduler.NewQuorumStore(q.clients, prefix(t))
	return q
}

// start starts the given servers again, those that were stopped.
func (q *quorum) start(t *testing.T, nodes ...int) {
	t.Helper()
	for _, i := range nodes {
		if !q.down[i] {
			continue
		}
		if err := q.servers[i].Start(); err != nil {
			t.Fatal(err)
		}
		q.down[i] = false
		// The client's pool refuses to dial for a while after failed
		// dials: wait until it answers again.
		waitFor(t, 10*time.Second, "node back", func() bool { return q.clients[i].Ping(context.Background()).Err() == nil })
	}
}

// stop stops the given servers (SIGKILL, as a crash).
func (q *quorum) stop(nodes ...int) {
	for _, i := range nodes {
		q.servers[i].Stop()
		q.down[i] = true
	}
}

func opCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func quorumRec(id, instance string, at time.Time, status jobs.Status) *scheduler.Record {
	return &scheduler.Record{RunID: id, Instance: instance, Lock: instance, Job: instance, ScheduledAt: at.UTC(),
		Trigger: "schedule", Replica: "r1", Status: status}
}

// TestQuorumNeedsAMajority: every write and read of a Store on three
// independent masters succeeds with one of them down, and fails with
// ErrNoQuorum with two down.
func TestQuorumNeedsAMajority(t *testing.T) {
	q := startQuorum(t, false)
	ref := scheduler.Named("inst")
	n := 0
	next := func() string { n++; return fmt.Sprintf("run-%03d", n) }
	cases := []struct {
		name string
		op   func(ctx context.Context, s *scheduler.Store) error
	}{
		{"push", func(ctx context.Context, s *scheduler.Store) error {
			return s.Push(ctx, quorumRec(next(), "inst", time.Now(), jobs.StatusRunning), 10, "inc", scheduler.Guard{})
		}},
		{"update", func(ctx context.Context, s *scheduler.Store) error {
			end := time.Now()
			rec := quorumRec(next(), "inst", time.Now(), jobs.StatusSucceeded)
			rec.End = &end
			return s.Update(ctx, rec, 10, "inc", scheduler.Guard{})
		}},
		{"beat", func(ctx context.Context, s *scheduler.Store) error {
			_, err := s.Beat(ctx, scheduler.Heartbeat{ID: next(), Incarnation: "inc", BeatAt: time.Now()}, time.Minute)
			return err
		}},
		{"remove beat", func(ctx context.Context, s *scheduler.Store) error { return s.RemoveBeat(ctx, next(), "inc") }},
		{"request trigger", func(ctx context.Context, s *scheduler.Store) error {
			return s.RequestTrigger(ctx, scheduler.TriggerRequest{RunID: next(), Instance: "inst", RequestedAt: time.Now()})
		}},
		{"cancel trigger", func(ctx context.Context, s *scheduler.Store) error { return s.CancelTrigger(ctx, next()) }},
		{"history", func(ctx context.Context, s *scheduler.Store) error { _, err := s.History(ctx, ref, 10); return err }},
		{"record", func(ctx context.Context, s *scheduler.Store) error {
			_, _, err := s.Record(ctx, ref, "run-001")
			return err
		}},
		{"last success", func(ctx context.Context, s *scheduler.Store) error { _, _, err := s.LastSuccess(ctx, ref); return err }},
		{"overview", func(ctx context.Context, s *scheduler.Store) error {
			_, _, err := s.Overview(ctx, []scheduler.Ref{ref}, map[string]time.Time{"inst": time.Now()})
			return err
		}},
		{"replicas", func(ctx context.Context, s *scheduler.Store) error { _, err := s.Replicas(ctx); return err }},
		{"running", func(ctx context.Context, s *scheduler.Store) error {
			_, err := scheduler.RunningIDs(ctx, s, []string{"inst"})
			return err
		}},
		{"trigger pending", func(ctx context.Context, s *scheduler.Store) error {
			_, err := s.TriggerPending(ctx, next())
			return err
		}},
		{"pending triggers", func(ctx context.Context, s *scheduler.Store) error {
			_, err := scheduler.PendingTriggers(ctx, s)
			return err
		}},
		{"time", func(ctx context.Context, s *scheduler.Store) error { _, err := s.Time(ctx); return err }},
		{"durability", func(ctx context.Context, s *scheduler.Store) error { _, err := s.Durability(ctx); return err }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Cleanup(func() { q.start(t, 0, 1) })
			if err := c.op(opCtx(t), q.store); err != nil {
				t.Fatalf("all nodes up: %v", err)
			}
			q.stop(0)
			if err := c.op(opCtx(t), q.store); err != nil {
				t.Fatalf("one node down: %v", err)
			}
			q.stop(1)
			if err := c.op(opCtx(t), q.store); !errors.Is(err, scheduler.ErrNoQuorum) {
				t.Fatalf("two nodes down: %v, want ErrNoQuorum", err)
			}
		})
	}
}

// TestQuorumRunEndsWhileANodeIsDown: a run recorded on all three nodes
// ends while node C is down; C comes back with its stale running entry
// and A goes down. The reads show the run ended, the running index does
// not list it, and C's stale entry is repaired.
func TestQuorumRunEndsWhileANodeIsDown(t *testing.T) {
	q := startQuorum(t, true)
	ctx := opCtx(t)
	const a, c = 0, 2
	ref := scheduler.Named("inst")
	at := time.Now().Add(-time.Minute).Truncate(time.Second)
	run1 := quorumRec("run-1", "inst", at, jobs.StatusRunning)
	if err := q.store.Push(ctx, run1, 10, "inc", scheduler.Guard{}); err != nil {
		t.Fatal(err)
	}
	// Push returns once a majority wrote the record; C's write may still
	// be on its way (CI once stopped C before it landed).
	waitFor(t, 10*time.Second, "run-1 written on C", func() bool {
		held, err := q.clients[c].HExists(ctx, scheduler.RunningKey(q.store, "inst"), "run-1").Result()
		return err == nil && held
	})
	q.stop(c)
	end := time.Now().UTC()
	run1.Status, run1.End = jobs.StatusSucceeded, &end
	if err := q.store.Update(ctx, run1, 10, "inc", scheduler.Guard{}); err != nil {
		t.Fatalf("update with C down: %v", err)
	}
	run2 := quorumRec("run-2", "inst", at.Add(30*time.Second), jobs.StatusRunning)
	if err := q.store.Push(ctx, run2, 10, "inc", scheduler.Guard{}); err != nil {
		t.Fatalf("push with C down: %v", err)
	}
	q.start(t, c)
	q.stop(a)
	if held, err := q.clients[c].HExists(ctx, scheduler.RunningKey(q.store, "inst"), "run-1").Result(); err != nil || !held {
		t.Fatalf("C should still list run-1 as running after its restart: %v %v", held, err)
	}

	t.Run("history", func(t *testing.T) {
		h, err := q.store.History(ctx, ref, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range h {
			got = append(got, r.RunID+"="+string(r.Status))
		}
		if want := []string{"run-2=running", "run-1=succeeded"}; !slices.Equal(got, want) {
			t.Fatalf("history %v, want %v", got, want)
		}
		if h, err := q.store.History(ctx, ref, 1); err != nil || len(h) != 1 || h[0].RunID != "run-2" {
			t.Fatalf("history limited to 1: %v %v", h, err)
		}
	})
	t.Run("record", func(t *testing.T) {
		r, found, err := q.store.Record(ctx, ref, "run-1")
		if err != nil || !found || r.Status != jobs.StatusSucceeded || r.End == nil {
			t.Fatalf("record %+v found %v err %v", r, found, err)
		}
	})
	t.Run("last success", func(t *testing.T) {
		r, found, err := q.store.LastSuccess(ctx, ref)
		if err != nil || !found || r.RunID != "run-1" {
			t.Fatalf("last success %+v found %v err %v", r, found, err)
		}
	})
	t.Run("overview", func(t *testing.T) {
		last, _, err := q.store.Overview(ctx, []scheduler.Ref{ref}, nil)
		if err != nil || last["inst"].RunID != "run-2" {
			t.Fatalf("overview last %+v err %v", last, err)
		}
	})
	t.Run("running", func(t *testing.T) {
		ids, err := scheduler.RunningIDs(ctx, q.store, []string{"inst"})
		if err != nil || !slices.Equal(ids, []string{"run-2"}) {
			t.Fatalf("running %v err %v, want [run-2]", ids, err)
		}
		held, err := q.clients[c].HExists(ctx, scheduler.RunningKey(q.store, "inst"), "run-1").Result()
		if err != nil || held {
			t.Fatalf("C's stale running entry of run-1 was not repaired: %v %v", held, err)
		}
	})
}

// TestQuorumGuard: a guarded write is made when a majority of nodes hold
// the claim's value, refused (ErrClaimLost) when a majority do not, and
// ErrNoQuorum when neither has a majority.
func TestQuorumGuard(t *testing.T) {
	q := startQuorum(t, false)
	at := time.Now().Truncate(time.Second)
	cases := []struct {
		name    string
		holders []int // nodes whose claim holds the run's value
		others  []int // nodes whose claim holds another replica's
		down    []int
		want    error
	}{
		{"held on 3 of 3", []int{0, 1, 2}, nil, nil, nil},
		{"held on 2 of 3", []int{0, 1}, nil, nil, nil},
		{"held on 2 of 3, taken on 1", []int{1, 2}, []int{0}, nil, nil},
		{"held on 1 of 3", []int{2}, nil, nil, scheduler.ErrClaimLost},
		{"taken on 2 of 3", []int{0}, []int{1, 2}, nil, scheduler.ErrClaimLost},
		{"held on 1, missing on 1, 1 down", []int{0}, nil, []int{2}, scheduler.ErrNoQuorum},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := opCtx(t)
			inst := fmt.Sprintf("inst%d", i)
			key := scheduler.TickKey(q.store, inst, at)
			for _, n := range c.holders {
				q.clients[n].Set(ctx, key, "mine", time.Minute)
			}
			for _, n := range c.others {
				q.clients[n].Set(ctx, key, "theirs", time.Minute)
			}
			q.stop(c.down...)
			t.Cleanup(func() { q.start(t, c.down...) })
			g := scheduler.Guard{Key: key, Value: "mine"}
			rec := quorumRec("run-"+inst, inst, at, jobs.StatusRunning)
			err := q.store.Push(ctx, rec, 10, "inc", g)
			if !errors.Is(err, c.want) || (c.want == nil && err != nil) {
				t.Fatalf("push: %v, want %v", err, c.want)
			}
			rec.Status = jobs.StatusWaiting
			err = q.store.Update(ctx, rec, 10, "inc", g)
			if c.want == nil {
				// The push made the record running where the claim
				// holds: a running update is a retry there (1).
				if err != nil {
					t.Fatalf("update: %v", err)
				}
			} else if !errors.Is(err, c.want) {
				t.Fatalf("update: %v, want %v", err, c.want)
			}
		})
	}
}

// TestQuorumHeartbeats: a heartbeat written while one node is down is
// listed after that node is back (empty) and another is down.
func TestQuorumHeartbeats(t *testing.T) {
	q := startQuorum(t, false)
	ctx := opCtx(t)
	q.stop(2)
	hb := scheduler.Heartbeat{ID: "r1", Incarnation: "inc1", BeatAt: time.Now().UTC(), ConfigHash: "h"}
	if prev, err := q.store.Beat(ctx, hb, time.Minute); err != nil || prev != nil {
		t.Fatalf("beat with C down: prev %v err %v", prev, err)
	}
	q.start(t, 2)
	q.stop(0)
	beats, err := q.store.Replicas(ctx)
	if err != nil || len(beats) != 1 || beats[0].ID != "r1" || beats[0].Incarnation != "inc1" {
		t.Fatalf("replicas %+v err %v, want r1", beats, err)
	}
	// Another process under the same id: the replaced heartbeat of the
	// other incarnation is returned.
	other := hb
	other.Incarnation, other.BeatAt = "inc2", time.Now().UTC()
	prev, err := q.store.Beat(ctx, other, time.Minute)
	if err != nil || prev == nil || prev.Incarnation != "inc1" {
		t.Fatalf("beat of another incarnation: prev %+v err %v", prev, err)
	}
	q.start(t, 0)
	beats, err = q.store.Replicas(ctx)
	if err != nil || len(beats) != 1 || beats[0].Incarnation != "inc2" {
		t.Fatalf("replicas %+v err %v, want the newest heartbeat of r1 (inc2)", beats, err)
	}
	// A node keeps r1 in its set without its heartbeat: not dead while
	// another node has it.
	if err := q.store.RemoveBeat(ctx, "r1", "inc1"); err != nil {
		t.Fatal(err)
	}
	if beats, err := q.store.Replicas(ctx); err != nil || len(beats) != 1 {
		t.Fatalf("RemoveBeat of another incarnation removed the heartbeat: %+v %v", beats, err)
	}
	if err := q.store.RemoveBeat(ctx, "r1", "inc2"); err != nil {
		t.Fatal(err)
	}
	if beats, err := q.store.Replicas(ctx); err != nil || len(beats) != 0 {
		t.Fatalf("after RemoveBeat: %+v %v", beats, err)
	}
}

// TestQuorumTrigger: a trigger request filed while one node is down
// reaches the subscriber (merged from every node) and is pending until it
// is removed from every node.
func TestQuorumTrigger(t *testing.T) {
	for _, down := range []struct {
		name            string
		beforeSubscribe bool
	}{{"node down after subscribing", false}, {"node down before subscribing", true}} {
		t.Run(down.name, func(t *testing.T) {
			q := startQuorum(t, false)
			ctx := opCtx(t)
			if down.beforeSubscribe {
				q.stop(0)
			}
			sctx, cancel := context.WithCancel(ctx)
			msgs, stop := scheduler.SubscribeTriggers(sctx, q.store)
			defer func() { cancel(); stop() }()
			q.stop(0)
			req := scheduler.TriggerRequest{RunID: scheduler.NewRunID(time.Now()), Instance: "inst", RequestedAt: time.Now().UTC()}
			deadline := time.After(5 * time.Second)
			for got := false; !got; {
				// Filed again until it arrives: the subscriptions are
				// made asynchronously.
				if err := q.store.RequestTrigger(ctx, req); err != nil {
					t.Fatalf("request with a node down: %v", err)
				}
				select {
				case m := <-msgs:
					got = m.Payload == req.RunID
					if !got {
						t.Fatalf("message %q, want %q", m.Payload, req.RunID)
					}
				case <-time.After(200 * time.Millisecond):
				case <-deadline:
					t.Fatal("the request never reached the subscriber")
				}
			}
			pending, err := scheduler.PendingTriggers(ctx, q.store)
			if err != nil || len(pending) != 1 || pending[0].RunID != req.RunID {
				t.Fatalf("pending %+v err %v", pending, err)
			}
			if ok, err := q.store.TriggerPending(ctx, req.RunID); err != nil || !ok {
				t.Fatalf("TriggerPending %v %v", ok, err)
			}
			if err := q.store.CancelTrigger(ctx, req.RunID); err != nil {
				t.Fatal(err)
			}
			if ok, err := q.store.TriggerPending(ctx, req.RunID); err != nil || ok {
				t.Fatalf("TriggerPending after the cancel %v %v", ok, err)
			}
		})
	}
}

// TestQuorumDurability: every node's warnings name it, and a node that
// does not answer is a warning.
func TestQuorumDurability(t *testing.T) {
	q := startQuorum(t, false)
	ctx := opCtx(t)
	q.stop(1)
	w, err := q.store.Durability(ctx)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(w, "\n")
	for i, srv := range q.servers {
		want := srv.Addr + ": appendonly is off"
		if i == 1 {
			want = srv.Addr + ": does not answer"
		}
		if !strings.Contains(joined, want) {
			t.Fatalf("warnings %q lack %q", w, want)
		}
	}
}

// TestQuorumPausedNode: a master that is paused (SIGSTOP: connections
// open, nothing answers) costs an operation on the quorum about a node's
// timeout, not go-redis's read timeout, and the other two make it.
func TestQuorumPausedNode(t *testing.T) {
	q := startQuorum(t, false)
	ctx := opCtx(t)
	q.servers[2].Pause()
	defer q.servers[2].Resume()
	r := scheduler.Ref{Instance: "p", Lock: "p"}
	rec := &scheduler.Record{RunID: "r1", Instance: "p", Lock: "p", Status: jobs.StatusSucceeded, ScheduledAt: time.Now().UTC()}
	start := time.Now()
	if err := q.store.Push(ctx, rec, 10, "inc", scheduler.Guard{}); err != nil {
		t.Fatalf("push with a paused node: %v", err)
	}
	if _, ok, err := q.store.Record(ctx, r, "r1"); err != nil || !ok {
		t.Fatalf("record with a paused node: %v %v", ok, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("two operations with a paused node took %v", d)
	}
}
