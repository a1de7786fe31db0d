// Package metrics exports what a jobd replica does as Prometheus metrics
// and serves them, with the health endpoints, over HTTP. It lives apart
// from the scheduler, which reports through the small scheduler.Observer
// interface and so never depends on Prometheus, and apart from cmd/jobd,
// which only wires it. Every metric name is documented in the README.
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/scheduler"
)

// Metrics are one replica's Prometheus metrics. They observe its
// scheduler (scheduler.Observer) and its lock client (LeaseEvent).
type Metrics struct {
	reg         *prometheus.Registry
	runs        *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	lag         *prometheus.HistogramVec
	claims      *prometheus.CounterVec
	skips       *prometheus.CounterVec
	acquire     prometheus.Histogram
	lease       *prometheus.CounterVec
	redisErrors *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
	reloads     *prometheus.CounterVec
	configInfo  *prometheus.GaugeVec
	period      *prometheus.GaugeVec
	clockRefuse *prometheus.CounterVec
	// firstSeen is when the refresher first saw each instance: the last
	// success of one that never succeeded, so that "no success for two
	// periods" alerts fire for it too. Only the refresher touches it.
	firstSeen map[string]time.Time
}

var _ scheduler.Observer = (*Metrics)(nil)

// New registers the metrics. sched returns the scheduler that the gauges
// read when scraped; it may be set after New, since the scheduler itself
// needs the Metrics as its observer.
func New(sched func() *scheduler.Scheduler) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	histogram := func(name, help string, start float64, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help,
			Buckets: prometheus.ExponentialBuckets(start, 4, 10)}, labels)
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	}
	m.runs = counter("jobd_runs_total", "Finished runs by job instance and status (succeeded, failed, timeout, killed, lock_lost, skipped, abandoned).", "job", "status")
	m.duration = histogram("jobd_run_duration_seconds", "Run duration.", 0.01, "job")
	m.lag = histogram("jobd_schedule_lag_seconds", "Time from the scheduled fire time to the process start.", 0.001, "job")
	m.claims = counter("jobd_claims_total", "Tick claims by result: won, or lost to another replica.", "job", "result")
	m.skips = counter("jobd_skips_total", "Claimed ticks that did not run, by reason.", "job", "reason")
	m.acquire = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "jobd_lock_acquire_seconds",
		Help: "Latency of one claim-and-lock round trip (a batch of claims).", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)})
	m.lease = counter("jobd_lease_events_total", "Lock keep-alive events: renewed, renew_failed, lost.", "event")
	m.redisErrors = counter("jobd_redis_errors_total", "Failed Redis operations by operation.", "op")
	m.lastSuccess = gauge("jobd_last_success_timestamp_seconds", "End time of the last successful run (cluster-wide, from Redis), Unix seconds; for a job that never succeeded, when this replica first saw it.", "job")
	m.reloads = counter("jobd_config_reloads_total", "Config reloads by result: ok or failed.", "result")
	m.configInfo = gauge("jobd_config_info", "Always 1; the label is the hash of the config in force.", "hash")
	m.period = gauge("jobd_schedule_period_seconds", "Time between an instance's next two fire times (for alerts on missed successes).", "job")
	m.clockRefuse = counter("jobd_clock_refused_total", "Ticks not claimed because this replica's clock is more than 30s from Redis's.", "job")
	m.reg.MustRegister(m.period, m.runs, m.duration, m.lag, m.claims, m.skips, m.acquire, m.lease,
		m.redisErrors, m.lastSuccess, m.reloads, m.configInfo, m.clockRefuse,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gaugeFunc := func(name, help string, f func(s *scheduler.Scheduler) float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(sched()) }))
	}
	gaugeFunc("jobd_clock_skew_seconds", "This replica's clock minus Redis's.",
		func(s *scheduler.Scheduler) float64 { return s.ClockSkew().Seconds() })
	gaugeFunc("jobd_clock_ok", "1 while this replica's clock is within 30s of Redis's (it claims ticks), else 0.",
		func(s *scheduler.Scheduler) float64 { return one(s.ClockOK()) })
	gaugeFunc("jobd_redis_warnings", "Redis settings, as last read, that weaken jobd's guarantees (persistence, fsync, eviction); 0 when none.",
		func(s *scheduler.Scheduler) float64 { return float64(len(s.Warnings())) })
	gaugeFunc("jobd_running_jobs", "Runs in progress on this replica.",
		func(s *scheduler.Scheduler) float64 { return float64(len(s.Running())) })
	gaugeFunc("jobd_config_mismatch", "1 while a live replica runs a config with another hash.",
		func(s *scheduler.Scheduler) float64 { return one(s.ConfigMismatch()) })
	return m
}

