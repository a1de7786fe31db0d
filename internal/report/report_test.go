package report

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/scheduler"
)

// TestHuman: the durations of the status and history tables, with the
// minutes-and-tens-of-seconds that used to lose their last digit.
func TestHuman(t *testing.T) {
	tests := []struct {
		seconds float64
		want    string
	}{
		{0.85, "850ms"}, {12.4, "12s"}, {59.6, "1m"}, {60, "1m"}, {100, "1m40s"}, {184, "3m4s"}, {190, "3m10s"},
		{750, "12m30s"}, {3599, "59m59s"}, {3600, "1h0m"}, {7500, "2h5m"}, {5400, "1h30m"}, {50 * 3600, "2d2h"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.seconds), func(t *testing.T) {
			if got := human(tt.seconds); got != tt.want {
				t.Errorf("human(%v) = %q, want %q", tt.seconds, got, tt.want)
			}
		})
	}
}

// TestWriteHistory: a run's reason and output follow its row, and do not
// stretch the columns.
func TestWriteHistory(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	code := 3
	recs := []scheduler.Record{
		{RunID: "r2", ScheduledAt: at, Replica: "a", Trigger: "schedule", Status: jobs.StatusFailed, ExitCode: &code,
			Reason: "exit 3", Output: strings.Repeat("x", 100) + "\nlast\n"},
		{RunID: "r1", ScheduledAt: at, Replica: "replica-b", Trigger: "manual", Status: jobs.StatusSucceeded},
	}
	var b strings.Builder
	if err := WriteHistory(&b, "web", recs, true); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	if len(lines) != 7 || lines[2] != "  reason: exit 3" || lines[4] != "  | last" || !strings.HasPrefix(lines[5], "2026-01-02T03:04:05Z  r1") {
		t.Fatalf("history:\n%s", b.String())
	}
	if strings.Index(lines[0], "REPLICA") != strings.Index(lines[5], "replica-b") {
		t.Errorf("columns not aligned:\n%s", b.String())
	}
	b.Reset()
	_ = WriteHistory(&b, "web", nil, false)
	if b.String() != "web has no runs yet\n" {
		t.Errorf("no runs: %q", b.String())
	}
}

