package dashboard

import (
	"cmp"
	"html/template"
	"slices"
	"strings"
	"time"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/report"
	"github.com/jobd/jobd/internal/scheduler"
)

// What the templates show: every value is a string or a number, formatted
// here with report's cells, and escaped by html/template.

// page is what every page has.
type page struct {
	Title       string
	RefreshMS   int64
	Refresh     string // RefreshMS for people: "2s"
	Generated   string // when the data was read, for people
	GeneratedAt string // RFC 3339
	Banner      string // Redis is unreachable or refuses: why
}

// overviewPage is /: what `jobd status` shows.
type overviewPage struct {
	page
	Query         string
	Loaded        bool // false: Redis could not be read
	Redis         string
	ConfigFile    string
	ConfigHash    string
	ConfigError   string
	ReplicasAlive int
	Replicas      []replicaRow
	// DiffersMajority, DiffersFile: some replica runs another config
	// than most live replicas, or than the file the dashboard reads.
	DiffersMajority, DiffersFile bool
	Warnings                     []string
	Locks                        []lockRow
	Jobs                         []jobRow
	JobsTotal                    int
	Overdue                      int
}

type replicaRow struct {
	ID, Host, Version string
	PID               int
	Uptime, StartedAt string
	Heartbeat         string
	Running           []string
	Hash              string
	Differs           string // why its config is DIFFERS, or ""
	Clock             string
	ClockOK           bool
}

type lockRow struct {
	Name, Holder, Host string
	PID                int
	Instance, Label    string
	RunID              string
	Fence              int64
	HeldFor, TTL       string
}

type jobRow struct {
	Instance, Job, Schedule, Timezone, Lock string
	State                                   string // active, suspended or disabled
	Next, NextAt                            string
	Overdue                                 bool
	RunningOn                               []string
	LastStatus, LastClass                   string
	LastAgo, LastAt, LastReplica            string
	LastTrigger, LastDuration               string
}

// fill shows st, with the instances whose name contains q (any case).
func (p *overviewPage) fill(st *report.Status, q string) {
	now := st.GeneratedAt
	p.Loaded = true
	if r := st.Redis; r != nil {
		p.Redis = r.String()
	}
	p.ConfigFile, p.ConfigHash, p.ConfigError = st.Config.File, report.ShortHash(st.Config.Hash), st.Config.Error
	p.ReplicasAlive, p.Warnings = st.ReplicasAlive, st.RedisWarnings
	running := map[string][]string{} // instance -> replicas running it
	for _, r := range st.Replicas {
		row := replicaRow{ID: r.ID, Host: r.Host, PID: r.PID, Version: r.Version,
			Uptime: report.Human(r.Uptime), StartedAt: r.StartedAt.UTC().Format(time.RFC3339),
			Heartbeat: report.Human(r.HeartbeatAge) + " ago", Running: r.Running, Hash: report.ShortHash(r.ConfigHash),
			Clock: r.Clock(), ClockOK: r.ClockOK}
		if why := st.Differs(r); why != "" {
			row.Differs = "this replica " + why
			p.DiffersMajority = p.DiffersMajority || !r.ConfigMatches
			p.DiffersFile = p.DiffersFile || r.ConfigMatches
		}
		p.Replicas = append(p.Replicas, row)
		for _, in := range r.Running {
			running[in] = append(running[in], r.ID)
		}
	}
	for _, l := range st.Locks {
		p.Locks = append(p.Locks, newLockRow(l))
	}
	p.JobsTotal = len(st.Jobs)
	lq := strings.ToLower(q)
	for _, j := range st.Jobs {
		if j.Overdue {
			p.Overdue++
		}
		if q != "" && !strings.Contains(strings.ToLower(j.Instance), lq) {
			continue
		}
		p.Jobs = append(p.Jobs, newJobRow(j, running[j.Instance], now))
	}
}

