package mutex

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// notifier owns the one pub/sub connection that all waiters of a Client
// share (one per master on a quorum). A release publishes the id of the
// waiter whose turn it is; the notifier wakes that waiter only. On a
// quorum, where waiters do not queue, a release publishes "*" and every
// waiter of the lock tries again.
type notifier struct {
	subs []*subscription
	need int // pongs that confirm a registration: a majority of the connections
	log  *slog.Logger

	// subMu orders SUBSCRIBE and UNSUBSCRIBE on the wire as the first
	// waiter and the last waiter of a channel come and go, so that a
	// late UNSUBSCRIBE cannot undo a newer SUBSCRIBE.
	subMu sync.Mutex

	mu       sync.Mutex
	channels map[string]map[string]chan wakeup // channel -> waiter id -> wake
	pings    map[string]*pending               // pending readiness pings
	// subscribed is, on one Redis, every subscribed channel, also those
	// lingering without a waiter.
	subscribed map[string]*channelSub
	closed     bool // close has begun: no new linger timer (whose wg.Add would race with close's Wait)
	seq        uint64

	done chan struct{}
	wg   sync.WaitGroup
}

// subscription is one pub/sub connection of a notifier.
type subscription struct {
	ps     *redis.PubSub
	broken bool // the connection failed; wake everyone once it is back (under notifier.mu)
}

// pending is a registration waiting for its pongs.
type pending struct {
	left  int
	ready chan struct{}
	sub   *channelSub // on one Redis: the subscription a pong confirms
}

// newNotifier starts a goroutine per connection; need is how many must
// confirm a registration.
func newNotifier(pss []*redis.PubSub, need int, log *slog.Logger) *notifier {
	n := &notifier{
		need:       need,
		log:        log,
		channels:   map[string]map[string]chan wakeup{},
		pings:      map[string]*pending{},
		subscribed: map[string]*channelSub{},
		done:       make(chan struct{}),
	}
	for _, ps := range pss {
		s := &subscription{ps: ps}
		n.subs = append(n.subs, s)
		n.wg.Add(1)
		go n.run(s)
	}
	return n
}

// readyTimeout bounds how long a waiter waits for its subscription to be
// confirmed before it relies on its retry timer alone.
const readyTimeout = time.Second

// register subscribes waiter to channel and returns its wake channel. It
// returns once Redis has confirmed the subscription (a PING sent after the
// SUBSCRIBE on the same connection came back; on a quorum, from a
// majority of the masters, which a release also reaches), so that a
// release made after the waiter's next attempt cannot be missed. On one
// Redis a channel stays subscribed for lingerFor after its last waiter
// left, and a registration on a channel confirmed since costs no round
// trip.
func (n *notifier) register(ctx context.Context, channel, waiter string) (<-chan wakeup, func()) {
	wake := make(chan wakeup, 1)
	n.subMu.Lock()
	n.mu.Lock()
	ws, ok := n.channels[channel]
	if !ok {
		ws = map[string]chan wakeup{}
		n.channels[channel] = ws
	}
	ws[waiter] = wake
	n.seq++
	payload := "jobd-ready-" + strconv.FormatUint(n.seq, 10)
	ready := make(chan struct{})

	if len(n.subs) > 1 {
		n.pings[payload] = &pending{left: n.need, ready: ready}
		n.mu.Unlock()
		n.subMu.Unlock()
		return wake, n.registerQuorum(ctx, channel, waiter, payload, !ok, ready)
	}
	unregister := func() {
		n.subMu.Lock()
		defer n.subMu.Unlock()
		if n.forget(channel, waiter, payload) {
			n.linger(channel)
		}
	}
	sub, subscribed := n.subscribed[channel]
	if subscribed {
		n.stopLinger(sub)
		if sub.confirmed && !n.subs[0].broken {
			n.mu.Unlock()
			n.subMu.Unlock()
			return wake, unregister
		}
	} else {
		sub = &channelSub{}
		n.subscribed[channel] = sub
	}
	n.pings[payload] = &pending{left: n.need, ready: ready, sub: sub}
	n.mu.Unlock()
	// A connection that fails is left to go-redis, which resubscribes on
	// reconnect; timers cover the gap.
	ps := n.subs[0].ps
	var err error
	if !subscribed {
		err = ps.Subscribe(ctx, channel)
	}
	n.subMu.Unlock()
	if err == nil && ps.Ping(ctx, payload) == nil {
		awaitReady(ctx, ready)
	}
	return wake, unregister
}

