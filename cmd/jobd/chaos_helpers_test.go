package main

// The chaos harness: three real `jobd run` replicas, each behind its own
// fault-injecting proxy to one persistent redis-server, and a log of every
// fault injected (kind, target, interval) for the checker in chaos_test.go.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/redistest"
)

// Fault kinds.
const (
	faultCut       = "cut"        // the replica's proxy refuses connections
	faultStall     = "stall"      // the replica's proxy holds all traffic
	faultDrop      = "drop"       // the replica's proxy drops replies of commands that ran
	faultSigstop   = "sigstop"    // the replica is frozen with SIGSTOP
	faultKill9     = "kill9"      // the replica (and its jobs' process groups) SIGKILLed, then restarted
	faultRedisKill = "redis_kill" // redis-server SIGKILLed, restarted later
	faultReload    = "reload"     // config rewritten, SIGHUP to one or all replicas
)

// fault is one injected fault. Start and End carry both the wall clock
// (compared with the jobs' `date +%s%N`) and the monotonic clock.
type fault struct {
	Kind, Target, Note string
	Start, End         time.Time
}

func (f *fault) startNS() int64 { return f.Start.UnixNano() }

// endNS is the fault's end, or +inf while it lasts.
func (f *fault) endNS() int64 {
	if f.End.IsZero() {
		return 1<<63 - 1
	}
	return f.End.UnixNano()
}

// covers reports whether the fault intersects [a, b] (wall ns).
func (f *fault) covers(a, b int64) bool { return f.startNS() <= b && a <= f.endNS() }

// life is one process of a replica: from its start to its exit.
type life struct {
	gen         int
	start, exit time.Time
	status      string // how it exited
	stderr      *redistest.Buffer
}

// chaosReplica is one `jobd run` replica and its proxy. Guarded by the
// cluster's mu.
type chaosReplica struct {
	id    string
	proxy *redistest.Proxy

	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has exited
	alive  bool
	expect bool // the exit of cmd is ours (kill -9 or the final SIGTERM)
	busy   bool // a fault (cut, stall, sigstop, kill9) holds this replica
	lives  []*life
}

// chaosCluster runs the replicas and injects faults.
type chaosCluster struct {
	t       *testing.T
	t0      time.Time
	srv     *redistest.Server
	cfgPath string

	mu         sync.Mutex
	reps       []*chaosReplica
	faults     []*fault
	redisBusy  bool
	stopping   bool
	unexpected []string       // replica exits we did not cause
	wg         sync.WaitGroup // fault goroutines (Add only from the test goroutine)
}

// launch starts (or restarts, same --replica-id) the replica's process
// through its proxy. c.mu is held.
func (c *chaosCluster) launch(r *chaosReplica) {
	cmd := startDaemon(c.t, r.proxy.URL(), c.cfgPath, r.id)
	l := &life{gen: len(r.lives) + 1, start: time.Now(), stderr: cmd.Stderr.(*redistest.Buffer)}
	r.lives = append(r.lives, l)
	done := make(chan struct{})
	r.cmd, r.done, r.alive, r.expect = cmd, done, true, false
	go func() {
		// Process.Wait, not cmd.Wait: a job process left behind must
		// not keep us waiting for the pipes.
		st, err := cmd.Process.Wait()
		c.mu.Lock()
		defer c.mu.Unlock()
		l.exit = time.Now()
		if err != nil {
			l.status = err.Error()
		} else {
			l.status = st.String()
		}
		close(done)
		if r.cmd != cmd {
			return
		}
		r.alive = false
		if r.expect {
			return
		}
		// Not ours: jobd exits 69 when Redis is unreachable at start
		// (Redis killed, or its proxy cut); anything else is a crash.
		code := -1
		if st != nil {
			code = st.ExitCode()
		}
		c.unexpected = append(c.unexpected, fmt.Sprintf("%s#%d exited by itself at +%v: %s", r.id, l.gen, c.since(l.exit), l.status))
		if code != exitUnavailable {
			c.t.Errorf("replica %s#%d crashed at +%v: %s\n%s", r.id, l.gen, c.since(l.exit), l.status, tail(l.stderr.String(), 30))
		}
		if c.stopping {
			return
		}
		// systemd: Restart=on-failure, RestartSec=2s.
		time.AfterFunc(2*time.Second, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if !c.stopping && r.cmd == cmd && !r.alive {
				c.launch(r)
			}
		})
	}()
}

