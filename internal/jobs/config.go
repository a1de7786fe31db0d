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
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
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
	LogOutputLines   *int          `json:"log_output_lines,omitempty"` // nil: DefaultLogOutputLines
}

// OutputLines is how many output lines one run of in logs.
func (in *Instance) OutputLines() int {
	if in.LogOutputLines != nil {
		return *in.LogOutputLines
	}
	return DefaultLogOutputLines
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
	return fmt.Sprintf("%d jobs, %d instances, %d locks", c.Jobs, len(c.Instances), len(c.Locks()))
}

// Locks lists the distinct lock names the instances take, sorted.
func (c *Config) Locks() []string {
	seen := map[string]bool{}
	var out []string
	for _, in := range c.Instances {
		if !seen[in.Lock] {
			seen[in.Lock] = true
			out = append(out, in.Lock)
		}
	}
	sort.Strings(out)
	return out
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
		d.addf(nil, "", "file is larger than %d bytes (1 MiB), the most jobd reads: trim it (params lists, comments)", MaxFileSize)
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
			d.problems = append(d.problems, syntaxProblem(file, data, err))
		}
		return nil, d.problems
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.addf(&extra, "", "only one YAML document is allowed (found a second one)")
	} else if !errors.Is(err, io.EOF) {
		d.problems = append(d.problems, syntaxProblem(file, data, err))
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
			d.problems = append(d.problems, syntaxProblem(file, data, err))
		}
	}
	d.checkRedis(&f.Redis)
	cfg := &Config{File: file, Redis: f.Redis, Jobs: len(f.Jobs)}
	d.expand(&f, cfg)
	if len(d.problems) > 0 {
		return nil, d.problems.sorted()
	}
	sort.Slice(cfg.Instances, func(i, j int) bool { return cfg.Instances[i].Name < cfg.Instances[j].Name })
	cfg.Hash = hashOf(cfg)
	return cfg, nil
}

func syntaxProblem(file string, data []byte, err error) Problem {
	msg := err.Error()
	if te, ok := err.(*yaml.TypeError); ok && len(te.Errors) > 0 {
		msg = "yaml: " + te.Errors[0]
	}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p := Problem{File: file, Line: problemLine(data, line), Msg: m[2]}
		if strings.Contains(p.Msg, "cannot start any token") || strings.Contains(p.Msg, "tab character") {
			return tabProblem(p, data)
		}
		return p
	}
	return Problem{File: file, Msg: strings.TrimPrefix(msg, "yaml: ")}
}

// maxScanBytes bounds problemLine's work (the bytes of all the prefixes
// it parses): tens of milliseconds.
const maxScanBytes = 4 << 20

// problemLine is the line of a YAML syntax error: the first line from
// which every longer prefix of data fails to parse. yaml.v3 reports,
// for most parser errors, where the enclosing list or block starts, as a
// 0-based line (so one line above it, or a line far above the mistake);
// a prefix that stops inside a construct that closes later fails too, so
// the scan goes backwards from the end to the longest prefix that
// parses. A scan that would parse more than maxScanBytes in all keeps
// yaml.v3's line.
func problemLine(data []byte, reported int) int {
	var ends []int // byte offset of the end of each line
	for i, b := range data {
		if b == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	scanned := 0
	for k := len(ends) - 1; k >= 1; k-- {
		if scanned += ends[k-1]; scanned > maxScanBytes {
			return reported
		}
		if parses(data[:ends[k-1]]) {
			return k + 1
		}
	}
	return 1
}

// parses reports whether every YAML document in data parses.
func parses(data []byte) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			return errors.Is(err, io.EOF)
		}
	}
}

