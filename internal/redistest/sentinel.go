package redistest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SentinelGroup is a Redis master, one replica of it and three sentinels
// watching it, all on loopback ports: the smallest setup in which killing
// the master fails over to the replica, as in production.
type SentinelGroup struct {
	Name      string // the master's name in Sentinel
	Master    *Server
	Replica   *Server
	Sentinels []*Server
}

// Sentinel timings: a master is down after DownAfter without a reply,
// and a failover is retried after failoverTimeout.
const (
	DownAfter       = time.Second
	failoverTimeout = 5 * time.Second
)

// StartSentinelGroup starts the master (with args, e.g. persistence
// settings), its replica and three sentinels (quorum 2), and waits until
// the sentinels see the replica, so that a failover can happen at once.
// Everything is stopped by tb.Cleanup.
func StartSentinelGroup(tb TB, name string, args ...string) *SentinelGroup {
	tb.Helper()
	g := &SentinelGroup{Name: name}
	g.Master = StartWith(tb, args...)
	g.Replica = StartWith(tb, append(args, "--replicaof", "127.0.0.1", strconv.Itoa(g.Master.Port))...)
	for i := 0; i < 3; i++ {
		s, err := startSentinel(name, g.Master.Port)
		if err != nil {
			tb.Fatalf("redistest: sentinel: %v", err)
		}
		tb.Cleanup(s.Close)
		g.Sentinels = append(g.Sentinels, s)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if g.sentinelsSeeReplica() {
			return g
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("redistest: the sentinels did not see the replica within 15s")
	return nil
}

func startSentinel(name string, masterPort int) (*Server, error) {
	dir, err := os.MkdirTemp("", "jobd-sentinel-")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "sentinel.conf")
	return startOnFreePort(dir, func(port int) *Server {
		body := fmt.Sprintf("bind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s %d\n"+
			"sentinel failover-timeout %s %d\n"+
			"sentinel parallel-syncs %s 1\n",
			dir, name, masterPort, name, DownAfter.Milliseconds(), name, failoverTimeout.Milliseconds(), name)
		if os.WriteFile(conf, []byte(body), 0o600) != nil {
			return nil
		}
		return &Server{Port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, sentinelConf: conf}
	})
}

// sentinelsSeeReplica reports whether every sentinel lists one replica.
func (g *SentinelGroup) sentinelsSeeReplica() bool {
	for _, s := range g.Sentinels {
		reply, err := command(s.Addr, "SENTINEL", "REPLICAS", g.Name)
		if err != nil || !strings.Contains(reply, strconv.Itoa(g.Replica.Port)) {
			return false
		}
	}
	return true
}

// SentinelAddrs are the sentinels' host:port addresses.
func (g *SentinelGroup) SentinelAddrs() []string {
	out := make([]string, len(g.Sentinels))
	for i, s := range g.Sentinels {
		out[i] = s.Addr
	}
	return out
}

// URL is the group in go-redis's failover URL form (ParseFailoverURL):
// the first sentinel as the host, the others as addr parameters.
func (g *SentinelGroup) URL() string {
	q := url.Values{"master_name": {g.Name}}
	for _, a := range g.SentinelAddrs()[1:] {
		q.Add("addr", a)
	}
	return "redis://" + g.Sentinels[0].Addr + "/0?" + q.Encode()
}

// MasterAddr asks the first sentinel that answers for the current master.
func (g *SentinelGroup) MasterAddr() (string, error) {
	var lastErr error
	for _, s := range g.Sentinels {
		reply, err := command(s.Addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", g.Name)
		if err != nil {
			lastErr = err
			continue
		}
		f := bulkStrings(reply)
		if len(f) == 2 {
			return net.JoinHostPort(f[0], f[1]), nil
		}
		lastErr = fmt.Errorf("unexpected reply %q", reply)
	}
	return "", lastErr
}

// command sends one command in RESP and returns the raw reply (enough for
// the small replies tests read).
func command(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	reply := string(buf[:n])
	if strings.HasPrefix(reply, "-") {
		return "", fmt.Errorf("redis: %s", strings.TrimSpace(reply[1:]))
	}
	return reply, nil
}

// bulkStrings picks the bulk strings out of a flat RESP array reply.
func bulkStrings(reply string) []string {
	lines := strings.Split(reply, "\r\n")
	var out []string
	for i := 0; i < len(lines)-1; i++ {
		if strings.HasPrefix(lines[i], "$") && lines[i] != "$-1" {
			out = append(out, lines[i+1])
			i++
		}
	}
	return out
}
