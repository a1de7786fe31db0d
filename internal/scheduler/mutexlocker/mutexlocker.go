// Package mutexlocker adapts internal/mutex to scheduler.Locker, so that
// the scheduler does not depend on the mutex package.
package mutexlocker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/scheduler"
)

// Locker is a scheduler.Locker on a mutex.Client.
type Locker struct{ c *mutex.Client }

// New returns a Locker on c.
func New(c *mutex.Client) *Locker { return &Locker{c: c} }

// ClaimAndLock claims and locks in one pipeline (one round trip); lost
// replies are settled by the mutex until ctx ends.
func (l *Locker) ClaimAndLock(ctx context.Context, reqs []scheduler.ClaimRequest) []scheduler.ClaimResult {
	ms := make([]*mutex.Mutex, len(reqs))
	cls := make([]mutex.SetNX, len(reqs))
	for i, r := range reqs {
		ms[i] = l.c.NewMutex(r.Lock, mutex.WithTTL(r.LockTTL), mutex.WithLabel(r.Label))
		cls[i] = mutex.SetNX{Key: r.ClaimKey, Value: r.ClaimValue, TTL: r.ClaimTTL, NotBefore: r.NotBefore, NotAfter: r.NotAfter}
	}
	out := make([]scheduler.ClaimResult, len(reqs))
	for i, err := range l.c.TryLockBatch(ctx, ms, cls) {
		switch {
		case err == nil:
			out[i] = scheduler.ClaimResult{Won: true, Lease: lease{ms[i]}}
		case errors.Is(err, mutex.ErrKeyTaken):
		case errors.Is(err, mutex.ErrNotObtained):
			out[i] = scheduler.ClaimResult{Won: true}
		case errors.Is(err, mutex.ErrOutsideWindow):
			out[i] = scheduler.ClaimResult{Err: fmt.Errorf("%w: %w", scheduler.ErrClockOffset, err)}
		default:
			out[i] = scheduler.ClaimResult{Err: err}
		}
	}
	return out
}

// Lock waits for the lock, woken by its release.
func (l *Locker) Lock(ctx context.Context, name string, ttl time.Duration, label string) (scheduler.Lease, error) {
	m := l.c.NewMutex(name, mutex.WithTTL(ttl), mutex.WithLabel(label))
	if err := m.Lock(ctx); err != nil {
		return nil, err
	}
	return lease{m}, nil
}

// Holder reads the lock's holder metadata.
func (l *Locker) Holder(ctx context.Context, name string) (scheduler.Holder, bool, error) {
	info, ok, err := l.c.Inspect(ctx, name)
	return scheduler.Holder{Owner: info.Owner, Label: info.Label, Fence: info.Fence, TTL: info.TTL}, ok, err
}

type lease struct{ m *mutex.Mutex }

func (l lease) Fence() int64 { return l.m.Fence() }

// Valid translates the mutex's verdict into jobs.ErrLockLost.
func (l lease) Valid() error {
	if err := l.m.Valid(); err != nil {
		return fmt.Errorf("%w: %w", jobs.ErrLockLost, err)
	}
	return nil
}
func (l lease) Unlock(ctx context.Context) error { return l.m.Unlock(ctx) }

// KeepAlive translates the mutex's lease-lost cause into jobs.ErrLockLost.
func (l lease) KeepAlive(ctx context.Context) (context.Context, func()) {
	kctx, stopRenew := l.m.KeepAlive(ctx)
	out, cancel := context.WithCancelCause(ctx)
	stopWatch := context.AfterFunc(kctx, func() {
		cause := context.Cause(kctx)
		if errors.Is(cause, mutex.ErrLost) {
			cause = fmt.Errorf("%w: %w", jobs.ErrLockLost, cause)
		}
		cancel(cause)
	})
	return out, func() {
		stopWatch()
		stopRenew()
		cancel(context.Canceled)
	}
}
