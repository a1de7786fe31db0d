package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jobd/jobd/internal/redisconn"
	"github.com/jobd/jobd/internal/scheduler"
)

func validateCommand() *cli.Command {
	return &cli.Command{
		Name:  "validate",
		Usage: "check the schedule file and report every problem",
		Description: "Exit 0 with a one-line summary, or exit 1 with every problem, one per line, as\n" +
			"FILE:LINE:COL: PATH: MESSAGE.",
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c, false)
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
type planJSON = scheduler.Plan

func runPlan(c *cli.Context) error {
	cfg, err := loadConfig(c, false)
	if err != nil {
		return err
	}
	n, from := c.Int("count"), time.Now()
	if n < 1 || n > 1000 {
		return exitf(exitUsage, "plan: --count %d: expected 1 to 1000", n)
	}
	if s := c.String("from"); s != "" {
		if from, err = time.Parse(time.RFC3339, s); err != nil {
			return exitf(exitUsage, "plan: --from %q: expected RFC 3339, such as 2026-03-29T00:00:00Z", s)
		}
	}
	plan := scheduler.NewPlan(cfg, from, n)
	if c.Bool("json") {
		return printJSON(c.App.Writer, plan)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
	row(tw, "INSTANCE", "SCHEDULE", "LOCK", "FIRES (LOCAL)", "UTC", "NOTE")
	for _, pi := range plan.Instances {
		sched := pi.Schedule + ifElse(pi.Timezone != "UTC", " ("+pi.Timezone+")", "")
		state := ifElse(!pi.Enabled, "disabled", ifElse(pi.Suspended, "suspended", ""))
		for i, f := range pi.Fires {
			if i > 0 {
				pi.Name, sched, pi.Lock = "", "", ""
			}
			row(tw, pi.Name, sched, pi.Lock, f.Local.Format("2006-01-02 15:04:05 MST"), f.UTC.Format(time.RFC3339), strings.TrimSpace(f.Note+" "+state))
		}
	}
	return tw.Flush()
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show replicas, held locks and jobs (reads Redis only)",
		Description: "Works from any host that can reach Redis. JOBS needs --config. An instance is\n" +
			"overdue when its last due tick has no claim: no replica ran it.\n\n" +
			"Exit codes: 0 ok, 3 no replica is alive, 69 Redis unreachable, 78 Redis refused\n" +
			"(configuration or permission error).",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object (see the README for its fields)"},
			&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "redraw every 2s until interrupted"},
		},
		Action: runStatus,
	}
}

// statusJSON is the stable shape of `jobd status --json`.
type statusJSON = scheduler.Status

