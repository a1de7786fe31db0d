package mutex_test

import (
	"context"
	"testing"
	"time"
)

// BenchmarkLockUnlock: uncontended Lock then Unlock, two round trips.
func BenchmarkLockUnlock(b *testing.B) {
	c, _ := newClient(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		m := c.NewMutex("bench")
		if err := m.Lock(ctx); err != nil {
			b.Fatal(err)
		}
		if err := m.Unlock(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandoff: time from the holder's Unlock call to a queued
// waiter (on another client, as another process would be) holding the
// lock. Reported as ns/handoff; ns/op includes the set-up of each round.
func BenchmarkHandoff(b *testing.B) {
	c, rdb := newClient(b)
	waiterClient, _ := newClient(b)
	ctx := context.Background()
	var total time.Duration
	n := 0
	for b.Loop() {
		holder := c.NewMutex("handoff")
		if err := holder.Lock(ctx); err != nil {
			b.Fatal(err)
		}
		got := make(chan time.Time, 1)
		w := waiterClient.NewMutex("handoff")
		go func() {
			if err := w.Lock(ctx); err != nil {
				b.Error(err)
			}
			got <- time.Now()
		}()
		for rdb.ZCard(ctx, prefix(b)+":lock:{handoff}:queue").Val() == 0 {
			time.Sleep(50 * time.Microsecond)
		}
		start := time.Now()
		if err := holder.Unlock(ctx); err != nil {
			b.Fatal(err)
		}
		total += (<-got).Sub(start)
		n++
		if err := w.Unlock(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(n), "ns/handoff")
}
