package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/redistest"
)

// TestReadmeCommandsAndFlags: every `jobd COMMAND ...` the README shows in
// backticks or code blocks names a real command, and every --flag on that
// line is a global flag or one of that command's.
func TestReadmeCommandsAndFlags(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	app := newApp(io.Discard, io.Discard)
	names := func(fs []cli.Flag) (out []string) {
		for _, f := range fs {
			out = append(out, f.Names()...)
		}
		return append(out, "help")
	}
	global := names(app.Flags)
	invocation := regexp.MustCompile("(?m)(?:^|`)jobd ((?:-[^ `]+ (?:[^- `][^ `]*)? ?)*)([a-z]+)((?: [^`\n]*)?)")
	checked := 0
	for _, m := range invocation.FindAllStringSubmatch(string(readme), -1) {
		cmd := app.Command(m[2])
		if cmd == nil {
			continue // prose: "jobd runs cron jobs", "jobd keeps every claim"
		}
		checked++
		allowed := append(names(cmd.Flags), global...)
		args := m[1] + " " + m[3]
		if i := strings.Index(args, " -- "); i >= 0 {
			args = args[:i] // a locked command's own flags
		}
		for _, flag := range regexp.MustCompile(`(?:^|[ \[])--?([a-z][a-z-]*)`).FindAllStringSubmatch(args, -1) {
			if !slices.Contains(allowed, flag[1]) {
				t.Errorf("README: `jobd %s%s%s`: %s has no flag --%s", m[1], m[2], m[3], m[2], flag[1])
			}
		}
	}
	if checked < 15 {
		t.Fatalf("only %d invocations found in the README: the pattern no longer matches", checked)
	}
}

// mdBlock is one fenced block of a Markdown file, or (lang "heading") one
// `jobd …` synopsis in a heading.
type mdBlock struct {
	file string
	line int
	lang string
	body string
}

func (b mdBlock) String() string { return fmt.Sprintf("%s:%d", filepath.Base(b.file), b.line) }

// mdBlocks returns the fenced blocks and heading synopses of files.
func mdBlocks(t *testing.T, files ...string) []mdBlock {
	t.Helper()
	var out []mdBlock
	synopsis := regexp.MustCompile("`(jobd [^`]*)`")
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cur *mdBlock
		for i, line := range strings.Split(string(text), "\n") {
			switch {
			case cur == nil && strings.HasPrefix(line, "```"):
				cur = &mdBlock{file: f, line: i + 1, lang: strings.TrimPrefix(line, "```")}
			case cur != nil && line == "```":
				out = append(out, *cur)
				cur = nil
			case cur != nil:
				cur.body += line + "\n"
			case strings.HasPrefix(line, "#"):
				for _, m := range synopsis.FindAllStringSubmatch(line, -1) {
					out = append(out, mdBlock{file: f, line: i + 1, lang: "heading", body: m[1]})
				}
			}
		}
		if cur != nil {
			t.Fatalf("%s: a fence opened at line %d is never closed", f, cur.line)
		}
	}
	return out
}

// readmeEnv is where the README's examples run: a directory holding
// jobs.yaml (jobs.example.yaml) and broken.yaml, a private redis-server
// named by JOBD_REDIS_URL, and, once the `jobd run` example started it,
// a replica serving /metrics.
type readmeEnv struct {
	dir, http string
	env       []string
	blocks    []mdBlock
	rdb       *redis.Client
	root      *testing.T // the daemon outlives the subtest that starts it
	daemon    *exec.Cmd
}

// subst turns a synopsis into a command that runs here: the
// placeholders get values, the paths and the address local ones.
func (x *readmeEnv) subst(s string) string {
	s = strings.NewReplacer("/etc/jobd/jobs.yaml", "jobs.yaml", "127.0.0.1:9187", x.http, "[ARGS...]", "", "ARGS...", "").Replace(s)
	return regexp.MustCompile(`\b(ID|TEXT|KEY|COMMAND|INSTANCE)\b`).ReplaceAllStringFunc(s, func(p string) string {
		return map[string]string{"ID": "readme-r1", "TEXT": "readme", "KEY": "readme-lock", "COMMAND": "true", "INSTANCE": "heartbeat"}[p]
	})
}

var optional = regexp.MustCompile(`\[[^\]]*\]`)

