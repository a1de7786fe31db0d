package scheduler_test

import (
	"testing"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/scheduler"
)

// TestShellCode: a run's end as `jobd trigger --wait` exits with it.
func TestShellCode(t *testing.T) {
	code := func(n int) *int { return &n }
	tests := []struct {
		rec  scheduler.Record
		want int
	}{
		{scheduler.Record{Status: jobs.StatusSucceeded, ExitCode: code(0)}, 0},
		{scheduler.Record{Status: jobs.StatusFailed, ExitCode: code(3)}, 3},
		{scheduler.Record{Status: jobs.StatusFailed}, 1},
		{scheduler.Record{Status: jobs.StatusKilled, SignalNo: 9}, 137},
		{scheduler.Record{Status: jobs.StatusTimeout, SignalNo: 15}, 124},
		{scheduler.Record{Status: jobs.StatusLockLost}, 70},
		{scheduler.Record{Status: jobs.StatusAbandoned}, 70},
		{scheduler.Record{Status: jobs.StatusSkipped}, 75},
	}
	for _, tt := range tests {
		if got := tt.rec.ShellCode(); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.rec.Status, got, tt.want)
		}
	}
}
