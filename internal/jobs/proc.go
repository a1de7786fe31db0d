package jobs

import (
	"errors"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// StartError is why StartProc could not start a command. It carries the
// shell's exit code for it, which the executor records and `jobd lock`
// exits with: 127 when the command does not exist, 126 when it exists but
// could not be started.
type StartError struct {
	Code int
	Err  error
}

// Error says whether the command was missing or could not start, and why.
func (e *StartError) Error() string {
	if e.Code == 127 {
		return "command not found: " + e.Err.Error()
	}
	return "could not start: " + e.Err.Error()
}

// Unwrap gives the exec error, for errors.Is(err, exec.ErrNotFound) and the like.
func (e *StartError) Unwrap() error { return e.Err }

// Proc is a command running in its own process group, so that a signal
// reaches everything it started. The job executor and `jobd lock` both
// run their commands through it: this is the one place that starts,
// signals, stops and reaps a process group and reads how it ended.
type Proc struct {
	cmd  *exec.Cmd
	pgid int
	done chan struct{}
	err  error // cmd.Wait's

	mu   sync.Mutex
	kill *time.Timer // Terminate's SIGKILL, stopped once the process is reaped
}

// StartProc starts cmd in a new process group (it sets cmd.SysProcAttr).
// A failure to start is a *StartError.
func StartProc(cmd *exec.Cmd) (*Proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return nil, &StartError{Code: 127, Err: err}
		}
		return nil, &StartError{Code: 126, Err: err}
	}
	p := &Proc{cmd: cmd, pgid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { // owned by the process: it ends when the process is reaped
		err := cmd.Wait()
		p.mu.Lock()
		defer p.mu.Unlock()
		p.err = err
		if p.kill != nil {
			p.kill.Stop() // the group id may be reused from now on
		}
		close(p.done)
	}()
	return p, nil
}

// Pid is the main process's pid, which is also the group's id.
func (p *Proc) Pid() int { return p.pgid }

// Done is closed once the main process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Signal sends sig to the whole process group.
func (p *Proc) Signal(sig syscall.Signal) { _ = syscall.Kill(-p.pgid, sig) }

// Terminate sends SIGTERM to the group and, if the main process has not
// exited after grace, SIGKILL. It does not wait; a second call does
// nothing.
func (p *Proc) Terminate(grace time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return
	default:
	}
	if p.kill != nil {
		return
	}
	p.Signal(syscall.SIGTERM)
	p.kill = time.AfterFunc(grace, func() { p.Signal(syscall.SIGKILL) })
}

// KillGroup kills whatever is left in the group (after the main process
// exited, its children may still run).
func (p *Proc) KillGroup() { p.Signal(syscall.SIGKILL) }

// Exit is how a process ended.
type Exit struct {
	Code   int            // the exit status; -1 when a signal killed it
	Signal syscall.Signal // the signal that killed it, or 0
}

// ShellCode is the shell's convention: the exit status, or 128+N when
// signal N killed the process.
func (e Exit) ShellCode() int {
	if e.Signal != 0 {
		return 128 + int(e.Signal)
	}
	return e.Code
}

// Wait waits until the main process has exited and says how it ended.
func (p *Proc) Wait() Exit {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case ok && st.Signaled():
		return Exit{Code: -1, Signal: st.Signal()}
	case ok:
		return Exit{Code: st.ExitStatus()}
	case p.err != nil:
		return Exit{Code: 1}
	}
	return Exit{}
}
