//go:build browser

// The browser test of the dashboard: `make test-browser` runs it (CI
// does, once); plain `go test` does not build it. It needs Debian's
// chromium (`apt-get install -y chromium`), or JOBD_CHROMIUM naming
// another Chromium binary; a missing one fails the test, never skips it.
// With JOBD_SCREENSHOT=FILE it saves a full-page screenshot of the
// dashboard, 1280 pixels wide, to FILE (docs/dashboard.png is one).

package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/jobd/jobd/internal/redistest"
)

// browserJobs is the replicas' schedule: a long backup holding the shared
// lock db-maintenance (run by `jobd trigger`), a vacuum skipped while it
// does, a job per user, a job printing a script tag, a failing job and a
// suspended one.
const browserJobs = `
defaults: {timezone: UTC}
jobs:
  - name: db-backup
    schedule: "0 3 * * *"
    timezone: Europe/Paris
    lock: db-maintenance
    command: ["sleep", "120"]
  - name: db-vacuum
    schedule: "@every 5s"
    lock: db-maintenance
    command: ["sh", "-c", "echo vacuumed 12 tables"]
  - name: emit-access-token
    schedule: "@every 2s"
    params: ["42", "43"]
    lock: "EmitAccessToken:{{ .Param }}"
    command: ["sh", "-c", "echo token emitted for user $JOBD_PARAM"]
  - name: render-report
    schedule: "@every 3s"
    command: ["sh", "-c", "echo 'rendering the weekly report'; echo '<script>alert(1)</script>'"]
  - name: sync-crm
    schedule: "@every 4s"
    command: ["sh", "-c", "echo 'dial tcp 10.0.0.7:443: connection refused' >&2; exit 1"]
  - name: weekly-digest
    schedule: "0 6 * * 1"
    timezone: Europe/Paris
    suspend: true
    command: ["true"]
`

// browserDashJobs is the file the dashboard reads: one job more, which no
// replica has (the file was edited, the replicas not reloaded), so its
// ticks are OVERDUE and the replicas' config DIFFERS from it.
const browserDashJobs = browserJobs + `
  - name: purge-sessions
    schedule: "@every 2s"
    command: ["true"]
`

