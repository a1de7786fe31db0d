package jobs

import (
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/jobd/jobd/internal/mutex"
)

// jobTemplates are a job's parsed templates.
type jobTemplates struct {
	lock    *template.Template // nil: the instance name
	argv    []*template.Template
	env     map[string]*template.Template
	workdir *template.Template
}

func (d *decoder) templates(path string, j *Job) (jobTemplates, bool) {
	ok := true
	parse := func(p, text string) *template.Template {
		t, err := template.New(p).Option("missingkey=error").Parse(text)
		if err != nil {
			d.at(p, "template: %s", cleanTemplateErr(err))
			ok = false
		}
		return t
	}
	t := jobTemplates{env: map[string]*template.Template{}}
	if j.Lock != "" {
		t.lock = parse(path+".lock", j.Lock)
	}
	for i, a := range j.Command.Argv {
		t.argv = append(t.argv, parse(fmt.Sprintf("%s.command[%d]", path, i), a))
	}
	for _, k := range sortedKeys(j.Env) {
		t.env[k] = parse(path+".env."+k, j.Env[k])
	}
	if j.Workdir != nil {
		t.workdir = parse(path+".workdir", *j.Workdir)
	}
	return t, ok
}

type instanceErr struct {
	field string // relative to the job; "" for the param
	msg   string
}

func (e *instanceErr) path(job, param string) string {
	if e.field == "" {
		return param
	}
	return job + "." + e.field
}

func (d *decoder) instance(j *Job, o Options, sched Schedule, t jobTemplates, param any) (*Instance, *instanceErr) {
	in := &Instance{
		Job: j.Name, Name: j.Name, Param: param, Schedule: sched,
		Timezone: sched.Location.String(), Timeout: time.Duration(*o.Timeout),
		LockTTL: time.Duration(*o.LockTTL), KillGrace: time.Duration(*o.KillGrace),
		Overlap: *o.Overlap, Misfire: *o.Misfire, StartingDeadline: time.Duration(*o.StartingDeadline),
		History: *o.History, Enabled: *o.Enabled, Suspended: *o.Suspend, Env: map[string]string{},
	}
	if o.MaxWait != nil {
		in.MaxWait = time.Duration(*o.MaxWait)
	}
	data := map[string]any{"Job": j.Name}
	paramDesc := ""
	if param != nil {
		data["Param"] = param
		in.Name = j.Name + "[" + paramLabel(param) + "]"
		paramDesc = fmt.Sprintf(" (param %q)", paramLabel(param))
	}
	data["Instance"] = in.Name
	render := func(field string, tm *template.Template) (string, *instanceErr) {
		var b strings.Builder
		if err := tm.Execute(&b, data); err != nil {
			msg := cleanTemplateErr(err)
			if param == nil && strings.Contains(msg, `"Param"`) {
				msg += "; the job has no params"
			}
			return "", &instanceErr{field, "template" + paramDesc + ": " + msg}
		}
		return b.String(), nil
	}
	var err *instanceErr
	in.Lock = in.Name
	if t.lock != nil {
		if in.Lock, err = render("lock", t.lock); err != nil {
			return nil, err
		}
		switch {
		case strings.TrimSpace(in.Lock) == "":
			return nil, &instanceErr{"lock", "lock renders empty" + paramDesc}
		case mutex.ValidName(in.Lock) != nil: // the lock's name rules are the mutex's
			return nil, &instanceErr{"lock", fmt.Sprintf("lock %q must not start with '}'%s", in.Lock, paramDesc)}
		}
	}
	if j.Command.Shell != "" {
		in.Argv = []string{*o.Shell, "-c", j.Command.Shell}
	}
	for i, tm := range t.argv {
		a, err := render(fmt.Sprintf("command[%d]", i), tm)
		if err != nil {
			return nil, err
		}
		in.Argv = append(in.Argv, a)
	}
	for k, v := range o.Env {
		in.Env[k] = v // defaults' env is not templated per job
	}
	for k, tm := range t.env {
		if in.Env[k], err = render("env."+k, tm); err != nil {
			return nil, err
		}
	}
	if t.workdir != nil {
		if in.Workdir, err = render("workdir", t.workdir); err != nil {
			return nil, err
		}
	} else if o.Workdir != nil {
		in.Workdir = *o.Workdir
	}
	return in, nil
}

// paramLabel names an instance: the scalar itself, or k=v pairs sorted by key.
func paramLabel(p any) string {
	switch p := p.(type) {
	case string:
		return p
	case map[string]string:
		parts := make([]string, 0, len(p))
		for _, k := range sortedKeys(p) {
			parts = append(parts, k+"="+p[k])
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(p)
}

func cleanTemplateErr(err error) string {
	s := err.Error()
	// "template: jobs[0].lock:1:22: executing ..." -> keep what follows.
	if i := strings.Index(s, ": executing "); i >= 0 {
		s = s[i+len(": executing "):]
		if j := strings.Index(s, ": "); j >= 0 {
			s = s[j+2:]
		}
	} else if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s, "template: ") {
		s = s[i+2:]
	}
	return s
}
