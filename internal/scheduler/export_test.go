package scheduler

import "time"

// TickKey exposes the claim key of a tick to the package's tests, which
// write claims the way a dead replica would have left them.
func TickKey(s *Store, instance string, t time.Time) string { return s.tickKey(instance, t) }

// NewRunID exposes a fresh run id to the tests that file trigger requests
// by hand.
func NewRunID(t time.Time) string { return newRunID(t) }
