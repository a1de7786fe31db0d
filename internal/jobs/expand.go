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
		j, ok, onlyName := d.checkJob(path, &f.Jobs[i], f.Defaults, jobNames)
		switch {
		case ok:
			cfg.Instances = append(cfg.Instances, d.expandParams(j, instNames)...)
		case onlyName:
			// Its name is the only problem: render its templates anyway
			// (instances thrown away), so validate lists every problem.
			d.expandParams(j, map[string]string{})
		}
	}
}

// checkedJob is a job without problems, with what its instances are built
// from: its merged options, parsed schedule and parsed templates.
type checkedJob struct {
	*Job
	path  string // jobs[i], where its problems are reported
	opts  Options
	sched Schedule
	tmpl  jobTemplates
}

// checkJob validates one job and reports all of its problems, not only the
// first, so every check runs even after one failed. ok is false when any
// problem was found: the job then has no instances. onlyName says that
// the name was the only problem found.
func (d *decoder) checkJob(path string, j *Job, defaults Options, jobNames map[string]string) (cj checkedJob, ok, onlyName bool) {
	nameOK := d.checkJobName(path, j.Name, jobNames)
	o := merge(j.Options, defaults)
	sched, schedOK := d.jobSchedule(path, j, *o.Timezone)
	cmdOK := d.checkCommand(path, j.Command)
	paramsOK := d.checkParams(path, j.Params)
	d.checkOptions(path, j.Options, o) // option problems don't hide template ones
	tmpl, tmplOK := d.templates(path, j)
	cj = checkedJob{Job: j, path: path, opts: o, sched: sched, tmpl: tmpl}
	rest := schedOK && cmdOK && paramsOK && tmplOK
	return cj, nameOK && rest, !nameOK && rest && j.Name != ""
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
func (d *decoder) jobSchedule(path string, j *Job, tz string) (Schedule, bool) {
	loc, err := loadLocation(tz)
	if err != nil {
		if j.Timezone != nil { // a bad defaults.timezone is reported once, by expand
			d.at(path+".timezone", "%v", err)
		}
		loc = time.UTC
	}
	if j.Schedule == "" {
		d.at(path, "schedule is required")
		return Schedule{}, false
	}
	sched, err := ParseSchedule(j.Schedule, loc)
	if err != nil {
		d.at(path+".schedule", "%v", err)
		return sched, false
	}
	return sched, true
}

// checkCommand reports a missing or empty command, and an empty program
// name in the list form.
func (d *decoder) checkCommand(path string, c Command) bool {
	ok := true
	_, hasCommand := d.nodes[path+".command"]
	switch {
	case len(c.Argv) > 0 || c.Shell != "":
	case d.reported(path + ".command"): // wrong type
		ok = false
	case hasCommand:
		d.at(path+".command", "command is empty")
		ok = false
	default:
		d.at(path, "command is required")
		ok = false
	}
	if len(c.Argv) > 0 && c.Argv[0] == "" {
		d.at(path+".command[0]", "the program name is empty")
		ok = false
	}
	return ok
}

// checkParams refuses what is almost surely a mistake: an empty list (the
// job would run once, without a param) and a null item (its instance
// would be named plainly like the job). A null params: is unset, like any
// other null field.
func (d *decoder) checkParams(path string, params []any) bool {
	n, ok := d.nodes[path+".params"]
	if !ok || n.Kind != yaml.SequenceNode || d.reported(path+".params") {
		return !d.reported(path + ".params")
	}
	if len(n.Content) == 0 {
		d.at(path+".params", "params is empty: remove it to run the job once, or list the items")
		return false
	}
	good := true
	for i := range params {
		ip := fmt.Sprintf("%s.params[%d]", path, i)
		if item := d.nodes[ip]; item != nil && item.Kind == yaml.ScalarNode && item.Tag == "!!null" {
			d.at(ip, "params[%d] is null: give the item a value, or remove it", i)
			good = false
		} else if d.reported(ip) || params[i] == nil {
			good = false
		}
	}
	return good
}

// expandParams renders one instance per param (one without a param when
// the job has none). It reports, and leaves out, instances whose templates
// fail and names already taken: instNames maps each instance name to the
// path that made it, across jobs.
func (d *decoder) expandParams(j checkedJob, instNames map[string]string) []*Instance {
	params := j.Params
	if len(params) == 0 {
		params = []any{nil}
	}
	var out []*Instance
	for pi, p := range params {
		ppath := j.path
		if j.Params != nil {
			ppath = fmt.Sprintf("%s.params[%d]", j.path, pi)
			if p == nil {
				continue // a null or bad item: reported by checkParams or the decoder
			}
		}
		in, err := d.instance(j, p)
		if err != nil {
			d.at(err.path(j.path, ppath), "%s", err.msg)
			continue
		}
		if first, dup := instNames[in.Name]; dup {
			d.at(ppath, "duplicate instance name %q (first at %s)", in.Name, first)
			continue
		}
		instNames[in.Name] = ppath
		out = append(out, in)
	}
	return out
}
