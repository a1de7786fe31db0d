package mutex

// Waiting for a lock (notified, or polling as WithRetry asks), and
// settling operations whose reply was lost.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// poll is the WithRetry policy.
func (m *Mutex) poll(ctx context.Context, token string, lastErr error) error {
	for i := 0; i < m.cfg.retries; i++ {
		d := m.cfg.retryDelay/2 + rand.N(m.cfg.retryDelay+1)
		if !sleep(ctx, d) {
			break
		}
		ok, _, err := m.acquire(ctx, token, "")
		if ok {
			return nil
		}
		if err != nil {
			lastErr = err
		}
	}
	if lastErr != nil {
		m.leave(ctx, "", token) // drop a hold we may have taken unheard
	}
	return m.notObtained(ctx, lastErr)
}

// waitNotified queues the caller in Redis and sleeps until a release
// hands it the lock, names it, its retry timer fires, or ctx ends.
func (m *Mutex) waitNotified(ctx context.Context, token string, lastErr error) error {
	waiter := randomID()
	entry := m.waiterEntry(waiter, token)
	var wake <-chan wakeup
	if n := m.c.getNotifier(); n != nil {
		var unregister func()
		wake, unregister = n.register(ctx, m.k.channel, waiter)
		defer unregister()
	}
	backoff := 50 * time.Millisecond
	// busyAt is when the last attempt that found the lock taken was sent,
	// and busy what it found. A handoff message whose fence is larger than
	// busy.fence, and whose Redis time is no earlier than busy.at, was
	// sent by a release that ran after that attempt (see acquire.lua), so
	// the lease it set lasts at least until busyAt plus its length. Any
	// other is stale: a handoff this waiter did not take up in time (it
	// was paused), whose lease lapsed and which another holder followed;
	// the time also tells when a Redis restart without persistence reset
	// the fences in between (the second review).
	var (
		busyAt time.Time
		busy   refusal
	)
	for {
		sent := time.Now()
		ok, b, err := m.acquire(ctx, token, entry)
		if ok {
			return nil
		}
		var d time.Duration
		if err != nil {
			// Redis unreachable: retry with capped backoff until ctx ends.
			lastErr, d = err, backoff
			backoff = min(2*backoff, time.Second)
		} else {
			busyAt, busy, backoff = sent, b, 50*time.Millisecond
			// Past the lease, plus a little jitter so that waiters whose
			// holder died do not all retry in the same millisecond.
			d = b.retry + time.Millisecond + rand.N(b.retry/20+time.Millisecond)
		}
		w, woken := m.sleepUntilWoken(ctx, wake, d)
		if !woken {
			m.leave(ctx, entry, token)
			return m.notObtained(ctx, lastErr)
		}
		if w.fence > busy.fence && w.at >= busy.at && m.handedOver(token, w.fence, busyAt) {
			return nil
		}
	}
}

// waiterEntry is the caller's entry in the waiter queue: what a release
// needs to make it the holder (see release.lua).
func (m *Mutex) waiterEntry(waiter, token string) string {
	b, err := json.Marshal([]string{waiter, token, strconv.FormatInt(m.cfg.ttl.Milliseconds(), 10),
		m.c.owner, m.c.host, m.c.pid, m.cfg.label})
	if err != nil {
		panic(err) // strings always marshal
	}
	return string(b)
}

// handedOver takes a hold that a release handed to token with fence, a
// release that ran after the attempt sent at busyAt (the caller checked
// the fence). Its first lease, min(ttl, handoffWindow), started after
// busyAt, so the hold is trusted as if acquired then. It reports false, and the waiter
// confirms with an acquire instead (which finds the lock ours and renews
// it), when that lease can no longer be trusted (the waiter slept long
// since its last attempt) or when replicas must acknowledge the hold
// first (WithReplicaWait: the release's write is not on this connection).
func (m *Mutex) handedOver(token string, fence int64, busyAt time.Time) bool {
	lease := min(m.cfg.ttl, handoffWindow)
	if m.c.replicas > 0 || busyAt.IsZero() || time.Since(busyAt) >= m.trusted(lease) {
		return false
	}
	m.hold(token, fence, busyAt, lease)
	return true
}

