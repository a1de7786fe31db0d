package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobd/jobd/internal/jobs"
)

// Defaults of the options, documented where they are defined.
const (
	// DefaultSplay bounds how long a replica may delay its claims after a
	// tick; each instance gets a random slot in it, pushed later by the
	// replica's load, so that replicas share the work.
	DefaultSplay = 200 * time.Millisecond
	// MaxSplay bounds WithSplay.
	MaxSplay = 2 * time.Second
	// DefaultShutdownGrace is how long a stopping daemon lets runs finish.
	DefaultShutdownGrace = 30 * time.Second
	// DefaultHeartbeat is how often a replica refreshes its heartbeat; the
	// heartbeat expires after three of these.
	DefaultHeartbeat = 5 * time.Second
	// DefaultMaintenance is how often a replica looks for abandoned runs
	// and missed ticks (misfire: run_once).
	DefaultMaintenance = 5 * time.Second
	// skewWarnEvery is how often a clock offset above skewWarn (but within
	// MaxClockOffset) is logged; it is measured at every heartbeat.
	skewWarnEvery = time.Minute
	// skewWarn is the clock skew that earns a warning.
	skewWarn = time.Second
	// redisTimeout bounds one Redis operation of the scheduler's own.
	redisTimeout = 5 * time.Second
	// recordGrace is how long, after the runs ended at shutdown, the last
	// records may still be retried against an unreachable Redis.
	recordGrace = 10 * time.Second
	// MaxClockOffset is the largest offset between a replica's clock and
	// Redis's at which it still claims ticks. Every claim lives at least
	// two periods plus starting_deadline plus a minute, and a new claim is
	// refused by Redis outside [tick-MaxClockOffset, tick+starting_deadline+
	// MaxClockOffset], so any two replicas within this bound see each
	// other's claims: a tick never runs twice whatever the clocks say.
	MaxClockOffset = 30 * time.Second
	// claimSettleMax bounds how long a claim whose reply was lost is asked
	// again (it is also bounded by the tick's starting_deadline).
	claimSettleMax = 30 * time.Second
)

// errShutdown is the cause that stops runs when the daemon stops.
var errShutdown = errors.New("jobd is shutting down")

// Scheduler is one replica.
type Scheduler struct {
	store   *Store
	locker  Locker
	log     *slog.Logger
	clock   Clock
	replica string
	version string
	host    string
	pid     int
	started time.Time

	splay, grace, beatEvery, maintEvery time.Duration

	cfg           atomic.Pointer[jobs.Config]
	reloaded      chan struct{}
	terminateNow  chan struct{}
	terminateOnce sync.Once
	// recordsDone is closed shortly after shutdown: record writes to an
	// unreachable Redis stop being retried.
	recordsDone     chan struct{}
	recordsDoneOnce sync.Once

	mu       sync.Mutex
	active   map[string]*jobs.Instance // run id -> instance, for runs of this replica
	runs     sync.WaitGroup            // run goroutines
	claiming sync.WaitGroup            // tick goroutines (claims in progress)

	skew      atomic.Int64 // local minus Redis clock, ns
	clockBad  atomic.Bool  // |skew| > MaxClockOffset: no claims
	mismatch  atomic.Bool  // a live replica has another config hash
	redisDown atomic.Bool
	limiter   limiter
	obs       Observer
	// incarnation is random per process, so that a replica restarted
	// under the same id is told apart from its dead predecessor.
	incarnation string
	warnings    atomic.Pointer[[]string] // Redis settings that weaken the guarantees
	clockKnown  atomic.Bool              // the clock was measured against Redis at least once
}

// Option configures a Scheduler.
type Option func(*Scheduler)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Scheduler) { s.log = l } }

// WithClock replaces the system clock (tests skew it).
func WithClock(c Clock) Option { return func(s *Scheduler) { s.clock = c } }

// WithReplicaID sets the replica id (default "HOSTNAME-PID").
func WithReplicaID(id string) Option { return func(s *Scheduler) { s.replica = id } }

// WithVersion sets the version shown in the heartbeat (default "dev").
func WithVersion(v string) Option { return func(s *Scheduler) { s.version = v } }

// WithSplay sets the claim splay (default DefaultSplay, at most MaxSplay).
func WithSplay(d time.Duration) Option {
	return func(s *Scheduler) { s.splay = min(max(d, 0), MaxSplay) }
}

