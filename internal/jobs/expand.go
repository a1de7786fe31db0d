package jobs

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// expand validates each job and turns it into instances.
func (d *decoder) expand(f *File, cfg *Config) {
	if tz := f.Defaults.Timezone; tz != nil {
		if _, err := loadLocation(*tz); err != nil {
			d.at("defaults.timezone", "%v", err)
		}
	}
	jobNames := map[string]string{}  // name -> path of first use
	instNames := map[string]string{} // instance name -> path
	for i := range f.Jobs {
		j := &f.Jobs[i]
		path := fmt.Sprintf("jobs[%d]", i)
		if n, ok := d.nodes[path]; !ok || n.Kind != yaml.MappingNode {
			continue // not even a mapping; already reported
		}
		ok := true
		switch {
		case d.reported(path + ".name"): // wrong type
			ok = false
		case j.Name == "":
			d.at(path, "name is required")
			ok = false
		case !nameRe.MatchString(j.Name):
			d.at(path+".name", "%q: use only letters, digits and . _ - :", j.Name)
			ok = false
		case jobNames[j.Name] != "":
			d.at(path+".name", "duplicate job name %q (first at %s)", j.Name, jobNames[j.Name])
			ok = false
		default:
			jobNames[j.Name] = path
		}
		o := merge(j.Options, f.Defaults)
		loc, err := loadLocation(*o.Timezone)
		if err != nil {
			if j.Timezone != nil { // a bad defaults.timezone is reported once, below
				d.at(path+".timezone", "%v", err)
			}
			loc = time.UTC
		}
		var sched Schedule
		if j.Schedule == "" {
			d.at(path, "schedule is required")
			ok = false
		} else if sched, err = ParseSchedule(j.Schedule, loc); err != nil {
			d.at(path+".schedule", "%v", err)
			ok = false
		}
		_, hasCommand := d.nodes[path+".command"]
		switch {
		case len(j.Command.Argv) > 0 || j.Command.Shell != "":
		case d.reported(path + ".command"): // wrong type
			ok = false
		case hasCommand:
			d.at(path+".command", "command is empty")
			ok = false
		default:
			d.at(path, "command is required")
			ok = false
		}
		if len(j.Command.Argv) > 0 && j.Command.Argv[0] == "" {
			d.at(path+".command[0]", "the program name is empty")
			ok = false
		}
		d.checkOptions(path, j.Options, o) // option problems don't hide template ones
		tmpl, tok := d.templates(path, j)
		if !ok || !tok {
			continue
		}
		params := j.Params
		if len(params) == 0 {
			params = []any{nil}
		}
		for pi, p := range params {
			in, err := d.instance(j, o, sched, tmpl, p)
			ppath := path
			if j.Params != nil {
				ppath = fmt.Sprintf("%s.params[%d]", path, pi)
			}
			if err != nil {
				d.at(err.path(path, ppath), "%s", err.msg)
				continue
			}
			if first, dup := instNames[in.Name]; dup {
				d.at(ppath, "duplicate instance name %q (first at %s)", in.Name, first)
				continue
			}
			instNames[in.Name] = ppath
			cfg.Instances = append(cfg.Instances, in)
		}
	}
}
