package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	redsyncredis "github.com/go-redsync/redsync/v4/redis"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidislock"

	"github.com/jobd/jobd/internal/mutex"
)

// ttl is the lease every library gets.
const ttl = 10 * time.Second

// libs are the libraries compared, each with the settings the issue names.
func libs() []lib {
	return []lib{
		{"jobd", openJobd},
		{"redsync-default", openRedsync()},
		{"redsync-1ms", openRedsync(redsync.WithRetryDelay(time.Millisecond), redsync.WithTries(1<<30))},
		{"redislock-100ms", openRedislock(100 * time.Millisecond)},
		{"redislock-1ms", openRedislock(time.Millisecond)},
		{"rueidislock", openRueidislock},
		{"raw-setnx-1ms", openRaw},
	}
}

// dial is a client on addr: host:port, or "cluster:" and the nodes of a
// Redis Cluster, comma-separated. A quorum's addr ("quorum:" and its
// masters) is several clients: see dialQuorum.
func dial(addr string) redis.UniversalClient {
	if nodes, ok := strings.CutPrefix(addr, "cluster:"); ok {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(nodes, ","),
			ContextTimeoutEnabled: true, ClusterStateReloadInterval: time.Second})
	}
	return redis.NewClient(&redis.Options{Addr: addr})
}

// initAddress is addr as rueidis's InitAddress.
func initAddress(addr string) []string {
	if nodes, ok := strings.CutPrefix(addr, "cluster:"); ok {
		return strings.Split(nodes, ",")
	}
	return []string{addr}
}

// quorumAddrs are the masters of addr when it is "quorum:" and the
// addresses of independent masters, comma-separated.
func quorumAddrs(addr string) ([]string, bool) {
	nodes, ok := strings.CutPrefix(addr, "quorum:")
	if !ok {
		return nil, false
	}
	return strings.Split(nodes, ","), true
}

// dialQuorum is one client per master of addr, or dial(addr) alone when
// addr is not a quorum.
func dialQuorum(addr string) []redis.UniversalClient {
	masters, ok := quorumAddrs(addr)
	if !ok {
		return []redis.UniversalClient{dial(addr)}
	}
	out := make([]redis.UniversalClient, len(masters))
	for i, a := range masters {
		out[i] = dial(a)
	}
	return out
}

func closeAll(rdbs []redis.UniversalClient) {
	for _, r := range rdbs {
		r.Close()
	}
}

// newJobd is jobd's mutex client on addr: mutex.New on one Redis or a
// cluster, mutex.NewQuorum on a quorum's masters; closeFn closes both.
func newJobd(addr string, opts ...mutex.ClientOption) (c *mutex.Client, closeFn func()) {
	rdbs := dialQuorum(addr)
	if len(rdbs) > 1 {
		c = mutex.NewQuorum(rdbs, opts...)
	} else {
		c = mutex.New(rdbs[0], opts...)
	}
	return c, func() {
		c.Close()
		closeAll(rdbs)
	}
}

func openJobd(addr string) (lockFn, func()) {
	c, closeFn := newJobd(addr, mutex.WithPrefix("bench"))
	return func(ctx context.Context, key string) (func() error, error) {
		m := c.NewMutex(key, mutex.WithTTL(ttl))
		if err := m.Lock(ctx); err != nil {
			return nil, err
		}
		return func() error { return m.Unlock(context.Background()) }, nil
	}, closeFn
}

func openRedsync(opts ...redsync.Option) func(string) (lockFn, func()) {
	return func(addr string) (lockFn, func()) {
		rdbs := dialQuorum(addr) // a quorum: redsync's own Redlock, one pool per master
		pools := make([]redsyncredis.Pool, len(rdbs))
		for i, r := range rdbs {
			pools[i] = goredis.NewPool(r)
		}
		rs := redsync.New(pools...)
		return func(ctx context.Context, key string) (func() error, error) {
			m := rs.NewMutex(key, append([]redsync.Option{redsync.WithExpiry(ttl)}, opts...)...)
			if err := m.LockContext(ctx); err != nil {
				return nil, err
			}
			return func() error { _, err := m.UnlockContext(context.Background()); return err }, nil
		}, func() { closeAll(rdbs) }
	}
}

func openRedislock(backoff time.Duration) func(string) (lockFn, func()) {
	return func(addr string) (lockFn, func()) {
		rdb := dial(addr)
		locker := redislock.New(rdb)
		return func(ctx context.Context, key string) (func() error, error) {
			l, err := locker.Obtain(ctx, key, ttl, &redislock.Options{RetryStrategy: redislock.LinearBackoff(backoff)})
			if err != nil {
				return nil, err
			}
			return func() error { return l.Release(context.Background()) }, nil
		}, func() { rdb.Close() }
	}
}

func openRueidislock(addr string) (lockFn, func()) {
	locker, err := rueidislock.NewLocker(rueidislock.LockerOption{
		ClientOption: rueidis.ClientOption{InitAddress: initAddress(addr), DisableCache: false},
		KeyMajority:  1, KeyValidity: ttl, NoLoopTracking: true,
	})
	if err != nil {
		return func(context.Context, string) (func() error, error) { return nil, err }, func() {}
	}
	return func(ctx context.Context, key string) (func() error, error) {
		_, cancel, err := locker.WithContext(ctx, key)
		if err != nil {
			return nil, err
		}
		return func() error { cancel(); return nil }, nil
	}, locker.Close
}

// openRaw is the floor: SET key token NX PX, retried every millisecond,
// and a DEL of the key (not owner-checked: the floor, not a safe lock).
func openRaw(addr string) (lockFn, func()) {
	rdb := dial(addr)
	return func(ctx context.Context, key string) (func() error, error) {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		token := hex.EncodeToString(b)
		for {
			ok, err := rdb.SetNX(ctx, "raw:"+key, token, ttl).Result()
			if err != nil {
				return nil, err
			}
			if ok {
				return func() error { return rdb.Del(context.Background(), "raw:"+key).Err() }, nil
			}
			t := time.NewTimer(time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, errors.Join(errors.New("raw: not obtained"), ctx.Err())
			case <-t.C:
			}
		}
	}, func() { rdb.Close() }
}
