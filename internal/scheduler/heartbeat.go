package scheduler

import (
	"context"
	"slices"
	"time"
)

// heartbeat is the component that publishes this replica every beatEvery,
// checks that live replicas agree on the config, measures the clock
// against Redis's and reads Redis's durability settings. It is started
// first, so that the clock is known before the first claim, and its
// heartbeat key is removed last, once the runs have ended.
type heartbeat struct {
	*core
	running func() []string // the runs of this replica, for the heartbeat
	// now asks for a heartbeat at once (after a reload, so that the new
	// config hash is published without waiting for the next beat).
	now chan struct{}
	// beaten is set once a heartbeat was written (the beat loop's only).
	beaten bool
	loop
}

func (b *heartbeat) start(ctx context.Context) {
	b.loop.start(func() { b.every(ctx, b.beatEvery, b.now, "heartbeat", b.beat) })
}

// beatSoon asks for a heartbeat now, without blocking.
func (b *heartbeat) beatSoon() {
	select {
	case b.now <- struct{}{}:
	default:
	}
}

// remove deletes the heartbeat (at the end of shutdown).
func (b *heartbeat) remove(ctx context.Context) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisTimeout)
	defer cancel()
	if err := b.store.RemoveBeat(rctx, b.replica, b.incarnation); err != nil {
		b.log.Warn("could not remove this replica's heartbeat: jobd status lists the replica as alive until the heartbeat expires",
			"expires_in", 3*b.beatEvery, "err", err)
	}
}

func (b *heartbeat) beat(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	cfg := b.cfg.Load()
	b.checkClock(ctx)
	b.checkDurability(ctx)
	h := b.health
	hb := Heartbeat{ID: b.replica, Host: b.host, PID: b.pid, Version: b.version, StartedAt: b.started.UTC(),
		ConfigHash: cfg.Hash, Running: b.running(), BeatAt: time.Now().UTC(), Incarnation: b.incarnation,
		ClockOffset: h.skewNow(), ClockOK: h.clockOK(), Warnings: h.warningList()}
	prev, err := b.store.Beat(ctx, hb, 3*b.beatEvery)
	if err != nil {
		b.redisError("heartbeat", err)
		return
	}
	b.redisOK()
	// This replica wrote the heartbeat it replaced, unless another process
	// runs under the same id (the first beat may replace the one of a
	// predecessor that stopped).
	if first := !b.beaten; !first && prev != nil && prev.Incarnation != b.incarnation && h.limiter.allow("duplicate-id", time.Minute) {
		b.log.Error("another process runs under this replica's id: replica ids must be unique (status shows one of the two, and each may hide the other's runs)",
			"other_host", prev.Host, "other_pid", prev.PID, "host", b.host, "pid", b.pid)
	}
	b.beaten = true
	peers, err := b.store.Replicas(ctx)
	if err != nil {
		return
	}
	mismatch := false
	ids := make([]string, 0, len(peers))
	for _, p := range peers {
		ids = append(ids, p.ID)
		if p.ConfigHash != cfg.Hash {
			mismatch = true
			if h.limiter.allow("mismatch-"+p.ID, time.Minute) {
				b.log.Warn("replicas run different configs: ticks may run twice or not at all until they agree",
					"peer", p.ID, "peer_config_hash", short(p.ConfigHash), "config_hash", short(cfg.Hash))
			}
		}
	}
	h.mismatch.Store(mismatch)
	h.peers.Store(&ids)
}

// checkClock measures local minus Redis time, halving the round trip, at
// every heartbeat. Beyond MaxClockOffset this replica stops claiming
// ticks (Redis would refuse most of its claims anyway) until the clock
// is back; beyond skewWarn it warns once a minute.
func (b *heartbeat) checkClock(ctx context.Context) {
	before := time.Now()
	redisNow, err := b.store.Time(ctx)
	if err != nil {
		return
	}
	rtt := time.Since(before)
	skew := before.Add(rtt / 2).Sub(redisNow)
	if mine, ok := b.clock.(interface{ Skew() time.Duration }); ok {
		skew += mine.Skew() // an injected clock's own offset
	}
	h := b.health
	h.skew.Store(int64(skew))
	h.clockSeen.Store(true)
	bad := skew > MaxClockOffset || skew < -MaxClockOffset
	switch was := h.clockBad.Swap(bad); {
	case bad && !was:
		b.log.Error("local clock is too far from Redis's: not claiming ticks until it is back within bounds",
			"clock_offset", skew.Round(time.Millisecond), "max", MaxClockOffset, "hint", "run NTP")
	case !bad && was:
		b.log.Info("local clock is back within bounds: claiming again", "clock_offset", skew.Round(time.Millisecond))
	case skew > skewWarn || skew < -skewWarn:
		if h.limiter.allow("clock-warn", skewWarnEvery) {
			b.log.Warn("local clock differs from Redis's", "clock_offset", skew.Round(time.Millisecond),
				"hint", "runs start late or early; run NTP")
		}
	}
}

// checkDurability reads Redis's persistence and eviction settings at
// every heartbeat and warns (log, Warnings, heartbeat, status) where they
// weaken the guarantees: fences that go backwards and claims that vanish.
// A warning is logged when it appears, and again every hour while it lasts.
func (b *heartbeat) checkDurability(ctx context.Context) {
	w, err := b.store.Durability(ctx)
	if err != nil {
		return
	}
	h := b.health
	old := h.warningList()
	h.warnings.Store(&w)
	for _, msg := range w {
		if again := h.limiter.allow("durability "+msg, time.Hour); again || !slices.Contains(old, msg) {
			b.log.Warn("redis settings weaken jobd's guarantees", "warning", msg)
		}
	}
	for _, msg := range old {
		if !slices.Contains(w, msg) {
			b.log.Info("redis setting fixed", "was", msg)
		}
	}
}
