package jobs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// Status is where a run is, or how it ended: one typed value for the
// executor, the scheduler's records and the CLI alike.
type Status string

// Statuses a run passes through before it ends, set by the scheduler.
const (
	StatusWaiting Status = "waiting" // claimed; waiting for its lock (overlap: wait)
	StatusRunning Status = "running" // the command is running (or about to start)
)

// Statuses a claimed tick can end with. The scheduler sets skipped and
// abandoned, and lock_lost from a Result.Cause it recognizes; Execute sets
// the others.
const (
	StatusSkipped   Status = "skipped"   // claimed, but not run: the lock was held
	StatusAbandoned Status = "abandoned" // its replica died before the run ended
	StatusSucceeded Status = "succeeded" // exit code 0
	StatusFailed    Status = "failed"    // non-zero exit, or the command could not start
	StatusTimeout   Status = "timeout"   // ran past its timeout and was terminated
	StatusKilled    Status = "killed"    // terminated by a signal: a shutdown, or from outside
	StatusLockLost  Status = "lock_lost" // terminated because the job's lease was lost
)

// Final reports whether a run with this status has ended (it is neither
// waiting nor running, nor unknown).
func (s Status) Final() bool { return s != StatusWaiting && s != StatusRunning && s != "" }

// OutputTail is how much combined output a Result keeps.
const OutputTail = 4 << 10

// Launch is what Execute needs to start one run of an instance; the
// scheduler fills it in.
type Launch struct {
	Instance    *Instance
	ID          string
	ScheduledAt time.Time
	Replica     string
	LockKey     string
	Fence       int64
	// OnStart, if set, is called once the process has started, with the
	// time it started (the run's real start, for lag and logs).
	OnStart func(at time.Time)
	// Ready, if set, is asked right before the process starts; an error
	// means it must not start (for the scheduler: a lease that can no
	// longer be trusted). The run is then killed, never started, and the
	// error is its Result.Cause.
	Ready func() error
}

