package jobs

import (
	"testing"
	"time"
)

func TestParseSchedule(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	from := time.Date(2026, 3, 28, 23, 59, 30, 0, time.UTC)
	tests := []struct {
		spec string
		loc  *time.Location
		next []string // RFC 3339 UTC
		err  string
	}{
		{spec: "*/10 * * * * *", loc: time.UTC, next: []string{"2026-03-28T23:59:40Z", "2026-03-28T23:59:50Z"}},
		{spec: "0 3 * * *", loc: paris, next: []string{"2026-03-29T01:00:00Z", "2026-03-30T01:00:00Z"}},
		{spec: "@hourly", loc: time.UTC, next: []string{"2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z"}},
		{spec: "@daily", loc: paris, next: []string{"2026-03-29T22:00:00Z", "2026-03-30T22:00:00Z"}},
		{spec: "@every 1m", loc: time.UTC, next: []string{"2026-03-29T00:00:00Z", "2026-03-29T00:01:00Z"}},
		{spec: "@every 7s", loc: paris, next: []string{"2026-03-28T23:59:35Z", "2026-03-28T23:59:42Z"}},
		{spec: "* * * *", err: "expected 5 or 6 fields, found 4"},
		{spec: "1 2 3 4 5 6 7", err: "expected 5 or 6 fields, found 7"},
		{spec: "61 * * * *", err: "above maximum"},
		{spec: "@fortnightly", err: "@fortnightly"},
		{spec: "@every 1.5s", err: "whole number of seconds"},
		{spec: "@every 0s", err: "whole number of seconds"},
		{spec: "CRON_TZ=UTC * * * * *", err: "timezone field"},
		{spec: "", err: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			loc := tt.loc
			if loc == nil {
				loc = time.UTC
			}
			s, err := ParseSchedule(tt.spec, loc)
			if tt.err != "" {
				if err == nil || !contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			at := from
			for _, want := range tt.next {
				at = s.Next(at)
				if got := at.UTC().Format(time.RFC3339); got != want {
					t.Fatalf("next %s, want %s", got, want)
				}
			}
		})
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// TestEveryAlignedToEpoch: two replicas that built the same @every
// schedule at different times compute identical fire times.
func TestEveryAlignedToEpoch(t *testing.T) {
	for _, spec := range []string{"@every 7s", "@every 1m", "@every 6h", "@every 25h"} {
		t.Run(spec, func(t *testing.T) {
			a, _ := ParseSchedule(spec, time.UTC)
			time.Sleep(3 * time.Millisecond) // "started later"
			b, _ := ParseSchedule(spec, time.UTC)
			startA := time.Date(2026, 1, 1, 10, 0, 3, 0, time.UTC)
			startB := startA.Add(2*time.Hour + 1234*time.Millisecond)
			fa, fb := startA, startB
			for fa.Before(startB) {
				fa = a.Next(fa)
			}
			fb = b.Next(fb)
			for i := 0; i < 50; i++ {
				if !fa.Equal(fb) {
					t.Fatalf("fire %d differs: %v vs %v", i, fa, fb)
				}
				if fa.UnixNano()%int64(mustDur(spec)) != 0 {
					t.Fatalf("%v is not aligned to the epoch", fa)
				}
				fa, fb = a.Next(fa), b.Next(fb)
			}
		})
	}
}

func mustDur(spec string) time.Duration {
	d, err := time.ParseDuration(spec[len("@every "):])
	if err != nil {
		panic(err)
	}
	return d
}

func TestDSTNote(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	tests := []struct {
		spec, from string
		want       []string
	}{
		// 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist
		// and that day's fire does not happen.
		{"30 2 * * *", "2026-03-28T12:00:00Z", []string{"dst-gap: skipped 2026-03-29 02:30:00", "", ""}},
		// 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens
		// twice, and the job fires at both.
		{"30 2 * * *", "2026-10-24T12:00:00Z", []string{"dst-fold", "dst-fold", ""}},
		{"0 12 * * *", "2026-03-28T00:00:00Z", []string{"", "", ""}},
		{"@every 1h", "2026-03-29T00:30:00Z", []string{"", "", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.spec+"@"+tt.from, func(t *testing.T) {
			s, err := ParseSchedule(tt.spec, paris)
			if err != nil {
				t.Fatal(err)
			}
			at, _ := time.Parse(time.RFC3339, tt.from)
			for i, want := range tt.want {
				next := s.Next(at)
				if got := s.DSTNote(at, next); got != want {
					t.Errorf("fire %d at %v: note %q, want %q", i, next, got, want)
				}
				at = next
			}
		})
	}
}
