package jobs

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestQuorumConfig: redis.quorum takes an odd number, at least 3, of
// distinct host:port masters, with the same credentials, db and tls as
// sentinel: and cluster:, and nothing else naming a Redis.
func TestQuorumConfig(t *testing.T) {
	three := `["10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"]`
	tests := []struct {
		name    string
		redis   string // the body of redis:
		problem string // "" when valid
	}{
		{"three", "quorum: {addrs: " + three + "}", ""},
		{"five, credentials, db, tls", `quorum: {addrs: ["a:1", "b:1", "c:1", "d:1", "e:1"]}
  username: jobd
  password_file: /etc/jobd/redis-password
  db: 3
  tls: {ca_file: /etc/jobd/ca.pem}`, ""},
		{"none", "quorum: {}", "redis.quorum.addrs: 0 given: a quorum needs at least 3"},
		{"one", `quorum: {addrs: ["a:1"]}`, "1 given: a quorum needs at least 3"},
		{"even", `quorum: {addrs: ["a:1", "b:1", "c:1", "d:1"]}`, "4 given: give an odd number"},
		{"six", `quorum: {addrs: ["a:1", "b:1", "c:1", "d:1", "e:1", "f:1"]}`,
			"6 masters need 4 to answer and so survive 2 down; 5 masters survive as many"},
		{"twice", `quorum: {addrs: ["a:1", "b:1", "A:1"]}`, `redis.quorum.addrs[2]: "A:1" is given twice`},
		{"no port", `quorum: {addrs: ["a:1", "b", "c:1"]}`, `redis.quorum.addrs[1]: "b": want host:port`},
		{"with url", "url: redis://h:6379/0\n  quorum: {addrs: " + three + "}", "redis.quorum: give only one of"},
		{"with sentinel", "sentinel: {master: m, addrs: [\"s:1\"]}\n  quorum: {addrs: " + three + "}", "redis.quorum: give only one of"},
		{"with cluster", "cluster: {addrs: [\"c:1\"]}\n  quorum: {addrs: " + three + "}", "redis.quorum: give only one of"},
		{"min_replicas_acked", "min_replicas_acked: 1\n  quorum: {addrs: " + three + "}",
			"redis.min_replicas_acked: not supported with redis.quorum: its masters are independent"},
		{"unknown field", "quorum: {addrs: " + three + ", master: m}", "master"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("quorum.yaml", []byte("redis:\n  "+tt.redis+"\njobs: []\n"))
			if tt.problem == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if q := cfg.Redis.Quorum; q == nil || len(q.Addrs) < 3 || !slices.Contains(q.Addrs, "a:1") && !slices.Contains(q.Addrs, "10.0.0.1:6379") {
					t.Fatalf("redis.quorum reads as %+v", cfg.Redis.Quorum)
				}
				return
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Parse: %v, want problems", err)
			}
			if len(ps) != 1 || !strings.Contains(ps[0].String(), tt.problem) {
				t.Fatalf("problems:\n%v\nwant exactly one with %q", err, tt.problem)
			}
			if !strings.HasPrefix(ps[0].String(), "quorum.yaml:") {
				t.Errorf("%q has no position", ps[0])
			}
		})
	}
}
