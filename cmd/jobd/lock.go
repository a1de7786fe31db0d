package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/mutex"
)

// Defaults of `jobd lock`.
const (
	defaultKillGrace = 10 * time.Second
	releaseTimeout   = 5 * time.Second
)

// forwardedSignals reach the command's whole process group.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

func lockCommand() *cli.Command {
	return &cli.Command{
		Name:      "lock",
		Usage:     "run a command while holding a Redis lock (flock(1) across machines)",
		ArgsUsage: "KEY -- COMMAND [ARGS...]",
		Description: "Takes the lock KEY (the namespace the scheduler's `lock:` uses), runs COMMAND in\n" +
			"its own process group with JOBD_LOCK_KEY and JOBD_FENCE in its environment, renews\n" +
			"the lease every ttl/3, and releases the lock when COMMAND exits. INT, TERM, HUP,\n" +
			"QUIT, USR1 and USR2 sent to jobd are forwarded to COMMAND's process group. jobd\n" +
			"exits with COMMAND's exit code (128+N if signal N killed it).\n\n" +
			"If the lease is lost (refused renewal, or Redis unreachable for longer than is\n" +
			"safe), COMMAND's process group gets SIGTERM, then SIGKILL after --kill-grace, and\n" +
			"jobd exits 70. If the lock is not obtained within --wait, jobd exits 75 and names\n" +
			"the holder. If Redis is unreachable, it exits 69; if Redis refuses jobd's user,\n" +
			"password, permissions or database, it exits 78 with Redis's message.\n\n" +
			"Redis and the key prefix come from --redis/--prefix, then JOBD_REDIS_URL/\n" +
			"JOBD_PREFIX, then the redis: section of --config (read if given, or if the\n" +
			"default file exists), as for every command.\n\n" + exitCodesHelp,
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "ttl", Value: mutex.DefaultTTL, Usage: "lease length; renewed every ttl/3"},
			&cli.DurationFlag{Name: "wait", Value: 0, Usage: "how long to wait for the lock; 0 tries once"},
			&cli.StringFlag{Name: "label", Usage: "label shown by `jobd status` (default: \"jobd lock \" + the command's name)"},
			&cli.DurationFlag{Name: "kill-grace", Value: defaultKillGrace, Usage: "time between SIGTERM and SIGKILL when the lease is lost"},
		},
		Action: runLock,
	}
}

func runLock(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) < 2 {
		return exitf(exitUsage, "lock: usage: jobd lock [flags] KEY -- COMMAND [ARGS...]")
	}
	key, argv := args[0], args[1:]
	if argv[0] == "--" {
		argv = argv[1:]
	}
	if key == "" || len(argv) == 0 {
		return exitf(exitUsage, "lock: usage: jobd lock [flags] KEY -- COMMAND [ARGS...]")
	}
	if err := mutex.ValidName(key); err != nil {
		return exitf(exitUsage, "lock: KEY: %v", err)
	}
	ttl, wait, grace := c.Duration("ttl"), c.Duration("wait"), c.Duration("kill-grace")
	if ttl < mutex.MinTTL {
		return exitf(exitUsage, "lock: --ttl %v is shorter than %v (keep-alive renews every ttl/3)", ttl, mutex.MinTTL)
	}
	if wait < 0 || grace < 0 {
		return exitf(exitUsage, "lock: --wait and --kill-grace must not be negative")
	}
	label := c.String("label")
	if label == "" {
		label = "jobd lock " + filepath.Base(argv[0]) // never the arguments: they may hold secrets
	}
	log, err := newLogger(c)
	if err != nil {
		return err
	}

	// Signals are caught from the start, so that Ctrl-C while waiting for
	// the lock ends the wait instead of killing jobd mid-acquisition.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()

	// The file's redis: settings apply here as for the daemon, or this
	// lock would be taken on another Redis than the jobs sharing it.
	cfg, err := optionalConfig(c)
	if err != nil {
		return err
	}
	target := resolveRedis(c, cfg)
	rdb, err := connectRedis(ctx, target)
	if err != nil {
		return err
	}
	defer rdb.Close()
	mc := mutex.New(rdb, mutex.WithPrefix(target.prefix), mutex.WithLogger(log))
	defer mc.Close()
	m := mc.NewMutex(key, mutex.WithTTL(ttl), mutex.WithWait(wait), mutex.WithLabel(label))

	if err := acquire(ctx, m, wait > 0, sigs, cancel); err != nil {
		return lockError(ctx, mc, target, key, err)
	}
	log.Debug("lock obtained", "lock", key, "fence", m.Fence())

	kctx, stopKeepAlive := m.KeepAlive(ctx)
	var code int
	var lost, runErr error
	// Never start the command under a lease that can no longer be trusted
	// (the acquisition took longer than the lease, or jobd was paused).
	started := false
	if lost = m.Valid(); lost == nil {
		started = true
		code, lost, runErr = runChild(kctx, argv, key, m.Fence(), grace, sigs)
	}
	stopKeepAlive()
	// After a lost lease the release is a courtesy to the next holder;
	// don't let a dead Redis hold up the exit.
	timeout := releaseTimeout
	if lost != nil {
		timeout = min(timeout, ttl/3)
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	uerr := m.Unlock(rctx)
	rcancel()
	switch {
	case runErr != nil:
		return runErr
	case lost != nil && !started:
		return exitf(exitLeaseLost, "lock %q: %v; the command was not started", key, lost)
	case lost != nil:
		return exitf(exitLeaseLost, "lock %q: %v; the command was terminated", key, lost)
	case uerr != nil && errors.Is(uerr, mutex.ErrLost):
		// The command finished, but the lease ended before it did: the
		// exclusion may not have held.
		return exitf(exitLeaseLost, "lock %q: %v before the command finished", key, uerr)
	case uerr != nil:
		log.Warn("release failed; the lock expires by itself", "lock", key, "err", uerr)
	}
	return &exitError{code: code}
}

