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

// templates parses the job's templates, reporting those that fail to
// parse and leaving them nil: the others are still rendered.
func (d *decoder) templates(path string, j *Job) jobTemplates {
	parse := func(p, text string) *template.Template {
		t, err := template.New(p).Option("missingkey=error").Parse(text)
		if err != nil {
			d.at(p, "template: %s", cleanTemplateErr(err))
			return nil
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
	return t
}

// instanceErr is a problem with one instance: a template that fails to
// render, or a lock name the mutex would refuse.
type instanceErr struct {
	field string // relative to the job: lock, command[1], env.X, workdir
	msg   string
}

// instance renders one instance of a checked job for param (nil when the
// job has no params). It renders every template, not only up to the first
// that fails, and returns the failures, each naming its field.
func (d *decoder) instance(j checkedJob, param any) (*Instance, []*instanceErr) {
	in := newInstance(j, param)
	r := newRenderer(j.Name, in.Name, param)
	in.Lock = r.lock(j.tmpl.lock, in.Name)
	in.Argv = r.argv(j)
	in.Env = r.env(j.opts.Env, j.tmpl.env)
	in.Workdir = r.workdir(j.tmpl.workdir, j.opts.Workdir)
	if len(r.errs) > 0 {
		return nil, r.errs
	}
	return in, nil
}

// newInstance fills in what an instance takes from its job untemplated:
// its name, schedule and options. instance renders the rest.
func newInstance(j checkedJob, param any) *Instance {
	o := j.opts
	in := &Instance{
		Job: j.Name, Param: param, Schedule: j.sched,
		Timezone: j.sched.Location.String(), Timeout: time.Duration(*o.Timeout),
		LockTTL: time.Duration(*o.LockTTL), KillGrace: time.Duration(*o.KillGrace),
		Overlap: *o.Overlap, Misfire: *o.Misfire, StartingDeadline: time.Duration(*o.StartingDeadline),
		History: *o.History, Enabled: *o.Enabled, Suspended: *o.Suspend, LogOutputLines: o.LogOutputLines,
	}
	if o.MaxWait != nil {
		in.MaxWait = time.Duration(*o.MaxWait)
	}
	in.Name = instanceName(j.Name, param)
	return in
}

// instanceName is job, or job[label] for a param (see paramLabel).
func instanceName(job string, param any) string {
	if param == nil {
		return job
	}
	return job + "[" + paramLabel(param) + "]"
}

// renderer executes one instance's templates, and collects their
// failures, worded with the param they were rendered for.
type renderer struct {
	data      map[string]any // .Job, .Instance, and .Param when there is one
	param     any
	paramDesc string // ` (param "x")`, or "" for a job without params
	errs      []*instanceErr
}

// newRenderer sets up the data the templates of instance see.
func newRenderer(job, instance string, param any) *renderer {
	r := &renderer{data: map[string]any{"Job": job, "Instance": instance}, param: param}
	if param != nil {
		r.data["Param"] = param
		r.paramDesc = fmt.Sprintf(" (param %q)", paramLabel(param))
	}
	return r
}

func (r *renderer) fail(field, msg string) {
	r.errs = append(r.errs, &instanceErr{field, msg})
}

// render executes tm; field (relative to the job) locates a failure. A
// template that did not parse (nil, already reported) renders empty.
func (r *renderer) render(field string, tm *template.Template) (string, bool) {
	if tm == nil {
		return "", false
	}
	var b strings.Builder
	if err := tm.Execute(&b, r.data); err != nil {
		msg := cleanTemplateErr(err)
		if r.param == nil && strings.Contains(msg, `"Param"`) {
			msg += "; the job has no params"
		}
		r.fail(field, "template"+r.paramDesc+": "+msg)
		return "", false
	}
	return b.String(), true
}

// lock renders the lock name (the instance name without a template) and
// checks it against the mutex's name rules, which are the ones that count.
func (r *renderer) lock(tm *template.Template, instance string) string {
	if tm == nil {
		return instance // no lock: (or one that did not parse)
	}
	lock, ok := r.render("lock", tm)
	switch {
	case !ok:
	case strings.TrimSpace(lock) == "":
		r.fail("lock", "lock renders empty"+r.paramDesc)
	case mutex.ValidName(lock) != nil:
		r.fail("lock", fmt.Sprintf("lock %q must not start with '}'%s", lock, r.paramDesc))
	}
	return lock
}

// argv builds the command: the shell form as is (never templated, params
// reach it only through the environment), the list form rendered item by
// item.
func (r *renderer) argv(j checkedJob) []string {
	var argv []string
	if j.Command.Shell != "" {
		argv = []string{*j.opts.Shell, "-c", j.Command.Shell}
	}
	for i, tm := range j.tmpl.argv {
		a, _ := r.render(fmt.Sprintf("command[%d]", i), tm)
		argv = append(argv, a)
	}
	return argv
}

// env is the merged env with the job's own values rendered over it; the
// values from defaults: are not templated per job.
func (r *renderer) env(merged map[string]string, tmpl map[string]*template.Template) map[string]string {
	env := map[string]string{}
	for k, v := range merged {
		env[k] = v
	}
	for _, k := range sortedKeys(tmpl) {
		env[k], _ = r.render("env."+k, tmpl[k])
	}
	return env
}

// workdir renders the job's workdir, else takes the one from defaults: ("",
// jobd's own, when neither sets one).
func (r *renderer) workdir(tm *template.Template, def *string) string {
	switch {
	case tm != nil:
		w, _ := r.render("workdir", tm)
		return w
	case def != nil:
		return *def
	}
	return ""
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
