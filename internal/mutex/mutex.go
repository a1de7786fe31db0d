package mutex

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Defaults, documented where they are defined.
const (
	// DefaultTTL is the lease length when WithTTL is not given.
	DefaultTTL = 30 * time.Second
	// MinTTL is the shortest lease that keep-alive can keep through an
	// ordinary hiccup: it renews every ttl/3 and gives up at ttl*4/5, so a
	// 3s lease leaves 1.4s for a renewal to get through. The mutex itself
	// accepts shorter leases; jobd's configuration and `jobd lock` refuse
	// them.
	MinTTL = 3 * time.Second
	// waiterGrace is how long a queued waiter keeps its place past the
	// moment it was told to retry. A waiter that misses it (dead, paused)
	// drops out of the queue so it cannot block the others.
	waiterGrace = time.Second
	// handoffWindow is how long the woken queue head has to take a
	// released lock before the second waiter may skip it (it died).
	handoffWindow = 2 * time.Second
	// leaveTimeout bounds the best-effort dequeue of a waiter that gives up.
	leaveTimeout = 100 * time.Millisecond
	// unlockTimeout bounds the release that Do makes after fn returns,
	// whatever happened to the caller's context.
	unlockTimeout = 5 * time.Second
	// settleTimeout is how long an operation whose outcome is unknown (the
	// command may have run but its reply was lost: a timeout or a reset
	// connection) keeps asking Redis, with the same token, before it
	// reports the error. Every script is safe to run twice, so asking
	// again is how the outcome is settled.
	settleTimeout = 5 * time.Second
	// releasedMarkerTTL is how long Redis remembers the token of a lock's
	// last release, so that a release retried after a lost reply is
	// recognised as done rather than reported as an expired lease.
	releasedMarkerTTL = time.Minute
)

type config struct {
	ttl        time.Duration
	wait       time.Duration
	retries    int
	retryDelay time.Duration
	label      string
	margin     time.Duration
}

func defaultConfig() config { return config{ttl: DefaultTTL} }

// Option configures a Mutex.
type Option func(*config)

// WithTTL sets the lease length (default DefaultTTL, 30s). Keep-alive
// renews it every ttl/3.
func WithTTL(d time.Duration) Option { return func(c *config) { c.ttl = d } }

// WithWait bounds how long Lock waits (default 0: until ctx ends).
func WithWait(d time.Duration) Option { return func(c *config) { c.wait = d } }

// WithRetry replaces notified waiting with bounded polling, as in the seed
// article: after a failed first try, Lock tries count more times, sleeping
// a random 50%–150% of delay between tries so that contenders spread out.
// (Default: notified waiting, no polling.)
func WithRetry(count int, delay time.Duration) Option {
	return func(c *config) { c.retries, c.retryDelay = count, delay }
}

// WithLabel records a free-form label, such as a job or run id, in the
// holder metadata (default empty).
func WithLabel(s string) Option { return func(c *config) { c.label = s } }

// WithSafetyMargin sets how long before the lease would run out, counted
// from the last successful renewal on the monotonic clock, keep-alive
// stops trusting it (default ttl/5).
func WithSafetyMargin(d time.Duration) Option { return func(c *config) { c.margin = d } }

// Mutex is one handle on a named lock. Its methods are safe for concurrent
// use, but a handle holds the lock at most once: a second Lock returns
// ErrAlreadyHeld.
type Mutex struct {
	c    *Client
	name string
	k    keys
	cfg  config

	mu       sync.Mutex
	busy     bool          // a Lock is in progress or the lock is held
	token    string        // non-empty while held
	fence    int64         // fence of the current or last hold
	leaseAt  time.Time     // when the last successful acquire/extend was sent
	leaseTTL time.Duration // the lease length that request set in Redis
	// renewTTL is the lease keep-alive asks for: the handle's ttl, or an
	// Extend's. It differs from leaseTTL after a handoff, whose first
	// lease is shorter (see release.lua).
	renewTTL time.Duration
	qgen     int // on a quorum: take-backs so far, each of which retires an attempt's token
	// extended wakes keep-alive after an Extend, so that it trusts the
	// lease that Extend set rather than the one it set itself.
	extended chan struct{}
}

// Name is the lock's name.
func (m *Mutex) Name() string { return m.name }

// Fence is the fencing token of the current (or last) hold: it strictly
// increases with every acquisition of this lock name.
func (m *Mutex) Fence() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fence
}

// Lock takes the lock, waiting until ctx ends or the WithWait time passes.
// Waiters queue in Redis and are woken by the release, or by their lease
// timer when a holder vanished without releasing.
func (m *Mutex) Lock(ctx context.Context) error { return m.lock(ctx, true) }

// TryLock makes one attempt and never waits.
func (m *Mutex) TryLock(ctx context.Context) error { return m.lock(ctx, false) }

