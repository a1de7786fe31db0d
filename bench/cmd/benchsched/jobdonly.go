package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

// jobdOnly holds the scenarios measured for jobd alone, without a peer:
// load, idle and due. Every command is ["true"].
type jobdOnly struct {
	bin, dir  string
	profile   string // a directory: profile one replica per scenario
	instances int
	settle    time.Duration
	due       int
	rounds    int
}

// dueEvery is the period of the due scenario's schedule.
const dueEvery = 10 * time.Second

// writeJobs writes a schedule file of jobs × perJob instances (params 0 to
// perJob-1), every one on schedule and running `true`, and returns its path.
func (o jobdOnly) writeJobs(name string, jobCount, perJob int, schedule string) string {
	params := make([]string, perJob)
	for i := range params {
		params[i] = strconv.Itoa(i)
	}
	var b strings.Builder
	b.WriteString("jobs:\n")
	for j := range jobCount {
		fmt.Fprintf(&b, "  - name: j%03d\n    schedule: %q\n    params: [%s]\n    command: [\"true\"]\n",
			j, schedule, strings.Join(params, ", "))
	}
	path := filepath.Join(o.dir, name)
	check(os.WriteFile(path, []byte(b.String()), 0o644))
	return path
}

// manyFile is the file of o.instances instances (100 jobs), due once a
// year: nothing runs while it is measured.
func (o jobdOnly) manyFile() string {
	return o.writeJobs("many.yaml", 100, o.instances/100, "@yearly")
}

// load times `jobd validate` on the file of o.instances instances, five
// times: the median and the fastest wall time, and the largest peak RSS
// (the child's rusage maxrss).
func (o jobdOnly) load() string {
	file := o.manyFile()
	st, err := os.Stat(file)
	check(err)
	const tries = 5
	var walls []float64
	peak := 0.0
	for range tries {
		c := exec.Command(o.bin, "-c", file, "validate")
		var out strings.Builder
		c.Stdout, c.Stderr = &out, &out
		began := time.Now()
		err := c.Run()
		walls = append(walls, float64(time.Since(began).Microseconds())/1000)
		if err != nil || !strings.Contains(out.String(), fmt.Sprintf(" %d instances", o.instances)) {
			check(fmt.Errorf("jobd validate: %v: %s", err, out.String()))
		}
		if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
			peak = max(peak, float64(ru.Maxrss)/1024) // kB on Linux
		}
	}
	slices.Sort(walls)
	return fmt.Sprintf("bench=scheduler scenario=load lib=jobd jobs=100 instances=%d file_kb=%d tries=%d validate_ms=%.0f validate_min_ms=%.0f peak_rss_mb=%.1f",
		o.instances, st.Size()/1024, tries, walls[tries/2], walls[0], peak)
}

// idle runs one replica on the file of o.instances instances for
// o.settle, then reads its VmRSS; then another with --http (the metrics,
// the dashboard and its last-success refresher), profiled with -profile.
func (o jobdOnly) idle() string {
	file := o.manyFile()
	srv, err := redistest.StartServer()
	check(err)
	defer srv.Close()
	rss := o.idleRSS(srv, file, "r1", nil, nil)
	addr := freeAddr()
	extra := []string{"--http", addr}
	var hook func()
	if o.profile != "" {
		extra = append(extra, "--pprof")
		hook = func() {
			fetch("http://"+addr+"/debug/pprof/heap?gc=1", filepath.Join(o.profile, fmt.Sprintf("idle-%d.heap", o.instances)), 30*time.Second)
			cpuProfile(addr, 0, 20*time.Second, filepath.Join(o.profile, fmt.Sprintf("idle-%d.cpu", o.instances)))()
		}
	}
	rssHTTP := o.idleRSS(srv, file, "r2", extra, hook)
	return fmt.Sprintf("bench=scheduler scenario=idle lib=jobd instances=%d settle_s=%.0f rss_mb=%.1f rss_http_mb=%.1f target_rss_mb=60%s",
		o.instances, o.settle.Seconds(), rss, rssHTTP, o.profiled())
}

// idleRSS starts a replica with extra flags, waits o.settle, reads its
// VmRSS (MB), calls after (if any) and stops the replica.
func (o jobdOnly) idleRSS(srv *redistest.Server, file, id string, extra []string, after func()) float64 {
	c := exec.Command(o.bin, append([]string{"--redis", srv.URL(), "--log-level", "error", "-c", file, "run", "--replica-id", id}, extra...)...)
	c.Stderr = os.Stderr
	check(c.Start())
	time.Sleep(o.settle)
	rss := procRSS(c.Process.Pid)
	if after != nil {
		after()
	}
	_ = c.Process.Signal(syscall.SIGTERM)
	check(c.Wait())
	return rss
}

