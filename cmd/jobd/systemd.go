package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// systemdNotify sends a state to systemd when jobd runs under
// Type=notify; elsewhere (no NOTIFY_SOCKET) it does nothing.
func systemdNotify(state string) { _, _ = daemon.SdNotify(false, state) }

// notifySystemd says READY and, when WatchdogSec= is set, pings the
// watchdog at half its interval until the returned stop is called.
func notifySystemd(ctx context.Context, log *slog.Logger) (stop func()) {
	systemdNotify(daemon.SdNotifyReady)
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return func() {}
	}
	log.Debug("systemd watchdog enabled", "interval", interval)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
				systemdNotify(daemon.SdNotifyWatchdog)
			}
		}
	}()
	return func() { cancel(); <-done }
}
