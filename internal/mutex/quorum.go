package mutex

// A quorum of independent masters (the Redlock approach): every operation
// runs on all masters at once and counts only where a majority agrees.
// docs/mutex.md ("On a quorum of independent masters") explains the
// guarantees and their limits.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// quorumNodeTimeout bounds how long one master may take to answer one
// round before it counts as not answering (Redlock's per-node timeout):
// small beside a lease (MinTTL is 3s), so that a dead or paused master
// costs an acquisition little of it.
const quorumNodeTimeout = 500 * time.Millisecond

// maxSplits is how many times an attempt that won a part of the masters
// but no majority, while no one else has one either (a split vote), takes
// back what it won and tries again, after a random pause, before it fails
// with ErrNoQuorum.
const maxSplits = 3

// quorumWakeSpread is how far apart the waiters that a release on a
// quorum wakes (all of them: they do not queue there) try again.
const quorumWakeSpread = 5 * time.Millisecond

// quorumRetryCap bounds how long a waiter on a quorum sleeps without a
// wake-up: a hold taken back after a split vote may leave a lock free
// without a release (the take-back publishes too, but a message can be
// missed while a master is down).
const quorumRetryCap = 500 * time.Millisecond

// undecidedRounds is how many rounds in a row an attempt may stay
// undecided (masters whose reply was lost could make its majority) before
// it is taken back and tried again as after a split vote.
const undecidedRounds = 2

// NewQuorum returns a Client on independent masters (an odd number, three
// or more, with no replication between them): locks and SET NX claims are
// taken on a majority, with Redlock's elapsed-time check, fences are
// lifted so that they never go backwards across any majority, and
// releases go to every master. With one node it is New. The caller keeps
// ownership of the nodes.
func NewQuorum(nodes []redis.UniversalClient, opts ...ClientOption) *Client {
	c := New(nodes[0], opts...)
	if len(nodes) > 1 {
		c.nodes = nodes
	}
	return c
}

// quorum reports whether c runs on a quorum of independent masters.
func (c *Client) quorum() bool { return len(c.nodes) > 1 }

// majority is how many masters must agree.
func (c *Client) majority() int { return len(c.nodes)/2 + 1 }

// drift is Redlock's allowance for the masters' clocks running at
// slightly different rates during a lease: 1% of it plus 2ms.
func drift(ttl time.Duration) time.Duration { return ttl/100 + 2*time.Millisecond }

// quorumGrace is how long an operation on a quorum still waits for the
// other masters once its outcome is settled: long enough for a healthy
// master on the same network, short beside a paused one's timeout.
const quorumGrace = 10 * time.Millisecond

// errNoAnswer is the reply of a master that had not answered when the
// operation's outcome was settled and its grace had passed.
var errNoAnswer = errors.New("mutex: no answer in time (the other masters settled the outcome)")

// onEach runs f on every master at once, each bounded by d, and returns when all have answered, or quorumGrace after
// settled(replies so far) first holds (nil: never); a master that has not
// answered by then has miss as its reply, and its call goes on in the
// background, bounded by d, owned by the Client (Close waits for it). So
// a paused master costs an operation quorumGrace, not d.
func onEach[T any](ctx context.Context, c *Client, d time.Duration, miss T, settled func([]T) bool, f func(ctx context.Context, i int, rdb redis.UniversalClient) T) []T {
	type answer struct {
		i int
		v T
	}
	ch := make(chan answer, len(c.nodes)) // buffered: a late answer never blocks
	c.mu.Lock()
	track := !c.closed // after Close, nothing waits: the caller misuses the Client
	c.mu.Unlock()
	for i, rdb := range c.nodes {
		if track {
			c.bg.Add(1)
		}
		go func() {
			if track {
				defer c.bg.Done()
			}
			nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
			defer cancel()
			stop := context.AfterFunc(ctx, cancel) // the caller's end still ends it
			defer stop()
			ch <- answer{i, f(nctx, i, rdb)}
		}()
	}
	out := make([]T, len(c.nodes))
	for i := range out {
		out[i] = miss
	}
	var grace <-chan time.Time
	for left := len(c.nodes); left > 0; {
		select {
		case a := <-ch:
			out[a.i] = a.v
			left--
			if grace == nil && settled != nil && settled(out) {
				grace = time.After(quorumGrace)
			}
		case <-grace:
			return out
		}
	}
	return out
}

