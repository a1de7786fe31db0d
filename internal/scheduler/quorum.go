package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Store on a quorum of independent masters (NewQuorumStore) writes
// every operation on all of them and counts it done once a majority
// acknowledged it; it reads from all of them, needs a majority of answers
// and merges them, so that what a minority missed (it was down) or still
// holds (it was down when a run ended) never shows as current.
// docs/scheduler.md ("On a quorum of independent masters") gives the rules
// and their limits. With one node every helper here calls it inline: no
// goroutine, no extra round trip.

// ErrNoQuorum: fewer than a majority of the Redis masters of a quorum
// acknowledged a write or answered a read, so its outcome is unknown (a
// write may have landed on a minority). It is joined with the nodes' own
// errors. A Store on one node never returns it: that node's error is
// returned as it is.
var ErrNoQuorum = errors.New("scheduler: fewer than a majority of Redis masters answered")

// nodeResult is one node's answer to a fan-out.
type nodeResult[T any] struct {
	val T
	err error
}

// fanOut runs f on every node, in parallel (inline when there is only one),
// and returns each node's result in node order. Each call is bounded by
// ctx; fanOut returns once every call has, so that no goroutine outlives it.
func fanOut[T any](ctx context.Context, nodes []redis.UniversalClient, f func(ctx context.Context, rdb redis.UniversalClient) (T, error)) []nodeResult[T] {
	return fanOutNodes(ctx, nodes, func(ctx context.Context, _ int, rdb redis.UniversalClient) (T, error) { return f(ctx, rdb) })
}

// quorumNodeTimeout bounds each node's part of an operation on a quorum:
// a paused (or unreachable) master then costs an operation this long, not
// go-redis's read timeout or its dial retries, while the other masters
// make the majority.
const quorumNodeTimeout = time.Second

// fanOutNodes is fanOut that also tells f which node (index) it runs on.
// On a quorum each node's call is bounded by quorumNodeTimeout.
func fanOutNodes[T any](ctx context.Context, nodes []redis.UniversalClient, f func(ctx context.Context, i int, rdb redis.UniversalClient) (T, error)) []nodeResult[T] {
	out := make([]nodeResult[T], len(nodes))
	if len(nodes) == 1 {
		out[0].val, out[0].err = f(ctx, 0, nodes[0])
		return out
	}
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			nctx, cancel := context.WithTimeout(ctx, quorumNodeTimeout)
			defer cancel()
			out[i].val, out[i].err = f(nctx, i, n)
		})
	}
	wg.Wait()
	return out
}

// majority is how many nodes make a quorum.
func (s *Store) majority() int { return len(s.nodes)/2 + 1 }

// noQuorum is the error of an operation that fewer than a majority of
// nodes acknowledged, joined with the nodes' errors (errsOf).
func (s *Store) noQuorum(errs []error) error {
	if len(s.nodes) == 1 && len(errs) == 1 {
		return errs[0]
	}
	return fmt.Errorf("%w (%d of %d needed): %w", ErrNoQuorum, s.majority(), len(s.nodes), errors.Join(errs...))
}

// errsOf are the errors of the nodes that failed, each naming its node
// (on one node, its error as it is).
func errsOf[T any](s *Store, res []nodeResult[T]) []error {
	var errs []error
	for i, r := range res {
		switch {
		case r.err == nil:
		case len(res) == 1:
			errs = append(errs, r.err)
		default:
			errs = append(errs, fmt.Errorf("%s: %w", nodeName(i, s.nodes[i]), r.err))
		}
	}
	return errs
}

// writeMajority runs f on every node and returns the outcome (key of the
// node's value) that a majority of nodes agree on; a node's error is no
// outcome. When no outcome has a majority it is ErrNoQuorum (on one node:
// that node's error).
func writeMajority[T any, K comparable](ctx context.Context, s *Store, key func(T) K, f func(ctx context.Context, rdb redis.UniversalClient) (T, error)) (K, error) {
	res := fanOut(ctx, s.nodes, f)
	if len(res) == 1 {
		if res[0].err != nil {
			var zero K
			return zero, res[0].err
		}
		return key(res[0].val), nil
	}
	counts := make(map[K]int, 2)
	for _, r := range res {
		if r.err == nil {
			k := key(r.val)
			if counts[k]++; counts[k] >= s.majority() {
				return k, nil
			}
		}
	}
	var zero K
	errs := errsOf(s, res)
	if len(errs) == 0 {
		errs = []error{fmt.Errorf("the nodes answered differently: %v", counts)}
	}
	return zero, s.noQuorum(errs)
}

// readAll runs f on every node and returns the answers of the nodes that
// answered, to be merged; fewer than a majority is ErrNoQuorum (on one
// node: that node's error).
func readAll[T any](ctx context.Context, s *Store, f func(ctx context.Context, rdb redis.UniversalClient) (T, error)) ([]T, error) {
	_, out, err := readAllNodes(ctx, s, f)
	return out, err
}

// readAllNodes is readAll that also says which node gave each answer (an
// index into s.nodes), for the reads that repair what they find.
func readAllNodes[T any](ctx context.Context, s *Store, f func(ctx context.Context, rdb redis.UniversalClient) (T, error)) ([]int, []T, error) {
	res := fanOut(ctx, s.nodes, f)
	var idx []int
	var out []T
	for i, r := range res {
		if r.err == nil {
			idx, out = append(idx, i), append(out, r.val)
		}
	}
	if len(out) < s.majority() {
		return nil, nil, s.noQuorum(errsOf(s, res))
	}
	return idx, out, nil
}

// nodeName names node i in errors and warnings: its address when it is
// one server.
func nodeName(i int, rdb redis.UniversalClient) string {
	if c, ok := rdb.(*redis.Client); ok {
		return c.Options().Addr
	}
	return fmt.Sprintf("node %d", i)
}
