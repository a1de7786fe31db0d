package mutex_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/mutex"
)

// TestTryLockClaim: the claim decides who owns a tick; the lock decides
// whether it may run now. One round trip for both.
func TestTryLockClaim(t *testing.T) {
	c, rdb := newClient(t)
	ctx := ctxT(t, 5*time.Second)
	claim := func(tick string) mutex.Claim {
		return mutex.Claim{Key: prefix(t) + ":tick:" + tick, Value: "run-" + tick, TTL: time.Minute}
	}
	a := c.NewMutex("shared")
	if err := a.TryLockClaim(ctx, claim("T1")); err != nil {
		t.Fatal(err)
	}
	// Same tick again, by another attempt (another claim value): the
	// claim is taken, the lock is untouched.
	other := claim("T1")
	other.Value = "another-run"
	if err := c.NewMutex("shared").TryLockClaim(ctx, other); !errors.Is(err, mutex.ErrClaimTaken) {
		t.Fatalf("second claim: %v, want ErrClaimTaken", err)
	}
	// Next tick while the lock is held: claim won, lock not obtained.
	if err := c.NewMutex("shared").TryLockClaim(ctx, claim("T2")); !errors.Is(err, mutex.ErrNotObtained) {
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

// TestTryLockClaimsBatch: many claims cost one pipeline; results line up.
func TestTryLockClaimsBatch(t *testing.T) {
	c, _ := newClient(t)
	ctx := ctxT(t, 5*time.Second)
	held := c.NewMutex("lock-3")
	if err := held.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 200
	ms := make([]*mutex.Mutex, n)
	cls := make([]mutex.Claim, n)
	for i := range ms {
		ms[i] = c.NewMutex(fmt.Sprintf("lock-%d", i))
		cls[i] = mutex.Claim{Key: fmt.Sprintf("%s:tick:%d", prefix(t), i), Value: "x", TTL: time.Minute}
	}
	cls[7].Key = cls[6].Key // 7 loses to 6 in the same batch
	cls[7].Value = "y"
	errs := c.TryLockClaims(ctx, ms, cls)
	for i, err := range errs {
		var want error
		switch i {
		case 3:
			want = mutex.ErrNotObtained
		case 7:
			want = mutex.ErrClaimTaken
		}
		if (want == nil && err != nil) || (want != nil && !errors.Is(err, want)) {
			t.Errorf("%d: %v, want %v", i, err, want)
		}
	}
	if ms[0].Fence() == 0 {
		t.Error("no fence on a won claim")
	}
}
