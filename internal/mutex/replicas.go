package mutex

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// WithReplicaWait makes every acquisition wait, with WAIT n timeout sent
// in the same pipeline (so on the same connection) right after the
// acquire script, until n replicas have the new lock. Replication is
// asynchronous: a failover can lose a lock its replicas never got, and
// hand it to a second holder. With this option a lock that fewer than n
// replicas acknowledged in time is released again and the acquisition
// fails with ErrNotReplicated (fail closed). Default 0: no WAIT.
func WithReplicaWait(n int, timeout time.Duration) ClientOption {
	return func(c *Client) { c.replicas, c.replicaTimeout = n, timeout }
}

// queueWait adds WAIT to pipe when the client asks for replicas (nil
// otherwise): it covers every write queued before it on the connection.
func (c *Client) queueWait(ctx context.Context, pipe redis.Pipeliner) *redis.Cmd {
	if c.replicas == 0 {
		return nil
	}
	return pipe.Do(ctx, "wait", c.replicas, c.replicaTimeout.Milliseconds())
}

// runAcquire runs acquire.lua once (and WAIT, see WithReplicaWait); acks
// is how many replicas acknowledged it, -1 when not asked.
func (c *Client) runAcquire(ctx context.Context, keys []string, args []any) (res []int64, acks int, err error) {
	if c.replicas == 0 {
		res, err = acquireScript.Run(ctx, c.rdb, keys, args...).Int64Slice()
		return res, -1, err
	}
	for _, eval := range []bool{false, true} { // EVALSHA, then EVAL after a NOSCRIPT
		pipe := c.rdb.Pipeline()
		var cmd *redis.Cmd
		if eval {
			cmd = acquireScript.Eval(ctx, pipe, keys, args...)
		} else {
			cmd = acquireScript.EvalSha(ctx, pipe, keys, args...)
		}
		wait := c.queueWait(ctx, pipe)
		_, _ = pipe.Exec(ctx)
		res, err = cmd.Int64Slice()
		if redis.HasErrorPrefix(err, "NOSCRIPT") {
			continue
		}
		if err != nil {
			return nil, -1, err
		}
		n, werr := wait.Int64()
		if werr != nil {
			return nil, -1, werr
		}
		return res, int(n), nil
	}
	return nil, -1, err
}

// checkReplicated releases a hold that fewer replicas than asked for
// acknowledged (acks >= 0), and says so with ErrNotReplicated.
func (m *Mutex) checkReplicated(ctx context.Context, acks int) error {
	if acks < 0 || acks >= m.c.replicas {
		return nil
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
	_ = m.Unlock(uctx)
	cancel()
	return fmt.Errorf("%w: %q: %d of %d replicas acknowledged within %v", ErrNotReplicated, m.name, acks, m.c.replicas, m.c.replicaTimeout)
}
