package scheduler_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

// probeTopology is a Redis setup of the test's own (so that INFO stats
// counts only its commands): newNodes makes a replica's clients, masters
// are the servers whose INFO counts the commands, and probes tells
// whether backups probe there (not on a quorum, see probe.go).
type probeTopology struct {
	name   string
	probes bool
	setup  func(t *testing.T) (newNodes func(t *testing.T) []redis.UniversalClient, masters []string)
}

// probeTopologies: the package's topologies (standalone, cluster, quorum),
// and Sentinel, whose master the probe reads as a standalone server's
// (TestTicksClaimed checks that; the longer tests leave it out, see
// mainTopologies).
var probeTopologies = []probeTopology{
	{"standalone", true, func(t *testing.T) (func(t *testing.T) []redis.UniversalClient, []string) {
		srv := redistest.Start(t)
		return func(t *testing.T) []redis.UniversalClient { return newNodes(t, srv.URL()) }, []string{srv.Addr}
	}},
	{"sentinel", true, func(t *testing.T) (func(t *testing.T) []redis.UniversalClient, []string) {
		g := redistest.StartSentinelGroup(t, "jobd-probe")
		return func(t *testing.T) []redis.UniversalClient {
			opt, err := redis.ParseFailoverURL(g.URL())
			if err != nil {
				t.Fatal(err)
			}
			opt.ContextTimeoutEnabled = true
			rdb := redis.NewFailoverClient(opt)
			t.Cleanup(func() { rdb.Close() })
			return []redis.UniversalClient{rdb}
		}, []string{g.Master.Addr}
	}},
	{"cluster", true, func(t *testing.T) (func(t *testing.T) []redis.UniversalClient, []string) {
		cl := redistest.StartCluster(t)
		ms, err := cl.Masters()
		if err != nil {
			t.Fatal(err)
		}
		var addrs []string
		for _, m := range ms {
			addrs = append(addrs, m.Addr)
		}
		return func(t *testing.T) []redis.UniversalClient { return newNodes(t, cl.URL()) }, addrs
	}},
	{"quorum", false, func(t *testing.T) (func(t *testing.T) []redis.UniversalClient, []string) {
		var urls, addrs []string
		for range 3 {
			s := redistest.Start(t)
			urls, addrs = append(urls, s.URL()), append(addrs, s.Addr)
		}
		return func(t *testing.T) []redis.UniversalClient { return newNodes(t, "quorum:"+strings.Join(urls, ",")) }, addrs
	}},
}

// mainTopologies are probeTopologies less Sentinel: the package's own
// topologies, on which the longer tests run.
func mainTopologies() []probeTopology {
	var out []probeTopology
	for _, top := range probeTopologies {
		if top.name != "sentinel" {
			out = append(out, top)
		}
	}
	return out
}

