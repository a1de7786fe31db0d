// Package scheduler runs jobs on their ticks across replicas: every
// scheduled tick runs exactly once, and jobs that share a lock never
// overlap. Each tick is claimed in Redis under a key named after the tick's
// scheduled time (as Kubernetes CronJob names runs), together with the
// job's lock, in one round trip; the claim outlives the run, so a slower
// replica whose timer fires later cannot run the same tick again.
//
// The package imports jobs, declares the Locker it needs (cmd/jobd adapts
// internal/mutex to it), and keeps its own Redis state in Store.
package scheduler

import (
	"context"
	"errors"
	"time"
)

// ErrClockOffset: Redis refused a new claim because its clock is outside
// the claim's window (Claim.NotBefore/NotAfter): this replica's clock is
// too far off. Nothing was changed.
var ErrClockOffset = errors.New("scheduler: clock too far from Redis's to claim")

// ErrLeaseLost: a run's lease could no longer be trusted right before its
// process would start, so it was not started. The run is recorded as
// lock_lost, like one whose keep-alive gave up on the lease (a cause
// that reaches the run as its context's cause).
var ErrLeaseLost = errors.New("scheduler: lease lost")

// ErrNotReplicated: the claim (and lock) were taken, but fewer replicas
// than redis.min_replicas_acked acknowledged them in time; a failover
// could lose them, so the run is not started (fail closed) and is
// recorded as skipped. The Locker releases the lock.
var ErrNotReplicated = errors.New("scheduler: claim not acknowledged by enough Redis replicas")

// Locker is what the scheduler needs from a distributed lock.
type Locker interface {
	// ClaimAndLock claims each claim's key and, where the claim is won,
	// tries its lock, in as few round trips as possible, and fills in each
	// claim's Won, Lease and Err (see Claim). It calls settled(i) (unless
	// settled is nil) as soon as claims[i] is filled in, before it
	// returns, one claim at a time: a claim whose reply was lost, still
	// being asked again, does not hold back the others.
	ClaimAndLock(ctx context.Context, claims []*Claim, settled func(i int))
	// Lock waits for a lock until ctx ends.
	Lock(ctx context.Context, lock string, ttl time.Duration, label string) (Lease, error)
	// Holder tells who holds a lock.
	Holder(ctx context.Context, lock string) (Holder, bool, error)
}

// Lease is a held lock (*mutex.Mutex is one).
type Lease interface {
	Fence() int64
	// Valid returns nil while the lease can still be trusted: checked
	// right before a process starts.
	Valid() error
	// KeepAlive renews the lease until stop is called. The context ends
	// only when the lease is lost (with the reason as its cause).
	KeepAlive(ctx context.Context) (context.Context, func())
	Unlock(ctx context.Context) error
	// ExpiresIn is about how long Redis keeps the lock if Unlock failed.
	ExpiresIn() time.Duration
}

// Holder describes who holds a lock.
type Holder struct {
	Owner string
	Label string
	Fence int64
	TTL   time.Duration
}

// Clock tells the time; tests inject a skewed one.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
