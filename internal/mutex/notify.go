package mutex

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// notifier owns the one pub/sub connection that all waiters of a Client
// share. A release publishes the id of the waiter whose turn it is; the
// notifier wakes that waiter only.
type notifier struct {
	ps  *redis.PubSub
	log *slog.Logger

	// subMu orders SUBSCRIBE and UNSUBSCRIBE on the wire as the first
	// waiter and the last waiter of a channel come and go, so that a
	// late UNSUBSCRIBE cannot undo a newer SUBSCRIBE.
	subMu sync.Mutex

	mu       sync.Mutex
	channels map[string]map[string]chan time.Duration // channel -> waiter id -> wake
	pings    map[string]chan struct{}                 // pending readiness pings
	seq      uint64
	broken   bool // the connection failed; wake everyone once it is back

	done chan struct{}
	wg   sync.WaitGroup
}

func newNotifier(rdb redis.UniversalClient, log *slog.Logger) *notifier {
	n := &notifier{
		ps:       rdb.Subscribe(context.Background()),
		log:      log,
		channels: map[string]map[string]chan time.Duration{},
		pings:    map[string]chan struct{}{},
		done:     make(chan struct{}),
	}
	n.wg.Add(1)
	go n.run()
	return n
}

// readyTimeout bounds how long a waiter waits for its subscription to be
// confirmed before it relies on its retry timer alone.
const readyTimeout = time.Second

// register subscribes waiter to channel and returns its wake channel. It
// returns once Redis has confirmed the subscription (a PING sent after the
// SUBSCRIBE on the same connection came back), so that a release made
// after the waiter's next attempt cannot be missed.
func (n *notifier) register(ctx context.Context, channel, waiter string) (<-chan time.Duration, func()) {
	wake := make(chan time.Duration, 1)
	n.subMu.Lock()
	n.mu.Lock()
	ws, ok := n.channels[channel]
	if !ok {
		ws = map[string]chan time.Duration{}
		n.channels[channel] = ws
	}
	ws[waiter] = wake
	n.seq++
	payload := "jobd-ready-" + strconv.FormatUint(n.seq, 10)
	ready := make(chan struct{})
	n.pings[payload] = ready
	n.mu.Unlock()

	unregister := func() {
		n.subMu.Lock()
		defer n.subMu.Unlock()
		n.mu.Lock()
		delete(n.pings, payload)
		ws := n.channels[channel]
		delete(ws, waiter)
		last := len(ws) == 0
		if last {
			delete(n.channels, channel)
		}
		n.mu.Unlock()
		if last {
			uctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
			_ = n.ps.Unsubscribe(uctx, channel)
			cancel()
		}
	}

	var err error
	if !ok {
		err = n.ps.Subscribe(ctx, channel)
	}
	n.subMu.Unlock()
	if err != nil {
		return wake, unregister // go-redis resubscribes on reconnect; timers cover the gap
	}
	if err := n.ps.Ping(ctx, payload); err != nil {
		return wake, unregister
	}
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case <-ready:
	case <-t.C:
	case <-ctx.Done():
	}
	return wake, unregister
}

// run receives the subscription's messages until close; a failed
// connection is retried with backoff, waiters falling back to their timers
// meanwhile.
func (n *notifier) run() {
	defer n.wg.Done()
	backoff := 10 * time.Millisecond
	for {
		msg, err := n.ps.Receive(context.Background())
		select {
		case <-n.done:
			return
		default:
		}
		if err != nil {
			n.failed(err)
			if !sleepOrDone(n.done, backoff) {
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		n.deliver(msg)
	}
}

// failed notes a broken subscription (logged once per outage).
func (n *notifier) failed(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.broken {
		n.log.Warn("mutex: subscription connection failed; waiters fall back to timers", "err", err)
	}
	n.broken = true
}

// deliver wakes the waiters a message names, or the registration a pong
// answers. The first message after an outage wakes everyone first.
func (n *notifier) deliver(msg any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.broken {
		// Releases published while we were away are lost: let every
		// waiter try again now.
		n.broken = false
		for _, ws := range n.channels {
			for _, w := range ws {
				signal(w, 0)
			}
		}
		for p, r := range n.pings {
			close(r)
			delete(n.pings, p)
		}
	}
	switch m := msg.(type) {
	case *redis.Message:
		// "head [second]": the head tries now, the second after the
		// handoff window unless the head took the lock.
		head, second, _ := strings.Cut(m.Payload, " ")
		if w, ok := n.channels[m.Channel][head]; ok {
			signal(w, 0)
		}
		if w, ok := n.channels[m.Channel][second]; ok && second != "" {
			signal(w, handoffWindow+time.Duration(rand.N(50))*time.Millisecond)
		}
	case *redis.Pong:
		if r, ok := n.pings[m.Payload]; ok {
			close(r)
			delete(n.pings, m.Payload)
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

// signal delivers a wake-up without blocking; a pending one is replaced
// only by a more urgent one.
func signal(c chan time.Duration, after time.Duration) {
	for {
		select {
		case c <- after:
			return
		default:
		}
		select {
		case old := <-c:
			if old < after {
				after = old
			}
		default:
		}
	}
}

func (n *notifier) close() error {
	close(n.done)
	err := n.ps.Close()
	n.wg.Wait()
	return err
}
