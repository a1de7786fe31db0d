// Package dashboard serves jobd's read-only web dashboard: the replicas,
// the held locks and the instances that `jobd status` shows, an instance's
// history with each run's output tail, updated live by short polling.
//
// It reads through the same code as `jobd status`: report.NewStatus (so
// the scheduler's Inspector decides what is overdue and which config
// differs) and report's cells for the values the tables print. Pages are
// rendered with html/template from embedded files, so everything read
// from Redis or the schedule file (job names, params, output tails) is
// escaped; there is no JavaScript build step, and nothing on the pages
// changes anything in Redis.
//
// `jobd run --http` serves it next to /metrics; `jobd dashboard --http`
// serves it alone, reading Redis only.
package dashboard

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redisconn"
	"github.com/jobd/jobd/internal/report"
	"github.com/jobd/jobd/internal/scheduler"
)

// Defaults of the options.
const (
	// DefaultRefresh is how often an open page updates itself.
	DefaultRefresh = 2 * time.Second
	// DefaultHistory is how many runs an instance's page lists.
	DefaultHistory = 20
	// DefaultTimeout bounds the Redis reads of one page.
	DefaultTimeout = 5 * time.Second
)

// ErrUnknownInstance: the instance page was asked for a name that is
// neither in the schedule file nor in Redis's history.
var ErrUnknownInstance = errors.New("dashboard: unknown instance")

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Handler serves the dashboard: / (replicas, locks, instances; ?q=
// filters the instances by name), /instance?name=NAME (one instance and
// its history) and /static/ (its stylesheet and script). With
// ?partial=1, / and /instance answer with the part of the page that
// updates, which the page's script fetches every refresh. It is safe for
// concurrent use.
type Handler struct {
	insp    *scheduler.Inspector
	locks   *mutex.Client
	cfg     func() *jobs.Config
	file    string
	target  *redisconn.Target
	log     *slog.Logger
	refresh time.Duration
	history int
	timeout time.Duration
	now     func() time.Time

	mux      *http.ServeMux
	overview *template.Template
	instance *template.Template

	mu       sync.Mutex
	redisErr string // the last Redis failure, "" while Redis answers: logged once per outage
	top      *redisconn.Topology
	topAt    time.Time // when top was read
}

// Option configures a Handler.
type Option func(*Handler)

// WithConfig gives the schedule file the instances come from; cfg is
// called for every page, so a daemon passes its current config (reloads
// included). cfg may return nil: the page then lists no instance and says
// why (see WithConfigFile).
func WithConfig(cfg func() *jobs.Config) Option { return func(h *Handler) { h.cfg = cfg } }

// WithConfigFile names the schedule file shown when there is no config
// (default /etc/jobd/jobs.yaml), as `jobd status` does.
func WithConfigFile(path string) Option { return func(h *Handler) { h.file = path } }

// WithTarget names the Redis the dashboard reads: errors are shown
// without its password, with its address, and the page names its
// topology (standalone or Sentinel, and the master).
func WithTarget(t redisconn.Target) Option { return func(h *Handler) { h.target = &t } }

// WithLogger sets the logger (default: discard). The dashboard logs once
// when Redis stops answering and once when it answers again.
func WithLogger(log *slog.Logger) Option { return func(h *Handler) { h.log = log } }

// WithRefresh sets how often an open page updates itself (default
// DefaultRefresh; at least 500ms).
func WithRefresh(d time.Duration) Option {
	return func(h *Handler) { h.refresh = max(d, 500*time.Millisecond) }
}

// WithHistory sets how many runs an instance's page lists (default
// DefaultHistory).
func WithHistory(n int) Option { return func(h *Handler) { h.history = max(n, 1) } }

// WithTimeout bounds the Redis reads of one page (default
// DefaultTimeout): past it the page says Redis is unreachable.
func WithTimeout(d time.Duration) Option { return func(h *Handler) { h.timeout = d } }

// WithClock sets the clock the pages are computed at (default time.Now).
func WithClock(now func() time.Time) Option { return func(h *Handler) { h.now = now } }

// New returns the dashboard, reading the replicas, instances and history
// through insp and the held locks through locks (which it only lists).
func New(insp *scheduler.Inspector, locks *mutex.Client, opts ...Option) *Handler {
	h := &Handler{insp: insp, locks: locks, cfg: func() *jobs.Config { return nil }, file: "/etc/jobd/jobs.yaml",
		log: slog.New(slog.DiscardHandler), refresh: DefaultRefresh, history: DefaultHistory, timeout: DefaultTimeout, now: time.Now}
	for _, o := range opts {
		o(h)
	}
	h.overview = parse("layout.html", "overview.html")
	h.instance = parse("layout.html", "instance.html")
	static, _ := fs.Sub(staticFS, "static")
	h.mux = http.NewServeMux()
	h.mux.HandleFunc("GET /{$}", h.serveOverview)
	h.mux.HandleFunc("GET /instance", h.serveInstance)
	h.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	return h
}

// parse builds one page's templates; they are embedded, so a failure is
// a bug caught by any test.
func parse(files ...string) *template.Template {
	for i := range files {
		files[i] = "templates/" + files[i]
	}
	return template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, files...))
}

