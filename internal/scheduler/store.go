package scheduler

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/jobs"
)

// Store is the scheduler's Redis-facing part: tick claim keys, run
// records, history and replica heartbeats. docs/scheduler.md lists the keys.
type Store struct {
	// nodes are the Redis masters: one (standalone, Sentinel or Cluster),
	// or the independent masters of a quorum (NewQuorumStore).
	nodes  []redis.UniversalClient
	prefix string
	listed sync.Map       // lock name -> when this Store last added it to the running-locks set
	bg     sync.WaitGroup // calls to slow nodes of a quorum that operations left behind (fanOutNodes)
}

// NewStore returns a Store on rdb under prefix.
func NewStore(rdb redis.UniversalClient, prefix string) *Store {
	return &Store{nodes: []redis.UniversalClient{rdb}, prefix: prefix}
}

// NewQuorumStore returns a Store on independent Redis masters (an odd
// number, usually 3, with no replication between them) under prefix, so
// that the run records, history, heartbeats and trigger requests survive
// the loss of any minority of them: every write goes to all and needs a
// majority, every read asks all, needs a majority of answers and merges
// them (see quorum.go). With one node it is NewStore. nodes must not be
// empty.
func NewQuorumStore(nodes []redis.UniversalClient, prefix string) *Store {
	if len(nodes) == 0 {
		panic("scheduler: NewQuorumStore without a node")
	}
	return &Store{nodes: slices.Clone(nodes), prefix: prefix}
}

// single is the one node of a Store that has only one, else nil: the
// operations then run as they always have, inline.
func (s *Store) single() redis.UniversalClient {
	if len(s.nodes) == 1 {
		return s.nodes[0]
	}
	return nil
}

var (
	//go:embed record_push.lua
	recordPushSrc string
	//go:embed record_update.lua
	recordUpdateSrc string
	//go:embed record_abandon.lua
	recordAbandonSrc string
	//go:embed takeover.lua
	takeoverSrc string

	recordPush    = redis.NewScript(recordPushSrc)
	recordUpdate  = redis.NewScript(recordUpdateSrc)
	recordAbandon = redis.NewScript(recordAbandonSrc)
	takeover      = redis.NewScript(takeoverSrc)
)

// ErrClaimLost: a run's claim no longer holds its value, because another
// replica took the tick over (its claimer looked dead before the run
// started). Nothing was written, and the run must not start.
var ErrClaimLost = errors.New("scheduler: claim taken over by another replica")

// Guard names the claim that a run must still hold for a write that
// precedes its start to happen. The zero Guard checks nothing.
type Guard struct {
	Key, Value string
}

// Record is one run's record: every claimed tick has one.
type Record struct {
	RunID       string      `json:"run_id"`
	Instance    string      `json:"instance"`
	Job         string      `json:"job"`
	ScheduledAt time.Time   `json:"scheduled_at"`
	Trigger     string      `json:"trigger"` // schedule, misfire or manual
	Replica     string      `json:"replica"`
	Status      jobs.Status `json:"status"`
	Lock        string      `json:"lock"`
	Fence       int64       `json:"fence,omitempty"`
	Start       *time.Time  `json:"start,omitempty"`
	End         *time.Time  `json:"end,omitempty"`
	ExitCode    *int        `json:"exit_code,omitempty"`
	Signal      string      `json:"signal,omitempty"`
	SignalNo    int         `json:"signal_number,omitempty"`
	Reason      string      `json:"reason,omitempty"`
	Output      string      `json:"output,omitempty"`
	// NeverStarted is true when the run's process never started and never
	// will: it was abandoned while it waited for its lock, or its lease
	// was lost before the start. With misfire: run_once its tick may be
	// taken over. A run that may have started (it was running) never has
	// it, whatever else its record says.
	NeverStarted bool `json:"never_started,omitempty"`
}

// runningEntry is what the running index holds, enough to check a run's
// lock without reading its record.
type runningEntry struct {
	Instance string `json:"instance"`
	Lock     string `json:"lock"`
	Fence    int64  `json:"fence"`
	Replica  string `json:"replica"`
	// Incarnation is the replica process's own id: a replica restarted
	// under the same id is another incarnation, so its predecessor's
	// waiting runs are seen to be dead.
	Incarnation string `json:"incarnation,omitempty"`
}

// indexEntry is a live run's entry in the running index.
func indexEntry(rec *Record, incarnation string) string {
	b, _ := json.Marshal(runningEntry{rec.Instance, rec.Lock, rec.Fence, rec.Replica, incarnation})
	return string(b)
}

