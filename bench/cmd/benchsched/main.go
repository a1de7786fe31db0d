// Command benchsched compares jobd's scheduler with go-co-op/gocron v2 +
// bsm/redislock (`make bench-scheduler`): three replicas as real
// processes on one private Redis, N instances due every second, for a
// while. Each run appends one line (instance, tick, replica, start time)
// from bash, and the lines tell duplicates, missed ticks, lag from fire
// time to process start, and the share of each replica. Redis commands
// per run come from INFO stats; the replicas' own CPU (children
// excluded) and peak RSS from /proc. One key=value line per library, and
// one for the floor (floor.go): the same processes started by the
// benchmark itself, with no scheduler, for up to 30 s.
//
// Then, for jobd alone (jobdonly.go): loading and validating 10,000
// instances (wall time, peak RSS), a replica's idle RSS with 10,000
// instances, and the lag of 1,000 instances due in the same second on one
// replica, next to the floor of starting 1,000 processes from Go. With
// -profile DIR, one jobd replica of each scenario runs with --pprof and
// its CPU and heap profiles are written to DIR (`make bench-profile`).
//
// -scenario replicas (replicas.go, `make bench-replicas`, not in the
// default run) measures jobd alone with 1, 2 and 3 replicas: Redis
// commands and round trips per run at each count.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

// scenarios, in the order they run; the default runs all but replicas
// (`make bench-replicas` runs that one).
var scenarios = []string{"peers", "load", "idle", "due", "replicas"}

// defaultScenarios are what `make bench-scheduler` runs.
var defaultScenarios = []string{"peers", "load", "idle", "due"}

func main() {
	n := flag.Int("n", 200, "peers: instances due every second")
	d := flag.Duration("duration", 60*time.Second, "peers: how long the replicas run")
	only := flag.String("lib", "", "peers: jobd or gocron (default: both)")
	which := flag.String("scenario", strings.Join(defaultScenarios, ","), "the scenarios to run, comma-separated: "+strings.Join(scenarios, ", "))
	perCount := flag.Duration("replicas-duration", 15*time.Second, "replicas: how long jobd runs at each replica count (after 3 s of warm-up)")
	jobdBin := flag.String("jobd", "", "a jobd binary to run (default: build ../cmd/jobd)")
	profile := flag.String("profile", "", "write pprof profiles of one jobd replica per scenario into this directory")
	o := jobdOnly{}
	flag.IntVar(&o.instances, "instances", 10000, "load, idle: instances in the file (100 jobs of instances/100 params)")
	flag.DurationVar(&o.settle, "settle", 10*time.Second, "idle: how long the replica runs before its RSS is read")
	flag.IntVar(&o.due, "due", 1000, "due: instances due in the same second")
	flag.IntVar(&o.rounds, "rounds", 4, "due: rounds measured, 10 s apart, after one warm-up round")
	flag.Parse()
	run := map[string]bool{}
	for _, s := range strings.Split(*which, ",") {
		if !slices.Contains(scenarios, s) {
			check(fmt.Errorf("-scenario %q: want some of %s", s, strings.Join(scenarios, ", ")))
		}
		run[s] = true
	}
	dir, err := os.MkdirTemp("", "benchsched-")
	check(err)
	defer os.RemoveAll(dir)
	bins := map[string]string{"jobd": filepath.Join(dir, "jobd"), "gocron": filepath.Join(dir, "gocronreplica")}
	if *jobdBin != "" {
		bins["jobd"], err = filepath.Abs(*jobdBin)
		check(err)
	} else {
		check(run1("..", "go", "build", "-o", bins["jobd"], "./cmd/jobd")) // jobd's own module, its own go.sum
	}
	if *profile != "" {
		check(os.MkdirAll(*profile, 0o755))
		o.profile = *profile
		check(copyFile(bins["jobd"], filepath.Join(*profile, "jobd"))) // for go tool pprof -list
	}
	o.bin, o.dir = bins["jobd"], dir
	if run["peers"] {
		if *only == "" || *only == "gocron" {
			check(run1(".", "go", "build", "-o", bins["gocron"], "./cmd/gocronreplica"))
		}
		for _, lib := range []string{"jobd", "gocron"} {
			if *only != "" && *only != lib {
				continue
			}
			fmt.Println(bench(lib, bins[lib], dir, *n, *d, o.profile))
		}
		fmt.Println(bashFloor(dir, *n, min(*d, 30*time.Second)))
	}
	if run["load"] {
		fmt.Println(o.load())
	}
	if run["idle"] {
		fmt.Println(o.idle())
	}
	if run["due"] {
		fmt.Println(o.dueLag())
		fmt.Println(o.spawnFloor())
	}
	if run["replicas"] {
		for count := 1; count <= 3; count++ {
			fmt.Println(replicaCount(bins["jobd"], dir, *n, count, *perCount))
		}
	}
}

