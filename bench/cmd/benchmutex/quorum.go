package main

import (
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/redistest"
)

// quorumMasters is how many independent redis-servers the quorum rows run
// on: a majority is 2.
const quorumMasters = 3

// quorumLibs are the libraries that can lock on a quorum of independent
// masters: jobd (mutex.NewQuorum) and redsync (its native Redlock, one
// pool per master). redislock, rueidislock and the raw pair have no
// multi-master mode.
var quorumLibs = []string{"jobd", "redsync-default", "redsync-1ms"}

// runQuorum runs uncontended and handoff for jobd and redsync, and claims
// for jobd, on 3 independent redis-servers (topology=quorum); Redis's
// commands and CPU are summed over the 3 masters.
func runQuorum(only string, ops, rounds int, limit time.Duration) {
	tb := &mainTB{}
	defer tb.done()
	var addrs []string
	var admins []*redis.Client
	for i := 0; i < quorumMasters; i++ {
		s := redistest.Start(tb)
		addrs = append(addrs, s.Addr)
		a := redis.NewClient(&redis.Options{Addr: s.Addr})
		defer a.Close()
		admins = append(admins, a)
	}
	addr := "quorum:" + strings.Join(addrs, ",")
	runTopology("quorum", addr, admins, func(lib string) bool {
		return (only == "" || strings.Contains(lib, only)) && slices.Contains(quorumLibs, lib)
	}, ops, rounds, limit)
}
