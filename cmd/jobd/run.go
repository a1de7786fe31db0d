package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/urfave/cli/v2"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/scheduler"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run the scheduler daemon in the foreground",
		Description: "Runs every job of --config on its ticks; with several replicas on one Redis,\n" +
			"each tick runs exactly once. SIGTERM/SIGINT: stop claiming, let running jobs\n" +
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
				Usage: "serve /metrics, /healthz and /readyz on this address, such as 127.0.0.1:9187 (default: off)"},
			&cli.DurationFlag{Name: "splay", Value: scheduler.DefaultSplay, EnvVars: []string{"JOBD_SPLAY"},
				Usage: "claims are spread over this long after each tick, later on busier replicas (at most 2s)"},
		},
		Action: runDaemon,
	}
}

func runDaemon(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(c.Context)
	defer stop()
	target := resolveRedis(c, cfg)
	rdb, err := newRedisClient(target)
	if err != nil {
		return err
	}
	defer rdb.Close()
	// A daemon waits for an unreachable Redis (go-redis reconnects, and
	// the scheduler claims nothing until Redis answers); a refusal of its
	// user, password, permissions or database will not fix itself: exit 78.
	startErr := checkRedis(ctx, rdb, target)
	switch {
	case errors.Is(startErr, errRedisRefused):
		return startErr
	case startErr != nil:
		log.Error("redis unreachable at start; waiting for it (nothing is claimed until it answers)",
			"redis", target.String(), "err", reason(startErr))
	}
	prefix := target.prefix
	replica := c.String("replica-id")
	host, _ := os.Hostname()
	if replica == "" {
		replica = host + "-" + strconv.Itoa(os.Getpid())
	}
	var sched *scheduler.Scheduler
	m := newMetrics(func() *scheduler.Scheduler { return sched })
	m.setConfig(cfg)
	mc := mutex.New(rdb, mutex.WithPrefix(prefix), mutex.WithOwner(replica), mutex.WithLogger(log), mutex.WithEvents(m.leaseEvent))
	defer mc.Close()
	store := scheduler.NewStore(rdb, prefix)
	sched = scheduler.New(cfg, store, locker{mc},
		scheduler.WithLogger(log), scheduler.WithReplicaID(replica), scheduler.WithVersion(version),
		scheduler.WithShutdownGrace(c.Duration("shutdown-grace")), scheduler.WithSplay(c.Duration("splay")),
		scheduler.WithObserver(m))
	if addr := c.String("http"); addr != "" {
		stopHTTP, err := serveHTTP(ctx, addr, m, rdb, sched.ClockOK, log)
		if err != nil {
			return err
		}
		defer stopHTTP()
		stopRefresh := every(ctx, 15*time.Second, func(ctx context.Context) {
			m.refreshLastSuccess(ctx, store, sched.Config())
		})
		defer stopRefresh()
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()
	refused, stopWatch := watchRedis(ctx, rdb, target, startErr, func() int { return len(sched.Config().Instances) }, log)
	defer stopWatch()
	stopWatchdog := notifySystemd(ctx, log)
	defer stopWatchdog()
	stopping := false
	for {
		select {
		case err := <-done:
			return err
		case err := <-refused:
			log.Error("redis refused jobd; stopping", "redis", target.String(), "err", reason(err))
			systemdNotify(daemon.SdNotifyStopping)
			stop()
			<-done
			return err
		case sig := <-sigs:
			switch {
			case sig == syscall.SIGHUP:
				systemdNotify(daemon.SdNotifyReloading)
				if cfg, ok := reload(c, log); ok {
					sched.Reload(cfg)
					m.setConfig(cfg)
					m.reloads.WithLabelValues("ok").Inc()
				} else {
					m.reloads.WithLabelValues("failed").Inc()
				}
				systemdNotify(daemon.SdNotifyReady)
			case !stopping:
				log.Info("signal received: stopping", "signal", sig.String())
				systemdNotify(daemon.SdNotifyStopping)
				stopping = true
				stop()
			default:
				log.Warn("second signal: terminating running jobs now", "signal", sig.String())
				sched.TerminateRuns()
			}
		}
	}
}

// reload re-reads --config; an invalid file keeps the old one running.
func reload(c *cli.Context, log *slog.Logger) (*jobs.Config, bool) {
	path, _ := configPath(c)
	cfg, err := jobs.Load(path)
	if err != nil {
		var ps jobs.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				log.Error("reload: invalid config; keeping the old one", "problem", p.String())
			}
		} else {
			log.Error("reload: cannot read config; keeping the old one", "err", err)
		}
		return nil, false
	}
	log.Info("reload: config loaded", "config_hash", cfg.Hash[:12])
	return cfg, true
}

// every runs fn now and then every d until ctx ends or stop is called;
// stop waits for it.
func every(ctx context.Context, d time.Duration, fn func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			rctx, rcancel := context.WithTimeout(ctx, d)
			fn(rctx)
			rcancel()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}
