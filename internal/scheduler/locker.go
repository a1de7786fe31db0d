// Package scheduler runs jobs on their ticks across replicas: every
// scheduled tick runs exactly once, and jobs that share a lock never
// overlap. Each tick is claimed in Redis under a key named after the tick's
// scheduled time (as Kubernetes CronJob names runs), together with the
// job's lock, in one round trip; the claim outlives the run, so a slower
// replica whose timer fires later cannot run the same tick again.
//
// The package imports jobs, declares the Locker it needs (mutexlocker
// adapts internal/mutex to it), and keeps its own Redis state in Store.
package scheduler

import (
	"context"
	"errors"
	"time"
)

// ErrClockOffset: Redis refused a new claim because its clock is outside
// the claim's window (ClaimRequest.NotBefore/NotAfter): this replica's
// clock is too far off. Nothing was changed.
var ErrClockOffset = errors.New("scheduler: clock too far from Redis's to claim")

// Locker is what the scheduler needs from a distributed lock.
type Locker interface {
	// ClaimAndLock claims each tick key and, where the claim is won, tries
	// the lock, in as few round trips as possible.
	ClaimAndLock(ctx context.Context, reqs []ClaimRequest) []ClaimResult
	// Lock waits for a lock until ctx ends.
	Lock(ctx context.Context, lock string, ttl time.Duration, label string) (Lease, error)
	// Holder tells who holds a lock.
	Holder(ctx context.Context, lock string) (Holder, bool, error)
}

// ClaimRequest asks for a tick claim and then a lock.
type ClaimRequest struct {
	ClaimKey   string
	ClaimValue string
	ClaimTTL   time.Duration
	Lock       string
	LockTTL    time.Duration
	Label      string
	// NotBefore and NotAfter bound, on Redis's clock, when a new claim may
	// be made (zero: no bound); outside them the result is ErrClockOffset.
	NotBefore, NotAfter time.Time
}

// ClaimResult: Won with a Lease means run now; Won without one means the
// tick is ours but the lock is held; not Won with a nil Err means another
// replica claimed the tick; Err means Redis failed and the outcome could
// not be settled (fail closed), or ErrClockOffset. A Locker must settle a
// lost reply (ask again with the same claim value and token) rather than
// report it as lost.
type ClaimResult struct {
	Won   bool
	Lease Lease
	Err   error
}

// Lease is a held lock.
type Lease interface {
	Fence() int64
	// Valid returns nil while the lease can still be trusted, and an
	// error matching jobs.ErrLockLost once it cannot: checked right before
	// a process starts.
	Valid() error
	// KeepAlive renews the lease until stop is called. The context ends
	// with a cause matching jobs.ErrLockLost when the lease is lost.
	KeepAlive(ctx context.Context) (context.Context, func())
	Unlock(ctx context.Context) error
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
