package scheduler

import (
	"testing"

	"github.com/jobd/jobd/internal/jobs"
)

// TestParseLabel: what label writes on a job's lock, ParseLabel reads back;
// a lock taken otherwise (jobd lock) names no instance.
func TestParseLabel(t *testing.T) {
	tests := []struct {
		label, instance, run string
	}{
		{label(&jobs.Instance{Name: "backup[db1]"}, "20260101T000000Z-ab"), "backup[db1]", "20260101T000000Z-ab"},
		{label(&jobs.Instance{Name: "greet[john doe]"}, "20260101T000000Z-cd"), "greet[john doe]", "20260101T000000Z-cd"},
		{label(&jobs.Instance{Name: "odd[a run=b]"}, "20260101T000000Z-ef"), "odd[a run=b]", "20260101T000000Z-ef"},
		{"jobd lock sh", "", ""},
		{"jobd lock sh instance=x run=y", "", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.label, func(t *testing.T) {
			if i, r := ParseLabel(tt.label); i != tt.instance || r != tt.run {
				t.Fatalf("ParseLabel(%q) = %q, %q", tt.label, i, r)
			}
		})
	}
}
