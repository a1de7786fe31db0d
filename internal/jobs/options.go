package jobs

import (
	"fmt"
	"time"
)

// loadLocation accepts IANA names only: "Local" would make replicas on
// differently configured hosts disagree.
func loadLocation(name string) (*time.Location, error) {
	if name == "Local" {
		return nil, fmt.Errorf(`"Local" is refused on purpose: replicas on hosts with different local timezones would disagree on when jobs fire; use an IANA name such as UTC or Europe/Paris`)
	}
	loc, err := time.LoadLocation(name)
	if err != nil || name == "" {
		return nil, fmt.Errorf("unknown timezone %q (use an IANA name such as UTC or Europe/Paris)", name)
	}
	return loc, nil
}

func optPath(path, field string, inJob bool) string {
	if inJob {
		return path + "." + field
	}
	return "defaults." + field
}

// merge applies defaults: and then the built-in defaults to a job's options.
func merge(job, defs Options) Options {
	o := job
	dur := func(d time.Duration) Duration { return Duration(d) }
	orDefault(&o.Timeout, defs.Timeout, dur(DefaultTimeout))
	orDefault(&o.LockTTL, defs.LockTTL, dur(DefaultLockTTL))
	orDefault(&o.KillGrace, defs.KillGrace, dur(DefaultKillGrace))
	orDefault(&o.StartingDeadline, defs.StartingDeadline, dur(DefaultStartingDeadline))
	orDefault(&o.Timezone, defs.Timezone, DefaultTimezone)
	orDefault(&o.Overlap, defs.Overlap, OverlapSkip)
	orDefault(&o.Misfire, defs.Misfire, MisfireSkip)
	orDefault(&o.Shell, defs.Shell, DefaultShell)
	orDefault(&o.History, defs.History, DefaultHistory)
	orDefault(&o.Enabled, defs.Enabled, true)
	orDefault(&o.Suspend, defs.Suspend, false)
	if o.LogOutputLines == nil { // built-in applied by OutputLines, so the hash of older files stays
		o.LogOutputLines = defs.LogOutputLines
	}
	if o.MaxWait == nil { // no built-in: until the next fire time
		o.MaxWait = defs.MaxWait
	}
	if o.Workdir == nil { // no built-in: jobd's working directory
		o.Workdir = defs.Workdir
	}
	env := map[string]string{}
	for k, v := range defs.Env {
		env[k] = v
	}
	for k, v := range job.Env {
		env[k] = v
	}
	o.Env = env
	return o
}

// orDefault sets an unset option from defaults:, else to its built-in value.
func orDefault[T any](dst **T, def *T, builtin T) {
	if *dst == nil {
		*dst = def
	}
	if *dst == nil {
		*dst = &builtin
	}
}

func (d *decoder) checkOptions(path string, job, o Options) {
	if time.Duration(*o.LockTTL) < MinLockTTL {
		d.at(optPath(path, "lock_ttl", job.LockTTL != nil), "%v is too short for keep-alive; use at least %v", time.Duration(*o.LockTTL), MinLockTTL)
	}
	if *o.Overlap != OverlapSkip && *o.Overlap != OverlapWait {
		d.at(optPath(path, "overlap", job.Overlap != nil), "%q: expected skip or wait", *o.Overlap)
	}
	if *o.Misfire != MisfireSkip && *o.Misfire != MisfireRunOnce {
		d.at(optPath(path, "misfire", job.Misfire != nil), "%q: expected skip or run_once", *o.Misfire)
	}
	if n := o.LogOutputLines; n != nil && *n < 0 {
		d.at(optPath(path, "log_output_lines", job.LogOutputLines != nil), "%d: must not be negative", *n)
	}
	if h := *o.History; h < 1 || h > MaxHistory {
		d.at(optPath(path, "history", job.History != nil), "%d: expected 1 to %d", h, MaxHistory)
	}
	if *o.Shell == "" {
		d.at(optPath(path, "shell", job.Shell != nil), "the shell is empty")
	}
	for _, k := range sortedKeys(o.Env) {
		if !envKeyRe.MatchString(k) {
			_, inJob := job.Env[k]
			d.at(optPath(path, "env", inJob)+"."+k, "%q is not a valid environment variable name", k)
		}
	}
}
