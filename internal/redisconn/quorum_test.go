package redisconn

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/redistest"
)

// The ACL user of the quorum tests (redistest pings a server without
// credentials, so the default user stays open).
const quorumUser, quorumPassword = "jobd", "s3cret-quorum"

// startQuorum starts n redis-servers, with args added, that know
// quorumUser, and returns them.
func startQuorum(t *testing.T, n int, args ...string) []*redistest.Server {
	t.Helper()
	srvs := make([]*redistest.Server, n)
	for i := range srvs {
		srvs[i] = redistest.StartWith(t, args...)
		addUser(t, srvs[i])
	}
	return srvs
}

// addUser creates quorumUser on srv, which forgets it when it restarts.
func addUser(t *testing.T, srv *redistest.Server) {
	t.Helper()
	srv.AddUser(t, quorumUser, quorumPassword)
}

// restart starts srv again, and quorumUser on it.
func restart(t *testing.T, srv *redistest.Server) {
	t.Helper()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	addUser(t, srv)
}

// quorumTarget is the Target of a schedule file whose redis.quorum names
// addrs, with quorumUser and database db.
func quorumTarget(db int, addrs ...string) Target {
	return Target{Prefix: "jobd", Redis: jobs.RedisConfig{
		Quorum: &jobs.QuorumConfig{Addrs: addrs}, Username: quorumUser, Password: quorumPassword, DB: db}}
}

// openNodes is OpenNodes, closed at the end of the test.
func openNodes(t *testing.T, tg Target) []redis.UniversalClient {
	t.Helper()
	nodes, err := tg.OpenNodes()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Close()
		}
	})
	return nodes
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestQuorumPingCheck: Ping and Check on a quorum's masters succeed while
// a majority answers, and otherwise fail as unreachable, naming how many
// answered and which masters did not, without the password.
func TestQuorumPingCheck(t *testing.T) {
	srvs := startQuorum(t, 3)
	tg := quorumTarget(0, srvs[0].Addr, srvs[1].Addr, srvs[2].Addr)
	nodes := openNodes(t, tg)
	tests := []struct {
		name    string
		stopped []int // servers stopped for the test, started again after it
		paused  []int // servers paused (SIGSTOP) for the test
		ok      bool
	}{
		{"all three", nil, nil, true},
		{"one stopped", []int{1}, nil, true},
		{"one paused", nil, []int{2}, true}, // within its PingTimeout: go-redis does not abort a blocked read
		{"two stopped", []int{0, 2}, nil, false},
		{"all stopped", []int{0, 1, 2}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, i := range tt.stopped {
				srvs[i].Stop()
				t.Cleanup(func() { restart(t, srvs[i]) })
			}
			for _, i := range tt.paused {
				srvs[i].Pause()
				t.Cleanup(srvs[i].Resume)
			}
			ctx := context.Background()
			for name, f := range map[string]func(context.Context, []redis.UniversalClient) error{"Ping": tg.Ping, "Check": tg.Check} {
				start := time.Now()
				err := f(ctx, nodes)
				if tt.ok {
					if err != nil {
						t.Errorf("%s: %v", name, err)
					}
					if d := time.Since(start); tt.paused == nil && d >= time.Second {
						t.Errorf("%s took %v: it waited for the stopped master's dial retries", name, d)
					}
					continue
				}
				if !errors.Is(err, ErrUnreachable) {
					t.Fatalf("%s: %v, want ErrUnreachable", name, err)
				}
				var me *MajorityError
				if !errors.As(err, &me) || me.Answered != 3-len(tt.stopped) || me.Nodes != 3 || len(me.Failed) != len(tt.stopped) {
					t.Errorf("%s: %#v, want %d of 3 answered", name, me, 3-len(tt.stopped))
				}
				msg := err.Error()
				want := []string{"redis unreachable at quorum of 3 masters:", "3 masters answered, a majority is 2"}
				for _, i := range tt.stopped {
					want = append(want, srvs[i].Addr+": ")
				}
				for _, w := range want {
					if !strings.Contains(msg, w) {
						t.Errorf("%s: %q does not say %q", name, msg, w)
					}
				}
				var e *Error
				if errors.As(err, &e) && strings.Contains(msg+e.Status(), quorumPassword) {
					t.Errorf("%s: %q shows the password", name, msg)
				}
			}
		})
	}
}

