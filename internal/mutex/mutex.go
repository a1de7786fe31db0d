package mutex

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
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

	// The first attempt is settled: a lost reply is asked again with the
	// same token, which answers what the first run did.
	token := randomID()
	var ok bool
	first := settle(ctx, settleTimeout, func(ctx context.Context) error {
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

// settle runs op until its outcome is known: op returned nil or Redis's
// own error reply. An unknown outcome (timeout, reset connection: the
// command may have run) is asked again, for up to limit or until ctx
// ends; op must be safe to run twice.
func settle(ctx context.Context, limit time.Duration, op func(ctx context.Context) error) error {
	deadline := time.Now().Add(limit)
	backoff := 20 * time.Millisecond
	for {
		err := op(ctx)
		if !unknownOutcome(err) || time.Now().Add(backoff).After(deadline) || !sleep(ctx, backoff) {
			return err
		}
		backoff = min(2*backoff, time.Second)
	}
}

// unknownOutcome reports whether err leaves it open whether the command
// ran: anything but Redis's own reply (an error reply such as NOPERM, or
// redis.Nil) may have lost a reply to a command that ran.
func unknownOutcome(err error) bool {
	if err == nil {
		return false
	}
	var re redis.Error
	return !errors.As(err, &re)
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

// acquire runs one attempt; on success it records the hold in m.
func (m *Mutex) acquire(ctx context.Context, token, waiter string) (ok bool, retry time.Duration, err error) {
	sent := time.Now()
	keys, args := m.acquireArgs(token, waiter, nil)
	res, err := acquireScript.Run(ctx, m.c.rdb, keys, args...).Int64Slice()
	if err != nil {
		return false, 0, err
	}
	ok, retry, err = m.acquired(res, token, sent)
	return ok, retry, err
}

func (m *Mutex) acquireArgs(token, waiter string, cl *SetNX) ([]string, []any) {
	keys := []string{m.k.lock, m.k.fence, m.k.queue, m.k.leases, m.k.released}
	args := []any{token, m.cfg.ttl.Milliseconds(), waiter, waiterGrace.Milliseconds(),
		m.c.owner, m.c.host, m.c.pid, m.cfg.label}
	if cl != nil {
		keys = append(keys, cl.Key)
		args = append(args, cl.Value, cl.TTL.Milliseconds(), unixMilli(cl.NotBefore), unixMilli(cl.NotAfter))
	}
	return keys, args
}

// acquired interprets the acquire script's reply.
func (m *Mutex) acquired(res []int64, token string, sent time.Time) (bool, time.Duration, error) {
	switch {
	case len(res) != 2:
		return false, 0, fmt.Errorf("mutex: acquire: unexpected reply %v", res)
	case res[0] == -1:
		return false, 0, fmt.Errorf("%w: %q", ErrKeyTaken, m.name)
	case res[0] == -3: // only a late copy of a finished attempt sees this
		return false, 0, fmt.Errorf("%w: %q: this attempt's hold was already released", ErrNotObtained, m.name)
	case res[0] == -2:
		return false, 0, fmt.Errorf("%w: %q: Redis time %s", ErrOutsideWindow, m.name,
			time.UnixMilli(res[1]).UTC().Format(time.RFC3339Nano))
	case res[0] == 1:
		m.mu.Lock()
		m.token, m.fence, m.leaseAt, m.leaseTTL = token, res[1], sent, m.cfg.ttl
		m.mu.Unlock()
		return true, 0, nil
	}
	return false, time.Duration(res[1]) * time.Millisecond, nil
}

// SetNX is a key that an acquisition creates first, as SET NX PX does:
// if the key already holds another value, the acquisition fails with
// ErrKeyTaken and changes nothing. It lets callers take "this piece of
// work" and the lock that guards it in one round trip, so that a piece of
// work is taken once however many callers race for it. On Redis Cluster
// the key must share the lock's hash slot.
type SetNX struct {
	Key   string
	Value string // unique to this attempt: a retry that finds it knows the key is its own
	TTL   time.Duration
	// NotBefore and NotAfter bound, on Redis's clock, when a new key may
	// be created (zero: no bound). Outside them the attempt fails with
	// ErrOutsideWindow: the caller's clock is too far off for its key to
	// be seen in time by callers that look for it.
	NotBefore, NotAfter time.Time
}

// TryLockSetNX makes one attempt, creating key first. It returns nil when
// the key was created (or already held its value) and the lock was taken,
// ErrKeyTaken when the key held another value, and ErrNotObtained when
// the key is the caller's but the lock is held (the key stays).
func (m *Mutex) TryLockSetNX(ctx context.Context, key SetNX) error {
	return m.c.TryLockBatch(ctx, []*Mutex{m}, []SetNX{key})[0]
}

// TryLockBatch is TryLockSetNX for many mutexes in one pipeline, so that
// a thousand locks wanted at the same second cost one round trip, not a
// thousand. The i-th error belongs to ms[i].
//
// An attempt whose reply was lost (timeout, reset connection) is asked
// again with the same token and key value until its outcome is known or
// ctx ends (settleTimeout for a ctx without a deadline): the retry finds
// the key and the lock its own. Only then is an error returned, and
// never ErrKeyTaken or ErrNotObtained for it.
func (c *Client) TryLockBatch(ctx context.Context, ms []*Mutex, cls []SetNX) []error {
	errs := make([]error, len(ms))
	tokens := make([]string, len(ms))
	var pending []int
	for i, m := range ms {
		if errs[i] = m.reserve(); errs[i] == nil {
			tokens[i] = randomID()
			pending = append(pending, i)
		}
	}
	limit := settleTimeout
	if d, ok := ctx.Deadline(); ok {
		limit = time.Until(d)
	}
	// Each round asks again only for the attempts whose outcome is still
	// unknown; settle retries while one of them is.
	_ = settle(ctx, limit, func(ctx context.Context) error {
		if len(pending) == 0 {
			return nil
		}
		var unknown []int
		var lastErr error
		for j, res := range c.acquireBatch(ctx, pending, ms, tokens, cls) {
			i, m := pending[j], ms[pending[j]]
			if unknownOutcome(res.err) {
				unknown, lastErr = append(unknown, i), res.err
				errs[i] = fmt.Errorf("mutex: lock %q: %w", m.name, res.err)
				continue
			}
			ok, err := false, res.err
			switch {
			case err != nil:
				err = fmt.Errorf("mutex: lock %q: %w", m.name, err)
			default:
				if ok, _, err = m.acquired(res.val, tokens[i], res.sent); !ok && err == nil {
					err = fmt.Errorf("%w: %q", ErrNotObtained, m.name)
				}
			}
			if !ok {
				m.unreserve()
			}
			errs[i] = err
		}
		pending = unknown
		return lastErr
	})
	for _, i := range pending { // still unknown when settling gave up
		ms[i].leave(ctx, "", tokens[i])
		ms[i].unreserve()
	}
	return errs
}

type batchResult struct {
	val  []int64
	err  error
	sent time.Time
}

// acquireBatch runs the acquire script with a SetNX key for ms[idx...] in one
// pipeline (EVALSHA; a NOSCRIPT after a Redis restart falls back to EVAL
// for that command).
func (c *Client) acquireBatch(ctx context.Context, idx []int, ms []*Mutex, tokens []string, cls []SetNX) []batchResult {
	out := make([]batchResult, len(idx))
	if err := c.loadScripts(ctx); err != nil {
		for j := range out {
			out[j].err = err
		}
		return out
	}
	cmds := make([]*redis.Cmd, len(idx))
	sent := time.Now()
	pipe := c.rdb.Pipeline()
	for j, i := range idx {
		keys, args := ms[i].acquireArgs(tokens[i], "", &cls[i])
		cmds[j] = acquireScript.EvalSha(ctx, pipe, keys, args...)
	}
	_, _ = pipe.Exec(ctx)
	for j, i := range idx {
		out[j].val, out[j].err = cmds[j].Int64Slice()
		out[j].sent = sent
		if redis.HasErrorPrefix(out[j].err, "NOSCRIPT") { // Redis restarted since loadScripts
			c.scriptsLoaded.Store(false)
			keys, args := ms[i].acquireArgs(tokens[i], "", &cls[i])
			out[j].sent = time.Now()
			out[j].val, out[j].err = acquireScript.Run(ctx, c.rdb, keys, args...).Int64Slice()
		}
	}
	return out
}

// unixMilli is t in Unix milliseconds, or 0 for the zero time.
func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// loadScripts makes sure the acquire script is cached, for pipelines,
// where go-redis cannot fall back from EVALSHA to EVAL by itself. After a
// Redis restart the first batch meets NOSCRIPT, falls back per command, and
// the next batch loads again.
func (c *Client) loadScripts(ctx context.Context) error {
	if c.scriptsLoaded.Load() {
		return nil
	}
	if err := acquireScript.Load(ctx, c.rdb).Err(); err != nil {
		return err
	}
	c.scriptsLoaded.Store(true)
	return nil
}

// poll is the WithRetry policy.
func (m *Mutex) poll(ctx context.Context, token string, lastErr error) error {
	for i := 0; i < m.cfg.retries; i++ {
		d := m.cfg.retryDelay/2 + rand.N(m.cfg.retryDelay+1)
		if !sleep(ctx, d) {
			break
		}
		ok, _, err := m.acquire(ctx, token, "")
		if ok {
			return nil
		}
		if err != nil {
			lastErr = err
		}
	}
	if lastErr != nil {
		m.leave(ctx, "", token) // drop a hold we may have taken unheard
	}
	return m.notObtained(ctx, lastErr)
}

// waitNotified queues the caller in Redis and sleeps until the release
// names it, its retry timer fires, or ctx ends.
func (m *Mutex) waitNotified(ctx context.Context, token string, lastErr error) error {
	waiter := randomID()
	var wake <-chan time.Duration
	if n := m.c.getNotifier(); n != nil {
		var unregister func()
		wake, unregister = n.register(ctx, m.k.channel, waiter)
		defer unregister()
	}
	backoff := 50 * time.Millisecond
	for {
		ok, hint, err := m.acquire(ctx, token, waiter)
		if ok {
			return nil
		}
		var d time.Duration
		if err != nil {
			// Redis unreachable: retry with capped backoff until ctx ends.
			lastErr, d = err, backoff
			backoff = min(2*backoff, time.Second)
		} else {
			backoff = 50 * time.Millisecond
			// Past the lease, plus a little jitter so that waiters whose
			// holder died do not all retry in the same millisecond.
			d = hint + time.Millisecond + rand.N(hint/20+time.Millisecond)
		}
		if !m.sleepUntilWoken(ctx, wake, d) {
			m.leave(ctx, waiter, token)
			return m.notObtained(ctx, lastErr)
		}
	}
}

// sleepUntilWoken waits for d, or for a wake-up: 0 means "your turn, try
// now", a positive value means "try after this long at the latest" (the
// second waiter covering for a head that may have died). It returns false
// when ctx ends.
func (m *Mutex) sleepUntilWoken(ctx context.Context, wake <-chan time.Duration, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	deadline := time.Now().Add(d)
	for {
		select {
		case after := <-wake:
			if after <= 0 {
				return true
			}
			if at := time.Now().Add(after); at.Before(deadline) {
				deadline = at
				t.Reset(after)
			}
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
}

// leave dequeues a waiter that gave up, drops a hold that token may have
// taken without hearing the reply and, if the lock is free, passes the
// turn on; best effort, since a stale entry (and a lease) expires by itself.
func (m *Mutex) leave(ctx context.Context, waiter, token string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaveTimeout)
	defer cancel()
	_ = leaveScript.Run(ctx, m.c.rdb, []string{m.k.lock, m.k.queue, m.k.leases},
		waiter, m.k.channel, handoffWindow.Milliseconds(), token).Err()
}

func (m *Mutex) notObtained(ctx context.Context, last error) error {
	err := fmt.Errorf("%w: %q", ErrNotObtained, m.name)
	if cerr := ctx.Err(); cerr != nil {
		err = fmt.Errorf("%w: %q: %w", ErrNotObtained, m.name, cerr)
	}
	if last != nil {
		err = fmt.Errorf("%w (last error: %w)", err, last)
	}
	return err
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
		res, err = releaseScript.Run(ctx, m.c.rdb, []string{m.k.lock, m.k.queue, m.k.leases, m.k.released},
			token, m.k.channel, handoffWindow.Milliseconds(), releasedMarkerTTL.Milliseconds()).Int64()
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
		res, err = extendScript.Run(ctx, m.c.rdb, []string{m.k.lock}, token, ttl.Milliseconds()).Int64()
		return err
	})
	if err != nil {
		return fmt.Errorf("mutex: extend %q: %w", m.name, err)
	}
	if res == 1 {
		m.mu.Lock()
		if m.token == token {
			m.leaseAt, m.leaseTTL = sent, ttl
		}
		m.mu.Unlock()
	}
	return leaseResult(res, m.name)
}

// Valid reports, on this process's monotonic clock, whether the hold can
// still be trusted: held, and within ttl minus the safety margin of the
// request that last set the lease. Check it right before work that must
// not start under a lease another owner may already have (after a pause,
// keep-alive's own timer may not have fired yet). It returns an ErrLost
// or ErrNotHeld error when not.
func (m *Mutex) Valid() error {
	token, since, ttl := m.lease()
	if token == "" {
		return fmt.Errorf("%w: %q", ErrNotHeld, m.name)
	}
	if time.Since(since) >= m.trusted(ttl) {
		return m.errUntrusted(ttl)
	}
	return nil
}

// errUntrusted is the ErrLost of a lease of length ttl that no renewal
// kept within its trusted time.
func (m *Mutex) errUntrusted(ttl time.Duration) error {
	return fmt.Errorf("%w: %q: no renewal succeeded for %v", ErrLost, m.name, m.trusted(ttl))
}

// lease returns the current hold: its token, when the request that last
// set its lease was sent, and that lease's length.
func (m *Mutex) lease() (token string, since time.Time, ttl time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.token, m.leaseAt, m.leaseTTL
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

// KeepAlive renews the lease every ttl/3 until stop is called or ctx ends.
// The returned context is cancelled, with an ErrLost cause, when a renewal
// is refused (another owner, or the key is gone) or when no renewal has
// succeeded for ttl minus the safety margin, measured on the monotonic
// clock from when the last successful request was sent. A lease already
// past that point is cancelled before KeepAlive returns, so a caller that
// checks the context before starting work never starts it under a lease
// it can no longer trust. stop waits for the renewing goroutine to exit.
func (m *Mutex) KeepAlive(ctx context.Context) (context.Context, func()) {
	kctx, cancel := context.WithCancelCause(ctx)
	token, _, _ := m.lease()
	if err := m.Valid(); err != nil {
		if errors.Is(err, ErrLost) {
			m.c.emit(EventLost, m.name)
		}
		cancel(err)
		return kctx, func() {}
	}
	stopc, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		m.keepAlive(kctx, cancel, stopc, token)
	}()
	var once sync.Once
	return kctx, func() {
		once.Do(func() {
			close(stopc)
			<-done
			cancel(context.Canceled)
		})
	}
}

// trusted is how long after a renewal was sent a lease of length ttl is
// trusted: ttl minus the safety margin (default ttl/5).
func (m *Mutex) trusted(ttl time.Duration) time.Duration {
	margin := m.cfg.margin
	if margin <= 0 || margin >= ttl {
		margin = ttl / 5
	}
	return ttl - margin
}

func (m *Mutex) keepAlive(ctx context.Context, cancel context.CancelCauseFunc, stop <-chan struct{}, token string) {
	_, since, ttl := m.lease()
	// The deadline fires on its own timer, so a renewal stuck on a hung
	// Redis cannot delay the cancellation. It always follows the lease
	// last set in Redis, by keep-alive or by an Extend.
	expire := time.AfterFunc(time.Until(since.Add(m.trusted(ttl))), func() {
		_, _, ttl := m.lease()
		m.c.emit(EventLost, m.name)
		cancel(m.errUntrusted(ttl))
	})
	defer expire.Stop()
	next := time.Until(since.Add(ttl / 3))
	for {
		t := time.NewTimer(next)
		select {
		case <-stop:
			t.Stop()
			return
		case <-ctx.Done():
			t.Stop()
			return
		case <-m.extended: // an Extend set a new lease: follow it
			t.Stop()
			_, since, ttl = m.lease()
			expire.Reset(time.Until(since.Add(m.trusted(ttl))))
			next = time.Until(since.Add(ttl / 3))
			continue
		case <-t.C:
		}
		rctx, rcancel := context.WithDeadline(ctx, since.Add(m.trusted(ttl)))
		err := m.extend(rctx, token, ttl)
		rcancel()
		switch {
		case err == nil:
			m.c.emit(EventRenewed, m.name)
			_, since, ttl = m.lease()
			expire.Reset(time.Until(since.Add(m.trusted(ttl))))
			next = ttl / 3
		case errors.Is(err, ErrLost):
			m.c.emit(EventLost, m.name)
			cancel(err)
			return
		case ctx.Err() != nil:
			return // stopped or cancelled mid-renewal
		default:
			m.c.emit(EventRenewFailed, m.name)
			m.c.log.Warn("mutex: lease renewal failed", "lock", m.name, "err", err)
			next = min(max(ttl/10, 20*time.Millisecond), time.Second)
		}
	}
}

// sleep waits d or until ctx ends; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