// errNoMajority is the ErrNoQuorum of an operation that failed on too
// many masters to make a majority; errs are the masters' errors (nil
// entries are masters that did not fail).
func (c *Client) errNoMajority(op string, errs []error) error {
	n := 0
	for _, e := range errs {
		if e != nil {
			n++
		}
	}
	return fmt.Errorf("%w: %s: failed on %d of %d masters: %w", ErrNoQuorum, op, n, len(c.nodes), oneLine(errs))
}

// attempt is one acquisition in a quorum round.
type attempt struct {
	m        *Mutex
	token    string
	cl       *SetNX // nil for a plain lock
	excluded []bool // per master: not asked again (errExcluded); nil: none
}

// roundReplies are one round's replies: [attempt][master].
type roundReplies [][]batchResult

// quorumRound runs acquire.lua for every attempt on every master, one
// pipeline per master, all masters at once.
func (c *Client) quorumRound(ctx context.Context, atts []attempt) (roundReplies, time.Time) {
	sent := time.Now()
	miss := make([]batchResult, len(atts))
	for j := range miss {
		miss[j].err = errNoAnswer
	}
	// Settled once no attempt is undecided with the masters that have not
	// answered counted as unknown (a contested attempt is a split: it is
	// taken back rather than waiting for a paused master).
	settled := func(perNode [][]batchResult) bool {
		for j, a := range atts {
			rs := make([]batchResult, len(perNode))
			for n := range perNode {
				rs[n] = perNode[n][j]
			}
			if c.verdict(a, countVotes(a, rs), len(rs)) == undecided {
				return false
			}
		}
		return true
	}
	// Which attempts go to which master is decided here, not in the
	// masters' calls: a slow master's call may still run after onEach
	// returned, while quorumAcquire updates the attempts' exclusions.
	skip := make([][]bool, len(c.nodes))
	for n := range skip {
		skip[n] = make([]bool, len(atts))
		for j, a := range atts {
			skip[n][j] = a.excluded != nil && a.excluded[n]
		}
	}
	perNode := onEach(ctx, c, quorumNodeTimeout, miss, settled, func(ctx context.Context, n int, rdb redis.UniversalClient) []batchResult {
		out := make([]batchResult, len(atts))
		if err := c.loadOn(ctx, n, rdb); err != nil {
			for j := range out {
				out[j].err = err
			}
			return out
		}
		pipe := rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(atts))
		for j, a := range atts {
			if skip[n][j] {
				continue
			}
			keys, args := a.m.acquireArgs(a.token, "", a.cl)
			cmds[j] = acquireScript.EvalSha(ctx, pipe, keys, args...)
		}
		_, _ = pipe.Exec(ctx)
		for j, a := range atts {
			if cmds[j] == nil {
				out[j].err = errExcluded
				continue
			}
			out[j].val, out[j].err = cmds[j].Int64Slice()
			if redis.HasErrorPrefix(out[j].err, "NOSCRIPT") { // the master restarted
				c.loadedOn.Delete(nodeKey(n))
				keys, args := a.m.acquireArgs(a.token, "", a.cl)
				out[j].val, out[j].err = acquireScript.Run(ctx, rdb, keys, args...).Int64Slice()
			}
		}
		return out
	})
	replies := make(roundReplies, len(atts))
	for j := range atts {
		replies[j] = make([]batchResult, len(c.nodes))
		for n := range c.nodes {
			replies[j][n] = perNode[n][j]
		}
	}
	return replies, sent
}

// nodeKey is a master's entry in Client.loadedOn.
func nodeKey(n int) string { return "quorum:" + strconv.Itoa(n) }

// loadOn makes sure acquire.lua is in master n's script cache.
func (c *Client) loadOn(ctx context.Context, n int, rdb redis.UniversalClient) error {
	if _, ok := c.loadedOn.Load(nodeKey(n)); ok {
		return nil
	}
	if err := acquireScript.Load(ctx, rdb).Err(); err != nil {
		return err
	}
	c.loadedOn.Store(nodeKey(n), true)
	return nil
}