// WithShutdownGrace sets how long runs may finish on shutdown
// (default DefaultShutdownGrace).
func WithShutdownGrace(d time.Duration) Option { return func(s *Scheduler) { s.grace = d } }

// WithIntervals sets the heartbeat and maintenance intervals (defaults
// DefaultHeartbeat and DefaultMaintenance); tests shorten them.
func WithIntervals(heartbeat, maintenance time.Duration) Option {
	return func(s *Scheduler) { s.beatEvery, s.maintEvery = heartbeat, maintenance }
}

// WithObserver sets the observer (default NopObserver).
func WithObserver(o Observer) Option { return func(s *Scheduler) { s.obs = o } }

// New returns a replica running cfg.
func New(cfg *jobs.Config, store *Store, locker Locker, opts ...Option) *Scheduler {
	host, _ := os.Hostname()
	s := &Scheduler{
		store: store, locker: locker, log: slog.Default(), clock: systemClock{},
		version: "dev", host: host, pid: os.Getpid(),
		splay: DefaultSplay, grace: DefaultShutdownGrace, obs: NopObserver{},
		beatEvery: DefaultHeartbeat, maintEvery: DefaultMaintenance,
		reloaded: make(chan struct{}, 1), terminateNow: make(chan struct{}), recordsDone: make(chan struct{}),
		active: map[string]*jobs.Instance{}, incarnation: randomHex(8),
	}
	for _, o := range opts {
		o(s)
	}
	if s.replica == "" {
		s.replica = fmt.Sprintf("%s-%d", host, s.pid)
	}
	s.log = s.log.With("replica", s.replica)
	s.cfg.Store(cfg)
	return s
}

// Config is the configuration in force.
func (s *Scheduler) Config() *jobs.Config { return s.cfg.Load() }

// Reload switches to cfg. Running jobs are unaffected; a removed job
// finishes its current run.
func (s *Scheduler) Reload(cfg *jobs.Config) {
	s.cfg.Store(cfg)
	select {
	case s.reloaded <- struct{}{}:
	default:
	}
}

func (s *Scheduler) stopRecordRetries() { s.recordsDoneOnce.Do(func() { close(s.recordsDone) }) }

// TerminateRuns cuts the shutdown grace: running jobs are terminated now
// (a second signal).
func (s *Scheduler) TerminateRuns() { s.terminateOnce.Do(func() { close(s.terminateNow) }) }

// ClockSkew is the local clock minus Redis's, as last measured.
func (s *Scheduler) ClockSkew() time.Duration { return time.Duration(s.skew.Load()) }

// ConfigMismatch reports whether a live replica runs another config.
func (s *Scheduler) ConfigMismatch() bool { return s.mismatch.Load() }

// ClockOK reports whether the clock was measured against Redis and is
// close enough to Redis's to claim ticks (within MaxClockOffset); while it
// is not, this replica claims nothing it would need the clock for, and
// should not be reported ready.
func (s *Scheduler) ClockOK() bool { return s.clockKnown.Load() && !s.clockBad.Load() }

// Warnings lists the Redis settings, as last read, that weaken jobd's
// guarantees (persistence off, fsync not always, eviction).
func (s *Scheduler) Warnings() []string {
	if w := s.warnings.Load(); w != nil {
		return *w
	}
	return nil
}

// Incarnation is this process's random id, carried in its heartbeat and
// in the running index.
func (s *Scheduler) Incarnation() string { return s.incarnation }

// Running returns the instances this replica runs now.
func (s *Scheduler) Running() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.active))
	for _, in := range s.active {
		out = append(out, in.Name)
	}
	sort.Strings(out)
	return out
}