// TestDashboardBrowser drives a real Chromium against `jobd dashboard`
// with two real replicas running real jobs: the page shows both
// replicas, the lock the long job holds and its holder, OVERDUE for the
// instance no replica runs, a run's output tail, the script tag of a job's
// output as text (no dialog, no script element), updates itself without
// reloading, filters as one types, and says so when Redis goes away.
func TestDashboardBrowser(t *testing.T) {
	chromium := cmp.Or(os.Getenv("JOBD_CHROMIUM"), "/usr/bin/chromium")
	if _, err := exec.LookPath(chromium); err != nil {
		t.Fatalf("%s not found: run `sudo apt-get update && sudo apt-get install -y chromium` (or make test-browser, which does), or set JOBD_CHROMIUM", chromium)
	}
	// Durable, as docs/failures.md asks: the page shows no Redis warning.
	srv := redistest.StartWith(t, "--appendonly", "yes", "--appendfsync", "always")
	url := srv.URL()
	dir := t.TempDir()
	replicaCfg, dashCfg := filepath.Join(dir, "jobs.yaml"), filepath.Join(dir, "edited", "jobs.yaml")
	writeFile(t, replicaCfg, browserJobs)
	if err := os.Mkdir(filepath.Dir(dashCfg), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dashCfg, browserDashJobs)
	dashAddr := freeAddr(t)
	var stop []*exec.Cmd
	for _, id := range []string{"r1", "r2"} {
		stop = append(stop, startDaemon(t, url, replicaCfg, id, "--shutdown-grace", "1s"))
	}
	// Started in the file's directory, so that the page names it as
	// people type it: jobs.yaml.
	dash := exec.Command(jobdBin, "--redis", url, "--prefix", prefix(t), "--log-format", "text", "-c", "jobs.yaml", "dashboard", "--http", dashAddr)
	dash.Dir, dash.Stdout, dash.Stderr = filepath.Dir(dashCfg), &redistest.Buffer{}, &redistest.Buffer{}
	if err := dash.Start(); err != nil {
		t.Fatal(err)
	}
	stop = append(stop, dash)
	// Before startDaemon's kill: SIGTERM, so that the replicas terminate
	// their jobs (sleep 120) instead of leaving them behind.
	t.Cleanup(func() {
		for _, cmd := range stop {
			_ = cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, cmd := range stop {
			if r := waitWithin(t, cmd, 30*time.Second); r.code != 0 && t.Failed() {
				t.Logf("%s exit %d:\n%s", cmd.Args[len(cmd.Args)-3:], r.code, tail(r.stderr, 20))
			}
		}
	})
	base := "http://" + dashAddr + "/"
	poll(t, 20*time.Second, "db-backup triggered", func() bool {
		return run(t, url, "-c", replicaCfg, "trigger", "db-backup").code == 0
	})
	poll(t, 30*time.Second, "the lock held, a run of render-report and purge-sessions overdue", func() bool {
		body := get(t, base, 200)
		return strings.Contains(body, `<tr data-lock="db-maintenance">`) &&
			regexp.MustCompile(`<tr data-name="purge-sessions" class="overdue">`).MatchString(body) &&
			strings.Contains(get(t, base+"instance?name=render-report", 200), `<pre class="output">`)
	})

	ctx := newBrowser(t, chromium)
	var dialogs dialogLog
	dialogs.watch(t, ctx)

	do(t, ctx, chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#instances")))
	t.Run("replicas", func(t *testing.T) {
		for _, id := range []string{"r1", "r2"} {
			if got := text(t, ctx, fmt.Sprintf(`#replicas tr[data-replica=%q] td.name`, id)); got != id {
				t.Errorf("replica %s: %q", id, got)
			}
		}
		if got := text(t, ctx, `#replicas tr[data-replica="r1"]`); !strings.Contains(got, "DIFFERS") {
			t.Errorf("r1 runs another config than the dashboard's file, yet: %q", got)
		}
	})
	t.Run("the lock and its holder", func(t *testing.T) {
		row := text(t, ctx, `#locks tr[data-lock="db-maintenance"]`)
		if !regexp.MustCompile(`db-maintenance\s+r[12] `).MatchString(row) || !strings.Contains(row, "db-backup") {
			t.Errorf("lock row: %q", row)
		}
	})
	t.Run("overdue", func(t *testing.T) {
		if row := text(t, ctx, `#instances tr[data-name="purge-sessions"]`); !strings.Contains(row, "OVERDUE") {
			t.Errorf("purge-sessions: %q", row)
		}
		if row := text(t, ctx, `#instances tr[data-name="render-report"]`); strings.Contains(row, "OVERDUE") {
			t.Errorf("render-report runs, yet: %q", row)
		}
	})
	t.Run("updates without reloading", func(t *testing.T) {
		before := text(t, ctx, "#generated")
		lastRun := attr(t, ctx, `#instances tr[data-name="render-report"] td:nth-child(5)`, "title")
		eval[bool](t, ctx, "window.jobdNotReloaded = true")
		waitJS(t, ctx, 15*time.Second, fmt.Sprintf(`document.getElementById("generated").textContent !== %q &&
			document.querySelector('#instances tr[data-name="render-report"] td:nth-child(5)').title !== %q`, before, lastRun))
		if !eval[bool](t, ctx, "window.jobdNotReloaded === true") {
			t.Error("the page reloaded")
		}
	})
	if file := os.Getenv("JOBD_SCREENSHOT"); file != "" {
		do(t, ctx, chromedp.EmulateViewport(1280, 800))
		waitJS(t, ctx, 10*time.Second, `document.getElementById("generated") !== null`)
		png := run1(t, ctx, chromedp.FullScreenshot(100))
		if err := os.WriteFile(file, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", file, len(png))
	}
	t.Run("filter as one types", func(t *testing.T) {
		do(t, ctx, chromedp.SendKeys(chromedp.CSS("#q"), "emit"))
		waitJS(t, ctx, 5*time.Second, `document.querySelector('#instances tr[data-name="db-backup"]') === null ||
			document.querySelector('#instances tr[data-name="db-backup"]').hidden`)
		if row := text(t, ctx, `#instances tr[data-name="emit-access-token[42]"]`); !strings.Contains(row, "emit-access-token[42]") {
			t.Errorf("emit-access-token[42]: %q", row)
		}
		if loc := run1(t, ctx, chromedp.Location()); !strings.HasSuffix(loc, "?q=emit") {
			t.Errorf("location %s", loc)
		}
		do(t, ctx, chromedp.Navigate(base))
	})
	t.Run("output tail shown as text", func(t *testing.T) {
		do(t, ctx, chromedp.WaitVisible(chromedp.CSS(`a[href="instance?name=render-report"]`)),
			chromedp.Click(chromedp.CSS(`#instances a[href="instance?name=render-report"]`)),
			chromedp.WaitVisible(chromedp.CSS("pre.output")))
		if got := text(t, ctx, "pre.output"); !strings.Contains(got, "rendering the weekly report\n<script>alert(1)</script>") {
			t.Errorf("output tail: %q", got)
		}
		if n := eval[int](t, ctx, `document.querySelectorAll("pre.output script, #live script").length`); n != 0 {
			t.Errorf("%d script elements in the page's data", n)
		}
		scripts := eval[[]string](t, ctx, `Array.from(document.scripts).map(s => s.src + " " + s.textContent)`)
		if len(scripts) != 1 || !strings.HasSuffix(strings.TrimSpace(scripts[0]), "/static/dashboard.js") {
			t.Errorf("scripts: %q", scripts)
		}
		// Let the live part be swapped in at least once more.
		before := text(t, ctx, "#generated")
		waitJS(t, ctx, 15*time.Second, fmt.Sprintf(`document.getElementById("generated").textContent !== %q`, before))
		if got := text(t, ctx, "pre.output"); !strings.Contains(got, "<script>alert(1)</script>") {
			t.Errorf("output tail after an update: %q", got)
		}
	})
	t.Run("failed run: reason and stderr", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(base+"instance?name=sync-crm"), chromedp.WaitVisible(chromedp.CSS("pre.output")))
		if got := text(t, ctx, "#history"); !strings.Contains(got, "failed") || !strings.Contains(got, "connection refused") {
			t.Errorf("sync-crm history: %q", got)
		}
	})
	t.Run("Redis unreachable", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#instances")))
		srv.Stop()
		waitJS(t, ctx, 20*time.Second, `document.getElementById("redis-down") !== null`)
		if got := text(t, ctx, "#redis-down"); !strings.Contains(got, "Redis unreachable: ") {
			t.Errorf("banner: %q", got)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, 20*time.Second, `document.getElementById("redis-down") === null && document.getElementById("replicas") !== null`)
	})
	if got := dialogs.all(); len(got) > 0 {
		t.Errorf("dialogs opened: %q", got)
	}
}

