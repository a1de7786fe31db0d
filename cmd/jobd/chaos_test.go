package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

// chaosTime is how long TestChaos injects faults: 15s, or JOBD_CHAOS
// (make chaos: 180s).
func chaosTime(t *testing.T) time.Duration {
	d := 15 * time.Second
	if s := os.Getenv("JOBD_CHAOS"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil || v <= 0 {
			t.Fatalf("JOBD_CHAOS=%q: want a positive duration", s)
		}
		d = v
	}
	return d
}

// chaosSeed is JOBD_CHAOS_SEED, or a random seed.
func chaosSeed(t *testing.T) uint64 {
	if s := os.Getenv("JOBD_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("JOBD_CHAOS_SEED=%q: %v", s, err)
		}
		return v
	}
	return rand.Uint64()
}

const (
	chaosLockTTL  = 3 * time.Second
	chaosDeadline = 20 * time.Second // starting_deadline of the misfire: run_once jobs
	chaosCalm     = 10 * time.Second // fault-free time before the shutdown
)

// chaosJob is one job of the chaos schedule.
type chaosJob struct {
	name, schedule, lock, overlap, sleep string
	// runOnce jobs (misfire: run_once) are checked for missed ticks:
	// they fire at offset + k*period since the epoch.
	runOnce        bool
	period, offset time.Duration
}

// chaosToggled is the job whose schedule reloads switch between the two
// of chaosToggle. It is excluded from the missed-tick check only.
const chaosToggled = "toggle"

var chaosToggle = [2]string{"@every 1s", "@every 2s"}

func chaosJobs() []chaosJob {
	js := []chaosJob{
		// Own locks, every second.
		{name: "tick0", schedule: "@every 1s", sleep: "0.2"},
		{name: "tick1", schedule: "@every 1s", sleep: "0.2"},
		{name: "tick2", schedule: "@every 1s", sleep: "0.2"},
		{name: "tick3", schedule: "@every 1s", sleep: "0.2"},
		// One lock, runs longer than the period: overlap skip.
		{name: "shared-a", schedule: "@every 1s", lock: "shared", sleep: "1.2"},
		{name: "shared-b", schedule: "@every 1s", lock: "shared", sleep: "1.2"},
		{name: "shared-c", schedule: "@every 1s", lock: "shared", sleep: "1.2"},
		// overlap: wait behind a long job holding the same lock. long
		// runs past lock_ttl, so a frozen replica's run outlives its lease:
		// the overlaps the fences are for.
		{name: "long", schedule: "@every 6s", lock: "waitlock", sleep: "4.5"},
		{name: "waiter", schedule: "@every 3s", lock: "waitlock", overlap: "wait", sleep: "0.5"},
		// misfire: run_once, checked for missed ticks. Their period is
		// twice the 5s maintenance interval: a missed tick stays the
		// latest one (the only one run_once runs) long enough for a
		// replica to find it (docs/scheduler.md, "Missed ticks").
		{name: "once-a", schedule: "@every 10s", sleep: "0.3", runOnce: true, period: 10 * time.Second},
		{name: "once-b", schedule: "5/10 * * * * *", sleep: "0.3", runOnce: true, period: 10 * time.Second, offset: 5 * time.Second},
	}
	return append(js, chaosJob{name: chaosToggled, schedule: chaosToggle[0], sleep: "0.1"})
}

