package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/jobs"
)

// The four topologies, by how they are named in the configuration.
const (
	KindStandalone = "standalone" // redis.url (redis://, rediss://, unix://)
	KindSentinel   = "sentinel"   // redis.sentinel, or a URL with master_name
	KindCluster    = "cluster"    // redis.cluster, or a redis+cluster:// URL
	KindQuorum     = "quorum"     // redis.quorum: independent masters, a majority decides; no URL form
)

// isFailoverURL reports whether u is go-redis's Sentinel URL form:
// redis://SENTINEL:PORT/DB?master_name=NAME&addr=SENTINEL2:PORT...
func isFailoverURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && p.Query().Has("master_name")
}

// clusterURL turns jobd's Redis Cluster URL form,
// redis+cluster://[USER:PASSWORD@]NODE:PORT?addr=NODE2:PORT&addr=...
// (rediss+cluster:// for TLS), into the redis:// URL that go-redis's
// ParseClusterURL reads; ok is false for any other URL.
func clusterURL(u string) (string, bool) {
	for _, s := range []string{"redis", "rediss"} {
		if rest, ok := strings.CutPrefix(u, s+"+cluster://"); ok {
			return s + "://" + rest, true
		}
	}
	return "", false
}

// clientOptions are a Target's client options; exactly one is set.
type clientOptions struct {
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
	plain    *redis.Options
	quorum   []*redis.Options // one plain client's options per master
}

// kind is the topology the options are for.
func (o clientOptions) kind() string {
	switch {
	case o.failover != nil:
		return KindSentinel
	case o.cluster != nil:
		return KindCluster
	case o.quorum != nil:
		return KindQuorum
	}
	return KindStandalone
}

// options are the client options of t: failover ones for a Sentinel
// setup (the file's sentinel:, or a URL with master_name), cluster ones
// for a Redis Cluster (the file's cluster:, or a redis+cluster:// URL),
// plain ones otherwise. Calls are bounded by their contexts' deadlines,
// which keep-alive relies on. An error never shows the password.
func (t Target) options() (clientOptions, error) {
	o, err := t.clientOptions()
	switch {
	case err != nil || t.Redis.MinReplicasAcked <= 0:
	case o.cluster != nil:
		// Whichever form named the cluster (the file's cluster:, or a
		// redis+cluster:// URL from the file, --redis or the environment).
		return o, errors.New("redis.min_replicas_acked is not supported on Redis Cluster: a WAIT answers for one shard only (see docs/failures.md)")
	case o.quorum != nil:
		// Validation refuses it too; a Target built in code may still ask.
		return o, errors.New("redis.min_replicas_acked is not supported with redis.quorum: its masters are independent, with no replicas to WAIT for")
	}
	return o, err
}

