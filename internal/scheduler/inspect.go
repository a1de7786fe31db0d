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
// state; callers only print.
type Inspector struct{ store *Store }

// NewInspector reads through store.
func NewInspector(store *Store) *Inspector { return &Inspector{store: store} }

// Status is a snapshot of the cluster, in the stable shape of `jobd
// status --json` (the README documents its fields). Durations are in
// seconds, to the millisecond.
type Status struct {
	GeneratedAt   time.Time       `json:"generated_at"`
	Config        StatusConfig    `json:"config"`
	ReplicasAlive int             `json:"replicas_alive"`
	Replicas      []ReplicaStatus `json:"replicas"`
	Locks         []LockStatus    `json:"locks"`
	Jobs          []JobStatus     `json:"jobs"`
	// RedisWarnings are the Redis settings that weaken the guarantees, as
	// read just now (see docs/failures.md).
	RedisWarnings []string `json:"redis_warnings"`
}

// StatusConfig names the schedule file the snapshot's jobs come from.
type StatusConfig struct {
	File  string `json:"file"`
	Hash  string `json:"hash,omitempty"`
	Error string `json:"error,omitempty"` // why there are no jobs
}

// ReplicaStatus is a live replica: its heartbeat, and whether its config
// is the one most live replicas run.
type ReplicaStatus struct {
	ID            string    `json:"id"`
	Host          string    `json:"host"`
	PID           int       `json:"pid"`
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at"`
	Uptime        float64   `json:"uptime_seconds"`
	HeartbeatAge  float64   `json:"heartbeat_age_seconds"`
	Running       []string  `json:"running"`
	ConfigHash    string    `json:"config_hash"`
	ConfigMatches bool      `json:"config_matches"`
	// ClockOffset is the replica's clock minus Redis's; ClockOK is false
	// while it is beyond 30s and the replica claims nothing.
	ClockOffset float64 `json:"clock_offset_seconds"`
	ClockOK     bool    `json:"clock_ok"`
	// RedisWarnings are the Redis settings, as the replica last read them,
	// that weaken the guarantees (see docs/failures.md).
	RedisWarnings []string `json:"redis_warnings"`
}

// LockStatus is a held lock; Instance and RunID are read from the label
// of a lock a scheduled run holds.
type LockStatus struct {
	Name     string  `json:"name"`
	Holder   string  `json:"holder"`
	Host     string  `json:"host"`
	PID      int     `json:"pid"`
	Label    string  `json:"label,omitempty"`
	Instance string  `json:"instance,omitempty"`
	RunID    string  `json:"run_id,omitempty"`
	Fence    int64   `json:"fence"`
	HeldFor  float64 `json:"held_for_seconds"`
	TTL      float64 `json:"ttl_seconds"`
}

// JobStatus is where an instance stands.
type JobStatus struct {
	Instance string     `json:"instance"`
	Job      string     `json:"job"`
	Schedule string     `json:"schedule"`
	Timezone string     `json:"timezone"`
	Lock     string     `json:"lock"`
	State    string     `json:"state"`               // active, suspended or disabled
	NextFire *time.Time `json:"next_fire,omitempty"` // nil unless active
	// Overdue: the instance's last due tick has no claim (no replica ran
	// it) and nothing ran since.
	Overdue bool           `json:"overdue"`
	LastRun *LastRunStatus `json:"last_run"` // null: never ran
}

// LastRunStatus is the part of an instance's last record status shows.
type LastRunStatus struct {
	RunID       string      `json:"run_id"`
	ScheduledAt time.Time   `json:"scheduled_at"`
	Replica     string      `json:"replica"`
	Trigger     string      `json:"trigger"`
	Status      jobs.Status `json:"status"`
	Start       *time.Time  `json:"start,omitempty"`
	End         *time.Time  `json:"end,omitempty"`
	Duration    *float64    `json:"duration_seconds,omitempty"`
	ExitCode    *int        `json:"exit_code,omitempty"`
}

