package dashboard_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/dashboard"
	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

func TestMain(m *testing.M) { redistest.Main(m) }

func prefix(t *testing.T) string {
	return "test:" + strings.NewReplacer("/", ":", " ", "_").Replace(t.Name())
}

func newRedis(t *testing.T, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1 // a stopped server fails the page at once
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

const evil = "<script>alert(1)</script>"

const testConfig = `
jobs:
  - name: db-backup
    schedule: "@daily"
    lock: db-maintenance
    command: ["sleep", "30"]
  - name: html-output
    schedule: "@daily"
    command: ["sh", "-c", "echo '<script>alert(1)</script>'"]
  - name: tok
    schedule: "@daily"
    params: ["<script>alert(2)</script>"]
    command: ["true"]
  - name: orphan
    schedule: "@every 1s"
    command: ["true"]
  - name: paused
    schedule: "@daily"
    suspend: true
    command: ["true"]
`

// cluster is what the tests read: three replicas (r3 on another config),
// a lock held by a run of db-backup, and runs of html-output and of the
// instance whose name holds a script tag. Nothing ran orphan's ticks, so
// it is overdue.
type cluster struct {
	url   string
	cfg   *jobs.Config
	store *scheduler.Store
	locks *mutex.Client
	rdb   *redis.Client
	runID string // db-backup's, holding db-maintenance
}

func newCluster(t *testing.T, url string) *cluster {
	t.Helper()
	ctx := context.Background()
	cfg, err := jobs.Parse("jobs.yaml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	rdb := newRedis(t, url)
	c := &cluster{url: url, cfg: cfg, store: scheduler.NewStore(rdb, prefix(t)), rdb: rdb,
		runID: "20260101T000000Z-0123456789"}
	now := time.Now().UTC()
	for _, hb := range []scheduler.Heartbeat{
		{ID: "r1", Host: "host-a", PID: 11, Version: "v1", ConfigHash: cfg.Hash, ClockOK: true},
		{ID: "r2", Host: "host-b", PID: 22, Version: "v1", ConfigHash: cfg.Hash, ClockOK: true},
		{ID: "r3", Host: "host-c", PID: 33, Version: "v1", ConfigHash: strings.Repeat("f", 64), ClockOK: true},
	} {
		hb.StartedAt, hb.BeatAt = now.Add(-time.Hour), now
		if _, err := c.store.Beat(ctx, hb, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	holder := mutex.New(rdb, mutex.WithPrefix(prefix(t)), mutex.WithOwner("r1"))
	t.Cleanup(func() { holder.Close() })
	if err := holder.NewMutex("db-maintenance", mutex.WithLabel("instance=db-backup run="+c.runID)).Lock(ctx); err != nil {
		t.Fatal(err)
	}
	code := 0
	start, end := now.Add(-time.Second), now
	for _, rec := range []*scheduler.Record{
		{RunID: c.runID, Instance: "db-backup", Job: "db-backup", ScheduledAt: now, Trigger: "schedule", Replica: "r1",
			Status: jobs.StatusRunning, Lock: "db-maintenance", Fence: 7, Start: &start},
		{RunID: "20260101T000001Z-aaaaaaaaaa", Instance: "html-output", Job: "html-output", ScheduledAt: now, Trigger: "schedule",
			Replica: "r2", Status: jobs.StatusSucceeded, Lock: "html-output", Fence: 3, Start: &start, End: &end, ExitCode: &code,
			Output: evil + "\n"},
		{RunID: "20260101T000002Z-bbbbbbbbbb", Instance: "tok[<script>alert(2)</script>]", Job: "tok", ScheduledAt: now,
			Trigger: "manual", Replica: "r2", Status: jobs.StatusFailed, Lock: "tok[<script>alert(2)</script>]", Fence: 1,
			Start: &start, End: &end, Reason: "exit status 3 <b>bold</b>", Output: "line one\n</pre><img src=x onerror=alert(3)>\n"},
	} {
		if err := c.store.Push(ctx, rec, 10, "incarnation", scheduler.Guard{}); err != nil {
			t.Fatal(err)
		}
	}
	c.locks = mutex.New(rdb, mutex.WithPrefix(prefix(t)))
	t.Cleanup(func() { c.locks.Close() })
	return c
}

func (c *cluster) handler(opts ...dashboard.Option) *dashboard.Handler {
	base := []dashboard.Option{dashboard.WithConfig(func() *jobs.Config { return c.cfg }), dashboard.WithTimeout(2 * time.Second)}
	return dashboard.New(scheduler.NewInspector(c.store), c.locks, append(base, opts...)...)
}

// get serves one request and returns the code, the body and the headers.
func get(t *testing.T, h http.Handler, method, target string) (int, string, http.Header) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, target, nil))
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, string(b), w.Result().Header
}

// TestDashboardPages: each page shows what `jobd status` and `jobd
// history` read, escaped, and never a lock's token.
func TestDashboardPages(t *testing.T) {
	c := newCluster(t, redistest.SharedURL(t))
	h := c.handler()
	tokens, err := c.rdb.HGetAll(context.Background(), prefix(t)+":lock:{db-maintenance}").Result()
	if err != nil || len(tokens) == 0 {
		t.Fatalf("lock hash: %v %v", tokens, err)
	}
	nameQuery := "instance?name=" + url.QueryEscape("tok[<script>alert(2)</script>]")
	tests := []struct {
		name   string
		method string
		target string
		code   int
		want   []string // in the body
		absent []string
	}{
		{"overview lists replicas, locks and instances", "GET", "/", 200,
			[]string{"<!doctype html>", `<td class="name">r1</td>`, `<td class="name">r2</td>`, `<td class="name">r3</td>`,
				"host-a", "DIFFERS", `<td class="name">db-maintenance</td>`, `<td class="holder">r1 `, c.runID,
				`<td class="num">1</td>`, `href="instance?name=db-backup"`, "html-output", "orphan", "OVERDUE",
				`<span class="badge idle">suspended</span>`, "3 replicas alive", "1 lock held", "5 instances", "1 OVERDUE",
				`<span class="badge ok">succeeded</span>`, `<span class="badge run">running on r1</span>`, `id="generated"`},
			[]string{"No replica is alive"}},
		{"only r3 differs", "GET", "/", 200,
			[]string{`<tr data-replica="r3">`}, nil},
		{"a script in an instance name is text", "GET", "/", 200,
			[]string{"tok[&lt;script&gt;alert(2)&lt;/script&gt;]", `href="instance?name=tok%5b%3cscript%3ealert%282%29%3c%2fscript%3e%5d"`},
			[]string{"<script>alert(2)", "<script>alert"}},
		{"the filter keeps matching instances", "GET", "/?q=HTML", 200,
			[]string{`<tr data-name="html-output">`, "1 of 5 match", `value="HTML"`},
			[]string{`<tr data-name="orphan"`, `<tr data-name="db-backup"`}},
		{"a filter longer than MaxQuery is refused", "GET", "/?q=" + strings.Repeat("A", dashboard.MaxQuery+1), 400,
			[]string{"longer than 256 bytes"}, nil},
		{"a filter matching nothing says so", "GET", "/?q=%3Cscript%3Ex", 200,
			[]string{"no instance matches “&lt;script&gt;x”"}, []string{"<script>x"}},
		{"the live part alone", "GET", "/?partial=1", 200,
			[]string{`<section id="replicas">`, `id="generated"`}, []string{"<!doctype", "<head>"}},
		{"instance page: history, output tail as text", "GET", "/instance?name=html-output", 200,
			[]string{`<h1 class="instance-name">html-output</h1>`, "20260101T000001Z-aaaaaaaaaa",
				`<pre class="output">&lt;script&gt;alert(1)&lt;/script&gt;</pre>`, "<code>@daily</code> in UTC", "on r2"},
			[]string{evil}},
		{"instance page of a name with a script", "GET", "/" + nameQuery, 200,
			[]string{"tok[&lt;script&gt;alert(2)&lt;/script&gt;]", "reason: exit status 3 &lt;b&gt;bold&lt;/b&gt;",
				"line one\n&lt;/pre&gt;&lt;img src=x onerror=alert(3)&gt;</pre>", `<span class="badge bad">failed</span>`},
			[]string{"<script>alert", "<img", "<b>bold"}},
		{"instance page shows the lock its run holds", "GET", "/instance?name=db-backup", 200,
			[]string{"Lock held now", `<td class="name">db-maintenance</td>`, c.runID, `<span class="badge run">running</span>`},
			nil},
		{"an instance without runs", "GET", "/instance?name=paused", 200,
			[]string{"paused has no runs yet", `<span class="badge idle">suspended</span>`}, nil},
		{"unknown instance", "GET", "/instance?name=nope", 404,
			[]string{"Unknown instance:", "<!doctype html>"}, nil},
		{"stylesheet", "GET", "/static/style.css", 200, []string{"table"}, nil},
		{"script", "GET", "/static/dashboard.js", 200, []string{"partial"}, nil},
		{"HEAD", "HEAD", "/", 200, nil, nil},
		{"read-only: POST is refused", "POST", "/", 405, nil, nil},
		{"unknown path", "GET", "/trigger", 404, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, hdr := get(t, h, tt.method, tt.target)
			if code != tt.code {
				t.Fatalf("%s %s: %d, want %d\n%s", tt.method, tt.target, code, tt.code, body)
			}
			for _, s := range tt.want {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %q:\n%s", s, body)
				}
			}
			for _, s := range tt.absent {
				if strings.Contains(body, s) {
					t.Errorf("body has %q:\n%s", s, body)
				}
			}
			for _, tok := range tokens {
				if len(tok) >= 16 && strings.Contains(body, tok) { // the token is long and random; short fields are names, pids, fences
					t.Errorf("body shows the lock hash's value %q (a token?)", tok)
				}
			}
			if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
				t.Errorf("Content-Security-Policy = %q", csp)
			}
		})
	}
	t.Run("r1 and r2 do not differ", func(t *testing.T) {
		_, body, _ := get(t, h, "GET", "/")
		for _, id := range []string{"r1", "r2"} {
			row := body[strings.Index(body, `<tr data-replica="`+id+`">`):]
			row = row[:strings.Index(row, "</tr>")]
			if strings.Contains(row, "DIFFERS") {
				t.Errorf("%s: %s", id, row)
			}
		}
	})
}