// chaosConfig renders the schedule file. Every job appends a START line
// and an END line to out (one short echo each, so each append is atomic):
// S|E instance scheduled_at replica run_id fence lock wall_ns.
func chaosConfig(out string, js []chaosJob, toggle string) string {
	vars := "$JOBD_INSTANCE $JOBD_SCHEDULED_AT $JOBD_REPLICA $JOBD_RUN_ID $JOBD_FENCE $JOBD_LOCK_KEY"
	var b strings.Builder
	b.WriteString("jobs:\n")
	for _, j := range js {
		sched := j.schedule
		if j.name == chaosToggled {
			sched = toggle
		}
		fmt.Fprintf(&b, "  - name: %s\n    schedule: %q\n    lock_ttl: %v\n    kill_grace: 1s\n    history: 10000\n", j.name, sched, chaosLockTTL)
		if j.lock != "" {
			fmt.Fprintf(&b, "    lock: %s\n", j.lock)
		}
		if j.overlap != "" {
			fmt.Fprintf(&b, "    overlap: %s\n", j.overlap)
		}
		if j.runOnce {
			fmt.Fprintf(&b, "    misfire: run_once\n    starting_deadline: %v\n", chaosDeadline)
		}
		cmd := fmt.Sprintf(`echo "S %s $(date +%%s%%N)" >> %s; sleep %s; echo "E %s $(date +%%s%%N)" >> %s`, vars, out, j.sleep, vars, out)
		fmt.Fprintf(&b, "    command: %s\n", strconv.Quote(cmd))
	}
	return b.String()
}

// writeAtomic replaces path, so that a replica (re)reading it never sees
// half a file.
func writeAtomic(t *testing.T, path, content string) {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Error(err)
	}
}