// Run runs the replica (once) until ctx ends, then shuts down in this
// order: stop claiming (ticks, triggers, misfires) and heartbeats; let runs
// finish for the shutdown grace (or until TerminateRuns); then
// terminate the rest (TERM, then KILL after their kill_grace), record them
// and release their locks; finally remove the heartbeat.
func (s *Scheduler) Run(ctx context.Context) error {
	s.started = time.Now()
	// runs is the parent of every run's context: cancelling it (cause
	// errShutdown) terminates the runs, after the grace.
	runs, stopRuns := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopRuns(nil)
	defer s.stopRecordRetries()
	s.log.Info("replica started", "config_hash", short(s.cfg.Load().Hash), "instances", len(s.cfg.Load().Instances))

	var bg sync.WaitGroup
	bg.Add(3)
	go func() { defer bg.Done(); s.every(ctx, s.beatEvery, "heartbeat", s.heartbeat) }()
	go func() { defer bg.Done(); s.triggerLoop(ctx, runs) }()
	go func() {
		defer bg.Done()
		s.every(ctx, s.maintEvery, "maintenance", func(ctx context.Context) { s.maintain(ctx, runs) })
	}()
	s.tickLoop(ctx, runs)

	s.log.Info("stopping: no new claims; waiting for running jobs", "running", len(s.Running()), "grace", s.grace)
	// Nothing may start a run once we wait for the runs: first the loops
	// that claim (triggers, misfires) and the tick goroutines.
	bg.Wait()
	s.claiming.Wait()
	done := make(chan struct{})
	go func() { s.runs.Wait(); close(done) }()
	t := time.NewTimer(s.grace)
	select {
	case <-done:
	case <-t.C:
		s.log.Warn("shutdown grace over; terminating running jobs", "running", s.Running())
	case <-s.terminateNow:
		s.log.Warn("second signal: terminating running jobs now", "running", s.Running())
	}
	t.Stop()
	stopRuns(errShutdown)
	giveUp := time.AfterFunc(recordGrace, s.stopRecordRetries) // last records of an unreachable Redis
	defer giveUp.Stop()
	<-done
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisTimeout)
	defer cancel()
	if err := s.store.RemoveBeat(rctx, s.replica); err != nil {
		s.log.Warn("could not remove heartbeat; it expires by itself", "err", err)
	}
	s.log.Info("stopped")
	return nil
}