// clientOptions are options without the checks across settings.
func (t Target) clientOptions() (clientOptions, error) {
	var o clientOptions
	if err := jobs.CheckPrefix(t.Prefix); err != nil {
		return o, fmt.Errorf("key prefix %w", err)
	}
	r := t.Redis
	switch {
	case r.Sentinel != nil || r.Cluster != nil || r.Quorum != nil:
		pw, err := r.ReadPassword()
		if err != nil {
			return o, fmt.Errorf("redis.password_file: %w", err)
		}
		tc, err := tlsConfig(r.TLS)
		if err != nil {
			return o, err
		}
		if c := r.Cluster; c != nil {
			o.cluster = &redis.ClusterOptions{Addrs: c.Addrs, Username: r.Username, Password: pw, TLSConfig: tc}
			clusterDefaults(o.cluster)
			return o, nil
		}
		if q := r.Quorum; q != nil {
			if len(q.Addrs) == 0 {
				return o, errors.New("redis.quorum: addrs is empty")
			}
			for _, addr := range q.Addrs {
				p := &redis.Options{Addr: addr, Username: r.Username, Password: pw, DB: r.DB, TLSConfig: tc}
				quorumDefaults(p)
				o.quorum = append(o.quorum, p)
			}
			return o, nil
		}
		o.failover = &redis.FailoverOptions{
			MasterName: r.Sentinel.Master, SentinelAddrs: r.Sentinel.Addrs,
			SentinelPassword: r.Sentinel.SentinelPassword,
			Username:         r.Username, Password: pw, DB: r.DB, TLSConfig: tc,
			ContextTimeoutEnabled: true,
		}
		return o, nil
	case isFailoverURL(t.URL):
		var err error
		if o.failover, err = redis.ParseFailoverURL(t.URL); err != nil {
			return o, errors.New(t.Scrub(err.Error()))
		}
		o.failover.ContextTimeoutEnabled = true
		return o, nil
	}
	tc, err := tlsConfig(r.TLS) // redis.tls with a URL: TLS on, with the file's CA and certificate
	if err != nil {
		return o, err
	}
	if u, ok := clusterURL(t.URL); ok {
		if p, err := url.Parse(u); err == nil && strings.Trim(p.Path, "/") != "" && strings.Trim(p.Path, "/") != "0" {
			return o, fmt.Errorf("%s: Redis Cluster has only database 0", t)
		}
		if o.cluster, err = redis.ParseClusterURL(u); err != nil {
			return o, errors.New(t.Scrub(err.Error()))
		}
		clusterDefaults(o.cluster)
		if tc != nil {
			o.cluster.TLSConfig = tc
		}
		return o, nil
	}
	if o.plain, err = redis.ParseURL(t.URL); err != nil {
		return o, errors.New(t.Scrub(err.Error()))
	}
	plainDefaults(o.plain)
	if tc != nil {
		o.plain.TLSConfig = tc
	}
	return o, nil
}

// ClusterReload is how often a Redis Cluster client reads the slot map
// again. go-redis reads it at once on a MOVED reply, but a master that
// died answers nothing, so without this its slots would wait for
// go-redis's default of a minute: a failover is followed within the
// cluster's own node timeout plus ClusterReload.
const ClusterReload = time.Second

// plainDefaults are jobd's settings of every plain client: one Redis
// named by a URL, and each master of a quorum.
func plainDefaults(o *redis.Options) {
	o.ContextTimeoutEnabled = true
}

// quorumDefaults are jobd's settings of a client of one master of a
// quorum. A master that is down must cost an operation nothing (the
// others make the majority): one dial per attempt, not go-redis's five
// with backoff (1.7 s), and no retry of a command after a failed dial or
// a lost connection (up to about 200 ms a command, with backoff), and a
// dial given up after 1 s. The quorum code asks again by itself, with the
// same token, when a majority's outcome is unknown.
func quorumDefaults(o *redis.Options) {
	plainDefaults(o)
	o.DialerRetries = 1
	o.MaxRetries = -1
	if o.DialTimeout == 0 {
		// A paused master accepts connections into its backlog and
		// never answers them: do not let such a dial hold a pub/sub
		// connection (and everything waiting on it) for go-redis's 5 s.
		o.DialTimeout = time.Second
	}
}

// clusterDefaults are jobd's settings of every cluster client.
func clusterDefaults(o *redis.ClusterOptions) {
	o.ContextTimeoutEnabled = true
	o.ClusterStateReloadInterval = ClusterReload
}

