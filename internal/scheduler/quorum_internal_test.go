package scheduler

import (
	"testing"
	"time"

	"github.com/jobd/jobd/internal/jobs"
)

// TestMergeRecords: two nodes' states of one run merge to the most
// advanced (a later status, else an end, else a later end), whatever the
// order the nodes answered in.
func TestMergeRecords(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0).UTC()
	t1 := t0.Add(time.Second)
	rec := func(st jobs.Status, end *time.Time) Record {
		return Record{RunID: "r", Status: st, End: end}
	}
	cases := []struct {
		name     string
		old, adv Record
	}{
		{"running after waiting", rec(jobs.StatusWaiting, nil), rec(jobs.StatusRunning, nil)},
		{"final after running", rec(jobs.StatusRunning, nil), rec(jobs.StatusSucceeded, &t0)},
		{"final after waiting", rec(jobs.StatusWaiting, nil), rec(jobs.StatusAbandoned, &t0)},
		{"final with an end after one without", rec(jobs.StatusLockLost, nil), rec(jobs.StatusFailed, &t0)},
		{"the later end", rec(jobs.StatusAbandoned, &t0), rec(jobs.StatusFailed, &t1)},
		{"anything after nothing", Record{RunID: "r"}, rec(jobs.StatusWaiting, nil)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, order := range [][]Record{{c.old, c.adv}, {c.adv, c.old}} {
				m := mergeRecords(order[:1], order[1:])
				if len(m) != 1 || m[0].Status != c.adv.Status || (m[0].End == nil) != (c.adv.End == nil) {
					t.Fatalf("merged %+v, want %+v", m, c.adv)
				}
			}
		})
	}
}

// TestNewerOrdersHistory: newest first by scheduled time, then run id.
func TestNewerOrdersHistory(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0).UTC()
	a := Record{RunID: "a", ScheduledAt: t0.Add(time.Minute)}
	b := Record{RunID: "b", ScheduledAt: t0}
	c := Record{RunID: "c", ScheduledAt: t0}
	for _, p := range []struct {
		x, y Record
		want bool
	}{{a, b, true}, {b, a, false}, {c, b, true}, {b, c, false}} {
		if got := newer(&p.x, &p.y); got != p.want {
			t.Errorf("newer(%s, %s) = %v, want %v", p.x.RunID, p.y.RunID, got, p.want)
		}
	}
}
