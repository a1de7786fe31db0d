package mutex

// Waiting for a lock (notified, or polling as WithRetry asks), and
// settling operations whose reply was lost.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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

// waitNotified queues the caller in Redis and sleeps until the release
// names it, its retry timer fires, or ctx ends.
func (m *Mutex) waitNotified(ctx context.Context, token string, lastErr error) error {
	waiter := randomID()
	var wake <-chan time.Duration
	if n := m.c.getNotifier(); n != nil {
		var unregister func()
		wake, unregister = n.register(ctx, m.k.channel, waiter)
		defer unregister()
	}
	backoff := 50 * time.Millisecond
	for {
		ok, hint, err := m.acquire(ctx, token, waiter)
		if ok {
			return nil
		}
		var d time.Duration
		if err != nil {
			// Redis unreachable: retry with capped backoff until ctx ends.
			lastErr, d = err, backoff
			backoff = min(2*backoff, time.Second)
		} else {
			backoff = 50 * time.Millisecond
			// Past the lease, plus a little jitter so that waiters whose
			// holder died do not all retry in the same millisecond.
			d = hint + time.Millisecond + rand.N(hint/20+time.Millisecond)
		}
		if !m.sleepUntilWoken(ctx, wake, d) {
			m.leave(ctx, waiter, token)
			return m.notObtained(ctx, lastErr)
		}
	}
}

// sleepUntilWoken waits for d, or for a wake-up: 0 means "your turn, try
// now", a positive value means "try after this long at the latest" (the
// second waiter covering for a head that may have died). It returns false
// when ctx ends.
func (m *Mutex) sleepUntilWoken(ctx context.Context, wake <-chan time.Duration, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	deadline := time.Now().Add(d)
	for {
		select {
		case after := <-wake:
			if after <= 0 {
				return true
			}
			if at := time.Now().Add(after); at.Before(deadline) {
				deadline = at
				t.Reset(after)
			}
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
}

// leave dequeues a waiter that gave up, drops a hold that token may have
// taken without hearing the reply and, if the lock is free, passes the
// turn on; best effort, since a stale entry (and a lease) expires by itself.
func (m *Mutex) leave(ctx context.Context, waiter, token string) {
	if m.c.quorum() { // no queue there: drop the holds
		m.c.takeBack(ctx, undo{attempt{m: m, token: m.quorumToken(token)}, false})
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaveTimeout)
	defer cancel()
	_ = leaveScript.Run(ctx, m.c.rdb, []string{m.k.lock, m.k.queue, m.k.leases},
		waiter, m.k.channel, handoffWindow.Milliseconds(), token, "0").Err()
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
	if err == nil || errors.Is(err, ErrNotReplicated) {
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