// verdict is what a round's replies say about one attempt.
type verdict int

const (
	won       verdict = iota // a majority gave it the lock (and its key)
	busy                     // the key is its own on a majority, or it is a plain lock held by another on a majority, but no majority gave it the lock
	split                    // no majority either way (or contested while masters did not answer): take back what was won and try again
	undecided                // masters whose reply was lost could still make a majority, and no other attempt holds a part: ask again
	failed                   // the key is another attempt's on a majority (and ours nowhere), a definite error, a clock outside the window, or too few masters answered
)

// votes count one attempt's replies, without building any error: the
// settled check of a round counts them each time a master answers.
type votes struct {
	lock, keyOurs, taken, window, unknown, failed int
	err                                           error // a definite error (an error reply), if any
}

func countVotes(a attempt, rs []batchResult) votes {
	var v votes
	for _, r := range rs {
		switch {
		case r.err != nil:
			v.failed++
			switch {
			case notSent(r.err): // down: it gave nothing
			case unknownOutcome(r.err):
				v.unknown++
			default:
				v.err = r.err
			}
		case len(r.val) < 2:
			v.err = fmt.Errorf("mutex: acquire: unexpected reply %v", r.val)
		case r.val[0] == 1:
			v.lock++
		case r.val[0] == 0 && a.cl != nil:
			v.keyOurs++
		case r.val[0] == 0 || r.val[0] == -1: // a plain lock's 0 is "held by another"
			v.taken++
		case r.val[0] == -2:
			v.window++
		}
	}
	return v
}

// verdict of votes, on n masters.
func (c *Client) verdict(a attempt, v votes, n int) verdict {
	maj := c.majority()
	switch {
	case v.lock >= maj:
		return won
	case a.cl != nil && v.lock+v.keyOurs >= maj:
		return busy
	case v.err != nil:
		return failed
	case v.lock+v.keyOurs+v.unknown >= maj && v.taken == 0:
		return undecided
	case v.lock+v.keyOurs+v.unknown >= maj:
		// Contested: another attempt holds a part too, and the masters
		// that did not answer (one paused) would decide. Waiting for them
		// could last, with both holding their parts: take back and go
		// again, as after a split vote.
		return split
	case v.window >= maj:
		return failed
	case v.taken >= maj:
		if a.cl == nil {
			return busy
		}
		if v.lock+v.keyOurs > 0 {
			// Others hold the key on a majority, but this attempt holds
			// it on a master too: they may be several attempts, none
			// with a majority (three contenders, a master each), and if
			// each read this as "someone else won", no one would.
			return split
		}
		return failed // someone else won the key
	case n-v.failed < maj: // not a split: too few masters answered
		return failed
	}
	return split
}

// tally is the verdict on one attempt's replies, with err explaining
// failed, split and undecided, retry a busy plain lock's retry hint (when
// a majority's leases may have run out), and, for won, the fences each
// master handed out (-1 where a master answered without the lock, 0 where
// it did not answer).
func (c *Client) tally(a attempt, rs []batchResult) (v verdict, retry time.Duration, fences []int64, err error) {
	vs := countVotes(a, rs)
	v = c.verdict(a, vs, len(rs))
	maj := c.majority()
	name := strconv.Quote(a.m.name)
	errs := func() []error {
		var out []error
		for n, r := range rs {
			if r.err != nil {
				out = append(out, fmt.Errorf("master %d: %w", n+1, r.err))
			}
		}
		return out
	}
	switch {
	case v == won:
		fences = make([]int64, len(rs))
		for n, r := range rs {
			switch {
			case r.err != nil || len(r.val) < 2:
			case r.val[0] == 1:
				fences[n] = r.val[1]
			default:
				fences[n] = -1
			}
		}
	case v == busy && a.cl == nil:
		var left []int64 // the leases of the masters that hold it for another
		for _, r := range rs {
			if r.err == nil && len(r.val) >= 2 && r.val[0] == 0 {
				left = append(left, r.val[1])
			}
		}
		slices.Sort(left)
		retry = 50 * time.Millisecond
		if len(left) >= maj {
			retry = min(time.Duration(left[maj-1])*time.Millisecond, quorumRetryCap)
		}
	case v == failed && vs.err != nil:
		err = fmt.Errorf("mutex: lock %s: %w", name, vs.err)
	case v == failed && vs.window >= maj:
		err = fmt.Errorf("%w: %s: on %d of %d masters", ErrOutsideWindow, name, vs.window, len(rs))
	case v == failed && vs.taken >= maj:
		err = fmt.Errorf("%w: %s", ErrKeyTaken, name)
	case v == failed, v == undecided:
		err = c.errNoMajority("lock "+name, errs())
	case v == split && vs.unknown > 0:
		err = fmt.Errorf("%w: %s: split vote (%d of %d masters, %d not answering)", ErrNoQuorum, name, vs.lock+vs.keyOurs, len(rs), vs.unknown)
	case v == split:
		err = fmt.Errorf("%w: %s: split vote (%d of %d masters)", ErrNoQuorum, name, vs.lock+vs.keyOurs, len(rs))
	}
	return v, retry, fences, err
}

