package jobs

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestProc: the one process supervisor starts a command in its own group,
// reports the shell's exit codes, and stops a command that ignores TERM.
func TestProc(t *testing.T) {
	noexec := t.TempDir() + "/noexec"
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		argv      []string
		terminate bool
		startCode int // the StartError's, 0: it starts
		code      int
	}{
		{"exit status", []string{"sh", "-c", "exit 3"}, false, 0, 3},
		{"killed by a signal is 128+N", []string{"sh", "-c", "kill -9 $$"}, false, 0, 137},
		{"TERM then KILL", []string{"sh", "-c", "trap '' TERM; echo; sleep 30"}, true, 0, 137},
		{"not found", []string{"/nonexistent/cmd"}, false, 127, 0},
		{"cannot start", []string{noexec}, false, 126, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(tt.argv[0], tt.argv[1:]...)
			out, _ := cmd.StdoutPipe()
			p, err := StartProc(cmd)
			var se *StartError
			if errors.As(err, &se) != (tt.startCode != 0) || (se != nil && se.Code != tt.startCode) {
				t.Fatalf("start: %v, want a start error with code %d", err, tt.startCode)
			}
			if err != nil {
				return
			}
			if tt.terminate {
				_, _ = out.Read(make([]byte, 1)) // the trap is set
				began := time.Now()
				p.Terminate(200 * time.Millisecond)
				p.Terminate(time.Hour) // a second call changes nothing
				if e := p.Wait(); e.Signal != syscall.SIGKILL || time.Since(began) > 5*time.Second {
					t.Fatalf("exit %+v after %v", e, time.Since(began))
				}
			}
			if got := p.Wait().ShellCode(); got != tt.code {
				t.Fatalf("exit code %d, want %d", got, tt.code)
			}
			p.Terminate(time.Millisecond) // after the end: nothing to do
			p.KillGroup()
		})
	}
}
