package scheduler

import (
	"context"
	"fmt"
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
	hb := Heartbeat{ID: s.replica, Host: s.host, PID: s.pid, Version: s.version, StartedAt: s.started.UTC(),
		ConfigHash: cfg.Hash, Running: s.Running(), BeatAt: time.Now().UTC()}
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
	if s.limiter.allow("clock-check", clockCheckEvery) {
		s.checkClock(ctx)
	}
}

// checkClock measures local minus Redis time, halving the round trip.
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
	if skew > skewWarn || skew < -skewWarn {
		s.log.Warn("local clock differs from Redis's", "skew", skew.Round(time.Millisecond),
			"hint", "claims stay correct, but runs start late or early; run NTP")
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
	var alive map[string]bool
	for id, en := range entries {
		if en.Replica == s.replica && s.isActive(id) {
			continue
		}
		var reason string
		if en.Fence == 0 { // waiting for its lock: alive while its replica is
			if alive == nil {
				alive = map[string]bool{}
				peers, err := s.store.Replicas(ctx)
				if err != nil {
					return
				}
				for _, p := range peers {
					alive[p.ID] = true
				}
			}
			if alive[en.Replica] {
				continue
			}
			reason = fmt.Sprintf("replica %s stopped while the run waited for its lock", en.Replica)
		} else {
			h, held, err := s.locker.Holder(ctx, en.Lock)
			if err != nil || (held && h.Fence == en.Fence) {
				continue
			}
			reason = fmt.Sprintf("replica %s stopped during the run; its lock %q expired", en.Replica, en.Lock)
		}
		if ok, err := s.store.abandon(ctx, id, en, reason); err == nil && ok {
			s.log.Warn("run abandoned", "job", en.Instance, "run_id", id, "lock", en.Lock, "reason", reason)
			call2(s.hooks.RunFinished, Record{RunID: id, Instance: en.Instance, Status: StatusAbandoned}, 0)
		}
	}
}

// missGrace is how old an unclaimed tick must be before misfire handling
// treats it as missed, so that the normal path always claims first.
func (s *Scheduler) missGrace() time.Duration { return 3*time.Second + s.splay }

// runMissed implements misfire: run_once. For each such instance, the most
// recent tick within starting_deadline that nobody claimed is claimed and
// run once (all of them in one pipeline); older misses are counted and
// logged, not run.
func (s *Scheduler) runMissed(ctx, runs context.Context) {
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
		exists, err := s.store.claimsExist(qctx, in.Name, ticks)
		cancel()
		if err != nil {
			s.redisError("misfire check", err)
			return
		}
		last := len(ticks) - 1
		if exists[last] {
			continue
		}
		older := 0
		for _, ok := range exists[:last] {
			if !ok {
				older++
			}
		}
		s.log.Warn("missed tick: running it once (misfire: run_once)", "job", in.Name,
			"scheduled_at", ticks[last].UTC(), "older_missed_not_run", older)
		t := ticks[last]
		missed = append(missed, claimItem{in: in, at: t, runID: newRunID(t), claimKey: s.store.tickKey(in.Name, t), trigger: "misfire"})
	}
	if len(missed) > 0 {
		s.claimItems(ctx, runs, missed)
	}
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