// TestNewPlan: n fire times per instance, in its timezone and UTC; a
// schedule with no more fires lists none, as [] in JSON.
func TestNewPlan(t *testing.T) {
	cfg, err := jobs.Parse("jobs.yaml", []byte(`jobs:
  - {name: backup, schedule: "0 3 * * *", timezone: Europe/Paris, command: ["true"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	p := NewPlan(cfg, time.Date(2026, 10, 24, 0, 0, 0, 0, time.UTC), 3)
	if len(p.Instances) != 1 || len(p.Instances[0].Fires) != 3 {
		t.Fatalf("plan: %+v", p)
	}
	f := p.Instances[0].Fires
	if got := f[0].UTC.Format(time.RFC3339) + " " + f[2].UTC.Format(time.RFC3339); got != "2026-10-24T01:00:00Z 2026-10-26T02:00:00Z" {
		t.Errorf("fires: %s", got)
	}
}

// TestEmptyTables: an empty table says "(none)", and no line is only
// spaces.
func TestEmptyTables(t *testing.T) {
	var b strings.Builder
	st := &Status{Config: Config{File: "jobs.yaml"}}
	if err := st.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), "(none)"); n != 2 {
		t.Errorf("%d \"(none)\", want 2 (replicas, locks):\n%s", n, b.String())
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if line != "" && strings.TrimSpace(line) == "" {
			t.Errorf("a line of only spaces:\n%q", b.String())
		}
	}
}

// TestTablesDisplayWidth: the status, history and plan tables line up in
// a terminal when a field holds East Asian wide characters (two cells
// each), accented letters (one cell, precomposed or not) or only ASCII:
// every field of every row starts at its header's display column.
// Job names are ASCII only (the YAML refuses others), but params (so
// instance names), lock names, replica ids, hosts and labels are not.
func TestTablesDisplayWidth(t *testing.T) {
	if _, err := jobs.Parse("jobs.yaml", []byte("jobs:\n  - {name: 日本語ジョブ, schedule: \"@daily\", command: [\"true\"]}\n")); err == nil {
		t.Fatal("a job named 日本語ジョブ was accepted: test the name column too")
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct{ name, value string }{
		{"ascii", "plain-job"},
		{"japanese", "日本語ジョブ"},
		{"french", "données-été"},
		{"decomposed accents", "donne\u0301es-e\u0301te\u0301"},
		{"mixed", "tâche-日本"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.value
			cfg, err := jobs.Parse("jobs.yaml", []byte(fmt.Sprintf(`jobs:
  - name: per-user
    schedule: "@daily"
    params: [%q, "b"]
    lock: "lock:{{ .Param }}"
    command: ["true"]
`, v)))
			if err != nil {
				t.Fatalf("params and locks may hold %q: %v", v, err)
			}
			var plan strings.Builder
			if err := NewPlan(cfg, at, 2).WriteTable(&plan); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(plan.String(), "per-user["+v+"]") || !strings.Contains(plan.String(), "lock:"+v) {
				t.Fatalf("plan lacks the instance or the lock:\n%s", plan.String())
			}

			dur := 1.5
			st := &Status{GeneratedAt: at, ReplicasAlive: 2, Config: Config{File: "jobs.yaml"},
				Replicas: []Replica{
					{ID: v, Host: "host-" + v, PID: 7, Version: "v1", StartedAt: at, Uptime: 100, Running: []string{"per-user[" + v + "]"}, ConfigMatches: true, ClockOK: true},
					{ID: "r2", Host: "web2", PID: 12345, Version: "v1.0.0", StartedAt: at, Uptime: 7500, Running: nil, ConfigMatches: true, ClockOK: true},
				},
				Locks: []Lock{
					{Name: "lock:" + v, Holder: v, Instance: "per-user[" + v + "]", RunID: "20260102T030405Z-aa", Fence: 4, HeldFor: 2, TTL: 28},
					{Name: "db", Holder: "r2", Label: "jobd lock " + v, Fence: 12, HeldFor: 750, TTL: 3},
				},
				Jobs: []Job{
					{Instance: "per-user[" + v + "]", Job: "per-user", Schedule: "@daily", Timezone: "UTC", State: "active",
						LastRun: &LastRun{ScheduledAt: at, Replica: v, Status: jobs.StatusSucceeded, Duration: &dur}},
					{Instance: "per-user[b]", Job: "per-user", Schedule: "@daily", Timezone: "Asia/Tokyo", State: "suspended"},
				},
			}
			var status strings.Builder
			if err := st.WriteTable(&status); err != nil {
				t.Fatal(err)
			}

			code := 3
			var history strings.Builder
			if err := WriteHistory(&history, "per-user["+v+"]", []scheduler.Record{
				{RunID: "r2", ScheduledAt: at, Replica: v, Trigger: "schedule", Status: jobs.StatusFailed, ExitCode: &code, Reason: "exit 3 " + v},
				{RunID: "r1", ScheduledAt: at, Replica: "replica-b", Trigger: "manual", Status: jobs.StatusSucceeded},
			}, true); err != nil {
				t.Fatal(err)
			}
			for name, out := range map[string]string{"plan": plan.String(), "status": status.String(), "history": history.String()} {
				if n := checkAligned(t, out); n == 0 {
					t.Errorf("%s: no table found:\n%s", name, out)
				}
			}
		})
	}
}

// checkAligned checks every table of out (a header line in capitals, then
// rows, up to a line that is not a row) and returns how many rows it
// checked: each row's fields (separated by two spaces or more) start at
// the display columns of consecutive header fields, the second field
// (when the first is not empty) at the second header's.
func checkAligned(t *testing.T, out string) (rows int) {
	t.Helper()
	var header []int
	for _, line := range strings.Split(out, "\n") {
		starts := fieldStarts(line)
		switch {
		case len(starts) > 1 && line == strings.ToUpper(line) && !strings.ContainsAny(line, "0123456789"):
			header = starts
			continue
		case len(starts) < 2 && !strings.HasPrefix(line, " "), strings.HasPrefix(line, "  reason:"), strings.HasPrefix(line, "  |"):
			if !strings.HasPrefix(line, "  ") {
				header = nil
			}
			continue
		case header == nil:
			continue
		}
		rows++
		// Fields start where consecutive columns do: only leading cells
		// (plan's next fire times) and trailing ones (an empty NOTE) may
		// be empty.
		first := slices.Index(header, starts[0])
		if first < 0 || first+len(starts) > len(header) || !slices.Equal(starts, header[first:first+len(starts)]) {
			t.Errorf("fields at display columns %v, header columns at %v:\n%s\nin:\n%s", starts, header, line, out)
		}
		if starts[0] == 0 && starts[1] != header[1] {
			t.Errorf("second field at display column %d, want %d:\n%s\nin:\n%s", starts[1], header[1], line, out)
		}
	}
	return rows
}

// fieldStarts returns the display columns where the fields of line
// start; fields are separated by two spaces or more.
func fieldStarts(line string) []int {
	var starts []int
	col, spaces := 0, 2
	for _, r := range line {
		switch {
		case r == ' ':
			spaces++
		case spaces >= 2:
			starts = append(starts, col)
			spaces = 0
		default:
			spaces = 0
		}
		col += display.RuneWidth(r)
	}
	return starts
}

// TestReadmeStatusExample: the README's example of `jobd status` is laid
// out as WriteTable lays it out.
func TestReadmeStatusExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "```text\nREDIS standalone")
	if !ok {
		t.Fatal("README: no status example (```text, REDIS standalone …)")
	}
	example, _, _ := strings.Cut(rest, "```")
	if n := checkAligned(t, example); n < 5 {
		t.Errorf("only %d rows checked in the README's status example:\n%s", n, example)
	}
}

// TestDiffers: a replica's config DIFFERS from the majority's, or from
// the file status read; the reason says which.
func TestDiffers(t *testing.T) {
	yes, no := true, false
	st := &Status{Config: Config{File: "jobs.yaml", Hash: "aaa"}}
	tests := []struct {
		name string
		r    Replica
		want string
	}{
		{"same as all", Replica{ConfigMatches: true, ConfigMatchesFile: &yes}, ""},
		{"no file", Replica{ConfigMatches: true}, ""},
		{"not the majority's", Replica{ConfigMatches: false, ConfigMatchesFile: &yes}, "most live replicas"},
		{"the majority's, not the file's", Replica{ConfigMatches: true, ConfigMatchesFile: &no}, "than jobs.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := st.Differs(tt.r)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("Differs = %q, want %q", got, tt.want)
			}
		})
	}
	// 1 against 1: no config is "most" (the new-user review).
	tie := &Status{Replicas: []Replica{{ConfigHash: "aaa", ConfigMatches: true}, {ConfigHash: "bbb"}}}
	if got := tie.Differs(tie.Replicas[1]); !strings.Contains(got, "no config is run by more") {
		t.Errorf("Differs in a tie = %q", got)
	}
}

// TestTableControlCharacters: a newline, a tab or an escape sequence in a
// value (a lock label, a key, a param) is written as an escape: no fake
// row, no terminal control.
func TestTableControlCharacters(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"k2\nINJECTED-ROW", `k2\nINJECTED-ROW`},
		{"a\tb", `a\tb`},
		{"\x1b]0;PWNED\a\x1b[2Jfake", `\x1b]0;PWNED\a\x1b[2Jfake`},
		{"日本\u0085語", `日本\u0085語`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			var tab table
			tab.row("KEY", "X")
			tab.row(tt.in, "x")
			lines := tab.lines()
			if len(lines) != 2 || !strings.HasPrefix(lines[1], tt.want) {
				t.Errorf("lines %q, want the row to start with %q", lines, tt.want)
			}
		})
	}
}
