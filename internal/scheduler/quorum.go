package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
// and returns each node's result in node order (see fanOutNodes).
func fanOut[T any](ctx context.Context, s *Store, f func(ctx context.Context, rdb redis.UniversalClient) (T, error)) []nodeResult[T] {
	return fanOutNodes(ctx, s, nil, func(ctx context.Context, _ int, rdb redis.UniversalClient) (T, error) { return f(ctx, rdb) })
}

// quorumNodeTimeout bounds each node's part of an operation on a quorum:
// a paused (or unreachable) master's call ends after this long at the
// latest, not after go-redis's read timeout.
const quorumNodeTimeout = time.Second

// quorumGrace is how long an operation on a quorum still waits for the
// other nodes once enough have answered: long enough for a healthy node
// on the same network, short beside a paused one's quorumNodeTimeout.
const quorumGrace = 10 * time.Millisecond

// errNoAnswer is the result of a node that had not answered when the
// operation had enough answers and its grace had passed.
var errNoAnswer = errors.New("no answer in time (the other nodes made the majority)")

// fanOutNodes is fanOut that also tells f which node (index) it runs on,
// and returns once enough(results so far) holds (nil: a majority of the
// nodes answered without error) and quorumGrace has passed, or once every
// node has answered. A node that has not answered by then has errNoAnswer;
// its call goes on in the background, bounded by quorumNodeTimeout, owned
// by the Store (Close waits for it), so that a paused master costs an
// operation quorumGrace, not quorumNodeTimeout.
func fanOutNodes[T any](ctx context.Context, s *Store, enough func([]nodeResult[T]) bool, f func(ctx context.Context, i int, rdb redis.UniversalClient) (T, error)) []nodeResult[T] {
	nodes := s.nodes
	out := make([]nodeResult[T], len(nodes))
	if len(nodes) == 1 {
		out[0].val, out[0].err = f(ctx, 0, nodes[0])
		return out
	}
	if enough == nil {
		enough = func(rs []nodeResult[T]) bool {
			ok := 0
			for _, r := range rs {
				if r.err == nil {
					ok++
				}
			}
			return ok >= s.majority()
		}
	}
	type answer struct {
		i int
		r nodeResult[T]
	}
	ch := make(chan answer, len(nodes)) // buffered: a late answer never blocks
	for i, n := range nodes {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), quorumNodeTimeout)
			defer cancel()
			stop := context.AfterFunc(ctx, cancel) // the caller's end still ends it
			defer stop()
			var a answer
			a.i = i
			a.r.val, a.r.err = f(nctx, i, n)
			ch <- a
		}()
	}
	for i := range out {
		out[i].err = errNoAnswer
	}
	var grace <-chan time.Time
	for left := len(nodes); left > 0; {
		select {
		case a := <-ch:
			out[a.i] = a.r
			left--
			if grace == nil && enough(out) {
				grace = time.After(quorumGrace)
			}
		case <-grace:
			return out
		}
	}
	return out
}

// Close waits for the calls to slow nodes that operations on a quorum
// left behind (each ends within quorumNodeTimeout). A Store on one node
// has none.
func (s *Store) Close() { s.bg.Wait() }

// majority is how many nodes make a quorum.
func (s *Store) majority() int { return len(s.nodes)/2 + 1 }

// noQuorum is the error of an operation that fewer than a majority of
// nodes acknowledged, joined with the nodes' errors (errsOf).
func (s *Store) noQuorum(errs []error) error {
	if len(s.nodes) == 1 && len(errs) == 1 {
		return errs[0]
	}
	return fmt.Errorf("%w (%d of %d needed): %w", ErrNoQuorum, s.majority(), len(s.nodes), oneLine(errs))
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
	agreed := func(rs []nodeResult[T]) bool { // some outcome has a majority
		counts := map[K]int{}
		for _, r := range rs {
			if r.err == nil {
				if counts[key(r.val)]++; counts[key(r.val)] >= s.majority() {
					return true
				}
			}
		}
		return false
	}
	res := fanOutNodes(ctx, s, agreed, func(ctx context.Context, _ int, rdb redis.UniversalClient) (T, error) { return f(ctx, rdb) })
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
	res := fanOut(ctx, s, f)
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

// waitAll is fanOutNodes's enough for best-effort writes to particular
// nodes (read repair): each is waited for, within quorumNodeTimeout.
func waitAll([]nodeResult[struct{}]) bool { return false }

// oneLine joins errs as errors.Join does (errors.Is and As see each), on
// one line separated by "; ", so that a log line stays one line.
type oneLine []error

func (j oneLine) Error() string {
	s := make([]string, len(j))
	for i, e := range j {
		s[i] = strings.ReplaceAll(e.Error(), "\n", "; ")
	}
	return strings.Join(s, "; ")
}

func (j oneLine) Unwrap() []error { return j }

// anyNode is true when f is true on any node that answered (what a
// majority wrote is on at least one node of any majority), false when a
// majority answered false, and ErrNoQuorum when fewer answered.
func anyNode(ctx context.Context, s *Store, f func(ctx context.Context, rdb redis.UniversalClient) (bool, error)) (bool, error) {
	res := fanOut(ctx, s, f)
	answered := 0
	for _, r := range res {
		if r.err == nil {
			if r.val {
				return true, nil
			}
			answered++
		}
	}
	if answered < s.majority() {
		return false, s.noQuorum(errsOf(s, res))
	}
	return false, nil
}
