package scheduler_test

import (
	"context"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

// TestOverdueSinceReplicasStarted: a never-run instance's last due tick
// is overdue when a live replica was up to run it, or when no replica is
// alive; not when every live replica started after it (a fresh install).
func TestOverdueSinceReplicasStarted(t *testing.T) {
	cfg := config(t, outFile(t), jobsYAML(1, "@hourly", "", `["true"]`))
	now := time.Now()
	tests := []struct {
		name    string
		started []time.Duration // live replicas, started this long ago
		overdue bool
	}{
		{"no replica alive", nil, true},
		{"a replica up for two hours", []time.Duration{2 * time.Hour}, true},
		{"every replica started a moment ago", []time.Duration{time.Second, 2 * time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb := newRedis(t, redistest.SharedURL(t))
			store := scheduler.NewStore(rdb, prefix(t))
			for i, ago := range tt.started {
				hb := scheduler.Heartbeat{ID: string(rune('a' + i)), StartedAt: now.Add(-ago).UTC()}
				if _, err := store.Beat(context.Background(), hb, time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			states, err := scheduler.NewInspector(store).Instances(context.Background(), cfg, now)
			if err != nil {
				t.Fatal(err)
			}
			if got := states[0].Overdue; got != tt.overdue {
				t.Fatalf("overdue = %v, want %v", got, tt.overdue)
			}
		})
	}
}