// variants expands a synopsis into the commands it stands for: with no
// [optional] part, with each alone, and with all of them.
func (x *readmeEnv) variants(syn string) []string {
	n := len(optional.FindAllString(x.subst(syn), -1))
	var out []string
	for k := -1; k <= n; k++ { // -1: none; 0..n-1: that one; n: all
		i := 0
		v := optional.ReplaceAllStringFunc(x.subst(syn), func(m string) string {
			defer func() { i++ }()
			if k == n || k == i {
				return strings.Trim(m, "[]")
			}
			return ""
		})
		if v = strings.Join(strings.Fields(v), " "); !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// start starts command under sh in the directory, stdout and stderr
// together; exec, so that signals reach jobd. It is killed when t ends.
func (x *readmeEnv) start(t *testing.T, command string) *exec.Cmd {
	t.Helper()
	return x.startUntil(t, t, command)
}

// startUntil is start, killed when until ends.
func (x *readmeEnv) startUntil(t, until *testing.T, command string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "exec "+command)
	cmd.Dir, cmd.Env = x.dir, x.env
	out := &redistest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	until.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
		}
	})
	return cmd
}

// sh runs command; result.stdout has stdout and stderr as a terminal
// shows them.
func (x *readmeEnv) sh(t *testing.T, command string) result {
	t.Helper()
	return wait(t, x.start(t, command))
}

// runVariants runs every variant of a synopsis, which must exit 0; one
// with --watch runs 2.5s, until SIGINT.
func (x *readmeEnv) runVariants(t *testing.T, syn string) {
	t.Helper()
	for _, v := range x.variants(syn) {
		if !strings.Contains(v, "--watch") {
			if r := x.sh(t, v); r.code != 0 {
				t.Errorf("%s: exit %d, want 0:\n%s", v, r.code, r.stdout)
			}
			continue
		}
		cmd := x.start(t, v)
		time.Sleep(2500 * time.Millisecond)
		_ = cmd.Process.Signal(os.Interrupt)
		r := wait(t, cmd)
		if r.code != 0 {
			t.Errorf("%s: exit %d after SIGINT, want 0:\n%s", v, r.code, r.stdout)
		}
		if strings.Contains(v, "--json") {
			dec, docs := json.NewDecoder(strings.NewReader(r.stdout)), 0
			for ; dec.More(); docs++ {
				var st statusJSON
				if err := dec.Decode(&st); err != nil {
					t.Fatalf("%s: document %d: %v\n%s", v, docs, err, r.stdout)
				}
			}
			if docs == 0 || strings.Contains(r.stdout, "\033[") {
				t.Errorf("%s: %d JSON documents, screen codes %v:\n%q", v, docs, strings.Contains(r.stdout, "\033["), r.stdout)
			}
		}
	}
}

// transcript is a console block's commands, each with the lines shown
// after it.
type transcriptStep struct {
	cmd  string
	want []string
}

func transcript(body string) []transcriptStep {
	var steps []transcriptStep
	for _, line := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		if cmd, ok := strings.CutPrefix(line, "$ "); ok {
			steps = append(steps, transcriptStep{cmd: cmd})
		} else if len(steps) > 0 {
			steps[len(steps)-1].want = append(steps[len(steps)-1].want, line)
		}
	}
	return steps
}

// consoleOpts: exit codes of commands (by prefix; default 0, or what a
// following `echo $?` shows), patterns for lines that change from run to
// run (by the shown line's prefix), and commands that run in the
// background (by prefix) with what to wait for before going on.
type consoleOpts struct {
	codes      map[string]int
	patterns   map[string]string
	background map[string]func() bool
}

