package mutex_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/mutex"
)

// helperMain runs inside a re-executed test binary: it takes the lock
// JOBD_HELPER_N times, each time doing a non-atomic GET then SET of a
// counter, and prints "fence enter_ns exit_ns" for every critical section.
func helperMain(mode string) int {
	url := os.Getenv("JOBD_TEST_REDIS_URL")
	pfx := os.Getenv("JOBD_HELPER_PREFIX")
	n, _ := strconv.Atoi(os.Getenv("JOBD_HELPER_N"))
	hold, _ := time.ParseDuration(os.Getenv("JOBD_HELPER_HOLD"))
	rdb, err := dial(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer rdb.Close()
	c := mutex.New(rdb, mutex.WithPrefix(pfx))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	counter := pfx + ":counter"
	for i := 0; i < n; i++ {
		m := c.NewMutex("counter", mutex.WithTTL(10*time.Second))
		err := m.Do(ctx, func(ctx context.Context) error {
			enter := time.Now().UnixNano()
			v, err := rdb.Get(ctx, counter).Int()
			if err != nil && err != redis.Nil {
				return err
			}
			if hold > 0 {
				time.Sleep(hold)
			}
			if err := rdb.Set(ctx, counter, v+1, 0).Err(); err != nil {
				return err
			}
			fmt.Fprintf(out, "%d %d %d\n", m.Fence(), enter, time.Now().UnixNano())
			return nil
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", mode, err)
			return 1
		}
	}
	return 0
}

type section struct{ fence, enter, exit int64 }

// runHelpers starts procs real processes on the shared server and
// collects their sections.
func runHelpers(t *testing.T, procs, n int, hold time.Duration) []section {
	return runHelpersOn(t, "", procs, n, hold)
}

// runHelpersOn is runHelpers on the Redis at url ("": the shared server).
func runHelpersOn(t *testing.T, url string, procs, n int, hold time.Duration) []section {
	t.Helper()
	var (
		mu   sync.Mutex
		all  []section
		wg   sync.WaitGroup
		errs = make(chan error, procs)
	)
	for p := 0; p < procs; p++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(),
			"JOBD_MUTEX_HELPER=counter",
			"JOBD_HELPER_PREFIX="+prefix(t),
			"JOBD_HELPER_N="+strconv.Itoa(n),
			"JOBD_HELPER_HOLD="+hold.String())
		if url != "" {
			cmd.Env = append(cmd.Env, "JOBD_TEST_REDIS_URL="+url)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				errs <- fmt.Errorf("helper: %v: %s", err, stderr.String())
				return
			}
			sc := bufio.NewScanner(&stdout)
			mu.Lock()
			defer mu.Unlock()
			for sc.Scan() {
				var s section
				if _, err := fmt.Sscan(sc.Text(), &s.fence, &s.enter, &s.exit); err != nil {
					errs <- fmt.Errorf("bad helper line %q", sc.Text())
					return
				}
				all = append(all, s)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	return all
}

// TestMultiProcessCounter is the seed's test: 20 processes do 100
// lock-protected GET+SET increments each; the counter must be exactly 2000.
func TestMultiProcessCounter(t *testing.T) {
	_, rdb := newClient(t)
	sections := runHelpers(t, 20, 100, 0)
	got, err := rdb.Get(context.Background(), prefix(t)+":counter").Int()
	if err != nil {
		t.Fatal(err)
	}
	if got != 2000 || len(sections) != 2000 {
		t.Fatalf("counter = %d, sections = %d, want 2000 and 2000", got, len(sections))
	}
}

// TestOverlapDetector: critical sections recorded by many processes never
// overlap, and fences strictly increase in order of entry.
func TestOverlapDetector(t *testing.T) {
	newClient(t)
	sections := runHelpers(t, 8, 40, 200*time.Microsecond)
	if len(sections) != 320 {
		t.Fatalf("%d sections, want 320", len(sections))
	}
	sort.Slice(sections, func(i, j int) bool { return sections[i].enter < sections[j].enter })
	for i := 1; i < len(sections); i++ {
		prev, cur := sections[i-1], sections[i]
		if cur.enter < prev.exit {
			t.Errorf("overlap: section %d (fence %d) entered %dns before section %d (fence %d) exited",
				i, cur.fence, prev.exit-cur.enter, i-1, prev.fence)
		}
		if cur.fence <= prev.fence {
			t.Errorf("fence order: %d entered after %d", cur.fence, prev.fence)
		}
	}
}