// TestChaos: three real replicas, each behind its own fault proxy to one
// persistent Redis, while faults are injected at random: replicas cut
// off, stalled, frozen (SIGSTOP) past their leases, killed -9 and
// restarted; replies dropped after their command ran; Redis killed and
// restarted; schedules reloaded. Then, from what the jobs wrote and the
// run records in Redis: no tick ran twice; runs holding one lock never
// overlap unless the earlier holder was frozen or cut off (and the later
// one has the higher fence); the misfire: run_once jobs missed no tick
// while some replica could reach Redis; every run has its record and none
// is left running. JOBD_CHAOS sets the duration, JOBD_CHAOS_SEED the seed
// of every random choice.
func TestChaos(t *testing.T) {
	dur := chaosTime(t)
	seed := chaosSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0x6a6f6264))
	t.Logf("chaos seed=%d duration=%v: starting (replay with JOBD_CHAOS_SEED=%d JOBD_CHAOS=%v)", seed, dur, seed, dur)

	srv := redistest.StartWith(t, "--appendonly", "yes", "--appendfsync", "always")
	dir := t.TempDir()
	if d := os.Getenv("JOBD_CHAOS_DIR"); d != "" { // keep the logs and the jobs' output
		dir = d
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		_ = os.Remove(filepath.Join(dir, "out"))
	}
	out := filepath.Join(dir, "out")
	cfgPath := filepath.Join(dir, "jobs.yaml")
	js := chaosJobs()
	toggle := 0
	writeFile(t, cfgPath, chaosConfig(out, js, chaosToggle[toggle]))

	c := &chaosCluster{t: t, t0: time.Now(), srv: srv, cfgPath: cfgPath}
	for _, id := range []string{"r1", "r2", "r3"} {
		c.reps = append(c.reps, &chaosReplica{id: id, proxy: redistest.NewProxy(t, srv.Addr)})
	}
	c.mu.Lock()
	for _, r := range c.reps {
		c.launch(r)
	}
	c.mu.Unlock()
	started := time.Now()
	defer func() { // whatever happened, nothing stays frozen or running
		c.mu.Lock()
		c.stopping = true
		for _, r := range c.reps {
			if r.alive {
				_ = r.cmd.Process.Signal(syscall.SIGCONT)
			}
		}
		c.mu.Unlock()
	}()

	// Inject.
	counts := map[string]int{}
	ms := func(lo, hi int) time.Duration { return time.Duration(lo+rng.IntN(hi-lo+1)) * time.Millisecond }
	deadline := started.Add(dur)
	for {
		pause := ms(1500, 3000)
		if time.Now().Add(pause).After(deadline) {
			break
		}
		time.Sleep(pause)
		c.mu.Lock()
		var free, hup []*chaosReplica
		busy := 0
		for _, r := range c.reps {
			switch {
			case r.busy:
				busy++
			case r.alive:
				free = append(free, r)
			}
			if r.alive && time.Since(r.lives[len(r.lives)-1].start) > 2*time.Second {
				hup = append(hup, r) // signal handlers installed (systemd reloads only after READY)
			}
		}
		kinds := []string{faultReload}
		if len(free) > 0 {
			kinds = append(kinds, faultDrop)
			if busy < 2 { // at least one replica is never held by a fault
				kinds = append(kinds, faultCut, faultStall, faultSigstop, faultKill9)
			}
		}
		if !c.redisBusy { // one whole-cluster fault at a time
			kinds = append(kinds, faultRedisKill)
		}
		kind := kinds[rng.IntN(len(kinds))]
		var r *chaosReplica
		if kind != faultReload && kind != faultRedisKill {
			r = free[rng.IntN(len(free))]
		}
		counts[kind]++
		switch kind {
		case faultCut:
			r.busy = true
			d := ms(2000, 10000)
			c.inject(func() { c.cut(r, d) })
		case faultStall:
			r.busy = true
			d := ms(2000, 10000)
			c.inject(func() { c.stall(r, d) })
		case faultSigstop:
			r.busy = true
			d := ms(3500, 6000)
			cmd := r.cmd
			c.inject(func() { c.sigstop(r, cmd, d) })
		case faultKill9:
			r.busy = true
			r.expect = true
			d := ms(0, 2000)
			cmd, done := r.cmd, r.done
			c.inject(func() { c.kill9(r, cmd, done, d) })
		case faultDrop:
			match := ""
			if rng.IntN(2) == 0 {
				match = "evalsha"
			}
			n := 1 + rng.IntN(3)
			c.inject(func() { c.drop(r, match, n) })
		case faultRedisKill:
			c.redisBusy = true
			d := ms(500, 3000)
			c.inject(func() { c.redisKill(d) })
		case faultReload:
			toggle = 1 - toggle
			targets := hup
			if len(hup) > 0 && rng.IntN(2) == 0 {
				targets = []*chaosReplica{hup[rng.IntN(len(hup))]}
			}
			names := make([]string, len(targets))
			for i, tr := range targets {
				names[i] = tr.id
			}
			now := time.Now()
			c.faults = append(c.faults, &fault{Kind: faultReload, Target: strings.Join(names, ","),
				Note: chaosToggled + " -> " + chaosToggle[toggle], Start: now, End: now})
			writeAtomic(t, cfgPath, chaosConfig(out, js, chaosToggle[toggle]))
			for _, tr := range targets {
				_ = tr.cmd.Process.Signal(syscall.SIGHUP)
			}
		}
		c.mu.Unlock()
	}
	chaosEnd := time.Now()
	c.wg.Wait() // every fault undone
	time.Sleep(chaosCalm)

	// Stop: SIGTERM to every replica; each must exit 0.
	c.mu.Lock()
	c.stopping = true
	type stopping struct {
		r    *chaosReplica
		l    *life
		done chan struct{}
	}
	var stops []stopping
	for _, r := range c.reps {
		if r.alive {
			r.expect = true
			_ = r.cmd.Process.Signal(syscall.SIGTERM)
			stops = append(stops, stopping{r, r.lives[len(r.lives)-1], r.done})
		}
	}
	c.mu.Unlock()
	for _, s := range stops {
		select {
		case <-s.done:
		case <-time.After(60 * time.Second):
			t.Errorf("replica %s did not stop within 60s of SIGTERM", s.r.id)
			_ = s.r.cmd.Process.Kill()
			<-s.done
		}
	}
	end := time.Now()
	c.mu.Lock() // the waiters are done; this orders their writes before the checks
	c.mu.Unlock()
	for _, s := range stops {
		if s.l.status != "exit status 0" {
			t.Errorf("replica %s#%d after SIGTERM: %s, want exit status 0\n%s", s.r.id, s.l.gen, s.l.status, tail(s.l.stderr.String(), 30))
		}
	}
	c.writeLogs(dir)
	t.Logf("replica logs in %s (r1.log, r2.log, r3.log); job output in %s", dir, out)

	ck := &chaosCheck{t: t, c: c, js: js, started: started, chaosEnd: chaosEnd, end: end}
	ck.load(out, srv)
	ck.run()

	t.Logf("fault log (times since the start, then wall clock):")
	for _, f := range c.faults {
		t.Logf("  %s", c.describe(f))
	}
	for _, u := range c.unexpected {
		t.Logf("  exit: %s", u)
	}
	dropped := 0
	for _, r := range c.reps {
		dropped += r.proxy.Dropped()
	}
	t.Logf("chaos seed=%d duration=%v faults: cut=%d stall=%d drop=%d sigstop=%d kill9=%d redis_kill=%d reload=%d; "+
		"runs=%d duplicates=%d overlaps_fenced=%d overlaps_unexplained=%d missed_explained=%d missed_unexplained=%d "+
		"records_missing=%d records_stuck=%d; unended_unexplained=%d replies_dropped=%d misfire_runs=%d restarts_exit69=%d",
		seed, dur, counts[faultCut], counts[faultStall], counts[faultDrop], counts[faultSigstop], counts[faultKill9],
		counts[faultRedisKill], counts[faultReload],
		len(ck.runs), ck.duplicates, ck.fenced, ck.unexplained, ck.missedExplained, ck.missedUnexplained,
		ck.missing, ck.stuck, ck.unended, dropped, ck.misfireRuns, len(c.unexpected))
}

