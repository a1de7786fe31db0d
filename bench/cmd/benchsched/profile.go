package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuProfile takes a CPU profile of the jobd replica whose --http --pprof
// listener is addr: it starts after `after`, lasts d, and is written to
// path. It runs on its own goroutine; the function returned waits for it.
func cpuProfile(addr string, after, d time.Duration, path string) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(after)
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds()))
		fetch(url, path, d+30*time.Second)
	}()
	return func() { <-done }
}

// fetch writes what url answers to path; a failure ends the benchmark.
func fetch(url, path string, timeout time.Duration) {
	client := http.Client{Timeout: timeout}
	resp, err := client.Get(url)
	check(err)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		check(fmt.Errorf("GET %s: %s: %s", url, resp.Status, b))
	}
	f, err := os.Create(path)
	check(err)
	_, err = io.Copy(f, resp.Body)
	check(err)
	check(f.Close())
	fmt.Fprintln(os.Stderr, "benchsched: wrote", path)
}

// memStats are a replica's allocation counters (runtime.MemStats, exact,
// not sampled).
type memStats struct {
	totalAlloc, mallocs uint64
	numGC               int
}

// readMemStats reads the MemStats that the text form of the replica's
// allocs profile ends with.
func readMemStats(addr string) memStats {
	client := http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get("http://" + addr + "/debug/pprof/allocs?debug=1")
	check(err)
	defer resp.Body.Close()
	var m memStats
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "# "), " = ")
		if !ok {
			continue
		}
		n, _ := strconv.ParseUint(v, 10, 64)
		switch k {
		case "TotalAlloc":
			m.totalAlloc = n
		case "Mallocs":
			m.mallocs = n
		case "NumGC":
			m.numGC = int(n)
		}
	}
	check(sc.Err())
	if m.mallocs == 0 {
		check(fmt.Errorf("no MemStats in %s's allocs profile", addr))
	}
	return m
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().String()
}

// copyFile copies src to dst (executable).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
