package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/scheduler"
)

// exitNoReplica: no replica is alive (status, trigger).
const exitNoReplica = 3

// opsEnv is what the operator commands share: the config (if it loads),
// Redis, and the key prefix.
type opsEnv struct {
	cfg    *jobs.Config
	cfgErr error // why cfg is nil
	target redisTarget
	rdb    redis.UniversalClient
	store  *scheduler.Store
	locks  *mutex.Client
}

// openOps loads the schedule file (required by trigger; for status and
// history, only if given or if the default file exists: see
// optionalConfig) and connects to the Redis resolveRedis names.
func openOps(c *cli.Context, needConfig bool) (*opsEnv, error) {
	if _, err := newLogger(c); err != nil {
		return nil, err
	}
	e := &opsEnv{}
	var err error
	if needConfig {
		e.cfg, err = loadConfig(c)
	} else {
		e.cfg, err = optionalConfig(c) // status shows JOBS only with a file
	}
	if err != nil {
		return nil, err // every problem, as `jobd validate` prints them
	}
	if e.cfg == nil {
		path, _ := configPath(c)
		e.cfgErr = fmt.Errorf("%s: %w", path, fs.ErrNotExist)
	}
	e.target = resolveRedis(c, e.cfg)
	rdb, err := connectRedis(c.Context, e.target)
	if err != nil {
		return nil, err
	}
	e.rdb = rdb
	e.store = scheduler.NewStore(rdb, e.target.prefix)
	e.locks = mutex.New(rdb, mutex.WithPrefix(e.target.prefix))
	return e, nil
}

// fail maps a failed Redis call to exit 69 or 78 (see redisFailure).
func (e *opsEnv) fail(err error) error { return redisFailure(e.target, err) }