// dueLag runs one replica with o.due instances due every 10 s (10 jobs of
// o.due/10 params) and reads, from the run records, each run's lag from
// its fire time to its process's start (the record's start: when jobd saw
// the exec succeed). The first tick at least 2 s after the start is a
// warm-up (its last start is reported apart); o.rounds ticks follow.
func (o jobdOnly) dueLag() string {
	file := o.writeJobs("due.yaml", 10, o.due/10, "*/10 * * * * *")
	cfg, err := jobs.Load(file)
	check(err)
	srv, err := redistest.StartServer()
	check(err)
	defer srv.Close()
	args := []string{"--redis", srv.URL(), "--log-level", "error", "-c", file, "run", "--replica-id", "r1"}
	var addr string
	if o.profile != "" {
		addr = freeAddr()
		args = append(args, "--http", addr, "--pprof")
	}
	c := exec.Command(o.bin, args...)
	c.Stderr = os.Stderr
	check(c.Start())
	warm := time.Now().Add(2 * time.Second).Truncate(dueEvery).Add(dueEvery)
	ticks := make([]time.Time, o.rounds)
	for i := range ticks {
		ticks[i] = warm.Add(time.Duration(i+1) * dueEvery)
	}
	profiled := func() {}
	var mem0, mem1 memStats
	if addr != "" { // from 5 s after the warm-up tick to 5 s after the last
		profiled = cpuProfile(addr, time.Until(warm.Add(5*time.Second)), time.Duration(o.rounds)*dueEvery,
			filepath.Join(o.profile, fmt.Sprintf("due-%d.cpu", o.due)))
		time.Sleep(time.Until(warm.Add(5 * time.Second)))
		mem0 = readMemStats(addr)
	}
	time.Sleep(time.Until(ticks[len(ticks)-1].Add(5 * time.Second)))
	profiled()
	allocs := ""
	if addr != "" {
		mem1 = readMemStats(addr)
		runs := float64(o.rounds * o.due)
		allocs = fmt.Sprintf(" alloc_kb_per_run=%.1f allocs_per_run=%.0f gcs=%d",
			float64(mem1.totalAlloc-mem0.totalAlloc)/1024/runs, float64(mem1.mallocs-mem0.mallocs)/runs, mem1.numGC-mem0.numGC)
	}
	_ = c.Process.Signal(syscall.SIGTERM)
	check(c.Wait())

	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	store := scheduler.NewStore(rdb, "jobd")
	round := map[int64]int{warm.Unix(): -1} // tick (Unix seconds) -> round, -1: the warm-up
	for i, t := range ticks {
		round[t.Unix()] = i
	}
	last := make([]float64, o.rounds)
	started := make([]int, o.rounds)
	warmLast := 0.0
	var lags []float64
	notRun := 0
	for _, in := range cfg.Instances {
		recs, err := store.History(context.Background(), scheduler.RefOf(in), o.rounds+5)
		check(err)
		seen := 0
		for _, rec := range recs {
			r, ok := round[rec.ScheduledAt.Unix()]
			if !ok || rec.Start == nil {
				continue
			}
			lag := float64(rec.Start.Sub(rec.ScheduledAt).Microseconds()) / 1000
			if r < 0 {
				warmLast = max(warmLast, lag)
				continue
			}
			seen++
			started[r]++
			lags = append(lags, lag)
			last[r] = max(last[r], lag)
		}
		notRun += o.rounds - seen
	}
	slices.Sort(lags)
	a := analysis{lags: lags}
	within := 0
	lastS := make([]string, len(last))
	for i, l := range last {
		lastS[i] = fmt.Sprintf("%.0f", l)
		if l <= 250 && started[i] == o.due {
			within++
		}
	}
	return fmt.Sprintf("bench=scheduler scenario=due lib=jobd replicas=1 instances=%d rounds=%d runs=%d not_run=%d "+
		"lag_p50_ms=%.1f lag_p99_ms=%.1f lag_max_ms=%.1f last_started_ms=%s rounds_all_within_250ms=%d/%d warmup_last_started_ms=%.0f%s%s",
		o.due, o.rounds, len(lags), notRun, a.lag(50), a.lag(99), a.lag(100), strings.Join(lastS, ","), within, o.rounds, warmLast, allocs, o.profiled())
}

// spawnFloor is what starting o.due processes at once costs Go itself on
// this machine, the floor under the due scenario: o.due goroutines each
// start `true` as jobd does (os/exec, its own process group, jobd's
// environment, stdout and stderr on pipes read to EOF), and each start is
// timed from the moment the goroutines are launched. One warm-up round,
// then o.rounds rounds.
func (o jobdOnly) spawnFloor() string {
	var all []float64
	last := make([]string, 0, o.rounds)
	for r := -1; r < o.rounds; r++ {
		starts := make([]float64, o.due)
		var wg sync.WaitGroup
		began := time.Now()
		for i := range o.due {
			wg.Add(1)
			go func() {
				defer wg.Done()
				starts[i] = float64(spawn(began).Microseconds()) / 1000
			}()
		}
		wg.Wait()
		slices.Sort(starts)
		if r >= 0 {
			all = append(all, starts...)
			last = append(last, fmt.Sprintf("%.0f", starts[len(starts)-1]))
		}
		time.Sleep(time.Second)
	}
	slices.Sort(all)
	a := analysis{lags: all}
	return fmt.Sprintf("bench=scheduler scenario=spawn-floor lib=os/exec procs=%d rounds=%d start_p50_ms=%.1f start_p99_ms=%.1f last_started_ms=%s",
		o.due, o.rounds, a.lag(50), a.lag(99), strings.Join(last, ","))
}

// spawn starts `true` as jobs.Execute does and returns how long after
// began it had started; it waits for it and its output.
func spawn(began time.Time) time.Duration {
	c := exec.Command("true")
	c.Env = append(os.Environ(), "JOBD_JOB=floor")
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var readers sync.WaitGroup
	var ends []*os.File
	for _, w := range []*io.Writer{&c.Stdout, &c.Stderr} {
		pr, pw, err := os.Pipe()
		check(err)
		*w, ends = pw, append(ends, pw)
		readers.Add(1)
		go func() {
			defer readers.Done()
			defer pr.Close()
			_, _ = io.Copy(io.Discard, pr)
		}()
	}
	err := c.Start()
	started := time.Since(began)
	for _, f := range ends {
		f.Close()
	}
	check(err)
	readers.Wait()
	_ = c.Wait()
	return started
}

// procRSS is a process's VmRSS in MB.
func procRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	check(err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// profiled marks the lines of profiled runs, whose figures the profiler
// perturbs.
func (o jobdOnly) profiled() string {
	if o.profile != "" {
		return " pprof=on"
	}
	return ""
}
