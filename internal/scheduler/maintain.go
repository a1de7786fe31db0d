package scheduler

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jobd/jobd/internal/jobs"
)

// heartbeat publishes this replica, checks that live replicas agree on the
// config, and compares the local clock with Redis.
func (s *Scheduler) heartbeat(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	cfg := s.cfg.Load()
	s.checkClock(ctx)
	s.checkDurability(ctx)
	hb := Heartbeat{ID: s.replica, Host: s.host, PID: s.pid, Version: s.version, StartedAt: s.started.UTC(),
		ConfigHash: cfg.Hash, Running: s.Running(), BeatAt: time.Now().UTC(), Incarnation: s.incarnation,
		ClockOffset: s.ClockSkew(), ClockOK: s.ClockOK(), Warnings: s.Warnings()}
	if err := s.store.Beat(ctx, hb, 3*s.beatEvery); err != nil {
		s.redisError("heartbeat", err)
		return
	}
	s.redisOK()
	if peers, err := s.store.Replicas(ctx); err == nil {
		mismatch := false
		for _, p := range peers {
			if p.ConfigHash != cfg.Hash {
				mismatch = true
				if s.limiter.allow("mismatch-"+p.ID, time.Minute) {
					s.log.Warn("replicas run different configs: ticks may run twice or not at all until they agree",
						"peer", p.ID, "peer_config_hash", short(p.ConfigHash), "config_hash", short(cfg.Hash))
				}
			}
		}
		s.mismatch.Store(mismatch)
	}
}

// checkClock measures local minus Redis time, halving the round trip, at
// every heartbeat. Beyond MaxClockOffset this replica stops claiming
// ticks (Redis would refuse most of its claims anyway) until the clock
// is back; beyond skewWarn it warns once a minute.
func (s *Scheduler) checkClock(ctx context.Context) {
	before := time.Now()
	redisNow, err := s.store.Time(ctx)
	if err != nil {
		return
	}
	rtt := time.Since(before)
	skew := before.Add(rtt / 2).Sub(redisNow)
	if mine, ok := s.clock.(interface{ Skew() time.Duration }); ok {
		skew += mine.Skew() // an injected clock's own offset
	}
	s.skew.Store(int64(skew))
	s.clockKnown.Store(true)
	bad := skew > MaxClockOffset || skew < -MaxClockOffset
	switch was := s.clockBad.Swap(bad); {
	case bad && !was:
		s.log.Error("local clock is too far from Redis's: not claiming ticks until it is back within bounds",
			"clock_offset", skew.Round(time.Millisecond), "max", MaxClockOffset, "hint", "run NTP")
	case !bad && was:
		s.log.Info("local clock is back within bounds: claiming again", "clock_offset", skew.Round(time.Millisecond))
	case skew > skewWarn || skew < -skewWarn:
		if s.limiter.allow("clock-warn", skewWarnEvery) {
			s.log.Warn("local clock differs from Redis's", "clock_offset", skew.Round(time.Millisecond),
				"hint", "runs start late or early; run NTP")
		}
	}
}

// checkDurability reads Redis's persistence and eviction settings at
// every heartbeat and warns (log, Warnings, heartbeat, status) where they
// weaken the guarantees: fences that go backwards and claims that vanish.
// A warning is logged when it appears, and again every hour while it lasts.
func (s *Scheduler) checkDurability(ctx context.Context) {
	w, err := s.store.Durability(ctx)
	if err != nil {
		return
	}
	old := s.Warnings()
	s.warnings.Store(&w)
	for _, msg := range w {
		if again := s.limiter.allow("durability "+msg, time.Hour); again || !slices.Contains(old, msg) {
			s.log.Warn("redis settings weaken jobd's guarantees", "warning", msg)
		}
	}
	for _, msg := range old {
		if !slices.Contains(w, msg) {
			s.log.Info("redis setting fixed", "was", msg)
		}
	}
}

// maintain marks runs of dead replicas abandoned and runs missed ticks of
// misfire: run_once instances.
func (s *Scheduler) maintain(ctx, runs context.Context) {
	s.abandonDead(ctx)
	s.runMissed(ctx, runs)
}

// abandonDead marks abandoned every run in the running index whose lock
// has expired (or, while it waited for its lock, whose replica is gone).
func (s *Scheduler) abandonDead(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	entries, err := s.store.running(ctx)
	if err != nil {
		s.redisError("scan running", err)
		return
	}
	var alive map[string]string // replica id -> live incarnation
	for id, en := range entries {
		if en.Replica == s.replica && (s.isActive(id) || en.Incarnation == s.incarnation) {
			continue
		}
		var reason string
		waiting := en.Fence == 0
		if waiting { // waiting for its lock: alive while its incarnation is
			if alive == nil {
				alive = map[string]string{}
				peers, err := s.store.Replicas(ctx)
				if err != nil {
					return
				}
				for _, p := range peers {
					alive[p.ID] = p.Incarnation
				}
			}
			inc, up := alive[en.Replica]
			if en.Replica == s.replica {
				inc, up = s.incarnation, true
			}
			if up && (en.Incarnation == "" || en.Incarnation == inc) {
				continue
			}
			reason = fmt.Sprintf("replica %s stopped while the run waited for its lock; the process never started", en.Replica)
		} else {
			h, held, err := s.locker.Holder(ctx, en.Lock)
			if err != nil || (held && h.Fence == en.Fence) {
				continue
			}
			reason = fmt.Sprintf("replica %s stopped during the run; its lock %q expired; the process may have run, so the tick is not run again", en.Replica, en.Lock)
		}
		if ok, err := s.store.abandon(ctx, id, en, reason, waiting); err == nil && ok {
			s.log.Warn("run abandoned", "job", en.Instance, "run_id", id, "lock", en.Lock, "reason", reason)
			s.finished(Record{RunID: id, Instance: en.Instance, Status: jobs.StatusAbandoned}, 0)
		}
	}
}

