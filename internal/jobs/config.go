package jobs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/jobd/jobd/internal/mutex"
)

// Config is a validated schedule file, with params expanded into instances.
type Config struct {
	File      string
	Redis     RedisConfig
	Jobs      int         // entries under jobs:, enabled or not
	Instances []*Instance // sorted by name
	Hash      string      // hex SHA-256 of what the instances do; replicas compare it
}

// Instance is one schedulable unit: a job, or one item of its params.
type Instance struct {
	Job      string            `json:"job"`
	Name     string            `json:"name"`            // job, or job[param]
	Param    any               `json:"param,omitempty"` // string or map[string]string
	Schedule Schedule          `json:"-"`
	Lock     string            `json:"lock"`
	Argv     []string          `json:"argv"` // the shell form is [shell, -c, command]
	Env      map[string]string `json:"env,omitempty"`
	Workdir  string            `json:"workdir,omitempty"`

	Timezone         string        `json:"timezone"`
	Timeout          time.Duration `json:"timeout"`
	LockTTL          time.Duration `json:"lock_ttl"`
	KillGrace        time.Duration `json:"kill_grace"`
	Overlap          string        `json:"overlap"`
	MaxWait          time.Duration `json:"max_wait,omitempty"` // 0: until the next fire time
	Misfire          string        `json:"misfire"`
	StartingDeadline time.Duration `json:"starting_deadline"`
	History          int           `json:"history"`
	Enabled          bool          `json:"enabled"`
	Suspended        bool          `json:"suspended"`
}

// ParamEnv is the environment that carries the param to the command:
// JOBD_PARAM for a scalar, JOBD_PARAM_<KEY> for each key of a map (and
// JOBD_PARAM as its JSON). Shell commands read params only from here, so
// parameter values are never pasted into shell code.
func (in *Instance) ParamEnv() []string {
	switch p := in.Param.(type) {
	case string:
		return []string{"JOBD_PARAM=" + p}
	case map[string]string:
		b, _ := json.Marshal(p)
		env := []string{"JOBD_PARAM=" + string(b)}
		keys := sortedKeys(p)
		for _, k := range keys {
			env = append(env, "JOBD_PARAM_"+envKey(k)+"="+p[k])
		}
		return env
	}
	return nil
}

// envKey turns a param key into the tail of JOBD_PARAM_<KEY>.
func envKey(k string) string { return strings.ToUpper(notEnvChar.ReplaceAllString(k, "_")) }

// Summary is the one-line report of `jobd validate`.
func (c *Config) Summary() string {
	locks := map[string]bool{}
	for _, in := range c.Instances {
		locks[in.Lock] = true
	}
	return fmt.Sprintf("%d jobs, %d instances, %d locks", c.Jobs, len(c.Instances), len(locks))
}

// Instance returns the instance called name.
func (c *Config) Instance(name string) (*Instance, bool) {
	i := sort.Search(len(c.Instances), func(i int) bool { return c.Instances[i].Name >= name })
	if i < len(c.Instances) && c.Instances[i].Name == name {
		return c.Instances[i], true
	}
	return nil, false
}

// Load reads and validates a schedule file. Its error is Problems (every
// problem found, with positions) or a read error.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

var (
	nameRe   = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`)
	envKeyRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	// notEnvChar is what envKey replaces in a param key.
	notEnvChar = regexp.MustCompile(`[^A-Za-z0-9_]`)
)

// Parse validates data, read from file (used in messages). It never
// panics, whatever data holds.
func Parse(file string, data []byte) (*Config, error) {
	d := &decoder{file: file, nodes: map[string]*yaml.Node{}}
	if len(data) > MaxFileSize {
		d.addf(nil, "", "file is larger than %d bytes; split it or trim it", MaxFileSize)
		return nil, d.problems
	}
	if !utf8.Valid(data) {
		line, col := invalidUTF8At(data)
		d.problems = append(d.problems, Problem{File: file, Line: line, Col: col, Msg: "file is not valid UTF-8"})
		return nil, d.problems
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			d.addf(nil, "", "file is empty: expected a mapping with jobs:")
		} else {
			d.problems = append(d.problems, syntaxProblem(file, err))
		}
		return nil, d.problems
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.addf(&extra, "", "only one YAML document is allowed (found a second one)")
	} else if !errors.Is(err, io.EOF) {
		d.problems = append(d.problems, syntaxProblem(file, err))
	}
	var f File
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	d.value(doc, reflect.ValueOf(&f).Elem(), "")
	if len(d.problems) == 0 {
		// Safety net: yaml.v3's own strict decoding must agree.
		strict := yaml.NewDecoder(bytes.NewReader(data))
		strict.KnownFields(true)
		var check File
		if err := strict.Decode(&check); err != nil {
			d.problems = append(d.problems, syntaxProblem(file, err))
		}
	}
	cfg := &Config{File: file, Redis: f.Redis, Jobs: len(f.Jobs)}
	d.expand(&f, cfg)
	if len(d.problems) > 0 {
		return nil, d.problems.sorted()
	}
	sort.Slice(cfg.Instances, func(i, j int) bool { return cfg.Instances[i].Name < cfg.Instances[j].Name })
	cfg.Hash = hashOf(cfg)
	return cfg, nil
}

func syntaxProblem(file string, err error) Problem {
	msg := err.Error()
	if te, ok := err.(*yaml.TypeError); ok && len(te.Errors) > 0 {
		msg = "yaml: " + te.Errors[0]
	}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{File: file, Line: line, Msg: m[2]}
	}
	return Problem{File: file, Msg: strings.TrimPrefix(msg, "yaml: ")}
}

func invalidUTF8At(data []byte) (line, col int) {
	line, col = 1, 1
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		if r == utf8.RuneError && size <= 1 {
			return line, col
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		data = data[size:]
	}
	return line, col
}

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

// loadLocation accepts IANA names only: "Local" would make replicas on
// differently configured hosts disagree.
func loadLocation(name string) (*time.Location, error) {
	loc, err := time.LoadLocation(name)
	if err != nil || name == "" || name == "Local" {
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

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// hashOf fingerprints what the instances do: schedules, locks, commands
// and options, not comments or layout.
func hashOf(c *Config) string {
	type entry struct {
		*Instance
		Spec string `json:"schedule"`
	}
	entries := make([]entry, len(c.Instances))
	for i, in := range c.Instances {
		entries[i] = entry{in, in.Schedule.Spec}
	}
	b, _ := json.Marshal(entries)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
