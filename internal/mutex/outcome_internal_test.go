package mutex

import (
	"context"
	"errors"
	"io"
	"testing"
)

// replyErr is a Redis error reply, as go-redis returns one.
type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

// TestUnknownOutcome: what settle asks again. A lost reply may hide a
// command that ran; a cluster's "not now" replies (TRYAGAIN during a slot
// migration, redirects that ran out, a shard failing over, a server
// loading) say it did not run; other error replies are final.
func TestUnknownOutcome(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{io.EOF, true},
		{context.DeadlineExceeded, true},
		{replyErr("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{replyErr("ASK 3999 127.0.0.1:6381"), true},
		{replyErr("MOVED 3999 127.0.0.1:6381"), true},
		{replyErr("CLUSTERDOWN The cluster is down"), true},
		{replyErr("MASTERDOWN Link with MASTER is down"), true},
		{replyErr("LOADING Redis is loading the dataset in memory"), true},
		{replyErr("NOPERM this user has no permissions"), false},
		{replyErr("ERR wrong number of arguments"), false},
		{ErrNotReplicated, false},
		{errors.Join(ErrNotReplicated, io.EOF), false},
	}
	for _, tt := range tests {
		name := "nil"
		if tt.err != nil {
			name = tt.err.Error()
		}
		t.Run(name, func(t *testing.T) {
			if got := unknownOutcome(tt.err); got != tt.want {
				t.Errorf("unknownOutcome(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
