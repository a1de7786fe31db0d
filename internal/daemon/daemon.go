// Package daemon runs a jobd replica as a service process: it runs the
// scheduler until a signal stops it, reloads the schedule file on SIGHUP,
// tells systemd how it goes (READY, RELOADING, STOPPING, the watchdog,
// and a STATUS= line that says whether Redis answers), and stops the
// replica when Redis refuses jobd before it first worked with it. What is
// about the process lives here, so that cmd/jobd only wires the parts
// together and the scheduler knows nothing of signals or systemd.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/redisconn"
	"github.com/jobd/jobd/internal/scheduler"
)

type options struct {
	log      *slog.Logger
	load     func() (*jobs.Config, error)
	reloaded func(*jobs.Config)
}

// Option configures Run.
type Option func(*options)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithReload makes SIGHUP load a new config with load; an invalid one is
// logged and the old one keeps running. reloaded is told of every
// attempt: the new config, or nil. Without it, SIGHUP does nothing.
func WithReload(load func() (*jobs.Config, error), reloaded func(*jobs.Config)) Option {
	return func(o *options) { o.load, o.reloaded = load, reloaded }
}

// Run runs sched until it returns, and returns its error. SIGTERM or
// SIGINT stops it: it stops claiming and lets runs finish for its grace;
// a second signal terminates them at once. Redis at t, reached through
// nodes (Target.OpenNodes: one client, or a quorum's masters, of which a
// majority must answer), is watched for STATUS= (startErr is the Check
// made at start); a refusal before a Check passed stops the scheduler,
// and Run returns it (see redisconn.Target.Watch).
func Run(ctx context.Context, sched *scheduler.Scheduler, t redisconn.Target, nodes []redis.UniversalClient, startErr error, opts ...Option) error {
	o := options{log: slog.Default(), load: func() (*jobs.Config, error) { return nil, nil }, reloaded: func(*jobs.Config) {}}
	for _, opt := range opts {
		opt(&o)
	}
	o.log = o.log.With("replica", sched.ReplicaID()) // as the scheduler's lines
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()
	status := redisStatus(sched, startErr)
	notify("STATUS=" + status)
	refused, stopWatch := t.Watch(ctx, nodes, startErr, o.log, func(err error) {
		if s := redisStatus(sched, err); s != status {
			status = s
			notify("STATUS=" + status)
		}
	})
	defer stopWatch()
	defer watchdog(ctx, o.log)()
	for stopping := false; ; {
		select {
		case err := <-done:
			return err
		case err := <-refused:
			o.log.Error("redis refused jobd; stopping", "redis", t.String(), "err", err.Error())
			notify(sd.SdNotifyStopping)
			stop()
			<-done
			return err
		case sig := <-sigs:
			switch {
			case sig == syscall.SIGHUP:
				notify(sd.SdNotifyReloading)
				cfg := o.reload()
				if cfg != nil {
					sched.Reload(cfg)
				}
				o.reloaded(cfg)
				notify(sd.SdNotifyReady)
			case !stopping:
				o.log.Info("signal received: stopping", "signal", sig.String())
				notify(sd.SdNotifyStopping)
				stopping = true
				stop()
			default:
				o.log.Warn("second signal: terminating running jobs now", "signal", sig.String())
				sched.TerminateRuns()
			}
		}
	}
}

// reload loads the new config; an invalid file is logged, and nil.
func (o *options) reload() *jobs.Config {
	cfg, err := o.load()
	var ps jobs.Problems
	switch {
	case errors.As(err, &ps):
		for _, p := range ps {
			o.log.Error("reload: invalid config; keeping the old one", "problem", p.String())
		}
	case err != nil:
		o.log.Error("reload: cannot read config; keeping the old one", "err", err)
	case cfg != nil:
		o.log.Info("reload: config loaded", "config_hash", cfg.Hash[:12])
	}
	return cfg
}

// redisStatus is the STATUS= line systemd shows for the daemon.
func redisStatus(sched *scheduler.Scheduler, err error) string {
	var re *redisconn.Error
	if errors.As(err, &re) {
		return re.Status()
	}
	if n := len(sched.Config().Instances); n != 1 {
		return fmt.Sprintf("running: %d instances", n)
	}
	return "running: 1 instance"
}

// notify sends a state to systemd when jobd runs under Type=notify;
// elsewhere (no NOTIFY_SOCKET) it does nothing.
func notify(state string) { _, _ = sd.SdNotify(false, state) }

// watchdog says READY and, when WatchdogSec= is set, pings the watchdog
// at half its interval until the returned stop is called.
func watchdog(ctx context.Context, log *slog.Logger) (stop func()) {
	notify(sd.SdNotifyReady)
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return func() {}
	}
	log.Debug("systemd watchdog enabled", "interval", interval)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				notify(sd.SdNotifyWatchdog)
			}
		}
	}()
	return func() { cancel(); <-done }
}