// Result is what a run did.
type Result struct {
	Status   Status    `json:"status"`
	ExitCode int       `json:"exit_code"`        // -1 when killed by a signal or never started
	Signal   string    `json:"signal,omitempty"` // the signal that ended it
	SignalNo int       `json:"signal_number,omitempty"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	// Started is false when no process was started (a bad command, a
	// context that had already ended, or Launch.Ready refusing the start:
	// a lease lost before the start).
	Started bool   `json:"started"`
	Output  string `json:"output,omitempty"` // the last OutputTail bytes of stdout and stderr
	Reason  string `json:"reason,omitempty"` // why it failed, in words
	// Cause is why the run was stopped from outside, so that the caller,
	// not Execute, decides what it means (a lease lost, a shutdown):
	// context.Cause(ctx) when the process was terminated, or never
	// started, because ctx ended; the error of Launch.Ready when that
	// refused the start. It is nil otherwise, timeouts included. The
	// status is then killed.
	Cause error `json:"-"`
}

// Env is the environment a run's command gets: jobd's own, the job's env,
// the param, and the JOBD_* variables.
func (r Launch) Env() []string {
	in := r.Instance
	env := os.Environ()
	for _, k := range sortedKeys(in.Env) {
		env = append(env, k+"="+in.Env[k])
	}
	env = append(env, in.ParamEnv()...)
	return append(env,
		"JOBD_JOB="+in.Job,
		"JOBD_INSTANCE="+in.Name,
		"JOBD_RUN_ID="+r.ID,
		"JOBD_SCHEDULED_AT="+r.ScheduledAt.UTC().Format(time.RFC3339),
		"JOBD_REPLICA="+r.Replica,
		"JOBD_LOCK_KEY="+r.LockKey,
		"JOBD_FENCE="+strconv.FormatInt(r.Fence, 10),
	)
}

// Execute runs the instance's command in its own process group and waits
// for it. On timeout, or when ctx ends, the whole group gets SIGTERM, then
// SIGKILL after kill_grace. When the main process exits, whatever it left
// in its group is killed, as systemd does with a service's cgroup. Output
// is logged line by line. Execute never panics on a bad command: a
// missing binary or workdir is a failed run with a reason.
func Execute(ctx context.Context, log *slog.Logger, r Launch) Result {
	x := &execution{
		launch: r,
		log:    log.With("job", r.Instance.Name, "run_id", r.ID),
		res:    Result{ExitCode: -1, Start: time.Now()},
		tail:   &tailBuffer{},
		budget: &lineBudget{left: r.Instance.OutputLines(), limit: r.Instance.OutputLines()},
	}
	if code, reason := unrunnable(r.Instance); reason != "" {
		return x.fail(code, "%s", reason)
	}
	// Never start a process whose context has ended: for the scheduler,
	// that is a lease no longer trusted, and another replica may hold the
	// lock already.
	if cause := startBlocker(ctx, r.Ready); cause != nil {
		return x.notStarted(cause)
	}
	cmd := exec.Command(r.Instance.Argv[0], r.Instance.Argv[1:]...)
	cmd.Dir = r.Instance.Workdir
	cmd.Env = r.Env()
	parentEnds, err := x.pipeOutput(cmd)
	if err != nil {
		return x.fail(-1, "pipe: %v", err)
	}
	proc, err := StartProc(cmd)
	for _, f := range parentEnds {
		f.Close() // the child has its copies; readers see EOF when it exits
	}
	if err != nil {
		x.readers.Wait()
		return x.fail(startErrorCode(err), "%v", err)
	}
	x.started(proc)
	x.supervise(ctx, proc)
	return x.finish(proc)
}

// execution is one Execute call: the run it was given, the readers of the
// process's output, and the Result being built. Splitting Execute into its
// steps needs a place for the state they share.
type execution struct {
	launch  Launch
	log     *slog.Logger
	res     Result
	tail    *tailBuffer
	readers sync.WaitGroup // one per output stream; done at EOF
	budget  *lineBudget    // output lines this run may still log
}

// unrunnable says why the instance's command cannot be run at all, with
// the exit code a shell would give (reason is "" when it can be tried).
// Checking the workdir first words its problem better than exec would.
func unrunnable(in *Instance) (code int, reason string) {
	if len(in.Argv) == 0 {
		return -1, "empty command"
	}
	if in.Workdir != "" {
		if st, err := os.Stat(in.Workdir); err != nil || !st.IsDir() {
			return 126, fmt.Sprintf("workdir %q is not a usable directory", in.Workdir)
		}
	}
	return 0, ""
}

// startBlocker is what forbids starting the process, or nil: the cause of
// a context that has ended, else the error of ready (asked only then).
func startBlocker(ctx context.Context, ready func() error) error {
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	if ready != nil {
		return ready()
	}
	return nil
}

// startErrorCode is the exit code recorded for a command StartProc could
// not start: the shell's, 127 or 126, carried by its StartError.
func startErrorCode(err error) int {
	var se *StartError
	if errors.As(err, &se) {
		return se.Code
	}
	return 126
}

// fail ends the run as failed, with code and the reason in words.
func (x *execution) fail(code int, format string, args ...any) Result {
	x.res.Status, x.res.ExitCode, x.res.End = StatusFailed, code, time.Now()
	x.res.Reason = fmt.Sprintf(format, args...)
	return x.res
}

// notStarted ends a run that was never started because of cause: killed,
// with cause as its Cause.
func (x *execution) notStarted(cause error) Result {
	x.res.Status, x.res.Cause, x.res.End = StatusKilled, cause, time.Now()
	x.res.Reason = "not started: " + cause.Error()
	return x.res
}

// pipeOutput gives cmd a pipe for stdout and one for stderr, each read
// line by line into the log and the output tail until EOF. It returns the
// write ends, which the caller closes once the child has its copies.
func (x *execution) pipeOutput(cmd *exec.Cmd) ([]*os.File, error) {
	var parentEnds []*os.File
	for _, stream := range []string{"stdout", "stderr"} {
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		parentEnds = append(parentEnds, pw)
		if stream == "stdout" {
			cmd.Stdout = pw
		} else {
			cmd.Stderr = pw
		}
		x.readers.Add(1)
		go func() {
			defer x.readers.Done()
			defer pr.Close()
			streamLines(pr, x.tail, x.log, stream, x.budget)
		}()
	}
	return parentEnds, nil
}

// started records the real start and tells the caller through OnStart.
func (x *execution) started(proc *Proc) {
	x.res.Start, x.res.Started = time.Now(), true
	x.log.Debug("process started", "pid", proc.Pid())
	if x.launch.OnStart != nil {
		x.launch.OnStart(x.res.Start)
	}
}

// supervise waits until the main process exits. On timeout, or when ctx
// ends, it terminates the group, once, and records which of them ended
// the run; finish records any other ending.
func (x *execution) supervise(ctx context.Context, proc *Proc) {
	in := x.launch.Instance
	timeout := time.NewTimer(in.Timeout)
	defer timeout.Stop()
	cancelled := ctx.Done()
	terminate := func(status Status, reason string) {
		x.res.Status, x.res.Reason = status, reason
		proc.Terminate(in.KillGrace)
		timeout.Stop()
		cancelled = nil
	}
	for {
		select {
		case <-proc.Done():
			return
		case <-timeout.C:
			terminate(StatusTimeout, fmt.Sprintf("timed out after %v", in.Timeout))
		case <-cancelled:
			x.res.Cause = context.Cause(ctx)
			terminate(StatusKilled, "stopped: "+x.res.Cause.Error())
		}
	}
}

// finish kills what the main process left in its group, waits for the
// rest of its output, and records how it exited. The status comes from
// the exit unless supervise already set one.
func (x *execution) finish(proc *Proc) Result {
	proc.KillGroup() // leftovers of the group, as systemd does with a unit's cgroup
	x.readers.Wait()
	res := &x.res
	res.End = time.Now()
	res.Output = x.tail.String()
	exit := proc.Wait()
	if exit.Signal != 0 {
		res.Signal, res.SignalNo = exit.Signal.String(), int(exit.Signal)
	} else {
		res.ExitCode = exit.Code
	}
	if res.Status == "" {
		switch {
		case exit.Signal != 0:
			res.Status, res.Reason = StatusKilled, "killed by signal: "+res.Signal
		case exit.Code == 0:
			res.Status = StatusSucceeded
		default:
			res.Status, res.Reason = StatusFailed, fmt.Sprintf("exit code %d", res.ExitCode)
		}
	}
	return *res
}

// maxLine bounds one logged line; longer lines are split.
const maxLine = 16 << 10

// lineBudget is how many output lines a run may still log, shared by
// its two streams; the first line over it is replaced by one notice.
type lineBudget struct {
	mu      sync.Mutex
	left    int
	noticed bool
	limit   int
}

// take reports whether one more line may be logged, and whether the
// notice that logging stopped is due now.
func (b *lineBudget) take() (log, notice bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.left > 0 {
		b.left--
		return true, false
	}
	if !b.noticed {
		b.noticed = true
		return false, true
	}
	return false, false
}

// lineReaders recycles the maxLine buffers of the output streams of
// ended runs: a run takes one only once its stream has written something,
// and gives it back at EOF, so that many short runs (a thousand due in the
// same second) do not each allocate two.
var lineReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, maxLine) }}

// streamLines logs r line by line (lines longer than maxLine are split)
// into log, with stream, within budget, and keeps its tail, until EOF.
func streamLines(r io.Reader, tail *tailBuffer, log *slog.Logger, stream string, budget *lineBudget) {
	// Wait for the first byte without a line buffer: a silent stream
	// (most runs' stderr) never takes one.
	var first [1]byte
	n, err := r.Read(first[:])
	for n == 0 && err == nil {
		n, err = r.Read(first[:])
	}
	if n == 0 {
		return
	}
	br := lineReaders.Get().(*bufio.Reader)
	br.Reset(io.MultiReader(bytes.NewReader(first[:n]), r))
	defer func() {
		br.Reset(nil) // drop r, keep the buffer
		lineReaders.Put(br)
	}()
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			tail.Write(line)
			text := string(line)
			if text[len(text)-1] == '\n' {
				text = text[:len(text)-1]
			}
			switch ok, notice := budget.take(); {
			case ok:
				log.Info("output", "stream", stream, "line", text)
			case notice && budget.limit > 0: // with 0, no line is logged on purpose
				log.Warn("output: no more lines of this run are logged (log_output_lines); the record keeps the tail",
					"log_output_lines", budget.limit)
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// tailBuffer keeps the last OutputTail bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

// Write appends p, dropping the oldest bytes beyond OutputTail; both
// output readers write here, hence the lock.
func (t *tailBuffer) Write(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - OutputTail; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
}

// String is the tail kept so far, for Result.Output.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
