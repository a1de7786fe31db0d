package scheduler

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/jobd/jobd/internal/jobs"
)

// runner owns every run of this replica: one goroutine per won claim,
// which the overlap policy turns into a run, a wait or a skip. Shutdown
// waits for the runs for the grace, then cancels them (cause errShutdown),
// and stops retrying record writes to an unreachable Redis shortly after.
type runner struct {
	*core

	mu      sync.Mutex
	active  map[string]run // run id -> the runs that count as running here
	stopped bool           // shutdown cancelled the runs: new ones start cancelled
	runs    sync.WaitGroup

	// recordsDone is closed shortly after shutdown: record writes to an
	// unreachable Redis stop being retried.
	recordsDone     chan struct{}
	recordsDoneOnce sync.Once
}

// run is one tracked run: its instance, and how shutdown cancels it.
type run struct {
	in     *jobs.Instance
	cancel context.CancelCauseFunc
}

func newRunner(c *core) *runner {
	return &runner{core: c, active: map[string]run{}, recordsDone: make(chan struct{})}
}

// dispatch runs a won claim on its own goroutine, through its instance's
// overlap policy. The goroutine survives a panic (recorded as a failed
// run when it happens in execute, logged otherwise), and shutdown waits
// for it.
func (r *runner) dispatch(c *Claim) {
	fn := r.policy(c.in)(r.execute)
	r.runs.Add(1)
	go func() {
		defer r.runs.Done()
		defer r.recoverPanic("run " + c.rec.RunID)
		fn(context.Background(), c)
	}()
}

// track counts the run as running on this replica (heartbeat, status,
// shutdown) until untrack, and returns its context, which shutdown
// cancels (at once when it already cancelled the runs).
func (r *runner) track(ctx context.Context, c *Claim) context.Context {
	ctx, cancel := context.WithCancelCause(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active[c.rec.RunID] = run{c.in, cancel}
	if r.stopped {
		cancel(errShutdown)
	}
	return ctx
}

func (r *runner) untrack(id string) {
	r.mu.Lock()
	if a, ok := r.active[id]; ok {
		a.cancel(nil)
		delete(r.active, id)
	}
	r.mu.Unlock()
}

// running lists the instances this replica runs now.
func (r *runner) running() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.active))
	for _, a := range r.active {
		out = append(out, a.in.Name)
	}
	sort.Strings(out)
	return out
}

func (r *runner) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.active)
}

func (r *runner) isActive(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.active[id]
	return ok
}

// cancelAll terminates every run (TERM, then KILL after its kill_grace).
func (r *runner) cancelAll(cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	for _, a := range r.active {
		a.cancel(cause)
	}
}

// shutdown waits for the runs for grace (or until terminate is closed),
// then terminates the rest and waits until they are recorded and their
// locks released. Nothing may claim any more when it is called.
func (r *runner) shutdown(grace time.Duration, terminate <-chan struct{}) {
	defer r.stopRecordRetries()
	done := make(chan struct{})
	go func() { r.runs.Wait(); close(done) }()
	t := time.NewTimer(grace)
	select {
	case <-done:
	case <-t.C:
		r.log.Warn("shutdown grace over; terminating running jobs", "running", r.running())
	case <-terminate:
		r.log.Warn("second signal: terminating running jobs now", "running", r.running())
	}
	t.Stop()
	r.cancelAll(errShutdown)
	giveUp := time.AfterFunc(recordGrace, r.stopRecordRetries) // last records of an unreachable Redis
	defer giveUp.Stop()
	<-done
}

func (r *runner) stopRecordRetries() { r.recordsDoneOnce.Do(func() { close(r.recordsDone) }) }

// persist retries a record write until it succeeds, until it fails for
// good (ErrClaimLost: the tick is no longer ours), or until records may no
// longer be retried (shortly after shutdown). A run's outcome must reach
// Redis once Redis is back; every write it retries is safe to repeat.
func (r *runner) persist(what string, fn func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
		err := fn(ctx)
		cancel()
		if err == nil || errors.Is(err, ErrClaimLost) {
			r.redisOK()
			return err
		}
		r.redisError(what, err)
		t := time.NewTimer(backoff)
		select {
		case <-r.recordsDone:
			t.Stop()
			r.log.Error("giving up on a record: Redis unreachable at shutdown", "what", what, "err", err)
			return err
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// push writes the claim's first record, only while the claim is still
// this run's (g is its guard).
func (r *runner) push(c *Claim, g Guard) func(context.Context) error {
	return func(ctx context.Context) error { return r.store.Push(ctx, c.rec, c.in.History, r.incarnation, g) }
}

// update rewrites the claim's record; with a non-zero guard only while the
// claim is still this run's.
func (r *runner) update(c *Claim, g Guard) func(context.Context) error {
	return func(ctx context.Context) error { return r.store.Update(ctx, c.rec, c.in.History, r.incarnation, g) }
}
