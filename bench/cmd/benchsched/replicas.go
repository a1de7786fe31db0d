package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/redistest"
)

// replicasWarm is how long the replicas run before the replicas
// scenario measures: every replica has sent its first heartbeat and read
// the others', so each knows the others and ranks them.
const replicasWarm = 3 * time.Second

// replicaCount is the replicas scenario at one replica count: count jobd
// replicas as real processes on a private Redis, n instances due every
// second, measured for d after replicasWarm. Redis commands per run come
// from the INFO stats delta (total_commands_processed, the scripts' own
// commands included); round trips per run from total_reads_processed,
// the reads of client requests Redis made: one per command or pipeline
// that arrives whole, so about one per round trip. scripts_per_run counts
// EVALSHA and EVAL (the claims, the record writes, the releases) and
// mgets_per_run the backups' probes (INFO commandstats). Heartbeats and
// maintenance count too, as in the peers scenario. Redis's own work per
// run should not grow with the number of replicas: the first-ranked
// replica claims each tick, and the others read in one command which
// ticks are claimed before they claim (docs/scheduler.md, "Owner
// preference").
func replicaCount(bin, dir string, n, count int, d time.Duration) string {
	srv, err := redistest.StartServer()
	check(err)
	defer srv.Close()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	out := filepath.Join(dir, fmt.Sprintf("replicas-%d.out", count))
	cmds := replicas("jobd", bin, dir, srv, out, n, count, "")
	began := time.Now()
	time.Sleep(replicasWarm)
	c0, r0, l0 := stat(admin, "total_commands_processed"), stat(admin, "total_reads_processed"), lineCount(out)
	s0, m0 := calls(admin, "evalsha")+calls(admin, "eval"), calls(admin, "mget")
	time.Sleep(d)
	c1, r1, l1 := stat(admin, "total_commands_processed"), stat(admin, "total_reads_processed"), lineCount(out)
	s1, m1 := calls(admin, "evalsha")+calls(admin, "eval"), calls(admin, "mget")
	for _, c := range cmds {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range cmds {
		_ = c.Wait()
	}
	a := analyse(out, began.Add(replicasWarm+time.Second), began.Add(replicasWarm+d-time.Second), n)
	runs := max(l1-l0, 1)
	return fmt.Sprintf("bench=scheduler scenario=replicas lib=jobd replicas=%d instances=%d seconds=%d runs=%d duplicates=%d missed=%d "+
		"max_share_pct=%.0f cmds_per_run=%.2f round_trips_per_run=%.2f scripts_per_run=%.2f mgets_per_run=%.3f",
		count, n, int(d.Seconds()), runs, a.dups, a.missed, a.maxShare,
		float64(c1-c0)/float64(runs), float64(r1-r0)/float64(runs), float64(s1-s0)/float64(runs), float64(m1-m0)/float64(runs))
}

// calls is how many times Redis ran cmd (INFO commandstats), scripts'
// own calls included.
func calls(rdb *redis.Client, cmd string) int64 {
	for _, line := range strings.Split(rdb.Info(context.Background(), "commandstats").Val(), "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			v, _, _ := strings.Cut(rest, ",")
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// lineCount is how many runs the output file holds so far.
func lineCount(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}
