package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jobd/jobd/internal/redisconn"
	"github.com/jobd/jobd/internal/report"
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
type planJSON = report.Plan

func runPlan(c *cli.Context) error {
	cfg, err := loadConfig(c, false)
	if err != nil {
		return err
	}
	n, from := c.Int("count"), time.Now()
	if n < 1 || n > 1000 {
		return usagef("jobd plan", "plan: --count %d: expected 1 to 1000", n)
	}
	if s := c.String("from"); s != "" {
		if from, err = time.Parse(time.RFC3339, s); err != nil {
			return usagef("jobd plan", "plan: --from %q: expected RFC 3339, such as 2026-03-29T00:00:00Z", s)
		}
	}
	plan := report.NewPlan(cfg, from, n)
	if c.Bool("json") {
		return printJSON(c.App.Writer, plan)
	}
	return plan.WriteTable(c.App.Writer)
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
type statusJSON = report.Status

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
	tty := isTerminal(c.App.Writer)
	for {
		switch {
		case c.Bool("json"): // a stream of documents (jq reads it)
		case tty:
			fmt.Fprint(c.App.Writer, "\033[H\033[2J") // clear the screen
		default: // a pipe or a file: no terminal codes, a line between the snapshots
			fmt.Fprintf(c.App.Writer, "--- %s\n", time.Now().UTC().Format(time.RFC3339))
		}
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

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// showStatus prints one status; no replica alive is exit 3.
func showStatus(c *cli.Context, e *env) error {
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	st, err := report.NewStatus(ctx, e.insp, e.locks, e.cfg, e.path, time.Now())
	if err != nil {
		return e.target.Fail(err)
	}
	if top, err := e.target.Topology(ctx); err == nil {
		st.Redis = &top
	}
	if c.Bool("json") {
		err = printJSON(c.App.Writer, st)
	} else {
		err = st.WriteTable(c.App.Writer)
	}
	if err == nil && st.ReplicasAlive == 0 {
		err = &exitError{code: exitNoReplica}
	}
	return err
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
		return usagef("jobd history", "history: usage: jobd history INSTANCE")
	}
	if c.Int("limit") < 1 {
		return usagef("jobd history", "history: --limit %d: want at least 1", c.Int("limit"))
	}
	name := c.Args().First()
	e, err := connect(c, false)
	if err != nil {
		return err
	}
	defer e.close()
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	recs, err := e.insp.History(ctx, scheduler.ConfigRef(e.cfg, name), c.Int("limit"))
	if err != nil {
		return e.target.Fail(err)
	}
	if len(recs) == 0 && e.cfg != nil {
		if _, ok := e.cfg.Instance(name); !ok {
			return exitf(exitUsage, "history: unknown instance %q (not in %s, and no history)%s", name, e.path, e.cfg.Suggest(name))
		}
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, append([]scheduler.Record{}, recs...))
	}
	return report.WriteHistory(c.App.Writer, name, recs, c.Bool("output"))
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
			&cli.DurationFlag{Name: "timeout", Value: time.Hour, Usage: "with --wait: give up waiting after this long (exit 1); 0: no limit, wait until the run ends"},
		},
		Action: runTrigger,
	}
}

// pickupTimeout: a request no replica took in this long is withdrawn.
const pickupTimeout = 15 * time.Second

func runTrigger(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("jobd trigger", "trigger: usage: jobd trigger INSTANCE")
	}
	if d := c.Duration("timeout"); d < 0 {
		return usagef("jobd trigger", "trigger: --timeout %v: must not be negative (0 waits with no limit)", d)
	}
	if c.IsSet("timeout") && !c.Bool("wait") {
		fmt.Fprintln(c.App.ErrWriter, "jobd: trigger: --timeout bounds --wait, and does nothing without it")
	}
	name := c.Args().First()
	e, err := connect(c, true)
	if err != nil {
		return err
	}
	defer e.close()
	in, ok := e.cfg.Instance(name)
	if !ok {
		return exitf(exitUsage, "trigger: unknown instance %q (see `jobd plan` for the names)%s", name, e.cfg.Suggest(name))
	}
	if !in.Enabled {
		return exitf(exitUsage, "trigger: instance %q is disabled (enabled: false in %s): no replica runs it", name, e.path)
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
	rec, err := e.insp.AwaitRecord(c.Context, scheduler.RefOf(in), req.RunID, pickupTimeout, redisconn.IsRefusal)
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
	status := string(rec.Status)
	if rec.Reason != "" {
		status += " (" + rec.Reason + ")"
	}
	fmt.Fprintf(c.App.ErrWriter, "run %s on %s: %s\n", rec.RunID, rec.Replica, status)
	return &exitError{code: rec.ShellCode()}
}
