package jobs

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// expand validates each job and turns it into instances. Job and instance
// names must be unique across the file, so the names seen so far are kept
// here, across jobs.
func (d *decoder) expand(f *File, cfg *Config) {
	if tz := f.Defaults.Timezone; tz != nil {
		if _, err := loadLocation(*tz); err != nil {
			d.at("defaults.timezone", "%v", err)
		}
	}
	jobNames := map[string]string{}  // name -> path of first use
	instNames := map[string]string{} // instance name -> path
	for i := range f.Jobs {
		path := fmt.Sprintf("jobs[%d]", i)
		if n, ok := d.nodes[path]; !ok || n.Kind != yaml.MappingNode {
			continue // not even a mapping; already reported
		}
		before := len(d.problems)
		j, nameOK, paramsOK := d.checkJob(path, &f.Jobs[i], f.Defaults, jobNames)
		names := instNames
		if !nameOK {
			// The instance names of a job with a bad name (or one already
			// taken) would clash for nothing: check them apart.
			names = map[string]string{}
		}
		var instances []*Instance
		if paramsOK {
			// Rendered whatever else failed, so that validate lists every
			// problem at once; the instances are kept only if none did.
			instances = d.expandParams(j, names)
		}
		if len(d.problems) == before {
			cfg.Instances = append(cfg.Instances, instances...)
		}
	}
}

// checkedJob is a checked job, with what its instances are built from: its
// merged options, parsed schedule and parsed templates (nil where one
// failed to parse).
type checkedJob struct {
	*Job
	path  string // jobs[i], where its problems are reported
	opts  Options
	sched Schedule
	tmpl  jobTemplates
}

// checkJob validates one job and reports all of its problems, not only the
// first: every check runs even after another one failed. nameOK says the
// name is good (and now taken); paramsOK that the params can be rendered:
// absent, or a non-empty list (its bad items are skipped).
func (d *decoder) checkJob(path string, j *Job, defaults Options, jobNames map[string]string) (cj checkedJob, nameOK, paramsOK bool) {
	nameOK = d.checkJobName(path, j.Name, jobNames)
	o := merge(j.Options, defaults)
	sched := d.jobSchedule(path, j, *o.Timezone)
	d.checkCommand(path, j.Command)
	paramsOK = d.checkParams(path, j.Params)
	d.checkOptions(path, j.Options, o)
	tmpl := d.templates(path, j)
	return checkedJob{Job: j, path: path, opts: o, sched: sched, tmpl: tmpl}, nameOK, paramsOK
}

// checkJobName reports a missing, malformed or repeated job name. jobNames
// maps each name seen so far to the path of its first use; a good name is
// added to it.
func (d *decoder) checkJobName(path, name string, jobNames map[string]string) bool {
	switch {
	case d.reported(path + ".name"): // wrong type
		return false
	case name == "":
		d.at(path, "name is required")
		return false
	case !nameRe.MatchString(name):
		d.at(path+".name", "%q: use only ASCII letters and digits and . _ - :", name)
		return false
	case jobNames[name] != "":
		d.at(path+".name", "duplicate job name %q (first at %s)", name, jobNames[name])
		return false
	}
	jobNames[name] = path
	return true
}

// jobSchedule parses the job's schedule in timezone tz. A bad timezone
// falls back to UTC, so that the schedule's own problems still show.
func (d *decoder) jobSchedule(path string, j *Job, tz string) Schedule {
	loc, err := loadLocation(tz)
	if err != nil {
		if j.Timezone != nil { // a bad defaults.timezone is reported once, by expand
			d.at(path+".timezone", "%v", err)
		}
		loc = time.UTC
	}
	if j.Schedule == "" {
		d.at(path, "schedule is required")
		return Schedule{Location: loc}
	}
	sched, err := ParseSchedule(j.Schedule, loc)
	if err != nil {
		d.at(path+".schedule", "%v", err)
	}
	return sched
}

// checkCommand reports a missing or empty command, and an empty program
// name in the list form.
func (d *decoder) checkCommand(path string, c Command) {
	_, hasCommand := d.nodes[path+".command"]
	switch {
	case len(c.Argv) > 0 || c.Shell != "":
	case d.reported(path + ".command"): // wrong type
	case hasCommand:
		d.at(path+".command", "command is empty")
	default:
		d.at(path, "command is required")
	}
	if len(c.Argv) > 0 && c.Argv[0] == "" {
		d.at(path+".command[0]", "the program name is empty")
	}
}

// checkParams refuses what is almost surely a mistake: an empty list (the
// job would run once, without a param) and a null item (its instance
// would be named plainly like the job). A null params: is unset, like any
// other null field. It tells whether the templates can be rendered for
// the params: they are absent, or a list with items (bad ones are
// skipped, see expandParams).
func (d *decoder) checkParams(path string, params []any) bool {
	n, ok := d.nodes[path+".params"]
	switch {
	case d.reported(path + ".params"): // not a list
		return false
	case !ok || n.Kind != yaml.SequenceNode:
		return true
	case len(n.Content) == 0:
		d.at(path+".params", "params is empty: remove it to run the job once, or list the items")
		return false
	}
	for i := range params {
		ip := fmt.Sprintf("%s.params[%d]", path, i)
		if item := d.nodes[ip]; item != nil && item.Kind == yaml.ScalarNode && item.Tag == "!!null" {
			d.at(ip, "params[%d] is null: give the item a value, or remove it", i)
		}
	}
	return true
}

// expandParams renders one instance per param (one without a param when
// the job has none), skipping null and bad items (already reported). It
// reports, and leaves out, instances whose templates fail and names
// already taken: instNames maps each instance name to the path that made
// it, across jobs. A template problem is reported once per job, for the
// first param it failed on, with how many params failed the same way.
func (d *decoder) expandParams(j checkedJob, instNames map[string]string) []*Instance {
	params := j.Params
	if len(params) == 0 {
		params = []any{nil}
	}
	type failure struct {
		first *instanceErr
		n     int // params that failed so
	}
	var failures []*failure
	byKey := map[string]*failure{}
	rendered := 0
	defer func() {
		for _, f := range failures {
			msg := f.first.msg
			switch {
			case f.n == 2 && rendered == 2:
				msg += "; both params fail the same way"
			case f.n > 1 && f.n == rendered:
				msg += fmt.Sprintf("; all %d params fail the same way", f.n)
			case f.n > 1:
				msg += fmt.Sprintf("; %d of the %d params fail the same way", f.n, rendered)
			}
			d.at(j.path+"."+f.first.field, "%s", msg)
		}
	}()
	var out []*Instance
	for pi, p := range params {
		ppath := j.path
		if j.Params != nil {
			ppath = fmt.Sprintf("%s.params[%d]", j.path, pi)
			if p == nil {
				continue // a null or bad item: reported by checkParams or the decoder
			}
		}
		name := instanceName(j.Name, p)
		first, dup := instNames[name]
		if dup {
			d.at(ppath, "duplicate instance name %q (first at %s)", name, first)
		} else {
			instNames[name] = ppath
		}
		in, errs := d.instance(j, p)
		rendered++
		for _, e := range errs {
			if f := byKey[e.key]; f != nil {
				f.n++
			} else {
				byKey[e.key] = &failure{first: e, n: 1}
				failures = append(failures, byKey[e.key])
			}
		}
		if !dup && len(errs) == 0 {
			out = append(out, in)
		}
	}
	return out
}
