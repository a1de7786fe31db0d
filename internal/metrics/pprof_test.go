package metrics

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"

	"github.com/jobd/jobd/internal/scheduler"
)

// TestPprofOptIn: /debug/pprof/ is served only with WithPprof, and never
// its cmdline page (a --redis password could be on jobd's command line).
func TestPprofOptIn(t *testing.T) {
	for _, on := range []bool{false, true} {
		addr := freeAddr(t)
		var opts []ServeOption
		if on {
			opts = append(opts, WithPprof())
		}
		m := New(func() *scheduler.Scheduler { return nil })
		stop, err := Serve(context.Background(), addr, m, func(context.Context) error { return nil }, func() bool { return true },
			nil, slog.New(slog.NewTextHandler(io.Discard, nil)), opts...)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int{"/debug/pprof/heap": http.StatusNotFound, "/debug/pprof/cmdline": http.StatusNotFound,
			"/debug/pprof/goroutine?debug=1": http.StatusNotFound, "/healthz": http.StatusOK}
		if on {
			want["/debug/pprof/heap"], want["/debug/pprof/goroutine?debug=1"] = http.StatusOK, http.StatusOK
		}
		for path, code := range want {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != code {
				t.Errorf("pprof %v: GET %s = %d, want %d", on, path, resp.StatusCode, code)
			}
		}
		stop()
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