// Status takes a snapshot at now: replicas, Redis's warnings, the held
// locks that locks lists (the scheduler does not import the mutex, so the
// caller adapts it) and, when cfg is not nil, its instances and
// Config.Hash. The caller fills in the rest of Config: the file, or why
// there is none.
func (i *Inspector) Status(ctx context.Context, cfg *jobs.Config, locks func(context.Context) ([]LockStatus, error), now time.Time) (*Status, error) {
	st := &Status{GeneratedAt: now.UTC(), Locks: []LockStatus{}, Jobs: []JobStatus{}}
	var err error
	if st.Replicas, err = i.Replicas(ctx, now); err != nil {
		return nil, err
	}
	st.ReplicasAlive = len(st.Replicas)
	if st.RedisWarnings, err = i.store.Durability(ctx); err != nil {
		return nil, err
	}
	st.RedisWarnings = append([]string{}, st.RedisWarnings...)
	held, err := locks(ctx)
	if err != nil {
		return nil, err
	}
	for _, l := range held {
		l.Instance, l.RunID = ParseLabel(l.Label)
		st.Locks = append(st.Locks, l)
	}
	if cfg != nil {
		st.Config.Hash = cfg.Hash
		if st.Jobs, err = i.Jobs(ctx, cfg, now); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// Replicas returns the live replicas at now, sorted by id.
func (i *Inspector) Replicas(ctx context.Context, now time.Time) ([]ReplicaStatus, error) {
	beats, err := i.store.Replicas(ctx)
	if err != nil {
		return nil, err
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
	out := make([]ReplicaStatus, 0, len(beats))
	for _, b := range beats {
		out = append(out, ReplicaStatus{ID: b.ID, Host: b.Host, PID: b.PID, Version: b.Version,
			StartedAt: b.StartedAt, Uptime: Seconds(now.Sub(b.StartedAt)), HeartbeatAge: Seconds(now.Sub(b.BeatAt)),
			Running: append([]string{}, b.Running...), ConfigHash: b.ConfigHash, ConfigMatches: b.ConfigHash == common,
			ClockOffset: Seconds(b.ClockOffset), ClockOK: b.ClockOK, RedisWarnings: append([]string{}, b.Warnings...)})
	}
	return out, nil
}

// Jobs returns where every instance of cfg stands at now, in two round
// trips however many there are.
func (i *Inspector) Jobs(ctx context.Context, cfg *jobs.Config, now time.Time) ([]JobStatus, error) {
	names := make([]string, 0, len(cfg.Instances))
	dueTicks := map[string]time.Time{}
	for _, in := range cfg.Instances {
		names = append(names, in.Name)
		if in.Enabled && !in.Suspended {
			first := in.Schedule.Next(now)
			period := in.Schedule.Next(first).Sub(first)
			if due := in.Schedule.Last(now.Add(-overdueGrace), 2*period+overdueGrace); !due.IsZero() {
				dueTicks[in.Name] = due
			}
		}
	}
	last, claimed, err := i.store.Overview(ctx, names, dueTicks)
	if err != nil {
		return nil, err
	}
	out := make([]JobStatus, 0, len(cfg.Instances))
	for _, in := range cfg.Instances {
		j := JobStatus{Instance: in.Name, Job: in.Job, Schedule: in.Schedule.Spec, Timezone: in.Timezone, Lock: in.Lock, State: "active"}
		switch {
		case !in.Enabled:
			j.State = "disabled"
		case in.Suspended:
			j.State = "suspended"
		}
		if next := in.Schedule.Next(now); !next.IsZero() && j.State == "active" {
			next = next.UTC()
			j.NextFire = &next
		}
		r, ran := last[in.Name]
		if ran {
			j.LastRun = &LastRunStatus{RunID: r.RunID, ScheduledAt: r.ScheduledAt, Replica: r.Replica, Trigger: r.Trigger,
				Status: r.Status, Start: r.Start, End: r.End, ExitCode: r.ExitCode}
			if r.Start != nil && r.End != nil {
				d := Seconds(r.End.Sub(*r.Start))
				j.LastRun.Duration = &d
			}
		}
		if due, ok := dueTicks[in.Name]; ok && !claimed[in.Name] {
			j.Overdue = !ran || r.ScheduledAt.Before(due)
		}
		out = append(out, j)
	}
	return out, nil
}

// Seconds is d in seconds, to the millisecond: how Status shows durations.
func Seconds(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }

// ParseLabel reads the label the scheduler writes on a job's lock (see
// label): the instance and the run id, or "" for a lock taken otherwise.
func ParseLabel(s string) (instance, runID string) {
	for _, f := range strings.Fields(s) {
		if v, ok := strings.CutPrefix(f, "instance="); ok {
			instance = v
		} else if v, ok := strings.CutPrefix(f, "run="); ok {
			runID = v
		}
	}
	return instance, runID
}

// Plan is the next fire times of every instance of a config, in the
// stable shape of `jobd plan --json`.
type Plan struct {
	From      time.Time      `json:"from"`
	Instances []PlanInstance `json:"instances"`
}

// PlanInstance is one instance and its next fire times.
type PlanInstance struct {
	Name      string     `json:"name"`
	Job       string     `json:"job"`
	Lock      string     `json:"lock"`
	Schedule  string     `json:"schedule"`
	Timezone  string     `json:"timezone"`
	Enabled   bool       `json:"enabled"`
	Suspended bool       `json:"suspended"`
	Fires     []PlanFire `json:"fires"`
}

// PlanFire is a fire time in the instance's timezone and in UTC; Note
// flags a daylight-saving change (see jobs.Schedule.DSTNote).
type PlanFire struct {
	Local time.Time `json:"local"`
	UTC   time.Time `json:"utc"`
	Note  string    `json:"note,omitempty"`
}

// NewPlan lists the next n fire times after from of every instance of cfg.
func NewPlan(cfg *jobs.Config, from time.Time, n int) Plan {
	p := Plan{From: from.UTC()}
	for _, in := range cfg.Instances {
		pi := PlanInstance{Name: in.Name, Job: in.Job, Lock: in.Lock, Schedule: in.Schedule.Spec,
			Timezone: in.Timezone, Enabled: in.Enabled, Suspended: in.Suspended, Fires: []PlanFire{}}
		for prev, t := from, in.Schedule.Next(from); len(pi.Fires) < n && !t.IsZero(); prev, t = t, in.Schedule.Next(t) {
			pi.Fires = append(pi.Fires, PlanFire{Local: t, UTC: t.UTC(), Note: in.Schedule.DSTNote(prev, t)})
		}
		p.Instances = append(p.Instances, pi)
	}
	return p
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
func (i *Inspector) AwaitRecord(ctx context.Context, instance, runID string, pickup time.Duration, fatal func(error) bool) (Record, error) {
	deadline := time.Now().Add(pickup)
	for {
		r, found, err := i.store.Record(ctx, instance, runID)
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
// timeout (then ErrStillRunning, with the record as last read).
func (i *Inspector) AwaitEnd(ctx context.Context, rec Record, timeout time.Duration, fatal func(error) bool) (Record, error) {
	deadline := time.Now().Add(timeout)
	for !rec.Status.Final() {
		if time.Now().After(deadline) {
			return rec, ErrStillRunning
		}
		if !sleepCtx(ctx, 200*time.Millisecond) {
			return rec, ctx.Err()
		}
		r, found, err := i.store.Record(ctx, rec.Instance, rec.RunID)
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

// sleepCtx waits d or until ctx ends; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
