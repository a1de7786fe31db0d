package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobd/jobd/internal/jobs"
)

// core is what every component of a replica shares: who it is, where its
// state lives (Store, Locker), how it logs, tells the time and reports,
// its settings, and the configuration in force. It has no goroutine and
// no lifecycle of its own; New fills it in once and it changes only
// through Reload (cfg) and the atomics of health.
type core struct {
	store  *Store
	locker Locker
	log    *slog.Logger
	clock  Clock
	obs    Observer
	health *health

	replica, version, host string
	pid                    int
	// incarnation is random per process, so that a replica restarted
	// under the same id is told apart from its dead predecessor.
	incarnation string
	started     time.Time

	splay, grace, beatEvery, maintEvery time.Duration

	cfg atomic.Pointer[jobs.Config]
	// reloaded wakes the ticker after Reload.
	reloaded chan struct{}

	// former holds, per instance, the locks it took before a reload
	// changed its lock: a tick claimed under one of them is not missed.
	formerMu sync.Mutex
	former   map[string][]string
}

// noteLocks remembers the locks that cfg's instances took in old and no
// longer take (a reload renamed them), for misfire handling.
func (c *core) noteLocks(old, cfg *jobs.Config) {
	if old == nil {
		return
	}
	c.formerMu.Lock()
	defer c.formerMu.Unlock()
	if c.former == nil {
		c.former = map[string][]string{}
	}
	for _, in := range cfg.Instances {
		if prev, ok := old.Instance(in.Name); ok && prev.Lock != in.Lock && !slices.Contains(c.former[in.Name], prev.Lock) {
			c.former[in.Name] = append(c.former[in.Name], prev.Lock)
		}
	}
}

// formerLocks are the locks in took before reloads changed its lock.
func (c *core) formerLocks(in *jobs.Instance) []string {
	c.formerMu.Lock()
	defer c.formerMu.Unlock()
	return slices.DeleteFunc(slices.Clone(c.former[in.Name]), func(l string) bool { return l == in.Lock })
}

// observe calls the observer, logging and ignoring a panic in it, so that
// an observer can never break scheduling.
func (c *core) observe(f func(Observer)) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic in the observer, ignored", "err", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	f(c.obs)
}

// finished tells the observer that a run ended.
func (c *core) finished(rec Record, dur time.Duration) {
	c.observe(func(o Observer) { o.RunFinished(rec, dur) })
}

// recoverPanic logs a panic of a component's goroutine and lets it go on.
func (c *core) recoverPanic(where string) {
	if r := recover(); r != nil {
		c.log.Error("panic recovered", "where", where, "err", fmt.Sprint(r), "stack", string(debug.Stack()))
	}
}

// every runs fn now and then every d until ctx ends, surviving panics; a
// signal on now (nil: none) runs it at once.
func (c *core) every(ctx context.Context, d time.Duration, now <-chan struct{}, what string, fn func(context.Context)) {
	for {
		func() {
			defer c.recoverPanic(what)
			fn(ctx)
		}()
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-now:
			t.Stop()
		case <-t.C:
		}
		if ctx.Err() != nil {
			return // a timer or a signal that came with the stop must not win over it
		}
	}
}

// sleepCtx waits d or until ctx ends; it reports whether d elapsed with
// ctx still live (false at once for an ended ctx, whatever d).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return ctx.Err() == nil // a timer already due must not win over a stop
	case <-ctx.Done():
		return false
	}
}

// loop is the one goroutine of a component: start launches it, the
// context given to start stops it, and wait returns once it has returned.
type loop struct{ done chan struct{} }

func (l *loop) start(fn func()) {
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		fn()
	}()
}

func (l *loop) wait() {
	if l.done != nil {
		<-l.done
	}
}

// limiter allows an action once per interval per key (rate-limited logs).
type limiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (l *limiter) allow(key string, every time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	if t, ok := l.last[key]; ok && time.Since(t) < every {
		return false
	}
	l.last[key] = time.Now()
	return true
}

// randomHex is n random bytes, hex-encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}
