package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestValidateAndPlan(t *testing.T) {
	const example = "../../jobs.example.yaml"
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"valid", []string{"-c", example, "validate"}, 0, []string{"ok: 6 jobs, 8 instances, 7 locks"}, nil},
		{"invalid lists every problem", []string{"-c", "../../internal/jobs/testdata/invalid/many.yaml", "validate"}, 1, nil,
			[]string{"many.yaml:9:15: jobs[0].schedule: expected 5 or 6 fields, found 4", "many.yaml:6:3: defaults.timout", "22 problem(s)"}},
		{"missing file", []string{"-c", "/nonexistent.yaml", "validate"}, 1, nil, []string{"no such file"}},
		{"plan", []string{"-c", example, "plan", "--from", "2026-03-28T00:00:00Z", "-n", "2"}, 0,
			[]string{"INSTANCE", "emit-access-token[42]", "EmitAccessToken:42", "2026-03-28T00:00:10Z"}, nil},
		{"plan bad --from", []string{"-c", example, "plan", "--from", "yesterday"}, 2, nil, []string{"RFC 3339"}},
		{"plan bad --count", []string{"-c", example, "plan", "--count", "0"}, 2, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "redis://unused:1/0", tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tt.code, r.stdout, r.stderr)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
		})
	}
}

func TestPlanJSON(t *testing.T) {
	r := run(t, "redis://unused:1/0", "-c", "../../jobs.example.yaml", "plan", "--json", "-n", "4", "--from", "2026-10-24T00:00:00Z")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var out planJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Instances) != 8 {
		t.Fatalf("%d instances", len(out.Instances))
	}
	for _, in := range out.Instances {
		if len(in.Fires) != 4 || in.Lock == "" {
			t.Errorf("%s: %d fires, lock %q", in.Name, len(in.Fires), in.Lock)
		}
		// 03:00 Europe/Paris is 01:00 UTC in summer time, 02:00 after 25 October.
		if in.Name == "db-backup" {
			if got := in.Fires[0].UTC.Format(time.RFC3339) + " " + in.Fires[2].UTC.Format(time.RFC3339); got != "2026-10-24T01:00:00Z 2026-10-26T02:00:00Z" {
				t.Errorf("db-backup fires: %s", got)
			}
		}
	}
}
