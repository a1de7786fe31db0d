package redistest_test

import (
	"testing"
	"time"

	"github.com/jobd/jobd/internal/redistest"
)

// TestSentinelGroupFailsOver: killing the master promotes the replica.
func TestSentinelGroupFailsOver(t *testing.T) {
	g := redistest.StartSentinelGroup(t, "jobd-test")
	if a, err := g.MasterAddr(); err != nil || a != g.Master.Addr {
		t.Fatalf("master %q (%v), want %s", a, err, g.Master.Addr)
	}
	g.Master.Stop()
	began := time.Now()
	for time.Since(began) < 20*time.Second {
		if a, _ := g.MasterAddr(); a == g.Replica.Addr {
			t.Logf("failover took %v", time.Since(began).Round(100*time.Millisecond))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no failover within 20s")
}