func runStatus(c *cli.Context) error {
	e, err := connect(c, false)
	if err != nil {
		return err
	}
	defer e.close()
	if !c.Bool("watch") {
		return showStatus(c, e)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	for {
		fmt.Fprint(c.App.Writer, "\033[H\033[2J") // clear the screen
		var ee *exitError
		if err := showStatus(c, e); err != nil && !(errors.As(err, &ee) && ee.code == exitNoReplica) {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}

// showStatus prints one status; no replica alive is exit 3.
func showStatus(c *cli.Context, e *env) error {
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	st, err := e.insp.Status(ctx, e.cfg, e.heldLocks, time.Now())
	if err != nil {
		return e.target.Fail(err)
	}
	st.Config.File = e.path
	if e.cfg == nil {
		st.Config.Error = e.path + ": file does not exist"
	}
	if c.Bool("json") {
		err = printJSON(c.App.Writer, st)
	} else {
		printStatus(c.App.Writer, st)
	}
	if err == nil && st.ReplicasAlive == 0 {
		err = &exitError{code: exitNoReplica}
	}
	return err
}

func printStatus(w io.Writer, st *statusJSON) {
	if st.ReplicasAlive == 0 {
		fmt.Fprint(w, "NO REPLICA IS ALIVE: nothing is being scheduled.\n\n")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "REPLICAS\nID\tHOST\tPID\tVERSION\tUPTIME\tHEARTBEAT\tRUNNING\tCONFIG\tCLOCK\n")
	for _, r := range st.Replicas {
		cfg := ifElse(r.ConfigMatches, "ok ", "DIFFERS ") + r.ConfigHash[:min(len(r.ConfigHash), 12)]
		clock := fmt.Sprintf(ifElse(r.ClockOK, "ok %+.1fs", "OFF %+.1fs: NOT CLAIMING"), r.ClockOffset)
		row(tw, r.ID, r.Host, r.PID, r.Version, human(r.Uptime), human(r.HeartbeatAge)+" ago", running(r.Running), cfg, clock)
	}
	fmt.Fprintln(tw, "\t")
	if len(st.RedisWarnings) > 0 {
		tw.Flush()
		fmt.Fprintln(w, "REDIS WARNINGS (the guarantees are weaker; see docs/failures.md)")
		for _, msg := range st.RedisWarnings {
			fmt.Fprintln(w, "  - "+msg)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprint(tw, "LOCKS\nKEY\tHOLDER\tINSTANCE\tRUN ID\tFENCE\tHELD FOR\tTTL LEFT\n")
	for _, l := range st.Locks {
		row(tw, l.Name, l.Holder, cmp.Or(l.Instance, l.Label, "-"), cmp.Or(l.RunID, "-"), l.Fence, human(l.HeldFor), human(l.TTL))
	}
	fmt.Fprint(tw, "\t\nJOBS\n")
	if st.Config.Error != "" {
		fmt.Fprintf(tw, "(no jobs: %s)\n", st.Config.Error)
	}
	fmt.Fprintln(tw, "INSTANCE\tSCHEDULE\tTZ\tNEXT\tLAST RUN\tREPLICA\tSTATUS\tDURATION")
	for _, j := range st.Jobs {
		next, last, replica, status, dur := j.State, "never", "-", "-", "-"
		if j.NextFire != nil {
			next = "in " + human(scheduler.Seconds(time.Until(*j.NextFire)))
		}
		if r := j.LastRun; r != nil {
			last, replica, status = human(scheduler.Seconds(st.GeneratedAt.Sub(r.ScheduledAt)))+" ago", r.Replica, string(r.Status)
			if r.Duration != nil {
				dur = human(*r.Duration)
			}
		}
		row(tw, j.Instance, j.Schedule, j.Timezone, next, last, replica, status+ifElse(j.Overdue, " OVERDUE", ""), dur)
	}
	tw.Flush()
}

func historyCommand() *cli.Command {
	return &cli.Command{
		Name:      "history",
		Usage:     "list an instance's past runs, newest first",
		ArgsUsage: "INSTANCE",
		Description: "Exit codes: 0 ok, 2 unknown instance (not in --config and no history), 69\n" +
			"Redis unreachable, 78 Redis refused (configuration or permission error).",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "limit", Aliases: []string{"n"}, Value: 20, Usage: "runs to show"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array of run records"},
			&cli.BoolFlag{Name: "output", Usage: "also print each run's output tail"},
		},
		Action: runHistory,
	}
}

func runHistory(c *cli.Context) error {
	if c.NArg() != 1 {
		return exitf(exitUsage, "history: usage: jobd history INSTANCE")
	}
	name := c.Args().First()
	e, err := connect(c, false)
	if err != nil {
		return err
	}
	defer e.close()
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	recs, err := e.store.History(ctx, name, max(c.Int("limit"), 1))
	if err != nil {
		return e.target.Fail(err)
	}
	if len(recs) == 0 && e.cfg != nil {
		if _, ok := e.cfg.Instance(name); !ok {
			return exitf(exitUsage, "history: unknown instance %q (not in %s, and no history)", name, e.path)
		}
	}
	switch {
	case c.Bool("json"):
		return printJSON(c.App.Writer, append([]scheduler.Record{}, recs...))
	case len(recs) == 0:
		fmt.Fprintf(c.App.Writer, "%s has no runs yet\n", name)
		return nil
	}
	// Align the rows first, then interleave each run's extra lines, so
	// that long output does not stretch the columns.
	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	row(tw, "SCHEDULED", "RUN ID", "REPLICA", "TRIGGER", "STATUS", "EXIT", "DURATION", "FENCE")
	for _, r := range recs {
		exit, dur := cmp.Or(r.Signal, "-"), "-"
		if r.ExitCode != nil && r.Signal == "" {
			exit = fmt.Sprint(*r.ExitCode)
		}
		if r.Start != nil && r.End != nil {
			dur = human(scheduler.Seconds(r.End.Sub(*r.Start)))
		}
		row(tw, r.ScheduledAt.Format(time.RFC3339), r.RunID, r.Replica, r.Trigger, r.Status, exit, dur, r.Fence)
	}
	tw.Flush()
	rows := strings.Split(strings.TrimRight(table.String(), "\n"), "\n")
	w := c.App.Writer
	fmt.Fprintln(w, rows[0])
	for i, r := range recs {
		fmt.Fprintln(w, rows[i+1])
		if c.Bool("output") && r.Reason != "" {
			fmt.Fprintln(w, "  reason: "+r.Reason)
		}
		for _, line := range strings.Split(strings.TrimRight(r.Output, "\n"), "\n") {
			if c.Bool("output") && line != "" {
				fmt.Fprintln(w, "  | "+line)
			}
		}
	}
	return nil
}

func triggerCommand() *cli.Command {
	return &cli.Command{
		Name:      "trigger",
		Usage:     "ask the cluster to run an instance now",
		ArgsUsage: "INSTANCE",
		Description: "Exactly one live replica picks the request up, through the instance's lock, so\n" +
			"the run honours overlap. Prints the run id. With --wait, waits for the result and\n" +
			"exits with the job's exit code.\n\n" +
			"Exit codes: the job's code with --wait (124 timeout, 128+N killed by signal N,\n" +
			"70 lock lost or abandoned, 75 skipped because its lock was held); 0 without\n" +
			"--wait once a replica picked it up; 1 not picked up, or --timeout ran out;\n" +
			"2 unknown instance; 3 no replica alive; 69 Redis unreachable; 78 Redis refused\n" +
			"(configuration or permission error).",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "wait", Usage: "wait for the run to finish"},
			&cli.DurationFlag{Name: "timeout", Value: time.Hour, Usage: "with --wait: give up waiting after this long"},
		},
		Action: runTrigger,
	}
}

// pickupTimeout: a request no replica took in this long is withdrawn.
const pickupTimeout = 15 * time.Second

func runTrigger(c *cli.Context) error {
	if c.NArg() != 1 {
		return exitf(exitUsage, "trigger: usage: jobd trigger INSTANCE")
	}
	name := c.Args().First()
	e, err := connect(c, true)
	if err != nil {
		return err
	}
	defer e.close()
	if _, ok := e.cfg.Instance(name); !ok {
		return exitf(exitUsage, "trigger: unknown instance %q (see `jobd plan` for the names)", name)
	}
	qctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	req, err := e.insp.Trigger(qctx, name)
	switch {
	case errors.Is(err, scheduler.ErrNoReplica):
		return exitf(exitNoReplica, "trigger: no replica is alive to run %q", name)
	case err != nil:
		return e.target.Fail(err)
	}
	fmt.Fprintln(c.App.Writer, req.RunID)
	rec, err := e.insp.AwaitRecord(c.Context, name, req.RunID, pickupTimeout, redisconn.IsRefusal)
	if err == nil && c.Bool("wait") {
		rec, err = e.insp.AwaitEnd(c.Context, rec, c.Duration("timeout"), redisconn.IsRefusal)
	}
	switch {
	case errors.Is(err, scheduler.ErrNotRecorded):
		return exitf(exitFailure, "trigger: run %s of %q was picked up, but its replica never recorded it (it may have stopped before starting it); run `jobd trigger` again", req.RunID, name)
	case errors.Is(err, scheduler.ErrNotPickedUp):
		return exitf(exitFailure, "trigger: no replica picked up %q within %v (do the live replicas have it in their config?)", name, pickupTimeout)
	case errors.Is(err, scheduler.ErrStillRunning):
		return exitf(exitFailure, "trigger: run %s still %s after --timeout %v", rec.RunID, rec.Status, c.Duration("timeout"))
	case err != nil:
		return e.target.Fail(err)
	case !c.Bool("wait"):
		return nil
	}
	reason := ifElse(rec.Reason != "", " ("+rec.Reason+")", "")
	fmt.Fprintf(c.App.ErrWriter, "run %s on %s: %s%s\n", rec.RunID, rec.Replica, rec.Status, reason)
	return &exitError{code: rec.ShellCode()}
}

// row writes one tab-separated row of a table.
func row(w io.Writer, cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(w, strings.Join(s, "\t"))
}

// human prints seconds the way people read durations: 850ms, 12s, 3m4s, 2h5m, 3d4h.
func human(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return strings.TrimSuffix(d.Round(time.Second).String(), "0s")
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

// running lists a replica's running instances, shortened to fit a column.
func running(names []string) string {
	s := strings.Join(names, ",")
	if len(s) > 40 {
		s = s[:37] + fmt.Sprintf("… (%d)", len(names))
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