func (m *Mutex) lock(ctx context.Context, wait bool) (err error) {
	if err := m.reserve(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			m.unreserve()
		}
	}()

	token := randomID()
	var first error
	// A waiter whose notifications are already subscribed (this process
	// waited for the lock moments ago: a busy lock) queues with its very
	// first attempt. Otherwise the first attempt does not queue, so that
	// an uncontended lock costs one round trip and no subscription; it is
	// settled: a lost reply is asked again with the same token, which
	// answers what the first run did.
	if !wait || m.cfg.retries > 0 || !m.c.hot(m.k.channel) {
		var ok bool
		first = settle(ctx, settleTimeout, func(ctx context.Context) error {
			var err error
			ok, _, err = m.acquire(ctx, token, "")
			return err
		})
		if ok {
			return nil
		}
		if !wait {
			if first != nil {
				m.leave(ctx, "", token) // drop a hold we may have taken unheard
				return fmt.Errorf("mutex: lock %q: %w", m.name, first)
			}
			return fmt.Errorf("%w: %q", ErrNotObtained, m.name)
		}
	}
	if m.cfg.wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.cfg.wait)
		defer cancel()
	}
	if m.cfg.retries > 0 {
		return m.poll(ctx, token, first)
	}
	return m.waitNotified(ctx, token, first)
}

