package redistest

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Cluster is a Redis Cluster of three masters, each with one replica, on
// loopback ports: the smallest cluster in which killing a master fails
// over to its replica, as in production.
type Cluster struct {
	Nodes []*Server // the six nodes, in the order redis-cli was given them
}

// NodeTimeout is the cluster's cluster-node-timeout: a master that does
// not answer for that long is failed over by its replica.
const NodeTimeout = time.Second

// StartCluster starts six cluster-enabled nodes (with args, e.g.
// persistence settings), joins them with `redis-cli --cluster create
// --cluster-replicas 1`, and waits until every node sees the cluster as
// ok and every replica has synced. cluster-require-full-coverage is off,
// so that the other shards keep serving while one fails over. Everything
// is stopped by tb.Cleanup.
func StartCluster(tb TB, args ...string) *Cluster {
	tb.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		tb.Fatalf("redistest: redis-cli is not installed: run `sudo apt-get install -y redis-tools` (it comes with redis-server)")
	}
	c := &Cluster{}
	nodeArgs := append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(NodeTimeout.Milliseconds(), 10),
		"--cluster-require-full-coverage", "no"}, args...)
	for i := 0; i < 6; i++ {
		c.Nodes = append(c.Nodes, StartWith(tb, nodeArgs...))
	}
	create := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		create = append(create, n.Addr)
	}
	create = append(create, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", create...).CombinedOutput(); err != nil {
		tb.Fatalf("redistest: redis-cli --cluster create: %v: %s", err, out)
	}
	if err := c.WaitOK(30 * time.Second); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	return c
}

// Addrs are the nodes' host:port addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// URL is the cluster in jobd's redis+cluster:// form (go-redis's
// ParseClusterURL with the scheme marked): the first node as the host,
// the others as addr parameters.
func (c *Cluster) URL() string {
	u := "redis+cluster://" + c.Nodes[0].Addr
	for i, a := range c.Addrs()[1:] {
		u += map[bool]string{true: "?", false: "&"}[i == 0] + "addr=" + a
	}
	return u
}

// Masters are the nodes that are masters now, as the first live node
// that answers sees them.
func (c *Cluster) Masters() ([]*Server, error) {
	var lastErr error
	for _, n := range c.Nodes {
		reply, err := command(n.Addr, "CLUSTER", "NODES")
		if err != nil {
			lastErr = err
			continue
		}
		var out []*Server
		for _, line := range strings.Split(reply, "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			for _, s := range c.Nodes {
				if s.Addr == addr {
					out = append(out, s)
				}
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("no cluster node answers: %v", lastErr)
}

// WaitOK waits until every live node reports cluster_state:ok and knows
// three masters that cover all slots, and every replica's link to its
// master is up.
func (c *Cluster) WaitOK(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var why string
	for time.Now().Before(deadline) {
		if why = c.notOK(); why == "" {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("cluster not ok within %v: %s", timeout, why)
}

// notOK says why the cluster is not ok yet ("" when it is).
func (c *Cluster) notOK() string {
	for _, n := range c.Nodes {
		if ping(n.Addr) != nil {
			continue // stopped by the test
		}
		info, err := command(n.Addr, "CLUSTER", "INFO")
		if err != nil {
			return err.Error()
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			return n.Addr + " does not see the cluster ok yet"
		}
		repl, err := command(n.Addr, "INFO", "replication")
		if err != nil {
			return err.Error()
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return "replica " + n.Addr + " has not synced yet"
		}
	}
	return ""
}