// TestQuorumNoPassword: a quorum's failure never shows the password,
// even where a master's own error quotes it.
func TestQuorumNoPassword(t *testing.T) {
	tg := quorumTarget(0, "10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379")
	nodes := openNodes(t, tg)
	errs := []error{
		errors.New("dial 10.0.0.1:6379 as jobd:" + quorumPassword + ": refused"),
		errors.New("WRONGPASS invalid username-password pair " + quorumPassword),
		nil,
	}
	for _, kinds := range [][]error{errs, {errs[1], errs[1], nil}} {
		err := tg.majorityErr(nodes, kinds)
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("%v is not an *Error", err)
		}
		for _, m := range []string{err.Error(), e.Status(), tg.String()} {
			if strings.Contains(m, quorumPassword) {
				t.Errorf("%q shows the password", m)
			}
		}
	}
}

// TestQuorumRefused: a quorum is refused only when a majority of its
// masters refuse jobd (here, the database number); a minority that
// refuses, or one that refuses beside one that is down, is not enough.
func TestQuorumRefused(t *testing.T) {
	good := startQuorum(t, 2)
	small := startQuorum(t, 2, "--databases", "2") // database 3 is out of range
	dead := deadAddr(t)
	tests := []struct {
		name  string
		addrs []string
		want  error // nil, ErrRefused or ErrUnreachable
	}{
		{"one of three refuses", []string{good[0].Addr, small[0].Addr, good[1].Addr}, nil},
		{"two of three refuse", []string{good[0].Addr, small[0].Addr, small[1].Addr}, ErrRefused},
		{"one refuses, one is down", []string{good[0].Addr, small[0].Addr, dead}, ErrUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := quorumTarget(3, tt.addrs...)
			err := tg.Check(context.Background(), openNodes(t, tg))
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("Check: %v", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("Check: %v, want %v", err, tt.want)
			case errors.Is(err, ErrRefused) && errors.Is(err, ErrUnreachable):
				t.Fatalf("Check: %v is of both kinds", err)
			}
			if err != nil && !strings.Contains(err.Error(), "1 of 3 masters answered") {
				t.Errorf("%q does not say how many answered", err)
			}
		})
	}
}

// TestQuorumOne: with one node, Ping and Check are what they are for any
// one client: its error classified as is, with no count of masters.
func TestQuorumOne(t *testing.T) {
	tg := Target{URL: "redis://" + deadAddr(t) + "/0", Prefix: "jobd"}
	nodes := openNodes(t, tg)
	if len(nodes) != 1 {
		t.Fatalf("OpenNodes of a URL: %d clients, want 1", len(nodes))
	}
	err := tg.Ping(context.Background(), nodes)
	if !errors.Is(err, ErrUnreachable) || strings.Contains(err.Error(), "masters answered") {
		t.Fatalf("Ping: %v", err)
	}
	var me *MajorityError
	if errors.As(err, &me) {
		t.Fatalf("Ping of one node: %v is a *MajorityError", err)
	}
}

// TestOpenNodes: a quorum is one plain client per master, in the
// configured order, with the file's credentials, database and TLS and
// the settings of Open's plain client; Open refuses a quorum; any other
// topology is the one client Open returns.
func TestOpenNodes(t *testing.T) {
	srvs := startQuorum(t, 3)
	addrs := []string{srvs[0].Addr, srvs[1].Addr, srvs[2].Addr}
	tg := quorumTarget(5, addrs...)
	nodes := openNodes(t, tg)
	plain, err := Target{URL: "redis://u:p@h:1/0", Prefix: "jobd"}.options()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i, n := range nodes {
		c, ok := n.(*redis.Client)
		if !ok {
			t.Fatalf("node %d is a %T, want a *redis.Client", i, n)
		}
		o := c.Options()
		if o.Addr != addrs[i] || o.Username != quorumUser || o.Password != quorumPassword || o.DB != 5 || o.TLSConfig != nil {
			t.Errorf("node %d: addr %s user %q db %d tls %v", i, o.Addr, o.Username, o.DB, o.TLSConfig != nil)
		}
		if o.ContextTimeoutEnabled != plain.plain.ContextTimeoutEnabled || !o.ContextTimeoutEnabled {
			t.Errorf("node %d: ContextTimeoutEnabled %v, unlike a plain client's", i, o.ContextTimeoutEnabled)
		}
		// The write lands in database 5 of that master, and only there.
		if err := n.Set(ctx, "jobd:node", addrs[i], 0).Err(); err != nil {
			t.Fatal(err)
		}
		raw := redis.NewClient(&redis.Options{Addr: addrs[i], DB: 5})
		got, err := raw.Get(ctx, "jobd:node").Result()
		raw.Close()
		if err != nil || got != addrs[i] {
			t.Errorf("node %d: database 5 of %s has %q (%v)", i, addrs[i], got, err)
		}
	}
	if _, err := tg.Open(); !errors.Is(err, ErrQuorumOpen) || !strings.Contains(err.Error(), "OpenNodes") {
		t.Errorf("Open of a quorum: %v, want ErrQuorumOpen", err)
	}

	tls := quorumTarget(0, addrs...)
	tls.Redis.TLS = &jobs.TLSConfig{ServerName: "redis.internal"}
	for i, n := range openNodes(t, tls) {
		if o := n.(*redis.Client).Options(); o.TLSConfig == nil || o.TLSConfig.ServerName != "redis.internal" {
			t.Errorf("node %d: tls %+v, want redis.tls applied", i, o.TLSConfig)
		}
	}
	acked := quorumTarget(0, addrs...)
	acked.Redis.MinReplicasAcked = 1
	if _, err := acked.OpenNodes(); err == nil || !strings.Contains(err.Error(), "min_replicas_acked") {
		t.Errorf("OpenNodes with min_replicas_acked: %v", err)
	}
}

