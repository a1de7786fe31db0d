package scheduler

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jobd/jobd/internal/jobs"
)

// maintenance is the component that, every maintEvery, marks the runs of
// dead replicas abandoned and runs the missed ticks of misfire: run_once
// instances (taking over a claimed tick whose run never started).
type maintenance struct {
	*core
	claimer *claimer
	runner  *runner
	loop
}

func (m *maintenance) start(ctx context.Context) {
	m.loop.start(func() { m.every(ctx, m.maintEvery, nil, "maintenance", m.maintain) })
}

// maintain marks runs of dead replicas abandoned and runs missed ticks of
// misfire: run_once instances.
func (m *maintenance) maintain(ctx context.Context) {
	m.abandonDead(ctx)
	m.runMissed(ctx)
}

// abandonDead marks abandoned every run in the running index whose lock
// has expired (or, while it waited for its lock, whose replica is gone).
func (m *maintenance) abandonDead(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	entries, err := m.store.running(ctx, m.cfg.Load().Locks())
	if err != nil {
		m.redisError("scan running", err)
		return
	}
	var alive map[string]string // replica id -> live incarnation
	for id, en := range entries {
		if en.Replica == m.replica && (m.runner.isActive(id) || en.Incarnation == m.incarnation) {
			continue
		}
		var reason string
		waiting := en.Fence == 0
		if waiting { // waiting for its lock: alive while its incarnation is
			if alive == nil {
				alive = map[string]string{}
				peers, err := m.store.Replicas(ctx)
				if err != nil {
					return
				}
				for _, p := range peers {
					alive[p.ID] = p.Incarnation
				}
			}
			inc, up := alive[en.Replica]
			if en.Replica == m.replica {
				inc, up = m.incarnation, true
			}
			if up && (en.Incarnation == "" || en.Incarnation == inc) {
				continue
			}
			reason = fmt.Sprintf("replica %s stopped while the run waited for its lock; the process never started", en.Replica)
		} else {
			h, held, err := m.locker.Holder(ctx, en.Lock)
			if err != nil || (held && h.Fence == en.Fence) {
				continue
			}
			reason = fmt.Sprintf("replica %s stopped during the run; its lock %q expired; the process may have run, so the tick is not run again", en.Replica, en.Lock)
		}
		if ok, err := m.store.abandon(ctx, id, en, reason, waiting); err == nil && ok {
			m.log.Warn("run abandoned", "job", en.Instance, "run_id", id, "lock", en.Lock, "reason", reason)
			m.finished(Record{RunID: id, Instance: en.Instance, Status: jobs.StatusAbandoned}, 0)
		}
	}
}

// runMissed implements misfire: run_once. For each such instance, the
// most recent tick within starting_deadline is looked at: nobody claimed
// it, so it is claimed and run once; or its claimer died (or was cut off)
// before starting the process, so it is taken over and run once. A tick
// whose process may have started is never run again. Older misses are
// counted and logged, not run.
func (m *maintenance) runMissed(ctx context.Context) {
	if m.health.clockBad.Load() {
		return
	}
	cfg := m.cfg.Load()
	now := m.clock.Now()
	var missed []*Claim
	for _, in := range cfg.Instances {
		if in.Misfire != jobs.MisfireRunOnce || !in.Enabled || in.Suspended {
			continue
		}
		ticks := ticksBetween(in, now.Add(-in.StartingDeadline), now.Add(-m.missGrace()), 101)
		if len(ticks) == 0 {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, redisTimeout)
		values, err := m.store.claims(qctx, RefOf(in), ticks)
		cancel()
		if err != nil {
			m.redisError("misfire check", err)
			return
		}
		last := len(ticks) - 1
		t := ticks[last]
		if v := values[last]; v != "" {
			if c, ok := m.takeOver(ctx, in, t, v); ok {
				missed = append(missed, c)
			}
			continue
		}
		qctx, cancel = context.WithTimeout(ctx, redisTimeout)
		elsewhere, err := m.store.claimedElsewhere(qctx, in.Name, m.formerLocks(in), t)
		cancel()
		switch {
		case err != nil:
			m.redisError("misfire check", err)
			return
		case elsewhere:
			// Claimed under the instance's former lock, or by a version
			// of jobd before the lock-tagged key layout: it ran (or may
			// have), so it is not run again.
			m.log.Debug("tick claimed under another key: not run again", "job", in.Name, "scheduled_at", t.UTC())
			continue
		}
		older := 0
		for _, v := range values[:last] {
			if v == "" {
				older++
			}
		}
		m.log.Warn("missed tick: running it once (misfire: run_once)", "job", in.Name,
			"scheduled_at", t.UTC(), "older_missed_not_run", older)
		missed = append(missed, m.tickClaim(in, t, "misfire"))
	}
	if len(missed) > 0 {
		m.claimer.claim(ctx, missed)
	}
}