// ServeHTTP serves the dashboard's pages, read-only: GET and HEAD only.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	// Nothing but the dashboard's own files may load or run, whatever a
	// job's name or output contains.
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	h.mux.ServeHTTP(w, r)
}

// snapshot reads the cluster as `jobd status` does.
func (h *Handler) snapshot(ctx context.Context) (*report.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	cfg, file := h.cfg(), h.file
	if cfg != nil {
		file = cfg.File
	}
	st, err := report.NewStatus(ctx, h.insp, h.locks, cfg, file, h.now())
	if err != nil {
		return nil, err
	}
	st.Redis = h.topology(ctx)
	return st, nil
}

// topologyEvery is how long the dashboard reuses the topology it read:
// asking the sentinels, or a cluster, opens connections of its own.
const topologyEvery = 10 * time.Second

// topology is the Redis topology, read again at most every topologyEvery
// (nil without a target, or while it cannot be read).
func (h *Handler) topology(ctx context.Context) *redisconn.Topology {
	if h.target == nil {
		return nil
	}
	h.mu.Lock()
	top, at := h.top, h.topAt
	h.mu.Unlock()
	if top != nil && time.Since(at) < topologyEvery {
		return top
	}
	t, err := h.target.Topology(ctx)
	if err != nil {
		return top // the last one read, if any
	}
	h.mu.Lock()
	h.top, h.topAt = &t, time.Now()
	h.mu.Unlock()
	return &t
}

// readHistory reads an instance's last runs.
func (h *Handler) readHistory(ctx context.Context, name string) ([]scheduler.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	return h.insp.History(ctx, scheduler.ConfigRef(h.cfg(), name), h.history)
}

// redisDown turns a failed read into the banner's text, without the
// password, and logs the first failure of an outage.
func (h *Handler) redisDown(err error) string {
	msg := err.Error()
	if h.target != nil {
		msg = h.target.Scrub(msg) + " (" + h.target.String() + ")"
	}
	kind := "Redis unreachable: "
	if redisconn.IsRefusal(err) {
		kind = "Redis refused the dashboard: "
	}
	msg = kind + msg
	h.mu.Lock()
	first := h.redisErr == ""
	h.redisErr = msg
	h.mu.Unlock()
	if first {
		h.log.Warn("dashboard: cannot read Redis; the pages say so until it answers", "err", msg)
	}
	return msg
}

// redisUp notes that Redis answered, and logs the end of an outage.
func (h *Handler) redisUp() {
	h.mu.Lock()
	was := h.redisErr
	h.redisErr = ""
	h.mu.Unlock()
	if was != "" {
		h.log.Info("dashboard: Redis answers again")
	}
}

// render writes the page, or with ?partial=1 its live part.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, t *template.Template, code int, data any) {
	name := "layout"
	if r.URL.Query().Get("partial") == "1" {
		name = "live"
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, name, data); err != nil {
		h.log.Error("dashboard: rendering a page failed", "err", err)
		http.Error(w, "dashboard: rendering the page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(b.String()))
}

// MaxQuery bounds the ?q= filter: a longer one is refused (400), since
// every instance name is searched for it.
const MaxQuery = 256

func (h *Handler) serveOverview(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if len(q) > MaxQuery {
		http.Error(w, "dashboard: the filter ?q= is longer than 256 bytes", http.StatusBadRequest)
		return
	}
	p := &overviewPage{page: h.newPage("jobd"), Query: q}
	code := http.StatusOK
	st, err := h.snapshot(r.Context())
	switch {
	case err != nil && r.Context().Err() != nil:
		return // the browser went away
	case err != nil:
		p.Banner, code = h.redisDown(err), http.StatusServiceUnavailable
	default:
		h.redisUp()
		p.fill(st, q)
	}
	h.render(w, r, h.overview, code, p)
}

func (h *Handler) serveInstance(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	p := &instancePage{page: h.newPage(name + " · jobd"), Name: name}
	code := http.StatusOK
	st, err := h.snapshot(r.Context())
	var runs []scheduler.Record
	if err == nil {
		runs, err = h.readHistory(r.Context(), name)
	}
	switch {
	case err != nil && r.Context().Err() != nil:
		return
	case err != nil:
		p.Banner, code = h.redisDown(err), http.StatusServiceUnavailable
	default:
		h.redisUp()
		if err := p.fill(st, runs, h.cfg() != nil); errors.Is(err, ErrUnknownInstance) {
			code = http.StatusNotFound
		}
	}
	h.render(w, r, h.instance, code, p)
}

// newPage is what every page has: its title, the refresh period, the
// time it was computed.
func (h *Handler) newPage(title string) page {
	now := h.now().UTC()
	return page{Title: title, RefreshMS: h.refresh.Milliseconds(), Refresh: h.refresh.String(), Generated: now.Format("15:04:05 UTC"), GeneratedAt: now.Format(time.RFC3339)}
}
