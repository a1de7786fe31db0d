package scheduler

import (
	"context"
	"sync"
	"time"

	"github.com/jobd/jobd/internal/jobs"
)

// ticker is the component that sleeps until the next fire time of any
// instance and claims everything due then. Each tick's claims run on
// their own goroutine (fire), so that a slow claim never delays the next
// tick; the ticker waits for them when it stops.
type ticker struct {
	*core
	claimer    *claimer
	tickClaims sync.WaitGroup // the goroutines claiming a tick (fire)
	loop
}

func (t *ticker) start(ctx context.Context) { t.loop.start(func() { t.run(ctx) }) }

// wait returns once the loop and the claims of every tick have returned.
func (t *ticker) wait() {
	t.loop.wait()
	t.tickClaims.Wait()
}

// pending is an instance's next fire time, and the schedule it was
// computed with (the instance's own strings: nothing is allocated per tick).
type pending struct {
	at       time.Time
	spec, tz string
}

// run fires ticks until ctx ends. Each instance keeps its pending fire
// time across reloads unless its schedule changed, so a reload (even one
// that lands on a tick) never drops or repeats a tick; a new or
// rescheduled instance starts from now.
func (t *ticker) run(ctx context.Context) {
	next := map[string]pending{}
	for {
		cfg := t.cfg.Load()
		earliest := t.plan(cfg, next)
		wait := time.Duration(1<<62 - 1) // nothing scheduled: wait for a reload
		if !earliest.IsZero() {
			wait = earliest.Sub(t.clock.Now())
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-t.reloaded:
			timer.Stop()
			continue // a tick that came due meanwhile fires at once (the daemon logs the reload)
		case <-timer.C:
		}
		var due []*jobs.Instance
		for _, in := range cfg.Instances {
			if p, ok := next[in.Name]; ok && p.at.Equal(earliest) {
				due = append(due, in)
				next[in.Name] = pending{in.Schedule.Next(earliest), p.spec, p.tz}
			}
		}
		t.tickClaims.Add(1)
		go func() {
			defer t.tickClaims.Done()
			defer t.recoverPanic("fire")
			t.fire(ctx, earliest, due)
		}()
	}
}

// plan brings next up to date with cfg (enabled instances only) and
// returns the earliest fire time (zero: none). It runs before every tick,
// so it allocates nothing unless the instances changed.
func (t *ticker) plan(cfg *jobs.Config, next map[string]pending) time.Time {
	now := t.clock.Now()
	var earliest time.Time
	scheduled := 0
	for _, in := range cfg.Instances {
		if !in.Enabled || in.Suspended {
			continue
		}
		scheduled++
		p, ok := next[in.Name]
		if !ok || p.spec != in.Schedule.Spec || p.tz != in.Timezone {
			p = pending{in.Schedule.Next(now), in.Schedule.Spec, in.Timezone}
			next[in.Name] = p
		}
		if !p.at.IsZero() && (earliest.IsZero() || p.at.Before(earliest)) {
			earliest = p.at
		}
	}
	// Every scheduled instance has its entry and instance names are
	// unique, so entries beyond their number belong to instances gone
	// from cfg (a reload): only then are they looked for.
	if len(next) > scheduled {
		keep := make(map[string]bool, scheduled)
		for _, in := range cfg.Instances {
			if in.Enabled && !in.Suspended {
				keep[in.Name] = true
			}
		}
		for name := range next {
			if !keep[name] {
				delete(next, name)
			}
		}
	}
	return earliest
}

// fire claims the tick at for the due instances. Every replica ranks the
// live replicas for each instance and tick by rendezvous hashing
// (owner.go): the first-ranked claims at once, the others later, each
// by its rank within the splay, in case the first is gone. So a tick
// runs within a round trip of its fire time, and the work spreads evenly;
// correctness still rests on the claim alone (replicas that disagree on
// who is alive just race on SET NX). Instances of one rank are claimed in
// one pipeline; a backup's group first reads which of its ticks are
// already claimed, in one round trip, and claims only the others
// (probe.go).
func (t *ticker) fire(ctx context.Context, at time.Time, due []*jobs.Instance) {
	peers := t.livePeers()
	groups := make([][]*jobs.Instance, len(peers))
	for _, in := range due {
		r := rank(peers, t.replica, in.Name, at)
		groups[r] = append(groups[r], in)
	}
	for r, group := range groups {
		if len(group) == 0 {
			continue
		}
		delay := time.Duration(0)
		if r > 0 {
			delay = t.splay * time.Duration(r) / time.Duration(len(peers)-1)
		}
		if !sleepCtx(ctx, at.Add(delay).Sub(t.clock.Now())) {
			return // stopping: claim nothing more
		}
		if t.health.clockBad.Load() {
			t.clockRefused(group, at)
			continue
		}
		claims := make([]*Claim, len(group))
		for i, in := range group {
			claims[i] = t.tickClaim(in, at, "schedule")
		}
		if r > 0 {
			// A backup: claim only what the replicas ranked before it
			// left unclaimed (probe.go), so that its turn costs one
			// read, not a claim per instance.
			if claims = t.claimer.unclaimed(ctx, claims); len(claims) == 0 {
				continue
			}
		}
		t.claimer.claim(ctx, claims)
	}
}
