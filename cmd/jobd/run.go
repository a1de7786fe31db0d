package main

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/urfave/cli/v2"

	"github.com/jobd/jobd/internal/daemon"
	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/metrics"
	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redisconn"
	"github.com/jobd/jobd/internal/scheduler"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run the scheduler daemon in the foreground",
		Description: "Runs every job of --config on its ticks; with several replicas on one Redis,\n" +
			"each tick runs at most once (exactly once while a replica reaches Redis in time;\n" +
			"see the README's guarantees). SIGTERM/SIGINT: stop claiming, let running jobs\n" +
			"finish for --shutdown-grace, then terminate them, record them, release their locks\n" +
			"and exit 0; a second signal terminates them at once. SIGHUP: reload --config; an\n" +
			"invalid file is logged and the old schedule keeps running. If Redis is\n" +
			"unreachable, at start too, nothing is claimed or started until it is back, and\n" +
			"/readyz and systemd's STATUS= say so. If Redis refuses jobd's user, password,\n" +
			"permissions or database before jobd first works with it, jobd exits 78.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "replica-id", EnvVars: []string{"JOBD_REPLICA_ID"},
				Usage: "this replica's id (default: HOSTNAME-PID)"},
			&cli.DurationFlag{Name: "shutdown-grace", Value: scheduler.DefaultShutdownGrace, EnvVars: []string{"JOBD_SHUTDOWN_GRACE"},
				Usage: "how long running jobs may finish on shutdown"},
			&cli.StringFlag{Name: "http", EnvVars: []string{"JOBD_HTTP"},
				Usage: "serve /metrics, /healthz, /readyz and the read-only dashboard (/) on this address, such as 127.0.0.1:9187 (default: off)"},
			&cli.DurationFlag{Name: "splay", Value: scheduler.DefaultSplay, EnvVars: []string{"JOBD_SPLAY"},
				Usage: "a replica not first in line for a tick claims it within this long after the first, in case the first is gone (at most 2s)"},
			&cli.BoolFlag{Name: "pprof", EnvVars: []string{"JOBD_PPROF"},
				Usage: "also serve Go's profiler at /debug/pprof/ on the --http listener (needs --http; keep that address private)"},
		},
		Action: runDaemon,
	}
}

// runDaemon wires a replica: Redis, metrics, the mutex, the scheduler
// and, with --http, the HTTP endpoints; the daemon package runs it.
func runDaemon(c *cli.Context) error {
	if d := c.Duration("splay"); d < 0 || d > scheduler.MaxSplay {
		return usagef("jobd run", "--splay %v: want between 0 and %v", d, scheduler.MaxSplay)
	}
	if d := c.Duration("shutdown-grace"); d < 0 {
		return usagef("jobd run", "--shutdown-grace %v: must not be negative", d)
	}
	if c.Bool("pprof") && c.String("http") == "" {
		return usagef("jobd run", "--pprof: needs --http ADDR, the listener it is served on")
	}
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(c, false)
	if err != nil {
		return err
	}
	target, nodes, err := openRedis(c, cfg)
	if err != nil {
		return err
	}
	defer nodes.close()
	// The scheduler and the daemon add the replica to their own lines;
	// rlog adds it to the others' (the mutex's, the HTTP server's, this
	// function's).
	id := cmp.Or(c.String("replica-id"), mutex.DefaultOwner())
	rlog := log.With("replica", id)
	// A daemon waits for an unreachable Redis (go-redis reconnects, and
	// the scheduler claims nothing until Redis answers); a refusal of its
	// user, password, permissions or database will not fix itself: exit 78.
	startErr := target.Check(c.Context, nodes)
	switch {
	case errors.Is(startErr, redisconn.ErrRefused):
		return startErr
	case startErr != nil:
		rlog.Error("redis unreachable at start; waiting for it (nothing is claimed until it answers)",
			"redis", target.String(), "err", startErr.Error())
	}
	var sched *scheduler.Scheduler
	m := newMetrics(func() *scheduler.Scheduler { return sched })
	m.SetConfig(cfg)
	mc := nodes.locks(target, rlog, mutex.WithOwner(id), mutex.WithEvents(m.LeaseEvent))
	defer mc.Close()
	store := nodes.store(target)
	defer store.Close()
	sched = scheduler.New(cfg, store, locker{mc},
		scheduler.WithLogger(log), scheduler.WithReplicaID(mc.Owner()), scheduler.WithVersion(version),
		scheduler.WithShutdownGrace(c.Duration("shutdown-grace")), scheduler.WithSplay(c.Duration("splay")),
		scheduler.WithObserver(m))
	if addr := c.String("http"); addr != "" {
		dash := newDashboard(scheduler.NewInspector(store), mc, target, sched.Config, cfg.File, rlog)
		var opts []metrics.ServeOption
		if c.Bool("pprof") {
			opts = append(opts, metrics.WithPprof())
		}
		// Ready while Redis answers a Ping and the scheduler's own work
		// with Redis succeeds.
		ping := func(ctx context.Context) error {
			if !sched.RedisOK() {
				return errors.New("the scheduler's last Redis operation failed")
			}
			return target.Ping(ctx, nodes)
		}
		stopHTTP, err := serveHTTP(c.Context, addr, m, ping, sched.ClockOK, dash, rlog, opts...)
		if err != nil {
			return err
		}
		defer stopHTTP()
		defer m.KeepLastSuccess(c.Context, store, sched.Config)()
	}
	return daemon.Run(c.Context, sched, target, nodes, startErr, daemon.WithLogger(log),
		daemon.WithReload(func() (*jobs.Config, error) { return jobs.Load(cfg.File) }, m.Reloaded))
}

// newMetrics and serveHTTP wire the daemon's metrics and HTTP endpoints
// (see the metrics package), and the dashboard at / (nil: none), with
// opts (the profiler); a bad --http is exit 2.
func newMetrics(sched func() *scheduler.Scheduler) *metrics.Metrics { return metrics.New(sched) }

func serveHTTP(ctx context.Context, addr string, m *metrics.Metrics, ping func(context.Context) error, clockOK func() bool, dash http.Handler, log *slog.Logger, opts ...metrics.ServeOption) (stop func(), err error) {
	if stop, err = metrics.Serve(ctx, addr, m, ping, clockOK, dash, log, opts...); err != nil {
		return nil, exitf(exitUsage, "--http %s: %v", addr, err)
	}
	return stop, nil
}