// every runs fn now and then every d until ctx ends, surviving panics.
func (s *Scheduler) every(ctx context.Context, d time.Duration, what string, fn func(context.Context)) {
	for {
		func() {
			defer s.recoverPanic(what)
			fn(ctx)
		}()
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (s *Scheduler) recoverPanic(where string) {
	if r := recover(); r != nil {
		s.log.Error("panic recovered", "where", where, "err", fmt.Sprint(r), "stack", string(debug.Stack()))
	}
}

// tickLoop sleeps until the next fire time of any instance and fires
// everything due then, until ctx ends. Each instance keeps its pending
// fire time across reloads unless its schedule changed, so a reload (even
// one that lands on a tick) never drops or repeats a tick; a new or
// rescheduled instance starts from now.
func (s *Scheduler) tickLoop(ctx, runs context.Context) {
	type pending struct {
		at    time.Time
		sched string // spec and timezone the time was computed with
	}
	next := map[string]pending{}
	for {
		cfg := s.cfg.Load()
		now := s.clock.Now()
		var earliest time.Time
		seen := make(map[string]bool, len(cfg.Instances))
		for _, in := range cfg.Instances {
			if !in.Enabled || in.Suspended {
				continue
			}
			seen[in.Name] = true
			key := in.Schedule.Spec + " " + in.Timezone
			if p, ok := next[in.Name]; !ok || p.sched != key {
				next[in.Name] = pending{in.Schedule.Next(now), key}
			}
			if t := next[in.Name].at; !t.IsZero() && (earliest.IsZero() || t.Before(earliest)) {
				earliest = t
			}
		}
		for name := range next {
			if !seen[name] {
				delete(next, name)
			}
		}
		wait := time.Duration(1<<62 - 1) // nothing scheduled: wait for a reload
		if !earliest.IsZero() {
			wait = earliest.Sub(s.clock.Now())
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-s.reloaded:
			timer.Stop()
			s.log.Info("config reloaded", "config_hash", short(s.cfg.Load().Hash))
			continue // a tick that came due meanwhile fires at once
		case <-timer.C:
		}
		var due []*jobs.Instance
		for _, in := range cfg.Instances {
			if p := next[in.Name]; seen[in.Name] && p.at.Equal(earliest) {
				due = append(due, in)
				next[in.Name] = pending{in.Schedule.Next(earliest), p.sched}
			}
		}
		s.claiming.Add(1)
		go func() {
			defer s.claiming.Done()
			defer s.recoverPanic("fire")
			s.fire(ctx, runs, earliest, due)
		}()
	}
}

// fire claims the tick t for the due instances. Each instance gets a
// random slot within the splay, later for a busier replica, so replicas
// share the work; instances in one slot are claimed in one pipeline.
func (s *Scheduler) fire(ctx, runs context.Context, t time.Time, due []*jobs.Instance) {
	const slots = 4
	groups := make([][]*jobs.Instance, slots)
	for _, in := range due {
		g := 0
		if s.splay > 0 {
			g = mrand.N(slots)
		}
		groups[g] = append(groups[g], in)
	}
	load := min(s.activeCount(), 10)
	penalty := s.splay * time.Duration(load) / 20 // up to half the splay
	for g, group := range groups {
		if len(group) == 0 {
			continue
		}
		at := t.Add(penalty + s.splay*time.Duration(g)/slots)
		if d := at.Sub(s.clock.Now()); d > 0 {
			timer := time.NewTimer(d)
			select {
			case <-ctx.Done():
				timer.Stop()
				return // stop claiming
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			return
		}
		if s.clockBad.Load() {
			s.clockRefused(group, t)
			continue
		}
		s.claim(ctx, runs, t, group, "schedule")
	}
}

// claimItem is one claim to make: an instance's tick, or a manual trigger.
type claimItem struct {
	in       *jobs.Instance
	at       time.Time // scheduled time (for a trigger: when it was asked)
	runID    string
	claimKey string
	value    string // the claim's value, unique to this run
	trigger  string
	windowed bool   // a tick: Redis refuses a new claim too far from it (clock offset)
	reason   string // recorded on the run (a takeover says whose tick it was)
}

// tickItem is the claim of tick t of in by a new run.
func (s *Scheduler) tickItem(in *jobs.Instance, t time.Time, trigger string) claimItem {
	id := newRunID(t)
	return claimItem{in: in, at: t, runID: id, claimKey: s.store.tickKey(in.Name, t),
		value: claimValue(s.replica, id), trigger: trigger, windowed: true}
}

// guard is what the run's pre-start writes check: its claim still holds
// its value.
func (it claimItem) guard() Guard { return Guard{Key: it.claimKey, Value: it.value} }

// claim claims tick t of the instances, and starts, skips or queues them.
func (s *Scheduler) claim(ctx, runs context.Context, t time.Time, insts []*jobs.Instance, trigger string) {
	items := make([]claimItem, len(insts))
	for i, in := range insts {
		items[i] = s.tickItem(in, t, trigger)
	}
	s.claimItems(ctx, runs, items)
}

// claimItems claims in one batch; the winners run, skip or wait. A claim
// whose reply was lost is asked again until its outcome is known (for up
// to the tick's starting_deadline, at most claimSettleMax): an error is
// never read as "claimed elsewhere".
func (s *Scheduler) claimItems(ctx, runs context.Context, items []claimItem) []bool {
	reqs := make([]ClaimRequest, len(items))
	settle := claimSettleMax
	for i, it := range items {
		// How long a lost reply is settled: up to starting_deadline for
		// misfire: run_once; for skip only while the tick is on time
		// (3s + splay), so that skip never runs a tick late.
		late := it.in.StartingDeadline
		if it.in.Misfire != jobs.MisfireRunOnce {
			late = min(late, s.missGrace())
		}
		reqs[i] = ClaimRequest{
			ClaimKey: it.claimKey, ClaimValue: it.value,
			ClaimTTL: claimTTL(it.in, it.at), Lock: it.in.Lock, LockTTL: it.in.LockTTL, Label: label(it.in, it.runID),
		}
		if it.windowed {
			reqs[i].NotBefore = it.at.Add(-MaxClockOffset)
			reqs[i].NotAfter = it.at.Add(it.in.StartingDeadline + MaxClockOffset)
			settle = min(settle, time.Until(it.at.Add(late)))
		}
	}
	// Settling outlives a shutdown only briefly: a stopping replica gives
	// an unsettled claim redisTimeout more, then leaves it.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(settle, redisTimeout))
	stopLate := context.AfterFunc(ctx, func() { time.AfterFunc(redisTimeout, cancel) })
	began := time.Now()
	results := s.locker.ClaimAndLock(cctx, reqs)
	elapsed := time.Since(began)
	s.observe(func(o Observer) { o.ClaimLatency(elapsed) })
	stopLate()
	cancel()
	won := make([]bool, len(items))
	for i, r := range results {
		it := items[i]
		in := it.in
		rec := &Record{RunID: it.runID, Instance: in.Name, Job: in.Job, ScheduledAt: it.at.UTC(),
			Trigger: it.trigger, Replica: s.replica, Lock: in.Lock, Reason: it.reason}
		switch {
		case errors.Is(r.Err, ErrClockOffset):
			s.clockRefused([]*jobs.Instance{in}, it.at)
			continue
		case r.Err != nil:
			s.redisError("claim", r.Err)
			continue
		case !r.Won:
			s.log.Debug("tick claimed elsewhere", "job", in.Name, "scheduled_at", it.at.UTC())
			s.observe(func(o Observer) { o.ClaimLost(in.Name) })
			continue
		}
		won[i] = true
		s.redisOK()
		s.observe(func(o Observer) { o.ClaimWon(in.Name) })
		g := it.guard()
		switch {
		case r.Lease != nil:
			s.log.Info("claim won", "job", in.Name, "run_id", rec.RunID, "scheduled_at", it.at.UTC(), "trigger", it.trigger, "lock", in.Lock, "fence", r.Lease.Fence())
			s.spawn(rec, in, func() { s.start(runs, in, rec, r.Lease, g) })
		case in.Overlap == jobs.OverlapWait:
			s.spawn(rec, in, func() { s.wait(runs, in, rec, g) })
		default:
			// Not a run: untracked, but off the claim path, since its
			// record write may wait for Redis.
			s.spawn(rec, nil, func() { s.skip(in, rec, "lock held", g) })
		}
	}
	return won
}

// clockRefused logs (once a minute) and counts ticks not claimed because
// this replica's clock is too far from Redis's.
func (s *Scheduler) clockRefused(insts []*jobs.Instance, t time.Time) {
	for _, in := range insts {
		s.observe(func(o Observer) { o.ClockRefused(in.Name) })
	}
	if s.limiter.allow("clock-refused", time.Minute) {
		s.log.Error("not claiming ticks: the local clock is too far from Redis's", "scheduled_at", t.UTC(),
			"clock_offset", s.ClockSkew().Round(time.Millisecond), "max", MaxClockOffset, "hint", "run NTP")
	}
}

// skip records a claimed tick that will not run, naming the lock holder.
// A tick already recorded as waiting has its record replaced; a new one
// is pushed only while its claim is still its own (g).
func (s *Scheduler) skip(in *jobs.Instance, rec *Record, why string, g Guard) {
	hctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	h, ok, _ := s.locker.Holder(hctx, in.Lock)
	cancel()
	rec.Reason = fmt.Sprintf("%s: lock %q", why, in.Lock)
	if ok {
		rec.Reason += fmt.Sprintf(" held by %s (%s, fence %d)", h.Owner, h.Label, h.Fence)
	}
	now := time.Now().UTC()
	rec.End = &now
	s.log.Info("tick skipped", "job", in.Name, "run_id", rec.RunID, "lock", in.Lock, "reason", rec.Reason)
	waited := rec.Status == jobs.StatusWaiting
	rec.Status = jobs.StatusSkipped
	s.persist("record skip", func(ctx context.Context) error {
		if waited {
			return s.store.Update(ctx, rec, in.History, s.incarnation, Guard{})
		}
		return s.store.Push(ctx, rec, in.History, s.incarnation, g)
	})
	s.observe(func(o Observer) { o.Skipped(in.Name, why) })
	s.finished(*rec, 0)
}

// spawn runs fn in a goroutine that shutdown waits for and that survives
// a panic (recorded as a failed run when it happens in execute, logged
// otherwise). With in set, the run counts as running on this replica.
func (s *Scheduler) spawn(rec *Record, in *jobs.Instance, fn func()) {
	if in != nil {
		s.track(rec.RunID, in)
	}
	s.runs.Add(1)
	go func() {
		defer s.runs.Done()
		if in != nil {
			defer s.untrack(rec.RunID)
		}
		defer s.recoverPanic("run " + rec.RunID)
		fn()
	}()
}

// start runs a claimed, locked tick (in a spawned goroutine).
func (s *Scheduler) start(runs context.Context, in *jobs.Instance, rec *Record, lease Lease, g Guard) {
	rec.Status, rec.Fence = jobs.StatusRunning, lease.Fence() // start: once the process has started
	s.execute(runs, in, rec, lease, func(ctx context.Context) error { return s.store.Push(ctx, rec, in.History, s.incarnation, g) })
}

// wait queues a claimed tick for its lock (overlap: wait) until max_wait
// or the next fire time, then runs or skips it (in a spawned goroutine).
func (s *Scheduler) wait(runs context.Context, in *jobs.Instance, rec *Record, g Guard) {
	rec.Status = jobs.StatusWaiting
	if s.persist("record wait", func(ctx context.Context) error { return s.store.Push(ctx, rec, in.History, s.incarnation, g) }) != nil {
		return
	}
	limit := in.MaxWait
	if limit == 0 {
		limit = in.Schedule.Next(rec.ScheduledAt).Sub(s.clock.Now())
	}
	wctx, cancel := context.WithTimeout(runs, max(limit, 0))
	lease, err := s.locker.Lock(wctx, in.Lock, in.LockTTL, label(in, rec.RunID))
	cancel()
	if err != nil {
		s.skip(in, rec, "lock still held after waiting "+limit.Round(time.Millisecond).String(), g)
		return
	}
	rec.Status, rec.Fence = jobs.StatusRunning, lease.Fence()
	s.execute(runs, in, rec, lease, func(ctx context.Context) error { return s.store.Update(ctx, rec, in.History, s.incarnation, g) })
}

// execute runs the command under the lease: keep-alive starts first, then
// the running record is written (only while the tick's claim is still
// ours), then, if the lease is still trusted at that moment, the command
// runs; the result is recorded and only then is the lock released, so
// that a finished run is never seen without its lock and marked
// abandoned. The lease is renewed until the process group is gone, even
// during shutdown: shutdown stops the command (runs), not the lease. A
// panic anywhere on this path is recorded as a failed run, and the lock
// is still released.
func (s *Scheduler) execute(runs context.Context, in *jobs.Instance, rec *Record, lease Lease, started func(context.Context) error) {
	log := s.log.With("job", in.Name, "run_id", rec.RunID)
	stop := func() {}
	var lost atomic.Bool // the lease was lost: its release is expected to fail
	release := func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(runs), redisTimeout)
		defer cancel()
		if err := lease.Unlock(uctx); err != nil && !lost.Load() {
			log.Warn("lock release failed; it expires by itself", "lock", in.Lock, "err", err)
		}
	}
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic in a run", "err", fmt.Sprint(r), "stack", string(debug.Stack()))
			stop()
			now, code := time.Now().UTC(), -1
			if rec.Start == nil {
				rec.Start = &now
			}
			rec.Status, rec.End, rec.ExitCode, rec.Reason = jobs.StatusFailed, &now, &code, fmt.Sprintf("panic in jobd: %v", r)
			s.persist("record panic", func(ctx context.Context) error { return s.store.Update(ctx, rec, in.History, s.incarnation, Guard{}) })
			s.finished(*rec, 0)
			release()
		}
	}()
	// The lease outlives shutdown; the command is stopped by runs (the
	// shutdown) or by the lease's loss, whichever comes first.
	kctx, stopKeepAlive := lease.KeepAlive(context.WithoutCancel(runs))
	ectx, stopCmd := context.WithCancelCause(kctx)
	stopShutdown := context.AfterFunc(runs, func() { stopCmd(context.Cause(runs)) })
	stop = func() { stopShutdown(); stopCmd(context.Canceled); stopKeepAlive() }
	if err := s.persist("record start", started); err != nil {
		if errors.Is(err, ErrClaimLost) {
			log.Warn("not starting: the run is no longer this replica's (its tick was taken over, or the run abandoned while this replica was away)", "err", err)
		}
		stop()
		release()
		return
	}
	res := jobs.Execute(ectx, log, jobs.Launch{Instance: in, ID: rec.RunID, ScheduledAt: rec.ScheduledAt,
		Replica: s.replica, LockKey: in.Lock, Fence: rec.Fence, Ready: lease.Valid,
		OnStart: func(at time.Time) {
			lag := at.Sub(rec.ScheduledAt)
			s.observe(func(o Observer) { o.RunStarted(in.Name, lag) })
			log.Info("run started", "scheduled_at", rec.ScheduledAt, "lag", lag.Round(time.Millisecond), "fence", rec.Fence)
		}})
	lost.Store(errors.Is(context.Cause(kctx), jobs.ErrLockLost))
	if err := lease.Valid(); err != nil && res.Started && res.Status != jobs.StatusLockLost {
		// The process ended while the lease could no longer be trusted
		// (this replica was paused or cut off): say so, since another
		// holder may have overlapped it.
		res.Reason = joinReason(res.Reason, "the lease was not trusted when the run ended; another holder may have overlapped it")
		lost.Store(true)
	}
	stop()
	end := res.End.UTC()
	code := res.ExitCode
	rec.Status, rec.End, rec.ExitCode, rec.Reason, rec.Output = res.Status, &end, &code, joinReason(rec.Reason, res.Reason), res.Output
	rec.Signal, rec.SignalNo = res.Signal, res.SignalNo
	if res.Started {
		start := res.Start.UTC()
		rec.Start = &start // the process's real start
	} else {
		rec.Start, rec.NeverStarted = nil, true // a takeover may run the tick again
	}
	if res.Status == jobs.StatusLockLost {
		log.Warn("lease lost: the run was terminated", "lock", in.Lock, "reason", res.Reason, "started", res.Started)
	}
	dur := res.End.Sub(res.Start)
	level := slog.LevelInfo
	if res.Status != jobs.StatusSucceeded {
		level = slog.LevelWarn
	}
	log.Log(context.Background(), level, "run finished", "status", res.Status, "exit_code", code, "duration", dur.Round(time.Millisecond), "reason", res.Reason)
	s.persist("record result", func(ctx context.Context) error { return s.store.Update(ctx, rec, in.History, s.incarnation, Guard{}) })
	s.finished(*rec, dur)
	release() // after a lost lease this is refused, or frees a lock Redis kept
}

