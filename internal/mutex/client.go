// Package mutex is a Redis mutex with fencing tokens, keep-alive and
// notified waiting.
//
// Acquire, release and extend are each one Lua script, so one round trip.
// The lock value is a random 128-bit token, so only its owner can release
// or extend it; a per-lock counter hands out strictly increasing fences;
// holder metadata sits next to the token so that status tools can show who
// holds what. Waiters queue in Redis, and a release makes the queue head
// the holder and tells it alone, so a handoff costs one script (the
// release) however many wait.
// See docs/mutex.md for the key layout and guarantees.
package mutex

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultPrefix is the key prefix used when WithPrefix is not given.
const DefaultPrefix = "jobd"

// Client creates mutexes on one Redis and owns the single pub/sub
// subscription that all of its waiters share.
type Client struct {
	rdb    redis.UniversalClient
	nodes  []redis.UniversalClient // NewQuorum's masters; nil otherwise
	prefix string
	owner  string
	host   string
	pid    string
	log    *slog.Logger
	events func(Event, string) // optional observer: event, lock name

	loadedOn sync.Map // server address ("" for a client that is not a cluster's) -> acquire.lua is in its script cache

	replicas       int           // WithReplicaWait: replicas that must acknowledge an acquisition
	replicaTimeout time.Duration // and how long WAIT waits for them

	bg sync.WaitGroup // calls to slow masters of a quorum that operations left behind (onEach)

	mu       sync.Mutex
	notifier *notifier // started on the first wait; stopped by Close
	closed   bool
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithPrefix sets the key prefix (default DefaultPrefix, "jobd").
func WithPrefix(p string) ClientOption { return func(c *Client) { c.prefix = p } }

// WithOwner sets the owner id recorded in holder metadata
// (default "HOSTNAME-PID").
func WithOwner(id string) ClientOption { return func(c *Client) { c.owner = id } }

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) ClientOption { return func(c *Client) { c.log = l } }

// Event is a keep-alive event, for metrics.
type Event string

// Keep-alive events.
const (
	EventRenewed     Event = "renewed"      // a renewal succeeded
	EventRenewFailed Event = "renew_failed" // a renewal failed (Redis error); keep-alive retries
	EventLost        Event = "lost"         // the lease was lost; the holder's context is cancelled
)

// WithEvents sets an observer of keep-alive events (default none). It
// must not block.
func WithEvents(fn func(ev Event, lock string)) ClientOption {
	return func(c *Client) { c.events = fn }
}

func (c *Client) emit(ev Event, lock string) {
	if c.events != nil {
		c.events(ev, lock)
	}
}

// New returns a Client on rdb. The caller keeps ownership of rdb.
func New(rdb redis.UniversalClient, opts ...ClientOption) *Client {
	host, _ := os.Hostname()
	c := &Client{
		rdb:    rdb,
		prefix: DefaultPrefix,
		host:   host,
		pid:    strconv.Itoa(os.Getpid()),
		log:    slog.Default(),
	}
	for _, o := range opts {
		o(c)
	}
	if c.owner == "" {
		c.owner = DefaultOwner()
	}
	return c
}

// DefaultOwner is the owner id of a Client without WithOwner:
// HOSTNAME-PID, which is unique among live processes.
func DefaultOwner() string {
	host, _ := os.Hostname()
	return host + "-" + strconv.Itoa(os.Getpid())
}

// Close stops the shared subscription and waits for its goroutine. Waiters
// still blocked fall back to retrying on their timers.
func (c *Client) Close() error {
	c.mu.Lock()
	n := c.notifier
	c.notifier = nil
	c.closed = true
	c.mu.Unlock()
	defer c.bg.Wait()
	if n != nil {
		return n.close()
	}
	return nil
}

// Owner is the owner id this client records in holder metadata.
func (c *Client) Owner() string { return c.owner }

func (c *Client) getNotifier() *notifier {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	if c.notifier == nil {
		c.notifier = newNotifier(c.subscribers(), c.majority(), c.log)
	}
	return c.notifier
}

// hot reports whether a waiter of channel would start without a round
// trip (see notifier.hot).
func (c *Client) hot(channel string) bool {
	c.mu.Lock()
	n := c.notifier
	c.mu.Unlock()
	return n != nil && n.hot(channel)
}

// randomID returns 128 random bits, hex-encoded.
func randomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("mutex: crypto/rand failed: %v", err)) // never on Linux
	}
	return hex.EncodeToString(b[:])
}

// NewMutex returns a handle on the lock called name. A handle holds the
// lock at most once at a time; use one handle per concurrent holder.
func (c *Client) NewMutex(name string, opts ...Option) *Mutex {
	m := &Mutex{c: c, name: name, k: c.keys(name), cfg: defaultConfig(), extended: make(chan struct{}, 1)}
	for _, o := range opts {
		o(&m.cfg)
	}
	return m
}

// Wrap is the decorator form: it returns fn guarded by the lock called
// name. Every call uses a fresh handle, so concurrent calls wait for each
// other (as Lock does) rather than fail with ErrAlreadyHeld.
func (c *Client) Wrap(name string, fn func(ctx context.Context) error, opts ...Option) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		return c.NewMutex(name, opts...).Do(ctx, fn)
	}
}
