package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/scheduler"
)

// locker is the scheduler's Locker on a mutex.Client: wiring, so that the
// scheduler does not import the mutex, nor the mutex the scheduler. A
// *mutex.Mutex is a scheduler.Lease as it is.
type locker struct{ c *mutex.Client }

// ClaimAndLock claims and locks in one pipeline (one round trip): each
// claim is the SET NX key of its lock's acquisition. Lost replies are
// settled by the mutex until ctx ends; each claim's index is handed to settled as
// soon as its outcome is known.
func (l locker) ClaimAndLock(ctx context.Context, claims []*scheduler.Claim, settled func(i int)) {
	ms := make([]*mutex.Mutex, len(claims))
	keys := make([]mutex.SetNX, len(claims))
	for i, c := range claims {
		ms[i] = l.c.NewMutex(c.Lock, mutex.WithTTL(c.LockTTL), mutex.WithLabel(c.Label))
		keys[i] = mutex.SetNX{Key: c.Key, Value: c.Value, TTL: c.TTL, NotBefore: c.NotBefore, NotAfter: c.NotAfter}
	}
	l.c.TryLockBatch(ctx, ms, keys, mutex.OnSettled(func(i int, err error) {
		c := claims[i]
		switch {
		case err == nil:
			c.Won, c.Lease = true, ms[i]
		case errors.Is(err, mutex.ErrKeyTaken):
		case errors.Is(err, mutex.ErrNotObtained):
			c.Won = true
		case errors.Is(err, mutex.ErrOutsideWindow):
			c.Err = fmt.Errorf("%w: %w", scheduler.ErrClockOffset, err)
		case errors.Is(err, mutex.ErrNotReplicated):
			c.Won, c.Err = true, fmt.Errorf("%w: %w", scheduler.ErrNotReplicated, err)
		default:
			c.Err = err
		}
		if settled != nil {
			settled(i)
		}
	}))
}

// Lock waits for the lock, woken by its release.
func (l locker) Lock(ctx context.Context, name string, ttl time.Duration, label string) (scheduler.Lease, error) {
	m := l.c.NewMutex(name, mutex.WithTTL(ttl), mutex.WithLabel(label))
	if err := m.Lock(ctx); err != nil {
		if errors.Is(err, mutex.ErrNotReplicated) {
			err = fmt.Errorf("%w: %w", scheduler.ErrNotReplicated, err)
		}
		return nil, err
	}
	return m, nil
}

// Holder reads the lock's holder metadata.
func (l locker) Holder(ctx context.Context, name string) (scheduler.Holder, bool, error) {
	info, ok, err := l.c.Inspect(ctx, name)
	return scheduler.Holder{Owner: info.Owner, Label: info.Label, Fence: info.Fence, TTL: info.TTL}, ok, err
}
