package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/scheduler"
)

// metrics are the daemon's Prometheus metrics; every name is documented
// in the README.
type metrics struct {
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
}

func newMetrics(sched func() *scheduler.Scheduler) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.runs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jobd_runs_total",
		Help: "Finished runs by job instance and status (succeeded, failed, timeout, killed, lock_lost, skipped, abandoned)."}, []string{"job", "status"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jobd_run_duration_seconds",
		Help: "Run duration.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 10)}, []string{"job"})
	m.lag = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jobd_schedule_lag_seconds",
		Help: "Time from the scheduled fire time to the process start.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"job"})
	m.claims = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jobd_claims_total",
		Help: "Tick claims by result: won, or lost to another replica."}, []string{"job", "result"})
	m.skips = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jobd_skips_total",
		Help: "Claimed ticks that did not run, by reason."}, []string{"job", "reason"})
	m.acquire = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "jobd_lock_acquire_seconds",
		Help: "Latency of one claim-and-lock round trip (a batch of claims).", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)})
	m.lease = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jobd_lease_events_total",
		Help: "Lock keep-alive events: renewed, renew_failed, lost."}, []string{"event"})
	m.redisErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jobd_redis_errors_total",
		Help: "Failed Redis operations by operation."}, []string{"op"})
	m.lastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "jobd_last_success_timestamp_seconds",
		Help: "End time of the last successful run seen by this replica, Unix seconds."}, []string{"job"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jobd_config_reloads_total",
		Help: "Config reloads by result: ok or failed."}, []string{"result"})
	m.configInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "jobd_config_info",
		Help: "Always 1; the label is the hash of the config in force."}, []string{"hash"})
	m.period = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "jobd_schedule_period_seconds",
		Help: "Time between an instance's next two fire times (for alerts on missed successes)."}, []string{"job"})
	m.clockRefuse = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jobd_clock_refused_total",
		Help: "Ticks not claimed because this replica's clock is more than 30s from Redis's."}, []string{"job"})
	for _, c := range []prometheus.Collector{m.period, m.runs, m.duration, m.lag, m.claims, m.skips, m.acquire, m.lease,
		m.redisErrors, m.lastSuccess, m.reloads, m.configInfo, m.clockRefuse,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jobd_clock_skew_seconds",
		Help: "This replica's clock minus Redis's."}, func() float64 { return sched().ClockSkew().Seconds() }))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jobd_clock_ok",
		Help: "1 while this replica's clock is within 30s of Redis's (it claims ticks), else 0."}, func() float64 {
		if sched().ClockOK() {
			return 1
		}
		return 0
	}))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jobd_redis_warnings",
		Help: "Redis settings, as last read, that weaken jobd's guarantees (persistence, fsync, eviction); 0 when none."},
		func() float64 { return float64(len(sched().Warnings())) }))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jobd_running_jobs",
		Help: "Runs in progress on this replica."}, func() float64 { return float64(len(sched().Running())) }))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jobd_config_mismatch",
		Help: "1 while a live replica runs a config with another hash."}, func() float64 {
		if sched().ConfigMismatch() {
			return 1
		}
		return 0
	}))
	return m
}

// The metrics observe the scheduler (scheduler.Observer).

func (m *metrics) ClaimWon(job string)          { m.claims.WithLabelValues(job, "won").Inc() }
func (m *metrics) ClaimLost(job string)         { m.claims.WithLabelValues(job, "lost").Inc() }
func (m *metrics) ClockRefused(job string)      { m.clockRefuse.WithLabelValues(job).Inc() }
func (m *metrics) Skipped(job, reason string)   { m.skips.WithLabelValues(job, reason).Inc() }
func (m *metrics) RedisError(op string)         { m.redisErrors.WithLabelValues(op).Inc() }
func (m *metrics) ClaimLatency(d time.Duration) { m.acquire.Observe(d.Seconds()) }
func (m *metrics) RunStarted(job string, lag time.Duration) {
	m.lag.WithLabelValues(job).Observe(lag.Seconds())
}

func (m *metrics) RunFinished(rec scheduler.Record, d time.Duration) {
	m.runs.WithLabelValues(rec.Instance, string(rec.Status)).Inc()
	if rec.Status == jobs.StatusSkipped || rec.Status == jobs.StatusAbandoned {
		return
	}
	m.duration.WithLabelValues(rec.Instance).Observe(d.Seconds())
	if rec.Status == jobs.StatusSucceeded && rec.End != nil {
		m.lastSuccess.WithLabelValues(rec.Instance).Set(float64(rec.End.Unix()))
	}
}

func (m *metrics) leaseEvent(ev mutex.Event, _ string) { m.lease.WithLabelValues(string(ev)).Inc() }

func (m *metrics) setConfig(cfg *jobs.Config) {
	m.configInfo.Reset()
	m.configInfo.WithLabelValues(cfg.Hash).Set(1)
	m.period.Reset()
	now := time.Now()
	for _, in := range cfg.Instances {
		if a := in.Schedule.Next(now); !a.IsZero() {
			m.period.WithLabelValues(in.Name).Set(in.Schedule.Next(a).Sub(a).Seconds())
		}
	}
}

// refreshLastSuccess exports the cluster-wide last success of every
// instance (from Redis), so that any replica's /metrics can answer "did
// this job succeed lately", even one that just restarted.
func (m *metrics) refreshLastSuccess(ctx context.Context, store *scheduler.Store, cfg *jobs.Config) {
	for _, in := range cfg.Instances {
		rec, ok, err := store.LastSuccess(ctx, in.Name)
		if err != nil {
			return
		}
		if ok && rec.End != nil {
			m.lastSuccess.WithLabelValues(in.Name).Set(float64(rec.End.Unix()))
		}
	}
}

// serveHTTP serves /metrics, /healthz and /readyz on addr until ctx ends.
// /readyz is 200 only while Redis answers, a config is loaded and the
// replica's clock is close enough to Redis's to claim ticks (clockOK).
func serveHTTP(ctx context.Context, addr string, m *metrics, rdb redis.UniversalClient, clockOK func() bool, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, exitf(exitUsage, "--http %s: %v", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		pctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if err := rdb.Ping(pctx).Err(); err != nil {
			http.Error(w, "redis unreachable", http.StatusServiceUnavailable)
			return
		}
		if !clockOK() {
			http.Error(w, "clock more than 30s from Redis's: not claiming ticks", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server failed", "err", err)
		}
	}()
	log.Info("serving /metrics, /healthz and /readyz", "addr", ln.Addr().String())
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	}, nil
}
