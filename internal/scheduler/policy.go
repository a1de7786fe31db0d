package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobd/jobd/internal/jobs"
)

// runFunc runs one won claim; c.Lease is set when the claim also took the
// lock. The runner's execute is the innermost one.
type runFunc func(ctx context.Context, c *Claim)

// policy is how a won claim is run, as wrappers around execute in the
// style of robfig/cron's chain.go (SkipIfStillRunning,
// DelayIfStillRunning): first skipIfNotReplicated, then the instance's
// overlap policy:
//   - skip (default): skipIfLocked, then a tracked run;
//   - wait: a tracked waitIfLocked (a waiting run counts as running here).
func (r *runner) policy(in *jobs.Instance) func(runFunc) runFunc {
	if in.Overlap == jobs.OverlapWait {
		return func(next runFunc) runFunc { return r.skipIfNotReplicated(r.tracked(r.waitIfLocked(next))) }
	}
	return func(next runFunc) runFunc { return r.skipIfNotReplicated(r.skipIfLocked(r.tracked(next))) }
}

// tracked counts the run as running on this replica while next runs, and
// gives it a context that shutdown cancels.
func (r *runner) tracked(next runFunc) runFunc {
	return func(ctx context.Context, c *Claim) {
		ctx = r.track(ctx, c)
		defer r.untrack(c.rec.RunID)
		next(ctx, c)
	}
}

// skipIfLocked records a claimed tick whose lock was held as skipped, and
// runs the others.
func (r *runner) skipIfLocked(next runFunc) runFunc {
	return func(ctx context.Context, c *Claim) {
		if c.Lease == nil {
			r.skip(c, skipLockHeld, "lock held", c.guard())
			return
		}
		next(ctx, c)
	}
}

// waitIfLocked queues a claimed tick whose lock was held (its record says
// waiting) until max_wait or the next fire time, then runs it, or records
// it as skipped.
func (r *runner) waitIfLocked(next runFunc) runFunc {
	return func(ctx context.Context, c *Claim) {
		if c.Lease != nil {
			next(ctx, c)
			return
		}
		in, rec := c.in, c.rec
		rec.Status = jobs.StatusWaiting
		if r.persist("record wait", r.push(c, c.guard())) != nil {
			return
		}
		limit := in.MaxWait
		if limit == 0 {
			limit = in.Schedule.Next(rec.ScheduledAt).Sub(r.clock.Now())
		}
		wctx, cancel := context.WithTimeout(ctx, max(limit, 0))
		lease, err := r.locker.Lock(wctx, in.Lock, in.LockTTL, c.Label)
		cancel()
		switch {
		case errors.Is(err, ErrNotReplicated):
			r.skip(c, skipNotReplicated, notReplicated, c.guard())
			return
		case err != nil:
			r.skip(c, skipWaitTimeout, "lock still held after waiting "+limit.Round(time.Millisecond).String(), c.guard())
			return
		}
		c.Lease = lease
		next(ctx, c)
	}
}

// notReplicated is the skip reason of a claim or lock that too few
// replicas acknowledged (redis.min_replicas_acked).
const notReplicated = "not replicated: fewer Redis replicas than min_replicas_acked acknowledged the claim in time"

// skipIfNotReplicated records a won claim whose claim or lock too few
// replicas acknowledged (redis.min_replicas_acked) as skipped and never
// started: it is not run (fail closed), whatever the overlap policy.
func (r *runner) skipIfNotReplicated(next runFunc) runFunc {
	return func(ctx context.Context, c *Claim) {
		if !errors.Is(c.Err, ErrNotReplicated) {
			next(ctx, c)
			return
		}
		r.log.Warn("not started: too few Redis replicas acknowledged the claim (min_replicas_acked)",
			"job", c.in.Name, "run_id", c.rec.RunID, "err", c.Err)
		c.rec.NeverStarted = true
		r.skip(c, skipNotReplicated, notReplicated, c.guard())
	}
}

// skip records a claimed tick that will not run, naming the lock holder.
// A tick already recorded as waiting has its record replaced; a new one
// is pushed only while its claim is still its own (g).
func (r *runner) skip(c *Claim, kind, why string, g Guard) {
	in, rec := c.in, c.rec
	hctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	h, ok, _ := r.locker.Holder(hctx, in.Lock)
	cancel()
	rec.Reason = fmt.Sprintf("%s: lock %q", why, in.Lock)
	if ok {
		rec.Reason += fmt.Sprintf(" held by %s (%s, fence %d)", h.Owner, h.Label, h.Fence)
	}
	now := time.Now().UTC()
	rec.End = &now
	r.log.Info("tick skipped", "job", in.Name, "run_id", rec.RunID, "lock", in.Lock, "reason", rec.Reason)
	write := r.push(c, g)
	if rec.Status == jobs.StatusWaiting {
		write = r.update(c, Guard{})
	}
	rec.Status = jobs.StatusSkipped
	r.persist("record skip", write)
	r.observe(func(o Observer) { o.Skipped(in.Name, kind) })
	r.finished(*rec, 0)
}

// Kinds of skip: short, fixed metric labels (jobd_skips_total{reason}).
const (
	skipLockHeld      = "lock held"
	skipWaitTimeout   = "wait timeout"
	skipNotReplicated = "not replicated"
)