// chaosRun is one run, from its START (and END) lines and its record.
type chaosRun struct {
	inst, sched, rep, id, lock string
	fence                      int64
	start, end                 int64 // wall ns; end 0: no END line
	starts                     int   // START lines with this run id
	rec                        *scheduler.Record
	until                      int64  // the run's end for the overlap check
	untilWhy                   string // where until comes from
}

func (r *chaosRun) String() string {
	st := "no record"
	if r.rec != nil {
		st = string(r.rec.Status)
		if r.rec.Reason != "" {
			st += " (" + r.rec.Reason + ")"
		}
	}
	end := "no END"
	if r.end != 0 {
		end = time.Unix(0, r.end).Format("15:04:05.000")
	}
	return fmt.Sprintf("run %s of %s tick %s on %s, lock %s fence %d, [%s, %s], record: %s",
		r.id, r.inst, r.sched, r.rep, r.lock, r.fence, time.Unix(0, r.start).Format("15:04:05.000"), end, st)
}

// chaosCheck checks what the jobs wrote and what Redis recorded.
type chaosCheck struct {
	t                       *testing.T
	c                       *chaosCluster
	js                      []chaosJob
	started, chaosEnd, end  time.Time
	runs                    map[string]*chaosRun // by run id
	recs                    map[string]map[string]*scheduler.Record
	index                   map[string]runningEntry
	duplicates              int
	fenced, unexplained     int
	missedExplained         int
	missedUnexplained       int
	missing, stuck, unended int
	misfireRuns             int
}

