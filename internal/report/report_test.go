package report

import (
	"fmt"
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
