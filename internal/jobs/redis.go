package jobs

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// DefaultMinReplicasTimeout bounds the WAIT that min_replicas_acked asks
// for after a claim and after a lock.
const DefaultMinReplicasTimeout = time.Second

// checkRedis reports what is wrong in the redis: section: a Sentinel
// setup needs its master's name and at least one sentinel address, and
// excludes url; a cluster or a quorum excludes the others; a quorum has
// an odd number, at least 3, of distinct masters; a password comes from
// password or password_file, not both; min_replicas_acked is not
// negative, and not given with cluster or quorum.
func (d *decoder) checkRedis(r *RedisConfig) {
	if c := r.Cluster; c != nil {
		if r.URL != "" || r.Sentinel != nil {
			d.at("redis.cluster", "give only one of redis.url, redis.sentinel, redis.cluster and redis.quorum")
		}
		if len(c.Addrs) == 0 {
			d.at("redis.cluster", "addrs is required: host:port of one or more cluster nodes")
		}
		checkAddrs(d, "redis.cluster.addrs", c.Addrs)
		if r.DB != 0 {
			d.at("redis.db", "Redis Cluster has only database 0")
		}
		if r.MinReplicasAcked > 0 {
			d.at("redis.min_replicas_acked", "not supported with redis.cluster: WAIT answers for one shard only (see docs/failures.md)")
		}
	}
	if r.Quorum != nil {
		d.checkQuorum(r)
	}
	if err := CheckPrefix(r.Prefix); err != nil {
		d.at("redis.prefix", "%v", err)
	}
	if t := r.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		d.at("redis.tls", "cert_file and key_file go together")
	}
	if s := r.Sentinel; s != nil {
		if r.URL != "" {
			d.at("redis.sentinel", "give either redis.url or redis.sentinel, not both")
		}
		if s.Master == "" {
			d.at("redis.sentinel", "master is required: the name the sentinels monitor")
		}
		if len(s.Addrs) == 0 {
			d.at("redis.sentinel", "addrs is required: the sentinels' host:port addresses")
		}
		checkAddrs(d, "redis.sentinel.addrs", s.Addrs)
	}
	if r.URL != "" {
		if u, err := url.Parse(r.URL); err != nil || !validScheme[u.Scheme] {
			d.at("redis.url", "%q: want redis://, rediss://, unix://, or redis+cluster:// (rediss+cluster://) for Redis Cluster", redactURL(r.URL))
		}
	}
	if r.Password != "" && r.PasswordFile != "" {
		d.at("redis.password_file", "give either password or password_file, not both")
	}
	if r.DB < 0 {
		d.at("redis.db", "must not be negative")
	}
	if r.MinReplicasAcked < 0 {
		d.at("redis.min_replicas_acked", "must not be negative")
	}
	if t := r.MinReplicasTimeout; t != nil && time.Duration(*t) <= 0 {
		d.at("redis.min_replicas_timeout", "must be positive")
	}
}

// MinQuorum is the fewest masters a quorum may have: with fewer, a
// majority is all of them, and one master down stops jobd.
const MinQuorum = 3

// checkQuorum reports what is wrong in redis.quorum.
func (d *decoder) checkQuorum(r *RedisConfig) {
	q := r.Quorum
	if r.URL != "" || r.Sentinel != nil || r.Cluster != nil {
		d.at("redis.quorum", "give only one of redis.url, redis.sentinel, redis.cluster and redis.quorum")
	}
	switch n := len(q.Addrs); {
	case n < MinQuorum:
		d.at("redis.quorum.addrs", "%d given: a quorum needs at least %d independent masters, host:port each (with fewer, a majority is all of them)", n, MinQuorum)
	case n%2 == 0:
		// An even count tolerates no more failures than the odd count
		// below it, and needs one more master to answer.
		d.at("redis.quorum.addrs", "%d given: give an odd number. %d masters need %d to answer and so survive %d down; %d masters survive as many with one master less",
			n, n, n/2+1, n/2-1, n-1)
	}
	checkAddrs(d, "redis.quorum.addrs", q.Addrs)
	seen := make(map[string]bool, len(q.Addrs))
	for i, a := range q.Addrs {
		if k := strings.ToLower(a); seen[k] {
			d.at(fmt.Sprintf("redis.quorum.addrs[%d]", i), "%q is given twice: each master must count once toward the majority", a)
		} else {
			seen[k] = true
		}
	}
	if r.MinReplicasAcked > 0 {
		d.at("redis.min_replicas_acked", "not supported with redis.quorum: its masters are independent, with no replicas to WAIT for; the majority is what survives a master's loss")
	}
	if r.MinReplicasTimeout != nil {
		d.at("redis.min_replicas_timeout", "not supported with redis.quorum (see min_replicas_acked)")
	}
}

// CheckPrefix refuses a key prefix with a brace: jobd puts lock names in
// {hash tags} so that a lock's keys share a Redis Cluster slot, and a
// brace in the prefix would make the prefix the tag.
func CheckPrefix(p string) error {
	if strings.ContainsAny(p, "{}") {
		return fmt.Errorf("%q: must not contain { or } (jobd's keys put the lock name in a {hash tag})", p)
	}
	return nil
}

// checkAddrs reports each address of addrs that is not host:port.
func checkAddrs(d *decoder, path string, addrs []string) {
	for i, a := range addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			d.at(fmt.Sprintf("%s[%d]", path, i), "%q: want host:port", a)
		}
	}
}

// ReplicaWait is how many replicas must acknowledge a claim or a lock,
// and how long to wait for them (zero n: no wait).
func (r RedisConfig) ReplicaWait() (n int, timeout time.Duration) {
	timeout = DefaultMinReplicasTimeout
	if r.MinReplicasTimeout != nil {
		timeout = time.Duration(*r.MinReplicasTimeout)
	}
	return r.MinReplicasAcked, timeout
}

// ReadPassword is the data nodes' password: password, or the first line
// of password_file.
func (r RedisConfig) ReadPassword() (string, error) {
	if r.PasswordFile == "" {
		return r.Password, nil
	}
	b, err := os.ReadFile(r.PasswordFile)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), nil
}

// redactURL is u without its password, for messages.
func redactURL(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Redacted()
	}
	return "(unparsable URL)"
}

// validScheme lists the URL schemes redis.url takes: go-redis's own, and
// redis+cluster:// (rediss+cluster://) for its cluster URL form.
var validScheme = map[string]bool{"redis": true, "rediss": true, "unix": true, "redis+cluster": true, "rediss+cluster": true}
