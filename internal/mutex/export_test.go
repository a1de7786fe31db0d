package mutex

import "context"

// Leave and WaiterEntry expose a waiter's way out and its queue entry to
// the external tests, which stage a waiter that was handed the lock but
// never heard of it.
func (m *Mutex) Leave(ctx context.Context, entry, token string) { m.leave(ctx, entry, token) }

func (m *Mutex) WaiterEntry(waiter, token string) string { return m.waiterEntry(waiter, token) }