// Push stores a new record at the head of its instance's history; a
// running or waiting one also enters the running index (under the
// replica's incarnation). With a Guard, nothing is written and
// ErrClaimLost is returned when the claim holds another value. Safe to
// retry: a run already recorded is left as it is, never pushed again.
func (s *Store) Push(ctx context.Context, rec *Record, history int, incarnation string, g Guard) error {
	body, _ := json.Marshal(rec)
	idx := ""
	if rec.Status == jobs.StatusRunning || rec.Status == jobs.StatusWaiting {
		idx = indexEntry(rec, incarnation)
	}
	r := refOf(rec)
	n, err := s.runListed(ctx, recordPush, idx != "", r.Lock, []string{s.runsKey(r), s.histKey(r), s.runningKey(r.Lock), s.guardKey(r, g)},
		rec.RunID, body, history, idx, g.Value)
	if err == nil && n < 0 {
		return fmt.Errorf("%w: run %s of %s", ErrClaimLost, rec.RunID, rec.Instance)
	}
	return err
}

// Update replaces a record. A final status leaves the running index and,
// for a success, becomes the instance's last success. A Guard is checked
// as in Push; a running update (a waiting run starts) also returns
// ErrClaimLost when the record is no longer waiting (abandoned meanwhile).
// Safe to retry.
func (s *Store) Update(ctx context.Context, rec *Record, history int, incarnation string, g Guard) error {
	body, _ := json.Marshal(rec)
	mode, idx := "final", ""
	switch rec.Status {
	case jobs.StatusRunning, jobs.StatusWaiting:
		mode, idx = "running", indexEntry(rec, incarnation)
	case jobs.StatusSucceeded:
		mode = "success"
	}
	r := refOf(rec)
	n, err := s.runListed(ctx, recordUpdate, idx != "", r.Lock, []string{s.runsKey(r), s.runningKey(r.Lock), s.lastOKKey(r), s.histKey(r), s.guardKey(r, g)},
		rec.RunID, body, mode, idx, history, g.Value)
	if err == nil && n < 0 {
		return fmt.Errorf("%w: run %s of %s", ErrClaimLost, rec.RunID, rec.Instance)
	}
	return err
}

// guardKey is the key a Guard checks; without one, a key of the same slot
// that is never read stands in, so that every script names its keys.
func (s *Store) guardKey(r Ref, g Guard) string {
	if g.Key == "" {
		return s.runsKey(r)
	}
	return g.Key
}

// runListed runs a record script; one that may add to lock's running
// index (list) first makes sure lock is in the running-locks set, so that
// readers whose config no longer names the lock still find its runs.
//
// On a quorum the script runs on every node, and the outcome is the one a
// majority agree on: written (n >= 0, returned as 0) or refused (-1); a
// node that missed the claim (it was down) refuses, which is fine while a
// majority agree. Otherwise it is ErrNoQuorum.
func (s *Store) runListed(ctx context.Context, sc *redis.Script, list bool, lock string, keys []string, args ...any) (int, error) {
	if list {
		s.listLock(ctx, lock)
	}
	if rdb := s.single(); rdb != nil {
		return sc.Run(ctx, rdb, keys, args...).Int()
	}
	return writeMajority(ctx, s, func(n int) int { return min(n, 0) }, func(ctx context.Context, rdb redis.UniversalClient) (int, error) {
		return sc.Run(ctx, rdb, keys, args...).Int()
	})
}

// listAgain is how long a lock this Store added to the running-locks set
// counts as listed: members are never removed, but a Redis that restarted
// without persistence lost the set, and the next SADD within listAgain
// puts the lock back.
const listAgain = time.Minute

// listLock adds lock to the running-locks set, at most once per listAgain
// per lock, so that a run's record costs no extra command. It is best
// effort (an error is tried again at the next record): on Redis Cluster
// the set lives on one shard, and no run waits for that shard beyond this
// call (readers also read the running index of every lock in their
// config). On a quorum it is sent to every node, and counts as done once
// a majority added it (readers take the union of the nodes' sets).
func (s *Store) listLock(ctx context.Context, lock string) {
	if at, ok := s.listed.Load(lock); ok && time.Since(at.(time.Time)) < listAgain {
		return
	}
	if rdb := s.single(); rdb != nil {
		if rdb.SAdd(ctx, s.runningLocksKey(), lock).Err() == nil {
			s.listed.Store(lock, time.Now())
		}
		return
	}
	if _, err := writeMajority(ctx, s, func(int64) bool { return true }, func(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
		return rdb.SAdd(ctx, s.runningLocksKey(), lock).Result()
	}); err == nil {
		s.listed.Store(lock, time.Now())
	}
}