// load reads the jobs' lines and the records in Redis (directly, not
// through a proxy).
func (k *chaosCheck) load(out string, srv *redistest.Server) {
	t := k.t
	k.runs = map[string]*chaosRun{}
	f, err := os.Open(out)
	if err != nil {
		t.Fatalf("no job ever ran: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 8 || (fs[0] != "S" && fs[0] != "E") {
			t.Errorf("bad line in the jobs' output: %q", sc.Text())
			continue
		}
		fence, err1 := strconv.ParseInt(fs[5], 10, 64)
		ts, err2 := strconv.ParseInt(fs[7], 10, 64)
		if err1 != nil || err2 != nil {
			t.Errorf("bad line in the jobs' output: %q", sc.Text())
			continue
		}
		r := k.runs[fs[4]]
		if r == nil {
			r = &chaosRun{inst: fs[1], sched: fs[2], rep: fs[3], id: fs[4], fence: fence, lock: fs[6]}
			k.runs[fs[4]] = r
		}
		if fs[0] == "S" {
			r.starts++
			r.start = ts
		} else {
			r.end = ts
		}
	}
	for id, r := range k.runs {
		if r.starts == 0 {
			t.Errorf("run %s wrote END without START", id)
			delete(k.runs, id)
		}
	}

	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store := scheduler.NewStore(rdb, prefix(t))
	k.recs = map[string]map[string]*scheduler.Record{}
	for _, j := range k.js {
		lock := j.lock
		if lock == "" {
			lock = j.name
		}
		hist, err := store.History(ctx, scheduler.Ref{Instance: j.name, Lock: lock}, 10000)
		if err != nil {
			t.Fatalf("history of %s: %v", j.name, err)
		}
		m := map[string]*scheduler.Record{}
		for i := range hist {
			m[hist[i].RunID] = &hist[i]
		}
		k.recs[j.name] = m
	}
	k.index = runningIndex(t, rdb)
	for _, r := range k.runs {
		r.rec = k.recs[r.inst][r.id]
	}
}

func (k *chaosCheck) run() {
	k.checkRuntime()
	k.checkRecords()
	k.checkDuplicates()
	k.checkOverlaps()
	k.checkMissed()
	if min := int(k.chaosEnd.Sub(k.started)/time.Second) * 2; len(k.runs) < min {
		k.t.Errorf("only %d runs in %v (want at least %d): the cluster hardly ran", len(k.runs), k.chaosEnd.Sub(k.started).Round(time.Second), min)
	}
}

// checkRuntime: no data race, no panic in any replica.
func (k *chaosCheck) checkRuntime() {
	bad := k.c.logLines(40, func(l string) bool {
		return strings.Contains(l, "DATA RACE") || strings.Contains(l, "panic") || strings.Contains(l, "fatal error")
	})
	if len(bad) > 0 {
		k.t.Errorf("replicas logged races or panics:\n%s", strings.Join(bad, "\n"))
	}
}

// killedAfter is the first kill -9 of replica rep at or after wall time
// start (ns), or nil.
func (k *chaosCheck) killedAfter(rep string, start int64) *fault {
	for _, f := range k.c.faults {
		if f.Kind == faultKill9 && f.Target == rep && f.startNS() >= start {
			return f
		}
	}
	return nil
}

// checkRecords: every run has its record; no record (nor index entry) is
// left running or waiting; a run that never wrote END was killed (its
// replica with -9, or by jobd: lock_lost, killed, abandoned).
func (k *chaosCheck) checkRecords() {
	for _, r := range k.sortedRuns() {
		if r.rec == nil {
			k.missing++
			k.t.Errorf("records_missing: %v\n%s", r, k.evidence(r.inst, r.sched, r.start, r.start, r.id))
		}
		switch {
		case r.end != 0:
			r.until, r.untilWhy = r.end, "END line"
		case r.rec != nil && r.rec.End != nil && r.rec.Status != jobs.StatusAbandoned && r.rec.Status != jobs.StatusRunning:
			r.until, r.untilWhy = r.rec.End.UnixNano(), "record end ("+string(r.rec.Status)+")"
		case k.killedAfter(r.rep, r.start) != nil:
			r.until, r.untilWhy = k.killedAfter(r.rep, r.start).startNS(), "kill -9 of "+r.rep
		default:
			r.until, r.untilWhy = k.end.UnixNano(), "never ended"
		}
		if r.end != 0 {
			continue
		}
		if k.killedAfter(r.rep, r.start) != nil {
			continue
		}
		if r.rec != nil {
			switch r.rec.Status {
			case "lock_lost", "killed", jobs.StatusAbandoned:
				continue
			}
		}
		k.unended++
		k.t.Errorf("unended: START without END, its replica was not killed and the run is not recorded lock_lost, killed or abandoned: %v\n%s",
			r, k.evidence(r.inst, r.sched, r.start, k.end.UnixNano(), r.id))
	}
	for inst, m := range k.recs {
		for _, rec := range m {
			if rec.Trigger == "misfire" {
				k.misfireRuns++
			}
			if rec.Status == jobs.StatusRunning || rec.Status == jobs.StatusWaiting {
				k.stuck++
				at := rec.ScheduledAt.UnixNano()
				k.t.Errorf("records_stuck: %s run %s (tick %s, replica %s, fence %d) is still %s after the shutdown\n%s",
					inst, rec.RunID, rec.ScheduledAt.Format(time.RFC3339), rec.Replica, rec.Fence, rec.Status,
					k.evidence(inst, rec.ScheduledAt.Format(time.RFC3339), at, k.end.UnixNano(), rec.RunID))
			}
		}
	}
	for id, e := range k.index {
		if rec := k.recs[e.Instance][id]; rec != nil && (rec.Status == jobs.StatusRunning || rec.Status == jobs.StatusWaiting) {
			continue // already counted
		}
		k.stuck++
		k.t.Errorf("records_stuck: run %s of %s (replica %s, fence %d) is still in the running index after the shutdown", id, e.Instance, e.Replica, e.Fence)
	}
}

