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

// instance renders one instance of a checked job for param (nil when the
// job has no params). A template that fails, or a lock name the mutex would
// refuse, is an *instanceErr naming the field.
func (d *decoder) instance(j checkedJob, param any) (*Instance, *instanceErr) {
	in := newInstance(j, param)
	r := newRenderer(j.Name, in.Name, param)
	var err *instanceErr
	if in.Lock, err = r.lock(j.tmpl.lock, in.Name); err != nil {
		return nil, err
	}
	if in.Argv, err = r.argv(j); err != nil {
		return nil, err
	}
	if in.Env, err = r.env(j.opts.Env, j.tmpl.env); err != nil {
		return nil, err
	}
	if in.Workdir, err = r.workdir(j.tmpl.workdir, j.opts.Workdir); err != nil {
		return nil, err
	}
	return in, nil
}

// newInstance fills in what an instance takes from its job untemplated:
// its name, schedule and options. instance renders the rest.
func newInstance(j checkedJob, param any) *Instance {
	o := j.opts
	in := &Instance{
		Job: j.Name, Name: j.Name, Param: param, Schedule: j.sched,
		Timezone: j.sched.Location.String(), Timeout: time.Duration(*o.Timeout),
		LockTTL: time.Duration(*o.LockTTL), KillGrace: time.Duration(*o.KillGrace),
		Overlap: *o.Overlap, Misfire: *o.Misfire, StartingDeadline: time.Duration(*o.StartingDeadline),
		History: *o.History, Enabled: *o.Enabled, Suspended: *o.Suspend, LogOutputLines: o.LogOutputLines,
	}
	if o.MaxWait != nil {
		in.MaxWait = time.Duration(*o.MaxWait)
	}
	if param != nil {
		in.Name = j.Name + "[" + paramLabel(param) + "]"
	}
	return in
}

// renderer executes one instance's templates, and words their failures
// with the param they were rendered for.
type renderer struct {
	data      map[string]any // .Job, .Instance, and .Param when there is one
	param     any
	paramDesc string // ` (param "x")`, or "" for a job without params
}

// newRenderer sets up the data the templates of instance see.
func newRenderer(job, instance string, param any) renderer {
	r := renderer{data: map[string]any{"Job": job, "Instance": instance}, param: param}
	if param != nil {
		r.data["Param"] = param
		r.paramDesc = fmt.Sprintf(" (param %q)", paramLabel(param))
	}
	return r
}

// render executes tm; field (relative to the job) locates a failure.
func (r renderer) render(field string, tm *template.Template) (string, *instanceErr) {
	var b strings.Builder
	if err := tm.Execute(&b, r.data); err != nil {
		msg := cleanTemplateErr(err)
		if r.param == nil && strings.Contains(msg, `"Param"`) {
			msg += "; the job has no params"
		}
		return "", &instanceErr{field, "template" + r.paramDesc + ": " + msg}
	}
	return b.String(), nil
}

// lock renders the lock name (the instance name without a template) and
// checks it against the mutex's name rules, which are the ones that count.
func (r renderer) lock(tm *template.Template, instance string) (string, *instanceErr) {
	if tm == nil {
		return instance, nil
	}
	lock, err := r.render("lock", tm)
	switch {
	case err != nil:
		return "", err
	case strings.TrimSpace(lock) == "":
		return "", &instanceErr{"lock", "lock renders empty" + r.paramDesc}
	case mutex.ValidName(lock) != nil:
		return "", &instanceErr{"lock", fmt.Sprintf("lock %q must not start with '}'%s", lock, r.paramDesc)}
	}
	return lock, nil
}

// argv builds the command: the shell form as is (never templated, params
// reach it only through the environment), the list form rendered item by
// item.
func (r renderer) argv(j checkedJob) ([]string, *instanceErr) {
	var argv []string
	if j.Command.Shell != "" {
		argv = []string{*j.opts.Shell, "-c", j.Command.Shell}
	}
	for i, tm := range j.tmpl.argv {
		a, err := r.render(fmt.Sprintf("command[%d]", i), tm)
		if err != nil {
			return nil, err
		}
		argv = append(argv, a)
	}
	return argv, nil
}

// env is the merged env with the job's own values rendered over it; the
// values from defaults: are not templated per job.
func (r renderer) env(merged map[string]string, tmpl map[string]*template.Template) (map[string]string, *instanceErr) {
	env := map[string]string{}
	for k, v := range merged {
		env[k] = v
	}
	for k, tm := range tmpl {
		v, err := r.render("env."+k, tm)
		if err != nil {
			return nil, err
		}
		env[k] = v
	}
	return env, nil
}

// workdir renders the job's workdir, else takes the one from defaults: ("",
// jobd's own, when neither sets one).
func (r renderer) workdir(tm *template.Template, def *string) (string, *instanceErr) {
	switch {
	case tm != nil:
		return r.render("workdir", tm)
	case def != nil:
		return *def, nil
	}
	return "", nil
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
