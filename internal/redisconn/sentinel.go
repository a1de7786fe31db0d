package redisconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"

	"github.com/redis/go-redis/v9"
)

// isFailoverURL reports whether u is go-redis's Sentinel URL form:
// redis://SENTINEL:PORT/DB?master_name=NAME&addr=SENTINEL2:PORT...
func isFailoverURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && p.Query().Has("master_name")
}

// options are the client options of t: failover ones for a Sentinel
// setup (the file's sentinel:, or a URL with master_name), plain ones
// otherwise. Calls are bounded by their contexts' deadlines, which
// keep-alive relies on. An error never shows the password.
func (t Target) options() (failover *redis.FailoverOptions, plain *redis.Options, err error) {
	switch {
	case t.Redis.Sentinel != nil:
		r := t.Redis
		pw, err := r.ReadPassword()
		if err != nil {
			return nil, nil, fmt.Errorf("redis.password_file: %w", err)
		}
		return &redis.FailoverOptions{
			MasterName: r.Sentinel.Master, SentinelAddrs: r.Sentinel.Addrs,
			SentinelPassword: r.Sentinel.SentinelPassword,
			Username:         r.Username, Password: pw, DB: r.DB,
			ContextTimeoutEnabled: true,
		}, nil, nil
	case isFailoverURL(t.URL):
		if failover, err = redis.ParseFailoverURL(t.URL); err != nil {
			return nil, nil, errors.New(t.Scrub(err.Error()))
		}
		failover.ContextTimeoutEnabled = true
		return failover, nil, nil
	}
	if plain, err = redis.ParseURL(t.URL); err != nil {
		return nil, nil, errors.New(t.Scrub(err.Error()))
	}
	plain.ContextTimeoutEnabled = true
	return nil, plain, nil
}

// Topology is what `jobd status` shows of the Redis a command talks to.
type Topology struct {
	Kind   string `json:"kind"`             // standalone or sentinel
	Master string `json:"master,omitempty"` // host:port of the current master
	Name   string `json:"name,omitempty"`   // the master's name in Sentinel
}

// Topology tells whether t is a standalone Redis or a Sentinel-watched
// master, and where the master is now (asked of the sentinels).
func (t Target) Topology(ctx context.Context) (Topology, error) {
	opt, plain, err := t.options()
	switch {
	case err != nil:
		return Topology{}, err
	case opt == nil:
		return Topology{Kind: "standalone", Master: plain.Addr}, nil
	}
	top := Topology{Kind: "sentinel", Name: opt.MasterName}
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