// undo is what to take back of an attempt: its holds, and with keys its
// SET NX key too.
type undo struct {
	a    attempt
	keys bool
}

// notSent reports whether err says the command never left: the master
// could not be dialled (it is down), so the attempt has nothing there.
func notSent(err error) bool {
	var op *net.OpError
	return errors.Is(err, errExcluded) || errors.As(err, &op) && op.Op == "dial"
}

// errExcluded is the reply of a master that an attempt no longer asks: a
// take-back sent to it was not confirmed, and may still run there after a
// new acquisition, which it would undo (a SET NX key keeps its value from
// round to round, and a late unclaim would delete it).
var errExcluded = errors.New("mutex: not asked: an earlier take-back there is unconfirmed")

// takeBack drops, on every master at once (one pipeline each), what the
// attempts may hold there. Best effort: a lease and a key expire by
// themselves. It returns quorumGrace after the first master answered,
// with the masters that confirmed; on the others it may still run later,
// so an attempt that goes on must not use them again (see excluded).
func (c *Client) takeBack(ctx context.Context, us ...undo) (confirmed []bool) {
	confirmed = make([]bool, len(c.nodes))
	if len(us) == 0 {
		return confirmed
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaveTimeout)
	defer cancel()
	// Settled at the first answer: a paused master's part finishes in
	// the background (within leaveTimeout) instead of holding back the
	// outcomes that wait for this take-back.
	anyAnswer := func([]error) bool { return true }
	errs := onEach(ctx, c, quorumNodeTimeout, errNoAnswer, anyAnswer, func(ctx context.Context, _ int, rdb redis.UniversalClient) error {
		pipe := rdb.Pipeline()
		for _, u := range us {
			a := u.a
			// EVAL, not EVALSHA: a pipeline cannot fall back after a
			// NOSCRIPT, and these run rarely.
			leaveScript.Eval(ctx, pipe, []string{a.m.k.lock}, a.token, a.m.k.channel)
			if u.keys && a.cl != nil {
				unclaimScript.Eval(ctx, pipe, []string{a.cl.Key}, a.cl.Value)
			}
		}
		_, err := pipe.Exec(ctx)
		return err
	})
	for n, err := range errs {
		confirmed[n] = err == nil
	}
	return confirmed
}

// mayHold reports whether a round may have left the attempt anything on
// some master: a lock, its key, or a reply that was lost. An attempt that
// every master refused needs nothing taken back.
func mayHold(a attempt, rs []batchResult) bool {
	for _, r := range rs {
		if r.err != nil || len(r.val) >= 2 && (r.val[0] == 1 || a.cl != nil && r.val[0] == 0) {
			return true
		}
	}
	return false
}

