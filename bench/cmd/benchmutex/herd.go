package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The herd: 100 waiters on one lock, in 4 OS processes of 25 goroutines
// each (one client per process), each waiter doing herdIncs increments of
// a counter under the lock. Redis commands per increment should not grow
// with the number of waiters: a release must wake one waiter, not all.
const (
	herdProcs   = 4
	herdWaiters = 25 // per process
	herdIncs    = 4  // per waiter
)

func herd(ctx context.Context, l lib, addr string, admin *redis.Client, limit time.Duration) string {
	self, err := os.Executable()
	if err != nil {
		return "error=" + quote(err)
	}
	m := startMeter(ctx, admin)
	began := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, herdProcs)
	for p := 0; p < herdProcs; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, self, "-herd-worker", l.name, "-addr", addr, "-limit", limit.String())
			cmd.Stderr = os.Stderr
			errs[p] = cmd.Run()
		}()
	}
	wg.Wait()
	wall := time.Since(began)
	counter, _ := admin.Get(context.Background(), "counter").Int()
	want := herdProcs * herdWaiters * herdIncs
	out := fmt.Sprintf("waiters=%d procs=%d wall_ms=%d counter=%d want=%d %s", herdProcs*herdWaiters, herdProcs,
		wall.Milliseconds(), counter, want, strings.ReplaceAll(m.done(context.Background(), want), "_per_op", "_per_inc"))
	for _, err := range errs {
		if err != nil {
			return out + " worker_error=" + quote(err)
		}
	}
	return out
}

// herdWorker is one herd process: herdWaiters goroutines sharing one
// client of the library.
func herdWorker(name, addr string, limit time.Duration) int {
	var l lib
	for _, c := range libs() {
		if c.name == name {
			l = c
		}
	}
	if l.open == nil {
		fmt.Fprintln(os.Stderr, "benchmutex: no library", name)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	lock, closeFn := l.open(addr)
	defer closeFn()
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: herdWaiters})
	defer rdb.Close()
	var wg sync.WaitGroup
	failed := 0
	var mu sync.Mutex
	for w := 0; w < herdWaiters; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < herdIncs; i++ {
				rel, err := lock(ctx, "herd-lock")
				if err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
					continue
				}
				v, _ := rdb.Get(ctx, "counter").Int()
				rdb.Set(ctx, "counter", strconv.Itoa(v+1), 0)
				_ = rel()
			}
		}()
	}
	wg.Wait()
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "benchmutex: %s: %d locks not obtained\n", name, failed)
		return 1
	}
	return 0
}