// checkDuplicates: no tick has two START lines.
func (k *chaosCheck) checkDuplicates() {
	byTick := map[string][]*chaosRun{}
	for _, r := range k.sortedRuns() {
		key := r.inst + " " + r.sched
		byTick[key] = append(byTick[key], r)
		if r.starts > 1 {
			k.duplicates++
			k.t.Errorf("duplicate: run %s started %d times: %v\n%s", r.id, r.starts, r, k.evidence(r.inst, r.sched, r.start, r.until, r.id))
		}
	}
	keys := make([]string, 0, len(byTick))
	for key := range byTick {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		rs := byTick[key]
		if len(rs) < 2 {
			continue
		}
		k.duplicates++
		var b strings.Builder
		ids := make([]string, len(rs))
		for i, r := range rs {
			fmt.Fprintf(&b, "  %v\n", r)
			ids[i] = r.id
		}
		k.t.Errorf("duplicate: tick %s ran %d times:\n%s%s", key, len(rs), b.String(),
			k.evidence(rs[0].inst, rs[0].sched, rs[0].start-int64(5*time.Second), rs[len(rs)-1].until, ids...))
	}
}

// explains reports whether fault f may let the run r lose its lock while
// its process still runs: its replica frozen, cut off or stalled, or Redis
// killed, during the run.
func explains(f *fault, r *chaosRun) bool {
	switch f.Kind {
	case faultSigstop, faultCut, faultStall:
		if f.Target != r.rep {
			return false
		}
	case faultRedisKill:
	default:
		return false
	}
	return f.covers(r.start, r.until)
}

// checkOverlaps: two runs holding one lock overlap only if the earlier
// holder's replica was frozen or cut off (or Redis killed) during its
// run, and the later run has the higher fence.
func (k *chaosCheck) checkOverlaps() {
	byLock := map[string][]*chaosRun{}
	for _, r := range k.sortedRuns() {
		byLock[r.lock] = append(byLock[r.lock], r)
	}
	locks := make([]string, 0, len(byLock))
	for l := range byLock {
		locks = append(locks, l)
	}
	sort.Strings(locks)
	for _, lock := range locks {
		rs := byLock[lock]
		sort.Slice(rs, func(i, j int) bool { return rs[i].start < rs[j].start })
		for i, a := range rs {
			for _, b := range rs[i+1:] {
				if b.start >= a.until {
					break
				}
				var why []string
				for _, f := range k.c.faults {
					if explains(f, a) {
						why = append(why, k.c.describe(f))
					}
				}
				if len(why) > 0 && b.fence > a.fence {
					k.fenced++
					k.t.Logf("overlap (fenced) on lock %s: %v\n    and %v\n    because: %s", lock, a, b, strings.Join(why, "; "))
					continue
				}
				k.unexplained++
				k.t.Errorf("overlaps_unexplained on lock %s (first run's end from %s):\n  %v\n  %v\n  faults then: %s\n%s", lock, a.untilWhy, a, b,
					k.c.faultsDuring(a.start-int64(5*time.Second), b.until), k.evidence(a.inst, a.sched, a.start-int64(5*time.Second), b.until, a.id, b.id))
			}
		}
	}
}