func (e *opsEnv) close() {
	e.locks.Close()
	e.rdb.Close()
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
type statusJSON struct {
	GeneratedAt   time.Time     `json:"generated_at"`
	Config        configJSON    `json:"config"`
	ReplicasAlive int           `json:"replicas_alive"`
	Replicas      []replicaJSON `json:"replicas"`
	Locks         []lockJSON    `json:"locks"`
	Jobs          []jobJSON     `json:"jobs"`
	// RedisWarnings are the Redis settings that weaken the guarantees, as
	// status itself read them just now (see docs/failures.md).
	RedisWarnings []string `json:"redis_warnings"`
}

type configJSON struct {
	File  string `json:"file"`
	Hash  string `json:"hash,omitempty"`
	Error string `json:"error,omitempty"`
}

type replicaJSON struct {
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

type lockJSON struct {
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

type jobJSON struct {
	Instance string       `json:"instance"`
	Job      string       `json:"job"`
	Schedule string       `json:"schedule"`
	Timezone string       `json:"timezone"`
	Lock     string       `json:"lock"`
	State    string       `json:"state"` // active, suspended or disabled
	NextFire *time.Time   `json:"next_fire,omitempty"`
	Overdue  bool         `json:"overdue"`
	LastRun  *lastRunJSON `json:"last_run"` // null: never ran
}

type lastRunJSON struct {
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

func runStatus(c *cli.Context) error {
	e, err := openOps(c, false)
	if err != nil {
		return err
	}
	defer e.close()
	if !c.Bool("watch") {
		return showStatus(c, e, c.App.Writer)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	for {
		fmt.Fprint(c.App.Writer, "\033[H\033[2J") // clear the screen
		err := showStatus(c, e, c.App.Writer)
		var ee *exitError
		if err != nil && !(asExit(err, &ee) && ee.code == exitNoReplica) {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}

func asExit(err error, target **exitError) bool {
	ee, ok := err.(*exitError)
	if ok {
		*target = ee
	}
	return ok
}

func showStatus(c *cli.Context, e *opsEnv, w io.Writer) error {
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	path, _ := configPath(c)
	st, err := collectStatus(ctx, path, e)
	if err != nil {
		return e.fail(err)
	}
	if c.Bool("json") {
		if err := printJSON(w, st); err != nil {
			return err
		}
	} else {
		printStatus(w, st)
	}
	if st.ReplicasAlive == 0 {
		return &exitError{code: exitNoReplica}
	}
	return nil
}

func collectStatus(ctx context.Context, cfgFile string, e *opsEnv) (*statusJSON, error) {
	now := time.Now()
	st := &statusJSON{GeneratedAt: now.UTC(), Config: configJSON{File: cfgFile},
		Replicas: []replicaJSON{}, Locks: []lockJSON{}, Jobs: []jobJSON{}}
	if e.cfg != nil {
		st.Config.Hash = e.cfg.Hash
	} else {
		st.Config.Error = strings.SplitN(e.cfgErr.Error(), "\n", 2)[0]
	}
	insp := scheduler.NewInspector(e.store)
	replicas, err := insp.Replicas(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range replicas {
		st.Replicas = append(st.Replicas, replicaJSON{ID: b.ID, Host: b.Host, PID: b.PID, Version: b.Version,
			StartedAt: b.StartedAt, Uptime: secs(now.Sub(b.StartedAt)), HeartbeatAge: secs(now.Sub(b.BeatAt)),
			Running: nonNil(b.Running), ConfigHash: b.ConfigHash, ConfigMatches: b.ConfigMatches,
			ClockOffset: secs(b.ClockOffset), ClockOK: b.ClockOK, RedisWarnings: nonNil(b.Warnings)})
	}
	st.ReplicasAlive = len(st.Replicas)
	warnings, err := e.store.Durability(ctx)
	if err != nil {
		return nil, err
	}
	st.RedisWarnings = nonNil(warnings)
	infos, err := e.locks.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, in := range infos {
		l := lockJSON{Name: in.Name, Holder: in.Owner, Host: in.Host, PID: in.PID, Label: in.Label, Fence: in.Fence,
			HeldFor: secs(in.HeldFor), TTL: secs(in.TTL)}
		l.Instance, l.RunID = scheduler.ParseLabel(in.Label)
		st.Locks = append(st.Locks, l)
	}
	if e.cfg == nil {
		return st, nil
	}
	states, err := insp.Instances(ctx, e.cfg, now)
	if err != nil {
		return nil, err
	}
	for _, is := range states {
		in := is.Instance
		j := jobJSON{Instance: in.Name, Job: in.Job, Schedule: in.Schedule.Spec, Timezone: in.Timezone, Lock: in.Lock,
			State: is.State, NextFire: is.NextFire, Overdue: is.Overdue}
		if r := is.LastRun; r != nil {
			lr := &lastRunJSON{RunID: r.RunID, ScheduledAt: r.ScheduledAt, Replica: r.Replica, Trigger: r.Trigger,
				Status: r.Status, Start: r.Start, End: r.End, ExitCode: r.ExitCode}
			if r.Start != nil && r.End != nil {
				d := secs(r.End.Sub(*r.Start))
				lr.Duration = &d
			}
			j.LastRun = lr
		}
		st.Jobs = append(st.Jobs, j)
	}
	return st, nil
}

func secs(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }

func ago(s float64) string { return human(s) + " ago" }

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

func printStatus(w io.Writer, st *statusJSON) {
	if st.ReplicasAlive == 0 {
		fmt.Fprintln(w, "NO REPLICA IS ALIVE: nothing is being scheduled.")
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLICAS")
	fmt.Fprintln(tw, "ID\tHOST\tPID\tVERSION\tUPTIME\tHEARTBEAT\tRUNNING\tCONFIG\tCLOCK")
	for _, r := range st.Replicas {
		cfg := "ok " + short(r.ConfigHash)
		if !r.ConfigMatches {
			cfg = "DIFFERS " + short(r.ConfigHash)
		}
		clock := fmt.Sprintf("ok %+.1fs", r.ClockOffset)
		if !r.ClockOK {
			clock = fmt.Sprintf("OFF %+.1fs: NOT CLAIMING", r.ClockOffset)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Host, r.PID, r.Version, human(r.Uptime), ago(r.HeartbeatAge), running(r.Running), cfg, clock)
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
	fmt.Fprintln(tw, "LOCKS")
	fmt.Fprintln(tw, "KEY\tHOLDER\tINSTANCE\tRUN ID\tFENCE\tHELD FOR\tTTL LEFT")
	for _, l := range st.Locks {
		inst := l.Instance
		if inst == "" {
			inst = l.Label
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", l.Name, l.Holder, dash(inst), dash(l.RunID), l.Fence, human(l.HeldFor), human(l.TTL))
	}
	fmt.Fprintln(tw, "\t")
	fmt.Fprintln(tw, "JOBS")
	if st.Config.Error != "" {
		fmt.Fprintf(tw, "(no jobs: %s)\n", st.Config.Error)
	}
	fmt.Fprintln(tw, "INSTANCE\tSCHEDULE\tTZ\tNEXT\tLAST RUN\tREPLICA\tSTATUS\tDURATION")
	for _, j := range st.Jobs {
		next := j.State
		if j.NextFire != nil {
			next = "in " + human(secs(time.Until(*j.NextFire)))
		}
		last, replica, status, dur := "never", "-", "-", "-"
		if r := j.LastRun; r != nil {
			last = ago(secs(st.GeneratedAt.Sub(r.ScheduledAt)))
			replica, status = r.Replica, string(r.Status)
			if r.Duration != nil {
				dur = human(*r.Duration)
			}
		}
		if j.Overdue {
			status += " OVERDUE"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.Instance, j.Schedule, j.Timezone, next, last, replica, status, dur)
	}
	tw.Flush()
}

// running lists a replica's running instances, shortened to fit a column.
func running(names []string) string {
	if len(names) == 0 {
		return "-"
	}
	s := strings.Join(names, ",")
	if len(s) > 40 {
		s = s[:37] + fmt.Sprintf("… (%d)", len(names))
	}
	return s
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
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
	e, err := openOps(c, false)
	if err != nil {
		return err
	}
	defer e.close()
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	recs, err := e.store.History(ctx, name, max(c.Int("limit"), 1))
	if err != nil {
		return e.fail(err)
	}
	if len(recs) == 0 {
		if e.cfg != nil {
			if _, ok := e.cfg.Instance(name); !ok {
				path, _ := configPath(c)
				return exitf(exitUsage, "history: unknown instance %q (not in %s, and no history)", name, path)
			}
		}
	}
	if recs == nil {
		recs = []scheduler.Record{}
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, recs)
	}
	w := c.App.Writer
	if len(recs) == 0 {
		fmt.Fprintf(w, "%s has no runs yet\n", name)
		return nil
	}
	// Align the rows first, then interleave each run's extra lines, so that
	// long output does not stretch the columns.
	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCHEDULED\tRUN ID\tREPLICA\tTRIGGER\tSTATUS\tEXIT\tDURATION\tFENCE")
	extras := make([][]string, len(recs))
	for i, r := range recs {
		exit, dur := "-", "-"
		switch {
		case r.Signal != "":
			exit = r.Signal
		case r.ExitCode != nil:
			exit = fmt.Sprint(*r.ExitCode)
		}
		if r.Start != nil && r.End != nil {
			dur = human(secs(r.End.Sub(*r.Start)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", r.ScheduledAt.Format(time.RFC3339), r.RunID, r.Replica, r.Trigger, r.Status, exit, dur, r.Fence)
		if !c.Bool("output") {
			continue
		}
		if r.Reason != "" {
			extras[i] = append(extras[i], "  reason: "+r.Reason)
		}
		for _, line := range strings.Split(strings.TrimRight(r.Output, "\n"), "\n") {
			if line != "" {
				extras[i] = append(extras[i], "  | "+line)
			}
		}
	}
	tw.Flush()
	rows := strings.Split(strings.TrimRight(table.String(), "\n"), "\n")
	fmt.Fprintln(w, rows[0])
	for i, row := range rows[1:] {
		fmt.Fprintln(w, row)
		for _, x := range extras[i] {
			fmt.Fprintln(w, x)
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
	e, err := openOps(c, true)
	if err != nil {
		return err
	}
	defer e.close()
	in, ok := e.cfg.Instance(name)
	if !ok {
		return exitf(exitUsage, "trigger: unknown instance %q (see `jobd plan` for the names)", name)
	}
	ctx := c.Context
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	beats, err := e.store.Replicas(qctx)
	if err != nil {
		return e.fail(err)
	}
	if len(beats) == 0 {
		return exitf(exitNoReplica, "trigger: no replica is alive to run %q", name)
	}
	now := time.Now()
	host, _ := os.Hostname()
	req := scheduler.TriggerRequest{RunID: scheduler.NewRunID(now), Instance: in.Name, RequestedAt: now.UTC(),
		RequestedBy: fmt.Sprintf("%s@%s", os.Getenv("USER"), host)}
	if err := e.store.RequestTrigger(qctx, req); err != nil {
		return e.fail(err)
	}
	fmt.Fprintln(c.App.Writer, req.RunID)
	// Wait until a replica records the run.
	insp := scheduler.NewInspector(e.store)
	rec, err := insp.AwaitRecord(ctx, in.Name, req.RunID, pickupTimeout, isRefusal)
	switch {
	case errors.Is(err, scheduler.ErrNotRecorded):
		return exitf(exitFailure, "trigger: run %s of %q was picked up, but its replica never recorded it (it may have stopped before starting it); run `jobd trigger` again", req.RunID, name)
	case errors.Is(err, scheduler.ErrNotPickedUp):
		return exitf(exitFailure, "trigger: no replica picked up %q within %v (do the live replicas have it in their config?)", name, pickupTimeout)
	case err != nil:
		return e.fail(err)
	}
	if !c.Bool("wait") {
		return nil
	}
	rec, err = insp.AwaitEnd(ctx, rec, c.Duration("timeout"), isRefusal)
	switch {
	case errors.Is(err, scheduler.ErrStillRunning):
		return exitf(exitFailure, "trigger: run %s still %s after --timeout %v", rec.RunID, rec.Status, c.Duration("timeout"))
	case err != nil:
		return e.fail(err)
	}
	fmt.Fprintf(c.App.ErrWriter, "run %s on %s: %s\n", rec.RunID, rec.Replica, describeRun(rec))
	return &exitError{code: runExitCode(rec)}
}

func describeRun(r scheduler.Record) string {
	s := string(r.Status)
	if r.Reason != "" {
		s += " (" + r.Reason + ")"
	}
	return s
}

// runExitCode maps a finished run to `jobd trigger --wait`'s exit code.
func runExitCode(r scheduler.Record) int {
	switch r.Status {
	case jobs.StatusSucceeded:
		return 0
	case jobs.StatusTimeout:
		return 124
	case jobs.StatusLockLost, jobs.StatusAbandoned:
		return exitLeaseLost
	case jobs.StatusSkipped:
		return exitNotObtained
	}
	if r.SignalNo > 0 {
		return 128 + r.SignalNo
	}
	if r.ExitCode != nil && *r.ExitCode > 0 {
		return *r.ExitCode
	}
	return exitFailure
}

// nonNil makes an absent list print as [] in JSON.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
