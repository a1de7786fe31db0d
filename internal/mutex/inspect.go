package mutex

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Info describes a held lock. It never carries the token.
type Info struct {
	Name       string        `json:"name"`
	Key        string        `json:"key"`
	Owner      string        `json:"owner"`
	Host       string        `json:"host"`
	PID        int           `json:"pid"`
	Label      string        `json:"label,omitempty"`
	Fence      int64         `json:"fence"`
	AcquiredAt time.Time     `json:"acquired_at"` // Redis clock
	HeldFor    time.Duration `json:"held_for_ns"` // Redis clock, now minus AcquiredAt
	TTL        time.Duration `json:"ttl_left_ns"` // remaining lease
	LeaseTTL   time.Duration `json:"lease_ttl_ns"`
	// Waiters is how many are queued for the lock (a waiter that died
	// counts until its place lapses); always 0 on a quorum, where waiters
	// do not queue.
	Waiters int `json:"waiters"`
}

// infoFields are read from a lock hash; the token, last, only to tell
// holds apart on a quorum: it never leaves the package.
var infoFields = []string{"owner", "host", "pid", "label", "fence", "acquired_at", "ttl", "token"}

// Inspect reports who holds the lock called name; ok is false when it is
// free. One round trip.
func (c *Client) Inspect(ctx context.Context, name string) (info Info, ok bool, err error) {
	infos, err := c.inspectKeys(ctx, []string{c.keys(name).lock})
	if err != nil || len(infos) == 0 {
		return Info{}, false, err
	}
	return infos[0], true, nil
}

// List returns every held lock under the client's prefix, sorted by name.
// It scans, so it is meant for status tools, not hot paths.
func (c *Client) List(ctx context.Context) ([]Info, error) {
	pattern := escapeGlob(c.prefix+":lock:{") + "*}"
	var (
		mu  sync.Mutex
		all []string
	)
	scan := func(ctx context.Context, r redis.Cmdable) error {
		it := r.ScanType(ctx, 0, pattern, 256, "hash").Iterator()
		for it.Next(ctx) {
			mu.Lock()
			all = append(all, it.Val())
			mu.Unlock()
		}
		return it.Err()
	}
	var err error
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return scan(ctx, node)
		})
	} else if c.quorum() {
		all, err = c.listQuorum(ctx, pattern)
	} else {
		err = scan(ctx, c.rdb)
	}
	if err != nil {
		return nil, fmt.Errorf("mutex: list: %w", err)
	}
	infos, err := c.inspectKeys(ctx, all)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(infos, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return infos, nil
}

// inspectKeys reads holder metadata of lock keys in one pipeline; keys
// that are free (or not lock hashes) are left out. On a quorum it reads
// every master and reports a lock as held only by a token that holds it
// on a majority: its largest fence, its shortest lease left.
func (c *Client) inspectKeys(ctx context.Context, lockKeys []string) ([]Info, error) {
	if len(lockKeys) == 0 {
		return nil, nil
	}
	if !c.quorum() {
		hs, err := c.readHolds(ctx, c.rdb, lockKeys)
		out := make([]Info, len(hs))
		for i, h := range hs {
			out[i] = h.Info
		}
		return out, err
	}
	type answer struct {
		hs  []hold
		err error
	}
	as := onEach(ctx, c, quorumReadTimeout, answer{err: errNoAnswer}, majorityAnswered(c, func(a answer) error { return a.err }), func(ctx context.Context, _ int, rdb redis.UniversalClient) answer {
		hs, err := c.readHolds(ctx, rdb, lockKeys)
		return answer{hs, err}
	})
	errs := make([]error, len(as))
	type id struct{ key, token string }
	seen := map[id]int{}
	best := map[id]Info{}
	var order []id
	for n, a := range as {
		errs[n] = a.err
		for _, h := range a.hs {
			k := id{h.Key, h.token}
			b, ok := best[k]
			switch {
			case !ok:
				b = h.Info
				order = append(order, k)
			default:
				b.Fence, b.HeldFor, b.TTL = max(b.Fence, h.Fence), max(b.HeldFor, h.HeldFor), min(b.TTL, h.TTL)
			}
			best[k], seen[k] = b, seen[k]+1
		}
	}
	if err := c.needMajority("inspect", errs); err != nil {
		return nil, fmt.Errorf("mutex: inspect: %w", err)
	}
	var out []Info
	for _, k := range order {
		if seen[k] >= c.majority() {
			out = append(out, best[k])
		}
	}
	return out, nil
}

