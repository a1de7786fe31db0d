// Package lockrun runs one command while holding a lock, as `jobd lock`
// does (flock(1) across machines): it takes the lock, starts the command
// through jobs.StartProc (the one process supervisor) only under a lease
// it can trust, forwards signals to the command's process group, stops
// the group when the lease is lost, and releases the lock. It is apart
// from cmd/jobd so that the command only parses flags and maps the
// outcome to an exit code, and apart from the scheduler, whose runs go
// through jobs.Execute.
package lockrun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/mutex"
)

// Kinds of failure of Run, matched with errors.Is; the errors also say
// who holds the lock, or why the lease was lost.
var (
	// ErrNotObtained: the lock was not obtained within the wait.
	ErrNotObtained = errors.New("lockrun: lock not obtained")
	// ErrLeaseLost: the lease could not be trusted, so the command was not
	// started, or was terminated, or it finished after the lease ended.
	ErrLeaseLost = errors.New("lockrun: lease lost")
	// ErrRedis: the lock could not be taken because Redis failed; the
	// error also matches the mutex's.
	ErrRedis = errors.New("lockrun: redis failed")
)

// InterruptedError: a signal (Ctrl-C, SIGTERM) ended the wait for the
// lock, and the command was not run. It carries the signal, so that the
// exit code can say which, as a shell does (Code: 128+N), and an operator's
// Ctrl-C does not read as "the lock is busy".
type InterruptedError struct {
	Lock   string
	Signal os.Signal
}

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("lock %q: %v while waiting for it; the command was not run", e.Lock, e.Signal)
}

// Code is the exit code a shell gives a command killed by the signal.
func (e *InterruptedError) Code() int {
	if s, ok := e.Signal.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 128 + int(syscall.SIGINT)
}

// releaseTimeout bounds the release of the lock.
const releaseTimeout = 5 * time.Second

type options struct {
	ttl, wait, grace time.Duration
	label            string
	sigs             <-chan os.Signal
	log              *slog.Logger
}

// Option configures Run.
type Option func(*options)

// WithTTL sets the lease length (default mutex.DefaultTTL), renewed every ttl/3.
func WithTTL(d time.Duration) Option { return func(o *options) { o.ttl = d } }

// WithWait sets how long to wait for the lock (default 0: try once).
func WithWait(d time.Duration) Option { return func(o *options) { o.wait = d } }

// WithLabel sets the label `jobd status` shows for the lock.
func WithLabel(s string) Option { return func(o *options) { o.label = s } }

// WithKillGrace sets the time between SIGTERM and SIGKILL when the lease
// is lost (default 10s).
func WithKillGrace(d time.Duration) Option { return func(o *options) { o.grace = d } }

