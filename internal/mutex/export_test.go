package mutex

import "context"

// Leave and WaiterEntry expose a waiter's way out and its queue entry to
// the external tests, which stage a waiter that was handed the lock but
// never heard of it.
func (m *Mutex) Leave(ctx context.Context, entry, token string) { m.leave(ctx, entry, token) }

func (m *Mutex) WaiterEntry(waiter, token string) string { return m.waiterEntry(waiter, token) }

// ReleaseAgain runs token's release once more, as go-redis does after a
// lost reply, and returns release.lua's answer.
func (m *Mutex) ReleaseAgain(ctx context.Context, token string) (int64, error) {
	return releaseScript.Run(ctx, m.c.rdb, m.releaseKeys(token), m.releaseArgs(token, "")...).Int64()
}
