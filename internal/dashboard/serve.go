package dashboard

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ShutdownGrace is how long Serve lets requests in flight finish once its
// context ends.
const ShutdownGrace = 5 * time.Second

// Serve serves h on ln until ctx ends, then shuts the server down
// gracefully (requests in flight get ShutdownGrace) and returns nil; it
// returns early with the server's error if serving fails. The server's
// goroutine is Serve's own: it has ended when Serve returns.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	failed := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			failed <- err
		}
		close(failed)
	}()
	select {
	case err := <-failed:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("dashboard: requests still in flight at shutdown were cut", "err", err)
		_ = srv.Close()
	}
	return <-failed // nil: closed by the shutdown
}