// TestTicksClaimed: the probe reports exactly the claim keys that exist,
// across locks (on Redis Cluster, across slots and masters); on a quorum
// it reports nothing claimed (it does not probe); a probe that fails
// reports nothing claimed, with its error.
func TestTicksClaimed(t *testing.T) {
	ctx := context.Background()
	for _, top := range probeTopologies {
		t.Run(top.name, func(t *testing.T) {
			newNodes, _ := top.setup(t)
			nodes := newNodes(t)
			s := scheduler.NewQuorumStore(nodes, prefix(t))
			at := time.Now().Truncate(time.Second)
			var claims []*scheduler.Claim
			want := map[int]bool{}
			for i := range 40 {
				lock := "l" + strconv.Itoa(i%25) // some instances share a lock (and a slot)
				key := scheduler.TickKeyOf(s, scheduler.Ref{Instance: fmt.Sprintf("i%02d", i), Lock: lock}, at)
				claims = append(claims, &scheduler.Claim{Key: key, Lock: lock})
				if i%3 == 0 {
					want[i] = true
					for _, rdb := range nodes {
						if err := rdb.Set(ctx, key, "r run", time.Minute).Err(); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			got, err := scheduler.TicksClaimed(ctx, s, claims)
			if err != nil {
				t.Fatal(err)
			}
			for i := range claims {
				if exp := want[i] && top.probes; got[i] != exp {
					t.Errorf("claim %d (%s): claimed %v, want %v", i, claims[i].Key, got[i], exp)
				}
			}
			if got, err := scheduler.TicksClaimed(ctx, s, nil); err != nil || len(got) != 0 {
				t.Errorf("no claims: %v, %v", got, err)
			}
			for _, rdb := range nodes {
				rdb.Close()
			}
			got, err = scheduler.TicksClaimed(ctx, s, claims)
			if top.probes && err == nil {
				t.Error("a probe on closed clients did not fail")
			}
			for i, c := range got {
				if c {
					t.Errorf("claim %d reported claimed by a failed probe", i)
				}
			}
		})
	}
}

// TestBackupsProbeBeforeClaiming: N instances every second, on one
// replica and then (other keys) on three. With three, the owner of each
// tick claims it and the two backups, at their turn, find it claimed with
// one read per group: the acquire scripts per tick stay about N, as with
// one replica (without the probe they were 3N), and the commands Redis
// processes (INFO stats, the scripts' own commands included) grow by a
// small constant per backup, not with N. On Redis Cluster the read is one
// MGET per lock (keys of different slots cannot share one), so a backup
// still costs about a command per instance there, in one round trip. On
// a quorum nothing is probed: the test only checks the runs there. Every
// tick runs exactly once.
func TestBackupsProbeBeforeClaiming(t *testing.T) {
	const n = 30
	const warm, window = 2500 * time.Millisecond, 5 * time.Second
	for _, top := range mainTopologies() {
		t.Run(top.name, func(t *testing.T) {
			newNodes, masters := top.setup(t)
			type measure struct{ ticks, scripts, probes, probeTrips, info float64 }
			results := map[int]measure{}
			for _, count := range []int{1, 3} {
				t.Run(fmt.Sprintf("replicas=%d", count), func(t *testing.T) {
					out := outFile(t)
					cfg := config(t, out, jobsYAML(n, "@every 1s", "", recordCmd))
					scripts, probes := &counter{match: isTickClaim}, &counter{match: isProbe}
					var rs []*replica
					t0 := time.Now()
					for i := range count {
						nodes := newNodes(t)
						for _, rdb := range nodes {
							rdb.AddHook(scripts)
							rdb.AddHook(probes)
						}
						// Heartbeats every second (a dozen commands each,
						// the Redis settings' check included); maintenance
						// (a read of each lock's running index) once, at the
						// start, outside the window: both cost a replica the
						// same, ticks or not.
						rs = append(rs, startReplicaOn(t, nodes, cfg, string(rune('a'+i)),
							scheduler.WithIntervals(time.Second, time.Hour)))
					}
					time.Sleep(warm)
					_, s0, _ := scripts.get()
					pt0, p0, _ := probes.get()
					i0, l0 := infoCommands(t, masters), len(lines(t, out))
					time.Sleep(window)
					_, s1, _ := scripts.get()
					pt1, p1, _ := probes.get()
					i1, l1 := infoCommands(t, masters), len(lines(t, out))
					for _, r := range rs {
						r.stop()
					}
					m := measure{ticks: float64(l1-l0) / n}
					if m.ticks < window.Seconds()-2 {
						t.Fatalf("only %.1f ticks' runs in %v", m.ticks, window)
					}
					m.scripts, m.probes, m.probeTrips = float64(s1-s0)/m.ticks, float64(p1-p0)/m.ticks, float64(pt1-pt0)/m.ticks
					m.info = float64(i1-i0) / m.ticks
					results[count] = m
					t.Logf("%d replicas, %d instances: per tick %.1f acquire scripts, %.1f probe commands in %.1f round trips, %.0f Redis commands (INFO stats, %.1f per run)",
						count, n, m.scripts, m.probes, m.probeTrips, m.info, m.info/n)
					checkOnce(t, out, t0.Add(warm).Truncate(time.Second), time.Now().Add(-2*time.Second))
				})
			}
			one, three := results[1], results[3]
			if t.Failed() || !top.probes {
				return
			}
			// A few backups may claim before the owner's claim has landed
			// (a slow run of the race detector): a small margin.
			if three.scripts > one.scripts*1.15+2 {
				t.Errorf("3 replicas: %.1f acquire scripts per tick, 1 replica %.1f: the backups still claim", three.scripts, one.scripts)
			}
			if three.probeTrips > 2*3 { // up to two backup groups (ranks 1 and 2) per replica
				t.Errorf("3 replicas: %.1f probe round trips per tick, want at most 6", three.probeTrips)
			}
			perBackup := (three.info - one.info) / 2
			limit := 25.0 // two MGETs and a heartbeat (about 15): nothing per instance
			if top.name == "cluster" {
				// A heartbeat reads every master's settings, and the
				// probe is one MGET per lock: up to one per instance.
				limit = 35 + n
			}
			t.Logf("each backup replica adds %.1f Redis commands per tick (limit %.0f; a claim per instance would add more than %d)", perBackup, limit, 2*n)
			if perBackup > limit {
				t.Errorf("each backup replica adds %.1f Redis commands per tick, want at most %.0f", perBackup, limit)
			}
		})
	}
}

// TestBackupsClaimWhenTheOwnerStops: ten instances every second on
// replicas whose first-ranked replica for some ticks does not claim them:
// one of three stops in the middle (its ticks go to the backups until
// the heartbeats drop it), or a replica that never claims anything keeps
// a heartbeat, so that it stays first in line for a third of the ticks
// throughout. The backups' probe finds those ticks unclaimed and they
// claim them: every tick runs exactly once, on each topology.
func TestBackupsClaimWhenTheOwnerStops(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, newNodes func(t *testing.T) []redis.UniversalClient, cfg *jobs.Config) (from, to time.Time, gone string)
	}{
		{"the owner stops", func(t *testing.T, newNodes func(t *testing.T) []redis.UniversalClient, cfg *jobs.Config) (time.Time, time.Time, string) {
			t0 := time.Now()
			a := startReplicaOn(t, newNodes(t), cfg, "a")
			b := startReplicaOn(t, newNodes(t), cfg, "b")
			c := startReplicaOn(t, newNodes(t), cfg, "c")
			time.Sleep(3500 * time.Millisecond)
			a.stop()
			time.Sleep(4500 * time.Millisecond)
			b.stop()
			c.stop()
			return t0.Add(2 * time.Second), time.Now().Add(-2 * time.Second), "a"
		}},
		{"the owner never claims", func(t *testing.T, newNodes func(t *testing.T) []redis.UniversalClient, cfg *jobs.Config) (time.Time, time.Time, string) {
			ghost := scheduler.Heartbeat{ID: "ghost", Incarnation: "ghost", StartedAt: time.Now(), BeatAt: time.Now(), ClockOK: true}
			if _, err := scheduler.NewQuorumStore(newNodes(t), prefix(t)).Beat(context.Background(), ghost, time.Minute); err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			b := startReplicaOn(t, newNodes(t), cfg, "b")
			c := startReplicaOn(t, newNodes(t), cfg, "c")
			time.Sleep(5 * time.Second)
			b.stop()
			c.stop()
			return t0.Add(2 * time.Second), time.Now().Add(-2 * time.Second), "ghost"
		}},
	}
	for _, top := range mainTopologies() {
		t.Run(top.name, func(t *testing.T) {
			newNodes, _ := top.setup(t)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					out := outFile(t)
					from, to, gone := tc.run(t, newNodes, config(t, out, jobsYAML(10, "@every 1s", "", recordCmd)))
					checkOnce(t, out, from, to)
					by := map[string]int{}
					for _, f := range lines(t, out) {
						by[f[2]]++
					}
					if by["b"] == 0 || by["c"] == 0 {
						t.Errorf("runs by replica: %v, want b and c to run some", by)
					}
					if gone == "ghost" && by[gone] > 0 {
						t.Errorf("runs by replica: %v", by)
					}
				})
			}
		})
	}
}