// WithSignals forwards the signals received on sigs to the command's
// process group; the first one received while waiting for the lock ends
// the wait instead.
func WithSignals(sigs <-chan os.Signal) Option { return func(o *options) { o.sigs = sigs } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Run takes the lock key on mc, runs argv in its own process group with
// JOBD_LOCK_KEY and JOBD_FENCE in its environment while keeping the lease
// alive, and releases the lock. It returns the command's exit code as a
// shell reports it (128+N when signal N killed it), or an error: one
// matching ErrNotObtained, ErrLeaseLost or ErrRedis, or a
// *jobs.StartError.
func Run(ctx context.Context, mc *mutex.Client, key string, argv []string, opts ...Option) (int, error) {
	o := options{ttl: mutex.DefaultTTL, grace: 10 * time.Second, log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := mc.NewMutex(key, mutex.WithTTL(o.ttl), mutex.WithWait(o.wait), mutex.WithLabel(o.label))
	sig, err := acquire(ctx, m, o.wait > 0, o.sigs, cancel)
	if sig != nil {
		if err == nil { // taken as the signal came: give it back, run nothing
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
			_ = m.Unlock(rctx)
			rcancel()
		}
		return 0, &InterruptedError{Lock: key, Signal: sig}
	}
	if err != nil {
		if errors.Is(err, mutex.ErrNotReplicated) && !errors.Is(err, mutex.ErrNotObtained) {
			// Taken, but too few replicas acknowledged it: released again.
			return 0, failf(ErrNotObtained, "lock %q not obtained: %w", key, err)
		}
		if !errors.Is(err, mutex.ErrNotObtained) {
			return 0, &failure{kind: ErrRedis, err: err}
		}
		return 0, notObtained(ctx, mc, key)
	}
	o.log.Debug("lock obtained", "lock", key, "fence", m.Fence())
	kctx, stopKeepAlive := m.KeepAlive(ctx)
	code, lost, runErr := 0, m.Valid(), error(nil)
	// Never start the command under a lease that can no longer be trusted
	// (the acquisition took longer than the lease, or jobd was paused).
	started := lost == nil
	if started {
		code, lost, runErr = runChild(kctx, argv, key, m.Fence(), o.grace, o.sigs)
	}
	stopKeepAlive()
	// After a lost lease the release is a courtesy to the next holder;
	// don't let a dead Redis hold up the exit.
	timeout := releaseTimeout
	if lost != nil {
		timeout = min(timeout, o.ttl/3)
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	uerr := m.Unlock(rctx)
	rcancel()
	switch {
	case runErr != nil:
		return 0, runErr
	case lost != nil && !started:
		return 0, failf(ErrLeaseLost, "lock %q: %w; the command was not started", key, lost)
	case lost != nil:
		return 0, failf(ErrLeaseLost, "lock %q: %w; the command was terminated", key, lost)
	case errors.Is(uerr, mutex.ErrLost):
		// The command finished, but the lease ended before it did: the
		// exclusion may not have held.
		return 0, failf(ErrLeaseLost, "lock %q: %w before the command finished", key, uerr)
	case uerr != nil:
		// As the scheduler's: which lock, its lease, about when Redis
		// frees it, and why; never the token.
		o.log.Warn("lock release failed; Redis frees it when its lease ends",
			"lock", key, "ttl", o.ttl, "expires_in", m.ExpiresIn().Round(time.Millisecond), "err", uerr)
	}
	return code, nil
}

// acquire takes the lock; a signal while waiting cancels the wait, and
// is returned.
func acquire(ctx context.Context, m *mutex.Mutex, wait bool, sigs <-chan os.Signal, cancel context.CancelFunc) (os.Signal, error) {
	if !wait {
		return nil, m.TryLock(ctx)
	}
	done := make(chan error, 1)
	go func() { done <- m.Lock(ctx) }()
	select {
	case err := <-done:
		return nil, err
	case sig := <-sigs:
		cancel()
		return sig, <-done
	}
}

// notObtained is the ErrNotObtained of key, naming its holder.
func notObtained(ctx context.Context, mc *mutex.Client, key string) error {
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	info, ok, err := mc.Inspect(ictx, key)
	switch {
	case err != nil:
		return failf(ErrNotObtained, "lock %q not obtained (holder unknown: %v)", key, err)
	case !ok:
		return failf(ErrNotObtained, "lock %q not obtained (it was released meanwhile; try again)", key)
	}
	holder := fmt.Sprintf("%s (host %s, pid %d", info.Owner, info.Host, info.PID)
	if info.Label != "" {
		holder += ", " + strconv.Quote(info.Label)
	}
	return failf(ErrNotObtained, "lock %q not obtained: held by %s) for %v, fence %d, expires in %v",
		key, holder, info.HeldFor.Round(time.Millisecond), info.Fence, info.TTL.Round(time.Millisecond))
}

// runChild runs argv in its own process group, forwarding signals to the
// group. When ctx ends (the lease was lost) the group gets SIGTERM, then
// SIGKILL after grace; lost reports why.
func runChild(ctx context.Context, argv []string, key string, fence int64, grace time.Duration, sigs <-chan os.Signal) (code int, lost error, err error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "JOBD_LOCK_KEY="+key, "JOBD_FENCE="+strconv.FormatInt(fence, 10))
	proc, err := jobs.StartProc(cmd)
	if err != nil {
		return 0, nil, fmt.Errorf("lock: %s: %w", argv[0], err)
	}
	leaseLost := ctx.Done()
	for {
		select {
		case s := <-sigs:
			proc.Signal(s.(syscall.Signal))
		case <-leaseLost:
			leaseLost = nil
			lost = context.Cause(ctx)
			proc.Terminate(grace)
		case <-proc.Done():
			if lost != nil {
				proc.KillGroup() // leftovers of the group
			}
			return proc.Wait().ShellCode(), lost, nil
		}
	}
}

// failure is an error of a kind (ErrNotObtained, ErrLeaseLost, ErrRedis)
// with its own message.
type failure struct{ kind, err error }

func (f *failure) Error() string   { return f.err.Error() }
func (f *failure) Unwrap() []error { return []error{f.kind, f.err} }

func failf(kind error, format string, args ...any) error {
	return &failure{kind: kind, err: fmt.Errorf(format, args...)}
}