func (c *chaosCluster) since(t time.Time) time.Duration { return t.Sub(c.t0).Round(time.Millisecond) }

// begin records the start of a fault.
func (c *chaosCluster) begin(kind, target, note string) *fault {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := &fault{Kind: kind, Target: target, Note: note, Start: time.Now()}
	c.faults = append(c.faults, f)
	return f
}

// end records the end of a fault.
func (c *chaosCluster) end(f *fault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f.End = time.Now()
}

// inject runs fn in the background (faults overlap); stop waits for it.
func (c *chaosCluster) inject(fn func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn()
	}()
}

// release ends a fault's hold on r (set busy when the fault was chosen).
func (c *chaosCluster) release(r *chaosReplica) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r.busy = false
}

// cut: the replica's proxy refuses every connection for d.
func (c *chaosCluster) cut(r *chaosReplica, d time.Duration) {
	f := c.begin(faultCut, r.id, d.String())
	r.proxy.Refuse()
	time.Sleep(d)
	r.proxy.Accept()
	c.end(f)
	c.release(r)
}

// stall: the replica's connections hang (nothing closed) for d.
func (c *chaosCluster) stall(r *chaosReplica, d time.Duration) {
	f := c.begin(faultStall, r.id, d.String())
	r.proxy.Stall()
	time.Sleep(d)
	r.proxy.Unstall()
	c.end(f)
	c.release(r)
}

// sigstop freezes the replica's jobd process (not its jobs) for d.
func (c *chaosCluster) sigstop(r *chaosReplica, cmd *exec.Cmd, d time.Duration) {
	f := c.begin(faultSigstop, r.id, d.String())
	_ = cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(d)
	_ = cmd.Process.Signal(syscall.SIGCONT)
	c.end(f)
	c.release(r)
}

// drop arms the replica's proxy to drop n replies of requests matching
// match; the fault lasts until they were dropped (at most 10s, then it is
// disarmed).
func (c *chaosCluster) drop(r *chaosReplica, match string, n int) {
	before := r.proxy.Dropped()
	f := c.begin(faultDrop, r.id, fmt.Sprintf("%q x%d", match, n))
	r.proxy.DropReplies(match, n)
	deadline := time.Now().Add(10 * time.Second)
	for r.proxy.Dropped()-before < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	r.proxy.DropReplies("", 0)
	got := r.proxy.Dropped() - before
	c.mu.Lock()
	f.Note += fmt.Sprintf(" dropped=%d", got)
	c.mu.Unlock()
	c.end(f)
}

// kill9 kills the replica with SIGKILL, and the process groups of its
// jobs with it (systemd's KillMode kills the unit's cgroup once the main
// process is gone), then restarts it under the same id after d.
func (c *chaosCluster) kill9(r *chaosReplica, cmd *exec.Cmd, done chan struct{}, d time.Duration) {
	f := c.begin(faultKill9, r.id, "restart after "+d.String())
	pid := cmd.Process.Pid
	_ = cmd.Process.Signal(syscall.SIGSTOP) // no new job process from now on
	kids := childrenOf(pid)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	for _, k := range kids { // each job runs in its own process group
		_ = syscall.Kill(-k, syscall.SIGKILL)
	}
	<-done
	c.mu.Lock()
	f.Note += fmt.Sprintf(", %d job group(s) killed", len(kids))
	c.mu.Unlock()
	time.Sleep(d)
	c.mu.Lock()
	if !c.stopping {
		c.launch(r)
	}
	f.End = time.Now()
	r.busy = false
	c.mu.Unlock()
}

