package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// bashFloor is the peers scenario with nothing but the processes: every
// second for d, the benchmark itself starts n `bash -c 'echo … >>
// FILE'` at once, the command each replica runs, from a goroutine each
// (os/exec, as jobd starts a run), with no Redis, no scheduler and no
// replica, and reads the lines the same way (analyse). Its lag is what
// this machine imposes on 200 runs a second before any claim: the
// reference for the lag target.
func bashFloor(dir string, n int, d time.Duration) string {
	out := filepath.Join(dir, "floor.out")
	began := time.Now()
	var wg sync.WaitGroup
	for at := began.Truncate(time.Second).Add(time.Second); at.Before(began.Add(d)); at = at.Add(time.Second) {
		time.Sleep(time.Until(at))
		tick := at.UTC().Format(time.RFC3339)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				line := fmt.Sprintf("echo i[%d] %s floor $EPOCHREALTIME >> %s", i, tick, out)
				_ = exec.Command("bash", "-c", line).Run()
			}()
		}
	}
	wg.Wait()
	a := analyse(out, began.Add(5*time.Second), began.Add(d-3*time.Second), n)
	return fmt.Sprintf("bench=scheduler scenario=floor lib=os/exec instances=%d seconds=%d runs=%d missed=%d "+
		"lag_p50_ms=%.1f lag_p99_ms=%.1f lag_max_ms=%.1f",
		n, int(d.Seconds()), a.runs, a.missed, a.lag(50), a.lag(99), a.lag(100))
}