// sleepUntilWoken waits for d, or for a wake-up: a handoff, "your turn,
// try now" (after 0), or "try after this long at the latest" (the second
// waiter covering for a head that may have died). It returns false when
// ctx ends.
func (m *Mutex) sleepUntilWoken(ctx context.Context, wake <-chan wakeup, d time.Duration) (wakeup, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	deadline := time.Now().Add(d)
	for {
		select {
		case w := <-wake:
			if w.fence > 0 || w.after <= 0 {
				return w, true
			}
			if at := time.Now().Add(w.after); at.Before(deadline) {
				deadline = at
				t.Reset(w.after)
			}
		case <-t.C:
			return wakeup{}, true
		case <-ctx.Done():
			return wakeup{}, false
		}
	}
}

// leave dequeues a waiter that gave up (its entry), drops a hold that
// token may have taken or been handed without hearing of it and, if the
// lock is free, hands it on (release.lua); best effort, since a stale
// entry (and a lease) expires by itself.
func (m *Mutex) leave(ctx context.Context, entry, token string) {
	if m.c.quorum() { // no queue there: drop the holds
		m.c.takeBack(ctx, undo{attempt{m: m, token: m.quorumToken(token)}, false})
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaveTimeout)
	defer cancel()
	_ = releaseScript.Run(ctx, m.c.rdb, m.releaseKeys(token), m.releaseArgs(token, entry)...).Err()
}

func (m *Mutex) notObtained(ctx context.Context, last error) error {
	err := fmt.Errorf("%w: %q", ErrNotObtained, m.name)
	if cerr := ctx.Err(); cerr != nil {
		err = fmt.Errorf("%w: %q: %w", ErrNotObtained, m.name, cerr)
	}
	if last != nil {
		err = fmt.Errorf("%w (last error: %w)", err, last)
	}
	return err
}

// settle runs op until its outcome is known: op returned nil or Redis's
// own error reply. An unknown outcome (timeout, reset connection: the
// command may have run) is asked again, for up to limit or until ctx
// ends; op must be safe to run twice.
func settle(ctx context.Context, limit time.Duration, op func(ctx context.Context) error) error {
	deadline := time.Now().Add(limit)
	backoff := 20 * time.Millisecond
	for {
		err := op(ctx)
		if !unknownOutcome(err) || time.Now().Add(backoff).After(deadline) || !sleep(ctx, backoff) {
			return err
		}
		backoff = min(2*backoff, time.Second)
	}
}

// unknownOutcome reports whether err leaves it open whether the command
// ran, or says that it did not run yet (notRunYet): anything but Redis's
// own reply (an error reply such as NOPERM, or redis.Nil) may have lost a
// reply to a command that ran; settle asks both again.
func unknownOutcome(err error) bool {
	if err == nil || errors.Is(err, ErrNotReplicated) || errors.Is(err, ErrTooSlow) {
		return false
	}
	if errors.Is(err, ErrNoQuorum) { // masters that did not answer could still make a majority
		return true
	}
	var re redis.Error
	return !errors.As(err, &re) || notRunYet(err)
}

// notRunYet reports whether err is a Redis error reply that says the
// command did not run and may succeed if asked again: a Redis Cluster slot
// in migration (TRYAGAIN, or ASK/MOVED once go-redis's redirects ran
// out), a cluster or master that is down for a moment (CLUSTERDOWN,
// MASTERDOWN), a server loading its data (LOADING). Asking again is as
// safe as after a lost reply.
func notRunYet(err error) bool {
	for _, p := range []string{"TRYAGAIN", "ASK", "MOVED", "CLUSTERDOWN", "MASTERDOWN", "LOADING"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// sleep waits d or until ctx ends; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