// raise lifts the fence counters so that a majority stands at or above
// each won attempt's fence: the largest fence its majority handed out.
// Every master that answered with another fence (or without the lock) is
// lifted, not only enough of them for a majority, so that a master that
// lagged (it was down) catches up as soon as it answers again; the hold
// is trusted once a majority stands at or above its fence (the others are
// left to finish in the background). Masters that handed out that very
// fence need nothing, so a round in which the masters agree (the usual
// case) costs no second round trip. It returns, per attempt, nil or why
// its fence could not be made safe.
func (c *Client) raise(ctx context.Context, atts []attempt, fences [][]int64) []error {
	errs := make([]error, len(atts))
	top := make([]int64, len(atts))
	need := make([][]bool, len(atts)) // [attempt][master]: answered, and its counter may be below top
	any := false
	for j := range atts {
		top[j] = slices.Max(fences[j])
		need[j] = make([]bool, len(c.nodes))
		for n, f := range fences[j] {
			if f != top[j] && f != 0 {
				need[j][n], any = true, true
			}
		}
	}
	if !any {
		return errs
	}
	missRaise := make([]error, len(atts))
	for j := range missRaise {
		missRaise[j] = errNoAnswer
	}
	// atTop counts the masters known to stand at or above attempt j's
	// fence: those that handed it out, and those raised to it.
	atTop := func(j int, res [][]error) int {
		at := 0
		for n, f := range fences[j] {
			if f == top[j] || need[j][n] && res[n][j] == nil {
				at++
			}
		}
		return at
	}
	raised := func(res [][]error) bool { // every attempt has its majority at or above its fence
		for j := range atts {
			if atTop(j, res) < c.majority() {
				return false
			}
		}
		return true
	}
	res := onEach(ctx, c, quorumNodeTimeout, missRaise, raised, func(ctx context.Context, n int, rdb redis.UniversalClient) []error {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(atts))
		for j, a := range atts {
			if need[j][n] {
				cmds[j] = raiseScript.Eval(ctx, pipe, []string{a.m.k.fence, a.m.k.lock}, top[j], a.token) // rare: see takeBack
			}
		}
		_, _ = pipe.Exec(ctx)
		out := make([]error, len(atts))
		for j, cmd := range cmds {
			if cmd != nil {
				out[j] = cmd.Err()
			}
		}
		return out
	})
	for j := range atts {
		if atTop(j, res) < c.majority() {
			var nerrs []error
			for n := range c.nodes {
				if need[j][n] && res[n][j] != nil {
					nerrs = append(nerrs, res[n][j])
				}
			}
			errs[j] = c.errNoMajority("raise the fence of "+strconv.Quote(atts[j].m.name), nerrs)
		}
	}
	return errs
}

// quorumAcquire runs the attempts until each is settled, calling done(j,
// err) for each as soon as it is, within limit: one round on every master,
// then the fences of the winners are made safe, the winners whose round
// outlasted their lease (minus the clock drift allowance) are taken back,
// and the attempts still undecided or split go again.
func (c *Client) quorumAcquire(ctx context.Context, atts []attempt, limit time.Duration, done func(j int, err error)) {
	deadline := time.Now().Add(limit)
	pending := make([]int, len(atts))
	for j := range pending {
		pending[j] = j
	}
	splits, undecidedRuns := make([]int, len(atts)), make([]int, len(atts))
	last := make([]error, len(atts))
	backoff := 20 * time.Millisecond
	for len(pending) > 0 {
		round := make([]attempt, len(pending))
		for k, j := range pending {
			round[k] = atts[j]
		}
		replies, sent := c.quorumRound(ctx, round)
		var again, winners []int
		var wonFences [][]int64
		var undos []undo
		var settled []func()
		var retried []int // attempts taken back that go again
		for k, j := range pending {
			v, _, fences, err := c.tally(atts[j], replies[k])
			last[j] = err
			hold := mayHold(atts[j], replies[k])
			switch v {
			case won:
				winners, wonFences = append(winners, j), append(wonFences, fences)
				continue
			case undecided:
				// A master whose reply was lost may hold the attempt's
				// key. Ask again; after undecidedRounds, take back and go
				// again as after a split, so that racing attempts that
				// each hold a part (one master paused) cannot wait for
				// each other until the limit.
				if undecidedRuns[j]++; undecidedRuns[j] <= undecidedRounds {
					again = append(again, j)
					continue
				}
				undecidedRuns[j] = 0
				undos = append(undos, undo{atts[j], true})
				if splits[j]++; splits[j] <= maxSplits {
					again, retried = append(again, j), append(retried, j)
					continue
				}
			case busy: // the key stays: it is ours
				err = fmt.Errorf("%w: %q", ErrNotObtained, atts[j].m.name)
				if hold {
					undos = append(undos, undo{atts[j], false})
				}
			case split:
				if hold {
					undos = append(undos, undo{atts[j], true})
				}
				if splits[j]++; splits[j] <= maxSplits {
					again = append(again, j)
					if hold {
						retried = append(retried, j)
					}
					continue
				}
			default: // failed
				if hold {
					undos = append(undos, undo{atts[j], true})
				}
			}
			settled = append(settled, func() { done(j, err) })
		}
		confirmed := c.takeBack(ctx, undos...) // before the outcomes are told, so that a split's retry finds its keys gone
		for _, j := range retried {
			for n, ok := range confirmed {
				if !ok {
					if atts[j].excluded == nil {
						atts[j].excluded = make([]bool, len(c.nodes))
					}
					atts[j].excluded[n] = true
				}
			}
		}
		for _, f := range settled {
			f()
		}
		if len(winners) > 0 {
			wa := make([]attempt, len(winners))
			for k, j := range winners {
				wa[k] = atts[j]
			}
			for k, err := range c.settleWon(ctx, wa, wonFences, sent) {
				done(winners[k], err)
			}
		}
		pending = again
		if len(pending) == 0 {
			return
		}
		d := backoff + rand.N(backoff) // random, so that split voters fall apart
		if time.Now().Add(d).After(deadline) || !sleep(ctx, d) {
			undos := make([]undo, len(pending))
			for k, j := range pending {
				undos[k] = undo{atts[j], true}
			}
			c.takeBack(ctx, undos...)
			for _, j := range pending {
				done(j, last[j])
			}
			return
		}
		backoff = min(2*backoff, time.Second)
	}
}