// tlsConfig is the *tls.Config of the file's redis.tls (nil: none).
func tlsConfig(c *jobs.TLSConfig) (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis.tls.ca_file: %s: no PEM certificate in it", c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.cert_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Topology is what `jobd status` shows of the Redis a command talks to.
type Topology struct {
	Kind   string `json:"kind"`             // standalone, sentinel, cluster or quorum
	Master string `json:"master,omitempty"` // host:port of the current master (standalone, sentinel)
	Name   string `json:"name,omitempty"`   // the master's name in Sentinel
	// Masters are the cluster's masters, host:port, sorted; or the
	// quorum's, in the configured order, each that did not answer marked
	// Down ("HOST:PORT (down)").
	Masters []string `json:"masters,omitempty"`
}

// Down marks a quorum's master that did not answer in Topology.Masters.
const Down = " (down)"

// String is the topology as `jobd status` and the dashboard name it:
// "standalone, master HOST:PORT", "sentinel, master HOST:PORT (NAME)",
// "cluster, 3 masters: HOST:PORT, ..." or "quorum, 2 of 3 masters
// answer: HOST:PORT, HOST:PORT (down), ...".
func (top Topology) String() string {
	switch top.Kind {
	case KindCluster:
		return fmt.Sprintf("%s, %d masters: %s", top.Kind, len(top.Masters), strings.Join(top.Masters, ", "))
	case KindQuorum:
		up := 0
		for _, m := range top.Masters {
			if !strings.HasSuffix(m, Down) {
				up++
			}
		}
		return fmt.Sprintf("%s, %d of %d masters answer: %s", top.Kind, up, len(top.Masters), strings.Join(top.Masters, ", "))
	}
	s := top.Kind + ", master " + top.Master
	if top.Name != "" {
		s += " (" + top.Name + ")"
	}
	return s
}

// Topology tells whether t is a standalone Redis, a Sentinel-watched
// master, a Redis Cluster or a quorum, and where the master is now
// (asked of the sentinels), which nodes are the cluster's masters (asked
// of the cluster on a client of its own), or which of the quorum's
// masters answer (pinged on clients of their own; the error is Ping's:
// nil while a majority answers).
func (t Target) Topology(ctx context.Context) (Topology, error) {
	o, err := t.options()
	switch {
	case err != nil:
		return Topology{}, err
	case o.plain != nil:
		return Topology{Kind: KindStandalone, Master: o.plain.Addr}, nil
	case o.cluster != nil:
		cc := redis.NewClusterClient(o.cluster)
		defer cc.Close()
		top, err := clusterTopology(ctx, cc)
		return top, t.Fail(err)
	case o.quorum != nil:
		return t.quorumTopology(ctx, o.quorum)
	}
	opt := o.failover
	top := Topology{Kind: KindSentinel, Name: opt.MasterName}
	var lastErr error
	for _, addr := range opt.SentinelAddrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr, Username: opt.SentinelUsername,
			Password: opt.SentinelPassword, TLSConfig: opt.TLSConfig})
		hp, err := sc.GetMasterAddrByName(ctx, opt.MasterName).Result()
		sc.Close()
		if err == nil && len(hp) == 2 {
			top.Master = net.JoinHostPort(hp[0], hp[1])
			return top, nil
		}
		lastErr = err
	}
	return top, t.Fail(lastErr)
}

// clusterTopology lists the masters of the cluster rdb talks to.
func clusterTopology(ctx context.Context, rdb *redis.ClusterClient) (Topology, error) {
	top := Topology{Kind: KindCluster}
	shards, err := rdb.ClusterShards(ctx).Result()
	if err != nil {
		return top, err
	}
	for _, s := range shards {
		for _, n := range s.Nodes {
			if n.Role == "master" && n.Health == "online" {
				top.Masters = append(top.Masters, net.JoinHostPort(n.IP, fmt.Sprint(n.Port)))
			}
		}
	}
	sort.Strings(top.Masters)
	return top, nil
}

// quorumTopology lists the quorum's masters, opts, marking those that do
// not answer a ping.
func (t Target) quorumTopology(ctx context.Context, opts []*redis.Options) (Topology, error) {
	top := Topology{Kind: KindQuorum}
	nodes := make([]redis.UniversalClient, len(opts))
	for i, o := range opts {
		nodes[i] = redis.NewClient(o)
	}
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()
	errs := eachNode(ctx, nodes, ping, len(nodes)) // every answer, to mark each master
	for i, o := range opts {
		m := o.Addr
		if errs[i] != nil {
			m += Down
		}
		top.Masters = append(top.Masters, m)
	}
	return top, t.majorityErr(nodes, errs)
}
