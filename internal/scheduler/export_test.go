package scheduler

import (
	"context"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
)

// TickKey exposes the claim key of a tick to the package's tests, which
// write claims the way a dead replica would have left them. The instance
// takes the default lock: its own name.
func TickKey(s *Store, instance string, t time.Time) string { return s.tickKey(Named(instance), t) }

// TickKeyOf is the claim key of tick t of an instance of r's lock.
func TickKeyOf(s *Store, r Ref, t time.Time) string { return s.tickKey(r, t) }

// Named is the Ref of an instance that takes the default lock, its own
// name.
func Named(instance string) Ref { return Ref{Instance: instance, Lock: instance} }

// NewRunID exposes a fresh run id to the tests that file trigger requests
// by hand.
func NewRunID(t time.Time) string { return newRunID(t) }

// RunningIDs exposes the run ids of the running index (as Store.running
// reads it, on every lock of locks and of the running-locks set) to the
// quorum tests.
func RunningIDs(ctx context.Context, s *Store, locks []string) ([]string, error) {
	m, err := s.running(ctx, locks)
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, err
}

// RunningKey exposes a lock's running index key to the quorum tests.
func RunningKey(s *Store, lock string) string { return s.runningKey(lock) }

// SubscribeTriggers exposes the trigger nudges' subscription to the
// quorum tests.
func SubscribeTriggers(ctx context.Context, s *Store) (<-chan *redis.Message, func()) {
	return s.subscribeTriggers(ctx)
}

// PendingTriggers exposes the pending requests to the quorum tests.
func PendingTriggers(ctx context.Context, s *Store) ([]TriggerRequest, error) {
	return s.pendingTriggers(ctx)
}

// TicksClaimed exposes the backups' probe (which claims' keys exist) to
// the probe's tests.
func TicksClaimed(ctx context.Context, s *Store, claims []*Claim) ([]bool, error) {
	return s.ticksClaimed(ctx, claims)
}
