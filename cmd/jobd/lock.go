package main

import (
	"cmp"
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jobd/jobd/internal/lockrun"
	"github.com/jobd/jobd/internal/mutex"
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
			"the holder; a signal that ends the wait exits 128+N (Ctrl-C: 130) without running\n" +
			"COMMAND. If Redis is unreachable, it exits 69; if Redis refuses jobd's user,\n" +
			"password, permissions or database, it exits 78 with Redis's message.\n\n" +
			"Redis and the key prefix come from --redis/--prefix, then JOBD_REDIS_URL/\n" +
			"JOBD_PREFIX, then the redis: section of --config (read if given, or if the\n" +
			"default file exists), as for every command.\n\n" + exitCodesHelp,
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "ttl", Value: mutex.DefaultTTL, Usage: "lease length; renewed every ttl/3"},
			&cli.DurationFlag{Name: "wait", Value: 0, Usage: "how long to wait for the lock; 0 tries once"},
			&cli.StringFlag{Name: "label", Usage: "label shown by jobd status (default: \"jobd lock \" + the command's name)"},
			&cli.DurationFlag{Name: "kill-grace", Value: 10 * time.Second, Usage: "time between SIGTERM and SIGKILL when the lease is lost"},
		},
		Action: runLock,
	}
}

func runLock(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) > 1 && args[1] == "--" {
		args = append([]string{args[0]}, args[2:]...)
	}
	if len(args) < 2 || args[0] == "" {
		return usagef("jobd lock", "lock: usage: jobd lock [flags] KEY -- COMMAND [ARGS...]")
	}
	key, argv := args[0], args[1:]
	if err := mutex.ValidName(key); err != nil {
		return exitf(exitUsage, "lock: KEY: %v", err)
	}
	ttl, wait, grace := c.Duration("ttl"), c.Duration("wait"), c.Duration("kill-grace")
	if ttl < mutex.MinTTL {
		return usagef("jobd lock", "lock: --ttl %v is shorter than %v (keep-alive renews every ttl/3)", ttl, mutex.MinTTL)
	}
	if wait < 0 || grace < 0 {
		return usagef("jobd lock", "lock: --wait and --kill-grace must not be negative")
	}
	// Signals are caught from the start, so that Ctrl-C while waiting for
	// the lock ends the wait instead of killing jobd mid-acquisition.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	// The file's redis: settings apply here as for the daemon, or this
	// lock would be taken on another Redis than the jobs sharing it.
	e, err := connect(c, false)
	if err != nil {
		return err
	}
	defer e.close()
	label := cmp.Or(c.String("label"), "jobd lock "+filepath.Base(argv[0])) // never the arguments: they may hold secrets
	code, err := lockrun.Run(c.Context, e.locks, key, argv, lockrun.WithTTL(ttl), lockrun.WithWait(wait), lockrun.WithLabel(label),
		lockrun.WithKillGrace(grace), lockrun.WithSignals(sigs), lockrun.WithLogger(e.log))
	switch {
	case errors.Is(err, lockrun.ErrRedis):
		return e.target.Fail(err)
	case err != nil:
		return err
	}
	return &exitError{code: code}
}
