package mutex

import (
	"errors"
	"fmt"
)

// The sentinels below match the seed article's error types, checked with
// errors.Is. Its SetnxError has no counterpart: it reported a SETNX/GET race
// (the key vanished between the two calls) that cannot happen here, because
// every acquisition is a single atomic Lua script.
var (
	// ErrAlreadyHeld: Lock or TryLock on a handle that already holds its
	// lock (the seed's DuplicateLockError). Use another handle to wait.
	ErrAlreadyHeld = errors.New("mutex: already held by this handle")

	// ErrNotHeld: Unlock or Extend on a handle that does not hold its lock
	// (the seed's HasNotLockError).
	ErrNotHeld = errors.New("mutex: not held")

	// ErrLost: the lease ran out, or another owner holds the lock now
	// (the seed's ExpiredLockError). Keep-alive also uses it as the cause
	// of the holder's context when the lease can no longer be trusted.
	ErrLost = errors.New("mutex: lock lost")

	// ErrNotObtained: the lock was not obtained in time (the seed's
	// LockError). When the context ended the wait, the error also matches
	// context.Canceled or context.DeadlineExceeded.
	ErrNotObtained = errors.New("mutex: not obtained")

	// ErrClaimTaken: TryLockClaim found its claim key already set; someone
	// else claimed that work, and the lock was not touched.
	ErrClaimTaken = errors.New("mutex: claim already taken")

	// ErrClaimWindow: a new claim was refused because Redis's clock is
	// outside the window the claim allows (Claim.NotBefore/NotAfter): the
	// claimer's clock is too far off for its claim to be seen in time by
	// the others. Nothing was changed.
	ErrClaimWindow = errors.New("mutex: claim outside its time window (clock offset)")

	// ErrBadName: the lock name is empty or starts with '}', which would
	// leave its Redis Cluster hash tag empty (see ValidName).
	ErrBadName = errors.New("mutex: invalid lock name")
)

// ValidName reports whether name can be a lock name: non-empty and not
// starting with '}', so that the hash tag {name} keeps all of the lock's
// keys in one Redis Cluster slot.
func ValidName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrBadName)
	}
	if name[0] == '}' {
		return fmt.Errorf("%w: %q starts with '}'", ErrBadName, name)
	}
	return nil
}
