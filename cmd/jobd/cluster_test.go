package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/redistest"
)

// TestClusterFailover: three replicas on a 3-master, 3-replica Redis
// Cluster (the schedule file's redis.cluster form), every-second jobs and
// two jobs sharing a lock. The master that holds the shared lock's slot is
// killed with SIGKILL; its replica takes over and jobd goes on by itself.
// Then jobd status, history, trigger and lock work on the cluster (the
// redis+cluster:// URL form). The test reports the resume time, the
// missed and duplicated ticks and the longest gap, and fails on a
// duplicate, on overlapping holders of the shared lock, or when claiming
// does not resume within 15s of the kill.
func TestClusterFailover(t *testing.T) {
	c := redistest.StartCluster(t)
	cfg, out := failoverJobs(t, fmt.Sprintf("redis:\n  cluster:\n    addrs: [%q, %q]\n", c.Nodes[0].Addr, c.Nodes[1].Addr))
	var daemons []*osProc
	for _, id := range []string{"a", "b", "c"} {
		daemons = append(daemons, &osProc{startDaemon(t, "", cfg, id).Process})
	}
	time.Sleep(6 * time.Second)

	victim := masterOf(t, c, prefix(t)+":lock:{shared}")
	killed := time.Now()
	victim.Stop()
	time.Sleep(15 * time.Second)

	cli := func(args ...string) result { return wait(t, jobd(t, c.URL(), args...)) }
	t.Run("status", func(t *testing.T) {
		st := statusTopology(t, cli("-c", cfg, "status", "--json"))
		if st.Redis.Kind != "cluster" || len(st.Redis.Masters) != 3 || len(st.Replicas) != 3 {
			t.Fatalf("status shows redis %+v and %d replicas, want a cluster of 3 masters and 3 replicas", st.Redis, len(st.Replicas))
		}
		for _, m := range st.Redis.Masters {
			if m == victim.Addr {
				t.Errorf("status lists the killed master %s", m)
			}
		}
		if r := cli("-c", cfg, "status"); r.code != 0 || !strings.Contains(r.stdout, "REDIS cluster, 3 masters") {
			t.Errorf("status (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("history", func(t *testing.T) {
		r := cli("-c", cfg, "history", "s0", "--json")
		var recs []struct{ Status, Lock string }
		if err := json.Unmarshal([]byte(r.stdout), &recs); err != nil || len(recs) == 0 {
			t.Fatalf("history --json (exit %d): %v\n%s%s", r.code, err, r.stdout, r.stderr)
		}
		if recs[0].Lock != "shared" {
			t.Errorf("history shows lock %q", recs[0].Lock)
		}
	})
	t.Run("trigger", func(t *testing.T) {
		if r := cli("-c", cfg, "trigger", "--wait", "manual"); r.code != 0 {
			t.Fatalf("trigger --wait exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("lock", func(t *testing.T) {
		// The jobs hold "shared" most of the time: wait for it, woken by
		// the release's notification on the cluster.
		if r := cli("lock", "--wait", "10s", "shared", "--", "true"); r.code != 0 {
			t.Fatalf("jobd lock exit %d: %s", r.code, r.stderr)
		}
	})
	end := time.Now()
	for _, d := range daemons {
		d.term()
	}
	time.Sleep(time.Second)
	a := analyse(t, out, killed, end)
	t.Logf("cluster master %s killed: runs paused for %v and resumed %v after the kill; %d ticks missed, %d duplicated, longest gap %v between a job's ticks",
		victim.Addr, a.pause.Round(100*time.Millisecond), a.resumed.Round(100*time.Millisecond), a.missed, a.dups, a.gap.Round(time.Second))
	if a.dups > 0 || a.overlaps > 0 {
		t.Errorf("%d duplicated ticks, %d overlaps of the shared lock", a.dups, a.overlaps)
	}
	// resumed is 0 when the runs never paused (the healthy shards' jobs
	// go on, and the dead shard's failed over between two of its ticks).
	if a.resumed > 15*time.Second {
		t.Errorf("claiming resumed %v after the kill, want within 15s", a.resumed)
	}
}

// masterOf is the node of c that is the master of key's slot now.
func masterOf(t *testing.T, c *redistest.Cluster, key string) *redistest.Server {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer cc.Close()
	m, err := cc.MasterForKey(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		if n.Addr == m.Options().Addr {
			return n
		}
	}
	t.Fatalf("no node is %s", m.Options().Addr)
	return nil
}

// topologyStatus is what the topology tests read of status --json.
type topologyStatus struct {
	Redis struct {
		Kind    string
		Masters []string
	} `json:"redis"`
	Replicas []struct{ ID string } `json:"replicas"`
}

// statusTopology parses the output of status --json.
func statusTopology(t *testing.T, r result) topologyStatus {
	t.Helper()
	var st topologyStatus
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json (exit %d): %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	return st
}

// failoverJobs writes, under redisYAML (a redis: section), the job set of
// the topology failover tests: four every-second jobs (e0–e3) that append
// "tick INSTANCE TICK NANOS" to out, two (s0, s1) that share the lock
// "shared" and write "in"/"out" lines around 0.2 s, and "manual" for
// trigger. It returns the file and out.
func failoverJobs(t *testing.T, redisYAML string) (cfg, out string) {
	t.Helper()
	dir := t.TempDir()
	out, cfg = filepath.Join(dir, "out"), filepath.Join(dir, "jobs.yaml")
	var b strings.Builder
	b.WriteString(redisYAML + "jobs:\n")
	for i := 0; i < 4; i++ {
		fmt.Fprintf(&b, "  - name: e%d\n    schedule: \"@every 1s\"\n    command: 'echo tick $JOBD_INSTANCE $JOBD_SCHEDULED_AT $(date +%%s%%N) >> %s'\n", i, out)
	}
	for i := 0; i < 2; i++ {
		fmt.Fprintf(&b, "  - name: s%d\n    schedule: \"@every 1s\"\n    lock: shared\n    command: 'echo in s-$JOBD_RUN_ID >> %s; sleep 0.2; echo out s-$JOBD_RUN_ID >> %s'\n", i, out, out)
	}
	b.WriteString("  - name: manual\n    schedule: \"@yearly\"\n    command: [\"true\"]\n") // for trigger
	writeFile(t, cfg, b.String())
	return cfg, out
}