// Takeover gives tick t of instance, claimed with value old by a run that
// never started, to a new claim value. It returns true when the claim is
// now new, and false when the old run may have started (or the claim
// changed): the tick must then not run again. reason is recorded on the
// old run. Safe to retry. On a quorum it is true only when a majority of
// nodes gave the claim to new, false when a majority did not, else
// ErrNoQuorum.
func (s *Store) Takeover(ctx context.Context, r Ref, t time.Time, old, new string, oldRec *Record, history int, reason string) (bool, error) {
	body, _ := json.Marshal(oldRec)
	keys := []string{s.tickKey(r, t), s.runsKey(r), s.histKey(r)}
	if rdb := s.single(); rdb != nil {
		n, err := takeover.Run(ctx, rdb, keys, old, oldRec.RunID, new, body, history, "; "+reason).Int()
		return n == 1, err
	}
	return writeMajority(ctx, s, func(n int) bool { return n == 1 }, func(ctx context.Context, rdb redis.UniversalClient) (int, error) {
		return takeover.Run(ctx, rdb, keys, old, oldRec.RunID, new, body, history, "; "+reason).Int()
	})
}

// History returns up to limit records of an instance, newest first. On a
// quorum it is the union of the nodes' histories, each run as far as any
// node has it (moreAdvanced), newest first by scheduled time.
func (s *Store) History(ctx context.Context, r Ref, limit int) ([]Record, error) {
	if rdb := s.single(); rdb != nil {
		return s.history(ctx, rdb, r, limit)
	}
	lists, err := readAll(ctx, s, func(ctx context.Context, rdb redis.UniversalClient) ([]Record, error) {
		return s.history(ctx, rdb, r, limit)
	})
	if err != nil {
		return nil, err
	}
	out := mergeRecords(lists...)
	sort.Slice(out, func(a, b int) bool { return newer(&out[a], &out[b]) })
	if len(out) > limit {
		out = out[:limit]
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// history reads one node's history of r (see History).
func (s *Store) history(ctx context.Context, rdb redis.UniversalClient, r Ref, limit int) ([]Record, error) {
	ids, err := rdb.LRange(ctx, s.histKey(r), 0, int64(limit)-1).Result()
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	bodies, err := rdb.HMGet(ctx, s.runsKey(r), ids...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(bodies))
	for _, b := range bodies {
		var rec Record
		if str, ok := b.(string); ok && json.Unmarshal([]byte(str), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out, nil
}

// Overview reads, for many instances at once, each one's last run and
// whether the given tick of each was claimed: two round trips in all, so
// that status stays quick with thousands of instances. Instances without
// a tick in ticks are not checked. On a quorum, last is the newest run of
// each instance on any node (as far as any node has it), and a tick is
// claimed when any node that answered has its claim.
func (s *Store) Overview(ctx context.Context, instances []Ref, ticks map[string]time.Time) (last map[string]Record, claimed map[string]bool, err error) {
	if rdb := s.single(); rdb != nil {
		return s.overview(ctx, rdb, instances, ticks)
	}
	type answer struct {
		last    map[string]Record
		claimed map[string]bool
	}
	all, err := readAll(ctx, s, func(ctx context.Context, rdb redis.UniversalClient) (answer, error) {
		l, c, err := s.overview(ctx, rdb, instances, ticks)
		return answer{l, c}, err
	})
	if err != nil {
		return nil, nil, err
	}
	last, claimed = map[string]Record{}, map[string]bool{}
	for _, a := range all {
		for name, rec := range a.last {
			if cur, ok := last[name]; !ok || newer(&rec, &cur) {
				last[name] = rec
			}
		}
		for name, c := range a.claimed {
			claimed[name] = claimed[name] || c
		}
	}
	return last, claimed, nil
}

// overview is Overview on one node.
func (s *Store) overview(ctx context.Context, rdb redis.UniversalClient, instances []Ref, ticks map[string]time.Time) (last map[string]Record, claimed map[string]bool, err error) {
	pipe := rdb.Pipeline()
	heads := make([]*redis.StringCmd, len(instances))
	exists := make(map[string]*redis.IntCmd, len(ticks))
	for i, r := range instances {
		heads[i] = pipe.LIndex(ctx, s.histKey(r), 0)
		if t, ok := ticks[r.Instance]; ok {
			exists[r.Instance] = pipe.Exists(ctx, s.tickKey(r, t))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, err
	}
	claimed = make(map[string]bool, len(exists))
	for name, c := range exists {
		claimed[name] = c.Val() == 1
	}
	pipe = rdb.Pipeline()
	bodies := make(map[string]*redis.StringCmd)
	for i, r := range instances {
		if id := heads[i].Val(); id != "" {
			bodies[r.Instance] = pipe.HGet(ctx, s.runsKey(r), id)
		}
	}
	last = make(map[string]Record, len(bodies))
	if len(bodies) == 0 {
		return last, claimed, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, err
	}
	for name, c := range bodies {
		var rec Record
		if json.Unmarshal([]byte(c.Val()), &rec) == nil && rec.RunID != "" {
			last[name] = rec
		}
	}
	return last, claimed, nil
}

// LastSuccess returns an instance's last successful run, if any.
func (s *Store) LastSuccess(ctx context.Context, r Ref) (Record, bool, error) {
	recs, err := s.LastSuccesses(ctx, []Ref{r})
	if err != nil || recs[0] == nil {
		return Record{}, false, err
	}
	return *recs[0], true, nil
}

// lastSuccessBatch bounds the GETs of one LastSuccesses pipeline.
const lastSuccessBatch = 1000

// LastSuccesses is LastSuccess for many instances at once, in pipelines
// of up to a thousand GETs (split by slot on Redis Cluster): recs[i] is
// the last success of refs[i], nil when it has none. On a quorum it is
// the one that ended last among the nodes.
func (s *Store) LastSuccesses(ctx context.Context, refs []Ref) (recs []*Record, err error) {
	if rdb := s.single(); rdb != nil {
		return s.lastSuccesses(ctx, rdb, refs)
	}
	all, err := readAll(ctx, s, func(ctx context.Context, rdb redis.UniversalClient) ([]*Record, error) {
		return s.lastSuccesses(ctx, rdb, refs)
	})
	if err != nil {
		return nil, err
	}
	recs = make([]*Record, len(refs))
	for _, a := range all {
		for i, rec := range a {
			if rec != nil && (recs[i] == nil || endOf(rec).After(endOf(recs[i]))) {
				recs[i] = rec
			}
		}
	}
	return recs, nil
}

// lastSuccesses is LastSuccesses on one node.
func (s *Store) lastSuccesses(ctx context.Context, rdb redis.UniversalClient, refs []Ref) (recs []*Record, err error) {
	recs = make([]*Record, len(refs))
	for from := 0; from < len(refs); from += lastSuccessBatch {
		batch := refs[from:min(from+lastSuccessBatch, len(refs))]
		pipe := rdb.Pipeline()
		cmds := make([]*redis.StringCmd, len(batch))
		for i, r := range batch {
			cmds[i] = pipe.Get(ctx, s.lastOKKey(r))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for i, c := range cmds {
			b, err := c.Bytes()
			switch {
			case errors.Is(err, redis.Nil):
				continue
			case err != nil:
				return nil, err
			}
			var rec Record
			if json.Unmarshal(b, &rec) == nil {
				recs[from+i] = &rec
			}
		}
	}
	return recs, nil
}

// running returns the running indexes of the given locks and of every
// lock in the running-locks set: run id -> entry. Two round trips, the
// second a pipeline (split by slot on Redis Cluster). What can be read is
// returned: a lock whose index (or the set) is on a shard that does not
// answer is left out, and err is set only when nothing could be read.
//
// On a quorum it is the union of the nodes' indexes (read as above on
// each; a majority of nodes must answer), less the runs that have ended:
// a node that was down when a run ended still lists it. An entry that not
// every node holds is checked against the run's record on every node (one
// pipeline per node), and one whose record is final on any node is left
// out and removed from the indexes that hold it (read repair, best
// effort).
func (s *Store) running(ctx context.Context, locks []string) (map[string]runningEntry, error) {
	if rdb := s.single(); rdb != nil {
		return s.runningOn(ctx, rdb, locks)
	}
	idx, all, err := readAllNodes(ctx, s, func(ctx context.Context, rdb redis.UniversalClient) (map[string]runningEntry, error) {
		return s.runningOn(ctx, rdb, locks)
	})
	if err != nil {
		return nil, err
	}
	out := map[string]runningEntry{}
	holders := map[string][]int{} // run id -> the nodes whose index has it
	for k, m := range all {
		for id, e := range m {
			out[id] = e
			holders[id] = append(holders[id], idx[k])
		}
	}
	var check []string
	for id := range out {
		if len(holders[id]) < len(s.nodes) {
			check = append(check, id)
		}
	}
	if len(check) == 0 {
		return out, nil
	}
	sort.Strings(check)
	// The keys are computed here, not in the nodes' calls: a slow node's
	// call may still run after fanOut returned, while out changes below.
	runsKeys := make([]string, len(check))
	for i, id := range check {
		runsKeys[i] = s.runsKey(Ref{Instance: out[id].Instance, Lock: out[id].Lock})
	}
	// Best effort: a node that does not answer has no say (a majority's
	// answers hold every run end that a majority acknowledged).
	res := fanOut(ctx, s, func(ctx context.Context, rdb redis.UniversalClient) ([]*redis.StringCmd, error) {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.StringCmd, len(check))
		for i, id := range check {
			cmds[i] = pipe.HGet(ctx, runsKeys[i], id)
		}
		_, err := pipe.Exec(ctx)
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		return cmds, nil
	})
	stale := map[int][]runningEntryID{} // node -> the ended runs its index still has
	for i, id := range check {
		var recs [][]Record
		for _, r := range res {
			if r.err != nil {
				continue
			}
			var rec Record
			if b, err := r.val[i].Bytes(); err == nil && json.Unmarshal(b, &rec) == nil && rec.RunID == id {
				recs = append(recs, []Record{rec})
			}
		}
		if m := mergeRecords(recs...); len(m) == 1 && m[0].Status.Final() {
			for _, n := range holders[id] {
				stale[n] = append(stale[n], runningEntryID{id, out[id].Lock})
			}
			delete(out, id)
		}
	}
	if len(stale) > 0 {
		s.repairRunning(ctx, stale)
	}
	return out, nil
}

// runningEntryID names an entry of a lock's running index.
type runningEntryID struct{ id, lock string }

// repairRunning removes, on each node, the entries of ended runs that its
// running index still has (a quorum's read repair; best effort). The
// record scripts only ever remove an entry once its run has ended, so
// removing it again is harmless.
func (s *Store) repairRunning(ctx context.Context, stale map[int][]runningEntryID) {
	_ = fanOutNodes(ctx, s, waitAll, func(ctx context.Context, i int, rdb redis.UniversalClient) (struct{}, error) {
		entries := stale[i]
		if len(entries) == 0 {
			return struct{}{}, nil
		}
		pipe := rdb.Pipeline()
		for _, e := range entries {
			pipe.HDel(ctx, s.runningKey(e.lock), e.id)
		}
		_, err := pipe.Exec(ctx)
		return struct{}{}, err
	})
}

// runningOn is running on one node.
func (s *Store) runningOn(ctx context.Context, rdb redis.UniversalClient, locks []string) (map[string]runningEntry, error) {
	listed, lerr := rdb.SMembers(ctx, s.runningLocksKey()).Result()
	seen := make(map[string]bool, len(locks)+len(listed))
	pipe := rdb.Pipeline()
	var cmds []*redis.MapStringStringCmd
	for _, l := range slices.Concat(locks, listed) { // not append: locks is shared by the nodes' reads
		if !seen[l] {
			seen[l] = true
			cmds = append(cmds, pipe.HGetAll(ctx, s.runningKey(l)))
		}
	}
	out := map[string]runningEntry{}
	if len(cmds) == 0 {
		return out, lerr
	}
	_, err := pipe.Exec(ctx)
	read := 0
	for _, c := range cmds {
		if c.Err() != nil {
			continue
		}
		read++
		for id, b := range c.Val() {
			var e runningEntry
			if json.Unmarshal([]byte(b), &e) == nil {
				out[id] = e
			}
		}
	}
	if read > 0 {
		return out, nil
	}
	// One error: both reads meet the same outage (the review saw its
	// dial error twice in one log line).
	if err == nil {
		err = lerr
	}
	return nil, err
}

// abandon marks a run abandoned if it is still in the running index. On
// a quorum the record is read as Record merges it, and the mark is true
// only when a majority of nodes made it.
func (s *Store) abandon(ctx context.Context, id string, e runningEntry, reason string, neverStarted bool) (bool, error) {
	r := Ref{Instance: e.Instance, Lock: e.Lock}
	var rec Record
	if rdb := s.single(); rdb != nil {
		recs, err := rdb.HGet(ctx, s.runsKey(r), id).Bytes()
		if err == nil {
			_ = json.Unmarshal(recs, &rec)
		} else if !errors.Is(err, redis.Nil) {
			return false, err
		}
	} else if got, _, err := s.Record(ctx, r, id); err != nil {
		return false, err
	} else {
		rec = got
	}
	if rec.RunID == "" {
		rec = Record{RunID: id, Instance: e.Instance, Lock: e.Lock, Fence: e.Fence, Replica: e.Replica}
	}
	now := time.Now().UTC()
	rec.Status, rec.Reason, rec.End, rec.NeverStarted = jobs.StatusAbandoned, reason, &now, neverStarted
	body, _ := json.Marshal(rec)
	keys := []string{s.runningKey(r.Lock), s.runsKey(r)}
	if rdb := s.single(); rdb != nil {
		n, err := recordAbandon.Run(ctx, rdb, keys, id, body).Int()
		return n == 1, err
	}
	return writeMajority(ctx, s, func(n int) bool { return n == 1 }, func(ctx context.Context, rdb redis.UniversalClient) (int, error) {
		return recordAbandon.Run(ctx, rdb, keys, id, body).Int()
	})
}

// claims returns, for each tick, its claim's value ("" when unclaimed).
// On a quorum it is the value most of the nodes that answered hold (a
// majority must answer); "" when none holds one.
func (s *Store) claims(ctx context.Context, r Ref, ticks []time.Time) ([]string, error) {
	if rdb := s.single(); rdb != nil {
		return s.claimsOn(ctx, rdb, r, ticks)
	}
	all, err := readAll(ctx, s, func(ctx context.Context, rdb redis.UniversalClient) ([]string, error) {
		return s.claimsOn(ctx, rdb, r, ticks)
	})
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ticks))
	for i := range ticks {
		counts := map[string]int{}
		for _, a := range all {
			if v := a[i]; v != "" {
				counts[v]++
				if c, best := counts[v], counts[out[i]]; c > best || (c == best && v < out[i]) {
					out[i] = v
				}
			}
		}
	}
	return out, nil
}

// claimsOn is claims on one node.
func (s *Store) claimsOn(ctx context.Context, rdb redis.UniversalClient, r Ref, ticks []time.Time) ([]string, error) {
	pipe := rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ticks))
	for i, t := range ticks {
		cmds[i] = pipe.Get(ctx, s.tickKey(r, t))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]string, len(ticks))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

// claimedElsewhere reports whether tick t of the instance was claimed
// under a key other than its current lock's: under one of its former
// locks, or in the layout of jobd versions before the lock's hash tag.
// One round trip (a pipeline, split by slot on Redis Cluster). On a
// quorum it is true when any node that answered has such a claim; false
// needs a majority of answers.
func (s *Store) claimedElsewhere(ctx context.Context, instance string, former []string, t time.Time) (bool, error) {
	if rdb := s.single(); rdb != nil {
		return s.claimedElsewhereOn(ctx, rdb, instance, former, t)
	}
	return anyNode(ctx, s, func(ctx context.Context, rdb redis.UniversalClient) (bool, error) {
		return s.claimedElsewhereOn(ctx, rdb, instance, former, t)
	})
}

// claimedElsewhereOn is claimedElsewhere on one node.
func (s *Store) claimedElsewhereOn(ctx context.Context, rdb redis.UniversalClient, instance string, former []string, t time.Time) (bool, error) {
	pipe := rdb.Pipeline()
	cmds := []*redis.IntCmd{pipe.Exists(ctx, s.legacyTickKey(instance, t))}
	for _, l := range former {
		cmds = append(cmds, pipe.Exists(ctx, s.tickKey(Ref{Instance: instance, Lock: l}, t)))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return false, err
	}
	for _, c := range cmds {
		if c.Val() > 0 {
			return true, nil
		}
	}
	return false, nil
}

// Heartbeat is what a replica publishes about itself.
type Heartbeat struct {
	ID         string    `json:"id"`
	Host       string    `json:"host"`
	PID        int       `json:"pid"`
	Version    string    `json:"version"`
	StartedAt  time.Time `json:"started_at"`
	ConfigHash string    `json:"config_hash"`
	Running    []string  `json:"running"` // instances running now
	BeatAt     time.Time `json:"heartbeat_at"`
	// Incarnation is random per process: a replica restarted under the
	// same id is a new incarnation.
	Incarnation string `json:"incarnation,omitempty"`
	// ClockOffset is the local clock minus Redis's, as last measured;
	// ClockOK is false while it is too large to claim ticks safely.
	ClockOffset time.Duration `json:"clock_offset_ns"`
	ClockOK     bool          `json:"clock_ok"`
	// Warnings say where Redis's configuration weakens the guarantees
	// (persistence, eviction), as this replica last read it.
	Warnings []string `json:"warnings,omitempty"`
}

// Beat writes a heartbeat that expires after ttl, and returns the one it
// replaced, if any (one round trip): a replaced heartbeat of another
// incarnation means another process writes under the same id.
//
// On a quorum it is written on every node and needs a majority; prev is
// a replaced heartbeat of any node, one of another incarnation first.
func (s *Store) Beat(ctx context.Context, hb Heartbeat, ttl time.Duration) (prev *Heartbeat, err error) {
	if rdb := s.single(); rdb != nil {
		return s.beat(ctx, rdb, hb, ttl)
	}
	res := fanOut(ctx, s, func(ctx context.Context, rdb redis.UniversalClient) (*Heartbeat, error) {
		return s.beat(ctx, rdb, hb, ttl)
	})
	ok := 0
	for _, r := range res {
		if r.err != nil {
			continue
		}
		ok++
		if p := r.val; p != nil && (prev == nil || (prev.Incarnation == hb.Incarnation && p.Incarnation != hb.Incarnation)) {
			prev = p
		}
	}
	if ok < s.majority() {
		return nil, s.noQuorum(errsOf(s, res))
	}
	return prev, nil
}

// beat is Beat on one node.
func (s *Store) beat(ctx context.Context, rdb redis.UniversalClient, hb Heartbeat, ttl time.Duration) (prev *Heartbeat, err error) {
	b, _ := json.Marshal(hb)
	pipe := rdb.Pipeline()
	old := pipe.SetArgs(ctx, s.replicaKey(hb.ID), b, redis.SetArgs{TTL: ttl, Get: true})
	pipe.SAdd(ctx, s.replicasKey(), hb.ID)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	var p Heartbeat
	if old.Err() == nil && json.Unmarshal([]byte(old.Val()), &p) == nil {
		return &p, nil
	}
	return nil, nil
}

// RemoveBeat deletes a replica's heartbeat (clean shutdown), unless
// another incarnation wrote it last: a process started under an id
// already in use must not hide the live replica that has it. On a quorum
// each node checks its own heartbeat so, and a majority must answer.
func (s *Store) RemoveBeat(ctx context.Context, id, incarnation string) error {
	if rdb := s.single(); rdb != nil {
		return s.removeBeat(ctx, rdb, id, incarnation)
	}
	_, err := writeMajority(ctx, s, func(struct{}) bool { return true }, func(ctx context.Context, rdb redis.UniversalClient) (struct{}, error) {
		return struct{}{}, s.removeBeat(ctx, rdb, id, incarnation)
	})
	return err
}

// removeBeat is RemoveBeat on one node.
func (s *Store) removeBeat(ctx context.Context, rdb redis.UniversalClient, id, incarnation string) error {
	b, err := rdb.Get(ctx, s.replicaKey(id)).Bytes()
	var hb Heartbeat
	switch {
	case errors.Is(err, redis.Nil):
	case err != nil:
		return err
	case json.Unmarshal(b, &hb) == nil && hb.Incarnation != "" && hb.Incarnation != incarnation:
		return nil // another live process's heartbeat
	}
	pipe := rdb.Pipeline()
	pipe.Del(ctx, s.replicaKey(id))
	pipe.SRem(ctx, s.replicasKey(), id)
	_, err = pipe.Exec(ctx)
	return err
}

// Replicas returns the live replicas' heartbeats, sorted by id. Liveness
// is the heartbeat key's own TTL, so no clock is compared.
//
// On a quorum it is the union of the nodes' live heartbeats (a majority
// must answer), the newest of each replica; an id is pruned from a node's
// set when no node that answered has its heartbeat.
func (s *Store) Replicas(ctx context.Context) ([]Heartbeat, error) {
	if rdb := s.single(); rdb != nil {
		beats, dead, err := s.replicas(ctx, rdb)
		if len(dead) > 0 {
			_ = rdb.SRem(ctx, s.replicasKey(), dead...).Err() // best effort
		}
		return beats, err
	}
	type answer struct {
		beats []Heartbeat
		dead  []any
	}
	idx, all, err := readAllNodes(ctx, s, func(ctx context.Context, rdb redis.UniversalClient) (answer, error) {
		b, d, err := s.replicas(ctx, rdb)
		return answer{b, d}, err
	})
	if err != nil {
		return nil, err
	}
	newest := map[string]Heartbeat{}
	for _, a := range all {
		for _, hb := range a.beats {
			if cur, ok := newest[hb.ID]; !ok || hb.BeatAt.After(cur.BeatAt) {
				newest[hb.ID] = hb
			}
		}
	}
	dead := map[int][]any{}
	for k, a := range all {
		for _, id := range a.dead {
			if _, live := newest[id.(string)]; !live {
				dead[idx[k]] = append(dead[idx[k]], id)
			}
		}
	}
	if len(dead) > 0 {
		_ = fanOutNodes(ctx, s, waitAll, func(ctx context.Context, i int, rdb redis.UniversalClient) (struct{}, error) {
			if len(dead[i]) == 0 {
				return struct{}{}, nil
			}
			return struct{}{}, rdb.SRem(ctx, s.replicasKey(), dead[i]...).Err() // best effort
		})
	}
	if len(newest) == 0 {
		return nil, nil
	}
	out := make([]Heartbeat, 0, len(newest))
	for _, hb := range newest {
		out = append(out, hb)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out, nil
}

// replicas reads one node's live heartbeats, sorted by id, and the ids
// of its set whose heartbeat expired (see Replicas).
func (s *Store) replicas(ctx context.Context, rdb redis.UniversalClient) ([]Heartbeat, []any, error) {
	ids, err := rdb.SMembers(ctx, s.replicasKey()).Result()
	if err != nil || len(ids) == 0 {
		return nil, nil, err
	}
	sort.Strings(ids)
	// GETs in a pipeline, not one MGET: the heartbeats live in many
	// slots of a Redis Cluster.
	pipe := rdb.Pipeline()
	vals := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		vals[i] = pipe.Get(ctx, s.replicaKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, err
	}
	var out []Heartbeat
	var dead []any
	for i, v := range vals {
		var hb Heartbeat
		if errors.Is(v.Err(), redis.Nil) {
			dead = append(dead, ids[i])
		} else if json.Unmarshal([]byte(v.Val()), &hb) == nil {
			out = append(out, hb)
		}
	}
	return out, dead, nil
}

// Time is Redis's clock. On a quorum it is the median of the clocks of
// the nodes that answered (a majority must), so that one node's wrong
// clock does not move it.
func (s *Store) Time(ctx context.Context) (time.Time, error) {
	if rdb := s.single(); rdb != nil {
		return rdb.Time(ctx).Result()
	}
	all, err := readAll(ctx, s, func(ctx context.Context, rdb redis.UniversalClient) (time.Time, error) {
		return rdb.Time(ctx).Result()
	})
	if err != nil {
		return time.Time{}, err
	}
	slices.SortFunc(all, time.Time.Compare)
	return all[(len(all)-1)/2], nil
}

// statusRank orders a run's statuses as it passes through them.
func statusRank(st jobs.Status) int {
	switch {
	case st == "":
		return 0
	case st == jobs.StatusWaiting:
		return 1
	case st == jobs.StatusRunning:
		return 2
	}
	return 3 // final
}

// moreAdvanced reports whether a is a later state of a run than b, as two
// nodes of a quorum may hold it (one was down for the later write): a
// later status, else an end where b has none, else a later end.
func moreAdvanced(a, b *Record) bool {
	if ra, rb := statusRank(a.Status), statusRank(b.Status); ra != rb {
		return ra > rb
	}
	switch {
	case a.End == nil:
		return false
	case b.End == nil:
		return true
	}
	return a.End.After(*b.End)
}

// newer orders records newest first: by scheduled time, then run id; two
// states of one run are ordered by moreAdvanced.
func newer(a, b *Record) bool {
	if a.RunID == b.RunID {
		return moreAdvanced(a, b)
	}
	if !a.ScheduledAt.Equal(b.ScheduledAt) {
		return a.ScheduledAt.After(b.ScheduledAt)
	}
	return a.RunID > b.RunID
}

// mergeRecords is the union by run id of the nodes' records, each run in
// its most advanced state, in no particular order.
func mergeRecords(lists ...[]Record) []Record {
	var out []Record
	at := map[string]int{}
	for _, l := range lists {
		for _, rec := range l {
			if i, ok := at[rec.RunID]; !ok {
				at[rec.RunID] = len(out)
				out = append(out, rec)
			} else if moreAdvanced(&rec, &out[i]) {
				out[i] = rec
			}
		}
	}
	return out
}

// endOf is when a run ended, or was scheduled when it has no end.
func endOf(rec *Record) time.Time {
	if rec.End != nil {
		return *rec.End
	}
	return rec.ScheduledAt
}