func one(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ClaimWon counts a tick claim this replica won.
func (m *Metrics) ClaimWon(job string) { m.claims.WithLabelValues(job, "won").Inc() }

// ClaimLost counts a tick claim another replica won.
func (m *Metrics) ClaimLost(job string) { m.claims.WithLabelValues(job, "lost").Inc() }

// ClockRefused counts a tick not claimed because the clock is off.
func (m *Metrics) ClockRefused(job string) { m.clockRefuse.WithLabelValues(job).Inc() }

// Skipped counts a claimed tick that did not run.
func (m *Metrics) Skipped(job, reason string) { m.skips.WithLabelValues(job, reason).Inc() }

// RedisError counts a failed Redis operation.
func (m *Metrics) RedisError(op string) { m.redisErrors.WithLabelValues(op).Inc() }

// ClaimLatency observes one claim-and-lock round trip.
func (m *Metrics) ClaimLatency(d time.Duration) { m.acquire.Observe(d.Seconds()) }

// RunStarted observes how late a run started.
func (m *Metrics) RunStarted(job string, lag time.Duration) {
	m.lag.WithLabelValues(job).Observe(lag.Seconds())
}

// RunFinished counts a finished run, observes its duration and, for a
// success, its end time.
func (m *Metrics) RunFinished(rec scheduler.Record, d time.Duration) {
	m.runs.WithLabelValues(rec.Instance, string(rec.Status)).Inc()
	if rec.Status == jobs.StatusSkipped || rec.Status == jobs.StatusAbandoned {
		return
	}
	m.duration.WithLabelValues(rec.Instance).Observe(d.Seconds())
	if rec.Status == jobs.StatusSucceeded && rec.End != nil {
		m.lastSuccess.WithLabelValues(rec.Instance).Set(float64(rec.End.Unix()))
	}
}

// LeaseEvent counts a keep-alive event; pass it to mutex.WithEvents.
func (m *Metrics) LeaseEvent(ev mutex.Event, _ string) { m.lease.WithLabelValues(string(ev)).Inc() }

// SetConfig exports the hash and the schedule periods of the config in
// force. A suspended or disabled instance has no period, so that an alert
// on missed successes (README) leaves it alone.
func (m *Metrics) SetConfig(cfg *jobs.Config) {
	m.configInfo.Reset()
	m.configInfo.WithLabelValues(cfg.Hash).Set(1)
	m.period.Reset()
	now := time.Now()
	for _, in := range cfg.Instances {
		if !in.Enabled || in.Suspended {
			continue
		}
		if a := in.Schedule.Next(now); !a.IsZero() {
			m.period.WithLabelValues(in.Name).Set(in.Schedule.Next(a).Sub(a).Seconds())
		}
	}
}

// Reloaded counts a config reload and exports the new config; cfg is nil
// when the reload failed.
func (m *Metrics) Reloaded(cfg *jobs.Config) {
	if cfg == nil {
		m.reloads.WithLabelValues("failed").Inc()
		return
	}
	m.SetConfig(cfg)
	m.reloads.WithLabelValues("ok").Inc()
}

// KeepLastSuccess exports the cluster-wide last success of every instance
// of cfg() (from Redis), now and every 15s until stop is called (stop
// waits for it), so that any replica's /metrics can answer "did this job
// succeed lately", even one that just restarted.
func (m *Metrics) KeepLastSuccess(ctx context.Context, store *scheduler.Store, cfg func() *jobs.Config) (stop func()) {
	const every = 15 * time.Second
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			rctx, rcancel := context.WithTimeout(ctx, every)
			m.refreshLastSuccess(rctx, store, cfg())
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

// refreshLastSuccess reads every instance's last success in a few
// pipelines (store.LastSuccesses), not a round trip per instance.
func (m *Metrics) refreshLastSuccess(ctx context.Context, store *scheduler.Store, cfg *jobs.Config) {
	refs := make([]scheduler.Ref, len(cfg.Instances))
	for i, in := range cfg.Instances {
		refs[i] = scheduler.RefOf(in)
	}
	recs, err := store.LastSuccesses(ctx, refs)
	if err != nil {
		return
	}
	for i, in := range cfg.Instances {
		switch rec := recs[i]; {
		case rec != nil && rec.End != nil:
			m.lastSuccess.WithLabelValues(in.Name).Set(float64(rec.End.Unix()))
		case rec == nil:
			// Never succeeded: count from when this replica first saw it.
			if m.firstSeen == nil {
				m.firstSeen = map[string]time.Time{}
			}
			if _, seen := m.firstSeen[in.Name]; !seen {
				m.firstSeen[in.Name] = time.Now()
			}
			m.lastSuccess.WithLabelValues(in.Name).Set(float64(m.firstSeen[in.Name].Unix()))
		}
	}
}

// ServeOption adds to what Serve serves.
type ServeOption func(*serveOptions)

type serveOptions struct{ pprof bool }

// WithPprof mounts Go's profiler (net/http/pprof) under /debug/pprof/:
// CPU profiles, heap, goroutines, allocations, blocking, traces. Its
// cmdline endpoint is left out, since jobd's command line may hold a Redis
// password. Off unless asked for (jobd run --pprof): profiles show the
// code's internals, so serve them only where the listener is private.
func WithPprof() ServeOption { return func(o *serveOptions) { o.pprof = true } }

// mountPprof adds the profiler's handlers to mux. Index also serves the
// named profiles (/debug/pprof/heap, /debug/pprof/goroutine, ...).
func mountPprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// Serve serves /metrics, /healthz and /readyz on addr until stop is
// called, and, when root is not nil, every other path with root (the
// dashboard); WithPprof adds /debug/pprof/. /readyz is 200 only while
// ping (Redis) answers within a second and clockOK says the replica's
// clock is close enough to Redis's to claim ticks. A listen error is
// returned as is.
func Serve(ctx context.Context, addr string, m *Metrics, ping func(context.Context) error, clockOK func() bool, root http.Handler, log *slog.Logger, opts ...ServeOption) (stop func(), err error) {
	var o serveOptions
	for _, opt := range opts {
		opt(&o)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	if o.pprof {
		mountPprof(mux)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		pctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		switch {
		case ping(pctx) != nil:
			http.Error(w, "redis unreachable", http.StatusServiceUnavailable)
		case !clockOK():
			http.Error(w, "clock more than 30s from Redis's: not claiming ticks", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok\n"))
		}
	})
	served := "/metrics, /healthz and /readyz"
	if root != nil {
		mux.Handle("/", root)
		served = "/metrics, /healthz, /readyz and the dashboard at /"
	}
	if o.pprof {
		served += "; the profiler at /debug/pprof/"
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server failed", "err", err)
		}
	}()
	log.Info("serving "+served, "addr", ln.Addr().String())
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	}, nil
}
