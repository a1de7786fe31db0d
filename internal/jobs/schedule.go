package jobs

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule yields a job's fire times. Every replica computes the same ones:
// cron expressions are evaluated in the job's timezone, and @every is
// aligned to the Unix epoch, not to when the schedule was built.
type Schedule struct {
	Spec     string
	Location *time.Location
	sched    cron.Schedule
}

// Next returns the first fire time strictly after t, or the zero time if
// the schedule never fires again.
func (s Schedule) Next(t time.Time) time.Time {
	return s.sched.Next(t.In(s.Location))
}

// Last returns the latest fire time in (at-lookback, at], or the zero
// time if there is none.
func (s Schedule) Last(at time.Time, lookback time.Duration) time.Time {
	var last time.Time
	for t := s.Next(at.Add(-lookback)); !t.IsZero() && !t.After(at); t = s.Next(t) {
		last = t
	}
	return last
}

var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour |
	cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule accepts 5 fields, 6 fields with leading seconds, the
// descriptors (@yearly, @monthly, @weekly, @daily, @hourly, …) and
// "@every DURATION" (whole seconds, at least 1s).
func ParseSchedule(spec string, loc *time.Location) (Schedule, error) {
	spec = strings.TrimSpace(spec)
	s := Schedule{Spec: spec, Location: loc}
	switch {
	case spec == "":
		return s, fmt.Errorf("empty schedule")
	case strings.HasPrefix(spec, "CRON_TZ=") || strings.HasPrefix(spec, "TZ="):
		return s, fmt.Errorf("set the timezone with the timezone field, not in the schedule")
	case strings.HasPrefix(spec, "@every"):
		arg := strings.TrimSpace(strings.TrimPrefix(spec, "@every"))
		d, err := time.ParseDuration(arg)
		if err != nil {
			return s, fmt.Errorf("@every: invalid duration %q", arg)
		}
		if d < time.Second || d%time.Second != 0 {
			return s, fmt.Errorf("@every: %v must be a whole number of seconds, at least 1s", d)
		}
		s.sched = every(d)
		return s, nil
	case !strings.HasPrefix(spec, "@"):
		if n := len(strings.Fields(spec)); n != 5 && n != 6 {
			return s, fmt.Errorf("expected 5 or 6 fields, found %d", n)
		}
	}
	parsed, err := cronParser.Parse(spec)
	if err != nil {
		return s, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "unrecognized descriptor: "))
	}
	ss, ok := parsed.(*cron.SpecSchedule)
	if !ok {
		return s, fmt.Errorf("unsupported schedule %q", spec)
	}
	ss.Location = loc
	s.sched = ss
	if s.Next(time.Now()).IsZero() {
		return s, fmt.Errorf("never fires (no matching date in the next five years)")
	}
	return s, nil
}

// every fires at every multiple of d since the Unix epoch.
type every time.Duration

// Next implements cron.Schedule: the first multiple of e strictly after t.
func (e every) Next(t time.Time) time.Time {
	d := int64(e)
	n := t.UnixNano()
	q := n / d
	if n < 0 && n%d != 0 {
		q-- // floor, for times before 1970
	}
	return time.Unix(0, (q+1)*d).In(t.Location())
}

// DSTNote flags a fire time t (the previous one was prev) at a
// daylight-saving change: "dst-fold" when t's wall-clock time happens
// twice that day (clocks went back; cron schedules fire at both), and
// "dst-gap: skipped …" when clocks went forward between prev and t and a
// time the schedule names did not exist, so that fire did not happen.
func (s Schedule) DSTNote(prev, t time.Time) string {
	if fold(t) {
		return "dst-fold"
	}
	spec, ok := s.sched.(*cron.SpecSchedule)
	if !ok || prev.IsZero() {
		return ""
	}
	_, offPrev := prev.In(s.Location).Zone()
	_, offT := t.In(s.Location).Zone()
	if offT <= offPrev {
		return ""
	}
	// Replay the schedule on a clock that did not jump: wall times it
	// names that do not exist in the real zone were skipped.
	fixed := *spec
	fixed.Location = time.FixedZone("", offPrev)
	var skipped []string
	for w := fixed.Next(prev); !w.IsZero() && w.Before(t.Add(time.Duration(offT-offPrev)*time.Second)); w = fixed.Next(w) {
		wall := w.In(fixed.Location)
		real := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), 0, s.Location)
		if real.Hour() != wall.Hour() || real.Minute() != wall.Minute() {
			skipped = append(skipped, wall.Format("2006-01-02 15:04:05"))
			if len(skipped) == 3 {
				skipped = append(skipped, "…")
				break
			}
		}
	}
	if len(skipped) == 0 {
		return ""
	}
	return "dst-gap: skipped " + strings.Join(skipped, ", ")
}

// fold reports whether t's wall-clock time also happens at another instant.
func fold(t time.Time) bool {
	_, before := t.Add(-3 * time.Hour).Zone()
	_, after := t.Add(3 * time.Hour).Zone()
	if after >= before {
		return false
	}
	delta := time.Duration(before-after) * time.Second
	wall := t.Format("2006-01-02 15:04:05")
	return t.Add(delta).Format("2006-01-02 15:04:05") == wall || t.Add(-delta).Format("2006-01-02 15:04:05") == wall
}
