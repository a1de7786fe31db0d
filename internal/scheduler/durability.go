package scheduler

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Durability reads the Redis settings that decide whether what jobd wrote
// survives a Redis restart or memory pressure, and returns a warning for
// each one that weakens the guarantees:
//
//   - appendonly off: a restart loses every claim, lock, fence and record
//     written since the last RDB snapshot, so a tick can run twice and
//     fences go backwards;
//   - appendfsync other than always: a crash loses up to a second of
//     acknowledged writes, with the same effects;
//   - a maxmemory limit with an eviction policy other than noeviction:
//     Redis may evict claims, locks or fence counters.
//
// A setting it may not read (an ACL without CONFIG GET) is a warning too.
// The error is for Redis being unreachable.
//
// On Redis Cluster every master is read (and every warning names its
// node), since the settings are per node; the INFO and CONFIG GET of one
// pipeline would otherwise go to one node.
//
// On a quorum every node is read, and every warning names its node; a
// node that does not answer is a warning too (the quorum then tolerates
// one failure fewer), and the error is for fewer than a majority
// answering.
func (s *Store) Durability(ctx context.Context) ([]string, error) {
	if rdb := s.single(); rdb != nil {
		return durabilityNode(ctx, rdb)
	}
	res := fanOut(ctx, s, durabilityNode)
	var all []string
	answered := 0
	for i, r := range res {
		name := nodeName(i, s.nodes[i])
		if r.err != nil {
			all = append(all, fmt.Sprintf("%s: does not answer (%v): the quorum of Redis masters tolerates one failure fewer until it is back", name, r.err))
			continue
		}
		answered++
		for _, msg := range r.val {
			if _, cluster := s.nodes[i].(*redis.ClusterClient); !cluster {
				msg = name + ": " + msg
			}
			all = append(all, msg)
		}
	}
	if answered < s.majority() {
		return nil, s.noQuorum(errsOf(s, res))
	}
	sort.Strings(all)
	return all, nil
}

// durabilityNode is Durability on one node (one server, or every master
// of a Redis Cluster).
func durabilityNode(ctx context.Context, rdb redis.UniversalClient) ([]string, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return durability(ctx, rdb)
	}
	var mu sync.Mutex
	var all []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		w, err := durability(ctx, node)
		mu.Lock()
		defer mu.Unlock()
		for _, msg := range w {
			all = append(all, node.Options().Addr+": "+msg)
		}
		return err
	})
	sort.Strings(all)
	return all, err
}

// durability reads one node's settings (see Store.Durability).
func durability(ctx context.Context, rdb redis.Cmdable) ([]string, error) {
	// One round trip: a replica reads these at every heartbeat, so that a
	// Redis restarted (or reconfigured) without persistence is noticed
	// within seconds, even when go-redis's retries hid the restart.
	pipe := rdb.Pipeline()
	infoCmd := pipe.Info(ctx, "persistence")
	fsyncCmd := pipe.ConfigGet(ctx, "appendfsync")
	policyCmd := pipe.ConfigGet(ctx, "maxmemory-policy")
	limitCmd := pipe.ConfigGet(ctx, "maxmemory")
	_, execErr := pipe.Exec(ctx)
	info, err := infoCmd.Result()
	if err == nil && info == "" && execErr != nil {
		err = execErr // a connection refused at its start (WRONGPASS) leaves the replies empty
	}
	if err != nil {
		var re redis.Error
		if errors.As(err, &re) {
			return []string{fmt.Sprintf("cannot read INFO persistence (%v): durability unknown", err)}, nil
		}
		return nil, err
	}
	var w []string
	aof := infoField(info, "aof_enabled") == "1"
	if !aof {
		w = append(w, "appendonly is off: a Redis restart loses the claims, locks, fences and records written since the last snapshot; a tick may run twice and fences may go backwards (set appendonly yes, appendfsync always)")
	}
	get := func(c *redis.MapStringStringCmd, name string) (string, error) {
		m, err := c.Result()
		return m[name], err
	}
	if aof {
		switch fsync, err := get(fsyncCmd, "appendfsync"); {
		case err != nil:
			w = append(w, fmt.Sprintf("cannot read appendfsync (%v): durability unknown; allow CONFIG GET in jobd's ACL", err))
		case fsync != "always":
			w = append(w, fmt.Sprintf("appendfsync is %s: a Redis crash can lose the last second of acknowledged writes; a tick claimed then may run twice and fences may go backwards (set appendfsync always)", fsync))
		}
	}
	policy, perr := get(policyCmd, "maxmemory-policy")
	limit, lerr := get(limitCmd, "maxmemory")
	switch {
	case perr != nil || lerr != nil:
		w = append(w, fmt.Sprintf("cannot read maxmemory-policy (%v): eviction unknown; allow CONFIG GET in jobd's ACL", firstErr(perr, lerr)))
	case limit != "0" && policy != "noeviction":
		w = append(w, fmt.Sprintf("maxmemory-policy is %s with maxmemory %s: Redis may evict claims, locks or fence counters, so a tick may run twice and fences may go backwards (set maxmemory-policy noeviction)", policy, limit))
	}
	return w, nil
}

// infoField reads one "name:value" line of an INFO reply.
func infoField(info, name string) string {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok && k == name {
			return v
		}
	}
	return ""
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