// settleWon finishes the attempts a majority gave the lock: their
// fences are made safe (raise), and a hold whose round outlasted its lease
// minus the clock drift allowance is taken back, as Redlock does, since
// the first masters' leases may already have run out. The others become
// holds, their lease counted from when the round was sent.
func (c *Client) settleWon(ctx context.Context, atts []attempt, fences [][]int64, sent time.Time) []error {
	errs := c.raise(ctx, atts, fences)
	for j, a := range atts {
		if errs[j] == nil && time.Since(sent) >= a.m.cfg.ttl-drift(a.m.cfg.ttl) {
			// Not ErrNotObtained, which says the key was won and only the
			// lock is busy: the key is taken back below.
			errs[j] = fmt.Errorf("%w: %q: after %v", ErrTooSlow, a.m.name, time.Since(sent).Round(time.Millisecond))
		}
		if errs[j] != nil {
			c.takeBack(ctx, undo{a, true})
			a.m.retireToken()
			continue
		}
		a.m.hold(a.token, slices.Max(fences[j]), sent, a.m.cfg.ttl)
	}
	return errs
}

// acquireQuorum is acquire on a quorum: one round. A lock held by another
// is (false, the time a majority's leases have left, nil); a split vote is
// taken back and tried again after a short random pause; masters that did
// not answer, but could make a majority, are an ErrNoQuorum error, which
// settle (or the waiter's backoff) asks again with the same token.
func (m *Mutex) acquireQuorum(ctx context.Context, token string) (ok bool, retry time.Duration, err error) {
	a := attempt{m: m, token: m.quorumToken(token)}
	replies, sent := m.c.quorumRound(ctx, []attempt{a})
	v, retry, fences, err := m.c.tally(a, replies[0])
	switch v {
	case won:
		if err := m.c.settleWon(ctx, []attempt{a}, [][]int64{fences}, sent)[0]; err != nil {
			return false, 0, err
		}
		return true, 0, nil
	case undecided:
		return false, 0, err
	}
	if mayHold(a, replies[0]) {
		m.c.takeBack(ctx, undo{a, false}) // holds won on a minority
		m.retireToken()
	}
	switch v {
	case busy:
		return false, retry, nil
	case split:
		return false, 5*time.Millisecond + rand.N(20*time.Millisecond), nil
	}
	return false, 0, err
}

