// Command benchmutex compares jobd's mutex with its peers in one run, on
// one private redis-server: uncontended lock+unlock, handoff to a blocked
// waiter, and the seed article's contended counter (20 workers × 100
// increments). It prints one key=value line per library per scenario
// (`make bench-mutex`). Figures from different runs are not comparable;
// compare the ratios within a run. Rows with topology=cluster are measured
// on a 3-master, 3-replica Redis Cluster in the same run (-cluster=false
// skips them), and rows with topology=quorum on 3 independent masters,
// for jobd and redsync (-quorum=false skips them); scenario=claims is a
// replica's tick: 200 claims with their locks in one TryLockBatch.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/redistest"
)

// lib is one library under test: lock returns the release of a held lock.
type lib struct {
	name string
	// open makes a client for one worker; close releases it.
	open func(addr string) (lockFn, func())
}

// lockFn takes the lock named key, waiting as the library does, and
// returns its release.
type lockFn func(ctx context.Context, key string) (release func() error, err error)

func main() {
	only := flag.String("lib", "", "run only the libraries whose name contains this")
	ops := flag.Int("ops", 3000, "uncontended lock+unlock operations")
	rounds := flag.Int("rounds", 40, "handoff rounds")
	limit := flag.Duration("limit", 60*time.Second, "time limit per library per scenario")
	worker := flag.String("herd-worker", "", "internal: run herd waiters for this library against -addr")
	addr := flag.String("addr", "", "internal: the Redis of a herd worker")
	cluster := flag.Bool("cluster", true, "also run uncontended, handoff and claims on a 3-master, 3-replica Redis Cluster")
	quorum := flag.Bool("quorum", true, "also run uncontended, handoff and claims on a quorum of 3 independent masters (jobd and redsync)")
	flag.Parse()
	if *worker != "" {
		os.Exit(herdWorker(*worker, *addr, *limit))
	}
	srv, err := redistest.StartServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchmutex:", err)
		os.Exit(1)
	}
	defer srv.Close()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	for _, l := range libs() {
		if *only != "" && !strings.Contains(l.name, *only) {
			continue
		}
		for _, sc := range []struct {
			name string
			run  func(context.Context, lib, string, *redis.Client) string
		}{
			{"uncontended", func(ctx context.Context, l lib, a string, r *redis.Client) string {
				return uncontended(ctx, l, a, r, *ops)
			}},
			{"handoff", func(ctx context.Context, l lib, a string, r *redis.Client) string {
				return handoff(ctx, l, a, *rounds)
			}},
			{"contended", contended},
			{"herd", func(ctx context.Context, l lib, a string, r *redis.Client) string { return herd(ctx, l, a, r, *limit) }},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), *limit)
			fmt.Printf("bench=mutex scenario=%s lib=%s %s\n", sc.name, l.name, sc.run(ctx, l, srv.Addr, admin))
			cancel()
			admin.FlushAll(context.Background())
		}
	}
	if *only == "" || strings.Contains("jobd", *only) {
		ctx, cancel := context.WithTimeout(context.Background(), *limit)
		fmt.Printf("bench=mutex scenario=claims topology=standalone lib=jobd %s\n", claims(ctx, srv.Addr, admin))
		cancel()
	}
	if *cluster {
		runCluster(*only, *ops, *rounds, *limit)
	}
	if *quorum {
		runQuorum(*only, *ops, *rounds, *limit)
	}
}

// stats is Redis's command count and CPU seconds (user+sys).
func stats(ctx context.Context, rdb *redis.Client) (cmds int64, cpu float64) {
	info := rdb.Info(ctx, "stats", "cpu").Val()
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "total_commands_processed":
			cmds, _ = strconv.ParseInt(v, 10, 64)
		case "used_cpu_sys", "used_cpu_user":
			f, _ := strconv.ParseFloat(v, 64)
			cpu += f
		}
	}
	return cmds, cpu
}

// meter measures Redis's commands and CPU between its start and done,
// summed over the servers given (a cluster's masters), per unit of work;
// the INFO calls themselves are taken off.
type meter struct {
	rdbs []*redis.Client
	cmds int64
	cpu  float64
}

func startMeter(ctx context.Context, rdbs ...*redis.Client) *meter {
	m := &meter{rdbs: rdbs}
	m.cmds, m.cpu = m.sum(ctx)
	return m
}

func (m *meter) sum(ctx context.Context) (cmds int64, cpu float64) {
	for _, r := range m.rdbs {
		c, u := stats(ctx, r)
		cmds, cpu = cmds+c, cpu+u
	}
	return cmds, cpu
}

func (m *meter) done(ctx context.Context, units int) string {
	cmds, cpu := m.sum(ctx)
	return fmt.Sprintf("cmds_per_op=%.1f redis_cpu_us_per_op=%.1f",
		float64(cmds-m.cmds-int64(len(m.rdbs)))/float64(units), (cpu-m.cpu)*1e6/float64(units))
}

