package scheduler

import (
	"fmt"
	"testing"
	"time"
)

// TestRank: the replicas' ranks for one tick are a permutation (exactly
// one first), and over many instances each replica is first for about a
// third of them.
func TestRank(t *testing.T) {
	tests := []struct {
		name  string
		peers []string
	}{
		{"three replicas", []string{"a", "b", "c"}},
		{"similar names", []string{"web-1", "web-2", "web-3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := map[string]int{}
			at := time.Unix(1_800_000_000, 0)
			const n = 3000
			for i := 0; i < n; i++ {
				in := fmt.Sprintf("job[%d]", i%300)
				tick := at.Add(time.Duration(i/300) * time.Second)
				seen := map[int]bool{}
				for _, p := range tt.peers {
					r := rank(tt.peers, p, in, tick)
					if seen[r] || r < 0 || r >= len(tt.peers) {
						t.Fatalf("%s at %v: rank %d twice or out of range", in, tick, r)
					}
					seen[r] = true
					if r == 0 {
						first[p]++
					}
				}
			}
			for _, p := range tt.peers {
				if share := float64(first[p]) / n; share < 0.28 || share > 0.39 {
					t.Errorf("%s is first for %.1f%% of the ticks", p, share*100)
				}
			}
		})
	}
}
