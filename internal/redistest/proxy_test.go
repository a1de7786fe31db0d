package redistest

import (
	"bufio"
	"context"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestProxyFaults: each fault the proxy injects shows up in go-redis (with
// its default retries, and ContextTimeoutEnabled as jobd sets it) exactly as
// documented, against a real server.
func TestProxyFaults(t *testing.T) {
	s := Start(t)
	direct := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { direct.Close() })

	tests := []struct {
		name string
		opt  func(*redis.Options)
		run  func(t *testing.T, p *Proxy, rdb *redis.Client)
	}{
		{
			// The first INCR runs but its reply is lost; go-redis retries
			// on the EOF, so the counter proves the command ran twice.
			name: "drop reply, retried",
			run: func(t *testing.T, p *Proxy, rdb *redis.Client) {
				ctx := context.Background()
				mustPing(t, rdb) // the handshake is not what we drop
				p.DropReplies("INCR", 1)
				n, err := rdb.Incr(ctx, "k").Result()
				if err != nil || n != 2 {
					t.Fatalf("INCR through a dropped reply = %d, %v; want 2 (first INCR ran, reply lost, retried)", n, err)
				}
				if got := direct.Get(ctx, "k").Val(); got != "2" {
					t.Fatalf("server has k=%q, want 2", got)
				}
				if d := p.Dropped(); d != 1 {
					t.Fatalf("Dropped() = %d, want 1", d)
				}
				// The arm is spent: the next INCR is answered.
				if n, err := rdb.Incr(ctx, "k").Result(); err != nil || n != 3 {
					t.Fatalf("INCR after the drop = %d, %v; want 3", n, err)
				}
			},
		},
		{
			// Without retries the caller sees an error although the
			// command ran: the case jobd's scripts must settle.
			name: "drop reply, no retries",
			opt:  func(o *redis.Options) { o.MaxRetries = -1 },
			run: func(t *testing.T, p *Proxy, rdb *redis.Client) {
				ctx := context.Background()
				p.DropReplies("INCR", 1)
				if n, err := rdb.Incr(ctx, "k").Result(); err == nil {
					t.Fatalf("INCR with its reply dropped succeeded: %d", n)
				}
				if got := direct.Get(ctx, "k").Val(); got != "1" {
					t.Fatalf("server has k=%q, want 1 (the INCR ran)", got)
				}
				if d := p.Dropped(); d != 1 {
					t.Fatalf("Dropped() = %d, want 1", d)
				}
				if err := rdb.Ping(ctx).Err(); err != nil {
					t.Fatalf("PING after the drop: %v", err)
				}
			},
		},
		{
			// "" matches any request; only the armed connection is cut.
			name: "drop any, other connections untouched",
			run: func(t *testing.T, p *Proxy, rdb *redis.Client) {
				ctx := context.Background()
				other := redis.NewClient(&redis.Options{Addr: p.Addr, MaxRetries: -1, PoolSize: 1})
				defer other.Close()
				mustPing(t, other)
				otherID := other.ClientID(ctx).Val()
				c, r := dialRaw(t, p)
				p.DropReplies("", 1)
				if _, err := c.Write([]byte("INCR raw\r\n")); err != nil {
					t.Fatal(err)
				}
				if line, err := r.ReadString('\n'); err == nil {
					t.Fatalf("raw connection got %q after its reply was dropped", line)
				}
				if got := direct.Get(ctx, "raw").Val(); got != "1" {
					t.Fatalf("server has raw=%q, want 1", got)
				}
				id, err := other.ClientID(ctx).Result()
				if err != nil || id != otherID {
					t.Fatalf("other connection: CLIENT ID = %d, %v; want %d on the same connection", id, err, otherID)
				}
				if d := p.Dropped(); d != 1 {
					t.Fatalf("Dropped() = %d, want 1", d)
				}
			},
		},
		{
			// An armed request whose connection ends before any reply
			// proves nothing, so the arm passes to the next match.
			name: "arm given back when no reply came",
			opt:  func(o *redis.Options) { o.MaxRetries = -1 },
			run: func(t *testing.T, p *Proxy, rdb *redis.Client) {
				ctx := context.Background()
				mustPing(t, rdb)
				c, _ := dialRaw(t, p)
				p.DropReplies("BLPOP", 1)
				if _, err := c.Write([]byte("BLPOP q 0\r\n")); err != nil { // blocks on Redis, no reply
					t.Fatal(err)
				}
				waitFor(t, func() bool { return blocked(ctx, direct) == 1 })
				p.CutAll()
				waitFor(t, func() bool { return blocked(ctx, direct) == 0 })
				if d := p.Dropped(); d != 0 {
					t.Fatalf("Dropped() = %d after a cut with no reply, want 0", d)
				}
				if err := direct.RPush(ctx, "q", "v").Err(); err != nil {
					t.Fatal(err)
				}
				if v, err := rdb.BLPop(ctx, time.Second, "q").Result(); err == nil {
					t.Fatalf("BLPOP with its reply dropped succeeded: %v", v)
				}
				if n := direct.LLen(ctx, "q").Val(); n != 0 {
					t.Fatalf("q has %d items; want 0 (the BLPOP ran)", n)
				}
				if d := p.Dropped(); d != 1 {
					t.Fatalf("Dropped() = %d, want 1", d)
				}
			},
		},
		{
			// A pipeline is one request: its replies are dropped together,
			// and after the retry every command ran twice.
			name: "drop pipeline",
			run: func(t *testing.T, p *Proxy, rdb *redis.Client) {
				ctx := context.Background()
				mustPing(t, rdb)
				p.DropReplies("INCR", 1)
				cmds, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
					pipe.Incr(ctx, "a")
					pipe.Incr(ctx, "b")
					return nil
				})
				if err != nil {
					t.Fatalf("pipeline: %v", err)
				}
				for _, cmd := range cmds {
					if n := cmd.(*redis.IntCmd).Val(); n != 2 {
						t.Fatalf("%v = %d, want 2", cmd.Args(), n)
					}
				}
				if d := p.Dropped(); d != 1 {
					t.Fatalf("Dropped() = %d, want 1", d)
				}
			},
		},
		{
			// A hung network: the command times out on the caller's
			// context, nothing is closed, and held traffic is delivered.
			name: "stall",
			run: func(t *testing.T, p *Proxy, rdb *redis.Client) {
				mustPing(t, rdb)
				c, r := dialRaw(t, p)
				p.Stall()
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				start := time.Now()
				err := rdb.Ping(ctx).Err()
				cancel()
				if err == nil {
					t.Fatal("PING through a stalled proxy succeeded")
				}
				if el := time.Since(start); el < 150*time.Millisecond || el > 2*time.Second {
					t.Fatalf("stalled PING failed after %v (%v); want the 200ms context timeout", el, err)
				}
				if _, err := c.Write([]byte("INCR held\r\n")); err != nil {
					t.Fatal(err)
				}
				_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if line, err := r.ReadString('\n'); err == nil || !isTimeout(err) {
					t.Fatalf("stalled raw connection read %q, %v; want a timeout (held, not closed)", line, err)
				}
				if got := direct.Exists(context.Background(), "held").Val(); got != 0 {
					t.Fatal("a held request reached the server during the stall")
				}
				p.Unstall()
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if line, err := r.ReadString('\n'); err != nil || line != ":1\r\n" {
					t.Fatalf("held INCR after Unstall: %q, %v; want :1", line, err)
				}
				mustPing(t, rdb)
			},
		},
		{
			// A partition: commands fail fast, and recover after Accept.
			name: "refuse",
			run: func(t *testing.T, p *Proxy, rdb *redis.Client) {
				mustPing(t, rdb)
				p.Refuse()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				start := time.Now()
				if err := rdb.Ping(ctx).Err(); err == nil {
					t.Fatal("PING through a refusing proxy succeeded")
				}
				if el := time.Since(start); el > 2*time.Second {
					t.Fatalf("refused PING took %v; want a fast failure", el)
				}
				p.Accept()
				mustPing(t, rdb)
			},
		},
		{
			// A reset: the idle pooled connection is cut, and the next
			// command succeeds on a new one.
			name: "cut all",
			run: func(t *testing.T, p *Proxy, rdb *redis.Client) {
				ctx := context.Background()
				id1 := rdb.ClientID(ctx).Val()
				if id := rdb.ClientID(ctx).Val(); id != id1 || id == 0 {
					t.Fatalf("pool did not reuse its connection: %d then %d", id1, id)
				}
				p.CutAll()
				id2, err := rdb.ClientID(ctx).Result()
				if err != nil {
					t.Fatalf("command after CutAll: %v", err)
				}
				if id2 == id1 {
					t.Fatalf("CLIENT ID still %d after CutAll; the connection was not cut", id1)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := direct.FlushDB(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
			p := NewProxy(t, s.Addr)
			opt := &redis.Options{Addr: p.Addr, ContextTimeoutEnabled: true}
			if tc.opt != nil {
				tc.opt(opt)
			}
			rdb := redis.NewClient(opt)
			defer rdb.Close()
			tc.run(t, p, rdb)
		})
	}
}

// TestProxyCloseWhileStalled: Close ends stalled copiers and open
// connections instead of hanging, and refuses later dials.
func TestProxyCloseWhileStalled(t *testing.T) {
	s := Start(t)
	base := runtime.NumGoroutine()
	p, err := StartProxy(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.URL(), "redis://127.0.0.1:") {
		t.Fatalf("URL() = %q", p.URL())
	}
	c, r := dialRaw(t, p)
	p.Stall()
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung on a stalled connection")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := r.ReadString('\n'); err == nil || isTimeout(err) {
		t.Fatalf("after Close the connection read %q, %v; want it closed", line, err)
	}
	if c2, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
		c2.Close()
		t.Fatal("closed proxy still accepts connections")
	}
	p.Close() // idempotent
	c.Close()
	waitFor(t, func() bool { return runtime.NumGoroutine() <= base })
}

// blocked is the server's count of clients blocked in BLPOP and the like.
func blocked(ctx context.Context, rdb *redis.Client) int {
	info := rdb.Info(ctx, "clients").Val()
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "blocked_clients:"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return -1
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
	}
}

func mustPing(t *testing.T, rdb *redis.Client) {
	t.Helper()
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
}

// dialRaw opens a plain TCP connection through the proxy and checks it
// forwards (inline PING).
func dialRaw(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "+PONG\r\n" {
		t.Fatalf("raw PING through the proxy: %q, %v", line, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, r
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