// missGrace is how old an unclaimed tick must be before misfire handling
// treats it as missed, so that the normal path always claims first.
func (s *Scheduler) missGrace() time.Duration { return 3*time.Second + s.splay }

// runMissed implements misfire: run_once. For each such instance, the
// most recent tick within starting_deadline is looked at: nobody claimed
// it, so it is claimed and run once; or its claimer died (or was cut off)
// before starting the process, so it is taken over and run once. A tick
// whose process may have started is never run again. Older misses are
// counted and logged, not run.
func (s *Scheduler) runMissed(ctx, runs context.Context) {
	if s.clockBad.Load() {
		return
	}
	cfg := s.cfg.Load()
	now := s.clock.Now()
	var missed []claimItem
	for _, in := range cfg.Instances {
		if in.Misfire != jobs.MisfireRunOnce || !in.Enabled || in.Suspended {
			continue
		}
		ticks := ticksBetween(in, now.Add(-in.StartingDeadline), now.Add(-s.missGrace()), 101)
		if len(ticks) == 0 {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, redisTimeout)
		values, err := s.store.claims(qctx, in.Name, ticks)
		cancel()
		if err != nil {
			s.redisError("misfire check", err)
			return
		}
		last := len(ticks) - 1
		t := ticks[last]
		if v := values[last]; v != "" {
			if it, ok := s.takeOver(ctx, in, t, v); ok {
				missed = append(missed, it)
			}
			continue
		}
		older := 0
		for _, v := range values[:last] {
			if v == "" {
				older++
			}
		}
		s.log.Warn("missed tick: running it once (misfire: run_once)", "job", in.Name,
			"scheduled_at", t.UTC(), "older_missed_not_run", older)
		missed = append(missed, s.tickItem(in, t, "misfire"))
	}
	if len(missed) > 0 {
		s.claimItems(ctx, runs, missed)
	}
}

// takeOver looks at a claimed tick: if the claiming run never started and
// cannot start any more (no record, or abandoned or lease-lost before its
// process started; and it does not hold the job's lock), the claim is
// given to a new run, which is returned. The old claimer writes its
// running record only while the claim is still its own, so after the
// takeover it can never start.
func (s *Scheduler) takeOver(ctx context.Context, in *jobs.Instance, t time.Time, value string) (claimItem, bool) {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	oldID, oldReplica := claimRunID(value), claimReplica(value)
	rec, found, err := s.store.Record(ctx, in.Name, oldID)
	if err != nil {
		s.redisError("misfire check", err)
		return claimItem{}, false
	}
	if found && !rec.NeverStarted {
		return claimItem{}, false // ran, runs, waits or was skipped: its tick is done
	}
	if !found {
		// The claimer may still be on its way: it holds the lock from
		// the claim until its run ends, so wait for the lock to go.
		h, held, err := s.locker.Holder(ctx, in.Lock)
		if err != nil || (held && strings.Contains(h.Label, "run="+oldID)) {
			return claimItem{}, false
		}
	}
	it := s.tickItem(in, t, "misfire")
	it.windowed = false // the claim exists; only its value changes
	old := &Record{RunID: oldID, Instance: in.Name, Job: in.Job, ScheduledAt: t.UTC(), Trigger: "schedule",
		Replica: oldReplica, Lock: in.Lock, Status: jobs.StatusAbandoned, NeverStarted: true}
	now := time.Now().UTC()
	old.End = &now
	old.Reason = fmt.Sprintf("replica %s claimed the tick but never started the process", oldReplica)
	note := fmt.Sprintf("the tick was run again as run %s by replica %s (misfire: run_once)", it.runID, s.replica)
	old.Reason += "; " + note
	ok, err := s.store.Takeover(ctx, in.Name, t, value, it.value, old, in.History, note)
	if err != nil {
		s.redisError("takeover", err)
		return claimItem{}, false
	}
	if !ok {
		s.log.Debug("claimed tick not taken over: its run may have started, or the claim changed", "job", in.Name,
			"scheduled_at", t.UTC(), "old_run_id", oldID)
		return claimItem{}, false
	}
	it.reason = fmt.Sprintf("takeover: run %s of replica %s claimed this tick but never started its process", oldID, oldReplica)
	s.log.Warn("claimed tick never started: running it here (misfire: run_once)", "job", in.Name,
		"scheduled_at", t.UTC(), "run_id", it.runID, "old_run_id", oldID, "old_replica", oldReplica)
	return it, true
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

// limiter allows an action once per interval per key (rate-limited logs).
type limiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (l *limiter) allow(key string, every time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	if t, ok := l.last[key]; ok && time.Since(t) < every {
		return false
	}
	l.last[key] = time.Now()
	return true
}
