package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/redistest"
)

// TestSystemdNotify: under Type=notify, jobd sends READY=1 once running,
// WATCHDOG=1 at half of WatchdogSec, and STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	url := redistest.SharedURL(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cfgPath := filepath.Join(dir, "jobs.yaml")
	writeFile(t, cfgPath, "jobs:\n  - name: a\n    schedule: \"@daily\"\n    command: [\"true\"]\n")
	cmd := exec.Command(jobdBin, "--redis", url, "--prefix", prefix(t), "-c", cfgPath, "run", "--replica-id", "n1")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000") // WatchdogSec=0.4s
	cmd.Stdout, cmd.Stderr = &redistest.Buffer{}, &redistest.Buffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	got := map[string]int{}
	buf := make([]byte, 256)
	deadline := time.Now().Add(10 * time.Second)
	stopped := false
	for time.Now().Before(deadline) && got["STOPPING=1"] == 0 {
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := conn.Read(buf); err == nil {
			for _, line := range strings.Split(strings.TrimSpace(string(buf[:n])), "\n") {
				got[line]++
			}
		}
		if !stopped && got["READY=1"] > 0 && got["WATCHDOG=1"] >= 2 {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			stopped = true
		}
	}
	if got["READY=1"] == 0 || got["WATCHDOG=1"] < 2 || got["STOPPING=1"] == 0 {
		t.Fatalf("notifications %v; stderr: %s", got, cmd.Stderr.(*redistest.Buffer).String())
	}
}