// newBrowser starts headless Chromium with a fresh profile and every
// background fetch off (the machine may have no network; without these
// it waits on it).
func newBrowser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true), chromedp.Flag("disable-domain-reliability", true),
		chromedp.WindowSize(1280, 800))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	tctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	if err := chromedp.Do(tctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return tctx
}

// dialogLog records the JavaScript dialogs the page opens (and closes them).
type dialogLog struct {
	mu   sync.Mutex
	msgs []string
}

// watch records dialogs until the browser context ends; the test's
// cleanup waits for its goroutine.
func (d *dialogLog) watch(t *testing.T, ctx context.Context) {
	events := chromedp.Events(ctx, page.JavascriptDialogOpening)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev, err := range events {
			if err != nil {
				return
			}
			d.mu.Lock()
			d.msgs = append(d.msgs, ev.Type.String()+": "+ev.Message)
			d.mu.Unlock()
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	t.Cleanup(func() { chromedp.Cancel(ctx); <-done })
}

func (d *dialogLog) all() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.msgs...)
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func run1[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	return run1(t, ctx, chromedp.Evaluate[T](js))
}

// text is the text content of the first element sel matches, as the DOM
// holds it (entities decoded), or "" when there is none.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return eval[string](t, ctx, fmt.Sprintf(`(e => e ? e.textContent.replace(/[ \t]+/g, " ").trim() : "")(document.querySelector(%q))`, sel))
}

func attr(t *testing.T, ctx context.Context, sel, name string) string {
	t.Helper()
	return eval[string](t, ctx, fmt.Sprintf(`(e => e ? (e.getAttribute(%q) || "") : "")(document.querySelector(%q))`, name, sel))
}

// waitJS polls the JavaScript condition until it holds, without reloading.
func waitJS(t *testing.T, ctx context.Context, d time.Duration, cond string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(d))); err != nil {
		body := text(t, ctx, "body")
		t.Fatalf("waiting %v for %s: %v\npage: %s", d, cond, err, tail(body, 40))
	}
}