// tabProblem rewords yaml.v3's tab errors ("found character that cannot
// start any token", "found a tab character that violates indentation") and
// points at the tab, which yaml.v3 may place on the line before. The same
// "cannot start any token" is also a plain value that starts with a
// character YAML reserves ('@' or '`', as in schedule: @daily): it says
// to quote it.
func tabProblem(p Problem, data []byte) Problem {
	lines := bytes.Split(data, []byte("\n"))
	for l := p.Line; l >= 1 && l <= len(lines) && l <= p.Line+1; l++ {
		if col := bytes.IndexByte(lines[l-1], '\t'); col >= 0 {
			p.Line, p.Col = l, col+1
			p.Msg = "a tab: YAML does not allow tabs for indentation; indent with spaces"
			return p
		}
	}
	if p.Line >= 1 && p.Line <= len(lines) {
		line := lines[p.Line-1]
		for _, c := range []byte("@`") {
			for _, sep := range []string{": ", "- ", "[", ", "} {
				if i := bytes.Index(line, append([]byte(sep), c)); i >= 0 {
					p.Col = i + len(sep) + 1
					p.Msg = fmt.Sprintf("a value cannot start with %q unless it is quoted: write it in quotes, as in schedule: \"@daily\"", c)
					return p
				}
			}
		}
	}
	return p
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

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// hashEntry is what hashOf fingerprints of one instance.
type hashEntry struct {
	*Instance
	Spec string `json:"schedule"`
}

// hashOf fingerprints what the instances do: schedules, locks, commands
// and options, not comments or layout. It is the SHA-256 of the JSON
// array of hashEntry, fed to the hash one entry at a time, so that ten
// thousand instances never make one large buffer (which encoding/json
// would also keep in its pool).
func hashOf(c *Config) string {
	h := sha256.New()
	h.Write([]byte{'['})
	for i, in := range c.Instances {
		if i > 0 {
			h.Write([]byte{','})
		}
		b, _ := json.Marshal(hashEntry{in, in.Schedule.Spec})
		h.Write(b)
	}
	h.Write([]byte{']'})
	return hex.EncodeToString(h.Sum(nil))
}

// Suggest names the instances an unknown instance name may have meant,
// or "" when it names no known job. The job is the name itself or, for
// job[param], the part before "[": its instances are listed (a job with
// params has one per item, job[item]), first the one that differs from
// name only in the order of a map param's keys or in spaces around them.
func (c *Config) Suggest(name string) string {
	job, inner, bracket := strings.Cut(name, "[")
	if bracket {
		inner = strings.TrimSuffix(inner, "]")
	}
	var names []string
	match, matchLabel := -1, ""
	for _, in := range c.Instances {
		if in.Job != job {
			continue
		}
		if label := paramLabel(in.Param); bracket && match < 0 && in.Param != nil && sameLabel(label, inner) {
			match, matchLabel = len(names), label
		}
		names = append(names, in.Name)
	}
	if len(names) == 0 {
		return ""
	}
	if len(names) == 1 && names[0] == job {
		return "; job " + strconv.Quote(job) + " has no params: its one instance is " + job
	}
	var out strings.Builder
	if match >= 0 {
		why := "spaces count in instance names"
		if strings.Join(labelParts(inner), ",") != strings.Join(labelParts(matchLabel), ",") {
			why = "a map param names its instance with its keys sorted"
		}
		fmt.Fprintf(&out, "; did you mean %q? (%s)", names[match], why)
		names = append(append([]string{names[match]}, names[:match]...), names[match+1:]...)
	}
	if len(names) > 5 {
		names = append(names[:5], fmt.Sprintf("and %d more", len(names)-5))
	}
	out.WriteString("; job " + strconv.Quote(job) + " has the instances " + strings.Join(names, ", "))
	return out.String()
}

// labelParts splits an instance's param label (or what a user typed for
// one) at its commas, trimming the spaces around each part.
func labelParts(label string) []string {
	parts := strings.Split(label, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// sameLabel tells whether two param labels differ only in the order of
// their parts (a map's keys) and the spaces around them.
func sameLabel(a, b string) bool {
	pa, pb := labelParts(a), labelParts(b)
	sort.Strings(pa)
	sort.Strings(pb)
	return strings.Join(pa, "\x00") == strings.Join(pb, "\x00")
}
