package report

import (
	"io"
	"strings"
	"time"

	"github.com/jobd/jobd/internal/jobs"
)

// Plan is the next fire times of every instance of a config: `jobd plan`.
type Plan struct {
	From      time.Time      `json:"from"`
	Instances []PlanInstance `json:"instances"`
}

// PlanInstance is one instance and its next fire times.
type PlanInstance struct {
	Name      string `json:"name"`
	Job       string `json:"job"`
	Lock      string `json:"lock"`
	Schedule  string `json:"schedule"`
	Timezone  string `json:"timezone"`
	Enabled   bool   `json:"enabled"`
	Suspended bool   `json:"suspended"`
	Fires     []Fire `json:"fires"`
}

// Fire is a fire time in the instance's timezone and in UTC; Note flags a
// daylight-saving change (see jobs.Schedule.DSTNote).
type Fire struct {
	Local time.Time `json:"local"`
	UTC   time.Time `json:"utc"`
	Note  string    `json:"note,omitempty"`
}

// NewPlan lists the next n fire times after from of every instance of cfg.
func NewPlan(cfg *jobs.Config, from time.Time, n int) Plan {
	p := Plan{From: from.UTC()}
	for _, in := range cfg.Instances {
		pi := PlanInstance{Name: in.Name, Job: in.Job, Lock: in.Lock, Schedule: in.Schedule.Spec,
			Timezone: in.Timezone, Enabled: in.Enabled, Suspended: in.Suspended, Fires: []Fire{}}
		for prev, t := from, in.Schedule.Next(from); len(pi.Fires) < n && !t.IsZero(); prev, t = t, in.Schedule.Next(t) {
			pi.Fires = append(pi.Fires, Fire{Local: t, UTC: t.UTC(), Note: in.Schedule.DSTNote(prev, t)})
		}
		p.Instances = append(p.Instances, pi)
	}
	return p
}

// WriteTable writes the table `jobd plan` prints: one row per fire time,
// the instance named on its first.
func (p Plan) WriteTable(w io.Writer) error {
	var tab table
	tab.row("INSTANCE", "SCHEDULE", "LOCK", "FIRES (LOCAL)", "UTC", "NOTE")
	for _, pi := range p.Instances {
		sched := pi.Schedule + ifElse(pi.Timezone != "UTC", " ("+pi.Timezone+")", "")
		state := ifElse(!pi.Enabled, "disabled", ifElse(pi.Suspended, "suspended", ""))
		for i, f := range pi.Fires {
			if i > 0 {
				pi.Name, sched, pi.Lock = "", "", ""
			}
			tab.row(pi.Name, sched, pi.Lock, f.Local.Format("2006-01-02 15:04:05 MST"), f.UTC.Format(time.RFC3339), strings.TrimSpace(f.Note+" "+state))
		}
	}
	return tab.writeTo(w)
}
