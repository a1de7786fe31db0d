package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/redistest"
)

// TestQuorumFailover: three replicas on a quorum of three independent
// masters (redis.quorum), every-second jobs and two jobs sharing a lock.
// One master is killed with SIGKILL: jobd goes on, with no tick run twice
// and no overlap. A second is killed: jobd fails closed (no run starts,
// /readyz answers 503 on every replica, the log says why). Both come back
// (with their data: appendfsync always, as docs/failures.md asks of a
// quorum's masters) and claiming resumes by itself. Then jobd status,
// history, trigger and lock work on the quorum.
func TestQuorumFailover(t *testing.T) {
	var masters []*redistest.Server
	for range 3 {
		masters = append(masters, redistest.StartWith(t, "--appendonly", "yes", "--appendfsync", "always"))
	}
	cfg, out := failoverJobs(t, fmt.Sprintf("redis:\n  quorum:\n    addrs: [%q, %q, %q]\n", masters[0].Addr, masters[1].Addr, masters[2].Addr))
	var daemons []*osProc
	var addrs []string
	var logs []*redistest.Buffer
	for _, id := range []string{"a", "b", "c"} {
		addr := freeAddr(t)
		cmd := startDaemon(t, "", cfg, id, "--http", addr)
		daemons, addrs = append(daemons, &osProc{cmd.Process}), append(addrs, addr)
		logs = append(logs, cmd.Stderr.(*redistest.Buffer))
	}
	readyz := func(addr string) int {
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get("http://" + addr + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	allReady := func(want int) func() bool {
		return func() bool {
			for _, a := range addrs {
				if readyz(a) != want {
					return false
				}
			}
			return true
		}
	}
	poll(t, 15*time.Second, "every replica ready", allReady(http.StatusOK))
	time.Sleep(5 * time.Second)

	killed := time.Now()
	masters[0].Stop()
	time.Sleep(10 * time.Second)
	if !allReady(http.StatusOK)() {
		t.Errorf("a replica is not ready with one master of three down")
	}

	masters[1].Stop()
	twoDown := time.Now()
	poll(t, 20*time.Second, "every replica unready with two masters down", allReady(http.StatusServiceUnavailable))
	time.Sleep(5 * time.Second)
	back := time.Now()
	for _, m := range masters[:2] {
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
	}
	poll(t, 20*time.Second, "every replica ready again", allReady(http.StatusOK))
	resumedReady := time.Since(back)
	time.Sleep(5 * time.Second)

	cli := func(args ...string) result { return wait(t, jobd(t, "", append([]string{"-c", cfg}, args...)...)) }
	t.Run("status", func(t *testing.T) {
		st := statusTopology(t, cli("status", "--json"))
		if st.Redis.Kind != "quorum" || len(st.Redis.Masters) != 3 || len(st.Replicas) != 3 {
			t.Fatalf("status shows redis %+v and %d replicas, want a quorum of 3 masters and 3 replicas", st.Redis, len(st.Replicas))
		}
	})
	t.Run("history", func(t *testing.T) {
		r := cli("history", "s0", "--json")
		var recs []struct{ Status, Lock string }
		if err := json.Unmarshal([]byte(r.stdout), &recs); err != nil || len(recs) == 0 {
			t.Fatalf("history --json (exit %d): %v\n%s%s", r.code, err, r.stdout, r.stderr)
		}
		if recs[len(recs)-1].Lock != "shared" {
			t.Errorf("history shows lock %q", recs[0].Lock)
		}
	})
	t.Run("trigger", func(t *testing.T) {
		if r := cli("trigger", "--wait", "manual"); r.code != 0 {
			t.Fatalf("trigger --wait exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("lock", func(t *testing.T) {
		if r := cli("lock", "--wait", "10s", "shared", "--", "true"); r.code != 0 {
			t.Fatalf("jobd lock exit %d: %s", r.code, r.stderr)
		}
	})
	t.Run("a URL does not bypass the quorum", func(t *testing.T) {
		// One master's URL would let this process claim apart from the
		// replicas on the quorum.
		r := wait(t, jobd(t, masters[2].URL(), "-c", cfg, "status"))
		if r.code != exitUsage || !strings.Contains(r.stderr, "names a quorum of masters") {
			t.Fatalf("status --redis URL with a quorum file: exit %d: %s", r.code, r.stderr)
		}
	})
	end := time.Now()
	for _, d := range daemons {
		d.term()
	}
	time.Sleep(time.Second)

	// No run may start while two masters are down (from a second after
	// the kill, which lets a run claimed just before it start).
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	during := 0
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "tick" {
			continue
		}
		ns, _ := strconv.ParseInt(f[3], 10, 64)
		if at := time.Unix(0, ns); at.After(twoDown.Add(time.Second)) && at.Before(back) {
			during++
		}
	}
	a := analyse(t, out, killed, end)
	t.Logf("quorum: one master down for %v, then two for %v: %d runs started with two down; ready again %v after they came back; %d ticks missed in all (the two-down outage included), %d duplicated, longest gap %v",
		twoDown.Sub(killed).Round(time.Second), back.Sub(twoDown).Round(time.Second), during, resumedReady.Round(100*time.Millisecond), a.missed, a.dups, a.gap.Round(time.Second))
	if a.dups > 0 || a.overlaps > 0 {
		t.Errorf("%d duplicated ticks, %d overlaps of the shared lock", a.dups, a.overlaps)
	}
	if during > 0 {
		t.Errorf("%d runs started while two of three masters were down", during)
	}
	for i, l := range logs {
		if !strings.Contains(l.String(), "majority") {
			t.Errorf("replica %d's log does not say a majority was missing:\n%s", i, tail(l.String(), 3000))
		}
	}
}
