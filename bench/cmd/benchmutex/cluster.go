package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
)

// mainTB is the part of testing.TB that redistest needs, for a program:
// a fatal error exits, and cleanups run at done.
type mainTB struct{ cleanups []func() }

func (*mainTB) Helper() {}
func (*mainTB) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchmutex: "+format+"\n", args...)
	os.Exit(1)
}
func (tb *mainTB) Cleanup(f func()) { tb.cleanups = append(tb.cleanups, f) }
func (tb *mainTB) done() {
	for i := len(tb.cleanups) - 1; i >= 0; i-- {
		tb.cleanups[i]()
	}
}

// runCluster runs uncontended and handoff for every library, and claims
// for jobd, on a 3-master, 3-replica Redis Cluster (topology=cluster);
// Redis's commands and CPU are summed over the masters.
func runCluster(only string, ops, rounds int, limit time.Duration) {
	tb := &mainTB{}
	defer tb.done()
	cl := redistest.StartCluster(tb)
	addr := "cluster:" + strings.Join(cl.Addrs(), ",")
	masters, err := cl.Masters()
	if err != nil {
		tb.Fatalf("%v", err)
	}
	var admins []*redis.Client
	for _, m := range masters {
		a := redis.NewClient(&redis.Options{Addr: m.Addr})
		defer a.Close()
		admins = append(admins, a)
	}
	runTopology("cluster", addr, admins, func(lib string) bool { return only == "" || strings.Contains(lib, only) }, ops, rounds, limit)
}

// runTopology prints, for one topology (addr in the form libs' open
// takes), the uncontended and handoff rows of every library that run
// keeps, and the claims row of jobd; admins are the masters whose
// commands and CPU are summed.
func runTopology(topology, addr string, admins []*redis.Client, run func(lib string) bool, ops, rounds int, limit time.Duration) {
	for _, l := range libs() {
		if !run(l.name) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		fmt.Printf("bench=mutex scenario=uncontended topology=%s lib=%s %s\n", topology, l.name, uncontendedOn(ctx, l, addr, admins, ops))
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), limit)
		fmt.Printf("bench=mutex scenario=handoff topology=%s lib=%s %s\n", topology, l.name, handoff(ctx, l, addr, rounds))
		cancel()
	}
	if run("jobd") {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		fmt.Printf("bench=mutex scenario=claims topology=%s lib=jobd %s\n", topology, claims(ctx, addr, admins...))
		cancel()
	}
}

// claims is what a replica does at a tick: TryLockBatch of claimBatch new
// SET NX keys, each with its own lock (spread over a cluster's slots),
// in one call, then the releases; claimRounds times. It reports claims
// per second and the batch's p50 and max.
func claims(ctx context.Context, addr string, admins ...*redis.Client) string {
	const claimBatch, claimRounds = 200, 20
	c, closeFn := newJobd(addr, mutex.WithPrefix("benchclaims"))
	defer closeFn()
	var lat []time.Duration
	var m *meter
	var busy time.Duration              // in TryLockBatch; the releases are not counted
	for r := -1; r < claimRounds; r++ { // round -1 warms up
		if r == 0 {
			m = startMeter(ctx, admins...)
		}
		ms := make([]*mutex.Mutex, claimBatch)
		cls := make([]mutex.SetNX, claimBatch)
		for i := range ms {
			name := fmt.Sprintf("job%03d", i)
			ms[i] = c.NewMutex(name, mutex.WithTTL(ttl))
			cls[i] = mutex.SetNX{Key: fmt.Sprintf("benchclaims:tick:{%s}:%d", name, r+1), Value: "me", TTL: time.Minute}
		}
		t0 := time.Now()
		for i, err := range c.TryLockBatch(ctx, ms, cls) {
			if err != nil {
				return fmt.Sprintf("error=%s claim=%d", quote(err), i)
			}
		}
		if r >= 0 {
			lat = append(lat, time.Since(t0))
			busy += lat[len(lat)-1]
		}
		for _, mu := range ms {
			_ = mu.Unlock(ctx)
		}
	}
	n := claimBatch * claimRounds
	return fmt.Sprintf("batch=%d claims=%d claims_per_s=%.0f batch_p50_us=%d batch_max_us=%d %s", claimBatch, n,
		float64(n)/busy.Seconds(), pct(lat, 50).Microseconds(), pct(lat, 100).Microseconds(),
		strings.ReplaceAll(m.done(ctx, n), "_per_op", "_per_claim_and_release"))
}
