package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jobd/jobd/internal/jobs"
)

// Claim is one run's claim, from the decision to claim it to its record:
// a tick of an instance (or a manual trigger, or a missed tick taken
// over), the claim key that makes it this run's, the lock it must take,
// the Locker's answer, and the run's record. The ticker, the triggers and
// the maintenance make Claims; the claimer hands them to the Locker in one
// batch; the runner runs, queues or skips the ones won.
type Claim struct {
	// What the Locker needs: create Key with Value (SET NX, for TTL) and,
	// if it is this claim's, try Lock.
	Key     string
	Value   string // unique to this run: a retry that finds it knows the claim is its own
	TTL     time.Duration
	Lock    string
	LockTTL time.Duration
	Label   string // the lock holder's label: the instance and the run id
	// NotBefore and NotAfter bound, on Redis's clock, when a new claim may
	// be made (zero: no bound); outside them Err is ErrClockOffset.
	NotBefore, NotAfter time.Time

	// The Locker's answer: Won with a Lease means run now; Won without one
	// means the tick is ours but the lock is held; not Won with a nil Err
	// means another replica claimed it; Err means Redis failed and the
	// outcome could not be settled (fail closed), or ErrClockOffset, or
	// (Won) ErrNotReplicated: the tick is ours but must not run. A
	// Locker settles a lost reply (asks again with the same value and
	// token) rather than report it as lost.
	Won   bool
	Lease Lease
	Err   error

	in  *jobs.Instance
	rec *Record // the run's record, written before the start and at the end
}

// guard is what the run's pre-start writes check: its claim still holds
// its value.
func (c *Claim) guard() Guard { return Guard{Key: c.Key, Value: c.Value} }

// newClaim is a claim of the tick (or request) at t by a new run.
func (co *core) newClaim(in *jobs.Instance, key string, t time.Time, runID, trigger string) *Claim {
	return &Claim{
		Key: key, Value: claimValue(co.replica, runID), TTL: claimTTL(in, t),
		Lock: in.Lock, LockTTL: in.LockTTL, Label: label(in, runID),
		in: in, rec: &Record{RunID: runID, Instance: in.Name, Job: in.Job, ScheduledAt: t.UTC(),
			Trigger: trigger, Replica: co.replica, Lock: in.Lock},
	}
}

// tickClaim is the claim of tick t of in by a new run: Redis refuses it
// when its clock is too far from t (MaxClockOffset), so that replicas
// whose clocks differ never both claim one tick.
func (co *core) tickClaim(in *jobs.Instance, t time.Time, trigger string) *Claim {
	c := co.newClaim(in, co.store.tickKey(RefOf(in), t), t, newRunID(t), trigger)
	c.NotBefore, c.NotAfter = t.Add(-MaxClockOffset), t.Add(in.StartingDeadline+MaxClockOffset)
	return c
}

// claimer claims batches of Claims through the Locker in one round trip
// and hands the ones won to the runner. It has no goroutine: the ticker,
// the triggers and the maintenance call it on theirs.
type claimer struct {
	*core
	runner *runner
}

// claim claims in one batch; the winners run, skip or wait (the runner
// and the instance's overlap policy decide). A claim whose reply was lost
// is asked again until its outcome is known (for up to the tick's
// starting_deadline, at most claimSettleMax): an error is never read as
// "claimed elsewhere". It reports which claims were won.
func (cl *claimer) claim(ctx context.Context, claims []*Claim) []bool {
	// Settling outlives a shutdown only briefly: a stopping replica gives
	// an unsettled claim redisTimeout more, then leaves it.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(cl.settleFor(claims), redisTimeout))
	stopLate := context.AfterFunc(ctx, func() { time.AfterFunc(redisTimeout, cancel) })
	began := time.Now()
	won := make([]bool, len(claims))
	// Each claim is acted on as soon as it is settled: the winners of a
	// batch start while a claim whose reply was lost (on Redis Cluster, a
	// shard failing over) is still being asked again.
	cl.locker.ClaimAndLock(cctx, claims, func(i int) { won[i] = cl.settled(claims[i]) })
	elapsed := time.Since(began)
	cl.observe(func(o Observer) { o.ClaimLatency(elapsed) })
	stopLate()
	cancel()
	return won
}

// settleFor is how long a lost reply is settled: up to starting_deadline
// for misfire: run_once; for skip only while the tick is on time (3s +
// splay), so that skip never runs a tick late.
func (cl *claimer) settleFor(claims []*Claim) time.Duration {
	settle := claimSettleMax
	for _, c := range claims {
		if c.NotAfter.IsZero() {
			continue // no window: a takeover or a trigger
		}
		late := c.in.StartingDeadline
		if c.in.Misfire != jobs.MisfireRunOnce {
			late = min(late, cl.missGrace())
		}
		settle = min(settle, time.Until(c.rec.ScheduledAt.Add(late)))
	}
	return settle
}

// settled acts on one claim's outcome, and reports whether it was won.
func (cl *claimer) settled(c *Claim) bool {
	in := c.in
	switch {
	case errors.Is(c.Err, ErrNotReplicated): // won, but not to be run: the runner's policy records it
		cl.redisOK()
		cl.runner.dispatch(c)
		return true
	case errors.Is(c.Err, ErrClockOffset):
		cl.clockRefused([]*jobs.Instance{in}, c.rec.ScheduledAt)
		return false
	case c.Err != nil:
		cl.redisError("claim", c.Err)
		return false
	case !c.Won:
		cl.log.Debug("tick claimed elsewhere", "job", in.Name, "scheduled_at", c.rec.ScheduledAt)
		cl.observe(func(o Observer) { o.ClaimLost(in.Name) })
		return false
	}
	cl.redisOK()
	cl.observe(func(o Observer) { o.ClaimWon(in.Name) })
	if c.Lease != nil {
		cl.log.Info("claim won", "job", in.Name, "run_id", c.rec.RunID, "scheduled_at", c.rec.ScheduledAt,
			"trigger", c.rec.Trigger, "lock", in.Lock, "fence", c.Lease.Fence())
	}
	cl.runner.dispatch(c)
	return true
}

// missGrace is how old an unclaimed tick must be before misfire handling
// treats it as missed, so that the normal path always claims first.
func (co *core) missGrace() time.Duration { return 3*time.Second + co.splay }

// claimTTL keeps a tick's claim for two periods plus the misfire window
// plus a minute: far longer than any clock skew between replicas, so a
// late replica always finds the claim.
func claimTTL(in *jobs.Instance, t time.Time) time.Duration {
	period := in.Schedule.Next(t).Sub(t)
	return 2*max(period, 0) + in.StartingDeadline + time.Minute
}

// label is the lock holder's label of a run; ParseLabel reads it back.
func label(in *jobs.Instance, runID string) string {
	return "instance=" + in.Name + " run=" + runID
}

// newRunID is sortable by scheduled time and unique.
func newRunID(t time.Time) string {
	return t.UTC().Format("20060102T150405Z") + "-" + randomHex(5)
}

// claimValue is what a claim holds: the replica and the run id, which is
// unique, so a retry that finds the value knows the claim is its own.
func claimValue(replica, runID string) string { return fmt.Sprintf("%s %s", replica, runID) }

// claimRunID is the run id in a claim's value (its last word).
func claimRunID(v string) string {
	if i := strings.LastIndexByte(v, ' '); i >= 0 {
		return v[i+1:]
	}
	return v
}

// claimReplica is the replica in a claim's value.
func claimReplica(v string) string {
	if i := strings.LastIndexByte(v, ' '); i >= 0 {
		return v[:i]
	}
	return ""
}
