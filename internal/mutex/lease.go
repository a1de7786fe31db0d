package mutex

// A held lease: whether it can still be trusted, and keep-alive.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Valid reports, on this process's monotonic clock, whether the hold can
// still be trusted: held, and within ttl minus the safety margin of the
// request that last set the lease. Check it right before work that must
// not start under a lease another owner may already have (after a pause,
// keep-alive's own timer may not have fired yet). It returns an ErrLost
// or ErrNotHeld error when not.
func (m *Mutex) Valid() error {
	token, since, ttl := m.lease()
	if token == "" {
		return fmt.Errorf("%w: %q", ErrNotHeld, m.name)
	}
	if time.Since(since) >= m.trusted(ttl) {
		return m.errUntrusted(ttl)
	}
	return nil
}

// errUntrusted is the ErrLost of a lease of length ttl that no renewal
// kept within its trusted time.
func (m *Mutex) errUntrusted(ttl time.Duration) error {
	return fmt.Errorf("%w: %q: no renewal succeeded for %v", ErrLost, m.name, m.trusted(ttl))
}

// ExpiresIn is about how long Redis keeps the lock if it is not released
// (a failed Unlock): the lease the last successful acquisition or renewal
// set, counted from when that request was sent; Redis counts from when it
// arrived, up to a round trip later. It is 0 when the handle holds
// nothing or the lease has run out. It never reveals the token.
func (m *Mutex) ExpiresIn() time.Duration {
	token, since, ttl := m.lease()
	if token == "" {
		return 0
	}
	return max(0, ttl-time.Since(since))
}

// lease returns the current hold: its token, when the request that last
// set its lease was sent, and that lease's length.
func (m *Mutex) lease() (token string, since time.Time, ttl time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.token, m.leaseAt, m.leaseTTL
}

// KeepAlive renews the lease every ttl/3 until stop is called or ctx ends.
// The returned context is cancelled, with an ErrLost cause, when a renewal
// is refused (another owner, or the key is gone) or when no renewal has
// succeeded for ttl minus the safety margin, measured on the monotonic
// clock from when the last successful request was sent. A lease already
// past that point is cancelled before KeepAlive returns, so a caller that
// checks the context before starting work never starts it under a lease
// it can no longer trust. stop waits for the renewing goroutine to exit.
func (m *Mutex) KeepAlive(ctx context.Context) (context.Context, func()) {
	kctx, cancel := context.WithCancelCause(ctx)
	token, _, _ := m.lease()
	if err := m.Valid(); err != nil {
		if errors.Is(err, ErrLost) {
			m.c.emit(EventLost, m.name)
		}
		cancel(err)
		return kctx, func() {}
	}
	stopc, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		m.keepAlive(kctx, cancel, stopc, token)
	}()
	var once sync.Once
	return kctx, func() {
		once.Do(func() {
			close(stopc)
			<-done
			cancel(context.Canceled)
		})
	}
}

// renewal is the lease length keep-alive asks for (see Mutex.renewTTL).
func (m *Mutex) renewal() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.renewTTL
}

// trusted is how long after a renewal was sent a lease of length ttl is
// trusted: ttl minus the safety margin (default ttl/5).
func (m *Mutex) trusted(ttl time.Duration) time.Duration {
	margin := m.cfg.margin
	if margin <= 0 || margin >= ttl {
		margin = ttl / 5
	}
	return ttl - margin
}

func (m *Mutex) keepAlive(ctx context.Context, cancel context.CancelCauseFunc, stop <-chan struct{}, token string) {
	_, since, ttl := m.lease()
	// The deadline fires on its own timer, so a renewal stuck on a hung
	// Redis cannot delay the cancellation. It always follows the lease
	// last set in Redis, by keep-alive or by an Extend.
	expire := time.AfterFunc(time.Until(since.Add(m.trusted(ttl))), func() {
		_, _, ttl := m.lease()
		m.c.emit(EventLost, m.name)
		cancel(m.errUntrusted(ttl))
	})
	defer expire.Stop()
	next := time.Until(since.Add(ttl / 3))
	for {
		t := time.NewTimer(next)
		select {
		case <-stop:
			t.Stop()
			return
		case <-ctx.Done():
			t.Stop()
			return
		case <-m.extended: // an Extend set a new lease: follow it
			t.Stop()
			_, since, ttl = m.lease()
			expire.Reset(time.Until(since.Add(m.trusted(ttl))))
			next = time.Until(since.Add(ttl / 3))
			continue
		case <-t.C:
		}
		rctx, rcancel := context.WithDeadline(ctx, since.Add(m.trusted(ttl)))
		err := m.extend(rctx, token, m.renewal())
		rcancel()
		switch {
		case err == nil:
			m.c.emit(EventRenewed, m.name)
			_, since, ttl = m.lease()
			expire.Reset(time.Until(since.Add(m.trusted(ttl))))
			next = ttl / 3
		case errors.Is(err, ErrLost):
			m.c.emit(EventLost, m.name)
			cancel(err)
			return
		case ctx.Err() != nil:
			return // stopped or cancelled mid-renewal
		default:
			m.c.emit(EventRenewFailed, m.name)
			m.c.log.Warn("mutex: lease renewal failed", "lock", m.name, "err", err)
			next = min(max(ttl/10, 20*time.Millisecond), time.Second)
		}
	}
}
