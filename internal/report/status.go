// Package report is how jobd shows what operators read: the stable JSON
// shapes of `jobd status --json` and `jobd plan --json` (the README
// documents their fields), and the tables of status, history and plan.
// It builds them from the scheduler's Inspector, the mutex's list of held
// locks and the config. It is apart from the scheduler, which knows no
// output format and does not import the mutex, and from cmd/jobd, which
// only wires, parses flags and picks the form.
package report

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redisconn"
	"github.com/jobd/jobd/internal/scheduler"
)

// Status is a snapshot of the cluster: `jobd status`. Durations are in
// seconds, to the millisecond.
type Status struct {
	GeneratedAt   time.Time `json:"generated_at"`
	Config        Config    `json:"config"`
	ReplicasAlive int       `json:"replicas_alive"`
	Replicas      []Replica `json:"replicas"`
	Locks         []Lock    `json:"locks"`
	Jobs          []Job     `json:"jobs"`
	// RedisWarnings are the Redis settings that weaken the guarantees, as
	// read just now (see docs/failures.md).
	RedisWarnings []string `json:"redis_warnings"`
	// Redis is the topology status talked to, and its current master
	// (absent when the sentinels could not be asked).
	Redis *redisconn.Topology `json:"redis,omitempty"`
}

// Config names the schedule file the jobs come from.
type Config struct {
	File  string `json:"file"`
	Hash  string `json:"hash,omitempty"`
	Error string `json:"error,omitempty"` // why there are no jobs
}

// Replica is a live replica: its heartbeat, and whether its config is the
// one most live replicas run.
type Replica struct {
	ID            string    `json:"id"`
	Host          string    `json:"host"`
	PID           int       `json:"pid"`
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at"`
	Uptime        float64   `json:"uptime_seconds"`
	HeartbeatAge  float64   `json:"heartbeat_age_seconds"`
	Running       []string  `json:"running"`
	ConfigHash    string    `json:"config_hash"`
	ConfigMatches bool      `json:"config_matches"` // the config most live replicas run
	// ConfigMatchesFile: the replica runs the schedule file status read
	// (absent without a file).
	ConfigMatchesFile *bool `json:"config_matches_file,omitempty"`
	// ClockOffset is the replica's clock minus Redis's; ClockOK is false
	// while it is beyond 30s and the replica claims nothing.
	ClockOffset float64 `json:"clock_offset_seconds"`
	ClockOK     bool    `json:"clock_ok"`
	// RedisWarnings are the Redis settings, as the replica last read them,
	// that weaken the guarantees (see docs/failures.md).
	RedisWarnings []string `json:"redis_warnings"`
}

// Lock is a held lock; Instance and RunID are read from the label of a
// lock that a scheduled run holds (scheduler.ParseLabel).
type Lock struct {
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
	Waiters  int     `json:"waiters"` // queued for the lock (jobd lock --wait, overlap: wait)
}

// Job is where an instance stands (see scheduler.InstanceState).
type Job struct {
	Instance string     `json:"instance"`
	Job      string     `json:"job"`
	Schedule string     `json:"schedule"`
	Timezone string     `json:"timezone"`
	Lock     string     `json:"lock"`
	State    string     `json:"state"` // active, suspended or disabled
	NextFire *time.Time `json:"next_fire,omitempty"`
	Overdue  bool       `json:"overdue"`
	LastRun  *LastRun   `json:"last_run"` // null: never ran
}

