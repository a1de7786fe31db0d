package main

import (
	"strings"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/redistest"
)

// TestLockLostReplies: `jobd lock` through a proxy that lets a command
// reach Redis and drops its reply. A lost reply to the acquisition is not
// "not obtained" (75, naming jobd itself as the holder), and a lost reply
// to the release is not "lease lost" (70): the command runs and jobd exits
// with its code, leaving the lock free.
func TestLockLostReplies(t *testing.T) {
	srv := redistest.Start(t)
	tests := []struct {
		name  string
		match string
		args  []string
	}{
		{"acquire", "{k}", []string{"lock", "k", "--", "sh", "-c", "echo ran"}},
		{"acquire with --wait", "{k}", []string{"lock", "--wait", "2s", "k", "--", "sh", "-c", "echo ran"}},
		{"release", "}:rel", []string{"lock", "k", "--", "sh", "-c", "echo ran"}},
	}
	// Load the scripts first, so that the dropped reply is that of a
	// script that ran, not a NOSCRIPT answer.
	if r := run(t, srv.URL(), "lock", "warm", "--", "true"); r.code != 0 {
		t.Fatalf("warm-up: exit %d: %s", r.code, r.stderr)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := redistest.NewProxy(t, srv.Addr)
			p.DropReplies(tt.match, 1)
			r := run(t, p.URL(), tt.args...)
			if r.code != 0 || !strings.Contains(r.stdout, "ran") {
				t.Fatalf("exit %d, want 0 with the command run\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			if p.Dropped() != 1 {
				t.Fatalf("%d replies dropped, want 1", p.Dropped())
			}
			c, _ := newMutexClient(t, srv.URL())
			if info, ok, _ := c.Inspect(ctxT(t, time.Second), "k"); ok {
				t.Fatalf("lock still held after exit: %+v", info)
			}
		})
	}
}