// runConsole runs a console block: each `$ command` must exit as shown
// and print the lines shown after it (all of them, in order).
func (x *readmeEnv) runConsole(t *testing.T, body string, o consoleOpts) {
	t.Helper()
	byPrefix := func(s string) (string, bool) {
		for p := range o.codes {
			if strings.HasPrefix(s, p) {
				return p, true
			}
		}
		return "", false
	}
	steps := transcript(body)
	last := -1
	for i, s := range steps {
		if s.cmd == "echo $?" {
			if got := strconv.Itoa(last); len(s.want) != 1 || s.want[0] != got {
				t.Errorf("echo $? shows %q, but the command before exited %s", s.want, got)
			}
			continue
		}
		for p, ready := range o.background {
			if strings.HasPrefix(s.cmd, p) {
				cmd := x.start(t, x.subst(s.cmd))
				poll(t, 10*time.Second, "the background command of `"+s.cmd+"`", ready)
				t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); wait(t, cmd) })
				s.cmd = ""
			}
		}
		if s.cmd == "" {
			continue
		}
		want := 0
		if p, ok := byPrefix(s.cmd); ok {
			want = o.codes[p]
		} else if i+1 < len(steps) && steps[i+1].cmd == "echo $?" && len(steps[i+1].want) == 1 {
			want, _ = strconv.Atoi(steps[i+1].want[0])
		}
		for _, v := range x.variants(s.cmd) {
			r := x.sh(t, v)
			last = r.code
			if r.code != want {
				t.Errorf("$ %s: exit %d, want %d:\n%s", v, r.code, want, r.stdout)
			}
			if len(s.want) == 0 {
				continue // its output is not shown
			}
			got := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
			if len(got) != len(s.want) {
				t.Errorf("$ %s prints %d lines, the README shows %d:\n%s", v, len(got), len(s.want), r.stdout)
				continue
			}
			for j, w := range s.want {
				match := got[j] == w
				for p, re := range o.patterns {
					if strings.HasPrefix(w, p) {
						match = regexp.MustCompile("^" + re + "$").MatchString(got[j])
					}
				}
				if !match {
					t.Errorf("$ %s: line %d\ngot  %q\nwant %q", v, j+1, got[j], w)
				}
			}
		}
	}
}

// validateYAML writes a schedule file (a fragment is completed with an
// empty jobs list) and runs `jobd validate` on it: exit 0.
func (x *readmeEnv) validateYAML(t *testing.T, name, body string) {
	t.Helper()
	if !regexp.MustCompile(`(?m)^jobs:`).MatchString(body) {
		body += "jobs: []\n"
	}
	writeFile(t, filepath.Join(x.dir, name), body)
	if r := x.sh(t, "jobd -c "+name+" validate"); r.code != 0 || !strings.HasPrefix(r.stdout, "ok: ") {
		t.Errorf("jobd validate: exit %d:\n%s\n%s", r.code, r.stdout, body)
	}
}

// block returns the body of the one block starting with prefix.
func (x *readmeEnv) block(t *testing.T, prefix string) string {
	t.Helper()
	for _, b := range x.blocks {
		if strings.HasPrefix(b.body, prefix) {
			return b.body
		}
	}
	t.Fatalf("no block starts with %q", prefix)
	return ""
}

// headerCells are the column names of a table header line.
func headerCells(line string) []string {
	return regexp.MustCompile(`  +`).Split(strings.TrimSpace(line), -1)
}

