package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/redistest"
	"github.com/jobd/jobd/internal/scheduler"
)

// TestReadyzClock: /readyz is 503, and says why, while the replica's clock
// is too far from Redis's to claim ticks; 200 once it is back.
func TestReadyzClock(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(strings.TrimSuffix(redistest.SharedURL(t), "/0"), "redis://")})
	defer rdb.Close()
	ok := false
	addr := freeAddr(t)
	ping := func(ctx context.Context) error { return rdb.Ping(ctx).Err() }
	stop, err := serveHTTP(context.Background(), addr, newMetrics(func() *scheduler.Scheduler { return nil }), ping,
		func() bool { return ok }, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if body := get(t, "http://"+addr+"/readyz", 503); !strings.Contains(body, "clock") {
		t.Errorf("/readyz says %q, want the clock named", body)
	}
	ok = true
	get(t, "http://"+addr+"/readyz", 200)
}

// TestStatusShowsClockAndRedisWarnings: `jobd status` shows a replica
// whose clock is off as NOT CLAIMING, and lists the Redis settings that
// weaken the guarantees, from the replicas' heartbeats.
func TestStatusShowsClockAndRedisWarnings(t *testing.T) {
	url := redistest.SharedURL(t)
	_, rdb := newMutexClient(t, url)
	st := scheduler.NewStore(rdb, prefix(t))
	hb := scheduler.Heartbeat{ID: "slow", Host: "h", StartedAt: time.Now(), BeatAt: time.Now(),
		ClockOffset: -64 * time.Second, ClockOK: false, Warnings: []string{"appendonly is off: test"}}
	if _, err := st.Beat(ctxT(t, 5*time.Second), hb, time.Minute); err != nil {
		t.Fatal(err)
	}
	r := run(t, url, "status")
	if !strings.Contains(r.stdout, "OFF -64.0s: NOT CLAIMING") || !strings.Contains(r.stdout, "REDIS WARNINGS") {
		t.Fatalf("status:\n%s\n%s", r.stdout, r.stderr)
	}
	r = run(t, url, "status", "--json")
	if !strings.Contains(r.stdout, `"clock_ok": false`) || !strings.Contains(r.stdout, `"clock_offset_seconds": -64`) {
		t.Fatalf("status --json:\n%s\n%s", r.stdout, r.stderr)
	}
}