// checkOnce checks that every tick of the ten instances (or however many
// ran) in [from, to] ran exactly once.
func checkOnce(t *testing.T, out string, from, to time.Time) {
	t.Helper()
	counts := map[string]int{}
	names := map[string]bool{}
	for _, f := range lines(t, out) {
		counts[f[0]+" "+f[1]]++
		names[f[0]] = true
	}
	for name := range names {
		for at := from.Truncate(time.Second); !at.After(to); at = at.Add(time.Second) {
			key := name + " " + at.UTC().Format(time.RFC3339)
			if n := counts[key]; n != 1 {
				t.Errorf("%s ran %d times", key, n)
			}
		}
	}
	if len(names) == 0 {
		t.Error("nothing ran")
	}
}

// isProbe matches a backup's probe: an MGET of tick claims.
func isProbe(cmd redis.Cmder) bool {
	if !strings.EqualFold(cmd.Name(), "mget") {
		return false
	}
	for _, a := range cmd.Args()[1:] {
		if s, ok := a.(string); ok && strings.Contains(s, ":tick:") {
			return true
		}
	}
	return false
}

// infoCommands is the total_commands_processed of the masters at addrs,
// summed (INFO stats: the scripts' own commands count too).
func infoCommands(t *testing.T, addrs []string) int64 {
	t.Helper()
	var total int64
	for _, a := range addrs {
		rdb := redis.NewClient(&redis.Options{Addr: a})
		info, err := rdb.Info(context.Background(), "stats").Result()
		rdb.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				total += n
			}
		}
	}
	return total
}