// takeOver looks at a claimed tick: if the claiming run never started and
// cannot start any more (no record, or abandoned or lease-lost before its
// process started; and it does not hold the job's lock), the claim is
// given to a new run, which is returned. The old claimer writes its
// running record only while the claim is still its own, so after the
// takeover it can never start.
func (m *maintenance) takeOver(ctx context.Context, in *jobs.Instance, t time.Time, value string) (*Claim, bool) {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	oldID, oldReplica := claimRunID(value), claimReplica(value)
	rec, found, err := m.store.Record(ctx, RefOf(in), oldID)
	if err != nil {
		m.redisError("misfire check", err)
		return nil, false
	}
	if found && !rec.NeverStarted {
		return nil, false // ran, runs, waits or was skipped: its tick is done
	}
	if !found {
		// The claimer may still be on its way: it holds the lock from
		// the claim until its run ends, so wait for the lock to go.
		h, held, err := m.locker.Holder(ctx, in.Lock)
		if err != nil || (held && strings.Contains(h.Label, "run="+oldID)) {
			return nil, false
		}
	}
	// The claim exists, so no clock window: only its value changes.
	c := m.newClaim(in, m.store.tickKey(RefOf(in), t), t, newRunID(t), "misfire")
	old := &Record{RunID: oldID, Instance: in.Name, Job: in.Job, ScheduledAt: t.UTC(), Trigger: "schedule",
		Replica: oldReplica, Lock: in.Lock, Status: jobs.StatusAbandoned, NeverStarted: true}
	now := time.Now().UTC()
	old.End = &now
	old.Reason = fmt.Sprintf("replica %s claimed the tick but never started the process", oldReplica)
	note := fmt.Sprintf("the tick was run again as run %s by replica %s (misfire: run_once)", c.rec.RunID, m.replica)
	old.Reason += "; " + note
	ok, err := m.store.Takeover(ctx, RefOf(in), t, value, c.Value, old, in.History, note)
	if err != nil {
		m.redisError("takeover", err)
		return nil, false
	}
	if !ok {
		m.log.Debug("claimed tick not taken over: its run may have started, or the claim changed", "job", in.Name,
			"scheduled_at", t.UTC(), "old_run_id", oldID)
		return nil, false
	}
	c.rec.Reason = fmt.Sprintf("takeover: run %s of replica %s claimed this tick but never started its process", oldID, oldReplica)
	m.log.Warn("claimed tick never started: running it here (misfire: run_once)", "job", in.Name,
		"scheduled_at", t.UTC(), "run_id", c.rec.RunID, "old_run_id", oldID, "old_replica", oldReplica)
	return c, true
}

// ticksBetween lists up to limit fire times in (from, to], the latest ones.
func ticksBetween(in *jobs.Instance, from, to time.Time, limit int) []time.Time {
	var out []time.Time
	for t := in.Schedule.Next(from); !t.IsZero() && !t.After(to); t = in.Schedule.Next(t) {
		out = append(out, t)
		if len(out) > limit {
			out = out[1:]
		}
	}
	return out
}