// TestQuorumTopology: a quorum's topology lists its masters in the
// configured order, marks those that do not answer, and is an error only
// when a majority does not.
func TestQuorumTopology(t *testing.T) {
	srvs := startQuorum(t, 3)
	tg := quorumTarget(0, srvs[0].Addr, srvs[1].Addr, srvs[2].Addr)
	if got, want := tg.String(), "quorum of 3 masters: "+srvs[0].Addr+","+srvs[1].Addr+","+srvs[2].Addr; got != want {
		t.Errorf("String: %q, want %q", got, want)
	}
	tests := []struct {
		name    string
		stopped []int
		ok      bool
	}{
		{"all three", nil, true},
		{"one stopped", []int{2}, true},
		{"two stopped", []int{0, 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := []string{srvs[0].Addr, srvs[1].Addr, srvs[2].Addr}
			for _, i := range tt.stopped {
				srvs[i].Stop()
				t.Cleanup(func() { restart(t, srvs[i]) })
				want[i] += Down
			}
			top, err := tg.Topology(context.Background())
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrUnreachable)) {
				t.Fatalf("Topology: %v, want ok=%v", err, tt.ok)
			}
			if top.Kind != KindQuorum || strings.Join(top.Masters, ",") != strings.Join(want, ",") {
				t.Fatalf("Topology: %+v, want masters %q", top, want)
			}
			wantStr := "quorum, " + string(rune('0'+3-len(tt.stopped))) + " of 3 masters answer: " + strings.Join(want, ", ")
			if top.String() != wantStr {
				t.Errorf("String: %q, want %q", top.String(), wantStr)
			}
		})
	}
}

// TestQuorumWatch: the daemon's watch of a quorum reports Redis back as
// soon as a majority answers, with a minority still down.
func TestQuorumWatch(t *testing.T) {
	srvs := startQuorum(t, 3)
	tg := quorumTarget(0, srvs[0].Addr, srvs[1].Addr, srvs[2].Addr)
	nodes := openNodes(t, tg)
	srvs[0].Stop()
	srvs[1].Stop()
	startErr := tg.Check(context.Background(), nodes)
	if !errors.Is(startErr, ErrUnreachable) {
		t.Fatalf("Check with 2 of 3 down: %v", startErr)
	}
	results := make(chan error, 16)
	refused, stop := tg.Watch(context.Background(), nodes, startErr, slog.New(slog.NewTextHandler(io.Discard, nil)), func(err error) {
		select {
		case results <- err:
		default:
		}
	})
	defer stop()
	restart(t, srvs[1])
	deadline := time.After(15 * time.Second)
	for {
		select {
		case err := <-results:
			if err == nil {
				return // 2 of 3 answer: ready
			}
		case err := <-refused:
			t.Fatalf("refused: %v", err)
		case <-deadline:
			t.Fatal("the watch did not report Redis back with 2 of 3 masters up")
		}
	}
}

// TestQuorumSameServer: two addresses of one redis-server (127.0.0.1 and
// localhost) would count it twice toward the majority: Check refuses it.
func TestQuorumSameServer(t *testing.T) {
	srvs := startQuorum(t, 2)
	_, port, _ := net.SplitHostPort(srvs[0].Addr)
	tg := quorumTarget(0, srvs[0].Addr, "localhost:"+port, srvs[1].Addr)
	err := tg.Check(context.Background(), openNodes(t, tg))
	if !errors.Is(err, ErrRefused) || !errors.Is(err, ErrSameServer) || !strings.Contains(err.Error(), "localhost:"+port) {
		t.Fatalf("Check = %v, want the same server refused", err)
	}
	tg = quorumTarget(0, srvs[0].Addr, srvs[1].Addr, deadAddr(t))
	if err := tg.Check(context.Background(), openNodes(t, tg)); err != nil {
		t.Fatalf("three distinct addresses, one down: %v", err)
	}
}
