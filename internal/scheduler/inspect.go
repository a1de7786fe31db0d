package scheduler

import (
	"context"
	"errors"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/jobd/jobd/internal/jobs"
)

// overdueGrace: a tick counts as missed only once every replica has had
// time to claim it (the largest splay plus a margin).
const overdueGrace = MaxSplay + 5*time.Second

// Inspector reads and asks the cluster for operators (`jobd status`,
// `history`, `trigger`, and anything else that shows it): which replicas
// are alive and agree on the config, where each instance stands, the
// trigger protocol, and what a run's end means as an exit code. The rules
// that decide it (which config is the majority's, when a tick is overdue,
// what a lock's label says) live here, next to the code that writes that
// state; callers only show it.
type Inspector struct{ store *Store }

// NewInspector reads through store.
func NewInspector(store *Store) *Inspector { return &Inspector{store: store} }

// ReplicaState is a live replica's heartbeat, and whether its config is
// the one most live replicas run.
type ReplicaState struct {
	Heartbeat
	ConfigMatches bool
}

// Replicas returns the live replicas, sorted by id. Their Running lists
// come from the running index, which runs enter when they start (or
// start waiting) and leave when they end, rather than from the heartbeat,
// which may be a beat old.
func (i *Inspector) Replicas(ctx context.Context) ([]ReplicaState, error) {
	beats, err := i.store.Replicas(ctx)
	if err != nil {
		return nil, err
	}
	entries, err := i.store.running(ctx, nil) // every lock with a running index is listed
	if err != nil {
		return nil, err
	}
	running := map[string][]string{} // replica -> instances
	for _, e := range entries {
		running[e.Replica] = append(running[e.Replica], e.Instance)
	}
	for k := range beats {
		beats[k].Running = running[beats[k].ID]
		sort.Strings(beats[k].Running)
	}
	hashes := map[string]int{}
	for _, b := range beats {
		hashes[b.ConfigHash]++
	}
	common := ""
	for h, n := range hashes {
		if n > hashes[common] || (n == hashes[common] && h < common) {
			common = h
		}
	}
	sort.Slice(beats, func(a, b int) bool { return beats[a].ID < beats[b].ID })
	out := make([]ReplicaState, len(beats))
	for k, b := range beats {
		out[k] = ReplicaState{Heartbeat: b, ConfigMatches: b.ConfigHash == common}
	}
	return out, nil
}

// InstanceState is where one instance stands.
type InstanceState struct {
	Instance *jobs.Instance
	State    string     // active, suspended or disabled
	NextFire *time.Time // nil unless active
	LastRun  *Record    // nil: never ran (or its history is gone)
	// Overdue: the instance's last due tick has no claim (no replica ran
	// it) and nothing ran since. While replicas are alive, only a tick due
	// after the oldest of them started counts: on a fresh install a
	// @daily job's midnight tick, due before any replica existed, is not
	// overdue. With no replica alive every missed tick counts.
	Overdue bool
}

// Instances returns the state of every instance of cfg at now, in three
// round trips however many there are.
func (i *Inspector) Instances(ctx context.Context, cfg *jobs.Config, now time.Time) ([]InstanceState, error) {
	refs := make([]Ref, 0, len(cfg.Instances))
	dueTicks := map[string]time.Time{}
	for _, in := range cfg.Instances {
		refs = append(refs, RefOf(in))
		if in.Enabled && !in.Suspended {
			first := in.Schedule.Next(now)
			period := in.Schedule.Next(first).Sub(first)
			if due := in.Schedule.Last(now.Add(-overdueGrace), 2*period+overdueGrace); !due.IsZero() {
				dueTicks[in.Name] = due
			}
		}
	}
	last, claimed, err := i.store.Overview(ctx, refs, dueTicks)
	if err != nil {
		return nil, err
	}
	beats, err := i.store.Replicas(ctx)
	if err != nil {
		return nil, err
	}
	var upSince time.Time // when the oldest live replica started
	for _, b := range beats {
		if upSince.IsZero() || b.StartedAt.Before(upSince) {
			upSince = b.StartedAt
		}
	}
	out := make([]InstanceState, 0, len(cfg.Instances))
	for _, in := range cfg.Instances {
		st := InstanceState{Instance: in, State: "active"}
		switch {
		case !in.Enabled:
			st.State = "disabled"
		case in.Suspended:
			st.State = "suspended"
		}
		if next := in.Schedule.Next(now); !next.IsZero() && st.State == "active" {
			next = next.UTC()
			st.NextFire = &next
		}
		if r, ok := last[in.Name]; ok {
			st.LastRun = &r
		}
		if due, ok := dueTicks[in.Name]; ok && !claimed[in.Name] && (upSince.IsZero() || due.After(upSince)) {
			st.Overdue = st.LastRun == nil || st.LastRun.ScheduledAt.Before(due)
		}
		out = append(out, st)
	}
	return out, nil
}

// History returns an instance's last runs, newest first, at most limit.
func (i *Inspector) History(ctx context.Context, r Ref, limit int) ([]Record, error) {
	return i.store.History(ctx, r, limit)
}