func uncontended(ctx context.Context, l lib, addr string, admin *redis.Client, n int) string {
	return uncontendedOn(ctx, l, addr, []*redis.Client{admin}, n)
}

// uncontendedOn is uncontended with Redis's figures summed over admins.
func uncontendedOn(ctx context.Context, l lib, addr string, admins []*redis.Client, n int) string {
	lock, closeFn := l.open(addr)
	defer closeFn()
	for i := 0; i < 50; i++ { // warm-up: connections and script caches
		if rel, err := lock(ctx, "warm"); err == nil {
			_ = rel()
		}
	}
	lat := make([]time.Duration, 0, n)
	m := startMeter(ctx, admins...)
	for i := 0; i < n; i++ {
		began := time.Now()
		rel, err := lock(ctx, "u")
		if err != nil {
			return "error=" + quote(err)
		}
		if err := rel(); err != nil {
			return "error=" + quote(err)
		}
		lat = append(lat, time.Since(began))
	}
	return fmt.Sprintf("ops=%d p50_us=%d p99_us=%d %s", n, pct(lat, 50).Microseconds(), pct(lat, 99).Microseconds(), m.done(ctx, n))
}

// handoff: a holder and a waiter blocked on the same lock; the time from
// the holder's release to the waiter holding it.
func handoff(ctx context.Context, l lib, addr string, rounds int) string {
	holder, c1 := l.open(addr)
	defer c1()
	waiter, c2 := l.open(addr)
	defer c2()
	var lat []time.Duration
	for i := 0; i < rounds; i++ {
		key := "h" + strconv.Itoa(i)
		rel, err := holder(ctx, key)
		if err != nil {
			return "error=" + quote(err)
		}
		got := make(chan time.Time, 1)
		errc := make(chan error, 1)
		go func() {
			r, err := waiter(ctx, key)
			if err != nil {
				errc <- err
				return
			}
			got <- time.Now()
			_ = r()
		}()
		time.Sleep(50 * time.Millisecond) // the waiter is blocked by now
		released := time.Now()
		if err := rel(); err != nil {
			return "error=" + quote(err)
		}
		select {
		case at := <-got:
			lat = append(lat, at.Sub(released))
		case err := <-errc:
			return fmt.Sprintf("rounds=%d error=%s", i, quote(err))
		case <-ctx.Done():
			return fmt.Sprintf("rounds=%d hung=true", i)
		}
	}
	return fmt.Sprintf("rounds=%d p50_us=%d p90_us=%d max_us=%d", rounds,
		pct(lat, 50).Microseconds(), pct(lat, 90).Microseconds(), pct(lat, 100).Microseconds())
}

// contended is the seed article's test: 20 workers, each with its own
// client, do 100 increments each of a counter read and written without
// atomicity (GET, then SET) under the lock. The counter must end at 2000.
func contended(ctx context.Context, l lib, addr string, admin *redis.Client) string {
	const workers, incs = 20, 100
	m := startMeter(ctx, admin)
	began := time.Now()
	var mu sync.Mutex
	var waits []time.Duration
	var failures int
	var firstErr error
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lock, closeFn := l.open(addr)
			defer closeFn()
			rdb := redis.NewClient(&redis.Options{Addr: addr})
			defer rdb.Close()
			for i := 0; i < incs && ctx.Err() == nil; i++ {
				t0 := time.Now()
				rel, err := lock(ctx, "counter-lock")
				mu.Lock()
				if err != nil {
					failures++
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				waits = append(waits, time.Since(t0))
				mu.Unlock()
				v, _ := rdb.Get(ctx, "counter").Int()
				rdb.Set(ctx, "counter", v+1, 0)
				_ = rel()
			}
		}()
	}
	wg.Wait()
	wall := time.Since(began)
	counter, _ := admin.Get(context.Background(), "counter").Int()
	extra := ""
	if failures > 0 {
		extra = fmt.Sprintf(" failed_locks=%d first_error=%s", failures, quote(firstErr))
	}
	if ctx.Err() != nil {
		extra += " hit_time_limit=true"
	}
	return fmt.Sprintf("wall_ms=%d counter=%d wait_p99_ms=%d wait_max_ms=%d %s%s", wall.Milliseconds(), counter,
		pct(waits, 99).Milliseconds(), pct(waits, 100).Milliseconds(),
		strings.ReplaceAll(m.done(context.Background(), workers*incs), "_per_op", "_per_inc"), extra)
}

// pct is the p-th percentile of d (p=100: the maximum).
func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func quote(err error) string {
	if err == nil {
		return `""`
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "deadline"
	}
	return strconv.Quote(err.Error())
}
