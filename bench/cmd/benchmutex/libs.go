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
// Redis Cluster, comma-separated.
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

func openJobd(addr string) (lockFn, func()) {
	rdb := dial(addr)
	c := mutex.New(rdb, mutex.WithPrefix("bench"))
	return func(ctx context.Context, key string) (func() error, error) {
			m := c.NewMutex(key, mutex.WithTTL(ttl))
			if err := m.Lock(ctx); err != nil {
				return nil, err
			}
			return func() error { return m.Unlock(context.Background()) }, nil
		}, func() {
			c.Close()
			rdb.Close()
		}
}

func openRedsync(opts ...redsync.Option) func(string) (lockFn, func()) {
	return func(addr string) (lockFn, func()) {
		rdb := dial(addr)
		rs := redsync.New(goredis.NewPool(rdb))
		return func(ctx context.Context, key string) (func() error, error) {
			m := rs.NewMutex(key, append([]redsync.Option{redsync.WithExpiry(ttl)}, opts...)...)
			if err := m.LockContext(ctx); err != nil {
				return nil, err
			}
			return func() error { _, err := m.UnlockContext(context.Background()); return err }, nil
		}, func() { rdb.Close() }
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
