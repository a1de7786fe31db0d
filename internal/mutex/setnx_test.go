package mutex_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/mutex"
)

// TestTryLockSetNX: the claim decides who owns a tick; the lock decides
// whether it may run now. One round trip for both.
func TestTryLockSetNX(t *testing.T) {
	c, rdb := newClient(t)
	ctx := ctxT(t, 5*time.Second)
	claim := func(tick string) mutex.SetNX {
		return mutex.SetNX{Key: prefix(t) + ":tick:" + tick, Value: "run-" + tick, TTL: time.Minute}
	}
	a := c.NewMutex("shared")
	if err := a.TryLockSetNX(ctx, claim("T1")); err != nil {
		t.Fatal(err)
	}
	// Same tick again, by another attempt (another claim value): the
	// claim is taken, the lock is untouched.
	other := claim("T1")
	other.Value = "another-run"
	if err := c.NewMutex("shared").TryLockSetNX(ctx, other); !errors.Is(err, mutex.ErrKeyTaken) {
		t.Fatalf("second claim: %v, want ErrKeyTaken", err)
	}
	// Next tick while the lock is held: claim won, lock not obtained.
	if err := c.NewMutex("shared").TryLockSetNX(ctx, claim("T2")); !errors.Is(err, mutex.ErrNotObtained) {
		t.Fatalf("claim with lock held: %v, want ErrNotObtained", err)
	}
	if v := rdb.Get(ctx, prefix(t)+":tick:T2").Val(); v != "run-T2" {
		t.Fatalf("claim T2 = %q, want it kept", v)
	}
	if ttl := rdb.PTTL(ctx, prefix(t)+":tick:T2").Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("claim ttl %v", ttl)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTryLockBatch: many claims cost one pipeline; results line up.
func TestTryLockBatch(t *testing.T) {
	c, _ := newClient(t)
	ctx := ctxT(t, 5*time.Second)
	held := c.NewMutex("lock-3")
	if err := held.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 200
	ms := make([]*mutex.Mutex, n)
	cls := make([]mutex.SetNX, n)
	for i := range ms {
		ms[i] = c.NewMutex(fmt.Sprintf("lock-%d", i))
		cls[i] = mutex.SetNX{Key: fmt.Sprintf("%s:tick:%d", prefix(t), i), Value: "x", TTL: time.Minute}
	}
	cls[7].Key = cls[6].Key // 7 loses to 6 in the same batch
	cls[7].Value = "y"
	errs := c.TryLockBatch(ctx, ms, cls)
	for i, err := range errs {
		var want error
		switch i {
		case 3:
			want = mutex.ErrNotObtained
		case 7:
			want = mutex.ErrKeyTaken
		}
		if (want == nil && err != nil) || (want != nil && !errors.Is(err, want)) {
			t.Errorf("%d: %v, want %v", i, err, want)
		}
	}
	if ms[0].Fence() == 0 {
		t.Error("no fence on a won claim")
	}
}