// hold is a lock hash as one Redis holds it.
type hold struct {
	Info
	token string
}

// readHolds reads the lock hashes of lockKeys on one Redis, in one
// pipeline.
func (c *Client) readHolds(ctx context.Context, rdb redis.Cmdable, lockKeys []string) ([]hold, error) {
	pipe := rdb.Pipeline()
	timeCmd := pipe.Time(ctx)
	type pair struct {
		meta    *redis.SliceCmd
		pttl    *redis.DurationCmd
		waiters *redis.IntCmd
	}
	cmds := make([]pair, len(lockKeys))
	for i, k := range lockKeys {
		cmds[i] = pair{meta: pipe.HMGet(ctx, k, infoFields...), pttl: pipe.PTTL(ctx, k)}
		if !c.quorum() { // waiters do not queue on a quorum
			cmds[i].waiters = pipe.ZCard(ctx, c.keys(c.nameOf(k)).queue)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("mutex: inspect: %w", err)
	}
	now := timeCmd.Val()
	var out []hold
	for i, k := range lockKeys {
		vals := cmds[i].meta.Val()
		if len(vals) != len(infoFields) || vals[4] == nil {
			continue // free, or expired between scan and read
		}
		s := func(j int) string { v, _ := vals[j].(string); return v }
		pid, _ := strconv.Atoi(s(2))
		fence, _ := strconv.ParseInt(s(4), 10, 64)
		at, _ := strconv.ParseInt(s(5), 10, 64)
		lease, _ := strconv.ParseInt(s(6), 10, 64)
		acquired := time.UnixMilli(at).UTC()
		out = append(out, hold{token: s(7), Info: Info{
			Name:       c.nameOf(k),
			Key:        k,
			Owner:      s(0),
			Host:       s(1),
			PID:        pid,
			Label:      s(3),
			Fence:      fence,
			AcquiredAt: acquired,
			HeldFor:    now.Sub(acquired).Truncate(time.Millisecond),
			TTL:        max(cmds[i].pttl.Val(), 0),
			LeaseTTL:   time.Duration(lease) * time.Millisecond,
			Waiters:    waiters(cmds[i].waiters),
		}})
	}
	return out, nil
}

// waiters is a queue's length, 0 when it was not read (a quorum).
func waiters(cmd *redis.IntCmd) int {
	if cmd == nil {
		return 0
	}
	return int(cmd.Val())
}

func (c *Client) nameOf(lockKey string) string {
	s := strings.TrimPrefix(lockKey, c.prefix+":lock:{")
	return strings.TrimSuffix(s, "}")
}

func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// quorumReadTimeout bounds each master's part of a status read on a
// quorum (Inspect, List), which may read many keys.
const quorumReadTimeout = 2 * time.Second

// listQuorum is List's scan on a quorum: every master's lock keys, their
// union once a majority has answered.
func (c *Client) listQuorum(ctx context.Context, pattern string) ([]string, error) {
	type answer struct {
		keys []string
		err  error
	}
	as := onEach(ctx, c, quorumReadTimeout, answer{err: errNoAnswer}, majorityAnswered(c, func(a answer) error { return a.err }), func(ctx context.Context, _ int, rdb redis.UniversalClient) answer {
		var a answer
		it := rdb.ScanType(ctx, 0, pattern, 256, "hash").Iterator()
		for it.Next(ctx) {
			a.keys = append(a.keys, it.Val())
		}
		a.err = it.Err()
		return a
	})
	var all []string
	errs := make([]error, len(as))
	for n, a := range as {
		all, errs[n] = append(all, a.keys...), a.err
	}
	if err := c.needMajority("list", errs); err != nil {
		return nil, err
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// majorityAnswered is onEach's settled for a read: a majority of the
// masters answered without error (errOf tells a reply's error).
func majorityAnswered[T any](c *Client, errOf func(T) error) func([]T) bool {
	return func(as []T) bool {
		errs := make([]error, len(as))
		for n, a := range as {
			errs[n] = errOf(a)
		}
		return c.needMajority("", errs) == nil
	}
}
