package scheduler

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// The probe: before a backup replica (rank > 0, see owner.go) claims its
// group of a tick, it reads in one round trip which of the group's claim
// keys already exist, and claims only the others. The owner has almost
// always claimed them by then, so a backup costs one command per group
// instead of an acquire script per instance, and the Redis commands per
// tick no longer grow with the number of replicas.
//
// The probe can only spare claims, never decide them: a claim key, once
// set, is never deleted on one Redis (standalone, Sentinel or Cluster;
// a takeover only replaces its value), so a key that exists proves that
// the tick was claimed, and the SET NX this replica would send could not
// win. Anything else (the key is absent, the probe failed or timed out,
// its answer is unknown) claims as before, where the SET NX decides.

// probeTimeout bounds a probe: a slow Redis delays a backup's claims by
// this much at most before they are sent as they would be without it.
const probeTimeout = time.Second

// ticksClaimed reports, for each claim, whether its key already exists,
// in one round trip; false means absent or unknown. On one server (or a
// Sentinel's master) it is one MGET of every key. On Redis Cluster, keys
// of different slots cannot share a command: it is one MGET per lock
// (a claim key carries its lock's hash tag, so the keys of one lock share
// a slot, keys.go), all in one pipeline, which go-redis splits by master
// and sends to the masters at once. A group whose command failed is
// unknown, and err is its error.
//
// On a quorum of independent masters it reads nothing and reports every
// key unknown: there a key can be present on a majority and still be
// taken back (the mutex takes back a claim whose majority came too late
// to trust, Redlock's elapsed-time check), so presence does not prove
// that the tick was claimed for good.
func (s *Store) ticksClaimed(ctx context.Context, claims []*Claim) (claimed []bool, err error) {
	claimed = make([]bool, len(claims))
	rdb := s.single()
	if rdb == nil || len(claims) == 0 {
		return claimed, nil
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if _, cluster := rdb.(*redis.ClusterClient); !cluster {
		keys := make([]string, len(claims))
		for i, c := range claims {
			keys[i] = c.Key
		}
		vals, err := rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return claimed, err
		}
		for i, v := range vals {
			claimed[i] = i < len(claimed) && v != nil
		}
		return claimed, nil
	}
	byLock := map[string][]int{}
	var locks []string
	for i, c := range claims {
		if _, seen := byLock[c.Lock]; !seen {
			locks = append(locks, c.Lock)
		}
		byLock[c.Lock] = append(byLock[c.Lock], i)
	}
	pipe := rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(locks))
	for g, l := range locks {
		keys := make([]string, len(byLock[l]))
		for k, i := range byLock[l] {
			keys[k] = claims[i].Key
		}
		cmds[g] = pipe.MGet(ctx, keys...)
	}
	_, _ = pipe.Exec(ctx) // each command's own error is read below
	for g, l := range locks {
		vals, cerr := cmds[g].Result()
		if cerr != nil {
			err = cerr
			continue
		}
		for k, i := range byLock[l] {
			claimed[i] = k < len(vals) && vals[k] != nil
		}
	}
	return claimed, err
}

// unclaimed is claims less those whose tick the probe found claimed
// (ticksClaimed), which are settled at once as lost to another replica,
// as their SET NX would have been. A probe that failed spares nothing.
func (cl *claimer) unclaimed(ctx context.Context, claims []*Claim) []*Claim {
	claimed, err := cl.store.ticksClaimed(ctx, claims)
	if err != nil {
		cl.log.Debug("probe of the tick's claims failed: claiming them all", "claims", len(claims), "err", err)
	}
	left := claims[:0:0]
	for i, c := range claims {
		if claimed[i] {
			c.Won = false
			cl.settled(c)
			continue
		}
		left = append(left, c)
	}
	return left
}