// quorumScript runs a lease script (release, extend) on every master and
// returns each master's reply or error.
func (c *Client) quorumScript(ctx context.Context, sc *redis.Script, keys []string, args ...any) ([]int64, []error) {
	type reply struct {
		v   int64
		err error
	}
	unpack := func(rs []reply) ([]int64, []error) {
		vals, errs := make([]int64, len(rs)), make([]error, len(rs))
		for n, r := range rs {
			vals[n], errs[n] = r.v, r.err
		}
		return vals, errs
	}
	settled := func(rs []reply) bool { // a majority did it, or can no longer
		vals, errs := unpack(rs)
		_, err := c.leaseTally("", vals, errs)
		return err == nil
	}
	rs := onEach(ctx, c, quorumNodeTimeout, reply{err: errNoAnswer}, settled, func(ctx context.Context, _ int, rdb redis.UniversalClient) reply {
		v, err := sc.Run(ctx, rdb, keys, args...).Int64()
		return reply{v, err}
	})
	return unpack(rs)
}

// leaseTally reads a release's or extension's replies as one: 1 when a
// majority did it, 0 or -1 (as on one master) when a majority can no
// longer do it, and an ErrNoQuorum error (settle asks again) when the
// masters that did not answer could still make a majority.
func (c *Client) leaseTally(op string, vals []int64, errs []error) (int64, error) {
	var ok, other, gone, unknown int
	for n, err := range errs {
		switch {
		case err != nil:
			unknown++
		case vals[n] == 1:
			ok++
		case vals[n] == 0:
			other++
		default:
			gone++
		}
	}
	maj := c.majority()
	switch {
	case ok >= maj:
		return 1, nil
	case ok+unknown >= maj:
		return 0, c.errNoMajority(op, errs)
	case other > 0:
		return 0, nil
	}
	return -1, nil
}

// runLease runs a lease script (release.lua, extend.lua): on one Redis
// as it is, on a quorum on every master, read as one by leaseTally.
func (c *Client) runLease(ctx context.Context, op string, sc *redis.Script, keys []string, args ...any) (int64, error) {
	if !c.quorum() {
		return sc.Run(ctx, c.rdb, keys, args...).Int64()
	}
	vals, errs := c.quorumScript(ctx, sc, keys, args...)
	return c.leaseTally(op, vals, errs)
}

// broadcast is release.lua's ARGV[5]: "1" on a quorum, where waiters do
// not queue and a release wakes them all.
func (c *Client) broadcast() string {
	if c.quorum() {
		return "1"
	}
	return "0"
}

// subscribers are the connections a Client's waiters listen on: one per
// master on a quorum (a release publishes on every master it reaches).
func (c *Client) subscribers() []*redis.PubSub {
	if !c.quorum() {
		return []*redis.PubSub{c.rdb.Subscribe(context.Background())}
	}
	out := make([]*redis.PubSub, len(c.nodes))
	for i, rdb := range c.nodes {
		out[i] = rdb.Subscribe(context.Background())
	}
	return out
}

// needMajority is nil when a majority of the masters' errs are nil, and
// their ErrNoQuorum otherwise.
func (c *Client) needMajority(op string, errs []error) error {
	ok := 0
	for _, e := range errs {
		if e == nil {
			ok++
		}
	}
	if ok >= c.majority() {
		return nil
	}
	return c.errNoMajority(op, errs)
}

// oneLine joins errs as errors.Join does (errors.Is and As see each),
// but on one line, separated by "; ", so that a log line stays one line.
func oneLine(errs []error) error {
	var j joined
	for _, e := range errs {
		if e != nil {
			j = append(j, e)
		}
	}
	return j
}

type joined []error

func (j joined) Error() string {
	s := make([]string, len(j))
	for i, e := range j {
		s[i] = strings.ReplaceAll(e.Error(), "\n", "; ")
	}
	return strings.Join(s, "; ")
}

func (j joined) Unwrap() []error { return j }

// retireToken makes the handle's next quorum attempt use a new token
// (quorumToken): a take-back just sent may still run on a slow master
// after that attempt, and would drop its hold there.
func (m *Mutex) retireToken() {
	m.mu.Lock()
	m.qgen++
	m.mu.Unlock()
}

// quorumToken is the token of a quorum attempt of the Lock whose token
// is token: the Lock's own, then a new one after each take-back (see
// acquireQuorum).
func (m *Mutex) quorumToken(token string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.qgen == 0 {
		return token
	}
	return token + "." + strconv.Itoa(m.qgen)
}
