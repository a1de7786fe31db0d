package mutex

// The batch form of an acquisition: many locks, each with its SET NX key,
// in one pipeline.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

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

// BatchOption configures one TryLockBatch.
type BatchOption func(*batchConfig)

type batchConfig struct {
	settled func(i int, err error)
}

// OnSettled has TryLockBatch call f(i, err) for each attempt as soon as
// its outcome is known, before TryLockBatch returns (err is what the i-th
// error will be), from TryLockBatch's own goroutine. The attempts whose
// reply was lost are asked again while the others are already settled:
// with it, a caller acts on those at once instead of waiting for the
// slowest (on Redis Cluster, a shard that fails over).
func OnSettled(f func(i int, err error)) BatchOption {
	return func(c *batchConfig) { c.settled = f }
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
func (c *Client) TryLockBatch(ctx context.Context, ms []*Mutex, cls []SetNX, opts ...BatchOption) []error {
	var bc batchConfig
	for _, o := range opts {
		o(&bc)
	}
	var mu sync.Mutex // the shards' groups settle at once; f is called one at a time
	done := func(i int, err error) {
		if bc.settled != nil {
			mu.Lock()
			defer mu.Unlock()
			bc.settled(i, err)
		}
	}
	errs := make([]error, len(ms))
	tokens := make([]string, len(ms))
	var pending []int
	for i, m := range ms {
		if errs[i] = m.reserve(); errs[i] == nil {
			tokens[i] = randomID()
			pending = append(pending, i)
		} else {
			done(i, errs[i])
		}
	}
	limit := settleTimeout
	if d, ok := ctx.Deadline(); ok {
		limit = time.Until(d)
	}
	if c.quorum() {
		atts := make([]attempt, len(pending))
		for j, i := range pending {
			atts[j] = attempt{m: ms[i], token: tokens[i], cl: &cls[i]}
		}
		c.quorumAcquire(ctx, atts, limit, func(j int, err error) {
			i := pending[j]
			if err != nil {
				ms[i].unreserve()
			}
			errs[i] = err
			done(i, err)
		})
		return errs
	}
	b := batch{c: c, ms: ms, cls: cls, tokens: tokens, errs: errs, done: done}
	groups := c.byShard(ctx, pending, ms)
	if len(groups) == 1 {
		b.settle(ctx, limit, groups[0])
		return errs
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.settle(ctx, limit, g)
		}()
	}
	wg.Wait()
	return errs
}

// batch is one TryLockBatch: its attempts, and where their outcomes go
// (each group of attempts writes only its own indexes).
type batch struct {
	c      *Client
	ms     []*Mutex
	cls    []SetNX
	tokens []string
	errs   []error
	done   func(i int, err error)
}

// settle runs the attempts pending in one pipeline and asks again, in
// each round, only for those whose outcome is still unknown, until every
// outcome is known or limit passes (then the attempt's hold, if any, is
// dropped and its error is the last one seen).
func (b *batch) settle(ctx context.Context, limit time.Duration, pending []int) {
	ms, errs, tokens := b.ms, b.errs, b.tokens
	_ = settle(ctx, limit, func(ctx context.Context) error {
		if len(pending) == 0 {
			return nil
		}
		var unknown []int
		var lastErr error
		for j, res := range b.c.acquireBatch(ctx, pending, ms, tokens, b.cls) {
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
				if ok {
					if err = m.checkReplicated(ctx, res.acks); err != nil {
						ok = false
					}
				}
			}
			if !ok {
				m.unreserve()
			}
			errs[i] = err
			b.done(i, err)
		}
		pending = unknown
		return lastErr
	})
	for _, i := range pending { // still unknown when settling gave up
		ms[i].leave(ctx, "", tokens[i])
		ms[i].unreserve()
		b.done(i, errs[i])
	}
}

// byShard groups the attempts idx by the Redis Cluster master of their
// lock's slot, so that a shard that does not answer (failing over) holds
// back only its own attempts: each group is its own pipeline. On any
// other client, or when the slot map cannot be read, it is one group.
func (c *Client) byShard(ctx context.Context, idx []int, ms []*Mutex) [][]int {
	cc, ok := c.rdb.(*redis.ClusterClient)
	if !ok || len(idx) < 2 {
		return [][]int{idx}
	}
	by := map[string][]int{}
	var order []string
	for _, i := range idx {
		addr := ""
		if node, err := cc.MasterForKey(ctx, ms[i].k.lock); err == nil {
			addr = node.Options().Addr
		}
		if _, seen := by[addr]; !seen {
			order = append(order, addr)
		}
		by[addr] = append(by[addr], i)
	}
	out := make([][]int, 0, len(order))
	for _, a := range order {
		out = append(out, by[a])
	}
	return out
}

type batchResult struct {
	val  []int64
	err  error
	sent time.Time
	acks int // replicas that acknowledged (WithReplicaWait), -1 when not asked
}

// acquireBatch runs the acquire script with a SetNX key for ms[idx...] in one
// pipeline (EVALSHA; a NOSCRIPT after a Redis restart falls back to EVAL
// for that command).
func (c *Client) acquireBatch(ctx context.Context, idx []int, ms []*Mutex, tokens []string, cls []SetNX) []batchResult {
	out := make([]batchResult, len(idx))
	if err := c.loadScripts(ctx, ms[idx[0]].k.lock); err != nil {
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
	wait := c.queueWait(ctx, pipe) // one WAIT covers the whole batch
	_, _ = pipe.Exec(ctx)
	acks := -1
	if wait != nil {
		if n, err := wait.Int64(); err == nil {
			acks = int(n)
		} else {
			acks = 0 // not known to be replicated: fail closed
		}
	}
	for j, i := range idx {
		out[j].val, out[j].err = cmds[j].Int64Slice()
		out[j].sent, out[j].acks = sent, acks
		if redis.HasErrorPrefix(out[j].err, "NOSCRIPT") { // Redis restarted since loadScripts
			c.loadedOn.Clear()
			keys, args := ms[i].acquireArgs(tokens[i], "", &cls[i])
			out[j].sent = time.Now()
			out[j].val, out[j].acks, out[j].err = c.runAcquire(ctx, keys, args)
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
// the next batch loads again. On Redis Cluster it loads on the master of
// key's slot only (once per master), so that a shard that does not answer
// holds back only the batches sent to it.
func (c *Client) loadScripts(ctx context.Context, key string) error {
	var node redis.Scripter = c.rdb
	addr := "" // the one server of a client that is not a cluster's
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		m, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return err
		}
		node, addr = m, m.Options().Addr
	}
	if _, ok := c.loadedOn.Load(addr); ok {
		return nil
	}
	if err := acquireScript.Load(ctx, node).Err(); err != nil {
		return err
	}
	c.loadedOn.Store(addr, true)
	return nil
}
