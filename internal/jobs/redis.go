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
// excludes url; a password comes from password or password_file, not
// both; min_replicas_acked is not negative.
func (d *decoder) checkRedis(r *RedisConfig) {
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
		for i, a := range s.Addrs {
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				d.at(fmt.Sprintf("redis.sentinel.addrs[%d]", i), "%q: want host:port", a)
			}
		}
	}
	if r.URL != "" {
		if u, err := url.Parse(r.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
			d.at("redis.url", "%q: want redis://, rediss:// or unix://", redactURL(r.URL))
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