// LastRun is the part of an instance's last record that status shows.
type LastRun struct {
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

// NewStatus takes a snapshot at now: the replicas, Redis's warnings, the
// locks held under locks' prefix and, when cfg is not nil, its instances.
// file is the schedule file's name, whether it exists or not (cfg nil).
func NewStatus(ctx context.Context, insp *scheduler.Inspector, locks *mutex.Client, cfg *jobs.Config, file string, now time.Time) (*Status, error) {
	st := &Status{GeneratedAt: now.UTC(), Config: Config{File: file}, Replicas: []Replica{}, Locks: []Lock{}, Jobs: []Job{}}
	replicas, err := insp.Replicas(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range replicas {
		st.Replicas = append(st.Replicas, Replica{ID: b.ID, Host: b.Host, PID: b.PID, Version: b.Version,
			StartedAt: b.StartedAt, Uptime: seconds(now.Sub(b.StartedAt)), HeartbeatAge: seconds(now.Sub(b.BeatAt)),
			Running: append([]string{}, b.Running...), ConfigHash: b.ConfigHash, ConfigMatches: b.ConfigMatches,
			ClockOffset: seconds(b.ClockOffset), ClockOK: b.ClockOK, RedisWarnings: append([]string{}, b.Warnings...)})
	}
	st.ReplicasAlive = len(st.Replicas)
	if st.RedisWarnings, err = insp.RedisWarnings(ctx); err != nil {
		return nil, err
	}
	st.RedisWarnings = append([]string{}, st.RedisWarnings...)
	infos, err := locks.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, in := range infos {
		l := Lock{Name: in.Name, Holder: in.Owner, Host: in.Host, PID: in.PID, Label: in.Label, Fence: in.Fence,
			HeldFor: seconds(in.HeldFor), TTL: seconds(in.TTL), Waiters: in.Waiters}
		l.Instance, l.RunID = scheduler.ParseLabel(in.Label)
		st.Locks = append(st.Locks, l)
	}
	if cfg == nil {
		st.Config.Error = file + ": file does not exist"
		return st, nil
	}
	st.Config.Hash = cfg.Hash
	for k := range st.Replicas {
		same := st.Replicas[k].ConfigHash == cfg.Hash
		st.Replicas[k].ConfigMatchesFile = &same
	}
	states, err := insp.Instances(ctx, cfg, now)
	if err != nil {
		return nil, err
	}
	for _, is := range states {
		st.Jobs = append(st.Jobs, newJob(is))
	}
	return st, nil
}

func newJob(is scheduler.InstanceState) Job {
	in := is.Instance
	j := Job{Instance: in.Name, Job: in.Job, Schedule: in.Schedule.Spec, Timezone: in.Timezone, Lock: in.Lock,
		State: is.State, NextFire: is.NextFire, Overdue: is.Overdue}
	if r := is.LastRun; r != nil {
		j.LastRun = &LastRun{RunID: r.RunID, ScheduledAt: r.ScheduledAt, Replica: r.Replica, Trigger: r.Trigger,
			Status: r.Status, Start: r.Start, End: r.End, ExitCode: r.ExitCode}
		if r.Start != nil && r.End != nil {
			d := seconds(r.End.Sub(*r.Start))
			j.LastRun.Duration = &d
		}
	}
	return j
}

// Differs says why r's config is not the one it should run ("" when it
// is): another config than most live replicas run, or than the schedule
// file status read (edited, and r not reloaded). The table and the
// dashboard both mark DIFFERS with it.
func (st *Status) Differs(r Replica) string {
	switch {
	case !r.ConfigMatches && st.configTie():
		return "runs another config than other live replicas, and no config is run by more of them than the others"
	case !r.ConfigMatches:
		return "runs another config than most live replicas"
	case r.ConfigMatchesFile != nil && !*r.ConfigMatchesFile:
		return "runs another config than " + st.Config.File + " (edited, and not reloaded? SIGHUP reloads)"
	}
	return ""
}

// configTie reports whether two configs are each run by the largest
// number of live replicas (1 against 1, say), so that none is "most".
func (st *Status) configTie() bool {
	n := map[string]int{}
	top, tied := 0, false
	for _, r := range st.Replicas {
		n[r.ConfigHash]++
	}
	for _, c := range n {
		switch {
		case c > top:
			top, tied = c, false
		case c == top:
			tied = true
		}
	}
	return tied
}

// WriteTable writes the REPLICAS, LOCKS and JOBS tables that `jobd
// status` prints, with the Redis warnings, if any, and a first line when
// no replica is alive.
func (st *Status) WriteTable(w io.Writer) error {
	if st.ReplicasAlive == 0 {
		fmt.Fprint(w, "NO REPLICA IS ALIVE: nothing is being scheduled.\n\n")
	}
	if r := st.Redis; r != nil {
		fmt.Fprintf(w, "REDIS %s\n\n", r)
	}
	fmt.Fprintln(w, "REPLICAS")
	var reps table
	reps.row("ID", "HOST", "PID", "VERSION", "UPTIME", "HEARTBEAT", "RUNNING", "CONFIG", "CLOCK")
	var differ []string
	for _, r := range st.Replicas {
		why := st.Differs(r)
		cfg := ifElse(why == "", "ok ", "DIFFERS ") + ShortHash(r.ConfigHash)
		reps.row(r.ID, r.Host, r.PID, r.Version, human(r.Uptime), human(r.HeartbeatAge)+" ago", running(r.Running), cfg, r.Clock())
		if why != "" {
			differ = append(differ, r.ID+": "+why)
		}
	}
	reps.writeTo(w)
	if len(st.Replicas) == 0 {
		fmt.Fprintln(w, "(none)")
	}
	if len(differ) > 0 {
		fmt.Fprintf(w, "DIFFERS (%s is %s): %s\n", st.Config.File, ifElse(st.Config.Hash == "", "not read", ShortHash(st.Config.Hash)), strings.Join(differ, "; "))
	}
	fmt.Fprintln(w)
	if len(st.RedisWarnings) > 0 {
		fmt.Fprintln(w, "REDIS WARNINGS (the guarantees are weaker; see docs/failures.md)")
		for _, msg := range st.RedisWarnings {
			fmt.Fprintln(w, "  - "+msg)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "LOCKS")
	var locks table
	locks.row("KEY", "HOLDER", "INSTANCE", "RUN ID", "FENCE", "HELD FOR", "TTL LEFT", "WAITERS")
	for _, l := range st.Locks {
		locks.row(l.Name, l.Holder, cmp.Or(l.Instance, l.Label, "-"), cmp.Or(l.RunID, "-"), l.Fence, human(l.HeldFor), human(l.TTL), l.Waiters)
	}
	locks.writeTo(w)
	if len(st.Locks) == 0 {
		fmt.Fprintln(w, "(none)")
	}
	fmt.Fprint(w, "\nJOBS\n")
	if st.Config.Error != "" {
		fmt.Fprintf(w, "(no jobs: %s)\n", st.Config.Error)
	}
	var insts table
	insts.row("INSTANCE", "SCHEDULE", "TZ", "NEXT", "LAST RUN", "REPLICA", "STATUS", "DURATION")
	for _, j := range st.Jobs {
		next, last, replica, status, dur := j.State, "never", "-", "-", "-"
		if j.NextFire != nil {
			next = In(time.Now(), *j.NextFire)
		}
		if r := j.LastRun; r != nil {
			last, replica, status = Ago(st.GeneratedAt, r.ScheduledAt), r.Replica, string(r.Status)
			if r.Duration != nil {
				dur = human(*r.Duration)
			}
		}
		insts.row(j.Instance, j.Schedule, j.Timezone, next, last, replica, status+ifElse(j.Overdue, " OVERDUE", ""), dur)
	}
	return insts.writeTo(w)
}

// seconds is d in seconds, to the millisecond.
func seconds(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }

// human prints seconds the way people read durations: 850ms, 12s, 3m4s, 2h5m, 3d4h.
func human(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d.Round(time.Second) < time.Minute:
		return d.Round(time.Second).String()
	case d.Round(time.Second) < time.Hour:
		d = d.Round(time.Second)
		if sec := int(d.Seconds()) % 60; sec != 0 {
			return fmt.Sprintf("%dm%ds", int(d.Minutes()), sec)
		}
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s") // "1h30m0s": only the seconds go
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

// running lists a replica's running instances, shortened to fit a column
// of about 40 cells.
func running(names []string) string {
	s := strings.Join(names, ",")
	if width(s) > 40 {
		s = display.Truncate(s, 37, "") + fmt.Sprintf("… (%d)", len(names))
	}
	return cmp.Or(s, "-")
}

// ifElse is a if c is true, else b.
func ifElse[T any](c bool, a, b T) T {
	if c {
		return a
	}
	return b
}
