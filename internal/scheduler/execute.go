package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/jobd/jobd/internal/jobs"
)

// execute runs a claimed tick under its lease: keep-alive starts first,
// then the running record is written (only while the tick's claim is
// still ours), then, if the lease is still trusted at that moment, the
// command runs; the result is recorded and only then is the lock
// released, so that a finished run is never seen without its lock and
// marked abandoned. The lease is renewed until the process group is gone,
// even during shutdown: shutdown stops the command (ctx), not the lease.
// A panic anywhere on this path is recorded as a failed run, and the lock
// is still released.
func (r *runner) execute(ctx context.Context, c *Claim) {
	in, rec, lease := c.in, c.rec, c.Lease
	log := r.log.With("job", in.Name, "run_id", rec.RunID)
	// The first record of a run that waited for its lock exists already.
	started := r.push(c, c.guard())
	if rec.Status == jobs.StatusWaiting {
		started = r.update(c, c.guard())
	}
	rec.Status, rec.Fence = jobs.StatusRunning, lease.Fence() // start: once the process has started
	stop := func() {}
	lost := false // the lease was lost: its release is expected to fail
	defer func() {
		if p := recover(); p != nil {
			log.Error("panic in a run", "err", fmt.Sprint(p), "stack", string(debug.Stack()))
			stop()
			r.recordPanic(c, p)
			r.release(c, log, lost)
		}
	}()
	// The lease outlives shutdown; the command is stopped by ctx (the
	// shutdown) or by the lease's loss, whichever comes first.
	kctx, stopKeepAlive := lease.KeepAlive(context.WithoutCancel(ctx))
	ectx, stopCmd := context.WithCancelCause(kctx)
	stopShutdown := context.AfterFunc(ctx, func() { stopCmd(context.Cause(ctx)) })
	stop = func() { stopShutdown(); stopCmd(context.Canceled); stopKeepAlive() }
	if err := r.persist("record start", started); err != nil {
		if errors.Is(err, ErrClaimLost) {
			log.Warn("not starting: the run is no longer this replica's (its tick was taken over, or the run abandoned while this replica was away)", "err", err)
		}
		stop()
		r.release(c, log, false)
		return
	}
	res := jobs.Execute(ectx, r.log, r.launch(c, log)) // Execute adds job and run_id itself
	// The run was stopped, or never started, for its lease: keep-alive
	// gave up on it (its cause), or it was not trusted at the start.
	lost = kctx.Err() != nil
	if res.Cause != nil && (errors.Is(res.Cause, ErrLeaseLost) || (lost && errors.Is(res.Cause, context.Cause(kctx)))) {
		res.Status = jobs.StatusLockLost
	}
	if err := lease.Valid(); err != nil && res.Started && res.Status != jobs.StatusLockLost {
		// The process ended while the lease could no longer be trusted
		// (this replica was paused or cut off): say so, since another
		// holder may have overlapped it.
		res.Reason = joinReason(res.Reason, "the lease was not trusted when the run ended; another holder may have overlapped it")
		lost = true
	}
	stop()
	r.recordResult(c, res, log)
	r.release(c, log, lost) // after a lost lease this is refused, or frees a lock Redis kept
}

// launch is what jobs.Execute needs: the process starts only while the
// lease is still trusted (Ready), and its real start is observed.
func (r *runner) launch(c *Claim, log *slog.Logger) jobs.Launch {
	in, rec := c.in, c.rec
	return jobs.Launch{Instance: in, ID: rec.RunID, ScheduledAt: rec.ScheduledAt,
		Replica: r.replica, LockKey: in.Lock, Fence: rec.Fence,
		Ready: func() error {
			if err := c.Lease.Valid(); err != nil {
				return fmt.Errorf("%w: %w", ErrLeaseLost, err)
			}
			return nil
		},
		OnStart: func(at time.Time) {
			lag := at.Sub(rec.ScheduledAt)
			r.observe(func(o Observer) { o.RunStarted(in.Name, lag) })
			log.Info("run started", "scheduled_at", rec.ScheduledAt, "lag", lag.Round(time.Millisecond), "fence", rec.Fence)
		}}
}

// recordResult writes what the run did and tells the observer.
func (r *runner) recordResult(c *Claim, res jobs.Result, log *slog.Logger) {
	rec := c.rec
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
		log.Warn("lease lost: the run was terminated", "lock", c.in.Lock, "reason", res.Reason, "started", res.Started)
	}
	dur := res.End.Sub(res.Start)
	level := slog.LevelInfo
	if res.Status != jobs.StatusSucceeded {
		level = slog.LevelWarn
	}
	attrs := []any{"status", res.Status, "exit_code", code, "duration", dur.Round(time.Millisecond)}
	if res.Reason != "" { // a success has none
		attrs = append(attrs, "reason", res.Reason)
	}
	log.Log(context.Background(), level, "run finished", attrs...)
	r.persist("record result", r.update(c, Guard{}))
	r.finished(*rec, dur)
}

// recordPanic records a run that a panic in jobd ended.
func (r *runner) recordPanic(c *Claim, p any) {
	rec := c.rec
	now, code := time.Now().UTC(), -1
	if rec.Start == nil {
		rec.Start = &now
	}
	rec.Status, rec.End, rec.ExitCode, rec.Reason = jobs.StatusFailed, &now, &code, fmt.Sprintf("panic in jobd: %v", p)
	r.persist("record panic", r.update(c, Guard{}))
	r.finished(*rec, 0)
}

// release unlocks the run's lock once its record is written. A release
// after a lost lease is expected to fail, and is not worth a warning.
// One that fails otherwise leaves the lock to expire: the warning says
// which, its lease length (ttl), about when Redis frees it (expires_in)
// and why (err), never its token; `jobd lock` logs the same line.
func (r *runner) release(c *Claim, log *slog.Logger, lost bool) {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	if err := c.Lease.Unlock(ctx); err != nil && !lost {
		log.Warn("lock release failed; Redis frees it when its lease ends",
			"lock", c.in.Lock, "ttl", c.in.LockTTL, "expires_in", c.Lease.ExpiresIn().Round(time.Millisecond), "err", err)
	}
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