func bench(lib, bin, dir string, n int, d time.Duration, profile string) string {
	srv, err := redistest.StartServer()
	check(err)
	defer srv.Close()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	out := filepath.Join(dir, lib+".out")
	var pprofAddr string
	if lib == "jobd" && profile != "" {
		pprofAddr = freeAddr()
	}
	cmds := replicas(lib, bin, dir, srv, out, n, 3, pprofAddr)
	began := time.Now()
	profiled := func() {}
	if pprofAddr != "" { // the steady state: from 5 s in to 5 s before the end
		profiled = cpuProfile(pprofAddr, 5*time.Second, d-10*time.Second, filepath.Join(profile, fmt.Sprintf("sched-%d-per-s.cpu", n)))
	}
	cmd0 := commands(admin)
	time.Sleep(d)
	cmd1 := commands(admin)
	profiled()
	cpu, rss := 0.0, 0.0
	for _, c := range cmds {
		u, r := procStats(c.Process.Pid)
		cpu += u
		rss = max(rss, r)
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range cmds {
		_ = c.Wait()
	}
	from, to := began.Add(5*time.Second), began.Add(d-3*time.Second)
	a := analyse(out, from, to, n)
	mark := ""
	if lib == "jobd" {
		// A missed tick of jobd's is either a tick claimed but skipped
		// (overlap: skip; its previous run still held the lock) or one
		// never claimed: the run records tell them apart.
		mark = fmt.Sprintf(" skipped=%d", skipped(admin, n, from, to))
	}
	if pprofAddr != "" {
		mark += " pprof=on" // the profiler perturbs the figures
	}
	return fmt.Sprintf("bench=scheduler lib=%s replicas=3 instances=%d seconds=%d runs=%d duplicates=%d missed=%d "+
		"lag_p50_ms=%.1f lag_p99_ms=%.1f lag_max_ms=%.1f max_share_pct=%.0f cmds_per_run=%.1f cpu_ms_per_1k_runs=%.0f rss_mb=%.0f%s",
		lib, n, int(d.Seconds()), a.runs, a.dups, a.missed, a.lag(50), a.lag(99), a.lag(100), a.maxShare,
		float64(cmd1-cmd0)/float64(max(a.allRuns, 1)), cpu*1000/float64(max(a.allRuns, 1))*1000, rss, mark)
}

// skipped counts the ticks in [from, to] of jobd's n instances (i[0] to
// i[n-1]) that were claimed and recorded as skipped.
func skipped(rdb *redis.Client, n int, from, to time.Time) int {
	store := scheduler.NewStore(rdb, "jobd")
	count := 0
	for i := range n {
		name := fmt.Sprintf("i[%d]", i)
		recs, err := store.History(context.Background(), scheduler.Ref{Instance: name, Lock: name}, 1000)
		check(err)
		for _, rec := range recs {
			if rec.Status == jobs.StatusSkipped && !rec.ScheduledAt.Before(from) && !rec.ScheduledAt.After(to) {
				count++
			}
		}
	}
	return count
}

// replicas starts count replicas of lib (r1, r2, ...); with pprofAddr,
// the first jobd replica serves its profiler there.
func replicas(lib, bin, dir string, srv *redistest.Server, out string, n, count int, pprofAddr string) []*exec.Cmd {
	var cmds []*exec.Cmd
	cfg := filepath.Join(dir, "jobs.yaml")
	if lib == "jobd" {
		params := make([]string, n)
		for i := range params {
			params[i] = strconv.Itoa(i)
		}
		yaml := fmt.Sprintf("jobs:\n  - name: i\n    schedule: \"@every 1s\"\n    params: [%s]\n"+
			"    command: [\"bash\", \"-c\", \"echo $JOBD_INSTANCE $JOBD_SCHEDULED_AT $JOBD_REPLICA $EPOCHREALTIME >> %s\"]\n",
			strings.Join(params, ", "), out)
		check(os.WriteFile(cfg, []byte(yaml), 0o644))
	}
	for i := range count {
		id := "r" + strconv.Itoa(i+1)
		var c *exec.Cmd
		if lib == "jobd" {
			c = exec.Command(bin, "--redis", srv.URL(), "--log-level", "error", "-c", cfg, "run", "--replica-id", id)
			if id == "r1" && pprofAddr != "" {
				c.Args = append(c.Args, "--http", pprofAddr, "--pprof")
			}
		} else {
			c = exec.Command(bin, "-addr", srv.Addr, "-n", strconv.Itoa(n), "-out", out, "-id", id)
		}
		c.Stderr = os.Stderr
		check(c.Start())
		cmds = append(cmds, c)
	}
	return cmds
}

type analysis struct {
	runs, allRuns, dups, missed int
	lags                        []float64 // ms
	maxShare                    float64
}

func (a analysis) lag(p int) float64 {
	if len(a.lags) == 0 {
		return 0
	}
	return a.lags[min(len(a.lags)*p/100, len(a.lags)-1)]
}

// analyse reads the runs' lines; only ticks in [from, to] count.
func analyse(out string, from, to time.Time, n int) analysis {
	f, err := os.Open(out)
	check(err)
	defer f.Close()
	var a analysis
	seen := map[string]int{}
	share := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 4 {
			continue
		}
		a.allRuns++
		tick, err := time.Parse(time.RFC3339, fs[1])
		if err != nil || tick.Before(from) || tick.After(to) {
			continue
		}
		a.runs++
		seen[fs[0]+" "+fs[1]]++
		share[fs[2]]++
		if started, err := strconv.ParseFloat(fs[3], 64); err == nil {
			a.lags = append(a.lags, (started-float64(tick.UnixNano())/1e9)*1000)
		}
	}
	for _, c := range seen {
		a.dups += c - 1
	}
	a.missed = n*int(to.Truncate(time.Second).Sub(from.Truncate(time.Second)).Seconds()+0.5) - len(seen)
	if a.missed < 0 {
		a.missed = 0
	}
	for _, c := range share {
		a.maxShare = max(a.maxShare, 100*float64(c)/float64(max(a.runs, 1)))
	}
	sort.Float64s(a.lags)
	return a
}

// commands is Redis's command count.
func commands(rdb *redis.Client) int64 { return stat(rdb, "total_commands_processed") }

// stat is a counter of Redis's INFO stats.
func stat(rdb *redis.Client, name string) int64 {
	for _, line := range strings.Split(rdb.Info(context.Background(), "stats").Val(), "\r\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// procStats is a process's own CPU seconds (user+sys, children excluded)
// and its peak RSS in MB.
func procStats(pid int) (cpu, rssMB float64) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(b)
		fs := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ut, _ := strconv.ParseFloat(fs[11], 64)
		st, _ := strconv.ParseFloat(fs[12], 64)
		cpu = (ut + st) / 100 // USER_HZ
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				rssMB = kb / 1024
			}
		}
	}
	return cpu, rssMB
}

func run1(dir, name string, args ...string) error {
	c := exec.Command(name, args...)
	c.Dir = dir
	c.Stdout, c.Stderr = os.Stderr, os.Stderr
	return c.Run()
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchsched:", err)
		os.Exit(1)
	}
}
