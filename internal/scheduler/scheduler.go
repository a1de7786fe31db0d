package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jobd/jobd/internal/jobs"
)

// Defaults of the options, documented where they are defined.
const (
	// DefaultSplay bounds how long a replica that is not first in line for
	// an instance's tick (owner.go) waits before claiming it: the replica
	// ranked k of n waits splay*k/(n-1), in case those before it are gone.
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

// Scheduler is one replica. It wires its components, each of which owns
// one goroutine (see Run for the order they start and stop in):
//
//   - heartbeat: publishes the replica, measures the clock, reads Redis's settings;
//   - ticker: claims every due tick (ticker.go);
//   - triggers: claims manual trigger requests (trigger.go);
//   - maintenance: abandons dead replicas' runs, runs missed ticks (maintain.go);
//   - claimer: claims a batch in one round trip and hands the winners to
//     the runner (claim.go; no goroutine of its own);
//   - runner: one goroutine per won claim, through the overlap policy
//     (runner.go, policy.go, execute.go).
type Scheduler struct {
	core      *core
	runner    *runner
	heartbeat *heartbeat
	ticker    *ticker
	triggers  *triggers
	maint     *maintenance

	runOnce       sync.Once
	terminateNow  chan struct{}
	terminateOnce sync.Once
}

// Option configures a Scheduler.
type Option func(*core)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *core) { c.log = l } }

// WithClock replaces the system clock (tests skew it).
func WithClock(cl Clock) Option { return func(c *core) { c.clock = cl } }

// WithReplicaID sets the replica id, shown by status and written into
// claims and records (default: "replica-" and the process's random
// incarnation). cmd/jobd passes the mutex's lock owner, HOSTNAME-PID
// unless --replica-id says otherwise, so that one id names the replica
// and its locks.
func WithReplicaID(id string) Option { return func(c *core) { c.replica = id } }

// WithVersion sets the version shown in the heartbeat (default "dev").
func WithVersion(v string) Option { return func(c *core) { c.version = v } }

// WithSplay sets the claim splay (default DefaultSplay, at most MaxSplay).
func WithSplay(d time.Duration) Option {
	return func(c *core) { c.splay = min(max(d, 0), MaxSplay) }
}

// WithShutdownGrace sets how long runs may finish on shutdown
// (default DefaultShutdownGrace).
func WithShutdownGrace(d time.Duration) Option { return func(c *core) { c.grace = d } }

// WithIntervals sets the heartbeat and maintenance intervals (defaults
// DefaultHeartbeat and DefaultMaintenance); tests shorten them.
func WithIntervals(heartbeat, maintenance time.Duration) Option {
	return func(c *core) { c.beatEvery, c.maintEvery = heartbeat, maintenance }
}

// WithObserver sets the observer (default NopObserver).
func WithObserver(o Observer) Option { return func(c *core) { c.obs = o } }

// New returns a replica running cfg.
func New(cfg *jobs.Config, store *Store, locker Locker, opts ...Option) *Scheduler {
	host, _ := os.Hostname()
	c := &core{
		store: store, locker: locker, log: slog.Default(), clock: systemClock{}, obs: NopObserver{},
		health: &health{}, version: "dev", host: host, pid: os.Getpid(), incarnation: randomHex(8),
		splay: DefaultSplay, grace: DefaultShutdownGrace, beatEvery: DefaultHeartbeat, maintEvery: DefaultMaintenance,
		reloaded: make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(c)
	}
	if c.replica == "" {
		c.replica = "replica-" + c.incarnation
	}
	c.log = c.log.With("replica", c.replica)
	c.cfg.Store(cfg)
	r := newRunner(c)
	cl := &claimer{core: c, runner: r}
	return &Scheduler{
		core: c, runner: r,
		heartbeat:    &heartbeat{core: c, running: r.running, now: make(chan struct{}, 1)},
		ticker:       &ticker{core: c, claimer: cl},
		triggers:     &triggers{core: c, claimer: cl},
		maint:        &maintenance{core: c, claimer: cl, runner: r},
		terminateNow: make(chan struct{}),
	}
}

// Run runs the replica (once) until ctx ends. The heartbeat starts first,
// so that the clock is measured before the first claim; then the
// components that claim. Shutdown goes in this order:
//
//  1. stop claiming: the ticker (and the claims of its ticks in flight),
//     the triggers, the maintenance, and the heartbeat loop;
//  2. the runner lets runs finish for the shutdown grace (or until
//     TerminateRuns), then terminates the rest (TERM, then KILL after
//     their kill_grace), records them and releases their locks;
//  3. the heartbeat is removed.
func (s *Scheduler) Run(ctx context.Context) error {
	ran := false
	s.runOnce.Do(func() { ran = true })
	if !ran {
		return errors.New("scheduler: Run called twice")
	}
	c := s.core
	c.started = time.Now()
	c.log.Info("replica started", "config_hash", short(c.cfg.Load().Hash), "instances", len(c.cfg.Load().Instances))
	s.heartbeat.start(ctx)
	s.triggers.start(ctx)
	s.maint.start(ctx)
	s.ticker.start(ctx)
	<-ctx.Done()

	c.log.Info("stopping: no new claims; waiting for running jobs", "running", s.runner.count(), "grace", c.grace)
	s.ticker.wait()
	s.triggers.wait()
	s.maint.wait()
	s.heartbeat.wait()
	s.runner.shutdown(c.grace, s.terminateNow)
	s.heartbeat.remove(ctx)
	c.log.Info("stopped")
	return nil
}

// Config is the configuration in force.
func (s *Scheduler) Config() *jobs.Config { return s.core.cfg.Load() }

// Reload switches to cfg and publishes its hash in a heartbeat at once.
// Running jobs are unaffected; a removed job finishes its current run.
func (s *Scheduler) Reload(cfg *jobs.Config) {
	s.core.noteLocks(s.core.cfg.Swap(cfg), cfg)
	select {
	case s.core.reloaded <- struct{}{}:
	default:
	}
	s.heartbeat.beatSoon() // peers see the new config hash at once
}

// ReplicaID is this replica's id (WithReplicaID), the value of the
// replica key of its log lines.
func (s *Scheduler) ReplicaID() string { return s.core.replica }

// TerminateRuns cuts the shutdown grace: running jobs are terminated now
// (a second signal).
func (s *Scheduler) TerminateRuns() { s.terminateOnce.Do(func() { close(s.terminateNow) }) }

// RedisOK reports whether this replica's last Redis operation (a claim, a
// record, a heartbeat) succeeded. A Ping can succeed while claims fail
// (on Redis Cluster, one shard failing over), so readiness asks this too.
func (s *Scheduler) RedisOK() bool { return !s.core.health.redisDown.Load() }

// ClockSkew is the local clock minus Redis's, as last measured.
func (s *Scheduler) ClockSkew() time.Duration { return s.core.health.skewNow() }

// ConfigMismatch reports whether a live replica runs another config.
func (s *Scheduler) ConfigMismatch() bool { return s.core.health.mismatch.Load() }

// ClockOK reports whether the clock was measured against Redis and is
// close enough to Redis's to claim ticks (within MaxClockOffset); while it
// is not, this replica claims nothing it would need the clock for, and
// should not be reported ready.
func (s *Scheduler) ClockOK() bool { return s.core.health.clockOK() }

// Warnings lists the Redis settings, as last read, that weaken jobd's
// guarantees (persistence off, fsync not always, eviction).
func (s *Scheduler) Warnings() []string { return s.core.health.warningList() }

// Running returns the instances this replica runs now.
func (s *Scheduler) Running() []string { return s.runner.running() }