// reserve marks the handle busy for an acquisition; a handle that is
// acquiring or holding already is ErrAlreadyHeld.
func (m *Mutex) reserve() error {
	if err := ValidName(m.name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.busy {
		return fmt.Errorf("%w: %q", ErrAlreadyHeld, m.name)
	}
	m.busy = true
	return nil
}

// unreserve undoes reserve after a failed acquisition.
func (m *Mutex) unreserve() {
	m.mu.Lock()
	m.busy = false
	m.mu.Unlock()
}

// refusal is an attempt's answer when the lock is not the caller's.
type refusal struct {
	// retry is the longest to wait before trying again even if no
	// release is announced: the lock's lease left, or the queue head's
	// place.
	retry time.Duration
	// fence is at least every fence handed out to the caller before the
	// attempt ran, and at Redis's time when it ran (ms; see
	// acquire.lua): a handoff message with a fence no larger, or an
	// earlier time, is stale. 0 when unknown (a quorum).
	fence, at int64
}

// acquire runs one attempt; on success it records the hold in m.
func (m *Mutex) acquire(ctx context.Context, token, entry string) (ok bool, b refusal, err error) {
	if m.c.quorum() {
		ok, b.retry, err = m.acquireQuorum(ctx, token)
		return ok, b, err
	}
	sent := time.Now()
	keys, args := m.acquireArgs(token, entry, nil)
	res, acks, err := m.c.runAcquire(ctx, keys, args)
	if err != nil {
		return false, b, err
	}
	if ok, b, err = m.acquired(res, token, sent); ok {
		if err = m.checkReplicated(ctx, acks); err != nil {
			return false, b, err
		}
	}
	return ok, b, err
}

func (m *Mutex) acquireArgs(token, entry string, cl *SetNX) ([]string, []any) {
	keys := []string{m.k.lock, m.k.fence, m.k.queue, m.k.leases, m.k.released(token)}
	args := []any{token, m.cfg.ttl.Milliseconds(), entry, waiterGrace.Milliseconds(),
		m.c.owner, m.c.host, m.c.pid, m.cfg.label}
	if cl != nil {
		keys = append(keys, cl.Key)
		args = append(args, cl.Value, cl.TTL.Milliseconds(), unixMilli(cl.NotBefore), unixMilli(cl.NotAfter))
	}
	return keys, args
}

// acquired interprets the acquire script's reply.
func (m *Mutex) acquired(res []int64, token string, sent time.Time) (bool, refusal, error) {
	switch {
	case len(res) < 2:
		return false, refusal{}, fmt.Errorf("mutex: acquire: unexpected reply %v", res)
	case res[0] == -1:
		return false, refusal{}, fmt.Errorf("%w: %q", ErrKeyTaken, m.name)
	case res[0] == -3: // only a late copy of a finished attempt sees this
		return false, refusal{}, fmt.Errorf("%w: %q: this attempt's hold was already released", ErrNotObtained, m.name)
	case res[0] == -2:
		return false, refusal{}, fmt.Errorf("%w: %q: Redis time %s", ErrOutsideWindow, m.name,
			time.UnixMilli(res[1]).UTC().Format(time.RFC3339Nano))
	case res[0] == 1:
		m.hold(token, res[1], sent, m.cfg.ttl)
		return true, refusal{}, nil
	}
	b := refusal{retry: time.Duration(res[1]) * time.Millisecond}
	if len(res) > 3 {
		b.fence, b.at = res[2], res[3]
	}
	return false, b, nil
}

// hold records a hold of token with fence, whose lease of length lease was
// set by a request sent at since (so trusted from then); keep-alive renews
// it to the handle's ttl.
func (m *Mutex) hold(token string, fence int64, since time.Time, lease time.Duration) {
	m.mu.Lock()
	m.token, m.fence, m.leaseAt, m.leaseTTL, m.renewTTL = token, fence, since, lease, m.cfg.ttl
	m.mu.Unlock()
}

// Unlock releases the lock if this handle still owns it. It returns
// ErrNotHeld when the handle holds nothing, and ErrLost when the lease had
// run out or another owner holds the lock now (which is left untouched).
// A lost reply is asked again (a release already made answers nil); on a
// Redis error that outlasts settling, the handle stays held, so Unlock can
// be retried.
func (m *Mutex) Unlock(ctx context.Context) error {
	m.mu.Lock()
	token := m.token
	m.mu.Unlock()
	if token == "" {
		return fmt.Errorf("%w: %q", ErrNotHeld, m.name)
	}
	var res int64
	err := settle(ctx, settleTimeout, func(ctx context.Context) error {
		var err error
		res, err = m.c.runLease(ctx, "unlock "+strconv.Quote(m.name), releaseScript, m.releaseKeys(token), m.releaseArgs(token, "")...)
		return err
	})
	if err != nil {
		return fmt.Errorf("mutex: unlock %q: %w", m.name, err)
	}
	m.mu.Lock()
	m.token, m.busy = "", false
	m.mu.Unlock()
	return leaseResult(res, m.name)
}

// releaseKeys and releaseArgs are release.lua's KEYS and ARGV; entry is
// the caller's own waiter entry when a waiter gives up ("" for an
// unlock).
func (m *Mutex) releaseKeys(token string) []string {
	return []string{m.k.lock, m.k.queue, m.k.leases, m.k.released(token), m.k.fence}
}

func (m *Mutex) releaseArgs(token, entry string) []any {
	return []any{token, m.k.channel, handoffWindow.Milliseconds(), releasedMarkerTTL.Milliseconds(), m.c.broadcast(), entry}
}

// Extend sets the lease to ttl from now if this handle still owns the lock.
// The new length also becomes the lease that keep-alive trusts and renews:
// a shorter one is renewed more often, never trusted for longer than it
// lasts in Redis.
func (m *Mutex) Extend(ctx context.Context, ttl time.Duration) error {
	m.mu.Lock()
	token := m.token
	m.mu.Unlock()
	if token == "" {
		return fmt.Errorf("%w: %q", ErrNotHeld, m.name)
	}
	err := m.extend(ctx, token, ttl)
	if err == nil {
		select {
		case m.extended <- struct{}{}:
		default:
		}
	}
	return err
}

func (m *Mutex) extend(ctx context.Context, token string, ttl time.Duration) error {
	var sent time.Time
	var res int64
	err := settle(ctx, settleTimeout, func(ctx context.Context) error {
		var err error
		sent = time.Now()
		res, err = m.c.runLease(ctx, "extend "+strconv.Quote(m.name), extendScript, []string{m.k.lock}, token, ttl.Milliseconds())
		return err
	})
	if err != nil {
		return fmt.Errorf("mutex: extend %q: %w", m.name, err)
	}
	if res == 1 {
		m.mu.Lock()
		if m.token == token {
			m.leaseAt, m.leaseTTL, m.renewTTL = sent, ttl, ttl
		}
		m.mu.Unlock()
	}
	return leaseResult(res, m.name)
}

// leaseResult maps the release/extend scripts' replies to errors.
func leaseResult(res int64, name string) error {
	switch res {
	case 1:
		return nil
	case 0:
		return fmt.Errorf("%w: %q is held by another owner", ErrLost, name)
	default:
		return fmt.Errorf("%w: %q expired", ErrLost, name)
	}
}

// Do is the with-block: it takes the lock, runs fn while keep-alive renews
// the lease, and always releases, even when fn panics (the panic then goes
// on). fn's context is cancelled when the lease is lost, with
// context.Cause reporting an ErrLost. Do returns fn's error joined with any
// lease or release error.
func (m *Mutex) Do(ctx context.Context, fn func(ctx context.Context) error) (err error) {
	if err := m.Lock(ctx); err != nil {
		return err
	}
	kctx, stop := m.KeepAlive(ctx)
	defer func() {
		r := recover()
		stop()
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		uerr := m.Unlock(uctx)
		cancel()
		if r != nil {
			panic(r)
		}
		if cause := context.Cause(kctx); errors.Is(cause, ErrLost) && !errors.Is(uerr, ErrLost) {
			uerr = errors.Join(cause, uerr)
		}
		if uerr != nil {
			err = errors.Join(err, uerr)
		}
	}()
	return fn(kctx)
}