// lingerFor is how long a channel stays subscribed after its last waiter
// left (on one Redis), so that a process that waits for the same lock
// again (a busy lock) does not pay a SUBSCRIBE, a PING and an UNSUBSCRIBE
// every time.
const lingerFor = 5 * time.Second

// channelSub is a channel's subscription on one Redis.
type channelSub struct {
	// confirmed: a PING sent after the SUBSCRIBE came back, and the
	// connection has not failed since (under notifier.mu).
	confirmed bool
	idle      *time.Timer // pending unsubscription, while no waiter is registered
	gen       uint64      // bumped to void a pending unsubscription
}

// linger schedules channel's unsubscription once its last waiter left.
// The timer's goroutine belongs to the notifier (wg); close stops it.
// Called with subMu held.
func (n *notifier) linger(channel string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	sub := n.subscribed[channel]
	if sub == nil || n.closed {
		return
	}
	n.stopLinger(sub)
	gen := sub.gen
	n.wg.Add(1)
	sub.idle = time.AfterFunc(lingerFor, func() {
		defer n.wg.Done()
		n.subMu.Lock()
		defer n.subMu.Unlock()
		n.mu.Lock()
		if sub.gen != gen || len(n.channels[channel]) > 0 || n.subscribed[channel] != sub {
			n.mu.Unlock()
			return
		}
		delete(n.subscribed, channel)
		sub.idle = nil
		n.mu.Unlock()
		select {
		case <-n.done:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
		_ = n.subs[0].ps.Unsubscribe(ctx, channel)
		cancel()
	})
}

// stopLinger voids sub's pending unsubscription. Called with mu held.
func (n *notifier) stopLinger(sub *channelSub) {
	sub.gen++
	if sub.idle != nil && sub.idle.Stop() {
		n.wg.Done() // its function will not run
	}
	sub.idle = nil
}

// hot reports whether a waiter of channel registered now would need no
// round trip: on one Redis, the channel is subscribed and confirmed.
func (n *notifier) hot(channel string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	sub := n.subscribed[channel]
	return len(n.subs) == 1 && sub != nil && sub.confirmed && !n.subs[0].broken
}

// forget removes a registration; last reports whether it was its
// channel's last waiter (the channel is then to be unsubscribed).
func (n *notifier) forget(channel, waiter, payload string) (last bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.pings, payload)
	ws := n.channels[channel]
	delete(ws, waiter)
	if last = len(ws) == 0; last {
		delete(n.channels, channel)
	}
	return last
}

// awaitReady waits for a registration's pongs, for readyTimeout at most.
func awaitReady(ctx context.Context, ready <-chan struct{}) {
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case <-ready:
	case <-t.C:
	case <-ctx.Done():
	}
}

// registerQuorum is register's second half on a quorum: every master's
// connection subscribes (when subscribe) and pings in a goroutine of its
// own, bounded by quorumNodeTimeout and owned by the notifier, since a
// paused master's connection blocks every call on it (go-redis holds the
// connection while it dials or reads). It returns once a majority's pongs
// came back (or readyTimeout, or ctx ends), and its unregister returns at
// once: the UNSUBSCRIBEs go out the same way. A late UNSUBSCRIBE that
// undoes a newer SUBSCRIBE on one master costs that master's wake-ups
// only; the others' and the waiter's own retry (quorumRetryCap) cover it.
func (n *notifier) registerQuorum(ctx context.Context, channel, waiter, payload string, subscribe bool, ready chan struct{}) func() {
	each := func(f func(ctx context.Context, s *subscription)) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.closed { // a waiter that leaves after Close: nothing to undo
			return
		}
		for _, s := range n.subs {
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				sctx, cancel := context.WithTimeout(context.Background(), quorumNodeTimeout)
				defer cancel()
				f(sctx, s)
			}()
		}
	}
	each(func(ctx context.Context, s *subscription) {
		if subscribe && s.ps.Subscribe(ctx, channel) != nil {
			return // go-redis resubscribes on reconnect
		}
		_ = s.ps.Ping(ctx, payload)
	})
	unregister := func() {
		if n.forget(channel, waiter, payload) {
			each(func(ctx context.Context, s *subscription) { _ = s.ps.Unsubscribe(ctx, channel) })
		}
	}
	awaitReady(ctx, ready)
	return unregister
}