// readmeExamples says, for every fenced block of the README and the docs
// and every `jobd …` synopsis in a heading, what TestReadmeExamples does
// with it, in this order: run it (against the private Redis and the
// replica the `jobd run` example starts), or why not, in skip.
var readmeExamples = []struct {
	prefix string // the block starts with it
	skip   string // why it does not run here
	run    func(t *testing.T, x *readmeEnv, body string)
}{
	{prefix: "jobd -c /etc/jobd/jobs.yaml run [", run: func(t *testing.T, x *readmeEnv, body string) {
		v := x.variants(strings.TrimSpace(body))
		x.daemon = x.startUntil(t, x.root, v[len(v)-1]) // every flag; stopped at the end of the test
		poll(t, 15*time.Second, "/readyz of "+v[len(v)-1], func() bool { return readyz(x.http) == 200 })
	}},
	{prefix: "jobd run", skip: "a heading: the README's ```sh synopsis of `jobd run` runs it"},
	{prefix: "redis: {url:", run: func(t *testing.T, x *readmeEnv, body string) { x.validateYAML(t, "readme-config.yaml", body) }},
	{prefix: "redis:\n  sentinel:", run: func(t *testing.T, x *readmeEnv, body string) { x.validateYAML(t, "readme-sentinel.yaml", body) }},
	{prefix: "redis://10.0.0.1:26379/0?", run: func(t *testing.T, x *readmeEnv, body string) {
		// The URL is the YAML Sentinel setup above, as go-redis reads it.
		opt, err := redis.ParseFailoverURL(strings.TrimSpace(body))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := jobs.Parse("sentinel.yaml", []byte(x.block(t, "redis:\n  sentinel:")+"jobs: []\n"))
		if err != nil {
			t.Fatal(err)
		}
		s := cfg.Redis.Sentinel
		if opt.MasterName != s.Master || !slices.Equal(opt.SentinelAddrs, s.Addrs) || opt.Username != cfg.Redis.Username ||
			opt.DB != cfg.Redis.DB || opt.Password != "PASSWORD" {
			t.Errorf("the URL reads as %+v; the YAML says %+v", opt, cfg.Redis)
		}
	}},
	{prefix: "redis:\n  cluster:", run: func(t *testing.T, x *readmeEnv, body string) {
		// The files it names need not exist for validate.
		x.validateYAML(t, "readme-cluster.yaml", body)
	}},
	{prefix: "redis:\n  quorum:", run: func(t *testing.T, x *readmeEnv, body string) {
		// The files it names need not exist for validate.
		x.validateYAML(t, "readme-quorum.yaml", body)
	}},
	{prefix: "redis+cluster://", run: func(t *testing.T, x *readmeEnv, body string) {
		// The URL is the YAML cluster setup above, as go-redis reads it
		// once jobd has turned the scheme into redis://.
		opt, err := redis.ParseClusterURL("redis://" + strings.TrimPrefix(strings.TrimSpace(body), "redis+cluster://"))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := jobs.Parse("cluster.yaml", []byte(x.block(t, "redis:\n  cluster:")+"jobs: []\n"))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(opt.Addrs, cfg.Redis.Cluster.Addrs) || opt.Username != cfg.Redis.Username || opt.Password != "PASSWORD" {
			t.Errorf("the URL reads as %+v; the YAML says %+v", opt, cfg.Redis)
		}
	}},
	{prefix: "jobd -c /etc/jobd/jobs.yaml dashboard [", run: func(t *testing.T, x *readmeEnv, body string) {
		// The variant with --http, on a free port (without it the
		// dashboard takes 127.0.0.1:9188, which may be taken here).
		v := x.variants(strings.TrimSpace(body))
		addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		cmd := x.start(t, strings.ReplaceAll(v[len(v)-1], "127.0.0.1:9188", addr))
		poll(t, 15*time.Second, "the dashboard at "+addr, func() bool {
			resp, err := http.Get("http://" + addr + "/")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if r := wait(t, cmd); r.code != 0 {
			t.Errorf("dashboard exit %d after SIGTERM: %s", r.code, r.stdout)
		}
	}},
	{prefix: "scrape_configs:", run: func(t *testing.T, x *readmeEnv, body string) {
		// Prometheus's own file: it must parse, and keep jobd's job label.
		var sc struct {
			ScrapeConfigs []struct {
				JobName     string `yaml:"job_name"`
				HonorLabels bool   `yaml:"honor_labels"`
			} `yaml:"scrape_configs"`
		}
		if err := yaml.Unmarshal([]byte(body), &sc); err != nil || len(sc.ScrapeConfigs) != 1 || !sc.ScrapeConfigs[0].HonorLabels {
			t.Errorf("scrape config %+v, %v: want one job with honor_labels: true", sc, err)
		}
	}},
	{prefix: "$ jobd -c jobs.yaml validate", run: func(t *testing.T, x *readmeEnv, body string) {
		x.runConsole(t, body, consoleOpts{codes: map[string]int{"jobd -c broken.yaml": 1}})
	}},
	{prefix: "jobd validate", run: func(t *testing.T, x *readmeEnv, body string) { x.runVariants(t, body) }},
	{prefix: "jobd plan", run: func(t *testing.T, x *readmeEnv, body string) { x.runVariants(t, body) }},
	{prefix: "$ jobd status --nope", run: func(t *testing.T, x *readmeEnv, body string) { x.runConsole(t, body, consoleOpts{}) }},
	{prefix: "jobd status [", run: func(t *testing.T, x *readmeEnv, body string) {
		x.runVariants(t, body)
		r := x.sh(t, "jobd status --json")
		var st statusJSON
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.ReplicasAlive != 1 || st.Replicas[0].ID != "readme-r1" {
			t.Errorf("status --json: %v, %+v", err, st)
		}
	}},
	{prefix: "REDIS standalone, master", run: func(t *testing.T, x *readmeEnv, body string) {
		// The example's lines that are not rows (titles, headers) are
		// what jobd status prints, in the same order.
		r := x.sh(t, "jobd status")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "REDIS standalone, master 127.0.0.1:") {
			t.Fatalf("exit %d:\n%s", r.code, r.stdout)
		}
		shape := func(out string) (s []string) {
			for _, line := range strings.Split(out, "\n") {
				if line != "" && line == strings.ToUpper(line) && !strings.ContainsAny(line, "0123456789") {
					s = append(s, strings.Join(headerCells(line), "|"))
				}
			}
			return s
		}
		if got, want := shape(r.stdout), shape(body); !slices.Equal(got, want) {
			t.Errorf("jobd status prints these titles and headers:\n%s\nthe README shows:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}},
	{prefix: "jobd trigger INSTANCE", run: func(t *testing.T, x *readmeEnv, body string) { x.runVariants(t, body) }},
	{prefix: "jobd history INSTANCE", run: func(t *testing.T, x *readmeEnv, body string) {
		x.runVariants(t, body)
		if r := x.sh(t, "jobd history heartbeat --output"); !strings.Contains(r.stdout, "| alive at ") {
			t.Errorf("history shows no run of the triggers above:\n%s", r.stdout)
		}
	}},
	{prefix: "jobd lock [--ttl", run: func(t *testing.T, x *readmeEnv, body string) { x.runVariants(t, strings.TrimSpace(body)) }},
	{prefix: "jobd lock KEY -- COMMAND", run: func(t *testing.T, x *readmeEnv, body string) { x.runVariants(t, body) }},
	{prefix: "$ jobd lock db-maintenance -- pg_dump", run: func(t *testing.T, x *readmeEnv, body string) {
		// pg_dump is a stand-in that sleeps, on PATH: the lock is held
		// by a `jobd lock pg_dump` while the second command tries it.
		writeFile(t, filepath.Join(x.dir, "bin", "pg_dump"), "#!/bin/sh\nexec sleep 60\n")
		if err := os.Chmod(filepath.Join(x.dir, "bin", "pg_dump"), 0o755); err != nil {
			t.Fatal(err)
		}
		x.runConsole(t, body, consoleOpts{
			background: map[string]func() bool{"jobd lock db-maintenance -- pg_dump": func() bool {
				return x.rdb.Exists(context.Background(), "readme:lock:{db-maintenance}").Val() == 1
			}},
			patterns: map[string]string{`jobd: lock "db-maintenance" not obtained: held by `: `jobd: lock "db-maintenance" not obtained: ` +
				`held by \S+-\d+ \(host \S+, pid \d+, "jobd lock pg_dump"\) for [0-9.]+m?s, fence \d+, expires in [0-9.]+m?s`},
		})
	}},
	{prefix: "groups:\n  - name: jobd", run: func(t *testing.T, x *readmeEnv, body string) {
		// Prometheus alert rules: every jobd metric they use is on the
		// replica's /metrics.
		var rules struct {
			Groups []struct {
				Rules []struct{ Alert, Expr string }
			}
		}
		if err := yaml.Unmarshal([]byte(body), &rules); err != nil {
			t.Fatal(err)
		}
		metrics := get(t, "http://"+x.http+"/metrics", 200)
		n := 0
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				for _, m := range regexp.MustCompile(`jobd_[a-z_]+`).FindAllString(r.Expr, -1) {
					n++
					if !regexp.MustCompile(`(?m)^` + m + `[ {]`).MatchString(metrics) {
						t.Errorf("alert %s uses %s, which /metrics does not have", r.Alert, m)
					}
				}
			}
		}
		if n < 5 {
			t.Errorf("only %d metrics found in the alert rules", n)
		}
	}},
	{prefix: "ACL SETUSER jobd ", skip: "TestDocumentedACL creates this very user (read from the README) and runs every command as it"},
	{prefix: "make run", skip: "make run builds and runs a replica until Ctrl-C, and make test runs this test; TestOperatorCommands runs replicas"},
	{prefix: "make demo", skip: "an interactive demo of three replicas until Ctrl-C; TestKill9 and TestOperatorCommands test what it shows"},
	{prefix: "make build && sudo install", skip: "needs root and systemd, and writes /etc and /usr; TestSystemdUnits verifies the units. Its last line's `jobd validate` runs on systemd/jobs.yaml, the file the recipe installs",
		run: func(t *testing.T, x *readmeEnv, body string) {
			line := regexp.MustCompile(`jobd -c /etc/jobd/jobs.yaml validate`).FindString(body)
			abs, _ := filepath.Abs("../../systemd/jobs.yaml")
			if r := x.sh(t, strings.Replace(line, "/etc/jobd/jobs.yaml", abs, 1)); line == "" || r.code != 0 {
				t.Errorf("%q: exit %d:\n%s", line, r.code, r.stdout)
			}
		}},
	{prefix: "cmd/jobd ─", skip: "a diagram of the packages, not an example"},
}

// TestReadmeExamples runs the examples of the README (and the docs) that
// can run on this machine, against a private redis-server: the `jobd run`
// synopsis starts the replica the others use; console blocks must print
// what they show and exit as they show; synopses run with no, each and
// all of their [optional] parts; the YAML files validate. What cannot run
// here is listed in readmeExamples with the reason. A block no entry
// covers fails the test.
func TestReadmeExamples(t *testing.T) {
	docs, _ := filepath.Glob("../../docs/*.md")
	blocks := mdBlocks(t, append([]string{"../../README.md"}, docs...)...)
	matched := make([][]mdBlock, len(readmeExamples))
	for _, b := range blocks {
		var hits []int
		for i, e := range readmeExamples {
			if strings.HasPrefix(b.body, e.prefix) {
				hits = append(hits, i)
			}
		}
		if len(hits) != 1 {
			t.Errorf("%s: %d entries of readmeExamples cover this %s block, want 1: say what to do with it:\n%s", b, len(hits), b.lang, b.body)
			continue
		}
		matched[hits[0]] = append(matched[hits[0]], b)
	}
	for i, e := range readmeExamples {
		if len(matched[i]) == 0 {
			t.Errorf("no block starts with %q any more: remove its entry", e.prefix)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	srv := redistest.Start(t)
	dir := t.TempDir()
	example, err := os.ReadFile("../../jobs.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "jobs.yaml"), string(example))
	broken, err := os.ReadFile("testdata/broken.yaml")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "broken.yaml"), string(broken))
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	x := &readmeEnv{dir: dir, http: freeAddr(t), blocks: blocks, root: t}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "JOBD_") && !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "GORACE=") {
			x.env = append(x.env, kv)
		}
	}
	x.env = append(x.env, "JOBD_REDIS_URL="+srv.URL(), "JOBD_PREFIX=readme", "JOBD_CONFIG=jobs.yaml", quickExit,
		"PATH="+filepath.Dir(jobdBin)+":"+filepath.Join(dir, "bin")+":"+os.Getenv("PATH"))
	_, x.rdb = newMutexClient(t, srv.URL())

	for i, e := range readmeExamples {
		for _, b := range matched[i] {
			t.Run(b.String(), func(t *testing.T) {
				if e.run != nil {
					e.run(t, x, b.body)
				}
				if e.skip != "" {
					// Not run here, and not a skipped test: the reason
					// names what covers the block, or why it is not an
					// example.
					t.Log("not run here: " + e.skip)
				}
			})
		}
	}
	if x.daemon == nil {
		t.Fatal("the `jobd run` example did not start")
	}
	_ = x.daemon.Process.Signal(syscall.SIGTERM)
	if r := wait(t, x.daemon); r.code != 0 {
		t.Errorf("the `jobd run` example exited %d on SIGTERM:\n%s", r.code, r.stdout)
	}
}

// TestReadmeStatusJSON: the fields the README lists for `jobd status
// --json` are the fields it prints, no more and no fewer.
func TestReadmeStatusJSON(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, para, _ := strings.Cut(string(readme), "`--json` prints one object:")
	para, _, ok := strings.Cut(para, "Fields are only ever added.")
	if !ok {
		t.Fatal("README: no list of the fields of status --json")
	}
	var documented []string
	for _, m := range regexp.MustCompile("`([a-z_]+)(?:\\[\\])?`").FindAllStringSubmatch(para, -1) {
		documented = append(documented, m[1])
	}
	var printed []string
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || typ == reflect.TypeOf(time.Time{}) {
			return
		}
		for i := range typ.NumField() {
			if name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
				printed = append(printed, name)
			}
			walk(typ.Field(i).Type)
		}
	}
	walk(reflect.TypeOf(statusJSON{}))
	slices.Sort(documented)
	slices.Sort(printed)
	if documented, printed = slices.Compact(documented), slices.Compact(printed); !slices.Equal(documented, printed) {
		t.Errorf("the README lists\n%v\nstatus --json prints\n%v", documented, printed)
	}
}
