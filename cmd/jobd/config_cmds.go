package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
)

func validateCommand() *cli.Command {
	return &cli.Command{
		Name:  "validate",
		Usage: "check the schedule file and report every problem",
		Description: "Exit 0 with a one-line summary, or exit 1 with every problem, one per line, as\n" +
			"FILE:LINE:COL: PATH: MESSAGE.",
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, "ok: "+cfg.Summary())
			return nil
		},
	}
}

func planCommand() *cli.Command {
	return &cli.Command{
		Name:  "plan",
		Usage: "print the next fire times and the lock of every job instance",
		Description: "Fire times are shown in the job's timezone and in UTC; NOTE flags times at a\n" +
			"daylight-saving change: dst-fold (the wall-clock time happens twice that day,\n" +
			"and the job fires at both) and dst-gap (clocks jumped forward before this\n" +
			"fire, and the times listed did not exist, so those fires do not happen).",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "count", Aliases: []string{"n"}, Value: 3, Usage: "fire times per instance"},
			&cli.StringFlag{Name: "from", Usage: "start time, RFC 3339 (default: now)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
		},
		Action: runPlan,
	}
}

// planJSON is the stable shape of `jobd plan --json`.
type planJSON struct {
	From      time.Time          `json:"from"`
	Instances []planInstanceJSON `json:"instances"`
}

type planInstanceJSON struct {
	Name      string         `json:"name"`
	Job       string         `json:"job"`
	Lock      string         `json:"lock"`
	Schedule  string         `json:"schedule"`
	Timezone  string         `json:"timezone"`
	Enabled   bool           `json:"enabled"`
	Suspended bool           `json:"suspended"`
	Fires     []planFireJSON `json:"fires"`
}

type planFireJSON struct {
	Local time.Time `json:"local"`
	UTC   time.Time `json:"utc"`
	Note  string    `json:"note,omitempty"`
}

func runPlan(c *cli.Context) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	n := c.Int("count")
	if n < 1 || n > 1000 {
		return exitf(exitUsage, "plan: --count %d: expected 1 to 1000", n)
	}
	from := time.Now()
	if s := c.String("from"); s != "" {
		if from, err = time.Parse(time.RFC3339, s); err != nil {
			return exitf(exitUsage, "plan: --from %q: expected RFC 3339, such as 2026-03-29T00:00:00Z", s)
		}
	}
	out := planJSON{From: from.UTC()}
	for _, in := range cfg.Instances {
		pi := planInstanceJSON{Name: in.Name, Job: in.Job, Lock: in.Lock, Schedule: in.Schedule.Spec,
			Timezone: in.Timezone, Enabled: in.Enabled, Suspended: in.Suspended, Fires: []planFireJSON{}}
		prev := from
		for i := 0; i < n; i++ {
			t := in.Schedule.Next(prev)
			if t.IsZero() {
				break
			}
			pi.Fires = append(pi.Fires, planFireJSON{Local: t, UTC: t.UTC(), Note: in.Schedule.DSTNote(prev, t)})
			prev = t
		}
		out.Instances = append(out.Instances, pi)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, out)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tSCHEDULE\tLOCK\tFIRES (LOCAL)\tUTC\tNOTE")
	for _, pi := range out.Instances {
		sched := pi.Schedule
		if pi.Timezone != "UTC" {
			sched += " (" + pi.Timezone + ")"
		}
		state := ""
		switch {
		case !pi.Enabled:
			state = "disabled"
		case pi.Suspended:
			state = "suspended"
		}
		for i, f := range pi.Fires {
			name, s, lock := pi.Name, sched, pi.Lock
			if i > 0 {
				name, s, lock = "", "", ""
			}
			note := strings.TrimSpace(strings.Join([]string{f.Note, state}, " "))
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, s, lock,
				f.Local.Format("2006-01-02 15:04:05 MST"), f.UTC.Format(time.RFC3339), note)
		}
	}
	return tw.Flush()
}
