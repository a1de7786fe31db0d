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

	// ErrKeyTaken: the SetNX key of an attempt already holds another
	// attempt's value, so the attempt changed nothing (the lock was not
	// touched): whatever the key stands for was taken by someone else.
	ErrKeyTaken = errors.New("mutex: SET NX key already taken")

	// ErrOutsideWindow: a new SetNX key was refused because Redis's clock
	// is outside the window it allows (SetNX.NotBefore/NotAfter): the
	// caller's clock is too far off for its key to be seen in time by the
	// others. Nothing was changed.
	ErrOutsideWindow = errors.New("mutex: SET NX outside its time window (clock offset)")

	// ErrNotReplicated: the lock was taken, but fewer replicas than
	// WithReplicaWait asks for acknowledged it in time, so it was released
	// again: a failover could have lost it.
	ErrNotReplicated = errors.New("mutex: not acknowledged by enough replicas")

	// ErrNoQuorum: on a quorum of independent masters (NewQuorum), fewer
	// than a majority answered, or the votes split so that no one won a
	// majority. Nothing was obtained (what a minority gave was taken
	// back); it may succeed if asked again.
	ErrNoQuorum = errors.New("mutex: no majority of masters")

	// ErrTooSlow: on a quorum, a majority granted the lock, but its round
	// took longer than the lease minus the drift allowance, so the lease
	// may already have run out: what was won (the lock, and the SetNX key)
	// was taken back. Final: the attempt is not asked again with the same
	// token, and a SetNX key it carried is no longer held, so whatever it
	// stands for was not taken.
	ErrTooSlow = errors.New("mutex: a majority answered after the lease ran out")

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