// TestDashboardWithoutConfig: with no schedule file, the replicas and
// locks show, and the page says why there are no instances.
func TestDashboardWithoutConfig(t *testing.T) {
	c := newCluster(t, redistest.SharedURL(t))
	h := dashboard.New(scheduler.NewInspector(c.store), c.locks, dashboard.WithConfigFile("/etc/jobd/jobs.yaml"))
	code, body, _ := get(t, h, "GET", "/")
	for _, s := range []string{"No instances: /etc/jobd/jobs.yaml: file does not exist", `<td class="name">r1</td>`, "db-maintenance"} {
		if code != 200 || !strings.Contains(body, s) {
			t.Errorf("%d, body lacks %q:\n%s", code, s, body)
		}
	}
	if code, body, _ := get(t, h, "GET", "/instance?name=html-output"); code != 200 || !strings.Contains(body, "&lt;script&gt;alert(1)") {
		t.Errorf("history of an instance not in any config: %d\n%s", code, body)
	}
}

// TestDashboardRedisDown: while Redis is down every page still renders,
// with a red banner that names the error; once it is back, the banner goes.
func TestDashboardRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	c := newCluster(t, srv.URL())
	h := c.handler()
	if code, _, _ := get(t, h, "GET", "/"); code != 200 {
		t.Fatalf("before: %d", code)
	}
	srv.Stop()
	tests := []struct{ name, target string }{
		{"overview", "/"},
		{"live part", "/?partial=1"},
		{"instance", "/instance?name=html-output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, _ := get(t, h, "GET", tt.target)
			if code != http.StatusServiceUnavailable {
				t.Errorf("%d, want 503", code)
			}
			for _, s := range []string{`id="redis-down"`, "Redis unreachable: ", "connection refused"} {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %q:\n%s", s, body)
				}
			}
			if tt.target != "/?partial=1" && !strings.Contains(body, "</html>") {
				t.Errorf("not a whole page:\n%s", body)
			}
		})
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	code, body, _ := get(t, h, "GET", "/")
	if code != 200 || strings.Contains(body, "redis-down") {
		t.Errorf("after Redis is back: %d\n%s", code, body)
	}
}

// TestDashboardServe: Serve answers until its context ends, then shuts
// down and returns nil.
func TestDashboardServe(t *testing.T) {
	c := newCluster(t, redistest.SharedURL(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dashboard.Serve(ctx, ln, c.handler(), discardLogger()) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
		t.Error("still serving after shutdown")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
