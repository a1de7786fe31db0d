package redisconn

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jobd/jobd/internal/jobs"
)

// TestResolve: a flag or its environment variable wins, then the
// schedule file, then the defaults; empty counts as unset.
func TestResolve(t *testing.T) {
	file := &jobs.Config{Redis: jobs.RedisConfig{URL: "redis://file:6379/1", Prefix: "file"}}
	sentinel := &jobs.Config{Redis: jobs.RedisConfig{Sentinel: &jobs.SentinelConfig{Master: "m", Addrs: []string{"s:26379"}}}}
	quorum := &jobs.Config{Redis: jobs.RedisConfig{Quorum: &jobs.QuorumConfig{Addrs: []string{"a:6379", "b:6379", "c:6379"}}}}
	tests := []struct {
		name         string
		given        Target
		cfg          *jobs.Config
		url, prefix  string
		viaSentinels bool
		quorum       bool
	}{
		{"defaults", Target{}, nil, DefaultURL, "jobd", false, false},
		{"file", Target{}, file, "redis://file:6379/1", "file", false, false},
		{"given wins", Target{URL: "redis://flag:6379/0", Prefix: "flag"}, file, "redis://flag:6379/0", "flag", false, false},
		{"each field on its own", Target{Prefix: "flag"}, file, "redis://file:6379/1", "flag", false, false},
		{"the file's sentinel", Target{}, sentinel, "", "jobd", true, false},
		{"a given URL wins over the file's sentinel", Target{URL: "redis://flag:6379/0"}, sentinel, "redis://flag:6379/0", "jobd", false, false},
		{"the file's quorum", Target{}, quorum, "", "jobd", false, true},
		{"a given URL wins over the file's quorum", Target{URL: "redis://flag:6379/0"}, quorum, "redis://flag:6379/0", "jobd", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Resolve(tt.given, tt.cfg)
			if got.URL != tt.url || got.Prefix != tt.prefix || (got.Redis.Sentinel != nil) != tt.viaSentinels || (got.Redis.Quorum != nil) != tt.quorum {
				t.Fatalf("Resolve = %+v, want url %q prefix %q, via sentinels %v, quorum %v", got, tt.url, tt.prefix, tt.viaSentinels, tt.quorum)
			}
		})
	}
}

// TestNoPassword: neither the target nor a failure's messages show the
// password, even where a message quotes the URL or the password alone.
func TestNoPassword(t *testing.T) {
	if s := (Target{URL: "redis://user:s3cret@bad host/0"}).String(); strings.Contains(s, "s3cret") {
		t.Errorf("%q shows the password", s)
	}
	for _, raw := range []string{"redis://user:s3cret@127.0.0.1:1/0", "rediss://:s3cret@h:6380/2"} {
		tg := Target{URL: raw}
		errs := []error{
			tg.Fail(errors.New("dial " + raw + ": refused s3cret")),
			tg.Fail(errors.New("WRONGPASS invalid username-password pair")),
		}
		msgs := []string{tg.String(), tg.Scrub("at " + raw)}
		for _, err := range errs {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%v is not an *Error", err)
			}
			msgs = append(msgs, err.Error(), e.Status())
		}
		for _, m := range msgs {
			if strings.Contains(m, "s3cret") {
				t.Errorf("%q shows the password", m)
			}
		}
	}
}

// TestFail: refusals of jobd's configuration are ErrRefused, anything else
// ErrUnreachable; nil stays nil and an *Error is kept as is.
func TestFail(t *testing.T) {
	tg := Target{URL: DefaultURL}
	if tg.Fail(nil) != nil {
		t.Fatal("Fail(nil) is not nil")
	}
	for msg, kind := range map[string]error{
		"NOPERM this user has no permissions":           ErrRefused,
		"mutex: lock: ERR DB index is out of range":     ErrRefused,
		"dial tcp 127.0.0.1:1: connect: refused":        ErrUnreachable,
		"context deadline exceeded":                     ErrUnreachable,
		"WRONGPASS invalid username-password pair":      ErrRefused,
		"scheduler: beat: NOAUTH Authentication needed": ErrRefused,
	} {
		err := tg.Fail(errors.New(msg))
		if !errors.Is(err, kind) {
			t.Errorf("%q: %v, want %v", msg, err, kind)
		}
		if again := tg.Fail(err); again != err {
			t.Errorf("%q classified twice", msg)
		}
	}
}

// TestTLSHint: a rediss:// target that times out or hangs up is told it
// may be a plain-text port; a redis:// one is not.
func TestTLSHint(t *testing.T) {
	tests := []struct {
		url  string
		err  error
		hint bool
	}{
		{"rediss://h:6379/0", context.DeadlineExceeded, true},
		{"rediss://h:6379/0", errors.New("EOF"), true},
		{"redis://h:6379/0", context.DeadlineExceeded, false},
		{"rediss://h:6379/0", errors.New("connection refused"), false},
	}
	for _, tt := range tests {
		t.Run(tt.url+" "+tt.err.Error(), func(t *testing.T) {
			msg := (&Error{Kind: ErrUnreachable, Target: Target{URL: tt.url}, Err: tt.err}).Error()
			if got := strings.Contains(msg, "TLS handshake"); got != tt.hint {
				t.Fatalf("%q: hint %v, want %v", msg, got, tt.hint)
			}
		})
	}
}

// TestTopologyString: status and the dashboard name each topology the
// same way.
func TestTopologyString(t *testing.T) {
	tests := []struct {
		top  Topology
		want string
	}{
		{Topology{Kind: KindStandalone, Master: "127.0.0.1:6379"}, "standalone, master 127.0.0.1:6379"},
		{Topology{Kind: KindSentinel, Master: "10.0.0.2:6379", Name: "mymaster"}, "sentinel, master 10.0.0.2:6379 (mymaster)"},
		{Topology{Kind: KindCluster, Masters: []string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"}},
			"cluster, 3 masters: 10.0.0.1:7000, 10.0.0.2:7000, 10.0.0.3:7000"},
		{Topology{Kind: KindQuorum, Masters: []string{"10.0.0.1:6379", "10.0.0.2:6379" + Down, "10.0.0.3:6379"}},
			"quorum, 2 of 3 masters answer: 10.0.0.1:6379, 10.0.0.2:6379 (down), 10.0.0.3:6379"},
	}
	for _, tt := range tests {
		t.Run(tt.top.Kind, func(t *testing.T) {
			if got := tt.top.String(); got != tt.want {
				t.Errorf("%q, want %q", got, tt.want)
			}
		})
	}
}

// TestClusterURLDatabase: a Redis Cluster has only database 0, in the
// URL as in the file.
func TestClusterURLDatabase(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"redis+cluster://127.0.0.1:7000", true},
		{"redis+cluster://127.0.0.1:7000/0?addr=127.0.0.1:7001", true},
		{"redis+cluster://127.0.0.1:7000/1", false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, err := Target{URL: tt.url, Prefix: "jobd"}.Open()
			if (err == nil) != tt.ok {
				t.Errorf("Open: %v, want ok=%v", err, tt.ok)
			}
		})
	}
	// min_replicas_acked is refused on a cluster named by a URL too (the
	// file's cluster: is refused by validation).
	acked := Target{URL: "redis+cluster://127.0.0.1:7000", Prefix: "jobd", Redis: jobs.RedisConfig{MinReplicasAcked: 1}}
	if _, err := acked.Open(); err == nil || !strings.Contains(err.Error(), "min_replicas_acked") {
		t.Errorf("Open with min_replicas_acked on a cluster URL: %v", err)
	}
}
