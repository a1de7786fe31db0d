package scheduler

import "time"

// TickKey exposes the claim key of a tick to the package's tests, which
// write claims the way a dead replica would have left them. The instance
// takes the default lock: its own name.
func TickKey(s *Store, instance string, t time.Time) string { return s.tickKey(Named(instance), t) }

// Named is the Ref of an instance that takes the default lock, its own
// name.
func Named(instance string) Ref { return Ref{Instance: instance, Lock: instance} }

// NewRunID exposes a fresh run id to the tests that file trigger requests
// by hand.
func NewRunID(t time.Time) string { return newRunID(t) }