// checkMissed: every tick of the run_once jobs between start+5s and the
// end of the chaos minus starting_deadline minus 5s ran, unless no
// replica could reach Redis at any moment of [T, T+starting_deadline].
func (k *chaosCheck) checkMissed() {
	ran := map[string]bool{}
	for _, r := range k.runs {
		ran[r.inst+" "+r.sched] = true
	}
	from, to := k.started.Add(5*time.Second), k.chaosEnd.Add(-chaosDeadline-5*time.Second)
	for _, j := range k.js {
		if !j.runOnce {
			continue
		}
		n := (from.UnixNano() - int64(j.offset) + int64(j.period) - 1) / int64(j.period)
		for tick := time.Unix(0, n*int64(j.period)+int64(j.offset)).UTC(); !tick.After(to); tick = tick.Add(j.period) {
			sched := tick.Format(time.RFC3339)
			if ran[j.name+" "+sched] {
				continue
			}
			a, b := tick.UnixNano(), tick.Add(chaosDeadline).UnixNano()
			if !k.c.anyReachable(a, b) {
				k.missedExplained++
				k.t.Logf("missed (explained: no replica could reach Redis in [T, T+%v]): %s tick %s", chaosDeadline, j.name, sched)
				continue
			}
			k.missedUnexplained++
			var recs []string
			for _, rec := range k.recs[j.name] {
				if rec.ScheduledAt.Equal(tick) {
					recs = append(recs, fmt.Sprintf("%s %s on %s trigger %s (%s)", rec.RunID, rec.Status, rec.Replica, rec.Trigger, rec.Reason))
				}
			}
			k.t.Errorf("missed_unexplained: %s tick %s never ran (records of that tick: %v)\n  faults in [T-5s, T+%v]: %s\n%s",
				j.name, sched, recs, chaosDeadline, k.c.faultsDuring(a-int64(5*time.Second), b), k.evidence(j.name, sched, a-int64(5*time.Second), b))
		}
	}
}

func (k *chaosCheck) sortedRuns() []*chaosRun {
	out := make([]*chaosRun, 0, len(k.runs))
	for _, r := range k.runs {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].start < out[j].start || out[i].start == out[j].start && out[i].id < out[j].id
	})
	return out
}

// evidence: the log lines of the replicas about these runs or about this
// tick of the instance, and the lines about leases, Redis and reloads in
// [a, b] (wall ns).
func (k *chaosCheck) evidence(inst, sched string, a, b int64, ids ...string) string {
	tick, _ := time.Parse(time.RFC3339, sched)
	compact := tick.UTC().Format("20060102T150405Z")
	slogTime := tick.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	from := time.Unix(0, a).Add(-time.Second)
	to := time.Unix(0, b).Add(time.Second)
	lines := k.c.logLines(40, func(l string) bool {
		for _, id := range ids {
			if strings.Contains(l, id) {
				return true
			}
		}
		return strings.Contains(l, "job="+inst+" ") && (strings.Contains(l, compact) || strings.Contains(l, slogTime))
	})
	lines = append(lines, "(and around it: leases, Redis, abandonments, misfires)")
	lines = append(lines, k.c.logLines(25, func(l string) bool {
		lt, err := time.Parse(time.RFC3339Nano, logTime(l))
		if err != nil || lt.Before(from) || lt.After(to) {
			return false
		}
		for _, s := range []string{"lease", "lock_lost", "redis", "abandoned", "takeover", "missed", "never started", "not starting"} {
			if strings.Contains(l, s) {
				return true
			}
		}
		return false
	})...)
	return "  " + strings.Join(lines, "\n  ")
}