// run receives a connection's messages until close; a failed connection
// is retried with backoff, waiters falling back to their timers
// meanwhile.
func (n *notifier) run(s *subscription) {
	defer n.wg.Done()
	backoff := 10 * time.Millisecond
	for {
		msg, err := s.ps.Receive(context.Background())
		select {
		case <-n.done:
			return
		default:
		}
		if err != nil {
			n.failed(s, err)
			if !sleepOrDone(n.done, backoff) {
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		n.deliver(s, msg)
	}
}

// failed notes a broken subscription (logged once per outage).
func (n *notifier) failed(s *subscription, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !s.broken {
		n.log.Warn("mutex: subscription connection failed; waiters fall back to timers", "err", err)
	}
	s.broken = true
	for _, sub := range n.subscribed {
		sub.confirmed = false // a new waiter pings again
	}
}

// deliver wakes the waiters a message names, or the registration a pong
// answers. The first message after an outage wakes everyone first.
func (n *notifier) deliver(s *subscription, msg any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s.broken {
		// Releases published while we were away are lost: let every
		// waiter try again now.
		s.broken = false
		for _, ws := range n.channels {
			for _, w := range ws {
				signal(w, wakeup{})
			}
		}
		for p, r := range n.pings {
			close(r.ready)
			delete(n.pings, p)
		}
	}
	switch m := msg.(type) {
	case *redis.Message:
		if m.Payload == "*" {
			// A release on a quorum: everyone tries, spread over
			// quorumWakeSpread so that the first usually wins every
			// master instead of all splitting the vote.
			for _, w := range n.channels[m.Channel] {
				signal(w, wakeup{after: time.Duration(rand.N(quorumWakeSpread))})
			}
			return
		}
		// "=fence time head [second]": the release handed the lock to
		// the head, with that fence, at that Redis time (ms). "head
		// [second]" (a release that found an older waiter's entry): the
		// head tries now. The second tries after the handoff lease, in
		// case the head died.
		head, handed := m.Payload, wakeup{}
		if f := strings.SplitN(m.Payload, " ", 3); len(f) == 3 && strings.HasPrefix(f[0], "=") {
			fence, ferr := strconv.ParseInt(f[0][1:], 10, 64)
			at, aerr := strconv.ParseInt(f[1], 10, 64)
			if ferr != nil || aerr != nil || fence <= 0 {
				return // not a message of ours
			}
			head, handed = f[2], wakeup{fence: fence, at: at}
		}
		head, second, _ := strings.Cut(head, " ")
		if w, ok := n.channels[m.Channel][head]; ok {
			signal(w, handed)
		}
		if w, ok := n.channels[m.Channel][second]; ok && second != "" {
			signal(w, wakeup{after: handoffWindow + time.Duration(rand.N(50))*time.Millisecond})
		}
	case *redis.Pong:
		if r, ok := n.pings[m.Payload]; ok {
			if r.sub != nil && !s.broken {
				r.sub.confirmed = true
			}
			if r.left--; r.left <= 0 {
				close(r.ready)
				delete(n.pings, m.Payload)
			}
		}
	}
}

// sleepOrDone waits d, or until done is closed; it reports whether d
// elapsed.
func sleepOrDone(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
		return true
	}
}

// wakeup is what the notifier tells a waiter: that a release handed it
// the lock (fence > 0: the hold's fence, and at, Redis's time of the
// release in ms), or to try again after `after` (0: now).
type wakeup struct {
	after time.Duration
	fence int64
	at    int64
}

// signal delivers a wake-up without blocking; a pending one is replaced
// only by a more urgent one (a handoff is the most urgent).
func signal(c chan wakeup, w wakeup) {
	for {
		select {
		case c <- w:
			return
		default:
		}
		select {
		case old := <-c:
			if old.fence > 0 || (w.fence == 0 && old.after < w.after) {
				w = old
			}
		default:
		}
	}
}

func (n *notifier) close() error {
	close(n.done)
	n.mu.Lock()
	n.closed = true
	for _, sub := range n.subscribed {
		n.stopLinger(sub)
	}
	n.mu.Unlock()
	var errs []error
	for _, s := range n.subs {
		errs = append(errs, s.ps.Close())
	}
	n.wg.Wait()
	return errors.Join(errs...)
}
