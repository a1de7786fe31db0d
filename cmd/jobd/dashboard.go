package main

import (
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jobd/jobd/internal/dashboard"
	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redisconn"
	"github.com/jobd/jobd/internal/scheduler"
)

// defaultDashboardAddr is where `jobd dashboard` listens without --http.
const defaultDashboardAddr = "127.0.0.1:9188"

func dashboardCommand() *cli.Command {
	return &cli.Command{
		Name:  "dashboard",
		Usage: "serve a read-only web dashboard of the cluster (reads Redis only)",
		Description: "Serves on --http what `jobd status` shows, updated live: the replicas, the held\n" +
			"locks, the instances (?q= filters them by name) with OVERDUE ones flagged, and\n" +
			"each instance's history with its runs' output (/instance?name=INSTANCE). Needs\n" +
			"no replica on this host; INSTANCES needs --config, as status does. While Redis\n" +
			"is unreachable the page says so and keeps trying. It changes nothing in Redis.\n" +
			"It reads the file again when it changes; SIGHUP is ignored. `jobd run --http ADDR`\n" +
			"serves the same dashboard from a replica.\n\n" +
			"Exit codes: 0 after SIGINT/SIGTERM, 1 a schedule file that does not load,\n" +
			"2 bad flags or --http address (an empty one too: it would listen everywhere).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "http", Value: defaultDashboardAddr,
				Usage: "serve the dashboard on this address (host:port)"},
		},
		Action: runDashboard,
	}
}

func runDashboard(c *cli.Context) error {
	if c.String("http") == "" {
		return usagef("jobd dashboard", "--http is empty: give host:port, such as %s (an empty host would listen on every interface)", defaultDashboardAddr)
	}
	e, err := openEnv(c, false) // no ping: the page says when Redis is down
	if err != nil {
		return err
	}
	defer e.close()
	fc := &fileConfig{path: e.path, cfg: e.cfg, log: e.log}
	fc.mod, _ = modTime(e.path)
	h := newDashboard(e.insp, e.locks, e.target, fc.get, e.path, e.log)
	ln, err := net.Listen("tcp", c.String("http"))
	if err != nil {
		return exitf(exitUsage, "--http %s: %v", c.String("http"), err)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	signal.Ignore(syscall.SIGHUP) // the file is re-read when it changes; a HUP must not kill the server
	e.log.Info("serving the dashboard", "addr", ln.Addr().String(), "redis", e.target.String(), "config", e.path)
	return dashboard.Serve(ctx, ln, h, e.log)
}

// newDashboard is the dashboard reading through insp and locks, for `jobd
// dashboard` and `jobd run --http`; cfg is the schedule file as it is now
// (nil: none, and path names the file that was looked for).
func newDashboard(insp *scheduler.Inspector, locks *mutex.Client, target redisconn.Target, cfg func() *jobs.Config, path string, log *slog.Logger) *dashboard.Handler {
	return dashboard.New(insp, locks, dashboard.WithConfig(cfg), dashboard.WithConfigFile(path),
		dashboard.WithTarget(target), dashboard.WithLogger(log))
}

// fileConfig is the schedule file as the dashboard shows it: read again
// when its modification time changes (checked at most once a page), so
// that an edited file is compared with the replicas' configs at once. A
// file that no longer loads is logged once, and the last good one is kept.
type fileConfig struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	cfg     *jobs.Config
	mod     time.Time
	lastErr string
}

func (f *fileConfig) get() *jobs.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	mod, err := modTime(f.path)
	if err != nil || mod.Equal(f.mod) {
		return f.cfg
	}
	cfg, err := jobs.Load(f.path)
	if err != nil {
		if msg := err.Error(); msg != f.lastErr {
			f.lastErr = msg
			f.log.Error("schedule file changed but does not load; showing the last good one", "config", f.path, "err", msg)
		}
		return f.cfg
	}
	f.cfg, f.mod, f.lastErr = cfg, mod, ""
	f.log.Info("schedule file re-read", "config", f.path, "config_hash", cfg.Hash[:12])
	return cfg
}

// modTime is path's modification time.
func modTime(path string) (time.Time, error) {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}, err
	}
	return st.ModTime(), nil
}
