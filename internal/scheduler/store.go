package scheduler

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/jobs"
)

// Store is the scheduler's Redis-facing part: tick claim keys, run
// records, history and replica heartbeats. docs/scheduler.md lists the keys.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	listed sync.Map // lock name -> when this Store last added it to the running-locks set
}

// NewStore returns a Store on rdb under prefix.
func NewStore(rdb redis.UniversalClient, prefix string) *Store {
	return &Store{rdb: rdb, prefix: prefix}
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
func (s *Store) runListed(ctx context.Context, sc *redis.Script, list bool, lock string, keys []string, args ...any) (int, error) {
	if list {
		s.listLock(ctx, lock)
	}
	return sc.Run(ctx, s.rdb, keys, args...).Int()
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
// config).
func (s *Store) listLock(ctx context.Context, lock string) {
	if at, ok := s.listed.Load(lock); ok && time.Since(at.(time.Time)) < listAgain {
		return
	}
	if s.rdb.SAdd(ctx, s.runningLocksKey(), lock).Err() == nil {
		s.listed.Store(lock, time.Now())
	}
}

// Takeover gives tick t of instance, claimed with value old by a run that
// never started, to a new claim value. It returns true when the claim is
// now new, and false when the old run may have started (or the claim
// changed): the tick must then not run again. reason is recorded on the
// old run. Safe to retry.
func (s *Store) Takeover(ctx context.Context, r Ref, t time.Time, old, new string, oldRec *Record, history int, reason string) (bool, error) {
	body, _ := json.Marshal(oldRec)
	n, err := takeover.Run(ctx, s.rdb, []string{s.tickKey(r, t), s.runsKey(r), s.histKey(r)},
		old, oldRec.RunID, new, body, history, "; "+reason).Int()
	return n == 1, err
}

// History returns up to limit records of an instance, newest first.
func (s *Store) History(ctx context.Context, r Ref, limit int) ([]Record, error) {
	ids, err := s.rdb.LRange(ctx, s.histKey(r), 0, int64(limit)-1).Result()
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	bodies, err := s.rdb.HMGet(ctx, s.runsKey(r), ids...).Result()
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
// a tick in ticks are not checked.
func (s *Store) Overview(ctx context.Context, instances []Ref, ticks map[string]time.Time) (last map[string]Record, claimed map[string]bool, err error) {
	pipe := s.rdb.Pipeline()
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
	pipe = s.rdb.Pipeline()
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
// the last success of refs[i], nil when it has none.
func (s *Store) LastSuccesses(ctx context.Context, refs []Ref) (recs []*Record, err error) {
	recs = make([]*Record, len(refs))
	for from := 0; from < len(refs); from += lastSuccessBatch {
		batch := refs[from:min(from+lastSuccessBatch, len(refs))]
		pipe := s.rdb.Pipeline()
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
func (s *Store) running(ctx context.Context, locks []string) (map[string]runningEntry, error) {
	listed, lerr := s.rdb.SMembers(ctx, s.runningLocksKey()).Result()
	seen := make(map[string]bool, len(locks)+len(listed))
	pipe := s.rdb.Pipeline()
	var cmds []*redis.MapStringStringCmd
	for _, l := range append(locks, listed...) {
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
	return nil, errors.Join(lerr, err)
}

// abandon marks a run abandoned if it is still in the running index.
func (s *Store) abandon(ctx context.Context, id string, e runningEntry, reason string, neverStarted bool) (bool, error) {
	r := Ref{Instance: e.Instance, Lock: e.Lock}
	recs, err := s.rdb.HGet(ctx, s.runsKey(r), id).Bytes()
	var rec Record
	if err == nil {
		_ = json.Unmarshal(recs, &rec)
	} else if !errors.Is(err, redis.Nil) {
		return false, err
	}
	if rec.RunID == "" {
		rec = Record{RunID: id, Instance: e.Instance, Lock: e.Lock, Fence: e.Fence, Replica: e.Replica}
	}
	now := time.Now().UTC()
	rec.Status, rec.Reason, rec.End, rec.NeverStarted = jobs.StatusAbandoned, reason, &now, neverStarted
	body, _ := json.Marshal(rec)
	n, err := recordAbandon.Run(ctx, s.rdb, []string{s.runningKey(r.Lock), s.runsKey(r)}, id, body).Int()
	return n == 1, err
}

// claims returns, for each tick, its claim's value ("" when unclaimed).
func (s *Store) claims(ctx context.Context, r Ref, ticks []time.Time) ([]string, error) {
	pipe := s.rdb.Pipeline()
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
// One round trip (a pipeline, split by slot on Redis Cluster).
func (s *Store) claimedElsewhere(ctx context.Context, instance string, former []string, t time.Time) (bool, error) {
	pipe := s.rdb.Pipeline()
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
func (s *Store) Beat(ctx context.Context, hb Heartbeat, ttl time.Duration) (prev *Heartbeat, err error) {
	b, _ := json.Marshal(hb)
	pipe := s.rdb.Pipeline()
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
// already in use must not hide the live replica that has it.
func (s *Store) RemoveBeat(ctx context.Context, id, incarnation string) error {
	b, err := s.rdb.Get(ctx, s.replicaKey(id)).Bytes()
	var hb Heartbeat
	switch {
	case errors.Is(err, redis.Nil):
	case err != nil:
		return err
	case json.Unmarshal(b, &hb) == nil && hb.Incarnation != "" && hb.Incarnation != incarnation:
		return nil // another live process's heartbeat
	}
	pipe := s.rdb.Pipeline()
	pipe.Del(ctx, s.replicaKey(id))
	pipe.SRem(ctx, s.replicasKey(), id)
	_, err = pipe.Exec(ctx)
	return err
}

// Replicas returns the live replicas' heartbeats, sorted by id. Liveness
// is the heartbeat key's own TTL, so no clock is compared.
func (s *Store) Replicas(ctx context.Context) ([]Heartbeat, error) {
	ids, err := s.rdb.SMembers(ctx, s.replicasKey()).Result()
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	sort.Strings(ids)
	// GETs in a pipeline, not one MGET: the heartbeats live in many
	// slots of a Redis Cluster.
	pipe := s.rdb.Pipeline()
	vals := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		vals[i] = pipe.Get(ctx, s.replicaKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
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
	if len(dead) > 0 {
		_ = s.rdb.SRem(ctx, s.replicasKey(), dead...).Err() // best effort
	}
	return out, nil
}

// Time is Redis's clock.
func (s *Store) Time(ctx context.Context) (time.Time, error) {
	return s.rdb.Time(ctx).Result()
}
