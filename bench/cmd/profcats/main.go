// Command profcats says where a jobd CPU profile's time goes (`make
// bench-profile`): it reads the profile's stacks (`go tool pprof -traces`)
// and puts each sample in the first category one of whose frames matches,
// so the categories add up to the whole. One key=value line per profile.
//
//	profcats BINARY PROFILE...
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// categories, in the order they are tried.
var categories = []struct {
	name string
	re   *regexp.Regexp
}{
	{"gc", regexp.MustCompile(`^runtime\.(gcBgMarkWorker|gcAssist|bgsweep|bgscavenge|gcStart|GC)\b`)},
	{"output", regexp.MustCompile(`^github\.com/jobd/jobd/internal/jobs\.(streamLines|\(\*execution\)\.pipeOutput\.func)`)},
	{"reap", regexp.MustCompile(`^(github\.com/jobd/jobd/internal/jobs\.StartProc\.func|os/exec\.\(\*Cmd\)\.Wait|os\.\(\*Process\)\.(wait|Wait))`)},
	{"spawn", regexp.MustCompile(`^(os/exec\.|os\.StartProcess|os\.Pipe|syscall\.forkExec|github\.com/jobd/jobd/internal/jobs\.(StartProc|\(\*execution\)\.pipeOutput|Launch\.Env))`)},
	{"redis", regexp.MustCompile(`^github\.com/redis/go-redis/`)},
	{"metrics", regexp.MustCompile(`^github\.com/prometheus/`)},
	{"log", regexp.MustCompile(`^log/slog\.`)},
	{"json", regexp.MustCompile(`^encoding/json\.`)},
	{"http", regexp.MustCompile(`^net/http\.`)},
	{"jobd", regexp.MustCompile(`^github\.com/jobd/jobd/`)},
	{"runtime", regexp.MustCompile(`^runtime\.`)},
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: profcats BINARY PROFILE...")
		os.Exit(2)
	}
	for _, prof := range os.Args[2:] {
		line, err := summarize(os.Args[1], prof)
		if err != nil {
			fmt.Fprintln(os.Stderr, "profcats:", err)
			os.Exit(1)
		}
		fmt.Println(line)
	}
}

// summarize is one profile's key=value line: its total CPU and each
// category's share.
func summarize(bin, prof string) (string, error) {
	out, err := exec.Command("go", "tool", "pprof", "-traces", bin, prof).Output()
	if err != nil {
		return "", fmt.Errorf("go tool pprof -traces %s: %w", prof, err)
	}
	ms := map[string]float64{}
	total := 0.0
	for _, trace := range strings.Split(string(out), "-----------+-------------------------------------------------------") {
		v, frames, ok := parseTrace(trace)
		if !ok {
			continue
		}
		total += v
		ms[category(frames)] += v
	}
	var b strings.Builder
	fmt.Fprintf(&b, "profile=%s cpu_ms=%.0f", filepath.Base(prof), total)
	for _, c := range append(categoryNames(), "other") {
		if ms[c] > 0 {
			fmt.Fprintf(&b, " %s_pct=%.0f", c, 100*ms[c]/total)
		}
	}
	return b.String(), nil
}

// parseTrace reads one stack of `pprof -traces`: the first line holds the
// value and the leaf frame, the next lines the callers.
func parseTrace(trace string) (ms float64, frames []string, ok bool) {
	sc := bufio.NewScanner(strings.NewReader(trace))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if frames == nil {
			if len(f) < 2 {
				return 0, nil, false
			}
			v, err := duration(f[0])
			if err != nil {
				return 0, nil, false
			}
			ms, f = v, f[1:]
		}
		frames = append(frames, f[0])
	}
	return ms, frames, frames != nil
}

// duration reads pprof's "10ms", "1.20s" or "500us" in milliseconds.
func duration(s string) (float64, error) {
	for _, u := range []struct {
		suffix string
		ms     float64
	}{{"ms", 1}, {"us", 0.001}, {"s", 1000}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f * u.ms, err
		}
	}
	return 0, fmt.Errorf("not a duration: %q", s)
}

// category is the first category one of frames matches, or "other".
func category(frames []string) string {
	for _, c := range categories {
		for _, f := range frames {
			if c.re.MatchString(f) {
				return c.name
			}
		}
	}
	return "other"
}

func categoryNames() []string {
	out := make([]string, len(categories))
	for i, c := range categories {
		out[i] = c.name
	}
	return out
}