func newLockRow(l report.Lock) lockRow {
	return lockRow{Name: l.Name, Holder: l.Holder, Host: l.Host, PID: l.PID, Instance: l.Instance, Label: l.Label,
		RunID: l.RunID, Fence: l.Fence, HeldFor: report.Human(l.HeldFor), TTL: report.Human(l.TTL)}
}

func newJobRow(j report.Job, runningOn []string, now time.Time) jobRow {
	row := jobRow{Instance: j.Instance, Job: j.Job, Schedule: j.Schedule, Timezone: j.Timezone, Lock: j.Lock,
		State: j.State, Next: j.State, Overdue: j.Overdue, RunningOn: runningOn, LastStatus: "never", LastClass: "idle"}
	if j.NextFire != nil {
		row.Next, row.NextAt = report.In(now, *j.NextFire), j.NextFire.UTC().Format(time.RFC3339)
	}
	if r := j.LastRun; r != nil {
		row.LastStatus, row.LastClass = string(r.Status), statusClass(r.Status)
		row.LastAgo, row.LastAt = report.Ago(now, r.ScheduledAt), r.ScheduledAt.UTC().Format(time.RFC3339)
		row.LastReplica, row.LastTrigger = r.Replica, r.Trigger
		row.LastDuration = "-"
		if r.Duration != nil {
			row.LastDuration = report.Human(*r.Duration)
		}
	}
	return row
}

// instancePage is /instance?name=: one instance and its history.
type instancePage struct {
	page
	Name     string
	Loaded   bool
	Unknown  bool
	InConfig bool
	Job      jobRow
	Locks    []lockRow // held by a run of this instance
	Runs     []runRow
}

type runRow struct {
	RunID, Replica, Trigger string
	Scheduled, ScheduledAt  string
	Status, Class           string
	Exit, Duration          string
	Fence                   int64
	Reason, Output          string
	Started, Ended          string
}

// fill shows the instance called p.Name in st, and its runs; an instance
// neither in the config (when there is one) nor in the history is
// ErrUnknownInstance.
func (p *instancePage) fill(st *report.Status, runs []scheduler.Record, haveConfig bool) error {
	now := st.GeneratedAt
	p.Loaded = true
	i := slices.IndexFunc(st.Jobs, func(j report.Job) bool { return j.Instance == p.Name })
	if i >= 0 {
		var on []string
		for _, r := range st.Replicas {
			if slices.Contains(r.Running, p.Name) {
				on = append(on, r.ID)
			}
		}
		p.InConfig, p.Job = true, newJobRow(st.Jobs[i], on, now)
	}
	for _, l := range st.Locks {
		if l.Instance == p.Name {
			p.Locks = append(p.Locks, newLockRow(l))
		}
	}
	for _, r := range runs {
		row := runRow{RunID: r.RunID, Replica: r.Replica, Trigger: r.Trigger,
			Scheduled: report.Ago(now, r.ScheduledAt), ScheduledAt: r.ScheduledAt.UTC().Format(time.RFC3339),
			Status: string(r.Status), Class: statusClass(r.Status), Exit: report.Exit(r), Duration: report.RunDuration(r),
			Fence: r.Fence, Reason: r.Reason, Output: strings.TrimRight(r.Output, "\n")}
		if r.Start != nil {
			row.Started = r.Start.UTC().Format(time.RFC3339)
		}
		if r.End != nil {
			row.Ended = r.End.UTC().Format(time.RFC3339)
		}
		p.Runs = append(p.Runs, row)
	}
	if i < 0 && haveConfig && len(runs) == 0 {
		p.Unknown = true
		return ErrUnknownInstance
	}
	return nil
}

// statusClass groups run statuses by colour.
func statusClass(s jobs.Status) string {
	switch s {
	case jobs.StatusSucceeded:
		return "ok"
	case jobs.StatusRunning, jobs.StatusWaiting:
		return "run"
	case jobs.StatusSkipped:
		return "idle"
	}
	return "bad"
}

// funcs are the templates' helpers; none of them marks anything as safe
// HTML.
var funcs = template.FuncMap{
	"orDash": func(s string) string { return cmp.Or(s, "-") },
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	},
}