// joinReason keeps a reason the scheduler set (a takeover) before the
// executor's own.
func joinReason(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// persist retries a record write until it succeeds, until it fails for
// good (ErrClaimLost: the tick is no longer ours), or until records may no
// longer be retried (shortly after shutdown). A run's outcome must reach
// Redis once Redis is back; every write it retries is safe to repeat.
func (s *Scheduler) persist(what string, fn func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
		err := fn(ctx)
		cancel()
		if err == nil {
			s.redisOK()
			return nil
		}
		if errors.Is(err, ErrClaimLost) {
			s.redisOK()
			return err
		}
		s.redisError(what, err)
		t := time.NewTimer(backoff)
		select {
		case <-s.recordsDone:
			t.Stop()
			s.log.Error("giving up on a record: Redis unreachable at shutdown", "what", what, "err", err)
			return err
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Scheduler) track(id string, in *jobs.Instance) {
	s.mu.Lock()
	s.active[id] = in
	s.mu.Unlock()
}

func (s *Scheduler) untrack(id string) {
	s.mu.Lock()
	delete(s.active, id)
	s.mu.Unlock()
}

func (s *Scheduler) activeCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.active)
}

func (s *Scheduler) isActive(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.active[id]
	return ok
}

func (s *Scheduler) redisError(op string, err error) {
	if errors.Is(err, context.Canceled) {
		return // we are stopping; Redis is not at fault
	}
	s.observe(func(o Observer) { o.RedisError(op) })
	if !s.redisDown.Swap(true) {
		s.log.Error("redis unreachable: no claims and no new runs until it is back", "op", op, "err", err)
		return
	}
	if s.limiter.allow("redis-error", 30*time.Second) {
		s.log.Error("redis still unreachable", "op", op, "err", err)
	}
}

func (s *Scheduler) redisOK() {
	if s.redisDown.Swap(false) {
		s.log.Info("redis reachable again")
	}
}

// claimTTL keeps a tick's claim for two periods plus the misfire window
// plus a minute: far longer than any clock skew between replicas, so a
// late replica always finds the claim.
func claimTTL(in *jobs.Instance, t time.Time) time.Duration {
	period := in.Schedule.Next(t).Sub(t)
	return 2*max(period, 0) + in.StartingDeadline + time.Minute
}

func label(in *jobs.Instance, runID string) string {
	return "instance=" + in.Name + " run=" + runID
}

// newRunID is sortable by scheduled time and unique.
func newRunID(t time.Time) string {
	return t.UTC().Format("20060102T150405Z") + "-" + randomHex(5)
}

// randomHex is n random bytes, hex-encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}