// redisKill kills redis-server (SIGKILL) and restarts it after d on the
// same port and data directory (AOF, fsync always: no acknowledged write
// is lost).
func (c *chaosCluster) redisKill(d time.Duration) {
	f := c.begin(faultRedisKill, "redis", d.String())
	c.srv.Stop()
	time.Sleep(d)
	if err := c.srv.Start(); err != nil {
		c.t.Errorf("restarting redis-server: %v", err)
	}
	c.end(f)
	c.mu.Lock()
	c.redisBusy = false
	c.mu.Unlock()
}

// childrenOf lists the pids whose parent is pid (from /proc).
func childrenOf(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')') // comm may contain spaces
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // state ppid ...
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// reachable reports whether replica r could talk to Redis at wall time
// x (ns): a process of it had been up for a second, it was not frozen,
// its proxy was neither cut nor stalled, and Redis was up. c.mu is held
// or the cluster is stopped.
func (c *chaosCluster) reachable(r *chaosReplica, x int64) bool {
	up := false
	for _, l := range r.lives {
		if l.start.Add(time.Second).UnixNano() <= x && (l.exit.IsZero() || x < l.exit.UnixNano()) {
			up = true
			break
		}
	}
	if !up {
		return false
	}
	for _, f := range c.faults {
		if !f.covers(x, x) {
			continue
		}
		switch {
		case f.Kind == faultRedisKill:
			return false
		case f.Target == r.id && (f.Kind == faultCut || f.Kind == faultStall || f.Kind == faultSigstop):
			return false
		}
	}
	return true
}

// anyReachable reports whether some replica could reach Redis at some
// moment of [a, b] (sampled every 50ms).
func (c *chaosCluster) anyReachable(a, b int64) bool {
	for x := a; x <= b; x += int64(50 * time.Millisecond) {
		for _, r := range c.reps {
			if c.reachable(r, x) {
				return true
			}
		}
	}
	return false
}

// faultsDuring lists the faults intersecting [a, b] (wall ns), one per
// line, for evidence.
func (c *chaosCluster) faultsDuring(a, b int64) string {
	var out []string
	for _, f := range c.faults {
		if f.covers(a, b) {
			out = append(out, "\n    "+c.describe(f))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "")
}

func (c *chaosCluster) describe(f *fault) string {
	end := "…"
	if !f.End.IsZero() {
		end = c.since(f.End).String()
	}
	return fmt.Sprintf("%-10s %-5s [+%v, +%v] [%s, %s] %s", f.Kind, f.Target, c.since(f.Start), end,
		f.Start.Format("15:04:05.000"), f.End.Format("15:04:05.000"), f.Note)
}

// logLines returns the replicas' log lines for which keep is true, each
// prefixed with its replica and process generation, at most max of them.
func (c *chaosCluster) logLines(max int, keep func(string) bool) []string {
	var out []string
	for _, r := range c.reps {
		for _, l := range r.lives {
			for _, line := range strings.Split(l.stderr.String(), "\n") {
				if line != "" && keep(line) {
					out = append(out, fmt.Sprintf("%s#%d: %s", r.id, l.gen, line))
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return logTime(out[i]) < logTime(out[j]) })
	if len(out) > max {
		out = append(out[:max], fmt.Sprintf("… %d more", len(out)-max))
	}
	return out
}

// logTime extracts slog's time=… for sorting lines of several replicas.
func logTime(line string) string {
	if i := strings.Index(line, "time="); i >= 0 {
		s := line[i+5:]
		if j := strings.IndexByte(s, ' '); j >= 0 {
			return s[:j]
		}
		return s
	}
	return ""
}

// writeLogs saves each replica's stderr (every process of it) in dir.
func (c *chaosCluster) writeLogs(dir string) {
	for _, r := range c.reps {
		var b strings.Builder
		for _, l := range r.lives {
			fmt.Fprintf(&b, "=== %s#%d started +%v, exited +%v: %s\n", r.id, l.gen, c.since(l.start), c.since(l.exit), l.status)
			b.WriteString(l.stderr.String())
		}
		_ = os.WriteFile(filepath.Join(dir, r.id+".log"), []byte(b.String()), 0o644)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
