package scheduler_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/scheduler"
)

// TestLastSuccesses: the pipelined read of many instances' last successes
// (the metrics' refresher) finds what LastSuccess finds for each, past
// the size of one pipeline and across the slots of a Redis Cluster.
func TestLastSuccesses(t *testing.T) {
	for _, top := range topologies {
		t.Run(top.name, func(t *testing.T) {
			ctx := context.Background()
			store := newStore(t, top.url(t))
			const n = 2500
			refs := make([]scheduler.Ref, n)
			for i := range refs {
				refs[i] = scheduler.Named(fmt.Sprintf("i%04d", i))
				if i%3 != 0 {
					continue
				}
				end := time.Unix(int64(1_800_000_000+i), 0).UTC()
				rec := &scheduler.Record{RunID: fmt.Sprintf("run-%d", i), Instance: refs[i].Instance, Lock: refs[i].Lock,
					Status: jobs.StatusSucceeded, End: &end}
				if err := store.Update(ctx, rec, 10, "test", scheduler.Guard{}); err != nil {
					t.Fatal(err)
				}
			}
			recs, err := store.LastSuccesses(ctx, refs)
			if err != nil || len(recs) != n {
				t.Fatalf("%d records, err %v", len(recs), err)
			}
			for i, r := range refs {
				one, ok, err := store.LastSuccess(ctx, r)
				if err != nil {
					t.Fatal(err)
				}
				switch got := recs[i]; {
				case ok != (got != nil):
					t.Fatalf("%s: LastSuccess says %v, LastSuccesses %v", r.Instance, ok, got)
				case ok && (got.RunID != one.RunID || !got.End.Equal(*one.End) || got.End.Unix() != int64(1_800_000_000+i)):
					t.Fatalf("%s: LastSuccesses %+v, LastSuccess %+v", r.Instance, got, one)
				case ok != (i%3 == 0):
					t.Fatalf("%s: last success %v, want %v", r.Instance, ok, i%3 == 0)
				}
			}
		})
	}
}
