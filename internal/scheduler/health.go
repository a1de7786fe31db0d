package scheduler

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/jobd/jobd/internal/jobs"
)

// health is what this replica knows of its Redis and its clock. The
// heartbeat measures the clock and reads Redis's settings; every component
// reports Redis errors here. Claims are refused while the clock is bad.
type health struct {
	limiter   limiter
	skew      atomic.Int64 // local minus Redis clock, ns
	clockBad  atomic.Bool  // |skew| > MaxClockOffset: no claims
	clockSeen atomic.Bool  // the clock was measured against Redis at least once
	mismatch  atomic.Bool  // a live replica has another config hash
	redisDown atomic.Bool
	warnings  atomic.Pointer[[]string] // Redis settings that weaken the guarantees
	peers     atomic.Pointer[[]string] // live replica ids, as the last heartbeat read them
}

// clockOK: measured, and within MaxClockOffset.
func (h *health) clockOK() bool { return h.clockSeen.Load() && !h.clockBad.Load() }

func (h *health) skewNow() time.Duration { return time.Duration(h.skew.Load()) }

func (h *health) warningList() []string {
	if w := h.warnings.Load(); w != nil {
		return *w
	}
	return nil
}

// redisError counts a failed Redis operation and logs the outage once
// (then every 30s while it lasts). A cancelled context is not Redis's
// fault: the replica is stopping.
func (c *core) redisError(op string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	c.observe(func(o Observer) { o.RedisError(op) })
	if !c.health.redisDown.Swap(true) {
		c.log.Error("redis unreachable: no claims and no new runs until it is back", "op", op, "err", err)
		c.health.limiter.allow("redis-error", 30*time.Second) // "still unreachable" 30s from now, not at the next failure
		return
	}
	if c.health.limiter.allow("redis-error", 30*time.Second) {
		c.log.Error("redis still unreachable", "op", op, "err", err)
	}
}

// redisOK notes a Redis operation that succeeded, ending an outage.
func (c *core) redisOK() {
	if c.health.redisDown.Swap(false) {
		c.log.Info("redis reachable again")
	}
}

// clockRefused logs (once a minute) and counts ticks not claimed because
// this replica's clock is too far from Redis's.
func (c *core) clockRefused(insts []*jobs.Instance, t time.Time) {
	for _, in := range insts {
		c.observe(func(o Observer) { o.ClockRefused(in.Name) })
	}
	if c.health.limiter.allow("clock-refused", time.Minute) {
		c.log.Error("not claiming ticks: the local clock is too far from Redis's", "scheduled_at", t.UTC(),
			"clock_offset", c.health.skewNow().Round(time.Millisecond), "max", MaxClockOffset, "hint", "run NTP")
	}
}