// RedisWarnings reads Redis's settings now and says which weaken the
// guarantees (see Store.Durability).
func (i *Inspector) RedisWarnings(ctx context.Context) ([]string, error) {
	return i.store.Durability(ctx)
}

// ParseLabel reads the label the scheduler writes on a job's lock (see
// label), "instance=NAME run=RUN_ID": the instance and the run id, or ""
// for a lock taken otherwise. The run id, last, has no space; the
// instance name may have some (a param with spaces).
func ParseLabel(s string) (instance, runID string) {
	rest, ok := strings.CutPrefix(s, "instance=")
	if !ok {
		return "", ""
	}
	i := strings.LastIndex(rest, " run=")
	if i < 0 {
		return "", ""
	}
	return rest[:i], rest[i+len(" run="):]
}

// Errors of Trigger and its waits.
var (
	// ErrNoReplica: no replica is alive to pick a trigger request up.
	ErrNoReplica = errors.New("scheduler: no replica is alive")
	// ErrNotPickedUp: no replica picked the trigger request up in time
	// (is the instance in the live replicas' config?). The request is
	// withdrawn.
	ErrNotPickedUp = errors.New("scheduler: trigger not picked up")
	// ErrNotRecorded: a replica picked the request up but never recorded
	// the run (it may have stopped before starting it). Nothing ran that
	// jobd knows of.
	ErrNotRecorded = errors.New("scheduler: trigger picked up, but the run was never recorded")
	// ErrStillRunning: the run had not ended when the wait ran out.
	ErrStillRunning = errors.New("scheduler: run still in progress")
)

// Trigger asks the cluster to run instance now, on behalf of USER@HOSTNAME,
// and returns the request: exactly one live replica that has the instance
// picks it up and runs it through the instance's lock (see AwaitRecord).
// With no replica alive, it is ErrNoReplica and nothing is asked.
func (i *Inspector) Trigger(ctx context.Context, instance string) (TriggerRequest, error) {
	beats, err := i.store.Replicas(ctx)
	if err != nil {
		return TriggerRequest{}, err
	}
	if len(beats) == 0 {
		return TriggerRequest{}, ErrNoReplica
	}
	now := time.Now()
	host, _ := os.Hostname()
	req := TriggerRequest{RunID: newRunID(now), Instance: instance, RequestedAt: now.UTC(), RequestedBy: os.Getenv("USER") + "@" + host}
	return req, i.store.RequestTrigger(ctx, req)
}

// AwaitRecord waits until the run that a trigger request asked for has a
// record, for up to pickup. Errors for which fatal is true end the wait
// at once (Redis refusing, not an outage); others are retried.
func (i *Inspector) AwaitRecord(ctx context.Context, ref Ref, runID string, pickup time.Duration, fatal func(error) bool) (Record, error) {
	deadline := time.Now().Add(pickup)
	for {
		r, found, err := i.store.Record(ctx, ref, runID)
		switch {
		case err == nil && found:
			return r, nil
		case fatal(err):
			_ = i.store.CancelTrigger(context.WithoutCancel(ctx), runID)
			return Record{}, err
		case time.Now().After(deadline):
			pending, perr := i.store.TriggerPending(ctx, runID)
			_ = i.store.CancelTrigger(context.WithoutCancel(ctx), runID)
			if perr == nil && !pending {
				return Record{}, ErrNotRecorded
			}
			return Record{}, ErrNotPickedUp
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return Record{}, ctx.Err()
		}
	}
}

// AwaitEnd waits until rec's run has ended (a final status), for up to
// timeout (then ErrStillRunning, with the record as last read); a timeout
// of 0 waits with no limit, until ctx ends.
func (i *Inspector) AwaitEnd(ctx context.Context, rec Record, timeout time.Duration, fatal func(error) bool) (Record, error) {
	deadline := time.Now().Add(timeout)
	for !rec.Status.Final() {
		if timeout != 0 && time.Now().After(deadline) {
			return rec, ErrStillRunning
		}
		if !sleepCtx(ctx, 200*time.Millisecond) {
			return rec, ctx.Err()
		}
		r, found, err := i.store.Record(ctx, refOf(&rec), rec.RunID)
		switch {
		case err == nil && found:
			rec = r
		case fatal(err):
			return rec, err
		}
	}
	return rec, nil
}

// ShellCode is the exit code that stands for r's end, as `jobd trigger
// --wait` exits with it: 0 succeeded, 124 timeout (as timeout(1)), 70
// lock lost or abandoned, 75 skipped because its lock was held (as jobd
// lock), 128+N killed by signal N, else the command's own code, or 1.
func (r Record) ShellCode() int {
	switch r.Status {
	case jobs.StatusSucceeded:
		return 0
	case jobs.StatusTimeout:
		return 124
	case jobs.StatusLockLost, jobs.StatusAbandoned:
		return 70
	case jobs.StatusSkipped:
		return 75
	}
	if r.SignalNo > 0 {
		return 128 + r.SignalNo
	}
	if r.ExitCode != nil && *r.ExitCode > 0 {
		return *r.ExitCode
	}
	return 1
}
