package jobs

import (
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"text/template/parse"
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
	key   string // the field and the problem, whatever the param: reported once per job
	msg   string // worded for this instance's param
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

// fail records a problem with field; key names the problem whatever the
// param (see instanceErr).
func (r *renderer) fail(field, key, msg string) {
	r.errs = append(r.errs, &instanceErr{field: field, key: field + "\x00" + key, msg: msg})
}

// render executes tm; field (relative to the job) locates a failure. A
// template that did not parse (nil, already reported) renders empty.
func (r *renderer) render(field string, tm *template.Template) (string, bool) {
	if tm == nil {
		return "", false
	}
	var b strings.Builder
	if err := tm.Execute(&b, r.data); err != nil {
		key, text, namesParam := r.explain(tm, err)
		desc := r.paramDesc
		if namesParam {
			desc = ""
		}
		r.fail(field, key, "template"+desc+": "+text)
		return "", false
	}
	return b.String(), true
}

var (
	// What text/template says when a field lookup fails, and where.
	execMissingKey = regexp.MustCompile(`(?s)^template: .*: executing ".*" at <(.*)>: map has no entry for key "(\w+)"$`)
	execNoField    = regexp.MustCompile(`(?s)^template: .*: executing ".*" at <(.*)>: can't evaluate field (\w+) in type .*$`)
	fieldChain     = regexp.MustCompile(`^\$?(\.\w+)+$`) // .Param.user, $.Job
)

// explain words a template that failed to execute for people, rather than
// in text/template's terms ("map has no entry for key", "can't evaluate
// field x in type interface {}"), for the failures a field chain such as
// .Param.user makes: key names the problem whatever the param, text
// describes it for this one, and namesParam says that text names the
// param. Other failures keep text/template's words.
func (r *renderer) explain(tm *template.Template, err error) (key, text string, namesParam bool) {
	generic := cleanTemplateErr(err)
	var ctx, field string
	if m := execMissingKey.FindStringSubmatch(err.Error()); m != nil {
		ctx, field = m[1], m[2]
		generic = fmt.Sprintf("%s: there is no key %q here", ctx, field)
	} else if m := execNoField.FindStringSubmatch(err.Error()); m != nil {
		ctx, field = m[1], m[2]
		generic = fmt.Sprintf("%s: there is no field %q here (not a map)", ctx, field)
	}
	if !fieldChain.MatchString(ctx) || (!strings.HasPrefix(ctx, "$") && dotMoves(tm)) {
		return generic, generic, false // not a chain from the template's data
	}
	chain := strings.Split(strings.TrimPrefix(ctx, "$"), ".")[1:]
	at, missing := r.lookup(chain)
	if at < 0 || chain[at] != field {
		return generic, generic, false // not the failure text/template saw
	}
	switch {
	case missing && at == 0 && field == "Param":
		return "no params", ".Param is not set: the job has no params", false
	case missing && at == 0:
		return "unknown field " + field, r.unknownField(field), false
	case missing && at == 1 && chain[0] == "Param":
		m, _ := r.param.(map[string]string)
		keys := sortedKeys(m)
		return "no key " + field, fmt.Sprintf("param %q has no key %q (its keys: %s)", paramLabel(r.param), field, strings.Join(keys, ", ")), true
	case !missing && at == 1 && chain[0] == "Param":
		return "not a map", fmt.Sprintf("param %q is not a map: use {{ .Param }}", paramLabel(r.param)), true
	case !missing:
		of := "." + strings.Join(chain[:at], ".")
		return "string " + of + "." + field, fmt.Sprintf("%s is a string: it has no field .%s", of, field), false
	}
	return generic, generic, false
}

// lookup follows chain from the template's data, as text/template does,
// and tells where it fails: at the index of the field that a map lacks
// (missing), or that is asked of a string; -1 if it does not fail.
func (r *renderer) lookup(chain []string) (at int, missing bool) {
	var v any = r.data
	for i, f := range chain {
		var ok bool
		switch m := v.(type) {
		case map[string]any:
			v, ok = m[f]
		case map[string]string:
			v, ok = m[f]
		default:
			return i, false
		}
		if !ok {
			return i, true
		}
	}
	return -1, false
}

// unknownField words a field the template data lacks, with the fields it
// has and the one that may have been meant.
func (r *renderer) unknownField(field string) string {
	has := ".Param, .Job and .Instance"
	if r.param == nil {
		has = ".Job and .Instance, and .Param when the job has params"
	}
	best, bestD := "", 3
	for _, f := range []string{"Param", "Job", "Instance"} {
		if d := levenshtein(strings.ToLower(field), strings.ToLower(f)); d < bestD && d < len(field) {
			best, bestD = f, d
		}
	}
	msg := fmt.Sprintf("unknown field .%s (the template data has %s", field, has)
	if best != "" {
		msg += ": did you mean ." + best + "?"
	}
	return msg + ")"
}

// dotMoves tells whether dot may be something else than the template's
// data somewhere in tm: in a with or range block, or a template it calls.
func dotMoves(tm *template.Template) bool {
	if len(tm.Templates()) > 1 {
		return true
	}
	var moves func(n parse.Node) bool
	moves = func(n parse.Node) bool {
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return false
			}
			for _, c := range n.Nodes {
				if moves(c) {
					return true
				}
			}
		case *parse.IfNode:
			return moves(n.List) || moves(n.ElseList)
		case *parse.WithNode, *parse.RangeNode, *parse.TemplateNode:
			return true
		}
		return false
	}
	return tm.Tree != nil && moves(tm.Tree.Root)
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
		r.fail("lock", "empty", "lock renders empty"+r.paramDesc)
	case mutex.ValidName(lock) != nil:
		r.fail("lock", "brace", fmt.Sprintf("lock %q must not start with '}'%s", lock, r.paramDesc))
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
