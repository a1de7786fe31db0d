package report

import (
	"fmt"
	"time"

	"github.com/jobd/jobd/internal/scheduler"
)

// The cells below are how the tables of status and history print a value;
// anything else that shows these values (the web dashboard) uses them too,
// so that both read the same.

// Human prints seconds the way people read durations: 850ms, 12s, 3m4s,
// 2h5m, 3d4h.
func Human(seconds float64) string { return human(seconds) }

// Ago is how long before now t was: "12s ago".
func Ago(now, t time.Time) string { return human(seconds(now.Sub(t))) + " ago" }

// In is how long after now t is: "in 3s".
func In(now, t time.Time) string { return "in " + human(seconds(t.Sub(now))) }

// ShortHash is a config hash as the tables print it: its first 12
// characters.
func ShortHash(hash string) string { return hash[:min(len(hash), 12)] }

// Clock is a replica's clock offset from Redis's, and whether it claims
// ticks: "ok +0.1s", or "OFF +42.0s: NOT CLAIMING".
func (r Replica) Clock() string {
	return fmt.Sprintf(ifElse(r.ClockOK, "ok %+.1fs", "OFF %+.1fs: NOT CLAIMING"), r.ClockOffset)
}

// Exit is how a run ended, as the EXIT column prints it: the signal that
// killed it, its exit code, or "-" (not ended, or never started).
func Exit(r scheduler.Record) string {
	switch {
	case r.Signal != "":
		return r.Signal
	case r.ExitCode != nil:
		return fmt.Sprint(*r.ExitCode)
	}
	return "-"
}

// RunDuration is how long a run took, or "-" while it has not ended.
func RunDuration(r scheduler.Record) string {
	if r.Start != nil && r.End != nil {
		return human(seconds(r.End.Sub(*r.Start)))
	}
	return "-"
}