// acquire takes the lock; a forwarded signal while waiting cancels the wait.
func acquire(ctx context.Context, m *mutex.Mutex, wait bool, sigs <-chan os.Signal, cancel context.CancelFunc) error {
	if !wait {
		return m.TryLock(ctx)
	}
	done := make(chan error, 1)
	go func() { done <- m.Lock(ctx) }()
	select {
	case err := <-done:
		return err
	case <-sigs:
		cancel()
		return <-done
	}
}

// lockError maps a failed acquisition to exit 75 (naming the holder), or
// 69 or 78 (see redisFailure).
func lockError(ctx context.Context, mc *mutex.Client, target redisTarget, key string, err error) error {
	if !errors.Is(err, mutex.ErrNotObtained) {
		return redisFailure(target, err)
	}
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
	defer cancel()
	info, ok, ierr := mc.Inspect(ictx, key)
	switch {
	case ierr != nil:
		return exitf(exitNotObtained, "lock %q not obtained (holder unknown: %v)", key, ierr)
	case !ok:
		return exitf(exitNotObtained, "lock %q not obtained (it was released meanwhile; try again)", key)
	}
	holder := fmt.Sprintf("%s (host %s, pid %d", info.Owner, info.Host, info.PID)
	if info.Label != "" {
		holder += ", " + strconv.Quote(info.Label)
	}
	return exitf(exitNotObtained, "lock %q not obtained: held by %s) for %v, fence %d, expires in %v",
		key, holder, info.HeldFor.Round(time.Millisecond), info.Fence, info.TTL.Round(time.Millisecond))
}

// runChild runs argv in its own process group, forwarding signals to the
// group. When ctx ends (the lease was lost) the group gets SIGTERM, then
// SIGKILL after grace; lost reports why.
func runChild(ctx context.Context, argv []string, key string, fence int64, grace time.Duration, sigs <-chan os.Signal) (code int, lost error, err error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "JOBD_LOCK_KEY="+key, "JOBD_FENCE="+strconv.FormatInt(fence, 10))
	proc, err := jobs.StartProc(cmd)
	if err != nil {
		code := exitCannotExec
		var se *jobs.StartError
		if errors.As(err, &se) {
			code = se.Code // 126 or 127, as exitCannotExec and exitNotFound
		}
		return 0, nil, exitf(code, "lock: %s: %v", argv[0], err)
	}
	leaseLost := ctx.Done()
	for {
		select {
		case s := <-sigs:
			proc.Signal(s.(syscall.Signal))
		case <-leaseLost:
			leaseLost = nil
			lost = context.Cause(ctx)
			proc.Terminate(grace)
		case <-proc.Done():
			if lost != nil {
				proc.KillGroup() // leftovers of the group
			}
			return proc.Wait().ShellCode(), lost, nil
		}
	}
}
