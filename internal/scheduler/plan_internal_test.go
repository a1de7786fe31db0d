package scheduler

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/jobs"
)

type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() time.Time { return c.t }

// TestPlan: pending fire times survive a reload that keeps an instance's
// schedule and timezone, start again from now when either changes, are
// dropped with their instance (removed, disabled, suspended), and a tick
// with an unchanged config allocates nothing.
func TestPlan(t *testing.T) {
	parse := func(yaml string) *jobs.Config {
		t.Helper()
		cfg, err := jobs.Parse("plan.yaml", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	clock := &fixedClock{time.Date(2026, 1, 1, 0, 0, 7, 0, time.UTC)}
	tk := &ticker{core: &core{clock: clock}}
	next := map[string]pending{}
	a := parse("jobs:\n" +
		"  - {name: a, schedule: \"*/10 * * * * *\", command: [\"true\"], params: [\"1\", \"2\"]}\n" +
		"  - {name: b, schedule: \"@every 1m\", command: [\"true\"]}\n")
	if got, want := tk.plan(a, next), clock.t.Truncate(10*time.Second).Add(10*time.Second); !got.Equal(want) || len(next) != 3 {
		t.Fatalf("earliest %v with %d pending, want %v with 3", got, len(next), want)
	}
	kept := next["a[1]"].at
	if allocs := testing.AllocsPerRun(100, func() { tk.plan(a, next) }); allocs != 0 {
		t.Errorf("plan of an unchanged config: %v allocations", allocs)
	}

	clock.t = clock.t.Add(30 * time.Second) // later; a reload
	b := parse("jobs:\n" +
		"  - {name: a, schedule: \"*/10 * * * * *\", command: [\"true\"], params: [\"1\"]}\n" +
		"  - {name: a2, schedule: \"*/10 * * * * *\", command: [\"true\"], params: [\"2\"], suspend: true}\n" +
		"  - {name: b, schedule: \"@every 1m\", timezone: Europe/Paris, command: [\"true\"]}\n")
	tk.plan(b, next)
	if len(next) != 2 {
		t.Fatalf("pending after the reload: %v, want a[1] and b", next)
	}
	if !next["a[1]"].at.Equal(kept) {
		t.Errorf("a[1] (same schedule) moved from %v to %v", kept, next["a[1]"].at)
	}
	if b := next["b"]; b.tz != "Europe/Paris" || b.at.Before(clock.t) {
		t.Errorf("b (new timezone) kept %+v", b)
	}
	if _, ok := next["a[2]"]; ok {
		t.Errorf("a[2], gone from the config, is still pending")
	}
	tk.plan(parse("jobs:\n  - {name: b, schedule: \"@every 1m\", timezone: Europe/Paris, command: [\"true\"], enabled: false}\n"), next)
	if len(next) != 0 {
		t.Errorf("pending with every instance disabled: %v", next)
	}
}

// BenchmarkPlan is the ticker's plan of 10,000 instances with nothing
// changed, which runs before every tick.
func BenchmarkPlan(b *testing.B) {
	var y strings.Builder
	y.WriteString("jobs:\n")
	params := make([]string, 100)
	for i := range params {
		params[i] = strconv.Itoa(i)
	}
	for j := range 100 {
		fmt.Fprintf(&y, "  - {name: j%03d, schedule: \"@yearly\", command: [\"true\"], params: [%s]}\n", j, strings.Join(params, ", "))
	}
	cfg, err := jobs.Parse("plan.yaml", []byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	tk := &ticker{core: &core{clock: systemClock{}}}
	next := map[string]pending{}
	tk.plan(cfg, next)
	b.ReportAllocs()
	for b.Loop() {
		tk.plan(cfg, next)
	}
}
