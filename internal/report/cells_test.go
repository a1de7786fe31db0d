package report

import (
	"testing"
	"time"

	"github.com/jobd/jobd/internal/scheduler"
)

// TestCells: the cells the tables and the dashboard share.
func TestCells(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	end, code := at.Add(100*time.Second), 3
	tests := []struct{ name, got, want string }{
		{"ago", Ago(at.Add(12*time.Second), at), "12s ago"},
		{"in", In(at, at.Add(3*time.Minute+4*time.Second)), "in 3m4s"},
		{"short hash", ShortHash("0123456789abcdef"), "0123456789ab"},
		{"short hash of a short one", ShortHash("abc"), "abc"},
		{"clock ok", Replica{ClockOK: true, ClockOffset: 0.12}.Clock(), "ok +0.1s"},
		{"clock off", Replica{ClockOffset: -42}.Clock(), "OFF -42.0s: NOT CLAIMING"},
		{"exit code", Exit(scheduler.Record{ExitCode: &code}), "3"},
		{"signal", Exit(scheduler.Record{ExitCode: &code, Signal: "SIGKILL"}), "SIGKILL"},
		{"no exit", Exit(scheduler.Record{}), "-"},
		{"duration", RunDuration(scheduler.Record{Start: &at, End: &end}), "1m40s"},
		{"running", RunDuration(scheduler.Record{Start: &at}), "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}
